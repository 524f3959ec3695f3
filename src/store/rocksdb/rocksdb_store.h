#pragma once
// The embedded storage engine: streams in a local RocksDB database.
//
// Durability: an append is acknowledged only after the WriteBatch holding its
// data, its stream's metadata (tail, closure, Stream-Seq) and its producer
// state is in the synced WAL. One writer thread takes every queued mutation
// at once, applies the protocol rules to a staged copy of the affected
// streams, and commits the whole group with a single synced write (group
// commit): throughput grows with concurrency instead of paying one fsync per
// request.
//
// Reads run on a small worker pool against published (committed) state, so
// event-loop threads never touch the disk.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/errc.h"
#include "store/group_commit.h"
#include "store/stream_store.h"

namespace rocksdb {
class Env;
}

namespace ds {

struct RocksStoreOptions {
  std::string path = "./data";
  /// The disk seam: tests pass a rocksdb::EnvWrapper that injects faults
  /// (failed syncs, no space) or keeps everything in memory.
  rocksdb::Env* env = nullptr;
  bool sync = true;  ///< fsync the WAL before acknowledging
  unsigned reader_threads = 2;
  const Clock* clock = &SystemClock::instance();
  int64_t maintenance_interval_ms = 1000;  ///< TTL sweep and access-time persistence
  /// Called on the writer thread after each successful group write; must be
  /// cheap (a few atomics) and must not call into the store.
  std::function<void(const GroupCommitStats&)> on_group_commit;
};

Result<std::unique_ptr<StreamStore>> open_rocksdb_store(const RocksStoreOptions& options);

}  // namespace ds
