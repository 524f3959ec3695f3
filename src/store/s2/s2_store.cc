#include "store/s2/s2_store.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/worker_pool.h"
#include "protocol/headers.h"
#include "protocol/json.h"
#include "store/meta_codec.h"

namespace ds {
namespace {

using s2::AppendInput;
using s2::AppendRecord;
using s2::Header;
using s2::S2Error;
using s2::SequencedRecord;

// Record headers. Every record dstreamd writes carries `ds` = its kind.
constexpr std::string_view kKind = "ds";
constexpr std::string_view kMeta =
    "meta";  // a stream incarnation begins; body = encoded StreamMeta
constexpr std::string_view kData = "data";    // body = the append's bytes
constexpr std::string_view kClose = "close";  // close without data
constexpr std::string_view kGone = "gone";    // deletion; `g` = soft | hard
constexpr std::string_view kRef = "ref";      // fork reference count change; `r` = +1 | -1
constexpr std::string_view kTouch = "touch";  // sliding-TTL renewal by a read
constexpr std::string_view kProducerId = "p";
constexpr std::string_view kProducerEpoch = "pe";
constexpr std::string_view kProducerSeq = "ps";
constexpr std::string_view kStreamSeq = "ss";
constexpr std::string_view kCloses = "c";
constexpr std::string_view kWriteId = "w";

/// Body bytes S2 accepts in one record after our headers (1 MiB metered per batch).
constexpr size_t kMaxRecordBody = size_t{1000} * 1024;

const std::string* find_header(const SequencedRecord& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

Error s2_error(const S2Error& e) {
  switch (e.kind) {
    case S2Error::Kind::not_found:
      return Error(errc::not_found, "stream not found");
    case S2Error::Kind::unavailable:
    case S2Error::Kind::ambiguous:
    case S2Error::Kind::deletion_pending:
      return Error(errc::unavailable, "S2 is unavailable: " + e.message);
    default:
      return Error(errc::storage_failure, "S2 rejected a request: " + e.message);
  }
}

template <class T, class Fn>
s2::S2Result<T> wait_for(Fn&& start) {
  auto promise = std::make_shared<std::promise<s2::S2Result<T>>>();
  auto future = promise->get_future();
  start([promise](s2::S2Result<T> r) { promise->set_value(std::move(r)); });
  return future.get();
}

/// A mutex granted in ticket order: a stream's writes run in the order they
/// were submitted (an in-order pipeline of producer seqs must not turn into
/// false sequence gaps). BasicLockable, so lock_guard works for internal use.
class FifoMutex {
 public:
  uint64_t ticket() {
    std::lock_guard lock(m_);
    return next_++;
  }
  void lock_ticket(uint64_t t) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return serving_ == t; });
  }
  void lock() { lock_ticket(ticket()); }
  void unlock() {
    {
      std::lock_guard lock(m_);
      ++serving_;
    }
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  uint64_t next_ = 0;     // guarded by m_
  uint64_t serving_ = 0;  // guarded by m_
};

/// One stream as this node knows it: the fold of its S2 records up to next_seq.
struct Cache {
  explicit Cache(std::string n) : name(std::move(n)) {}
  const std::string name;

  FifoMutex write_mu;  // serialises this node's writes to the stream, in submission order

  std::mutex mu;  // guards everything below
  bool loaded = false;
  uint64_t next_seq = 0;   // S2 seq after the last folded record
  bool exists = false;     // a live (or soft-deleted) incarnation
  uint64_t start_seq = 0;  // seq of the incarnation's meta record
  uint64_t last_hi = 0;    // hi of the latest incarnation ever seen here
  bool ever_existed = false;
  StreamMeta meta;  // meta.id = hi; meta.tail = (hi, next_seq)
  ProducerMap producers;
  int64_t last_access_ms = 0;
  std::deque<std::string> recent_writes;  // write ids, to settle ambiguous appends
  std::map<uint64_t, std::function<void(const CommitEvent&)>> watchers;
  uint64_t next_watch = 1;
  std::unique_ptr<s2::ReadSession> session;
  uint64_t session_gen = 0;
  int session_failures = 0;  // consecutive sessions that ended without a batch
};
using CachePtr = std::shared_ptr<Cache>;

class S2Store final : public StreamStore, public std::enable_shared_from_this<S2Store> {
 public:
  explicit S2Store(const S2StoreOptions& o) : opts_(o), api_(*o.api), pool_(32) {}
  ~S2Store() override {
    std::lock_guard lock(mu_);
    for (auto& [name, c] : caches_) {
      std::unique_ptr<s2::ReadSession> s;
      {
        std::lock_guard cl(c->mu);
        s = std::move(c->session);
        c->watchers.clear();
      }
    }
  }

