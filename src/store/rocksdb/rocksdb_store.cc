#include "store/rocksdb/rocksdb_store.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <variant>

#include "common/worker_pool.h"
#include "protocol/headers.h"
#include "protocol/json.h"
#include "store/rocksdb/codec.h"

namespace ds {
namespace {

struct StreamState {
  StreamMeta meta;
  ProducerMap producers;
};
using StatePtr = std::shared_ptr<const StreamState>;

/// The published state of one stream path.
struct Slot {
  StatePtr state;
  /// Last read (ms): reads renew the sliding TTL without a disk write; the
  /// writer folds this into the persisted meta during maintenance.
  std::atomic<int64_t> last_read_ms{0};

  int64_t last_access() const { return std::max(state->meta.last_access_ms, last_read_ms.load()); }
  bool expired(int64_t now) const {
    const auto& m = state->meta;
    if (m.config.expires_at_ms) return now >= *m.config.expires_at_ms;
    if (m.config.ttl_seconds)
      return now >= last_access() + static_cast<int64_t>(*m.config.ttl_seconds) * 1000;
    return false;
  }
};
using SlotPtr = std::shared_ptr<Slot>;

/// A contiguous run of one stream's own records: [begin, end) of stream `id`.
struct Segment {
  uint64_t id;
  Offset begin;
  Offset end;
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

Error rocks_error(const rocksdb::Status& s) {
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return Error(errc::unavailable, s.ToString());
  return Error(errc::storage_failure, s.ToString());
}

Offset advance(Offset o, size_t n) { return Offset{o.hi, o.lo + n}; }

class RocksStore final : public StreamStore {
 public:
  RocksStore(const RocksStoreOptions& opts, std::unique_ptr<rocksdb::DB> db)
      : opts_(opts), db_(std::move(db)), readers_(opts.reader_threads) {}

  ~RocksStore() override {
    {
      std::lock_guard lock(q_mu_);
      stopping_ = true;
    }
    q_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
  }

  Status load();
  static void derive_fork_depths(
      const std::unordered_map<uint64_t, std::shared_ptr<StreamState>>& by_id);
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
    readers_.submit(
        [this, req = std::move(req), done = std::move(done)]() mutable { done(do_read(req)); });
  }
  void head(std::string path, Callback<StreamMeta> done) override;
  void touch(const std::string& path) override;
  std::unique_ptr<WatchHandle> watch(const std::string& path,
                                     std::function<void(const CommitEvent&)> on_event) override;
  Status health() override {
    std::lock_guard lock(broken_mu_);
    if (broken_) return *broken_;
    return Unit{};
  }

 private:
  class Handle;
  friend class Handle;

  // ---- Writer side: everything below runs on writer_ only. ----

  /// Changes made by one group, not yet committed.
  struct Staging {
    std::unordered_map<std::string, std::shared_ptr<StreamState>> streams;  // null = deleted
    std::map<std::string, CommitEvent> events;
    std::vector<std::function<void()>> completions;           // run after a successful commit
    std::vector<std::function<void(const Error&)>> failures;  // run if the commit fails
    rocksdb::WriteBatch batch;
  };

  void enqueue(Op op) {
    {
      std::lock_guard lock(q_mu_);
      queue_.push_back(std::move(op));
    }
    q_cv_.notify_one();
  }

  void writer_loop();
  /// Applies and commits queued requests, in as few groups as possible.
  void commit_group(std::deque<Op>& ops, bool maintain);
  /// Writes one group's batch (synced), then publishes it and completes its requests.
  void commit(Staging& st, size_t requests);
  void apply(CreateOp& op, Staging& st);
  void apply(AppendOp& op, Staging& st);
  void apply(RemoveOp& op, Staging& st);
  void maintain(Staging& st);

