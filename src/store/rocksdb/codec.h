#pragma once
// Key layout and value encoding of the previous release's embedded engine
// (RocksDB). That engine is gone: dstreamd only reads its data directories to
// convert them (store/log/rocksdb_import.h, which spells this layout out on
// its own), and the tests write such directories with this codec
// (test/support/legacy_rocksdb.h).
//
//   'M' path                      -> StreamMeta          (one per stream)
//   'P' id(8, BE) producer_id     -> ProducerState
//   'D' id(8, BE) begin(8, BE)    -> record bytes        (one per append)
//   'N'                           -> next stream id
//
// Big-endian ids and positions make RocksDB's byte order the stream order,
// so a stream's data is one contiguous, seekable key range.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "store/meta_codec.h"

namespace ds::rocks {

std::string meta_key(std::string_view path);
std::string producer_prefix(uint64_t id);
std::string producer_key(uint64_t id, std::string_view producer_id);
std::string data_prefix(uint64_t id);
std::string data_key(uint64_t id, uint64_t position);
inline const std::string kNextIdKey = "N";

/// Position encoded in a data key (its last 8 bytes).
uint64_t data_key_position(std::string_view key);

using ds::decode_meta;
using ds::decode_producer;
using ds::decode_u64;
using ds::encode_meta;
using ds::encode_producer;
using ds::encode_u64;

}  // namespace ds::rocks
