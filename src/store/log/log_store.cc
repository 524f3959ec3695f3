#include "store/log/log_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/log.h"
#include "common/thread_annotations.h"
#include "common/wake_batch.h"
#include "common/worker_pool.h"
#include "protocol/headers.h"
#include "protocol/json.h"
#include "store/log/checkpoint.h"
#include "store/log/format.h"
#include "store/log/fs.h"
#include "store/log/rocksdb_import.h"
#include "store/log/wal.h"

namespace ds {
namespace {

using logstore::Checkpoint;
using logstore::CheckpointStream;
using logstore::File;
using logstore::FileSystem;
using logstore::OpenMode;
using logstore::WalWriter;
namespace format = logstore::format;

Offset advance(Offset o, size_t n) { return Offset{o.hi, o.lo + n}; }

/// A read before a stream's earliest offset (`meta.earliest`, already the
/// chain's): 410 with where reading can begin again.
Error retention_trimmed(const StreamMeta& meta) {
  Error e(errc::retention_trimmed,
          "the data at this offset has been removed by the stream's "
          "retention; the earliest readable offset is " +
              meta.earliest.str());
  e.earliest = meta.earliest;
  return e;
}
uint64_t own_base(const StreamMeta& m) { return m.fork ? m.fork->offset.lo : 0; }

/// One stream incarnation's data: its own records, in its .dat file up to
/// `file_end` and in memory after it. Readers take `mu` shared; the writer
/// takes it exclusively to publish committed records and checkpoints.
struct Data {
  Data(uint64_t id_, uint64_t hi_, uint64_t base_)
      : id(id_), hi(hi_), base(base_), file_end(base_), first_begin(base_) {}
  const uint64_t id;
  const uint64_t hi;
  const uint64_t base;  ///< offset (lo) of the stream's first own byte

  mutable SharedMutex mu;
  uint64_t file_end DS_GUARDED_BY(mu);  ///< own bytes [base, file_end) are in the file
  /// Where the first record in `ends` begins: `base`, or, once retention
  /// has removed the records before it, the end of the last one removed
  /// (their boundaries are dropped, see prune_index()). Never past
  /// file_end: every record in `mem` has its boundary in `ends`.
  uint64_t first_begin DS_GUARDED_BY(mu);
  /// End of every own record from first_begin on, ascending.
  std::vector<uint64_t> ends DS_GUARDED_BY(mu);
  /// Records after file_end, in order. A vector, not a deque: libstdc++'s
  /// empty deque allocates over 500 bytes, which a million streams would
  /// pay for nothing.
  std::vector<RecordPtr> mem DS_GUARDED_BY(mu);
  uint64_t mem_bytes = 0;  ///< writer thread only
  /// Retention, writer thread only: when the records were appended (only
  /// for streams with a max age), the trims whose disk space is still to be
  /// given back (time published, offset), and how far the file is punched.
  std::vector<logstore::AgeMark> marks;
  std::vector<std::pair<int64_t, uint64_t>> reclaim_due;
  uint64_t punched = 0;

  // The writer thread is the only one that changes the fields above (holding
  // mu exclusively), so it may read them without mu. Writer thread only.
  const std::vector<uint64_t>& writer_ends() const DS_NO_THREAD_SAFETY_ANALYSIS { return ends; }
  uint64_t writer_file_end() const DS_NO_THREAD_SAFETY_ANALYSIS { return file_end; }
  uint64_t writer_first_begin() const DS_NO_THREAD_SAFETY_ANALYSIS { return first_begin; }

  /// Retention: drops the boundaries of the records that end at or before
  /// `upto` (a record boundary at or before the published earliest offset)
  /// and in the file, so the index of a long-lived stream with retention
  /// stays the size of what it keeps. Returns how many were dropped. Caller
  /// holds mu exclusively, or is recovery.
  size_t prune_index(uint64_t upto) DS_REQUIRES(mu) {
    upto = std::min(upto, file_end);
    if (ends.empty() || ends.front() > upto) return 0;
    const auto past = std::upper_bound(ends.begin(), ends.end(), upto);
    const size_t n = static_cast<size_t>(past - ends.begin());
    first_begin = *(past - 1);
    ends.erase(ends.begin(), past);
    // A vector never gives back capacity by itself: after a burst, do.
    if (ends.capacity() > 64 && ends.size() < ends.capacity() / 4) ends.shrink_to_fit();
    return n;
  }
  const std::vector<RecordPtr>& writer_mem() const DS_NO_THREAD_SAFETY_ANALYSIS { return mem; }
};
using DataPtr = std::shared_ptr<Data>;

/// The published state of one stream path.
struct Slot {
  std::shared_ptr<const StreamMeta> meta;
  DataPtr data;
  /// Last read (ms): reads renew the sliding TTL without a disk write; the
  /// writer folds this into the persisted meta during maintenance.
  std::atomic<int64_t> last_read_ms{0};

  int64_t last_access() const { return std::max(meta->last_access_ms, last_read_ms.load()); }
  bool expired(int64_t now) const {
    const auto& c = meta->config;
    if (c.expires_at_ms) return now >= *c.expires_at_ms;
    if (c.ttl_seconds) return now >= last_access() + static_cast<int64_t>(*c.ttl_seconds) * 1000;
    return false;
  }
};
using SlotPtr = std::shared_ptr<Slot>;

/// A contiguous run of one stream's own records: [begin, end).
struct Segment {
  DataPtr data;
  Offset begin;
  Offset end;
  Offset floor;  ///< its owner's earliest offset: nothing before it is readable
};

/// The first readable offset of a chain of segments: past the last range
/// retention removed from any of them (a fork reads its source's data, and
/// whatever its source's retention removed is gone for the fork too).
Offset chain_earliest(const std::vector<Segment>& segs) {
  Offset earliest;
  for (const auto& s : segs) {
    if (s.floor > s.begin) earliest = std::max(earliest, std::min(s.floor, s.end));
  }
  return earliest;
}

/// Records that a stream with a retention max age took an append ending at
/// `end` at `now`. Marks are at least a second apart and at most about 1024
/// per max age, so the index stays small however often the stream is
/// appended to; age is thus enforced to within max-age / 1024 (or 1 s).
void note_append(Data& d, uint64_t max_age_s, int64_t now, uint64_t end) {
  const int64_t grain = std::max<int64_t>(
      1000, static_cast<int64_t>(std::min<uint64_t>(max_age_s, 1ull << 40)) * 1000 / 1024);
  if (!d.marks.empty()) {
    auto& last = d.marks.back();
    now = std::max(now, last.last_ms);
    if (now < last.first_ms + grain) {
      last.last_ms = now;
      last.end = end;
      return;
    }
  }
  d.marks.push_back(logstore::AgeMark{now, now, end});
}

/// How scan() cuts what it returns into records.
enum class Cut {
  coalesce,  ///< byte streams read as file slices: a run of whole appends as one slice
  exact,     ///< JSON streams: whole appends; an offset inside one is an error
  sliced,    ///< whole appends, the first one sliced at the offset
};

struct CreateOp {
  CreateRequest req;
  StreamStore::Callback<CreateOutcome> done;
};
struct AppendOp {
  AppendRequest req;
  StreamStore::Callback<AppendOutcome> done;
};
struct RemoveOp {
  std::string path;
  StreamStore::Callback<Unit> done;
};
using Op = std::variant<CreateOp, AppendOp, RemoveOp>;

/// The decoded entries of one group, applied at its commit marker.
using ReplayEntry = std::variant<logstore::CreateEntry, logstore::AppendEntry, logstore::MetaEntry,
                                 logstore::RemoveEntry>;

class LogStore final : public StreamStore {
 public:
  LogStore(const LogStoreOptions& opts, FileSystem& fs)
      : opts_(opts),
        fs_(fs),
        stats_(opts.stats ? opts.stats : &own_stats_),
        wal_dir_(opts.path + "/wal"),
        readers_(opts.reader_threads) {
    next_checkpoint_at_ = opts.checkpoint_wal_bytes;
  }

  ~LogStore() override {
    {
      MutexLock lock(q_mu_);
      stopping_ = true;
    }
    q_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  /// One process per data directory: two writers would interleave their
  /// WAL segments. flock, so the lock goes with the process however it ends.
  Status lock_directory() {
    const std::string path = opts_.path + "/dstreamd.lock";
    lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0)
      return Error(errc::storage_failure, "cannot open " + path + ": " + std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      return Error(errc::storage_failure,
                   "another dstreamd is using this data directory (" + path + " is locked)");
    }
    return Unit{};
  }

  Status recover();
  void start() {
    writer_ = std::thread([this] { writer_loop(); });
  }

  void create(CreateRequest req, Callback<CreateOutcome> done) override {
    enqueue(CreateOp{std::move(req), std::move(done)});
  }
  void append(AppendRequest req, Callback<AppendOutcome> done) override {
    enqueue(AppendOp{std::move(req), std::move(done)});
  }
  void remove(std::string path, Callback<Unit> done) override {
    enqueue(RemoveOp{std::move(path), std::move(done)});
  }
  void read(ReadRequest req, Callback<ReadOutcome> done) override {
    if (req.file_slices && !reads_json(req.path)) {
      // A byte stream read answered with file slices copies no data (the
      // socket gets it by sendfile): it costs a lookup and an open(2), less
      // than the two thread hand-offs of the read pool (measured: ~9 futex
      // calls per response), so it runs on the caller's thread, as head()
      // does. JSON streams are read into memory: those go to the pool.
      done(do_read(req));
      return;
    }
    readers_.submit(
        [this, req = std::move(req), done = std::move(done)]() mutable { done(do_read(req)); });
  }
  void head(std::string path, Callback<StreamMeta> done) override;
  void list(ListRequest req, Callback<ListOutcome> done) override {
    // A scan of every stream: on the read pool, not the caller's thread.
    readers_.submit(
        [this, req = std::move(req), done = std::move(done)]() mutable { done(do_list(req)); });
  }
  void touch(const std::string& path) override;
  std::unique_ptr<WatchHandle> watch(const std::string& path,
                                     std::function<void(const CommitEvent&)> on_event) override;
  Status health() override {
    MutexLock lock(broken_mu_);
    if (broken_) return *broken_;
    return Unit{};
  }

 private:
  class Handle;
  friend class Handle;