  /// The stream at `path` as this group sees it (staged, else published).
  const StreamState* current(Staging& st, const std::string& path) const;
  StreamState& mut(Staging& st, const std::string& path);
  /// Published slot (writer thread: no lock needed, it is the only mutator).
  const Slot* published(const std::string& path) const {
    auto it = slots_.find(path);
    return it == slots_.end() ? nullptr : it->second.get();
  }
  /// Whether creating `req` reads its fork source's records from the
  /// database: a fork at a sub-offset, or a JSON fork short of the source's
  /// tail (its offset must fall on a message boundary).
  bool reads_source(Staging& st, const CreateRequest& req) const {
    if (!req.forked_from) return false;
    if (req.fork_sub_offset > 0) return true;
    const StreamState* src = current(st, *req.forked_from);
    return src && req.fork_offset && *req.fork_offset != src->meta.tail &&
           is_json_media_type(media_type(src->meta.config.content_type));
  }
  int64_t effective_access(Staging& st, const std::string& path) const;
  bool expired_now(Staging& st, const std::string& path, int64_t now) const;
  /// Drops an expired stream: soft-delete if forks read through it, else delete.
  void expire(Staging& st, const std::string& path);
  void hard_delete(Staging& st, const std::string& path);
  void put_meta(Staging& st, const StreamMeta& m) {
    st.batch.Put(rocks::meta_key(m.path), rocks::encode_meta(m));
  }
  template <class T, class F>
  static void on_commit(Staging& st, Callback<T>& done, F&& make) {
    st.completions.push_back([done, make = std::forward<F>(make)]() mutable { done(make()); });
    st.failures.push_back([done](const Error& e) mutable { done(e); });
  }
  template <class T>
  static void reject(Staging& st, Callback<T>& done, Error e) {
    on_commit<T>(st, done, [e = std::move(e)]() -> Result<T> { return e; });
  }

  // ---- Reader side. ----
  Result<ReadOutcome> do_read(const ReadRequest& req);
  /// The record of stream `id` that contains position `at`, if any.
  /// With `whole_records` (JSON streams, whose records hold several
  /// messages), an offset inside a record is rejected instead of sliced.
  Result<std::vector<RecordPtr>> scan(const Segment& seg, Offset from, size_t max_bytes,
                                      size_t& budget_used, bool& truncated,
                                      bool whole_records = false) const;
  /// The segments that make up a stream's readable data, oldest first.
  /// Caller holds mu_ (shared or unique) or runs on the writer.
  std::optional<std::vector<Segment>> chain(const StreamMeta& meta) const;

  RocksStoreOptions opts_;
  std::unique_ptr<rocksdb::DB> db_;

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, SlotPtr> slots_;  // guarded by mu_ (writes by writer_ only)
  using WatchFn = std::function<void(const CommitEvent&)>;
  std::unordered_map<std::string, std::map<uint64_t, WatchFn>> watchers_;  // guarded by mu_
  uint64_t next_watch_id_ = 1;                                             // guarded by mu_

  uint64_t next_id_ = 1;  // writer thread only (after load)

  // Set when a write fails. RocksDB refuses further writes after a failed WAL
  // sync, and a batch that failed may or may not reappear on the next
  // recovery, so the engine stops writing (503, /ready fails) until the
  // process restarts and RocksDB recovers from its WAL. Crash-only recovery:
  // the failed batch was never acknowledged, and it is atomic either way.
  mutable std::mutex broken_mu_;
  std::optional<Error> broken_;  // guarded by broken_mu_
  int64_t last_maintenance_ms_ = 0;

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::deque<Op> queue_;   // guarded by q_mu_
  bool stopping_ = false;  // guarded by q_mu_
  std::thread writer_;
  WorkerPool readers_;
};

class RocksStore::Handle final : public WatchHandle {
 public:
  Handle(RocksStore* store, std::string path, uint64_t id)
      : store_(store), path_(std::move(path)), id_(id) {}
  ~Handle() override {
    if (id_ == 0) return;
    std::unique_lock lock(store_->mu_);
    auto it = store_->watchers_.find(path_);
    if (it == store_->watchers_.end()) return;
    it->second.erase(id_);
    if (it->second.empty()) store_->watchers_.erase(it);
  }

