#pragma once
// The state of one stream, as every storage engine keeps it, and the requests
// that change it. Plain data: engines persist it their own way.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "protocol/offset.h"

namespace ds {

struct StreamConfig {
  std::string content_type;              ///< as given at creation
  std::optional<uint64_t> ttl_seconds;   ///< sliding TTL
  std::optional<int64_t> expires_at_ms;  ///< absolute expiry
  std::string expires_at_text;           ///< Stream-Expires-At as given, echoed on HEAD
  /// Retention (docs/protocol-decisions.md, "Retention"): data older than
  /// this many seconds, or beyond this many bytes behind the tail, may be
  /// dropped, whole appends at a time, while the stream goes on.
  std::optional<uint64_t> retention_max_age_s;
  std::optional<uint64_t> retention_max_bytes;

  bool has_retention() const { return retention_max_age_s || retention_max_bytes; }

  friend bool operator==(const StreamConfig&, const StreamConfig&) = default;
};

struct ProducerState {
  uint64_t epoch = 0;
  uint64_t last_seq = 0;
  int64_t updated_ms = 0;
};

struct ProducerTriple {
  std::string id;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  friend bool operator==(const ProducerTriple&, const ProducerTriple&) = default;
};

struct ForkRef {
  std::string source_path;
  uint64_t source_id = 0;   ///< the source's incarnation
  Offset offset;            ///< inherit source data before this offset
  uint64_t sub_offset = 0;  ///< as requested (kept for idempotent PUT)
};

/// Everything about a stream except its data.
struct StreamMeta {
  uint64_t id = 0;  ///< incarnation: unique per engine, never reused
  std::string path;
  StreamConfig config;
  Offset tail;  ///< next offset to be written
  /// The first offset retention has not removed (Stream-Earliest-Offset):
  /// a read before it is retention_trimmed. Always an append boundary.
  Offset earliest;
  bool closed = false;
  std::optional<ProducerTriple> closed_by;
  std::optional<std::string> last_stream_seq;
  std::optional<ForkRef> fork;
  /// Forks between this stream and the root of its chain: 0 for a stream that
  /// is not a fork, its source's depth + 1 for a fork (at most kMaxForkDepth,
  /// protocol/rules.h).
  uint64_t fork_depth = 0;
  uint64_t ref_count = 0;  ///< forks that read through this stream
  bool soft_deleted = false;
  int64_t created_ms = 0;
  int64_t last_access_ms = 0;

  /// Deadline after which the stream no longer exists (ms), if any.
  std::optional<int64_t> expiry_ms() const {
    if (config.expires_at_ms) return config.expires_at_ms;
    if (config.ttl_seconds)
      return last_access_ms + static_cast<int64_t>(*config.ttl_seconds) * 1000;
    return std::nullopt;
  }
  bool expired(int64_t now_ms) const {
    auto e = expiry_ms();
    return e && now_ms >= *e;
  }
};

using ProducerMap = std::map<std::string, ProducerState, std::less<>>;

}  // namespace ds