  // ---- Files.
  std::string data_path(uint64_t id) const {
    char name[64];
    std::snprintf(name, sizeof name, "/streams/%02x/%016llu.dat",
                  static_cast<unsigned>(id % format::kStreamDirFanout),
                  static_cast<unsigned long long>(id));
    return opts_.path + name;
  }

  // ---- Recovery (before start(); single-threaded: no lock is needed, and
  // the analysis is off for the two that fill slots_ and Data).
  Status load_checkpoint(const Checkpoint& cp) DS_NO_THREAD_SAFETY_ANALYSIS;
  Status replay(std::vector<ReplayEntry>& group) DS_NO_THREAD_SAFETY_ANALYSIS;
  Status migrate_rocksdb();
  /// Moves what RocksDB left in the data directory into rocksdb-migrated/.
  Status set_rocksdb_aside();

  // ---- Writer side: everything below runs on writer_ only.

  /// What a request is answered with once its group is committed (called
  /// with null) or has failed (with the error). An append's answer is known
  /// when it is staged, so it is kept in place; anything else is a function.
  /// (A std::function of the append's callback and answer would not fit its
  /// small buffer: one allocation per append.)
  struct Completion {
    std::function<void(const Error*)> fn;  ///< when set, the answer
    Callback<AppendOutcome> append;        ///< else: an append's callback...
    AppendOutcome out;                     ///< ...and what a commit answers it
    void operator()(const Error* e) {
      if (fn) {
        fn(e);
      } else if (e) {
        append(*e);
      } else {
        append(Result<AppendOutcome>(out));
      }
    }
  };

  /// Changes made by one group, not yet committed.
  struct Staging {
    std::unordered_map<std::string, std::shared_ptr<StreamMeta>> streams;  // null = deleted
    std::unordered_map<std::string, DataPtr> created;  // data of streams created in the group
    std::map<std::string, CommitEvent> events;
    std::vector<std::pair<DataPtr, RecordPtr>> appended;  // published after the commit
    std::vector<uint64_t> removed;                        // ids whose files go after the commit
    /// Retention: what each trim does to its stream's Data once committed.
    struct Trim {
      DataPtr data;
      uint64_t earliest;  ///< the new earliest offset (lo)
      uint64_t bytes;     ///< how much it removed
      int64_t at;         ///< when (ms)
    };
    std::vector<Trim> trims;
    /// One per request: called with null after a successful commit, with
    /// the error if the commit fails.
    std::vector<Completion> completions;
    std::string wal;  // the group's framed entries

    /// Empties it for the next group. The writer keeps one Staging and
    /// reuses it, so the buffers and vectors keep their capacity: a group
    /// allocates nothing for them once the writer has seen groups of its
    /// size. What one outsized group grew is given back, so a burst does not
    /// stay resident.
    void reset() {
      // The map nodes are kept (key, value and the event's record vector
      // with them) for the streams of the next group: see stream()/event().
      while (!streams.empty() && spare_streams.size() < kSpareNodes) {
        auto node = streams.extract(streams.begin());
        if (node.key().capacity() > kKeepKeyBytes) continue;  // the node is freed
        node.mapped() = nullptr;
        spare_streams.push_back(std::move(node));
      }
      reset_map(streams);
      reset_map(created);
      while (!events.empty() && spare_events.size() < kSpareNodes) {
        auto node = events.extract(events.begin());
        auto& ev = node.mapped();
        if (ev.records.capacity() > kKeepRecords || node.key().capacity() > kKeepKeyBytes)
          continue;  // the node is freed
        ev.records.clear();
        auto records = std::move(ev.records);
        ev = CommitEvent{};
        ev.records = std::move(records);
        spare_events.push_back(std::move(node));
      }
      events.clear();
      reset_vector(appended);
      reset_vector(removed);
      reset_vector(trims);
      reset_vector(completions);
      if (wal.capacity() > kKeepWalBytes) {
        std::string().swap(wal);
      } else {
        wal.clear();
      }
    }
    /// The staged meta of `path` (null: deleted in this group; a new entry
    /// is null too).
    std::shared_ptr<StreamMeta>& stream(const std::string& path) {
      if (auto it = streams.find(path); it != streams.end()) return it->second;
      if (spare_streams.empty()) return streams[path];
      auto node = std::move(spare_streams.back());
      spare_streams.pop_back();
      node.key() = path;
      return streams.insert(std::move(node)).position->second;
    }
    /// The event `path`'s watchers get at the commit.
    CommitEvent& event(const std::string& path) {
      auto it = events.lower_bound(path);
      if (it != events.end() && it->first == path) return it->second;
      if (spare_events.empty()) return events.try_emplace(it, path)->second;
      auto node = std::move(spare_events.back());
      spare_events.pop_back();
      node.key() = path;
      return events.insert(it, std::move(node))->second;
    }

    std::vector<decltype(streams)::node_type> spare_streams;
    std::vector<decltype(events)::node_type> spare_events;
    static constexpr size_t kSpareNodes = 256;
    static constexpr size_t kKeepRecords = 64;
    static constexpr size_t kKeepKeyBytes = 256;  // a path longer than this is not kept
    static constexpr size_t kKeepElements = 4096;
    static constexpr size_t kKeepWalBytes = size_t{1} << 20;
    template <class V>
    static void reset_vector(V& v) {
      if (v.capacity() > kKeepElements) {
        V().swap(v);
      } else {
        v.clear();
      }
    }
    template <class M>
    static void reset_map(M& m) {
      // clear() touches every bucket: a table a big group grew is dropped.
      if (m.bucket_count() > kKeepElements) {
        M().swap(m);
      } else {
        m.clear();
      }
    }
  };

  void enqueue(Op op) {
    {
      MutexLock lock(q_mu_);
      queue_.push_back(std::move(op));
    }
    q_cv_.notify_one();
  }

  void writer_loop();
  void commit_group(std::vector<Op>& ops, bool maintain);
  void commit(Staging& st, size_t requests);
  void apply(CreateOp& op, Staging& st);
  void apply(AppendOp& op, Staging& st);
  void apply(RemoveOp& op, Staging& st);
  void maintain(Staging& st);
  /// Retention: advances the stream's earliest offset as its settings ask.
  void retain(Staging& st, const std::string& path, const Slot& slot, int64_t now);
  /// Retention: gives back the disk space of what was removed long enough ago.
  void reclaim(const DataPtr& data, int64_t now);
  void forget_idle_producers(int64_t now);
  static constexpr int64_t kProducerSweepMs = 60'000;
  void fail(const std::string& what, const Error& e);
  /// Moves records from memory into files and writes a checkpoint. A
  /// failure costs nothing but time: the WAL still holds everything.
  Status checkpoint();
  /// How far ahead of a WAL segment's end to keep zeros (0: not at all).
  uint64_t preallocate_step() const;
  /// What WalWriter::create preallocates for a new segment.
  uint64_t first_allocation() const;
  /// Keeps zeros preallocated ahead of the WAL's end (after a group).
  void zero_fill_ahead();

  const StreamMeta* current(Staging& st, const std::string& path) const;
  StreamMeta& mut(Staging& st, const std::string& path);
  DataPtr data_of(Staging& st, const std::string& path) const;
  const Slot* published(const std::string& path) const {
    const auto& slots = slots_unlocked();
    auto it = slots.find(path);
    return it == slots.end() ? nullptr : it->second.get();
  }
  /// slots_ without mu_: for the writer thread, the only one that changes
  /// it (holding mu_ exclusively), and for recovery, before it starts.
  const std::unordered_map<std::string, SlotPtr>& slots_unlocked() const
      DS_NO_THREAD_SAFETY_ANALYSIS {
    return slots_;
  }
  bool reads_source(Staging& st, const CreateRequest& req) const {
    if (!req.forked_from) return false;
    if (req.fork_sub_offset > 0) return true;
    const StreamMeta* src = current(st, *req.forked_from);
    return src && req.fork_offset && *req.fork_offset != src->tail &&
           is_json_media_type(media_type(src->config.content_type));
  }
  int64_t effective_access(Staging& st, const std::string& path) const;
  bool expired_now(Staging& st, const std::string& path, int64_t now) const;
  void expire(Staging& st, const std::string& path);
  void hard_delete(Staging& st, const std::string& path);
  void put_meta(Staging& st, const StreamMeta& m) {
    logstore::put_meta(st.wal, logstore::MetaEntry{m});
  }
  template <class T, class F>
  static void on_commit(Staging& st, Callback<T>& done, F&& make) {
    st.completions.push_back(
        Completion{[done = std::move(done), make = std::forward<F>(make)](const Error* e) mutable {
                     if (e) {
                       done(*e);
                     } else {
                       done(make());
                     }
                   },
                   {},
                   {}});
  }
  /// An append answered with `out` once its group is committed.
  static void answer_on_commit(Staging& st, Callback<AppendOutcome>& done,
                               const AppendOutcome& out) {
    st.completions.push_back(Completion{{}, std::move(done), out});
  }
  template <class T>
  static void reject(Staging& st, Callback<T>& done, Error e) {
    on_commit<T>(st, done, [e = std::move(e)]() -> Result<T> { return e; });
  }

  // ---- Reader side.
  Result<ReadOutcome> do_read(const ReadRequest& req);
  Result<ReadOutcome> read_once(const ReadRequest& req, bool last_attempt);
  Result<ListOutcome> do_list(const ListRequest& req) const;
  bool reads_json(const std::string& path) const {
    ReaderLock lock(mu_);
    auto it = slots_.find(path);
    return it != slots_.end() &&
           is_json_media_type(media_type(it->second->meta->config.content_type));
  }
  /// Appends to `out` the records of `seg` from `from` on, up to about
  /// `max_bytes` in all (`used` counts what `out` already holds; at least
  /// one record is returned); sets `truncated` when it stopped early.
  Status scan(const Segment& seg, Offset from, size_t max_bytes, size_t& used, bool& truncated,
              Cut cut, bool slices, std::vector<RecordPtr>& out) const;
  // (`slices`: the caller takes file slices; Cut::coalesce then makes one
  // per run of appends in the file, and falls back to Cut::sliced when it
  // cannot.)
  /// The segments that make up a stream's readable data, oldest first.
  /// Caller holds mu_ (shared or unique) or runs on the writer.
  std::optional<std::vector<Segment>> chain(const StreamMeta& meta, DataPtr own) const;

