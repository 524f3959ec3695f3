#pragma once
// Reads a data directory written by the RocksDB engine (store/rocksdb/) so
// that the log engine can import it on first start: an existing directory
// must be migrated, or refused with a clear message, never silently ignored.
//
// Everything the RocksDB engine persisted is delivered: every stream it would
// load, soft-deleted ones included (their forks read through them), with its
// producer state and its own records. Streams whose TTL has passed are
// delivered too: the importing engine sweeps them as it would its own.
//
// The database is only read. While reading, the directory's RocksDB LOCK is
// held, so a dstreamd of the previous release cannot start on it mid-import,
// and a running one makes the import fail at once instead of reading files
// that are being rewritten.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/errc.h"
#include "protocol/stream_state.h"

namespace ds::logstore {

/// Whether `dir` holds a RocksDB database (a CURRENT file, as RocksDB writes).
bool is_rocksdb_dir(const std::string& dir);

struct ImportedStream {
  /// As stored, except fork_depth, which is derived from the fork chain as
  /// the RocksDB engine does when it loads (version-1 metadata has none).
  StreamMeta meta;
  ProducerMap producers;
  /// The stream's own records (not those it inherits from a fork source), in
  /// position order: the first begins at meta.fork->offset.lo (0 for a stream
  /// that is not a fork), each begins where the previous ends, and the last
  /// ends at meta.tail.lo.
  std::vector<std::string> records;
};

struct ImportSummary {
  uint64_t streams = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;
  /// The first stream id the importing engine may hand out: ids of deleted
  /// streams are never reused, as in the RocksDB engine.
  uint64_t next_id = 1;
};

/// Opens the database in `dir` read-only (a failed migration leaves it as it
/// was) and calls `on_stream` once per stream, in ascending id order: a fork's
/// source, whose id is always smaller, comes before the fork. One stream is
/// in memory at a time.
///
/// Errors are errc::storage_failure with a message that names `dir` and says
/// what to do: no database in `dir`, a database in use (a running dstreamd),
/// one that cannot be opened, or corrupt contents (an undecodable value, a
/// gap or overlap in a stream's records). An error returned by `on_stream`
/// stops the import and is returned as it is.
Result<ImportSummary> import_rocksdb(const std::string& dir,
                                     const std::function<Status(ImportedStream&&)>& on_stream);

}  // namespace ds::logstore