 private:
  RocksStore* store_;
  std::string path_;
  uint64_t id_;
};

Status RocksStore::load() {
  std::unordered_map<uint64_t, std::shared_ptr<StreamState>> by_id;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("M"); it->Valid() && it->key().starts_with("M"); it->Next()) {
    auto meta = rocks::decode_meta(it->value().ToStringView());
    if (!meta)
      return Error(errc::storage_failure, "corrupt stream metadata at " + it->key().ToString());
    auto state = std::make_shared<StreamState>();
    state->meta = std::move(*meta);
    by_id[state->meta.id] = state;
    next_id_ = std::max(next_id_, state->meta.id + 1);
  }
  if (!it->status().ok()) return rocks_error(it->status());
  for (it->Seek("P"); it->Valid() && it->key().starts_with("P"); it->Next()) {
    auto key = it->key().ToStringView();
    if (key.size() < 9) continue;
    auto id = rocks::decode_u64(key.substr(1, 8));
    auto p = rocks::decode_producer(it->value().ToStringView());
    auto s = id ? by_id.find(*id) : by_id.end();
    if (s == by_id.end() || !p) continue;  // orphan of a deleted stream
    s->second->producers.emplace(std::string(key.substr(9)), *p);
  }
  if (!it->status().ok()) return rocks_error(it->status());
  std::string next;
  auto st = db_->Get(rocksdb::ReadOptions(), rocks::kNextIdKey, &next);
  if (st.ok()) {
    if (auto v = rocks::decode_u64(next)) next_id_ = std::max(next_id_, *v);
  } else if (!st.IsNotFound()) {
    return rocks_error(st);
  }
  derive_fork_depths(by_id);
  for (auto& [id, state] : by_id) {
    auto slot = std::make_shared<Slot>();
    slot->state = state;
    slots_.emplace(state->meta.path, std::move(slot));
  }
  return Unit{};
}

void RocksStore::derive_fork_depths(
    const std::unordered_map<uint64_t, std::shared_ptr<StreamState>>& by_id) {
  // Metadata written before kMaxForkDepth holds no fork depth (it decodes as
  // 1): derive every fork's from its chain. A loop with memo, not recursion:
  // such a chain may be deeper than the limit.
  std::unordered_map<std::string, StreamState*> by_path;
  for (const auto& [id, state] : by_id) by_path[state->meta.path] = state.get();
  std::unordered_map<uint64_t, uint64_t> known;  // id -> depth
  std::vector<StreamState*> walk;
  for (const auto& [id, state] : by_id) {
    StreamState* s = state.get();
    uint64_t depth = 0;
    for (;;) {
      if (auto k = known.find(s->meta.id); k != known.end()) {
        depth = k->second;
        break;
      }
      if (!s->meta.fork) {
        depth = 0;
        s->meta.fork_depth = 0;
        known[s->meta.id] = 0;
        break;
      }
      auto src = by_path.find(s->meta.fork->source_path);
      if (src == by_path.end() || src->second->meta.id != s->meta.fork->source_id ||
          s->meta.fork->source_id >= s->meta.id) {
        depth = s->meta.fork_depth;  // a broken chain: keep what was stored
        known[s->meta.id] = depth;
        break;
      }
      walk.push_back(s);
      s = src->second;
    }
    while (!walk.empty()) {
      ++depth;
      walk.back()->meta.fork_depth = depth;
      known[walk.back()->meta.id] = depth;
      walk.pop_back();
    }
  }
}

// ------------------------------------------------------------------ writer

void RocksStore::writer_loop() {
  for (;;) {
    std::deque<Op> ops;
    bool stopping = false;
    {
      std::unique_lock lock(q_mu_);
      q_cv_.wait_for(lock, std::chrono::milliseconds(opts_.maintenance_interval_ms),
                     [this] { return stopping_ || !queue_.empty(); });
      ops.swap(queue_);
      stopping = stopping_;
    }
    int64_t now = opts_.clock->now_ms();
    bool maintain_now = now - last_maintenance_ms_ >= opts_.maintenance_interval_ms;
    if (!ops.empty() || maintain_now) commit_group(ops, maintain_now);
    if (maintain_now) last_maintenance_ms_ = now;
    if (stopping) {
      std::lock_guard lock(q_mu_);
      if (queue_.empty()) return;
    }
  }
}

void RocksStore::commit_group(std::deque<Op>& ops, bool maintain_now) {
  while (maintain_now || !ops.empty()) {
    if (auto broken = health(); !broken) {
      for (auto& op : ops) std::visit([&](auto& o) { o.done(broken.error()); }, op);
      return;
    }
    Staging st;
    if (maintain_now) maintain(st);
    maintain_now = false;
    size_t requests = 0;
    while (!ops.empty()) {
      // A fork that reads its source's records from the database must not
      // share a group with uncommitted changes: start a new one.
      if (const auto* c = std::get_if<CreateOp>(&ops.front());
          c && !st.streams.empty() && reads_source(st, c->req)) {
        break;
      }
      std::visit([&](auto& o) { apply(o, st); }, ops.front());
      ops.pop_front();
      ++requests;
    }
    commit(st, requests);
  }
}

void RocksStore::commit(Staging& st, size_t requests) {
  if (st.batch.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = opts_.sync;
    const auto started = std::chrono::steady_clock::now();
    auto s = db_->Write(wo, &st.batch);
    if (s.ok() && opts_.on_group_commit) {
      GroupCommitStats stats;
      stats.requests = requests;
      stats.bytes = st.batch.GetDataSize();
      stats.write_duration = std::chrono::steady_clock::now() - started;
      opts_.on_group_commit(stats);
    }
    if (!s.ok()) {
      // Nothing of this group happened: forget the staged state and fail
      // every request in it (even rejections, which were judged on it).
      Error e = rocks_error(s);
      e.message = "storage write failed: " + e.message;
      {
        std::lock_guard lock(broken_mu_);
        broken_ = Error(errc::unavailable,
                        "storage is failing (" + s.ToString() + "); restart dstreamd to recover");
      }
      for (auto& f : st.failures) f(e);
      return;
    }
  }

  {
    std::unique_lock lock(mu_);
    for (auto& [path, state] : st.streams) {
      if (!state) {
        slots_.erase(path);
        continue;
      }
      auto it = slots_.find(path);
      if (it != slots_.end() && it->second->state->meta.id == state->meta.id) {
        it->second->state = std::move(state);
      } else {
        auto slot = std::make_shared<Slot>();
        slot->state = std::move(state);
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
  for (auto& c : st.completions) c();
}

const StreamState* RocksStore::current(Staging& st, const std::string& path) const {
  if (auto it = st.streams.find(path); it != st.streams.end()) return it->second.get();
  const Slot* slot = published(path);
  return slot ? slot->state.get() : nullptr;
}

StreamState& RocksStore::mut(Staging& st, const std::string& path) {
  auto it = st.streams.find(path);
  if (it != st.streams.end() && it->second) return *it->second;
  const Slot* slot = published(path);
  auto copy = std::make_shared<StreamState>(*slot->state);
  copy->meta.last_access_ms = slot->last_access();
  auto& ref = *copy;
  st.streams[path] = std::move(copy);
  return ref;
}

int64_t RocksStore::effective_access(Staging& st, const std::string& path) const {
  const StreamState* s = current(st, path);
  const Slot* slot = published(path);
  int64_t t = s ? s->meta.last_access_ms : 0;
  if (slot && s && slot->state->meta.id == s->meta.id) t = std::max(t, slot->last_read_ms.load());
  return t;
}

bool RocksStore::expired_now(Staging& st, const std::string& path, int64_t now) const {
  const StreamState* s = current(st, path);
  if (!s || s->meta.soft_deleted) return false;
  const auto& c = s->meta.config;
  if (c.expires_at_ms) return now >= *c.expires_at_ms;
  if (c.ttl_seconds)
    return now >= effective_access(st, path) + static_cast<int64_t>(*c.ttl_seconds) * 1000;
  return false;
}

void RocksStore::expire(Staging& st, const std::string& path) {
  const StreamState* s = current(st, path);
  if (!s) return;
  if (s->meta.ref_count > 0) {
    auto& m = mut(st, path).meta;
    m.soft_deleted = true;
    put_meta(st, m);
    st.events[path].gone = true;
  } else {
    hard_delete(st, path);
  }
}

void RocksStore::hard_delete(Staging& st, const std::string& path) {
  // A loop, not recursion: the cascade up a fork chain is as long as the
  // chain, and a chain written before kMaxForkDepth existed may be longer.
  std::string at = path;
  for (;;) {
    const StreamState* s = current(st, at);
    if (!s) return;
    const StreamMeta meta = s->meta;
    st.batch.Delete(rocks::meta_key(at));
    st.batch.DeleteRange(rocks::data_prefix(meta.id), rocks::data_prefix(meta.id + 1));
    st.batch.DeleteRange(rocks::producer_prefix(meta.id), rocks::producer_prefix(meta.id + 1));
    st.streams[at] = nullptr;
    st.events[at].gone = true;
    if (!meta.fork) return;
    const StreamState* src = current(st, meta.fork->source_path);
    if (!src || src->meta.id != meta.fork->source_id) return;
    auto& sm = mut(st, meta.fork->source_path).meta;
    if (sm.ref_count > 0) --sm.ref_count;
    if (sm.ref_count != 0 || !sm.soft_deleted) {
      put_meta(st, sm);
      return;
    }
    at = meta.fork->source_path;  // the last reference to a deleted source: cascade
  }
}

void RocksStore::maintain(Staging& st) {
  int64_t now = opts_.clock->now_ms();
  std::vector<std::string> expired;
  for (auto& [path, slot] : slots_) {
    const auto& m = slot->state->meta;
    if (m.soft_deleted) continue;
    if (slot->expired(now)) {
      expired.push_back(path);
    } else if (m.config.ttl_seconds && slot->last_read_ms.load() > m.last_access_ms + 1000) {
      auto& mm = mut(st, path).meta;  // persists the read-renewed access time
      put_meta(st, mm);
    }
  }
  for (auto& path : expired) expire(st, path);
}

void RocksStore::apply(CreateOp& op, Staging& st) {
  auto& req = op.req;
  int64_t now = opts_.clock->now_ms();
  if (expired_now(st, req.path, now)) expire(st, req.path);

  if (const StreamState* existing = current(st, req.path)) {
    auto same = decide_create_existing(existing->meta, req, now);
    if (!same) return reject(st, op.done, std::move(same).error());
    if (same->renew_ttl) {
      auto& m = mut(st, req.path).meta;
      m.last_access_ms = now;
      put_meta(st, m);
    }
    StreamMeta meta = std::move(same->meta);
    return on_commit(st, op.done, [meta]() -> Result<CreateOutcome> {
      return CreateOutcome{false, meta};
    });
  }

  const StreamState* src = nullptr;
  if (req.forked_from) {
    if (expired_now(st, *req.forked_from, now)) expire(st, *req.forked_from);
    src = current(st, *req.forked_from);
  }
  auto decided = decide_create_new(req, src ? &src->meta : nullptr, now);
  if (!decided) return reject(st, op.done, std::move(decided).error());
  StreamMeta meta = std::move(decided->meta);
  std::string prefix;
  // JSON streams are read in whole appends (each holds whole messages), so a
  // JSON fork must begin on a record boundary too: a fork inside an append
  // would serve half a message. A sub-offset fork copies the inherited part
  // of the append at the fork offset (whole messages) into its own storage.
  const bool json = is_json_media_type(media_type(meta.config.content_type));
  if (meta.fork && (req.fork_sub_offset > 0 || (json && meta.fork->offset != src->meta.tail))) {
    const Offset at = meta.fork->offset;
    const bool whole_records = json;  // bytes: a sub-offset fork may anchor mid-append
    auto segs = chain(src->meta);
    if (!segs) return reject(st, op.done, Error(errc::storage_failure, "fork chain is broken"));
    std::optional<RecordPtr> first;
    for (const auto& seg : *segs) {
      if (seg.end <= at) continue;
      size_t used = 0;
      bool truncated = false;
      auto recs = scan(seg, std::max(at, seg.begin), 1, used, truncated, whole_records);
      if (!recs && recs.error().code == errc::bad_offset) {
        return reject(st, op.done,
                      Error(errc::bad_offset, "Stream-Fork-Offset " + at.str() +
                                                  " is inside an append: a fork of a JSON "
                                                  "stream must begin at a message boundary"));
      }
      if (!recs) return reject(st, op.done, std::move(recs).error());
      if (!recs->empty()) first = recs->front();
      break;
    }
    if (req.fork_sub_offset > 0) {
      if (!first || (*first)->begin != at) {
        return reject(
            st, op.done,
            Error(errc::bad_request, "Stream-Fork-Sub-Offset: no data at the fork offset"));
      }
      auto p = fork_prefix(src->meta.config.content_type, (*first)->bytes, req.fork_sub_offset);
      if (!p) return reject(st, op.done, std::move(p).error());
      prefix = std::move(*p);
    }
  }
  auto initial = std::optional<std::string>(std::move(decided->initial));

  if (meta.fork) {
    auto& sm = mut(st, meta.fork->source_path).meta;
    ++sm.ref_count;
    put_meta(st, sm);
  }
  meta.id = next_id_++;
  st.batch.Put(rocks::kNextIdKey, rocks::encode_u64(next_id_));
  for (const std::string* data : {&prefix, &*initial}) {
    if (data->empty()) continue;
    st.batch.Put(rocks::data_key(meta.id, meta.tail.lo), *data);
    meta.tail = advance(meta.tail, data->size());
  }
  put_meta(st, meta);
  auto state = std::make_shared<StreamState>();
  state->meta = meta;
  st.streams[req.path] = std::move(state);
  on_commit(st, op.done, [meta]() -> Result<CreateOutcome> { return CreateOutcome{true, meta}; });
}

void RocksStore::apply(AppendOp& op, Staging& st) {
  auto& req = op.req;
  int64_t now = opts_.clock->now_ms();
  if (expired_now(st, req.path, now)) expire(st, req.path);
  const StreamState* s = current(st, req.path);
  if (!s) return reject(st, op.done, Error(errc::not_found, "stream not found"));
  if (s->meta.soft_deleted)
    return reject(st, op.done, Error(errc::gone, "stream has been deleted"));

  const ProducerState* producer = nullptr;
  if (req.producer) {
    auto it = s->producers.find(req.producer->id);
    if (it != s->producers.end()) producer = &it->second;
  }
  auto decision = decide_append(s->meta, producer, req, now);
  if (!decision) return reject(st, op.done, std::move(decision).error());

  if (auto* dup = std::get_if<AppendDuplicate>(&*decision)) {
    AppendOutcome out{AppendOutcome::Kind::duplicate, s->meta.tail, s->meta.closed || dup->closed,
                      dup->epoch, dup->seq};
    if (const Slot* slot = published(req.path)) const_cast<Slot*>(slot)->last_read_ms = now;
    return on_commit(st, op.done, [out]() -> Result<AppendOutcome> { return out; });
  }
  if (std::holds_alternative<AlreadyClosed>(*decision)) {
    AppendOutcome out{AppendOutcome::Kind::already_closed, s->meta.tail, true, {}, {}};
    if (const Slot* slot = published(req.path)) const_cast<Slot*>(slot)->last_read_ms = now;
    return on_commit(st, op.done, [out]() -> Result<AppendOutcome> { return out; });
  }

  auto& acc = std::get<AppendAccepted>(*decision);
  StreamState& w = mut(st, req.path);
  auto& m = w.meta;
  auto& event = st.events[req.path];
  if (!acc.record.empty()) {
    auto rec = std::make_shared<Record>();
    rec->begin = m.tail;
    rec->end = advance(m.tail, acc.record.size());
    st.batch.Put(rocks::data_key(m.id, m.tail.lo), acc.record);
    rec->bytes = std::move(acc.record);
    m.tail = rec->end;
    event.records.push_back(std::move(rec));
  }
  if (acc.close) {
    m.closed = true;
    m.closed_by = req.producer;
  }
  if (req.stream_seq) m.last_stream_seq = req.stream_seq;
  if (acc.producer) {
    w.producers[req.producer->id] = *acc.producer;
    st.batch.Put(rocks::producer_key(m.id, req.producer->id),
                 rocks::encode_producer(*acc.producer));
  }
  m.last_access_ms = now;
  put_meta(st, m);
  event.tail = m.tail;
  event.closed = m.closed;

  AppendOutcome out{AppendOutcome::Kind::appended, m.tail, m.closed, {}, {}};
  if (req.producer) {
    out.producer_epoch = req.producer->epoch;
    out.producer_seq = req.producer->seq;
  }
  on_commit(st, op.done, [out]() -> Result<AppendOutcome> { return out; });
}

void RocksStore::apply(RemoveOp& op, Staging& st) {
  int64_t now = opts_.clock->now_ms();
  if (expired_now(st, op.path, now)) expire(st, op.path);
  const StreamState* s = current(st, op.path);
  if (!s) return reject(st, op.done, Error(errc::not_found, "stream not found"));
  if (s->meta.soft_deleted)
    return reject(st, op.done, Error(errc::gone, "stream has been deleted"));
  if (s->meta.ref_count > 0) {
    auto& m = mut(st, op.path).meta;
    m.soft_deleted = true;
    put_meta(st, m);
    st.events[op.path].gone = true;
  } else {
    hard_delete(st, op.path);
  }
  on_commit(st, op.done, []() -> Result<Unit> { return Unit{}; });
}

// ------------------------------------------------------------------ readers

std::optional<std::vector<Segment>> RocksStore::chain(const StreamMeta& meta) const {
  // A fork's source is always an older incarnation (a smaller id), so the
  // walk ends; no depth cut-off (kMaxForkDepth bounds new chains, and a chain
  // written before it existed must stay readable).
  std::vector<Segment> segs;
  const StreamMeta* m = &meta;
  Offset end = meta.tail;
  for (;;) {
    Offset begin = m->fork ? m->fork->offset : Offset{};
    segs.push_back(Segment{m->id, begin, end});
    if (!m->fork) {
      std::reverse(segs.begin(), segs.end());
      return segs;
    }
    auto it = slots_.find(m->fork->source_path);
    if (it == slots_.end() || it->second->state->meta.id != m->fork->source_id ||
        m->fork->source_id >= m->id)
      return std::nullopt;
    end = m->fork->offset;
    m = &it->second->state->meta;
  }
}

Result<std::vector<RecordPtr>> RocksStore::scan(const Segment& seg, Offset from, size_t max_bytes,
                                                size_t& used, bool& truncated,
                                                bool whole_records) const {
  std::vector<RecordPtr> out;
  if (from >= seg.end) return out;
  rocksdb::ReadOptions ro;
  std::string upper = rocks::data_key(seg.id, seg.end.lo);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  const std::string prefix = rocks::data_prefix(seg.id);
  std::string start_key = rocks::data_key(seg.id, from.lo);
  it->SeekForPrev(start_key);
  if (!it->Valid() || !it->key().starts_with(prefix)) it->Seek(start_key);
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    uint64_t begin = rocks::data_key_position(it->key().ToStringView());
    auto value = it->value().ToStringView();
    uint64_t end = begin + value.size();
    if (end <= from.lo) continue;  // the record before `from`
    if (!out.empty() && used + value.size() > max_bytes) {
      truncated = true;
      break;
    }
    auto rec = std::make_shared<Record>();
    uint64_t skip = from.lo > begin ? from.lo - begin : 0;
    if (skip > 0 && whole_records) {
      return Error(errc::bad_offset, "offset " + from.str() + " is not at a message boundary");
    }
    uint64_t stop = std::min(end, seg.end.lo);
    rec->begin = Offset{seg.end.hi, begin + skip};
    rec->end = Offset{seg.end.hi, stop};
    rec->bytes.assign(value.substr(skip, stop - begin - skip));
    used += rec->bytes.size();
    out.push_back(std::move(rec));
    if (used >= max_bytes) {
      truncated = true;
      break;
    }
  }
  if (!it->status().ok()) return rocks_error(it->status());
  return out;
}

Result<ReadOutcome> RocksStore::do_read(const ReadRequest& req) {
  int64_t now = opts_.clock->now_ms();
  ReadOutcome out;
  std::vector<Segment> segs;
  {
    std::shared_lock lock(mu_);
    auto it = slots_.find(req.path);
    if (it == slots_.end() || (!it->second->state->meta.soft_deleted && it->second->expired(now))) {
      return Error(errc::not_found, "stream not found");
    }
    Slot& slot = *it->second;
    if (slot.state->meta.soft_deleted) return Error(errc::gone, "stream has been deleted");
    out.meta = slot.state->meta;
    auto c = chain(out.meta);
    if (!c) return Error(errc::storage_failure, "fork chain is broken");
    segs = std::move(*c);
    int64_t prev = slot.last_read_ms.load();
    while (prev < now && !slot.last_read_ms.compare_exchange_weak(prev, now)) {
    }
  }
  const Offset tail = out.meta.tail;
  const bool json = is_json_media_type(media_type(out.meta.config.content_type));
  switch (req.from.kind) {
    case OffsetSpec::Kind::start:
      out.start = Offset{};
      break;
    case OffsetSpec::Kind::now:
      out.start = tail;
      break;
    case OffsetSpec::Kind::at:
      out.start = std::min(req.from.at, tail);
      break;
  }
  out.next = out.start;
  size_t used = 0;
  bool truncated = false;
  for (const auto& seg : segs) {
    if (truncated) break;
    if (seg.end <= out.next) continue;
    auto recs = scan(seg, std::max(out.next, seg.begin), req.max_bytes, used, truncated, json);
    if (!recs) return std::move(recs).error();
    for (auto& r : *recs) {
      out.next = r->end;
      out.records.push_back(std::move(r));
    }
    if (!truncated) out.next = std::max(out.next, seg.end);
  }
  out.up_to_date = out.next >= tail;
  return out;
}

void RocksStore::touch(const std::string& path) {
  // Like a read: an in-memory access time, no disk write. The writer's
  // maintenance (every maintenance_interval_ms) persists it, at most one
  // synced write per stream per interval however many readers touch.
  int64_t now = opts_.clock->now_ms();
  std::shared_lock lock(mu_);
  auto it = slots_.find(path);
  if (it == slots_.end()) return;
  Slot& slot = *it->second;
  if (slot.state->meta.soft_deleted || slot.expired(now)) return;  // too late to renew
  int64_t prev = slot.last_read_ms.load();
  while (prev < now && !slot.last_read_ms.compare_exchange_weak(prev, now)) {
  }
}

void RocksStore::head(std::string path, Callback<StreamMeta> done) {
  int64_t now = opts_.clock->now_ms();
  Result<StreamMeta> result = Error(errc::not_found, "stream not found");
  {
    std::shared_lock lock(mu_);
    auto it = slots_.find(path);
    if (it != slots_.end()) {
      const Slot& slot = *it->second;
      if (slot.state->meta.soft_deleted) {
        result = Error(errc::gone, "stream has been deleted");
      } else if (!slot.expired(now)) {
        StreamMeta m = slot.state->meta;
        m.last_access_ms = slot.last_access();
        result = std::move(m);
      }
    }
  }
  done(std::move(result));
}

std::unique_ptr<WatchHandle> RocksStore::watch(const std::string& path,
                                               std::function<void(const CommitEvent&)> on_event) {
  int64_t now = opts_.clock->now_ms();
  std::unique_lock lock(mu_);
  CommitEvent initial;
  auto it = slots_.find(path);
  if (it == slots_.end() || it->second->state->meta.soft_deleted || it->second->expired(now)) {
    initial.gone = true;
    on_event(initial);
    return std::make_unique<Handle>(this, path, 0);
  }
  initial.tail = it->second->state->meta.tail;
  initial.closed = it->second->state->meta.closed;
  on_event(initial);
  uint64_t id = next_watch_id_++;
  watchers_[path].emplace(id, std::move(on_event));
  return std::make_unique<Handle>(this, path, id);
}

}  // namespace

Result<std::unique_ptr<StreamStore>> open_rocksdb_store(const RocksStoreOptions& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.IncreaseParallelism(2);
  db_options.max_background_jobs = 2;
  if (options.env) db_options.env = options.env;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(db_options, options.path, &raw);
  if (!s.ok())
    return Error(errc::storage_failure, "cannot open " + options.path + ": " + s.ToString());
  auto store = std::make_unique<RocksStore>(options, std::unique_ptr<rocksdb::DB>(raw));
  auto loaded = store->load();
  if (!loaded) return std::move(loaded).error();
  store->start();
  return std::unique_ptr<StreamStore>(std::move(store));
}

}  // namespace ds