  void create(CreateRequest req, Callback<CreateOutcome> done) override {
    auto c = cache(req.path);
    uint64_t t = c->write_mu.ticket();
    pool_.submit([this, c, t, req = std::move(req), done = std::move(done)]() mutable {
      c->write_mu.lock_ticket(t);
      std::lock_guard w(c->write_mu, std::adopt_lock);
      done(do_create(req));
    });
  }
  void append(AppendRequest req, Callback<AppendOutcome> done) override {
    auto c = cache(req.path);
    uint64_t t = c->write_mu.ticket();
    pool_.submit([this, c, t, req = std::move(req), done = std::move(done)]() mutable {
      c->write_mu.lock_ticket(t);
      std::lock_guard w(c->write_mu, std::adopt_lock);
      done(do_append(req));
    });
  }
  void read(ReadRequest req, Callback<ReadOutcome> done) override {
    pool_.submit(
        [this, req = std::move(req), done = std::move(done)]() mutable { done(do_read(req)); });
  }
  void touch(const std::string& path) override {
    // Minimal: maybe_touch (rate-limited per stream) on the worker pool.
    pool_.submit([this, c = cache(path)] { maybe_touch(*c); });
  }
  void head(std::string path, Callback<StreamMeta> done) override {
    pool_.submit(
        [this, path = std::move(path), done = std::move(done)]() mutable { done(do_head(path)); });
  }
  void remove(std::string path, Callback<Unit> done) override {
    auto c = cache(path);
    uint64_t t = c->write_mu.ticket();
    pool_.submit([this, c, t, path = std::move(path), done = std::move(done)]() mutable {
      c->write_mu.lock_ticket(t);
      std::lock_guard w(c->write_mu, std::adopt_lock);
      done(do_remove(path));
    });
  }
  std::unique_ptr<WatchHandle> watch(const std::string& path,
                                     std::function<void(const CommitEvent&)> on_event) override;
  Status health() override { return Unit{}; }

 private:
  class Handle;

  CachePtr cache(const std::string& name) {
    std::lock_guard lock(mu_);
    auto& c = caches_[name];
    if (!c) c = std::make_shared<Cache>(name);
    return c;
  }

  // ---- folding: the one place S2 records become stream state ----

  /// Folds records (in seq order) into the cache and tells watchers. Records
  /// below next_seq were folded already; a jump forward is a trimmed range.
  void fold_locked(Cache& c, const std::vector<SequencedRecord>& records);
  Status catch_up(Cache& c);  // reads forward to S2's current tail
  Status catch_up_to(Cache& c, uint64_t tail);

  // ---- writes ----
  struct Attempt {
    AppendInput input;
    std::string write_id;
  };
  /// Appends with match_seq_num = the folded tail. Returns nullopt on success
  /// (records folded), or an error; sets `conflict` when another writer won.
  std::optional<Error> try_append(Cache& c, std::vector<AppendRecord> records, bool& conflict);

  Result<CreateOutcome> do_create(const CreateRequest& req);
  Result<AppendOutcome> do_append(const AppendRequest& req);
  Result<ReadOutcome> do_read(const ReadRequest& req);
  Result<StreamMeta> do_head(const std::string& path);
  Result<Unit> do_remove(const std::string& path);
  /// Deletes a stream whose write lock is held (soft if forks remain) and
  /// cascades up the fork chain. With `collect`, removes a soft-deleted
  /// stream whose last fork reference is going away.
  std::optional<Error> delete_locked(Cache& c, bool collect);
  /// Adds (+1) or drops (-1) a fork's reference on its source. `refused`
  /// says why a +1 could not be added: the source is gone (not_found) or
  /// soft-deleted (fork_source_deleted).
  std::optional<Error> change_ref(const std::string& source, uint64_t source_hi, int delta,
                                  std::optional<errc>& refused);

  /// Loads (and catches up) a stream, and deletes it if it has expired.
  /// `write_locked`: the caller holds c.write_mu.
  Status refresh(Cache& c, bool write_locked);
  /// For a live read from `from`: the stream's read session keeps the cache
  /// current, so the tail need not be confirmed with S2. Only for an offset
  /// the cache has already reached (one from another node's newer tail must
  /// not be clamped back to this node's).
  bool watch_keeps_current(Cache& c, const OffsetSpec& from);
  bool expired_locked(const Cache& c, int64_t now) const;
  void maybe_touch(Cache& c);

  void reopen_session(const CachePtr& c, uint64_t gen);