  LogStoreOptions opts_;
  FileSystem& fs_;
  LogStoreStats own_stats_;
  LogStoreStats* stats_;
  const std::string wal_dir_;

  mutable SharedMutex mu_;
  /// Written by writer_ only (holding mu_ exclusively): see slots_unlocked().
  std::unordered_map<std::string, SlotPtr> slots_ DS_GUARDED_BY(mu_);
  using WatchFn = std::function<void(const CommitEvent&)>;
  std::unordered_map<std::string, std::map<uint64_t, WatchFn>> watchers_ DS_GUARDED_BY(mu_);
  uint64_t next_watch_id_ DS_GUARDED_BY(mu_) = 1;

  // Writer thread only (after recovery).
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, ProducerMap> producers_;
  std::unique_ptr<WalWriter> wal_;
  uint64_t wal_since_checkpoint_ = 0;
  uint64_t last_checkpoint_size_ = 0;
  uint64_t next_checkpoint_at_ = 0;  // wal_since_checkpoint_ that triggers the next one
  int64_t last_producer_sweep_ms_ = 0;
  int64_t last_maintenance_ms_ = 0;
  std::vector<Op> ops_;  // the requests being committed
  Staging staging_;      // the group being built (reused: see Staging::reset())

  // Recovery only: stream id -> path while replaying, and the ids whose
  // files are removed once the replay is done.
  std::unordered_map<uint64_t, std::string> replay_ids_;
  std::vector<uint64_t> replay_removed_;

  // Set when a write or sync fails: the engine stops acknowledging (503,
  // /ready fails) until a restart recovers from the WAL. A failed fdatasync
  // leaves the page cache in an unknown state (the kernel may have dropped
  // the dirty pages), so retrying it could acknowledge data that is lost.
  mutable Mutex broken_mu_;
  std::optional<Error> broken_ DS_GUARDED_BY(broken_mu_);

  Mutex q_mu_;
  std::condition_variable q_cv_;
  /// A vector, not a deque: an Op is too large for more than one in a
  /// deque's block (one allocation each). The writer swaps it with its own
  /// (ops_), so both keep their capacity.
  std::vector<Op> queue_ DS_GUARDED_BY(q_mu_);
  bool stopping_ DS_GUARDED_BY(q_mu_) = false;
  std::thread writer_;
  WorkerPool readers_;
  int lock_fd_ = -1;
};

class LogStore::Handle final : public WatchHandle {
 public:
  Handle(LogStore* store, std::string path, uint64_t id)
      : store_(store), path_(std::move(path)), id_(id) {}
  ~Handle() override {
    if (id_ == 0) return;
    WriterLock lock(store_->mu_);
    auto it = store_->watchers_.find(path_);
    if (it == store_->watchers_.end()) return;
    it->second.erase(id_);
    if (it->second.empty()) store_->watchers_.erase(it);
  }

