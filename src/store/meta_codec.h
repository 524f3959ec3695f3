#pragma once
// Binary encoding of stream metadata and producer state, shared by the
// storage engines (the embedded engine stores it as RocksDB values; the S2
// engine puts it in the body of a stream's `meta` record). Versioned, so an
// engine can read what an older dstreamd wrote.

#include <optional>
#include <string>
#include <string_view>

#include "protocol/stream_state.h"

namespace ds {

std::string encode_meta(const StreamMeta& m);
std::optional<StreamMeta> decode_meta(std::string_view v);

std::string encode_producer(const ProducerState& p);
std::optional<ProducerState> decode_producer(std::string_view v);

std::string encode_u64(uint64_t v);
std::optional<uint64_t> decode_u64(std::string_view v);

}  // namespace ds