  S2StoreOptions opts_;
  s2::S2Api& api_;
  std::mutex mu_;
  std::unordered_map<std::string, CachePtr> caches_;  // guarded by mu_
  std::atomic<uint64_t> write_counter_{0};
  WorkerPool pool_;
};

std::string random_write_id(uint64_t counter) {
  static const uint64_t salt =
      std::random_device{}() * 0x9E3779B97F4A7C15ULL ^ std::random_device{}();
  return std::to_string(salt) + "-" + std::to_string(counter);
}

void S2Store::fold_locked(Cache& c, const std::vector<SequencedRecord>& records) {
  CommitEvent event;
  bool changed = false;
  for (const auto& r : records) {
    if (r.seq_num < c.next_seq) continue;
    c.next_seq = r.seq_num + 1;
    if (r.is_command()) continue;
    const std::string* kind = find_header(r, kKind);
    if (!kind) continue;
    if (const std::string* w = find_header(r, kWriteId)) {
      c.recent_writes.push_back(*w);
      if (c.recent_writes.size() > 256) c.recent_writes.pop_front();
    }
    auto ts = static_cast<int64_t>(r.timestamp);
    if (*kind == kMeta) {
      auto m = decode_meta(r.body);
      if (!m) continue;
      c.meta = std::move(*m);
      c.producers.clear();
      c.exists = true;
      c.ever_existed = true;
      c.start_seq = r.seq_num;
      c.last_hi = c.meta.id;
      c.last_access_ms = ts;
      c.meta.created_ms = ts;
      c.meta.tail = Offset{c.meta.id, r.seq_num + 1};
      changed = true;
      continue;
    }
    if (*kind == kGone) {
      if (const std::string* h = find_header(r, "h")) {
        if (auto v = parse_safe_uint(*h)) {
          c.last_hi = std::max(c.last_hi, *v);
          c.ever_existed = true;
        }
      }
    }
    if (!c.exists) continue;
    auto producer = [&]() -> std::optional<ProducerTriple> {
      const std::string* id = find_header(r, kProducerId);
      const std::string* e = find_header(r, kProducerEpoch);
      const std::string* s = find_header(r, kProducerSeq);
      if (!id || !e || !s) return std::nullopt;
      auto ev = parse_safe_uint(*e);
      auto sv = parse_safe_uint(*s);
      if (!ev || !sv) return std::nullopt;
      return ProducerTriple{*id, *ev, *sv};
    };
    if (*kind == kData || *kind == kClose) {
      auto p = producer();
      if (p) c.producers[p->id] = ProducerState{p->epoch, p->seq, ts};
      if (const std::string* ss = find_header(r, kStreamSeq)) c.meta.last_stream_seq = *ss;
      if (*kind == kData) {
        auto rec = std::make_shared<Record>();
        rec->begin = Offset{c.meta.id, r.seq_num};
        rec->end = Offset{c.meta.id, r.seq_num + 1};
        rec->bytes = r.body;
        event.records.push_back(std::move(rec));
      }
      if (*kind == kClose || find_header(r, kCloses)) {
        c.meta.closed = true;
        c.meta.closed_by = p;
      }
      c.last_access_ms = ts;
      c.meta.tail = Offset{c.meta.id, r.seq_num + 1};
      changed = true;
    } else if (*kind == kGone) {
      const std::string* g = find_header(r, "g");
      if (g && *g == "soft") {
        c.meta.soft_deleted = true;
      } else {
        c.exists = false;
        c.producers.clear();
      }
      event.gone = true;
      changed = true;
    } else if (*kind == kRef) {
      const std::string* d = find_header(r, "r");
      if (d && *d == "+1") ++c.meta.ref_count;
      if (d && *d == "-1" && c.meta.ref_count > 0) --c.meta.ref_count;
    } else if (*kind == kTouch) {
      c.last_access_ms = std::max(c.last_access_ms, ts);
    }
  }
  // The tail is the end of the last record that holds data or closure:
  // control records after it (TTL touches, fork references) and foreign
  // records do not move a stream's offsets, so a closed stream's final offset
  // stays final.
  c.meta.last_access_ms = c.last_access_ms;
  if (!changed || c.watchers.empty()) return;
  event.tail = c.meta.tail;
  event.closed = c.meta.closed;
  if (!c.exists || c.meta.soft_deleted) event.gone = true;
  for (auto& [id, fn] : c.watchers) fn(event);
  if (event.gone) c.watchers.clear();
}

Status S2Store::catch_up_to(Cache& c, uint64_t tail) {
  for (int round = 0; round < 100'000; ++round) {
    uint64_t from;
    {
      std::lock_guard lock(c.mu);
      if (c.next_seq >= tail) return Unit{};
      from = c.next_seq;
    }
    auto r = wait_for<s2::ReadBatch>([&](auto cb) {
      api_.read(c.name, from, s2::ReadLimits{1000, 1 << 20, std::nullopt}, std::move(cb));
    });
    if (!r.ok()) {
      if (r.error->kind == S2Error::Kind::range_not_satisfiable) return Unit{};
      if (r.error->kind == S2Error::Kind::not_found) return Unit{};
      return s2_error(*r.error);
    }
    std::lock_guard lock(c.mu);
    if (r.value->records.empty()) return Unit{};
    fold_locked(c, r.value->records);
  }
  return Error(errc::storage_failure, "S2 stream too long to fold");
}

Status S2Store::catch_up(Cache& c) {
  auto tail = wait_for<uint64_t>([&](auto cb) { api_.check_tail(c.name, std::move(cb)); });
  if (!tail.ok()) {
    if (tail.error->kind == S2Error::Kind::not_found) {
      std::lock_guard lock(c.mu);
      c.loaded = true;
      c.exists = false;
      return Unit{};
    }
    return s2_error(*tail.error);
  }
  auto st = catch_up_to(c, *tail.value);
  if (st) {
    std::lock_guard lock(c.mu);
    c.loaded = true;
  }
  return st;
}

bool S2Store::watch_keeps_current(Cache& c, const OffsetSpec& from) {
  std::lock_guard lock(c.mu);
  return c.loaded && c.exists && !c.meta.soft_deleted && c.session && c.session_failures == 0 &&
         from.kind == OffsetSpec::Kind::at && from.at <= c.meta.tail &&
         !expired_locked(c, opts_.clock->now_ms());
}

bool S2Store::expired_locked(const Cache& c, int64_t now) const {
  if (!c.exists || c.meta.soft_deleted) return false;
  const auto& cfg = c.meta.config;
  if (cfg.expires_at_ms) return now >= *cfg.expires_at_ms;
  if (cfg.ttl_seconds)
    return now >= c.last_access_ms + static_cast<int64_t>(*cfg.ttl_seconds) * 1000;
  return false;
}

Status S2Store::refresh(Cache& c, bool write_locked) {
  auto st = catch_up(c);
  if (!st) return st;
  auto expired = [&] {
    std::lock_guard lock(c.mu);
    return expired_locked(c, opts_.clock->now_ms());
  };
  if (!expired()) return st;
  std::unique_lock<FifoMutex> w;
  if (!write_locked) w = std::unique_lock<FifoMutex>(c.write_mu);
  if (expired()) {
    if (auto err = delete_locked(c, /*collect=*/false)) return *err;
  }
  return st;
}

void S2Store::maybe_touch(Cache& c) {
  std::unique_lock lock(c.mu);
  if (!c.exists || !c.meta.config.ttl_seconds) return;
  int64_t now = opts_.clock->now_ms();
  int64_t ttl_ms = static_cast<int64_t>(*c.meta.config.ttl_seconds) * 1000;
  if (now - c.last_access_ms < std::min<int64_t>(1000, ttl_ms / 4)) return;
  c.last_access_ms = now;  // this node's view; the record makes it everyone's
  lock.unlock();
  AppendInput in;
  in.records.push_back(AppendRecord{{Header{std::string(kKind), std::string(kTouch)}}, {}});
  auto r =
      wait_for<s2::AppendAck>([&](auto cb) { api_.append(c.name, std::move(in), std::move(cb)); });
  (void)r;  // best effort: a lost touch only shortens the TTL window
}

std::optional<Error> S2Store::try_append(Cache& c, std::vector<AppendRecord> records,
                                         bool& conflict) {
  conflict = false;
  std::string write_id = random_write_id(++write_counter_);
  records.front().headers.push_back(Header{std::string(kWriteId), write_id});
  uint64_t expected;
  {
    std::lock_guard lock(c.mu);
    expected = c.next_seq;
  }
  AppendInput in;
  in.records = std::move(records);
  in.match_seq_num = expected;
  std::vector<AppendRecord> copy = in.records;
  auto r =
      wait_for<s2::AppendAck>([&](auto cb) { api_.append(c.name, std::move(in), std::move(cb)); });
  if (r.ok()) {
    // Fold what we wrote, exactly as a reader would see it.
    std::vector<SequencedRecord> seqd;
    int64_t now = opts_.clock->now_ms();
    for (size_t i = 0; i < copy.size(); ++i) {
      SequencedRecord s;
      s.seq_num = r.value->start_seq + i;
      s.timestamp = static_cast<uint64_t>(now);
      s.headers = std::move(copy[i].headers);
      s.body = std::move(copy[i].body);
      seqd.push_back(std::move(s));
    }
    std::lock_guard lock(c.mu);
    fold_locked(c, seqd);
    return std::nullopt;
  }
  const auto& e = *r.error;
  if (e.kind == S2Error::Kind::seq_num_mismatch) {
    conflict = true;
    auto st = catch_up_to(c, e.tail);
    if (!st) return st.error();
    return std::nullopt;
  }
  if (e.kind == S2Error::Kind::ambiguous) {
    // Did it land? Read forward and look for our write id.
    auto st = catch_up(c);
    if (!st) return st.error();
    std::lock_guard lock(c.mu);
    if (std::find(c.recent_writes.begin(), c.recent_writes.end(), write_id) !=
        c.recent_writes.end()) {
      return std::nullopt;
    }
    conflict = true;  // it did not: decide again and retry
    return std::nullopt;
  }
  return s2_error(e);
}

Result<StreamMeta> S2Store::do_head(const std::string& path) {
  auto c = cache(path);
  auto st = refresh(*c, false);
  if (!st) return st.error();
  std::lock_guard lock(c->mu);
  if (!c->exists) return Error(errc::not_found, "stream not found");
  if (c->meta.soft_deleted) return Error(errc::gone, "stream has been deleted");
  return c->meta;
}

Result<CreateOutcome> S2Store::do_create(const CreateRequest& req) {
  auto c = cache(req.path);  // its write_mu is held by the caller
  auto st = refresh(*c, true);
  if (!st) return st.error();
  {
    std::lock_guard lock(c->mu);
    if (c->exists) {
      if (c->meta.soft_deleted) {
        return Error(errc::config_mismatch,
                     "a deleted stream at this path is still referenced by forks");
      }
      if (!create_matches(c->meta, req)) {
        return Error(errc::config_mismatch, "stream exists with a different configuration");
      }
      return CreateOutcome{false, c->meta};
    }
  }

  StreamMeta meta;
  meta.path = req.path;
  meta.closed = false;
  std::string prefix;
  CachePtr src;
  if (req.forked_from) {
    src = cache(*req.forked_from);
    auto sst = refresh(*src, false);
    if (!sst) return sst.error();
    std::lock_guard lock(src->mu);
    if (!src->exists) return Error(errc::not_found, "fork source stream not found");
    if (src->meta.soft_deleted)
      return Error(errc::fork_source_deleted, "fork source stream has been deleted");
    if (!media_type(req.config.content_type).empty() &&
        media_type(req.config.content_type) != media_type(src->meta.config.content_type)) {
      return Error(errc::content_type_mismatch, "Content-Type differs from the fork source's");
    }
    meta.config = resolve_fork_config(req.config, src->meta.config);
    Offset at = req.fork_offset.value_or(src->meta.tail);
    if (at > src->meta.tail)
      return Error(errc::fork_offset_beyond_tail, "Stream-Fork-Offset is beyond the source's tail");
    meta.fork = ForkRef{*req.forked_from, src->meta.id, at, req.fork_sub_offset};
  } else {
    meta.config = req.config;
    if (media_type(meta.config.content_type).empty())
      meta.config.content_type = "application/octet-stream";
  }
  if (req.fork_sub_offset > 0) {
    // The inherited part of the append at the fork offset becomes the fork's first record.
    ReadRequest rr{*req.forked_from, OffsetSpec::position(meta.fork->offset), 1};
    auto first = do_read(rr);
    if (!first) return std::move(first).error();
    // The anchor is the first append at or after the fork offset (control
    // records between them hold no data).
    if (first->records.empty()) {
      return Error(errc::bad_request, "Stream-Fork-Sub-Offset: no data at the fork offset");
    }
    const std::string& bytes = first->records.front()->bytes;
    if (is_json_media_type(media_type(meta.config.content_type))) {
      auto p = json_prefix(bytes, req.fork_sub_offset);
      if (!p) return std::move(p).error();
      prefix = std::move(*p);
    } else {
      if (req.fork_sub_offset > bytes.size()) {
        return Error(errc::bad_request,
                     "Stream-Fork-Sub-Offset overshoots the append at the fork offset");
      }
      prefix = bytes.substr(0, req.fork_sub_offset);
    }
  }
  auto initial = frame_initial_body(meta.config.content_type, req.body);
  if (!initial) return std::move(initial).error();
  if (initial->size() > kMaxRecordBody || prefix.size() > kMaxRecordBody) {
    return Error(errc::payload_too_large, "the S2 engine takes at most 1000 KiB per append");
  }

  {
    auto created =
        wait_for<s2::Empty>([&](auto cb) { api_.create_stream(req.path, std::move(cb)); });
    if (!created.ok() && created.error->kind != S2Error::Kind::already_exists)
      return s2_error(*created.error);
  }

  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    {
      std::lock_guard lock(c->mu);
      if (c->exists) {
        // Another node created it meanwhile: answer as an idempotent PUT would.
        if (!c->meta.soft_deleted && create_matches(c->meta, req))
          return CreateOutcome{false, c->meta};
        return Error(errc::config_mismatch, "stream exists with a different configuration");
      }
      uint64_t hi = c->ever_existed ? c->last_hi + 1 : 0;
      if (meta.fork) hi = std::max(hi, meta.fork->offset.hi + 1);
      meta.id = hi;
    }
    std::vector<AppendRecord> records;
    records.push_back(
        AppendRecord{{Header{std::string(kKind), std::string(kMeta)}}, encode_meta(meta)});
    for (const std::string* data : {&prefix, &*initial}) {
      if (data->empty()) continue;
      records.push_back(AppendRecord{{Header{std::string(kKind), std::string(kData)}}, *data});
    }
    if (req.closed)
      records.push_back(AppendRecord{{Header{std::string(kKind), std::string(kClose)}}, {}});
    bool conflict = false;
    auto err = try_append(*c, std::move(records), conflict);
    if (err) return *err;
    if (conflict) continue;
    if (meta.fork) {
      std::optional<errc> refused;
      auto ref_err = change_ref(meta.fork->source_path, meta.fork->source_id, +1, refused);
      if (ref_err || refused) {
        // Undo: the fork must not outlive a reference that never landed (and
        // must not drop a reference it never took).
        {
          std::lock_guard lock(c->mu);
          c->meta.fork.reset();
        }
        delete_locked(*c, false);
        if (ref_err) return *ref_err;
        if (*refused == errc::not_found)
          return Error(errc::not_found, "fork source stream not found");
        return Error(errc::fork_source_deleted, "fork source stream has been deleted");
      }
    }
    std::lock_guard lock(c->mu);
    return CreateOutcome{true, c->meta};
  }
  return Error(errc::unavailable, "too much write contention on this stream; retry");
}