 private:
  LogStore* store_;
  std::string path_;
  uint64_t id_;
};

// ------------------------------------------------------------------ recovery

Status LogStore::load_checkpoint(const Checkpoint& cp) {
  next_id_ = std::max(next_id_, cp.next_id);
  for (const auto& s : cp.streams) {
    auto slot = std::make_shared<Slot>();
    slot->meta = std::make_shared<const StreamMeta>(s.meta);
    auto data = std::make_shared<Data>(s.meta.id, s.meta.tail.hi, own_base(s.meta));
    data->file_end = s.file_end;
    data->ends = s.record_ends;
    stats_->record_index_entries += data->ends.size();
    data->marks = s.marks;
    // Records past the file are in the checkpoint itself (small streams).
    uint64_t at = data->file_end;
    size_t pos = 0;
    for (uint64_t end : data->ends) {
      if (end <= data->file_end) continue;
      if (end - at > s.tail.size() - pos)
        return Error(errc::storage_failure, "checkpoint: stream " + s.meta.path +
                                                " holds fewer bytes than its record boundaries");
      auto rec = std::make_shared<Record>();
      rec->begin = Offset{data->hi, at};
      rec->end = Offset{data->hi, end};
      rec->bytes = s.tail.substr(pos, end - at);
      pos += end - at;
      at = end;
      data->mem_bytes += rec->bytes.size();
      data->mem.push_back(std::move(rec));
    }
    stats_->memory_bytes += data->mem_bytes;
    // The first boundary of a stream retention has trimmed stands for the
    // whole range it removed (see checkpoint()): it, and any other before
    // the earliest offset, are dropped again.
    stats_->record_index_entries -= data->prune_index(s.meta.earliest.lo);
    slot->data = std::move(data);
    if (!s.producers.empty()) {
      auto& p = producers_[s.meta.id];
      for (const auto& [id, state] : s.producers) p.emplace(id, state);
    }
    next_id_ = std::max(next_id_, s.meta.id + 1);
    replay_ids_[s.meta.id] = s.meta.path;
    slots_[s.meta.path] = std::move(slot);
  }
  return Unit{};
}

Status LogStore::replay(std::vector<ReplayEntry>& group) {
  // Replays what a committed group did, without judging it again: the
  // writer judged it before it was written.
  for (auto& entry : group) {
    if (auto* c = std::get_if<logstore::CreateEntry>(&entry)) {
      auto slot = std::make_shared<Slot>();
      auto data = std::make_shared<Data>(c->meta.id, c->meta.tail.hi, own_base(c->meta));
      uint64_t at = data->base;
      for (auto& bytes : c->records) {
        if (bytes.empty()) continue;
        auto rec = std::make_shared<Record>();
        rec->begin = Offset{data->hi, at};
        rec->end = Offset{data->hi, at + bytes.size()};
        at = rec->end.lo;
        rec->bytes = std::move(bytes);
        data->ends.push_back(at);
        stats_->record_index_entries++;
        data->mem_bytes += rec->bytes.size();
        stats_->memory_bytes += rec->bytes.size();
        data->mem.push_back(std::move(rec));
      }
      if (c->meta.config.retention_max_age_s && at > data->base)
        note_append(*data, *c->meta.config.retention_max_age_s, c->meta.created_ms, at);
      slot->meta = std::make_shared<const StreamMeta>(c->meta);
      slot->data = std::move(data);
      next_id_ = std::max(next_id_, c->meta.id + 1);
      replay_ids_[c->meta.id] = c->meta.path;
      slots_[c->meta.path] = std::move(slot);
      continue;
    }
    uint64_t id = 0;
    if (auto* a = std::get_if<logstore::AppendEntry>(&entry)) id = a->id;
    if (auto* m = std::get_if<logstore::MetaEntry>(&entry)) id = m->meta.id;
    if (auto* r = std::get_if<logstore::RemoveEntry>(&entry)) id = r->id;
    auto path = replay_ids_.find(id);
    if (path == replay_ids_.end()) {
      return Error(errc::storage_failure,
                   "WAL entry for stream id " + std::to_string(id) + " which does not exist");
    }
    auto it = slots_.find(path->second);
    if (it == slots_.end() || it->second->meta->id != id) {
      return Error(errc::storage_failure,
                   "WAL entry for stream id " + std::to_string(id) + " which does not exist");
    }
    Slot& slot = *it->second;
    if (auto* a = std::get_if<logstore::AppendEntry>(&entry)) {
      auto m = std::make_shared<StreamMeta>(*slot.meta);
      Data& d = *slot.data;
      if (!a->bytes.empty()) {
        auto rec = std::make_shared<Record>();
        rec->begin = m->tail;
        rec->end = advance(m->tail, a->bytes.size());
        rec->bytes = std::move(a->bytes);
        m->tail = rec->end;
        d.ends.push_back(rec->end.lo);
        stats_->record_index_entries++;
        d.mem_bytes += rec->bytes.size();
        stats_->memory_bytes += rec->bytes.size();
        d.mem.push_back(std::move(rec));
        if (m->config.retention_max_age_s)
          note_append(d, *m->config.retention_max_age_s, a->now_ms, m->tail.lo);
      }
      if (a->close) {
        m->closed = true;
        m->closed_by = a->producer;
      }
      if (a->stream_seq) m->last_stream_seq = a->stream_seq;
      if (a->producer && a->producer_state) producers_[id][a->producer->id] = *a->producer_state;
      m->last_access_ms = a->now_ms;
      slot.meta = std::move(m);
    } else if (auto* me = std::get_if<logstore::MetaEntry>(&entry)) {
      slot.meta = std::make_shared<const StreamMeta>(std::move(me->meta));
    } else {
      stats_->memory_bytes -= slot.data->mem_bytes;
      stats_->record_index_entries -= slot.data->ends.size();
      producers_.erase(id);
      replay_removed_.push_back(id);
      replay_ids_.erase(path);
      slots_.erase(it);
    }
  }
  return Unit{};
}

Status LogStore::recover() {
  const auto started = std::chrono::steady_clock::now();
  for (const std::string& dir : {opts_.path, wal_dir_, opts_.path + "/streams"}) {
    if (auto made = fs_.make_dirs(dir); !made) return made;
  }
  // A checkpoint that was being written when the process stopped.
  if (auto gone = fs_.remove(opts_.path + "/checkpoint.tmp"); !gone) return gone;
  auto cp = logstore::read_checkpoint(fs_, opts_.path);
  if (!cp) return std::move(cp).error();
  auto segments = logstore::list_segments(fs_, wal_dir_);
  if (!segments) return std::move(segments).error();

  if (logstore::is_rocksdb_dir(opts_.path)) {
    if (!*cp && segments->empty()) {
      if (!opts_.migrate_rocksdb) {
        return Error(errc::storage_failure,
                     opts_.path +
                         " holds a RocksDB database written by an earlier dstreamd; this version "
                         "keeps its data in its own log. Start it once without "
                         "--no-migrate-rocksdb to convert the directory (the RocksDB files are "
                         "kept in rocksdb-migrated/), or point --data-dir elsewhere");
      }
      if (auto migrated = migrate_rocksdb(); !migrated) return migrated;
      cp = logstore::read_checkpoint(fs_, opts_.path);
      if (!cp) return std::move(cp).error();
    } else {
      // A migration stopped after its checkpoint: finish setting RocksDB aside.
      if (auto aside = set_rocksdb_aside(); !aside) return aside;
    }
  }

  uint64_t start = 1;
  if (*cp) {
    if (auto loaded = load_checkpoint(**cp); !loaded) return loaded;
    start = (*cp)->wal_segment;
  } else if (!segments->empty()) {
    start = segments->front();
  }

  uint64_t next_seq = start;
  uint64_t replayed = 0;
  bool cut = false;
  for (uint64_t seq : *segments) {
    const std::string path = logstore::segment_path(wal_dir_, seq);
    if (seq < start || cut) {
      // Before the checkpoint: already in it (a crash came between the
      // checkpoint and their removal). After a cut: not reachable.
      if (cut) log::warn("dropping a WAL segment after a cut", {{"segment", path}});
      if (auto gone = fs_.remove(path); !gone) return gone;
      continue;
    }
    next_seq = seq + 1;
    std::vector<ReplayEntry> group;
    uint64_t pos = format::kWalHeaderSize;
    uint64_t committed = format::kWalHeaderSize;
    std::optional<std::string> problem;
    auto on_entry = [&](format::EntryType type, std::string_view payload) -> Status {
      const uint64_t at = pos;
      pos += format::kEntryHeaderSize + payload.size();
      auto bad = [&](const char* what) -> Status {
        problem = std::string("undecodable ") + what + " entry at byte " + std::to_string(at);
        return Error(errc::storage_failure, *problem);
      };
      switch (type) {
        case format::EntryType::create:
          if (auto e = logstore::decode_create(payload)) {
            group.emplace_back(std::move(*e));
            return Unit{};
          }
          return bad("create");
        case format::EntryType::append:
          if (auto e = logstore::decode_append(payload)) {
            group.emplace_back(std::move(*e));
            return Unit{};
          }
          return bad("append");
        case format::EntryType::meta:
          if (auto e = logstore::decode_meta_entry(payload)) {
            group.emplace_back(std::move(*e));
            return Unit{};
          }
          return bad("meta");
        case format::EntryType::remove:
          if (auto e = logstore::decode_remove(payload)) {
            group.emplace_back(*e);
            return Unit{};
          }
          return bad("remove");
        case format::EntryType::commit: {
          replayed += group.size();
          auto applied = replay(group);
          group.clear();
          if (!applied) {
            problem =
                applied.error().message + " (group ending at byte " + std::to_string(pos) + ")";
            return applied;
          }
          committed = pos;
          return Unit{};
        }
      }
      return bad("unknown");
    };
    auto scan = logstore::scan_segment(fs_, wal_dir_, seq, on_entry);
    if (!scan && !problem) return std::move(scan).error();
    auto file = fs_.open(path, OpenMode::write);
    if (!file) return std::move(file).error();
    auto size = (*file)->size();
    if (!size) return std::move(size).error();
    // Zeros preallocated after the last entry are not data (wal.h).
    const uint64_t data_end = scan ? std::min(scan->data_end, *size) : *size;
    wal_since_checkpoint_ += data_end;
    if (committed >= data_end) continue;
    // A torn tail (a crash in the middle of a group write), a group without
    // its commit marker, or corruption: nothing after the last whole group
    // was ever acknowledged as durable... unless the disk corrupted it, and
    // then it cannot be served either. Cut it, say so, and go on.
    std::string why = problem ? *problem
                      : scan && !scan->stopped_because.empty()
                          ? scan->stopped_because
                          : "a group without its commit marker";
    log::warn("cutting the WAL after its last whole group",
              {{"segment", path},
               {"at", committed},
               {"dropped_bytes", data_end - committed},
               {"reason", why}});
    stats_->recovery_tail_cuts++;
    stats_->recovery_cut_bytes += data_end - committed;
    if (auto t = (*file)->truncate(committed); !t) return t;
    if (auto s = (*file)->sync(); !s) return s;
    cut = true;
  }
  for (uint64_t id : replay_removed_) {
    if (auto gone = fs_.remove(data_path(id)); !gone) return gone;
  }
  replay_removed_.clear();
  replay_ids_.clear();
  // What retention removed before the stop may not have been punched out
  // yet (what is still to do is not persisted): due again from now.
  const int64_t now = opts_.clock->now_ms();
  for (const auto& [path, slot] : slots_unlocked()) {
    if (slot->meta->earliest.lo > slot->data->base)
      slot->data->reclaim_due.emplace_back(now, slot->meta->earliest.lo);
  }
  // This run writes a segment of its own: never append behind a tail that
  // a crash may have torn.
  auto wal = WalWriter::create(fs_, wal_dir_, next_seq, first_allocation());
  if (!wal) return std::move(wal).error();
  wal_ = std::move(*wal);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  stats_->recovery_ms = ms;
  stats_->recovery_replayed = replayed;
  stats_->wal_bytes = wal_since_checkpoint_;
  log::info("embedded store ready", {{"dir", opts_.path},
                                     {"streams", static_cast<uint64_t>(slots_unlocked().size())},
                                     {"replayed_entries", replayed},
                                     {"recovery_ms", static_cast<int64_t>(ms)}});
  return Unit{};
}

Status LogStore::migrate_rocksdb() {
  log::warn("converting a RocksDB data directory to the log format", {{"dir", opts_.path}});
  Checkpoint cp;
  cp.wal_segment = 1;
  auto summary = logstore::import_rocksdb(opts_.path, [&](logstore::ImportedStream&& s) -> Status {
    CheckpointStream cs;
    const uint64_t base = own_base(s.meta);
    uint64_t at = base;
    for (const auto& r : s.records) {
      at += r.size();
      cs.record_ends.push_back(at);
    }
    cs.file_end = base;
    if (at - base >= opts_.inline_bytes) {
      if (auto made =
              fs_.make_dirs(data_path(s.meta.id).substr(0, data_path(s.meta.id).rfind('/')));
          !made)
        return made;
      auto file = fs_.open(data_path(s.meta.id), OpenMode::create_new);
      if (!file) return std::move(file).error();
      uint64_t pos = 0;
      for (const auto& r : s.records) {
        if (auto w = (*file)->write_at(pos, r); !w) return w;
        pos += r.size();
      }
      cs.file_end = at;
    } else {
      for (auto& r : s.records) cs.tail += r;
    }
    cs.meta = std::move(s.meta);
    for (auto& [id, state] : s.producers) cs.producers.emplace_back(id, state);
    cp.next_id = std::max(cp.next_id, cs.meta.id + 1);
    cp.streams.push_back(std::move(cs));
    return Unit{};
  });
  if (!summary) {
    return Error(errc::storage_failure, "converting the RocksDB data in " + opts_.path +
                                            " failed: " + summary.error().message +
                                            " (the RocksDB files are untouched)");
  }
  cp.next_id = std::max(cp.next_id, summary->next_id);
  if (auto synced = fs_.sync_all(opts_.path); !synced) return synced;
  if (auto written = logstore::write_checkpoint(fs_, opts_.path, cp); !written) return written;
  if (auto aside = set_rocksdb_aside(); !aside) return aside;
  log::warn("converted the RocksDB data directory; its files are in rocksdb-migrated/",
            {{"dir", opts_.path},
             {"streams", summary->streams},
             {"records", summary->records},
             {"bytes", summary->bytes}});
  return Unit{};
}

Status LogStore::set_rocksdb_aside() {
  const std::string aside = opts_.path + "/rocksdb-migrated";
  auto names = fs_.list(opts_.path);
  if (!names) return std::move(names).error();
  if (auto made = fs_.make_dirs(aside); !made) return made;
  auto rocks_file = [](const std::string& n) {
    auto ends = [&](std::string_view suffix) {
      return n.size() > suffix.size() &&
             n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    return n == "CURRENT" || n == "IDENTITY" || n == "LOCK" || n == "LOG" ||
           n.starts_with("LOG.old.") || n.starts_with("MANIFEST-") || n.starts_with("OPTIONS-") ||
           ends(".sst") || ends(".log") || ends(".blob");
  };
  for (const auto& n : *names) {
    if (!rocks_file(n)) continue;
    if (auto moved = fs_.rename(opts_.path + "/" + n, aside + "/" + n); !moved) return moved;
  }
  if (auto s = fs_.sync_dir(aside); !s) return s;
  return fs_.sync_dir(opts_.path);
}

// ------------------------------------------------------------------ writer

void LogStore::writer_loop() {
  for (;;) {
    std::vector<Op>& ops = ops_;
    bool stopping = false;
    {
      MutexLock lock(q_mu_);
      // wait_for with a predicate, written out: the analysis cannot see
      // that the predicate runs under q_mu_.
      const auto deadline = std::chrono::steady_clock::now() +
                            std::chrono::milliseconds(opts_.maintenance_interval_ms);
      while (!stopping_ && queue_.empty()) {
        if (q_cv_.wait_until(lock.native(), deadline) == std::cv_status::timeout) break;
      }
      ops.swap(queue_);
      stopping = stopping_;
    }
    int64_t now = opts_.clock->now_ms();
    bool maintain_now = now - last_maintenance_ms_ >= opts_.maintenance_interval_ms;
    if (!ops.empty() || maintain_now) commit_group(ops, maintain_now);
    Staging::reset_vector(ops);
    if (maintain_now) last_maintenance_ms_ = now;
    if (health() && wal_since_checkpoint_ >= next_checkpoint_at_) {
      if (auto done = checkpoint(); done) {
        next_checkpoint_at_ = std::max(opts_.checkpoint_wal_bytes, last_checkpoint_size_);
      } else {
        // Try again after another interval; until then the WAL (which the
        // failed checkpoint did not remove) keeps everything.
        stats_->checkpoint_failures++;
        next_checkpoint_at_ = wal_since_checkpoint_ + opts_.checkpoint_wal_bytes;
        log::error("checkpoint failed; the WAL keeps everything, retrying later",
                   {{"error", done.error().message}});
      }
    }
    if (stopping) {
      MutexLock lock(q_mu_);
      if (queue_.empty()) return;
    }
  }
}

void LogStore::commit_group(std::vector<Op>& ops, bool maintain_now) {
  size_t next = 0;  // ops before it are staged (and answered, or to be)
  while (maintain_now || next < ops.size()) {
    if (auto broken = health(); !broken) {
      for (; next < ops.size(); ++next)
        std::visit([&](auto& o) { o.done(broken.error()); }, ops[next]);
      return;
    }
    Staging& st = staging_;
    st.reset();
    if (maintain_now) maintain(st);
    maintain_now = false;
    size_t requests = 0;
    while (next < ops.size()) {
      // A fork that reads its source's records must not share a group with
      // uncommitted changes (it reads published data): start a new one.
      if (const auto* c = std::get_if<CreateOp>(&ops[next]);
          c && !st.streams.empty() && reads_source(st, c->req)) {
        break;
      }
      std::visit([&](auto& o) { apply(o, st); }, ops[next]);
      ++next;
      ++requests;
    }
    commit(st, requests);
    // Nothing of the group (records, callbacks) is held past its commit.
    st.reset();
  }
}

void LogStore::fail(const std::string& what, const Error& e) {
  stats_->write_failures++;
  log::error("the embedded store stops accepting writes",
             {{"operation", what}, {"error", e.message}});
  MutexLock lock(broken_mu_);
  if (!broken_) {
    broken_ = Error(errc::unavailable, "storage is failing (" + what + ": " + e.message +
                                           "); restart dstreamd to recover");
  }
}

void LogStore::commit(Staging& st, size_t requests) {
  if (!st.wal.empty()) {
    logstore::put_commit(st.wal);
    const auto started = std::chrono::steady_clock::now();
    Status written = wal_->write(st.wal);
    if (!written && written.error().code == errc::insufficient_storage) {
      // The disk is full: the group's write did not complete, so nothing of
      // it can be durable once the segment is cut back to where it was. The
      // group fails (507) and the store stays writable for when there is
      // space again. (A failed fdatasync is another matter: below.)
      if (auto back = wal_->rewind(); !back) {
        fail("WAL rewind after a full disk", back.error());
      } else {
        stats_->no_space_rejections++;
        log::warn("disk full: a group of writes was refused", {{"error", written.error().message}});
      }
      WakeBatch wakes;
      for (auto& f : st.completions) f(&written.error());
      return;
    }
    if (written && opts_.sync) written = wal_->sync();
    if (!written) {
      // Nothing of this group was acknowledged; whether it reached the disk
      // is unknown, so nothing after it may be either: stop writing.
      fail("WAL write", written.error());
      Error e = written.error();
      e.message = "storage write failed: " + e.message;
      WakeBatch wakes;
      for (auto& f : st.completions) f(&e);
      return;
    }
    wal_since_checkpoint_ += st.wal.size();
    stats_->wal_bytes = wal_since_checkpoint_;
    if (opts_.on_group_commit) {
      GroupCommitStats stats;
      stats.requests = requests;
      stats.bytes = st.wal.size();
      stats.write_duration = std::chrono::steady_clock::now() - started;
      opts_.on_group_commit(stats);
    }
  }

  for (const auto& t : st.trims) {
    std::erase_if(t.data->marks,
                  [&](const logstore::AgeMark& mark) { return mark.end <= t.earliest; });
    t.data->reclaim_due.emplace_back(t.at, t.earliest);
    stats_->retention_trimmed_bytes += t.bytes;
  }
  for (auto& [data, rec] : st.appended) {
    WriterLock lock(data->mu);
    data->ends.push_back(rec->end.lo);
    stats_->record_index_entries++;
    data->mem_bytes += rec->bytes.size();
    stats_->memory_bytes += rec->bytes.size();
    data->mem.push_back(std::move(rec));
  }
  {
    WriterLock lock(mu_);
    for (auto& [path, meta] : st.streams) {
      if (!meta) {
        if (auto it = slots_.find(path); it != slots_.end()) {
          stats_->memory_bytes -= it->second->data->mem_bytes;
          stats_->record_index_entries -= it->second->data->writer_ends().size();
          slots_.erase(it);
        }
        continue;
      }
      auto it = slots_.find(path);
      if (it != slots_.end() && it->second->meta->id == meta->id) {
        it->second->meta = std::move(meta);
      } else {
        if (it != slots_.end()) {  // an older incarnation deleted in this group
          stats_->memory_bytes -= it->second->data->mem_bytes;
          stats_->record_index_entries -= it->second->data->writer_ends().size();
        }
        auto slot = std::make_shared<Slot>();
        slot->data = st.created.at(path);
        slot->meta = std::move(meta);
        slots_[path] = std::move(slot);
      }
    }
    for (auto& [path, event] : st.events) {
      auto w = watchers_.find(path);
      if (w == watchers_.end()) continue;
      for (auto& [id, fn] : w->second) fn(event);
      if (event.gone) watchers_.erase(w);
    }
  }
  {
    WakeBatch wakes;  // the requesters' threads are woken once, after all of them
    for (auto& c : st.completions) c(nullptr);
  }
  for (uint64_t id : st.removed) {
    if (auto gone = fs_.remove(data_path(id)); !gone) {
      log::warn("could not remove a deleted stream's file",
                {{"file", data_path(id)}, {"error", gone.error().message}});
    }
  }
  if (wal_->size() >= opts_.segment_bytes) {
    // Not being able to begin a segment is no reason to stop: the current
    // one grows instead, and the next group tries again.
    auto next = WalWriter::create(fs_, wal_dir_, wal_->seq() + 1, first_allocation());
    if (next) {
      wal_ = std::move(*next);
    } else {
      log::warn("cannot begin a WAL segment", {{"error", next.error().message}});
    }
  } else {
    zero_fill_ahead();
  }
}

uint64_t LogStore::preallocate_step() const {
  if (!opts_.sync || opts_.wal_preallocate_bytes == 0) return 0;
  return std::min(opts_.wal_preallocate_bytes, opts_.segment_bytes);
}

uint64_t LogStore::first_allocation() const {
  const uint64_t step = preallocate_step();
  return step == 0 ? 0 : format::kWalHeaderSize + step;
}

void LogStore::zero_fill_ahead() {
  const uint64_t step = preallocate_step();
  // Refilled when less than half a step is left, after the group's
  // completions: the zeros' write and sync delay the next group, once per
  // step, instead of every group paying for a new file size.
  if (step == 0 || wal_->allocated() - wal_->size() >= step / 2) return;
  // Never past the segment's end: a segment is closed once it is that long.
  const uint64_t upto =
      std::min(wal_->size() + step, std::max(opts_.segment_bytes, wal_->allocated()));
  if (upto <= wal_->allocated()) return;
  if (auto s = wal_->preallocate(upto); !s) {
    // Only an optimisation: groups extend the file as before. A disk too
    // full for the zeros refuses groups itself (507) when it comes to them.
    log::warn("cannot preallocate the WAL", {{"error", s.error().message}});
  }
}

Status LogStore::checkpoint() {
  const auto started = std::chrono::steady_clock::now();
  // From here on, new groups go to a new segment: the checkpoint covers
  // every segment before it.
  auto next = WalWriter::create(fs_, wal_dir_, wal_->seq() + 1, first_allocation());
  if (!next) return std::move(next).error();
  const uint64_t old_seq = wal_->seq();
  wal_ = std::move(*next);

  Checkpoint cp;
  cp.wal_segment = wal_->seq();
  cp.next_id = next_id_;
  const auto& slots = slots_unlocked();
  cp.streams.reserve(slots.size());
  std::vector<std::pair<Data*, uint64_t>> moved;  // data whose records went to its file
  std::string buffer;
  std::unordered_map<unsigned, bool> made_dirs;
  for (const auto& [path, slot] : slots) {
    Data& d = *slot->data;
    CheckpointStream cs;
    cs.meta = *slot->meta;
    cs.meta.last_access_ms = slot->last_access();
    if (auto p = producers_.find(d.id); p != producers_.end())
      cs.producers.assign(p->second.begin(), p->second.end());
    // Boundaries retention dropped are written as ONE record from the first
    // own offset to first_begin (the format has no field for where the
    // index begins): it lies before the earliest offset, so it is never
    // read, and the load drops it again.
    if (d.writer_first_begin() > d.base) {
      cs.record_ends.reserve(d.writer_ends().size() + 1);
      cs.record_ends.push_back(d.writer_first_begin());
    }
    cs.record_ends.insert(cs.record_ends.end(), d.writer_ends().begin(), d.writer_ends().end());
    cs.file_end = d.writer_file_end();
    cs.marks = d.marks;
    if (!d.writer_mem().empty()) {
      buffer.clear();
      for (const auto& r : d.writer_mem()) buffer += r->bytes;
      if (cs.file_end > d.base || d.mem_bytes >= opts_.inline_bytes) {
        const std::string file_path = data_path(d.id);
        const unsigned fan = static_cast<unsigned>(d.id % format::kStreamDirFanout);
        if (!made_dirs[fan]) {
          if (auto made = fs_.make_dirs(file_path.substr(0, file_path.rfind('/'))); !made)
            return std::move(made).error();
          made_dirs[fan] = true;
        }
        auto file = fs_.open(file_path, OpenMode::write);
        if (!file) return std::move(file).error();
        if (auto w = (*file)->write_at(cs.file_end - d.base, buffer); !w)
          return std::move(w).error();
        cs.file_end += buffer.size();
        moved.emplace_back(&d, cs.file_end);
      } else {
        cs.tail = buffer;
      }
    }
    cp.streams.push_back(std::move(cs));
  }
  if (opts_.sync) {
    if (auto s = fs_.sync_all(opts_.path); !s) return std::move(s).error();
  }
  if (auto w = logstore::write_checkpoint(fs_, opts_.path, cp); !w) return std::move(w).error();
  for (auto [d, end] : moved) {
    WriterLock lock(d->mu);
    d->file_end = end;
    stats_->memory_bytes -= d->mem_bytes;
    d->mem_bytes = 0;
    d->mem.clear();
    d->mem.shrink_to_fit();
  }
  // The segments before the new one are in the checkpoint now.
  if (auto segments = logstore::list_segments(fs_, wal_dir_)) {
    for (uint64_t seq : *segments) {
      if (seq > old_seq) continue;
      if (auto gone = fs_.remove(logstore::segment_path(wal_dir_, seq)); !gone)
        log::warn("could not remove a WAL segment", {{"error", gone.error().message}});
    }
  }
  (void)fs_.sync_dir(wal_dir_);
  if (auto file = fs_.open(opts_.path + "/checkpoint", OpenMode::read)) {
    if (auto size = (*file)->size()) last_checkpoint_size_ = *size;
  }
  wal_since_checkpoint_ = 0;
  stats_->wal_bytes = 0;
  stats_->checkpoints++;
  stats_->checkpoint_bytes = last_checkpoint_size_;
  stats_->checkpoint_last_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - started)
                                   .count();
  log::debug("checkpoint written", {{"streams", static_cast<uint64_t>(cp.streams.size())},
                                    {"bytes", last_checkpoint_size_},
                                    {"ms", stats_->checkpoint_last_ms.load()}});
  return Unit{};
}

const StreamMeta* LogStore::current(Staging& st, const std::string& path) const {
  if (auto it = st.streams.find(path); it != st.streams.end()) return it->second.get();
  const Slot* slot = published(path);
  return slot ? slot->meta.get() : nullptr;
}

StreamMeta& LogStore::mut(Staging& st, const std::string& path) {
  auto it = st.streams.find(path);
  if (it != st.streams.end() && it->second) return *it->second;
  const Slot* slot = published(path);
  auto copy = std::make_shared<StreamMeta>(*slot->meta);
  copy->last_access_ms = slot->last_access();
  auto& ref = *copy;
  st.stream(path) = std::move(copy);
  return ref;
}

DataPtr LogStore::data_of(Staging& st, const std::string& path) const {
  if (auto it = st.created.find(path); it != st.created.end()) return it->second;
  const Slot* slot = published(path);
  return slot ? slot->data : nullptr;
}

int64_t LogStore::effective_access(Staging& st, const std::string& path) const {
  const StreamMeta* s = current(st, path);
  const Slot* slot = published(path);
  int64_t t = s ? s->last_access_ms : 0;
  if (slot && s && slot->meta->id == s->id) t = std::max(t, slot->last_read_ms.load());
  return t;
}

bool LogStore::expired_now(Staging& st, const std::string& path, int64_t now) const {
  const StreamMeta* s = current(st, path);
  if (!s || s->soft_deleted) return false;
  const auto& c = s->config;
  if (c.expires_at_ms) return now >= *c.expires_at_ms;
  if (c.ttl_seconds)
    return now >= effective_access(st, path) + static_cast<int64_t>(*c.ttl_seconds) * 1000;
  return false;
}

void LogStore::expire(Staging& st, const std::string& path) {
  const StreamMeta* s = current(st, path);
  if (!s) return;
  if (s->ref_count > 0) {
    auto& m = mut(st, path);
    m.soft_deleted = true;
    put_meta(st, m);
    st.event(path).gone = true;
  } else {
    hard_delete(st, path);
  }
}

void LogStore::hard_delete(Staging& st, const std::string& path) {
  // A loop, not recursion: the cascade up a fork chain is as long as the chain.
  std::string at = path;
  for (;;) {
    const StreamMeta* s = current(st, at);
    if (!s) return;
    const StreamMeta meta = *s;
    logstore::put_remove(st.wal, logstore::RemoveEntry{meta.id});
    producers_.erase(meta.id);
    st.removed.push_back(meta.id);
    st.stream(at) = nullptr;
    if (auto made = st.created.find(at); made != st.created.end()) {
      // Created in this group too: its records are never published (they
      // would count as memory and index entries of no stream).
      std::erase_if(st.appended, [&](const auto& a) { return a.first == made->second; });
      st.created.erase(made);
    }
    st.event(at).gone = true;
    if (!meta.fork) return;
    const StreamMeta* src = current(st, meta.fork->source_path);
    if (!src || src->id != meta.fork->source_id) return;
    auto& sm = mut(st, meta.fork->source_path);
    if (sm.ref_count > 0) --sm.ref_count;
    if (sm.ref_count != 0 || !sm.soft_deleted) {
      put_meta(st, sm);
      return;
    }
    at = meta.fork->source_path;  // the last reference to a deleted source: cascade
  }
}

void LogStore::maintain(Staging& st) {
  int64_t now = opts_.clock->now_ms();
  std::vector<std::string> expired;
  for (auto& [path, slot] : slots_unlocked()) {
    const auto& m = *slot->meta;
    // A soft-deleted stream (kept for its forks, which read its data) does
    // not expire again, but its retention goes on: its data ages and is
    // trimmed as it would have been, and its forks get 410 below it.
    if (!m.soft_deleted && slot->expired(now)) {
      expired.push_back(path);
      continue;
    }
    if (!m.soft_deleted && m.config.ttl_seconds &&
        slot->last_read_ms.load() > m.last_access_ms + 1000) {
      put_meta(st, mut(st, path));  // persists the read-renewed access time
    }
    Data& d = *slot->data;
    // The index below the published earliest offset: readers that looked
    // at an older one retry (do_read).
    if (const uint64_t upto = std::min(m.earliest.lo, d.writer_file_end());
        !d.writer_ends().empty() && d.writer_ends().front() <= upto) {
      WriterLock lock(d.mu);
      stats_->record_index_entries -= d.prune_index(upto);
    }
    if (m.config.has_retention()) retain(st, path, *slot, now);
    if (!d.reclaim_due.empty()) reclaim(slot->data, now);
  }
  for (auto& path : expired) expire(st, path);
  if (opts_.producer_idle_ms > 0 && now - last_producer_sweep_ms_ >= kProducerSweepMs) {
    last_producer_sweep_ms_ = now;
    forget_idle_producers(now);
  }
}

void LogStore::retain(Staging& st, const std::string& path, const Slot& slot, int64_t now) {
  // Retention drops whole appends from the front: the new earliest offset
  // is always a record boundary. It is a logical start, persisted in the
  // stream's metadata (a WAL meta entry now, the checkpoint later), so a
  // restart never serves what was removed; the bytes go later (reclaim).
  const StreamMeta& m = *slot.meta;
  Data& d = *slot.data;
  const auto& ends = d.writer_ends();
  uint64_t target = std::max(m.earliest.lo, d.base);
  if (ends.empty() || m.tail.lo <= target) return;
  if (const auto max = m.config.retention_max_bytes; max && m.tail.lo - target > *max) {
    // The first boundary no more than max bytes behind the tail.
    auto it = std::lower_bound(ends.begin(), ends.end(), m.tail.lo - *max);
    if (it != ends.end()) target = std::max(target, *it);
  }
  if (const auto age = m.config.retention_max_age_s) {
    const int64_t age_ms = static_cast<int64_t>(std::min<uint64_t>(*age, 1ull << 40)) * 1000;
    uint64_t aged = 0;
    for (const auto& mark : d.marks) {
      if (mark.last_ms + age_ms > now) break;
      aged = mark.end;
    }
    if (aged > target) {
      auto it = std::upper_bound(ends.begin(), ends.end(), aged);
      if (it != ends.begin()) target = std::max(target, *(it - 1));
    }
  }
  target = std::min(target, m.tail.lo);
  if (target <= std::max(m.earliest.lo, d.base)) return;
  StreamMeta& changed = mut(st, path);
  changed.earliest = Offset{d.hi, target};
  put_meta(st, changed);
  // The marks, the space to give back and the metric change only once the
  // group is durable: a group refused for want of disk space must leave
  // the data exactly as readable as before (nothing punched).
  st.trims.push_back(
      Staging::Trim{slot.data, target, target - std::max(m.earliest.lo, d.base), now});
}

void LogStore::reclaim(const DataPtr& data, int64_t now) {
  // Gives back the disk space of what retention removed once the delay has
  // passed: the file's range is punched out (a sparse file; positions stay
  // where they are). Off the writer thread, on the read pool. What is still
  // in memory is written to the file at the next checkpoint and punched at
  // a later round.
  Data& d = *data;
  uint64_t due = 0;
  for (const auto& [at, offset] : d.reclaim_due) {
    if (at + opts_.retention_reclaim_delay_ms > now) break;
    due = offset;
  }
  const uint64_t upto = std::min(due, d.writer_file_end());
  if (upto <= d.base) return;
  // Whole pages only: a partial page is left for a later round.
  const uint64_t length = (upto - d.base) & ~uint64_t{4095};
  std::erase_if(d.reclaim_due, [&](const auto& r) { return r.second <= upto; });
  if (length <= d.punched) return;
  const uint64_t from = d.punched;
  d.punched = length;
  readers_.submit([path = data_path(d.id), from, length] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;  // removed meanwhile, or not a real file
    if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                    static_cast<off_t>(length - from)) != 0) {
      log::debug("could not punch out a stream file's retained-away range",
                 {{"file", path}, {"error", std::string(std::strerror(errno))}});
    }
    ::close(fd);
  });
}

