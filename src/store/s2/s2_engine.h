#pragma once
// The S2 engine's insides (private to src/store/s2): one class, S2Engine,
// whose methods live in three files by concern:
//   s2_store.cc   lifecycle, S2 calls, loading a stream (checkpoints), reads,
//                 watches and TTL touches
//   s2_writes.cc  the per-stream writer (group commit), conditional appends
//                 and their settlement, create, delete and fork references
//   fold.cc       records -> state (pure)
//
// Asynchronous end to end: every request runs as a coroutine (common/task.h)
// that suspends on S2 calls; no thread waits on a round trip. At most
// `max_inflight` S2 calls are outstanding; more queue (FIFO).
//
// Concurrency: a stream's state (Cache) is guarded by Cache::mu, held only
// for short, non-blocking sections and never across a co_await or an S2 call.
// This node's writes to one stream run one at a time under Cache::write_mu
// (an AsyncMutex, FIFO), so a producer's pipelined seqs keep their order.
// Lock order: a fork's write_mu before its source's (fork chains are acyclic).

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/task.h"
#include "common/thread_annotations.h"
#include "common/timer_queue.h"
#include "store/s2/fold.h"
#include "store/s2/s2_store.h"

namespace ds::s2engine {

using s2fold::FoldState;

struct PendingAppend {
  AppendRequest req;
  StreamStore::Callback<AppendOutcome> done;
};

/// One stream as this node knows it.
struct Cache {
  explicit Cache(std::string n) : name(std::move(n)) {}
  const std::string name;

  AsyncMutex write_mu;  // this node's writes to the stream, one at a time, FIFO

  Mutex mu;  // guards everything below
  bool loaded DS_GUARDED_BY(mu) = false;
  FoldState fold DS_GUARDED_BY(mu);
  /// Write ids of appends being settled -> seq_num where they landed
  /// (kNotSeen until the fold meets them).
  std::unordered_map<std::string, uint64_t> awaited_writes DS_GUARDED_BY(mu);
  std::deque<PendingAppend> pending DS_GUARDED_BY(mu);  // appends waiting for the writer
  bool writer_running DS_GUARDED_BY(mu) = false;
  std::chrono::steady_clock::time_point last_batch DS_GUARDED_BY(mu){};
  size_t last_batch_size DS_GUARDED_BY(mu) = 0;  // requests the previous batch carried
  /// Spacing of this stream's batches: min_batch_interval, widened while S2
  /// answers 429 (rate_limited) and narrowed again as batches succeed.
  std::chrono::microseconds pace DS_GUARDED_BY(mu){0};
  int64_t last_touch_ms DS_GUARDED_BY(mu) = 0;  // when this node last sent a touch record
  std::map<uint64_t, std::function<void(const CommitEvent&)>> watchers DS_GUARDED_BY(mu);
  uint64_t next_watch DS_GUARDED_BY(mu) = 1;
  std::unique_ptr<s2::ReadSession> session DS_GUARDED_BY(mu);
  uint64_t session_gen DS_GUARDED_BY(mu) = 0;
  int session_failures DS_GUARDED_BY(mu) = 0;  // consecutive sessions that ended without a batch
  bool retaining DS_GUARDED_BY(mu) = false;    // a retention pass is queued or running
  /// The fold met a trimmed range it had not folded (FoldResult::hole):
  /// `loaded` is false and the next catch_up loads it from a checkpoint.
  bool hole DS_GUARDED_BY(mu) = false;
};
using CachePtr = std::shared_ptr<Cache>;

inline constexpr uint64_t kNotSeen = ~uint64_t{0};

/// One contiguous run of a stream's own records that a read walks: seqs
/// [begin, end) of incarnation `hi`; nothing before `floor` (its owner's
/// earliest offset) is readable.
struct ChainSegment {
  CachePtr cache;
  uint64_t hi = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  Offset floor;
};

/// The first readable offset of a read chain (a fork reads its sources'
/// data: what their retention removed is gone for the fork too).
Offset chain_earliest(const std::vector<ChainSegment>& segs);

/// Whether a retention pass has something to do on `fold` at `now`: records
/// to trim, or records before the fold's start to learn first.
bool retention_due(const FoldState& fold, int64_t now);

/// How a conditional append ended, when it did not fail.
enum class Landing { landed, conflict };

class S2Engine final : public StreamStore {
 public:
  explicit S2Engine(const S2StoreOptions& o);
  ~S2Engine() override;