std::optional<Error> S2Store::change_ref(const std::string& source, uint64_t source_hi, int delta,
                                         std::optional<errc>& refused) {
  refused.reset();
  auto s = cache(source);
  std::lock_guard w(s->write_mu);
  auto st = catch_up(*s);
  if (!st) return st.error();
  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    bool cascade = false;
    {
      std::lock_guard lock(s->mu);
      if (!s->exists || s->meta.id != source_hi) {
        refused = errc::not_found;
        return std::nullopt;
      }
      if (delta > 0 && s->meta.soft_deleted) {
        refused = errc::fork_source_deleted;
        return std::nullopt;
      }
      cascade = delta < 0 && s->meta.soft_deleted && s->meta.ref_count <= 1;
    }
    if (cascade) return delete_locked(*s, /*collect=*/true);  // last reference to a deleted source
    std::vector<AppendRecord> records;
    records.push_back(AppendRecord{
        {Header{std::string(kKind), std::string(kRef)}, Header{"r", delta > 0 ? "+1" : "-1"}}, {}});
    bool conflict = false;
    auto err = try_append(*s, std::move(records), conflict);
    if (err) return err;
    if (!conflict) return std::nullopt;
  }
  return Error(errc::unavailable, "too much write contention on the fork source; retry");
}

std::optional<Error> S2Store::delete_locked(Cache& c, bool collect) {
  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    std::optional<ForkRef> fork;
    bool soft;
    {
      std::lock_guard lock(c.mu);
      if (!c.exists) return std::nullopt;
      if (c.meta.soft_deleted != collect)
        return std::nullopt;  // already deleted / not ours to collect
      soft = !collect && c.meta.ref_count > 0;
      fork = c.meta.fork;
    }
    std::vector<AppendRecord> records;
    uint64_t hi;
    {
      std::lock_guard lock(c.mu);
      hi = c.meta.id;
    }
    // `h` keeps the incarnation number after a trim removes the meta record,
    // so a re-created stream still gets a new one.
    records.push_back(
        AppendRecord{{Header{std::string(kKind), std::string(kGone)},
                      Header{"g", soft ? "soft" : "hard"}, Header{"h", std::to_string(hi)}},
                     {}});
    bool conflict = false;
    auto err = try_append(c, std::move(records), conflict);
    if (err) return err;
    if (conflict) continue;
    if (!soft) {
      uint64_t upto;
      {
        std::lock_guard lock(c.mu);
        upto = c.next_seq - 1;
      }
      // Drop the dead incarnation's records (S2 trims asynchronously).
      AppendInput trim;
      trim.records.push_back(s2::trim_record(upto));
      auto tr = wait_for<s2::AppendAck>(
          [&](auto cb) { api_.append(c.name, std::move(trim), std::move(cb)); });
      (void)tr;  // best effort
      if (fork) {
        std::optional<errc> refused;  // a -1 is never refused
        auto ref_err = change_ref(fork->source_path, fork->source_id, -1, refused);
        if (ref_err) return ref_err;
      }
    }
    return std::nullopt;
  }
  return Error(errc::unavailable, "too much write contention on this stream; retry");
}