void LogStore::forget_idle_producers(int64_t now) {
  // Not logged in the WAL: forgetting is a function of time, so a start
  // that brings an idle producer back from the checkpoint or the WAL
  // forgets it again at its first sweep. Until then a retry is judged
  // against the remembered state, which only errs on the side of
  // recognising a duplicate.
  uint64_t held = 0;
  for (auto it = producers_.begin(); it != producers_.end();) {
    auto& map = it->second;
    std::erase_if(map, [&](const auto& p) {
      const bool idle = now - p.second.updated_ms >= opts_.producer_idle_ms;
      if (idle) stats_->producers_forgotten++;
      return idle;
    });
    held += map.size();
    it = map.empty() ? producers_.erase(it) : std::next(it);
  }
  stats_->producers = held;
}

void LogStore::apply(CreateOp& op, Staging& st) {
  auto& req = op.req;
  int64_t now = opts_.clock->now_ms();
  if (expired_now(st, req.path, now)) expire(st, req.path);

  if (const StreamMeta* existing = current(st, req.path)) {
    auto same = decide_create_existing(*existing, req, now);
    if (!same) return reject(st, op.done, std::move(same).error());
    if (same->renew_ttl) {
      auto& m = mut(st, req.path);
      m.last_access_ms = now;
      put_meta(st, m);
    }
    StreamMeta meta = std::move(same->meta);
    return on_commit(st, op.done, [meta]() -> Result<CreateOutcome> {
      return CreateOutcome{false, meta};
    });
  }

  const StreamMeta* src = nullptr;
  if (req.forked_from) {
    if (expired_now(st, *req.forked_from, now)) expire(st, *req.forked_from);
    src = current(st, *req.forked_from);
  }
  auto decided = decide_create_new(req, src, now);
  if (!decided) return reject(st, op.done, std::move(decided).error());
  StreamMeta meta = std::move(decided->meta);
  std::string prefix;
  // JSON streams are read in whole appends (each holds whole messages), so a
  // JSON fork must begin on an append boundary too. A sub-offset fork copies
  // the inherited part of the append at the fork offset into its own data.
  const bool json = is_json_media_type(media_type(meta.config.content_type));
  if (meta.fork && (req.fork_sub_offset > 0 || (json && meta.fork->offset != src->tail))) {
    const Offset at = meta.fork->offset;
    auto segs = chain(*src, data_of(st, *req.forked_from));
    if (!segs) return reject(st, op.done, Error(errc::storage_failure, "fork chain is broken"));
    if (StreamMeta trimmed = *src; (trimmed.earliest = chain_earliest(*segs)) > at) {
      // The append at the fork offset, which this fork must read, is gone.
      return reject(st, op.done, retention_trimmed(trimmed));
    }
    std::vector<RecordPtr> first;
    for (const auto& seg : *segs) {
      if (seg.end <= at) continue;
      size_t used = 0;
      bool truncated = false;
      auto scanned = scan(seg, std::max(at, seg.begin), 1, used, truncated,
                          json ? Cut::exact : Cut::sliced, false, first);
      if (!scanned && scanned.error().code == errc::bad_offset) {
        return reject(st, op.done,
                      Error(errc::bad_offset, "Stream-Fork-Offset " + at.str() +
                                                  " is inside an append: a fork of a JSON "
                                                  "stream must begin at a message boundary"));
      }
      if (!scanned) return reject(st, op.done, std::move(scanned).error());
      break;
    }
    if (req.fork_sub_offset > 0) {
      if (first.empty() || first.front()->begin != at) {
        return reject(
            st, op.done,
            Error(errc::bad_request, "Stream-Fork-Sub-Offset: no data at the fork offset"));
      }
      auto p = fork_prefix(src->config.content_type, first.front()->bytes, req.fork_sub_offset);
      if (!p) return reject(st, op.done, std::move(p).error());
      prefix = std::move(*p);
    }
  }

  if (meta.fork) {
    auto& sm = mut(st, meta.fork->source_path);
    ++sm.ref_count;
    put_meta(st, sm);
  }
  meta.id = next_id_++;
  auto data = std::make_shared<Data>(meta.id, meta.tail.hi, own_base(meta));
  logstore::CreateEntry entry;
  for (std::string* bytes : {&prefix, &decided->initial}) {
    if (bytes->empty()) continue;
    auto rec = std::make_shared<Record>();
    rec->begin = meta.tail;
    rec->end = advance(meta.tail, bytes->size());
    meta.tail = rec->end;
    entry.records.push_back(*bytes);
    rec->bytes = std::move(*bytes);
    st.appended.emplace_back(data, std::move(rec));
  }
  if (meta.config.retention_max_age_s && meta.tail.lo > data->base)
    note_append(*data, *meta.config.retention_max_age_s, meta.created_ms, meta.tail.lo);
  entry.meta = meta;
  logstore::put_create(st.wal, entry);
  st.stream(req.path) = std::make_shared<StreamMeta>(meta);
  st.created[req.path] = std::move(data);
  on_commit(st, op.done, [meta]() -> Result<CreateOutcome> { return CreateOutcome{true, meta}; });
}