  void create(CreateRequest req, Callback<CreateOutcome> done) override;
  void append(AppendRequest req, Callback<AppendOutcome> done) override;
  void read(ReadRequest req, Callback<ReadOutcome> done) override;
  void head(std::string path, Callback<StreamMeta> done) override;
  void remove(std::string path, Callback<Unit> done) override;
  void list(ListRequest req, Callback<ListOutcome> done) override;
  void touch(const std::string& path) override;
  std::unique_ptr<WatchHandle> watch(const std::string& path,
                                     std::function<void(const CommitEvent&)> on_event) override;
  Status health() override { return Unit{}; }

 private:
  class Handle;

  CachePtr cache(const std::string& name);
  int64_t now_ms() const { return opts_.clock->now_ms(); }
  /// Counts a running request coroutine; the destructor waits for none.
  void begin_task();
  void end_task();
  /// begin_task(), unless the engine is shutting down (false).
  bool try_begin_task();
  /// Ends, when destroyed, the task begin_task() counted. The first local of
  /// every spawned coroutine, so that no exit path leaves the count up.
  struct TaskEnd {
    explicit TaskEnd(S2Engine& e) : engine(e) {}
    S2Engine& engine;
    TaskEnd(const TaskEnd&) = delete;
    TaskEnd& operator=(const TaskEnd&) = delete;
    ~TaskEnd() { engine.end_task(); }
  };

  // ---- S2 calls: at most max_inflight outstanding (s2_store.cc) ----
  template <class T, class Start>
  Task<s2::S2Result<T>> call(Start start);
  Task<s2::S2Result<s2::AppendAck>> s2_append(std::string stream, s2::AppendInput in);
  Task<s2::S2Result<s2::ReadBatch>> s2_read(std::string stream, uint64_t seq, uint64_t count);
  Task<s2::S2Result<s2::ReadBatch>> s2_read_from_tail(std::string stream, uint64_t tail_offset);
  Task<s2::S2Result<uint64_t>> s2_check_tail(std::string stream);
  Task<s2::S2Result<s2::Empty>> s2_create_stream(std::string stream);
  Task<s2::S2Result<s2::StreamPage>> s2_list(std::string prefix, std::string start_after,
                                             uint64_t limit);

  // ---- folding and loading (s2_store.cc) ----
  /// Folds under c.mu and tells watchers.
  void fold_locked(Cache& c, const std::vector<s2::SequencedRecord>& records) DS_REQUIRES(c.mu);
  /// Reads forward from the fold's next_seq until it reaches `tail`.
  /// A hole (a range S2 trimmed before this node folded it) loads the
  /// stream again from its latest checkpoint, at most `reloads_left` times.
  Task<Status> catch_up_to(CachePtr c, uint64_t tail, int reloads_left = 3);
  /// Makes the fold current: a cold stream starts from its latest checkpoint
  /// (found through the last record's `k`), a loaded one confirms the tail.
  Task<Status> catch_up(CachePtr c);
  Task<Status> cold_load(CachePtr c, int reloads_left = 3);
  /// Loads a stream whose read session met a hole (off the session's thread).
  Task<void> reload(CachePtr c);
  /// catch_up, then deletes the stream if it has expired. `write_locked`:
  /// the caller holds c->write_mu.
  Task<Status> refresh(CachePtr c, bool write_locked);
  bool watch_keeps_current(Cache& c, const OffsetSpec& from);
  void maybe_touch(const CachePtr& c);
  Task<void> send_touch(CachePtr c);
  void reopen_session(const CachePtr& c, uint64_t gen);

  // ---- requests (s2_store.cc: reads; s2_writes.cc: writes) ----
  /// Runs `work` (a coroutine not started yet) and hands its result to
  /// `done`; with `locked`, under that stream's write lock. Ends the task
  /// begin_task() counted.
  template <class T>
  Task<void> answer(CachePtr locked, Task<Result<T>> work, Callback<T> done);
  Task<Result<ReadOutcome>> do_read(ReadRequest req);
  /// One S2 read at the reader's offset that also confirms the fold is
  /// current; nullopt when it could not (read further than one request).
  Task<std::optional<ReadOutcome>> read_confirming(CachePtr c, ReadRequest req);
  Task<Result<StreamMeta>> do_head(std::string path);
  /// The segments a read of `c` (whose fold is current and says `meta`, the
  /// incarnation starting at `start_seq`) walks, oldest first: its fork
  /// sources' records before each fork offset, then its own. Loads the
  /// sources as needed.
  Task<Result<std::vector<ChainSegment>>> read_chain(CachePtr c, StreamMeta meta,
                                                     uint64_t start_seq);
  Task<Result<ListOutcome>> do_list(ListRequest req);
  /// Whether the S2 stream `name` holds a Durable Stream that exists now (not
  /// deleted, soft-deleted or expired). Read-only: unlike head, it does not
  /// delete what has expired.
  Task<Result<bool>> listable(std::string name);
  struct ListJoin;
  /// listable(name) into *out, then counts itself off `join`.
  Task<void> list_check(std::string name, std::optional<Result<bool>>* out,
                        std::shared_ptr<ListJoin> join);
  Task<void> run_watch_start(CachePtr c, uint64_t id);