Result<Unit> S2Store::do_remove(const std::string& path) {
  auto c = cache(path);         // its write_mu is held by the caller
  auto st = refresh(*c, true);  // an expired stream is deleted here, and is then not found
  if (!st) return st.error();
  {
    std::lock_guard lock(c->mu);
    if (!c->exists) return Error(errc::not_found, "stream not found");
    if (c->meta.soft_deleted) return Error(errc::gone, "stream has been deleted");
  }
  if (auto err = delete_locked(*c, false)) return *err;
  return Unit{};
}

Result<AppendOutcome> S2Store::do_append(const AppendRequest& req) {
  auto c = cache(req.path);  // its write_mu is held by the caller
  auto st = refresh(*c, true);
  if (!st) return st.error();
  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    Result<AppendDecision> decision = Error(errc::not_found, "stream not found");
    {
      std::lock_guard lock(c->mu);
      if (!c->exists) return Error(errc::not_found, "stream not found");
      if (c->meta.soft_deleted) return Error(errc::gone, "stream has been deleted");
      const ProducerState* producer = nullptr;
      if (req.producer) {
        auto it = c->producers.find(req.producer->id);
        if (it != c->producers.end()) producer = &it->second;
      }
      decision = decide_append(c->meta, producer, req, opts_.clock->now_ms());
      if (!decision) return std::move(decision).error();
      if (auto* dup = std::get_if<AppendDuplicate>(&*decision)) {
        return AppendOutcome{AppendOutcome::Kind::duplicate, c->meta.tail,
                             c->meta.closed || dup->closed, dup->epoch, dup->seq};
      }
      if (std::holds_alternative<AlreadyClosed>(*decision)) {
        return AppendOutcome{AppendOutcome::Kind::already_closed, c->meta.tail, true, {}, {}};
      }
    }
    auto& acc = std::get<AppendAccepted>(*decision);
    if (acc.record.size() > kMaxRecordBody) {
      return Error(errc::payload_too_large, "the S2 engine takes at most 1000 KiB per append");
    }
    AppendRecord rec;
    rec.headers.push_back(
        Header{std::string(kKind), std::string(acc.record.empty() ? kClose : kData)});
    if (req.producer) {
      rec.headers.push_back(Header{std::string(kProducerId), req.producer->id});
      rec.headers.push_back(
          Header{std::string(kProducerEpoch), std::to_string(req.producer->epoch)});
      rec.headers.push_back(Header{std::string(kProducerSeq), std::to_string(req.producer->seq)});
    }
    if (req.stream_seq) rec.headers.push_back(Header{std::string(kStreamSeq), *req.stream_seq});
    if (acc.close && !acc.record.empty()) rec.headers.push_back(Header{std::string(kCloses), "1"});
    rec.body = std::move(acc.record);
    std::vector<AppendRecord> records;
    records.push_back(std::move(rec));
    bool conflict = false;
    auto err = try_append(*c, std::move(records), conflict);
    if (err) return *err;
    if (conflict) continue;
    std::lock_guard lock(c->mu);
    AppendOutcome out{AppendOutcome::Kind::appended, c->meta.tail, c->meta.closed, {}, {}};
    if (req.producer) {
      out.producer_epoch = req.producer->epoch;
      out.producer_seq = req.producer->seq;
    }
    return out;
  }
  return Error(errc::unavailable, "too much write contention on this stream; retry");
}

