#pragma once
// The protocol's decisions about writes, as pure functions of a stream's
// state and a request. Every engine calls these, so the embedded and the S2
// engine cannot disagree about idempotency, closure or error precedence.

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/errc.h"
#include "protocol/stream_state.h"

namespace ds {

/// The deepest fork chain dstreamd makes: a fork may be at most this many
/// forks away from the root stream of its chain (StreamMeta::fork_depth). A
/// fork of a stream at this depth is refused with 400 bad_request
/// (docs/protocol-decisions.md), so no read, deletion cascade or expiry ever
/// walks a chain longer than this.
inline constexpr uint64_t kMaxForkDepth = 1000;

/// A PUT, as parsed from the request.
struct CreateRequest {
  std::string path;
  StreamConfig config;  ///< content_type empty = not given
  bool closed = false;
  std::optional<std::string> forked_from;
  std::optional<Offset> fork_offset;
  uint64_t fork_sub_offset = 0;
  std::string body;  ///< initial data, raw
};

/// One entity tag of an append's If-Match that can name a stream's tail:
/// the tail offset itself (`"<offset>"`, as in Stream-Next-Offset and the
/// ETag of an append's answer), or the ETag of a HEAD or catch-up GET,
/// `"<stream id>:<start>:<end>[:c]"` (server/stream_handlers.cc etag_for),
/// whose end names the tail and whose id the stream's incarnation.
struct TailTag {
  Offset tail;
  std::optional<uint64_t> stream_id;  ///< set for the HEAD/GET form
};

/// What an append's If-Match expects of the stream (docs/protocol-decisions.md,
/// "Conditional appends"): `*` (the stream exists), or one of `tags` as its
/// tail. No tags and not `any`: nothing can match (tags the server never
/// issues, weak tags), so the append always fails with 412.
struct TailExpectation {
  bool any = false;
  std::vector<TailTag> tags;
};

/// Parses an If-Match value: `*`, or a comma-separated list of entity tags
/// (quoted; an unquoted wire offset is tolerated). bad_request if malformed.
Result<TailExpectation> parse_if_match(std::string_view value);

/// Does the stream's current tail satisfy the expectation?
bool tail_matches(const StreamMeta& meta, const TailExpectation& expected);

/// A POST, as parsed from the request. JSON framing happens in decide_append,
/// because only the stream knows whether it is a JSON stream.
struct AppendRequest {
  std::string path;
  std::string content_type;  ///< Content-Type as sent; empty if absent
  std::string body;
  bool close = false;
  std::optional<ProducerTriple> producer;
  std::optional<std::string> stream_seq;
  std::optional<TailExpectation> if_match;  ///< If-Match: append only at this tail
};

/// Idempotent PUT: does an existing stream match the request?
bool create_matches(const StreamMeta& existing, const CreateRequest& req);

/// A PUT at a path that already holds a stream (PROTOCOL.md 5.1): the same
/// configuration is an idempotent success, anything else a conflict.
struct CreateExisting {
  StreamMeta meta;         ///< what to answer with
  bool renew_ttl = false;  ///< a PUT is a write: record an access now (sliding TTL)
};
Result<CreateExisting> decide_create_existing(const StreamMeta& existing, const CreateRequest& req,
                                              int64_t now_ms);

/// A PUT that makes a new stream. `source` is the fork source's state when
/// the request forks (null: the source does not exist); a fork of a source at
/// kMaxForkDepth is refused. The engine assigns
/// the incarnation id and offsets, and stores `initial` (and, for a fork at a
/// sub-offset, the fork_prefix of the append at the fork offset) as the new
/// stream's first records.
struct NewStream {
  StreamMeta meta;      ///< path, config, closed, fork (tail = the fork offset), times
  std::string initial;  ///< the initial body, framed (JSON streams) or raw
};
Result<NewStream> decide_create_new(const CreateRequest& req, const StreamMeta* source,
                                    int64_t now_ms);

/// The part of the append at a fork offset that a fork at `sub_offset`
/// inherits (JSON streams: whole messages only).
Result<std::string> fork_prefix(const std::string& content_type, const std::string& anchor,
                                uint64_t sub_offset);

/// What an append will do to the stream.
struct AppendAccepted {
  std::string record;  ///< bytes to store (empty: close only)
  bool close = false;
  std::optional<ProducerState> producer;  ///< new state for req.producer->id
};
/// The request repeats one that already took effect: answer success, write nothing.
struct AppendDuplicate {
  uint64_t epoch = 0;
  uint64_t seq = 0;  ///< highest accepted seq
  bool closed = false;
};
/// Close-only on a stream that is already closed.
struct AlreadyClosed {};

using AppendDecision = std::variant<AppendAccepted, AppendDuplicate, AlreadyClosed>;

/// Applies PROTOCOL.md 5.2 / 5.2.1 in their error precedence:
/// closed -> content type -> producer epoch/seq -> If-Match -> Stream-Seq -> body.
/// A producer's duplicate is answered as one before If-Match is looked at (its
/// retry names the tail it saw before its own append landed); a failed If-Match
/// is 412 precondition_failed with the current tail (and Stream-Closed). On a
/// closed stream, a close-only POST is idempotent only if its If-Match holds.
Result<AppendDecision> decide_append(const StreamMeta& meta, const ProducerState* producer,
                                     const AppendRequest& req, int64_t now_ms);

/// decide_append for a caller that owns the request and is done with its
/// body: where the record is the body as sent (not a JSON stream), it is
/// moved into the AppendAccepted, not copied, and req.body is left empty.
/// Otherwise the same decision, and req untouched.
Result<AppendDecision> decide_append_taking_body(const StreamMeta& meta,
                                                 const ProducerState* producer, AppendRequest& req,
                                                 int64_t now_ms);

/// Producer epoch/seq state machine alone (exposed for tests).
enum class ProducerVerdict { accept, duplicate, stale_epoch, seq_gap, bad_epoch_start };
ProducerVerdict check_producer(const ProducerState* state, const ProducerTriple& p);

/// The record an initial PUT body becomes (JSON framing for JSON streams;
/// `[]` is allowed and stores nothing).
Result<std::string> frame_initial_body(const std::string& content_type, const std::string& body);

/// The fork's TTL/expiry (PROTOCOL.md 4.2 table).
StreamConfig resolve_fork_config(const StreamConfig& requested, const StreamConfig& source);

}  // namespace ds