  // ---- retention (s2_writes.cc) ----
  /// Every retention_interval: a retention pass for each loaded stream with
  /// retention that has something to trim.
  void sweep_retention();
  Task<void> run_retention(CachePtr c);
  /// Trims the data retention removes: a conditional batch of an S2 `trim`
  /// and a checkpoint holding the new earliest offset. Holds c->write_mu.
  Task<void> retain_locked(CachePtr c);

  Task<void> run_writer(CachePtr c);
  Task<void> write_batch(CachePtr c);
  Task<Result<CreateOutcome>> do_create(CreateRequest req);
  Task<Result<Unit>> do_remove(std::string path);
  /// Appends `records` with match_seq_num = `expected` (the fold's next_seq
  /// when they were decided) and folds them; settles ambiguous outcomes by
  /// reading the position they could only have landed at.
  Task<Result<Landing>> conditional_append(CachePtr c, std::vector<s2::AppendRecord> records,
                                           uint64_t expected, uint64_t checkpoint_seq);
  /// Deletes a stream whose write lock is held (soft if forks remain) and
  /// cascades up the fork chain, iteratively. With `collect`, removes a
  /// soft-deleted stream whose last fork reference is going away.
  Task<std::optional<Error>> delete_locked(CachePtr c, bool collect);
  /// One step of delete_locked: appends `gone` (and trims) for `c`, whose
  /// write lock is held. Returns the fork reference a hard-deleted stream
  /// held, which the caller must release; nothing when there is none.
  Task<Result<std::optional<ForkRef>>> write_gone(CachePtr c, bool collect);
  /// Adds (+1) or drops (-1) a fork's reference on `s`, whose write lock is
  /// held. True when a -1 is the last reference of a soft-deleted source:
  /// nothing is written, the caller deletes it. `refused` says why a +1 could
  /// not be added (not_found, fork_source_deleted).
  Task<Result<bool>> change_ref_locked(CachePtr s, uint64_t source_hi, int delta,
                                       std::optional<errc>* refused);
  /// A new fork's +1 on its source (takes the source's write lock).
  Task<std::optional<Error>> add_ref(std::string source, uint64_t source_hi,
                                     std::optional<errc>* refused);

  S2StoreOptions opts_;
  s2::S2Api& api_;
  S2StoreStats own_stats_;
  S2StoreStats& stats_;
  AsyncSemaphore inflight_;

  Mutex mu_;
  std::unordered_map<std::string, CachePtr> caches_ DS_GUARDED_BY(mu_);
  // One counter for every engine of the process, which shares one salt
  // (random_write_id): two engines in a process (nodes in a test) must not
  // take each other's write ids for their own when settling a conflict.
  static inline std::atomic<uint64_t> write_counter_{0};
  Mutex tasks_mu_;
  std::condition_variable tasks_cv_;
  uint64_t tasks_ DS_GUARDED_BY(tasks_mu_) = 0;
  bool stopping_ DS_GUARDED_BY(tasks_mu_) = false;
  TimerQueue timers_;  // last: its thread stops before anything it may touch goes
};

template <class T>
Task<void> S2Engine::answer(CachePtr locked, Task<Result<T>> work, Callback<T> done) {
  TaskEnd ended{*this};
  if (locked) {
    auto lock = locked->write_mu.lock();
    co_await lock;
  }
  Result<T> out = Error(errc::storage_failure, "S2 engine: request failed");
  try {
    out = co_await work;
  } catch (const std::exception& e) {
    out = Error(errc::storage_failure, std::string("S2 engine: ") + e.what());
  }
  if (locked) locked->write_mu.unlock();
  done(std::move(out));
}

Error s2_error(const s2::S2Error& e);
std::string random_write_id(uint64_t counter);

}  // namespace ds::s2engine
