#pragma once
// LegacyRocksDir: writes a data directory as the previous release's embedded
// engine (RocksDB) left it, so that tests can check the log engine's
// conversion of one (store/log/rocksdb_import.h). That engine is gone; its
// on-disk format lives on only here and in the importer, which spells the
// key layout out on its own, so that the two are written independently.
//
// The format (keys in store/rocksdb/codec.h, values in store/meta_codec.h):
//
//   'M' path                       -> encode_meta(StreamMeta)   one per stream
//   'P' id(8, BE) producer_id      -> encode_producer(state)    one per producer
//   'D' id(8, BE) position(8, BE)  -> the bytes of one append   one per append
//   'N'                            -> encode_u64(next stream id)
//
// What the engine did with them:
//   - A stream's metadata held its tail, closure (closed_by: the producer
//     that closed it), last Stream-Seq, TTL or Expires-At, created and last
//     access times, fork reference, fork depth and ref_count (forks reading
//     through it).
//   - Each append was one 'D' key at the stream's tail before it. A fork's
//     own records begin at its fork offset; a fork at a sub-offset stored
//     the inherited part of the append at the fork offset as its first
//     record. A JSON stream stored each append as its messages' bytes joined
//     by ',' (json_record), the initial PUT body included.
//   - Deleting a stream that forks read through only set soft_deleted; any
//     other delete removed its 'M' key and range-deleted its 'D' and 'P'
//     keys (delete_stream). Ids were never reused: 'N' was rewritten at
//     every create.
//   - Metadata version 1 (before the fork depth limit) is version 2 without
//     the fork depth; it decodes with depth 1 (encode_meta_v1).
//
// Every write is one RocksDB write batch; a failure throws std::runtime_error
// (GoogleTest reports it as a failure of the test).

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/stream_state.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace ds::legacy {

enum class MetaVersion { v1, v2 };

/// Metadata as a dstreamd from before the fork depth limit wrote it.
std::string encode_meta_v1(const StreamMeta& m);
/// What that engine wrote (metadata version 2): version 3 without the
/// retention fields. REQUIRES: no retention settings, earliest 0.
std::string encode_meta_v2(const StreamMeta& m);

/// One JSON append as the engine stored it: its messages joined by ','.
std::string json_record(std::initializer_list<std::string_view> messages);

/// A new stream's metadata as the engine created it at `now_ms` (no data yet:
/// put_stream sets the tail).
StreamMeta stream_meta(uint64_t id, std::string path, std::string content_type = "text/plain",
                       int64_t now_ms = 0);

/// A fork of `source` at `at` (sub_offset as requested), with the source's
/// configuration and depth + 1. The caller counts it in source.ref_count.
StreamMeta fork_meta(uint64_t id, std::string path, const StreamMeta& source, Offset at,
                     uint64_t sub_offset = 0, int64_t now_ms = 0);

class LegacyRocksDir {
 public:
  /// Opens the database at `path`, creating it if missing. While this object
  /// lives it holds RocksDB's LOCK, as a running dstreamd of that release did.
  explicit LegacyRocksDir(const std::string& path);
  ~LegacyRocksDir();
  LegacyRocksDir(const LegacyRocksDir&) = delete;
  LegacyRocksDir& operator=(const LegacyRocksDir&) = delete;

  /// A stream with its own `records` (one per append) written from its first
  /// position (its fork offset, 0 if not a fork); `meta.tail` becomes their
  /// end. Metadata and records go in one batch, as at the end of a commit
  /// group; writing a stream again with more records is what appends did.
  /// Returns the metadata as written.
  StreamMeta put_stream(StreamMeta meta, const std::vector<std::string>& records,
                        MetaVersion version = MetaVersion::v2);
  void put_producer(uint64_t id, std::string_view producer_id, const ProducerState& state);
  void put_next_id(uint64_t next);
  /// A hard delete: the metadata, records and producers of `meta.id` go.
  void delete_stream(const StreamMeta& meta);

  // Single keys, for what the engine never wrote (gaps, orphans, garbage).
  void put_meta(const StreamMeta& meta, MetaVersion version = MetaVersion::v2);
  void put_record(uint64_t id, uint64_t position, std::string_view bytes);
  void put_raw(std::string_view key, std::string_view value);

 private:
  void write(rocksdb::WriteBatch& batch);

  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace ds::legacy
