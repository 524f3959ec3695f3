#pragma once
// The embedded engine's on-disk format: every constant in one place.
// docs/storage-format.md describes the layout these constants define.
//
//   <data>/wal/<seq:016>.wal     write-ahead log segments, replayed from the
//                                checkpoint's segment on start
//   <data>/streams/<xx>/<id:016>.dat
//                                one stream's own bytes exactly as they go on
//                                the wire (xx = id % 256 in hex), written at
//                                checkpoints; position = offset - the
//                                stream's first own offset
//   <data>/checkpoint            every stream's metadata, producers, record
//                                boundaries and how much of it is in its .dat
//   <data>/checkpoint.tmp        a checkpoint being written (renamed over
//                                `checkpoint` once it is durable)

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ds::logstore::format {

// ---- WAL segments.
/// A segment starts with the magic and its sequence number (u64 LE).
inline constexpr std::string_view kWalMagic = "DSWAL001";
inline constexpr size_t kWalHeaderSize = 16;
/// An entry: payload length (u32 LE), masked CRC32C of type + payload
/// (u32 LE), type (u8), payload.
inline constexpr size_t kEntryHeaderSize = 9;
/// Larger entries are corrupt by definition (a body is at most 64 MiB; a
/// create carries the fork prefix, at most one append).
inline constexpr uint32_t kMaxEntryPayload = 160u << 20;
/// A segment is closed and a new one begun past this size.
inline constexpr uint64_t kSegmentTargetBytes = 64ull << 20;

enum class EntryType : uint8_t {
  create = 1,  ///< a new stream: its metadata and initial records
  append = 2,  ///< one accepted append: data, closure, producer, Stream-Seq
  meta = 3,    ///< a stream's metadata replaced (TTL renewal, refs, soft delete)
  remove = 4,  ///< a stream dropped with its data
  commit = 5,  ///< ends a group: recovery applies a group only when it sees this
};

// ---- Checkpoint file.
inline constexpr std::string_view kCheckpointMagic = "DSCKP001";
// Version 2 adds each stream's age marks (retention); version 1 is still read.
inline constexpr uint32_t kCheckpointVersion = 2;
inline constexpr uint32_t kCheckpointVersionNoMarks = 1;

// ---- Stream data files.
inline constexpr unsigned kStreamDirFanout = 256;

/// CRC32C masked as LevelDB and RocksDB do, so that a CRC stored inside
/// checksummed data does not checksum to a constant.
inline constexpr uint32_t mask_crc(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
inline constexpr uint32_t unmask_crc(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace ds::logstore::format