Result<ReadOutcome> S2Store::do_read(const ReadRequest& req) {
  auto c = cache(req.path);
  if (!req.live || !watch_keeps_current(*c, req.from)) {
    auto st = refresh(*c, false);
    if (!st) return st.error();
  }
  ReadOutcome out;
  struct Segment {
    CachePtr cache;
    uint64_t hi;
    uint64_t begin;  // first seq (inclusive)
    uint64_t end;    // last seq (exclusive)
  };
  std::vector<Segment> segs;
  {
    std::lock_guard lock(c->mu);
    if (!c->exists) return Error(errc::not_found, "stream not found");
    if (c->meta.soft_deleted) return Error(errc::gone, "stream has been deleted");
    out.meta = c->meta;
    segs.push_back(Segment{c, c->meta.id, c->start_seq, c->meta.tail.lo});
  }
  // Walk up the fork chain: each source contributes its records before the fork offset.
  std::optional<ForkRef> fork = out.meta.fork;
  for (int depth = 0; fork && depth < 1000; ++depth) {
    auto s = cache(fork->source_path);
    bool need_load;
    {
      std::lock_guard lock(s->mu);
      need_load = !s->loaded || s->next_seq < fork->offset.lo;
    }
    if (need_load) {
      auto sst = catch_up(*s);
      if (!sst) return sst.error();
    }
    std::lock_guard lock(s->mu);
    if (!s->exists || s->meta.id != fork->source_id) break;  // source data is gone
    uint64_t end = fork->offset.hi == s->meta.id ? fork->offset.lo : s->start_seq;
    segs.push_back(Segment{s, s->meta.id, s->start_seq, std::max(end, s->start_seq)});
    fork = s->meta.fork;
  }
  std::reverse(segs.begin(), segs.end());
  maybe_touch(*c);

  const Offset tail = out.meta.tail;
  Offset from;
  switch (req.from.kind) {
    case OffsetSpec::Kind::start:
      from = Offset{segs.front().hi, segs.front().begin};
      break;
    case OffsetSpec::Kind::now:
      from = tail;
      break;
    case OffsetSpec::Kind::at:
      from = std::min(req.from.at, tail);
      break;
  }
  out.start = from;
  out.next = from;
  size_t used = 0;
  bool truncated = false;
  for (size_t i = 0; i < segs.size() && !truncated; ++i) {
    const auto& seg = segs[i];
    if (out.next.hi > seg.hi) continue;
    uint64_t pos = out.next.hi == seg.hi ? std::max(seg.begin, out.next.lo) : seg.begin;
    while (pos < seg.end && !truncated) {
      auto r = wait_for<s2::ReadBatch>([&](auto cb) {
        api_.read(seg.cache->name, pos, s2::ReadLimits{1000, 1 << 20, std::nullopt}, std::move(cb));
      });
      if (!r.ok()) {
        if (r.error->kind == S2Error::Kind::range_not_satisfiable) break;
        return s2_error(*r.error);
      }
      if (r.value->records.empty()) break;
      for (const auto& rec : r.value->records) {
        if (rec.seq_num >= seg.end) {
          pos = seg.end;
          break;
        }
        pos = rec.seq_num + 1;
        const std::string* kind = rec.is_command() ? nullptr : find_header(rec, kKind);
        if (!kind || *kind != kData) continue;
        if (!out.records.empty() && used + rec.body.size() > req.max_bytes) {
          truncated = true;
          break;
        }
        auto record = std::make_shared<Record>();
        record->begin = Offset{seg.hi, rec.seq_num};
        record->end = Offset{seg.hi, rec.seq_num + 1};
        record->bytes = rec.body;
        used += record->bytes.size();
        out.next = record->end;
        out.records.push_back(std::move(record));
        if (used >= req.max_bytes) {
          truncated = true;
          break;
        }
      }
    }
    if (!truncated) out.next = std::max(out.next, Offset{seg.hi, seg.end});
  }
  if (!truncated) out.next = std::max(out.next, tail);
  out.up_to_date = out.next >= tail;
  return out;
}

