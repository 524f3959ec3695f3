#pragma once
// The embedded storage engine: streams in a log of our own (docs/storage-format.md).
//
// Writes. One writer thread takes every queued create, append and delete,
// decides each with the protocol rules (protocol/rules.h) against the state
// the group has built so far, and writes the whole group as WAL entries with
// ONE write and ONE fdatasync, closed by a commit marker: a group survives a
// crash whole or not at all. Data, closure, Stream-Seq and producer state of
// an append are one WAL entry. Only then are the group's records published
// to readers and its requests answered: readers never see what is not
// durable. A failed write or sync fails the whole group and every later
// one, and health() turns red: the engine never acknowledges again until a
// restart has recovered from the WAL (crash-only).
//
// Data. Each stream's own bytes live exactly as they go on the wire, first
// in memory (the records written since the last checkpoint), then, from a
// checkpoint on, in the stream's .dat file, so a catch-up of a byte stream
// is a file range (sendfile) plus the records still in memory. No B-tree or
// LSM insert anywhere on the write path.
//
// Checkpoints. When enough WAL has accumulated, the writer moves each
// stream's records from memory into its file, syncs the file system, writes
// the whole state (metadata, producers, record boundaries) as a new
// checkpoint file and drops the WAL segments before it. A start reads the
// checkpoint and replays only the WAL after it, so restart time is bounded
// by the checkpoint interval, not by the size of the data.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/errc.h"
#include "store/group_commit.h"
#include "store/stream_store.h"

namespace ds {

namespace logstore {
class FileSystem;
}

/// What the log engine counts, read by /metrics (all relaxed atomics).
struct LogStoreStats {
  std::atomic<uint64_t> checkpoints{0};
  std::atomic<uint64_t> checkpoint_bytes{0};     ///< size of the last checkpoint file
  std::atomic<int64_t> checkpoint_last_ms{0};    ///< duration of the last checkpoint
  std::atomic<uint64_t> recovery_tail_cuts{0};   ///< torn or corrupt WAL tails cut at start
  std::atomic<uint64_t> recovery_cut_bytes{0};   ///< bytes dropped by those cuts
  std::atomic<int64_t> recovery_ms{0};           ///< duration of the last start's recovery
  std::atomic<uint64_t> recovery_replayed{0};    ///< WAL entries replayed at the last start
  std::atomic<uint64_t> write_failures{0};       ///< failed WAL writes or syncs
  std::atomic<uint64_t> producers{0};            ///< producer states held (all streams)
  std::atomic<uint64_t> producers_forgotten{0};  ///< idle producers forgotten
  std::atomic<uint64_t> no_space_rejections{0};  ///< groups refused for want of disk space
  std::atomic<uint64_t> checkpoint_failures{0};  ///< checkpoints that failed (retried later)
  std::atomic<uint64_t> memory_bytes{0};         ///< record bytes held in memory (not yet in files)
  std::atomic<uint64_t> wal_bytes{0};            ///< WAL bytes since the last checkpoint
  std::atomic<uint64_t> catchup_file_bytes{0};   ///< bytes served as file slices (sendfile)
  std::atomic<uint64_t> retention_trimmed_bytes{0};  ///< bytes retention removed from reads
  /// Record boundaries held in memory (all streams): what retention trims
  /// is dropped from it, so it follows what the streams keep.
  std::atomic<uint64_t> record_index_entries{0};
};

struct LogStoreOptions {
  std::string path = "./data";
  /// The disk seam; null means the real file system. Tests pass a
  /// fault-injecting in-memory one (test/support/fault_fs.h).
  logstore::FileSystem* fs = nullptr;
  bool sync = true;  ///< fdatasync the WAL before acknowledging
  unsigned reader_threads = 2;
  const Clock* clock = &SystemClock::instance();
  int64_t maintenance_interval_ms = 1000;  ///< TTL sweep and access-time persistence
  /// A producer (Producer-Id) with no append for this long is forgotten, as
  /// Kafka forgets idle producer ids: a stream's producer state must not
  /// grow forever. A forgotten producer starts again at seq 0 (or a new
  /// epoch); a retry of its last append after that is no longer recognised
  /// as a duplicate. 0 keeps producers forever.
  int64_t producer_idle_ms = int64_t{7} * 24 * 3600 * 1000;
  /// A checkpoint is taken once this much WAL has been written since the
  /// last one (and at least as much as the last checkpoint file's size, so
  /// that checkpoints of many small streams cost at most half the writes).
  uint64_t checkpoint_wal_bytes = 64ull << 20;
  /// A new WAL segment is begun past this size.
  uint64_t segment_bytes = 64ull << 20;
  /// With `sync`, the WAL is zero-filled this far ahead of its end (in
  /// steps of this size, capped at segment_bytes), so that a group's
  /// fdatasync does not also commit a new file size. 0 turns it off.
  uint64_t wal_preallocate_bytes = 1ull << 20;
  /// A stream whose records in memory reach this many bytes gets a .dat
  /// file at the next checkpoint; smaller ones stay in the checkpoint itself
  /// (a million streams of one short append must not be a million files).
  uint64_t inline_bytes = 4096;
  /// Import an existing RocksDB data directory (what dstreamd wrote before
  /// this engine) on first start. When false, such a directory is refused.
  bool migrate_rocksdb = true;
  /// Retention: the disk space of data retention removed is given back (the
  /// .dat file's range punched out) this long after the removal was
  /// published, so that reads which began before it, and responses still
  /// sending file slices of it, finish on intact bytes.
  int64_t retention_reclaim_delay_ms = 60'000;
  std::function<void(const GroupCommitStats&)> on_group_commit;
  LogStoreStats* stats = nullptr;
};

Result<std::unique_ptr<StreamStore>> open_log_store(const LogStoreOptions& options);

}  // namespace ds