void LogStore::apply(AppendOp& op, Staging& st) {
  auto& req = op.req;
  int64_t now = opts_.clock->now_ms();
  if (expired_now(st, req.path, now)) expire(st, req.path);
  const StreamMeta* s = current(st, req.path);
  if (!s) return reject(st, op.done, Error(errc::not_found, "stream not found"));
  if (s->soft_deleted) return reject(st, op.done, Error(errc::gone, "stream has been deleted"));

  const ProducerState* producer = nullptr;
  if (req.producer) {
    if (auto ps = producers_.find(s->id); ps != producers_.end()) {
      if (auto it = ps->second.find(req.producer->id); it != ps->second.end())
        producer = &it->second;
    }
  }
  auto decision = decide_append_taking_body(*s, producer, req, now);
  if (!decision) return reject(st, op.done, std::move(decision).error());

  if (auto* dup = std::get_if<AppendDuplicate>(&*decision)) {
    AppendOutcome out{AppendOutcome::Kind::duplicate, s->tail, s->closed || dup->closed, dup->epoch,
                      dup->seq};
    if (const Slot* slot = published(req.path)) const_cast<Slot*>(slot)->last_read_ms = now;
    return answer_on_commit(st, op.done, out);
  }
  if (std::holds_alternative<AlreadyClosed>(*decision)) {
    AppendOutcome out{AppendOutcome::Kind::already_closed, s->tail, true, {}, {}};
    if (const Slot* slot = published(req.path)) const_cast<Slot*>(slot)->last_read_ms = now;
    return answer_on_commit(st, op.done, out);
  }

  auto& acc = std::get<AppendAccepted>(*decision);
  StreamMeta& m = mut(st, req.path);
  auto& event = st.event(req.path);
  logstore::AppendEntry entry;
  entry.id = m.id;
  entry.now_ms = now;
  entry.close = acc.close;
  entry.producer = req.producer;
  entry.producer_state = acc.producer;
  entry.stream_seq = req.stream_seq;
  entry.bytes = std::move(acc.record);
  logstore::put_append(st.wal, entry);
  if (!entry.bytes.empty()) {
    auto rec = std::make_shared<Record>();
    rec->begin = m.tail;
    rec->end = advance(m.tail, entry.bytes.size());
    rec->bytes = std::move(entry.bytes);
    m.tail = rec->end;
    event.records.push_back(rec);
    DataPtr data = data_of(st, req.path);
    if (m.config.retention_max_age_s)
      note_append(*data, *m.config.retention_max_age_s, now, rec->end.lo);
    st.appended.emplace_back(std::move(data), std::move(rec));
  }
  if (acc.close) {
    m.closed = true;
    m.closed_by = req.producer;
  }
  if (req.stream_seq) m.last_stream_seq = req.stream_seq;
  if (acc.producer) producers_[m.id][req.producer->id] = *acc.producer;
  m.last_access_ms = now;
  event.tail = m.tail;
  event.closed = m.closed;

  AppendOutcome out{AppendOutcome::Kind::appended, m.tail, m.closed, {}, {}};
  if (req.producer) {
    out.producer_epoch = req.producer->epoch;
    out.producer_seq = req.producer->seq;
  }
  answer_on_commit(st, op.done, out);
}