class S2Store::Handle final : public WatchHandle {
 public:
  Handle(CachePtr c, uint64_t id) : c_(std::move(c)), id_(id) {}
  ~Handle() override {
    if (id_ == 0) return;
    std::unique_ptr<s2::ReadSession> dead;
    {
      std::lock_guard lock(c_->mu);
      c_->watchers.erase(id_);
      if (c_->watchers.empty()) {
        dead = std::move(c_->session);
        ++c_->session_gen;
      }
    }
  }

 private:
  CachePtr c_;
  uint64_t id_;
};

std::unique_ptr<WatchHandle> S2Store::watch(const std::string& path,
                                            std::function<void(const CommitEvent&)> on_event) {
  auto c = cache(path);
  uint64_t id;
  bool loaded;
  {
    std::lock_guard lock(c->mu);
    id = c->next_watch++;
    c->watchers.emplace(id, on_event);
    loaded = c->loaded;
  }
  // Load (if needed), send the initial event, and open the one read session
  // this node keeps for the stream: all off the caller's thread.
  pool_.submit([this, c, id, loaded] {
    if (!loaded) {
      auto st = catch_up(*c);
      (void)st;
    }
    uint64_t gen = 0;
    bool open = false;
    {
      std::lock_guard lock(c->mu);
      auto it = c->watchers.find(id);
      if (it == c->watchers.end()) return;
      CommitEvent initial;
      initial.tail = c->meta.tail;
      initial.closed = c->meta.closed;
      initial.gone = !c->exists || c->meta.soft_deleted;
      it->second(initial);
      if (initial.gone) {
        c->watchers.erase(it);
        return;
      }
      if (!c->session) {
        open = true;
        gen = ++c->session_gen;
      }
    }
    if (open) reopen_session(c, gen);
  });
  return std::make_unique<Handle>(c, id);
}

