#pragma once
// Binary encoding of stream metadata and producer state, shared by the
// storage engines (the embedded engine stores it in its WAL and checkpoints,
// as the previous release's RocksDB engine did in RocksDB values; the S2
// engine puts it in the body of a stream's `meta` record). Versioned, so an
// engine can read what an older dstreamd wrote.

#include <optional>
#include <string>
#include <string_view>

#include "protocol/stream_state.h"

namespace ds {

/// The primitives of these encodings, for other versioned formats (the S2
/// engine's checkpoints): LEB128 varints and length-prefixed strings.
namespace codec {
void put_varint(std::string& out, uint64_t v);
void put_string(std::string& out, std::string_view s);
/// Reads what put_varint / put_string wrote; any overrun clears ok().
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return in_.empty(); }
  uint64_t varint();
  int64_t svarint() { return static_cast<int64_t>(varint()); }
  bool flag() { return varint() != 0; }
  std::string string();

 private:
  uint64_t fail() {
    ok_ = false;
    return 0;
  }
  std::string_view in_;
  bool ok_ = true;
};
}  // namespace codec

std::string encode_meta(const StreamMeta& m);
std::optional<StreamMeta> decode_meta(std::string_view v);

std::string encode_producer(const ProducerState& p);
std::optional<ProducerState> decode_producer(std::string_view v);

std::string encode_u64(uint64_t v);
std::optional<uint64_t> decode_u64(std::string_view v);

}  // namespace ds