void LogStore::apply(RemoveOp& op, Staging& st) {
  int64_t now = opts_.clock->now_ms();
  if (expired_now(st, op.path, now)) expire(st, op.path);
  const StreamMeta* s = current(st, op.path);
  if (!s) return reject(st, op.done, Error(errc::not_found, "stream not found"));
  if (s->soft_deleted) return reject(st, op.done, Error(errc::gone, "stream has been deleted"));
  if (s->ref_count > 0) {
    auto& m = mut(st, op.path);
    m.soft_deleted = true;
    put_meta(st, m);
    st.event(op.path).gone = true;
  } else {
    hard_delete(st, op.path);
  }
  on_commit(st, op.done, []() -> Result<Unit> { return Unit{}; });
}

// ------------------------------------------------------------------ readers

std::optional<std::vector<Segment>> LogStore::chain(const StreamMeta& meta, DataPtr own) const {
  // A fork's source is always an older incarnation (a smaller id), so the
  // walk ends.
  std::vector<Segment> segs;
  const StreamMeta* m = &meta;
  DataPtr data = std::move(own);
  Offset end = meta.tail;
  for (;;) {
    if (!data) return std::nullopt;
    Offset begin = m->fork ? m->fork->offset : Offset{};
    segs.push_back(Segment{data, begin, end, m->earliest});
    if (!m->fork) {
      std::reverse(segs.begin(), segs.end());
      return segs;
    }
    const auto& slots = slots_unlocked();  // the caller holds mu_ or is the writer
    auto it = slots.find(m->fork->source_path);
    if (it == slots.end() || it->second->meta->id != m->fork->source_id ||
        m->fork->source_id >= m->id)
      return std::nullopt;
    end = m->fork->offset;
    m = it->second->meta.get();
    data = it->second->data;
  }
}