void S2Store::reopen_session(const CachePtr& c, uint64_t gen) {
  uint64_t from;
  {
    std::lock_guard lock(c->mu);
    if (c->session_gen != gen || c->watchers.empty()) return;
    from = c->next_seq;
  }
  s2::SessionHandlers handlers;
  std::weak_ptr<Cache> weak = c;
  handlers.on_batch = [this, weak](s2::ReadBatch batch) {
    auto cc = weak.lock();
    if (!cc) return;
    std::lock_guard lock(cc->mu);
    cc->session_failures = 0;
    fold_locked(*cc, batch.records);
  };
  handlers.on_end = [this, weak, gen](S2Error) {
    auto cc = weak.lock();
    if (!cc) return;
    // Resume from the next seq this node has not folded: readers see no gap.
    pool_.submit([this, cc, gen] {
      std::unique_ptr<s2::ReadSession> old;
      int failures;
      {
        std::lock_guard lock(cc->mu);
        if (cc->session_gen != gen) return;
        old = std::move(cc->session);
        failures = cc->session_failures++;
      }
      old.reset();
      // Back off when sessions keep failing before delivering anything (S2 down).
      if (failures > 0)
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::min(2000, 50 << std::min(failures, 6))));
      reopen_session(cc, gen);
    });
  };
  auto session = api_.open_session(c->name, from, std::move(handlers));
  std::lock_guard lock(c->mu);
  if (c->session_gen == gen && !c->watchers.empty()) c->session = std::move(session);
}

}  // namespace

std::unique_ptr<StreamStore> make_s2_store(const S2StoreOptions& options) {
  return std::make_unique<S2Store>(options);
}

}  // namespace ds
