#pragma once
// The S2 storage engine: S2 is the source of truth and dstreamd nodes are
// stateless; any number of nodes can serve one basin at once.
//
// One Durable Stream path is one S2 stream of the same name. Its records are
// data records (the bytes of one append, with the writer state that admitted
// them in headers) and control records (a stream's creation, closure,
// deletion, fork references, TTL renewals). Every node folds the records it
// reads into the same state, and every write is a conditional append
// (`match_seq_num` = the tail the node has folded up to): a node that loses
// the race reads forward, folds what the others wrote, decides again and
// retries. Idempotent producers and Stream-Seq are therefore exactly-once
// across nodes without a coordinator. The mapping is written down in
// docs/s2-mapping.md.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "common/clock.h"
#include "s2/s2_api.h"
#include "store/stream_store.h"

namespace ds {

/// The engine's counters, for metrics. Owned by the caller; must outlive the
/// store. Monotonic except the gauges.
struct S2StoreStats {
  std::atomic<uint64_t> inflight{0};          ///< gauge: S2 calls outstanding now
  std::atomic<uint64_t> inflight_waits{0};    ///< calls that queued for an inflight slot
  std::atomic<uint64_t> append_batches{0};    ///< conditional S2 appends sent by writers
  std::atomic<uint64_t> batched_requests{0};  ///< DS writes carried by those batches
  std::atomic<uint64_t> conflicts{0};         ///< 412s: another node wrote first
  std::atomic<uint64_t> ambiguous{0};         ///< appends whose outcome had to be settled
  std::atomic<uint64_t> checkpoints{0};       ///< checkpoint records written
  std::atomic<uint64_t> cold_loads{0};        ///< streams loaded from S2 (not cached)
  std::atomic<uint64_t> retention_trims{0};   ///< retention trims written (trim + checkpoint)
  std::atomic<uint64_t> retention_trimmed_bytes{0};  ///< data bytes those trims removed
};

struct S2StoreOptions {
  s2::S2Api* api = nullptr;  ///< must outlive the store
  const Clock* clock = &SystemClock::instance();
  /// S2 calls this node keeps outstanding at once; further calls queue.
  unsigned max_inflight = 256;
  /// Conditional appends another node beat, per request, before 503 (each costs
  /// about two round trips: the failed append and the read of what won).
  int max_conflict_retries = 256;
  /// Checkpoint records are written so that at most this many records (and
  /// about this many bytes) lie between the latest checkpoint and the tail.
  unsigned checkpoint_records = 500;
  size_t checkpoint_bytes = size_t{512} * 1024;
  /// Spacing of one stream's appends from this node (S2 allows 200 batches/s
  /// per stream per connection); appends arriving meanwhile join the batch.
  std::chrono::microseconds min_batch_interval{5000};
  /// After a batch of n > 1 appends, the writer waits up to this long for
  /// about n to queue again before it sends the next one: writers answered
  /// together come back together, and one batch then carries them all
  /// (64 writers on one stream at 10 ms: 2,600/s without, 3,900/s with).
  std::chrono::microseconds batch_linger{2000};
  /// How often each node looks at the streams it has loaded for data that
  /// retention (Stream-Retention-Max-Age / -Max-Bytes) removes.
  std::chrono::microseconds retention_interval{1'000'000};
  S2StoreStats* stats = nullptr;  ///< optional
};

std::unique_ptr<StreamStore> make_s2_store(const S2StoreOptions& options);

}  // namespace ds