Status LogStore::scan(const Segment& seg, Offset from, size_t max_bytes, size_t& used,
                      bool& truncated, Cut cut, bool slices, std::vector<RecordPtr>& out) const {
  if (from >= seg.end) return Unit{};
  const Data& d = *seg.data;
  ReaderLock lock(d.mu);
  uint64_t lo = std::max(from.lo, d.base);
  const uint64_t stop = seg.end.lo;
  if (lo < d.first_begin) {
    // The boundaries before the earliest offset were dropped after the
    // caller looked at the stream's metadata: do_read() looks again.
    return Error(errc::retention_trimmed, "the data at this offset has been removed by retention");
  }
  // The record holding `lo`.
  size_t i =
      static_cast<size_t>(std::upper_bound(d.ends.begin(), d.ends.end(), lo) - d.ends.begin());
  if (i == d.ends.size()) return Unit{};
  const uint64_t rec_begin = i == 0 ? d.first_begin : d.ends[i - 1];
  if (cut == Cut::coalesce && !slices) cut = Cut::sliced;
  if (cut == Cut::exact && rec_begin < lo) {
    return Error(errc::bad_offset, "offset " + from.str() + " is not at a message boundary");
  }
  const size_t first_mem = d.ends.size() - d.mem.size();
  auto room = [&]() -> uint64_t { return used < max_bytes ? max_bytes - used : 0; };

  // The part in the file.
  if (i < first_mem && lo < stop) {
    std::shared_ptr<File> file;
    {
      auto opened = fs_.open(data_path(d.id), OpenMode::read);
      if (!opened) {
        return Error(errc::storage_failure,
                     "stream data file unreadable: " + opened.error().message);
      }
      file = std::move(*opened);
    }
    const uint64_t file_stop = std::min(d.file_end, stop);
    if (cut == Cut::coalesce && slices && file->native_handle() >= 0) {
      // A byte stream read for a response written straight to the socket:
      // the whole run of appends that fits is ONE file slice (one sendfile),
      // not a record per append. It still ends on an append boundary (or at
      // the segment's end), so a next read begins where an append does.
      if (!out.empty() && room() == 0) {
        truncated = true;
        return Unit{};
      }
      uint64_t end = std::min(d.ends[i], file_stop);  // at least one append
      if (lo + room() > end) {
        const uint64_t budget_end = std::min(lo + room(), file_stop);
        auto past =
            std::upper_bound(d.ends.begin() + static_cast<std::ptrdiff_t>(i),
                             d.ends.begin() + static_cast<std::ptrdiff_t>(first_mem), budget_end);
        if (past != d.ends.begin() + static_cast<std::ptrdiff_t>(i)) end = *(past - 1);
        if (budget_end == file_stop) end = file_stop;
      }
      auto rec = std::make_shared<Record>();
      rec->begin = Offset{d.hi, lo};
      rec->end = Offset{d.hi, end};
      rec->file = FileSlice{file->native_handle(), lo - d.base, file};
      stats_->catchup_file_bytes += end - lo;
      used += end - lo;
      out.push_back(std::move(rec));
      lo = end;
      if (lo < file_stop) {
        truncated = true;
        return Unit{};
      }
    } else {
      // Whole appends: read the run that fits in one read, then cut it.
      // (A fork may end its source's segment inside an append: the last
      // one is then cut at `file_stop`.)
      size_t j = i;
      uint64_t run_end = lo;
      while (j < first_mem && run_end < file_stop) {
        const uint64_t end = std::min(d.ends[j], file_stop);
        const uint64_t size = end - run_end;
        if ((j > i || !out.empty()) && size > room()) break;
        used += size;
        run_end = end;
        ++j;
        if (room() == 0) break;
      }
      std::string buf;
      if (auto r = file->read_at(lo - d.base, run_end - lo, buf); !r) return r;
      if (buf.size() != run_end - lo) {
        return Error(errc::storage_failure, "stream data file " + data_path(d.id) + " is short");
      }
      uint64_t at = lo;
      for (size_t k = i; k < j; ++k) {
        const uint64_t end = std::min(d.ends[k], run_end);
        auto rec = std::make_shared<Record>();
        rec->begin = Offset{d.hi, at};
        rec->end = Offset{d.hi, end};
        rec->bytes = buf.substr(at - lo, end - at);
        at = end;
        out.push_back(std::move(rec));
      }
      lo = run_end;
      if (lo < file_stop) {
        truncated = true;
        return Unit{};
      }
    }
  }

  // The part in memory.
  for (size_t k = std::max(i, first_mem) - first_mem; k < d.mem.size(); ++k) {
    const RecordPtr& r = d.mem[k];
    if (r->begin.lo >= stop) break;
    if (r->end.lo <= lo) continue;
    const uint64_t skip = lo > r->begin.lo ? lo - r->begin.lo : 0;
    const uint64_t end = std::min(r->end.lo, stop);
    const uint64_t size = end - r->begin.lo - skip;
    if (!out.empty() && size > room()) {
      truncated = true;
      break;
    }
    if (skip == 0 && end == r->end.lo) {
      out.push_back(r);
    } else {
      auto part = std::make_shared<Record>();
      part->begin = Offset{d.hi, r->begin.lo + skip};
      part->end = Offset{d.hi, end};
      part->bytes.assign(r->bytes, skip, size);
      out.push_back(std::move(part));
    }
    used += size;
    lo = end;
    if (room() == 0) {
      truncated = true;
      break;
    }
  }
  return Unit{};
}

Result<ReadOutcome> LogStore::do_read(const ReadRequest& req) {
  // A read races with retention only when the writer drops the index below
  // a new earliest offset between the read's look at the metadata and its
  // scan (scan() then refuses with no earliest offset): looking again sees
  // the new earliest offset. Each retry needs another trim to land in that
  // window, so a few are plenty.
  for (int attempt = 0;; ++attempt) {
    auto r = read_once(req, attempt == 3);
    if (r || r.error().code != errc::retention_trimmed || r.error().earliest) return r;
  }
}

Result<ReadOutcome> LogStore::read_once(const ReadRequest& req, bool last_attempt) {
  int64_t now = opts_.clock->now_ms();
  ReadOutcome out;
  std::vector<Segment> segs;
  {
    ReaderLock lock(mu_);
    auto it = slots_.find(req.path);
    if (it == slots_.end() || (!it->second->meta->soft_deleted && it->second->expired(now))) {
      return Error(errc::not_found, "stream not found");
    }
    Slot& slot = *it->second;
    if (slot.meta->soft_deleted) return Error(errc::gone, "stream has been deleted");
    out.meta = *slot.meta;
    auto c = chain(out.meta, slot.data);
    if (!c) return Error(errc::storage_failure, "fork chain is broken");
    segs = std::move(*c);
    int64_t prev = slot.last_read_ms.load();
    while (prev < now && !slot.last_read_ms.compare_exchange_weak(prev, now)) {
    }
  }
  const Offset tail = out.meta.tail;
  const bool json = is_json_media_type(media_type(out.meta.config.content_type));
  out.meta.earliest = chain_earliest(segs);
  switch (req.from.kind) {
    case OffsetSpec::Kind::start:
      out.start = out.meta.earliest;
      break;
    case OffsetSpec::Kind::now:
      out.start = tail;
      break;
    case OffsetSpec::Kind::at:
      out.start = std::min(req.from.at, tail);
      if (out.start < out.meta.earliest) return retention_trimmed(out.meta);
      break;
  }
  out.next = out.start;
  size_t used = 0;
  bool truncated = false;
  for (const auto& seg : segs) {
    if (truncated) break;
    if (seg.end <= out.next) continue;
    const size_t before = out.records.size();
    auto scanned = scan(seg, std::max(out.next, seg.begin), req.max_bytes, used, truncated,
                        json ? Cut::exact : Cut::coalesce, req.file_slices && !json, out.records);
    if (!scanned) {
      Error e = std::move(scanned).error();
      // The last attempt answers 410 all the same, with what it knows.
      if (e.code == errc::retention_trimmed && !e.earliest && last_attempt)
        e.earliest = out.meta.earliest;
      return e;
    }
    if (out.records.size() > before) out.next = out.records.back()->end;
    if (!truncated) out.next = std::max(out.next, seg.end);
  }
  out.up_to_date = out.next >= tail;
  return out;
}

Result<ListOutcome> LogStore::do_list(const ListRequest& req) const {
  if (auto e = list_request_error(req)) return *e;
  const int64_t now = opts_.clock->now_ms();
  // slots_ is a hash map: one pass keeps the limit + 1 smallest wanted paths
  // in a max-heap (O(streams * log limit)). The shared lock makes the page
  // one snapshot of the table, and keeps the keys the heap points to in
  // place; it also holds the writer's publication of the next group back for
  // the whole pass, which grows with the number of streams (not measured
  // yet). An ordered index beside slots_ would make a page O(limit), at the
  // cost of memory per stream.
  auto by_path = [](const std::string* a, const std::string* b) { return *a < *b; };
  std::vector<const std::string*> heap;
  ListOutcome out;
  {
    ReaderLock lock(mu_);
    for (const auto& [path, slot] : slots_) {
      if (!list_wants(req, path)) continue;
      if (slot->meta->soft_deleted || slot->expired(now)) continue;
      if (heap.size() == req.limit + 1) {
        if (!(path < *heap.front())) continue;
        std::pop_heap(heap.begin(), heap.end(), by_path);
        heap.pop_back();
      }
      heap.push_back(&path);
      std::push_heap(heap.begin(), heap.end(), by_path);
    }
    std::sort_heap(heap.begin(), heap.end(), by_path);
    out.more = heap.size() > req.limit;
    if (out.more) heap.pop_back();
    out.paths.reserve(heap.size());
    for (const std::string* path : heap) out.paths.push_back(*path);
  }
  return out;
}

void LogStore::touch(const std::string& path) {
  // Like a read: an in-memory access time, no disk write. The writer's
  // maintenance persists it, at most one write per stream per interval.
  int64_t now = opts_.clock->now_ms();
  ReaderLock lock(mu_);
  auto it = slots_.find(path);
  if (it == slots_.end()) return;
  Slot& slot = *it->second;
  if (slot.meta->soft_deleted || slot.expired(now)) return;  // too late to renew
  int64_t prev = slot.last_read_ms.load();
  while (prev < now && !slot.last_read_ms.compare_exchange_weak(prev, now)) {
  }
}

void LogStore::head(std::string path, Callback<StreamMeta> done) {
  int64_t now = opts_.clock->now_ms();
  Result<StreamMeta> result = Error(errc::not_found, "stream not found");
  {
    ReaderLock lock(mu_);
    auto it = slots_.find(path);
    if (it != slots_.end()) {
      const Slot& slot = *it->second;
      if (slot.meta->soft_deleted) {
        result = Error(errc::gone, "stream has been deleted");
      } else if (!slot.expired(now)) {
        StreamMeta m = *slot.meta;
        m.last_access_ms = slot.last_access();
        if (auto c = chain(m, slot.data)) m.earliest = chain_earliest(*c);
        result = std::move(m);
      }
    }
  }
  done(std::move(result));
}

std::unique_ptr<WatchHandle> LogStore::watch(const std::string& path,
                                             std::function<void(const CommitEvent&)> on_event) {
  int64_t now = opts_.clock->now_ms();
  WriterLock lock(mu_);
  CommitEvent initial;
  auto it = slots_.find(path);
  if (it == slots_.end() || it->second->meta->soft_deleted || it->second->expired(now)) {
    initial.gone = true;
    on_event(initial);
    return std::make_unique<Handle>(this, path, 0);
  }
  initial.tail = it->second->meta->tail;
  initial.closed = it->second->meta->closed;
  on_event(initial);
  uint64_t id = next_watch_id_++;
  watchers_[path].emplace(id, std::move(on_event));
  return std::make_unique<Handle>(this, path, id);
}

}  // namespace

Result<std::unique_ptr<StreamStore>> open_log_store(const LogStoreOptions& options) {
  FileSystem& fs = options.fs ? *options.fs : logstore::posix_fs();
  auto store = std::make_unique<LogStore>(options, fs);
  Status ready = Unit{};
  if (!options.fs) {
    ready = fs.make_dirs(options.path);
    if (ready) ready = store->lock_directory();
  }
  if (ready) ready = store->recover();
  if (auto recovered = std::move(ready); !recovered) {
    Error e = std::move(recovered).error();
    e.message = "cannot open the data directory " + options.path + ": " + e.message;
    return e;
  }
  store->start();
  return std::unique_ptr<StreamStore>(std::move(store));
}

}  // namespace ds
