// The S2 engine: lifecycle, S2 calls, loading streams, reads, watches and TTL
// touches. Writes are in s2_writes.cc; the record vocabulary in fold.h.

#include <algorithm>
#include <random>
#include <set>
#include <utility>

#include "protocol/headers.h"
#include "s2/basin_probe.h"
#include "store/s2/s2_engine.h"

namespace ds {
namespace s2engine {

using s2::AppendInput;
using s2::S2Error;
using s2::SequencedRecord;
using namespace s2fold;

namespace {

/// Adds a data record to a read's answer, at most `max_bytes` of them (but at
/// least one record). Returns false once the answer is full. Records below
/// `floor` (the earliest offset's seq) are skipped: retention removed them,
/// even if S2, which trims asynchronously, still returns them.
bool take_record(ReadOutcome& out, uint64_t hi, const SequencedRecord& rec, size_t max_bytes,
                 size_t& used, uint64_t floor) {
  const std::string* kind = rec.is_command() ? nullptr : find_header(rec, kKind);
  if (!kind || *kind != kData || rec.seq_num < floor) return true;
  if (!out.records.empty() && used + rec.body.size() > max_bytes) return false;
  auto record = std::make_shared<Record>();
  record->begin = Offset{hi, rec.seq_num};
  record->end = Offset{hi, rec.seq_num + 1};
  record->bytes = rec.body;
  used += record->bytes.size();
  out.next = record->end;
  out.records.push_back(std::move(record));
  return used < max_bytes;
}

/// A read before the stream's earliest offset (`meta.earliest`, the chain's).
Error retention_trimmed(const StreamMeta& meta) {
  Error e(errc::retention_trimmed,
          "the data at this offset has been removed by the stream's retention; the earliest "
          "readable offset is " +
              meta.earliest.str());
  e.earliest = meta.earliest;
  return e;
}

/// The seq below which a segment of incarnation `hi` with earliest offset
/// `floor` has nothing readable.
uint64_t floor_seq(Offset floor, uint64_t hi) {
  if (floor.hi > hi) return ~uint64_t{0};
  return floor.hi == hi ? floor.lo : 0;
}

}  // namespace

Offset chain_earliest(const std::vector<ChainSegment>& segs) {
  Offset earliest;
  for (const auto& s : segs) {
    const Offset begin{s.hi, s.begin};
    if (s.floor > begin) earliest = std::max(earliest, std::min(s.floor, Offset{s.hi, s.end}));
  }
  return earliest;
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

std::string random_write_id(uint64_t counter) {
  static const uint64_t salt =
      std::random_device{}() * 0x9E3779B97F4A7C15ULL ^ std::random_device{}();
  return std::to_string(salt) + "-" + std::to_string(counter);
}

S2Engine::S2Engine(const S2StoreOptions& o)
    : opts_(o),
      api_(*o.api),
      stats_(o.stats ? *o.stats : own_stats_),
      inflight_(std::max(1u, o.max_inflight)) {
  timers_.after(opts_.retention_interval, [this] { sweep_retention(); });
}

S2Engine::~S2Engine() {
  // Requests still running hold caches and S2 calls: let them finish (the S2
  // client outlives the engine and answers or times out every call). No new
  // background work (retention passes) starts meanwhile.
  {
    MutexLock lock(tasks_mu_);
    stopping_ = true;
    while (tasks_ != 0) tasks_cv_.wait(lock.native());
  }
  MutexLock lock(mu_);
  for (auto& [name, c] : caches_) {
    std::unique_ptr<s2::ReadSession> s;
    {
      MutexLock cl(c->mu);
      s = std::move(c->session);
      ++c->session_gen;
      c->watchers.clear();
    }
  }
}

void S2Engine::begin_task() {
  MutexLock lock(tasks_mu_);
  ++tasks_;
}

bool S2Engine::try_begin_task() {
  MutexLock lock(tasks_mu_);
  if (stopping_) return false;
  ++tasks_;
  return true;
}

void S2Engine::end_task() {
  MutexLock lock(tasks_mu_);
  if (--tasks_ == 0) tasks_cv_.notify_all();
}

CachePtr S2Engine::cache(const std::string& name) {
  MutexLock lock(mu_);
  auto& c = caches_[name];
  if (!c) c = std::make_shared<Cache>(name);
  return c;
}

// ---- S2 calls ----

template <class T, class Start>
Task<s2::S2Result<T>> S2Engine::call(Start start) {
  auto slot = inflight_.acquire();
  co_await slot;
  ++stats_.inflight;
  CallbackAwaiter<s2::S2Result<T>, Start> op(std::move(start));
  auto result = co_await op;
  --stats_.inflight;
  stats_.inflight_waits.store(inflight_.waits(), std::memory_order_relaxed);
  inflight_.release();
  co_return result;
}

Task<s2::S2Result<s2::AppendAck>> S2Engine::s2_append(std::string stream, AppendInput in) {
  auto start = [this, &stream, &in](s2::S2Api::Callback<s2::AppendAck> cb) {
    api_.append(stream, std::move(in), std::move(cb));
  };
  auto op = call<s2::AppendAck>(start);
  co_return co_await op;
}

Task<s2::S2Result<s2::ReadBatch>> S2Engine::s2_read(std::string stream, uint64_t seq,
                                                    uint64_t count) {
  auto start = [this, &stream, seq, count](s2::S2Api::Callback<s2::ReadBatch> cb) {
    api_.read(stream, seq, s2::ReadLimits{count, s2::kMaxBatchBytes, std::nullopt}, std::move(cb));
  };
  auto op = call<s2::ReadBatch>(start);
  co_return co_await op;
}

Task<s2::S2Result<s2::ReadBatch>> S2Engine::s2_read_from_tail(std::string stream,
                                                              uint64_t tail_offset) {
  auto start = [this, &stream, tail_offset](s2::S2Api::Callback<s2::ReadBatch> cb) {
    api_.read_from_tail(stream, tail_offset,
                        s2::ReadLimits{tail_offset, s2::kMaxBatchBytes, std::nullopt},
                        std::move(cb));
  };
  auto op = call<s2::ReadBatch>(start);
  co_return co_await op;
}

Task<s2::S2Result<s2::Empty>> S2Engine::s2_create_stream(std::string stream) {
  auto start = [this, &stream](s2::S2Api::Callback<s2::Empty> cb) {
    api_.create_stream(stream, std::move(cb));
  };
  auto op = call<s2::Empty>(start);
  co_return co_await op;
}

Task<s2::S2Result<s2::StreamPage>> S2Engine::s2_list(std::string prefix, std::string start_after,
                                                     uint64_t limit) {
  auto start = [this, &prefix, &start_after, limit](s2::S2Api::Callback<s2::StreamPage> cb) {
    api_.list_streams(prefix, start_after, limit, std::move(cb));
  };
  auto op = call<s2::StreamPage>(start);
  co_return co_await op;
}

Task<s2::S2Result<uint64_t>> S2Engine::s2_check_tail(std::string stream) {
  auto start = [this, &stream](s2::S2Api::Callback<uint64_t> cb) {
    api_.check_tail(stream, std::move(cb));
  };
  auto op = call<uint64_t>(start);
  co_return co_await op;
}

// ---- folding and loading ----

void S2Engine::fold_locked(Cache& c, const std::vector<SequencedRecord>& records) {
  FoldResult r = fold(c.fold, records, &c.awaited_writes);
  if (r.hole && !c.hole) {
    // Retention trimmed records this node had not folded yet (its fold was
    // behind a trim S2 has applied): they may have changed producer or
    // Stream-Seq state. Every trim leaves a checkpoint past itself: load
    // from there. Callers check `loaded`; a live stream is reloaded now.
    c.hole = true;
    c.loaded = false;
    if (!c.watchers.empty()) {
      // Off this thread and lock: cache() takes mu_, which comes before c.mu.
      timers_.after(std::chrono::microseconds(0), [this, name = c.name] {
        if (try_begin_task()) spawn(reload(cache(name)));
      });
    }
  }
  if (!r.changed || c.watchers.empty()) return;
  for (auto& [id, fn] : c.watchers) fn(r.event);
  if (r.event.gone) c.watchers.clear();
}

Task<void> S2Engine::reload(CachePtr c) {
  TaskEnd ended{*this};
  auto op = catch_up(c);
  auto st = co_await op;
  (void)st;  // a failure leaves it unloaded: the next request loads it
}

Task<Status> S2Engine::catch_up_to(CachePtr c, uint64_t tail, int reloads_left) {
  for (int round = 0; round < 1'000'000; ++round) {
    uint64_t from;
    bool hole;
    {
      MutexLock lock(c->mu);
      hole = c->hole;
      if (!hole && c->fold.next_seq >= tail) co_return Unit{};
      from = c->fold.next_seq;
    }
    if (hole) {
      if (reloads_left <= 0)
        co_return Error(errc::unavailable, "S2 stream trimmed while loading it; retry");
      auto again_op = cold_load(c, reloads_left - 1);
      co_return co_await again_op;
    }
    auto op = s2_read(c->name, from, s2::kMaxBatchRecords);
    auto r = co_await op;
    if (!r.ok()) {
      if (r.error->kind == S2Error::Kind::range_not_satisfiable) co_return Unit{};
      if (r.error->kind == S2Error::Kind::not_found) co_return Unit{};
      co_return s2_error(*r.error);
    }
    if (r.value->records.empty()) co_return Unit{};
    MutexLock lock(c->mu);
    fold_locked(*c, r.value->records);
  }
  co_return Error(errc::storage_failure, "S2 stream too long to fold");
}

Task<Status> S2Engine::cold_load(CachePtr c, int reloads_left) {
  ++stats_.cold_loads;
  // The last record names the latest checkpoint (`k`); its seq_num + 1 is the tail.
  auto last_op = s2_read_from_tail(c->name, 1);
  auto last = co_await last_op;
  uint64_t tail = 0;
  uint64_t from = 0;
  if (!last.ok()) {
    if (last.error->kind == S2Error::Kind::not_found) {
      MutexLock lock(c->mu);
      c->loaded = true;
      co_return Unit{};
    }
    if (last.error->kind != S2Error::Kind::range_not_satisfiable) co_return s2_error(*last.error);
    tail = last.error->tail;  // empty (or entirely trimmed) stream
    from = tail;
  } else if (last.value->records.empty()) {
    from = 0;  // cannot tell: fold from the start
    auto tail_op = s2_check_tail(c->name);
    auto t = co_await tail_op;
    if (!t.ok()) co_return s2_error(*t.error);
    tail = *t.value;
  } else {
    const SequencedRecord& r = last.value->records.back();
    tail = r.seq_num + 1;
    const std::string* kind = r.is_command() ? nullptr : find_header(r, kKind);
    const std::string* k = r.is_command() ? nullptr : find_header(r, kCheckpointAt);
    if (kind && *kind == kCheckpoint) {
      from = r.seq_num;
    } else if (k) {
      from = parse_safe_uint(*k).value_or(0);
    }
    if (from > r.seq_num) from = 0;
  }
  if (from > 0) {
    // Start at the checkpoint (or the meta record that began the incarnation).
    auto first_op = s2_read(c->name, from, s2::kMaxBatchRecords);
    auto first = co_await first_op;
    if (!first.ok()) {
      if (first.error->kind == S2Error::Kind::not_found) {
        MutexLock lock(c->mu);
        c->loaded = true;
        co_return Unit{};
      }
      if (first.error->kind != S2Error::Kind::range_not_satisfiable)
        co_return s2_error(*first.error);
    } else if (!first.value->records.empty()) {
      const auto& recs = first.value->records;
      MutexLock lock(c->mu);
      if (!c->loaded && c->fold.next_seq <= recs.front().seq_num) {
        const SequencedRecord& r0 = recs.front();
        const std::string* kind = r0.is_command() ? nullptr : find_header(r0, kKind);
        // `from` was trimmed (retention) when S2 starts past it: a record
        // written before the trim named an older checkpoint. Retention
        // writes a checkpoint with every trim, after the data it keeps: the
        // state then starts at the first checkpoint S2 still has.
        bool started = false;
        if (r0.seq_num != from && !(kind && *kind == kMeta)) {
          for (const auto& r : recs) {
            const std::string* k = r.is_command() ? nullptr : find_header(r, kKind);
            if (k && *k == kCheckpoint && start_from_checkpoint(c->fold, r.seq_num, r.body)) {
              started = true;
              break;
            }
          }
        }
        if (started) {
          // state as of that checkpoint; the rest follows
        } else if (kind && *kind == kCheckpoint &&
                   start_from_checkpoint(c->fold, r0.seq_num, r0.body)) {
          // state as of the checkpoint; the rest follows
        } else {
          // A meta record (an incarnation's state starts there) or a trimmed
          // history: fold from here with no earlier state.
          c->fold = FoldState{};
          c->fold.next_seq = r0.seq_num;
        }
        c->hole = false;  // a fresh state
      }
      fold_locked(*c, recs);
    }
  }
  auto rest_op = catch_up_to(c, tail, reloads_left);
  auto st = co_await rest_op;
  if (st) {
    MutexLock lock(c->mu);
    c->loaded = true;
  }
  co_return st;
}

Task<Status> S2Engine::catch_up(CachePtr c) {
  bool loaded;
  {
    MutexLock lock(c->mu);
    loaded = c->loaded;
  }
  if (!loaded) {
    auto op = cold_load(c);
    co_return co_await op;
  }
  auto tail_op = s2_check_tail(c->name);
  auto tail = co_await tail_op;
  if (!tail.ok()) {
    if (tail.error->kind == S2Error::Kind::not_found) {
      MutexLock lock(c->mu);
      c->fold.exists = false;
      co_return Unit{};
    }
    co_return s2_error(*tail.error);
  }
  auto op = catch_up_to(c, *tail.value);
  co_return co_await op;
}

Task<Status> S2Engine::refresh(CachePtr c, bool write_locked) {
  auto op = catch_up(c);
  auto st = co_await op;
  if (!st) co_return st;
  auto is_expired = [&] {
    MutexLock lock(c->mu);
    return expired(c->fold, now_ms());
  };
  if (!is_expired()) co_return st;
  if (!write_locked) {
    auto lock = c->write_mu.lock();
    co_await lock;
  }
  std::optional<Error> err;
  if (is_expired()) {
    auto del = delete_locked(c, /*collect=*/false);
    err = co_await del;
  }
  if (!write_locked) c->write_mu.unlock();
  if (err) co_return *err;
  co_return st;
}

bool S2Engine::watch_keeps_current(Cache& c, const OffsetSpec& from) {
  MutexLock lock(c.mu);
  return c.loaded && c.fold.exists && !c.fold.meta.soft_deleted && c.session &&
         c.session_failures == 0 && from.kind == OffsetSpec::Kind::at &&
         from.at <= c.fold.meta.tail && !expired(c.fold, now_ms());
}

// ---- TTL touches ----

void S2Engine::maybe_touch(const CachePtr& c) {
  {
    MutexLock lock(c->mu);
    if (!c->fold.exists || !c->fold.meta.config.ttl_seconds) return;
    int64_t now = now_ms();
    int64_t ttl_ms = static_cast<int64_t>(*c->fold.meta.config.ttl_seconds) * 1000;
    int64_t every = std::min<int64_t>(1000, ttl_ms / 4);
    if (now - c->fold.last_access_ms < every || now - c->last_touch_ms < every) return;
    c->last_touch_ms = now;
    // This node's view at once; the record makes it everyone's.
    c->fold.last_access_ms = now;
    c->fold.meta.last_access_ms = now;
  }
  begin_task();
  spawn(send_touch(c));
}

Task<void> S2Engine::send_touch(CachePtr c) {
  TaskEnd ended{*this};
  AppendInput in;
  in.records.push_back(control_record(kTouch));
  {
    MutexLock lock(c->mu);
    if (c->fold.has_checkpoint)
      in.records.back().headers.push_back(
          s2::Header{std::string(kCheckpointAt), std::to_string(c->fold.checkpoint_seq)});
  }
  auto op = s2_append(c->name, std::move(in));
  auto r = co_await op;
  (void)r;  // best effort: a lost touch only shortens the TTL window
}

void S2Engine::touch(const std::string& path) {
  auto c = cache(path);
  {
    MutexLock lock(c->mu);
    if (!c->loaded) return;
  }
  maybe_touch(c);
}

// ---- reads ----

void S2Engine::read(ReadRequest req, Callback<ReadOutcome> done) {
  begin_task();
  auto work = do_read(std::move(req));
  spawn(answer<ReadOutcome>(nullptr, std::move(work), std::move(done)));
}

Task<std::optional<ReadOutcome>> S2Engine::read_confirming(CachePtr c, ReadRequest req) {
  uint64_t from, hi;
  {
    MutexLock lock(c->mu);
    if (!c->loaded || !c->fold.exists || c->fold.meta.soft_deleted) co_return std::nullopt;
    hi = c->fold.meta.id;
    switch (req.from.kind) {
      case OffsetSpec::Kind::at:
        // Before the earliest offset: the general path answers 410.
        if (req.from.at.hi != hi || req.from.at.lo < c->fold.start_seq ||
            req.from.at.lo > c->fold.next_seq || req.from.at < c->fold.meta.earliest)
          co_return std::nullopt;
        from = req.from.at.lo;
        break;
      case OffsetSpec::Kind::start:
        if (c->fold.meta.fork) co_return std::nullopt;  // the source's part first
        from = std::max(c->fold.start_seq, floor_seq(c->fold.meta.earliest, hi));
        break;
      case OffsetSpec::Kind::now:
        from = c->fold.next_seq;
        break;
    }
  }
  auto op = s2_read(c->name, from, s2::kMaxBatchRecords);
  auto r = co_await op;
  bool reached_tail = false;
  std::vector<SequencedRecord> records;
  if (!r.ok()) {
    if (r.error->kind != S2Error::Kind::range_not_satisfiable) co_return std::nullopt;
    reached_tail = r.error->tail <= from;
  } else {
    records = std::move(r.value->records);
    uint64_t bytes = 0;
    for (const auto& rec : records) {
      bytes += 8 + 2 * rec.headers.size() + rec.body.size();
      for (const auto& h : rec.headers) bytes += h.name.size() + h.value.size();
    }
    // S2 ends a read before a record that would break its limits. Short of
    // the record limit, and with room left for the largest record dstreamd
    // writes, nothing was held back: the read stopped at the tail.
    reached_tail = !records.empty() && records.size() < s2::kMaxBatchRecords &&
                   bytes + kMaxRecordMetered <= s2::kMaxBatchBytes;
  }
  if (!reached_tail) co_return std::nullopt;
  ReadOutcome out;
  {
    MutexLock lock(c->mu);
    fold_locked(*c, records);
    if (!c->fold.exists || c->fold.meta.soft_deleted || c->fold.meta.id != hi ||
        expired(c->fold, now_ms()))
      co_return std::nullopt;                // the general path answers (and expires) it
    if (!c->loaded) co_return std::nullopt;  // a hole: the general path reloads
    // A trim among the records read moved the earliest offset past the
    // reader: the general path answers (410, or from the new earliest).
    if (req.from.kind != OffsetSpec::Kind::now && c->fold.meta.earliest > Offset{hi, from})
      co_return std::nullopt;
    out.meta = c->fold.meta;
  }
  const uint64_t floor = floor_seq(out.meta.earliest, hi);
  const Offset tail = out.meta.tail;
  out.start = req.from.kind == OffsetSpec::Kind::now ? tail : std::min(Offset{hi, from}, tail);
  out.next = out.start;
  size_t used = 0;
  bool truncated = false;
  for (const auto& rec : records) {
    if (rec.seq_num >= tail.lo || req.from.kind == OffsetSpec::Kind::now) break;
    if (!take_record(out, hi, rec, req.max_bytes, used, floor)) {
      truncated = true;
      break;
    }
  }
  if (!truncated) out.next = std::max(out.next, tail);
  out.up_to_date = out.next >= tail;
  co_return out;
}

Task<Result<std::vector<ChainSegment>>> S2Engine::read_chain(CachePtr c, StreamMeta meta,
                                                             uint64_t start_seq) {
  std::vector<ChainSegment> segs;
  segs.push_back(ChainSegment{c, meta.id, start_seq, meta.tail.lo, meta.earliest});
  // Walk up the fork chain: each source contributes its records before the
  // fork offset. A loop as long as the chain (at most kMaxForkDepth for
  // chains made since that limit); a cycle, which consistent data never has,
  // is a broken chain.
  std::optional<ForkRef> fork = meta.fork;
  std::set<std::pair<std::string, uint64_t>> visited{{c->name, meta.id}};
  while (fork) {
    if (!visited.emplace(fork->source_path, fork->source_id).second)
      co_return Error(errc::storage_failure, "fork chain is broken");
    auto s = cache(fork->source_path);
    bool need_load;
    {
      MutexLock lock(s->mu);
      need_load = !s->loaded || s->fold.next_seq < fork->offset.lo ||
                  s->fold.meta.config.has_retention();  // its earliest offset moves
    }
    if (need_load) {
      auto load_op = catch_up(s);
      auto sst = co_await load_op;
      if (!sst) co_return sst.error();
    }
    MutexLock lock(s->mu);
    if (!s->fold.exists || s->fold.meta.id != fork->source_id) break;  // source data is gone
    uint64_t end = fork->offset.hi == s->fold.meta.id ? fork->offset.lo : s->fold.start_seq;
    segs.push_back(ChainSegment{s, s->fold.meta.id, s->fold.start_seq,
                                std::max(end, s->fold.start_seq), s->fold.meta.earliest});
    fork = s->fold.meta.fork;
  }
  std::reverse(segs.begin(), segs.end());
  co_return segs;
}

Task<Result<ReadOutcome>> S2Engine::do_read(ReadRequest req) {
  auto c = cache(req.path);
  if (!req.live || !watch_keeps_current(*c, req.from)) {
    // One S2 read at the reader's offset both serves it and proves the fold
    // current when it reaches the tail; otherwise confirm the tail first.
    auto quick_op = read_confirming(c, req);
    auto quick = co_await quick_op;
    if (quick) {
      maybe_touch(c);
      co_return std::move(*quick);
    }
    auto st_op = refresh(c, false);
    auto st = co_await st_op;
    if (!st) co_return st.error();
  }
  ReadOutcome out;
  uint64_t start_seq;
  {
    MutexLock lock(c->mu);
    if (!c->fold.exists) co_return Error(errc::not_found, "stream not found");
    if (c->fold.meta.soft_deleted) co_return Error(errc::gone, "stream has been deleted");
    out.meta = c->fold.meta;
    start_seq = c->fold.start_seq;
  }
  auto chain_op = read_chain(c, out.meta, start_seq);
  auto chain = co_await chain_op;
  if (!chain) co_return std::move(chain).error();
  std::vector<ChainSegment> segs = std::move(*chain);
  out.meta.earliest = chain_earliest(segs);
  maybe_touch(c);

  const Offset tail = out.meta.tail;
  Offset from;
  switch (req.from.kind) {
    case OffsetSpec::Kind::start:
      from = std::max(Offset{segs.front().hi, segs.front().begin}, out.meta.earliest);
      break;
    case OffsetSpec::Kind::now:
      from = tail;
      break;
    case OffsetSpec::Kind::at:
      from = std::min(req.from.at, tail);
      if (from < out.meta.earliest) co_return retention_trimmed(out.meta);
      break;
  }
  out.start = from;
  out.next = from;
  size_t used = 0;
  bool truncated = false;
  for (size_t i = 0; i < segs.size() && !truncated; ++i) {
    const auto& seg = segs[i];
    if (out.next.hi > seg.hi) continue;
    const uint64_t floor = floor_seq(seg.floor, seg.hi);
    uint64_t pos = out.next.hi == seg.hi ? std::max(seg.begin, out.next.lo) : seg.begin;
    while (pos < seg.end && !truncated) {
      auto read_op = s2_read(seg.cache->name, pos, s2::kMaxBatchRecords);
      auto r = co_await read_op;
      if (!r.ok()) {
        if (r.error->kind == S2Error::Kind::range_not_satisfiable) break;
        co_return s2_error(*r.error);
      }
      if (r.value->records.empty()) break;
      for (const auto& rec : r.value->records) {
        if (rec.seq_num >= seg.end) {
          pos = seg.end;
          break;
        }
        pos = rec.seq_num + 1;
        if (!take_record(out, seg.hi, rec, req.max_bytes, used, floor)) {
          truncated = true;
          break;
        }
      }
    }
    if (!truncated) out.next = std::max(out.next, Offset{seg.hi, seg.end});
  }
  if (!truncated) out.next = std::max(out.next, tail);
  out.up_to_date = out.next >= tail;
  co_return out;
}

void S2Engine::head(std::string path, Callback<StreamMeta> done) {
  begin_task();
  auto work = do_head(std::move(path));
  spawn(answer<StreamMeta>(nullptr, std::move(work), std::move(done)));
}

Task<Result<StreamMeta>> S2Engine::do_head(std::string path) {
  auto c = cache(path);
  auto op = refresh(c, false);
  auto st = co_await op;
  if (!st) co_return st.error();
  StreamMeta meta;
  uint64_t start_seq;
  {
    MutexLock lock(c->mu);
    if (!c->fold.exists) co_return Error(errc::not_found, "stream not found");
    if (c->fold.meta.soft_deleted) co_return Error(errc::gone, "stream has been deleted");
    meta = c->fold.meta;
    start_seq = c->fold.start_seq;
  }
  if (meta.fork) {
    // A fork's earliest offset is its chain's: what its sources' retention removed.
    auto chain_op = read_chain(c, meta, start_seq);
    auto chain = co_await chain_op;
    if (!chain) co_return std::move(chain).error();
    meta.earliest = chain_earliest(*chain);
  }
  co_return meta;
}

// ---- listing ----
//
// A Durable Stream path is its S2 stream's name, unchanged, so S2's own
// listing already has the order and prefixes the contract asks for (both are
// byte-wise); no name needs decoding. But an S2 stream is not a Durable
// Stream: deleted ones keep their S2 stream (a later create is a new
// incarnation in it), soft-deleted and expired ones too, and the basin may
// hold the readiness probe's stream. So every name S2 lists is checked (its
// fold made current, as head does) and the page is filled from as many S2
// pages as it takes.

namespace {
/// Names checked at once: enough to hide round trips, few enough that a
/// listing does not take every inflight slot from other requests.
constexpr size_t kListChecks = 16;
}  // namespace

struct S2Engine::ListJoin {
  std::atomic<size_t> left{0};
  std::function<void(bool)> done;  // called by the last check to finish
};

void S2Engine::list(ListRequest req, Callback<ListOutcome> done) {
  begin_task();
  auto work = do_list(std::move(req));
  spawn(answer<ListOutcome>(nullptr, std::move(work), std::move(done)));
}

Task<Result<bool>> S2Engine::listable(std::string name) {
  CachePtr c;
  {
    MutexLock lock(mu_);
    if (auto it = caches_.find(name); it != caches_.end()) c = it->second;
  }
  // A stream this node does not hold is loaded into a cache of its own that
  // is dropped afterwards: a listing must not load the whole basin.
  if (!c) c = std::make_shared<Cache>(std::move(name));
  auto op = catch_up(c);
  auto st = co_await op;
  if (!st) co_return st.error();
  MutexLock lock(c->mu);
  co_return c->fold.exists && !c->fold.meta.soft_deleted && !expired(c->fold, now_ms());
}

Task<void> S2Engine::list_check(std::string name, std::optional<Result<bool>>* out,
                                std::shared_ptr<ListJoin> join) {
  try {
    auto op = listable(std::move(name));
    out->emplace(co_await op);
  } catch (const std::exception& e) {
    out->emplace(Error(errc::storage_failure, std::string("S2 engine: ") + e.what()));
  }
  if (join->left.fetch_sub(1, std::memory_order_acq_rel) == 1) join->done(true);
}

Task<Result<ListOutcome>> S2Engine::do_list(ListRequest req) {
  if (auto e = list_request_error(req)) co_return *e;
  ListOutcome out;
  std::string cursor = req.start_after;
  for (;;) {
    // One more than still needed, so a full page usually knows whether
    // another follows.
    const uint64_t want = std::min<uint64_t>(req.limit - out.paths.size() + 1, s2::kMaxListLimit);
    auto page_op = s2_list(req.prefix, cursor, want);
    auto page = co_await page_op;
    if (!page.ok()) co_return s2_error(*page.error);
    std::vector<std::string> names;
    for (auto& name : page.value->names) {
      if (name != s2::kProbeStream && list_wants(req, name)) names.push_back(std::move(name));
    }
    bool live_after = false;  // a stream exists past the last one taken
    size_t next = 0;
    while (next < names.size() && out.paths.size() < req.limit) {
      const size_t end = std::min(names.size(), next + kListChecks);
      std::vector<std::optional<Result<bool>>> live(end - next);
      auto join = std::make_shared<ListJoin>();
      join->left = live.size();
      auto start = [&](std::function<void(bool)> cb) {
        join->done = std::move(cb);
        for (size_t i = next; i < end; ++i) spawn(list_check(names[i], &live[i - next], join));
      };
      CallbackAwaiter<bool, decltype(start)> all(start);
      co_await all;
      for (size_t i = next; i < end; ++i) {
        Result<bool>& r = *live[i - next];
        if (!r) co_return std::move(r).error();
        if (!*r) continue;
        if (out.paths.size() == req.limit) {
          live_after = true;
        } else {
          out.paths.push_back(names[i]);
        }
      }
      next = end;
    }
    const bool unchecked = next < names.size();
    if (out.paths.size() == req.limit) {
      out.more = live_after || unchecked || page.value->has_more;
      co_return out;
    }
    if (!page.value->has_more || page.value->last.empty()) co_return out;
    cursor = page.value->last;
  }
}

// ---- watches: one S2 read session per stream with live readers ----

class S2Engine::Handle final : public WatchHandle {
 public:
  Handle(CachePtr c, uint64_t id) : c_(std::move(c)), id_(id) {}
  ~Handle() override {
    std::unique_ptr<s2::ReadSession> dead;
    MutexLock lock(c_->mu);
    c_->watchers.erase(id_);
    if (c_->watchers.empty()) {
      dead = std::move(c_->session);
      ++c_->session_gen;
    }
  }

 private:
  CachePtr c_;
  uint64_t id_;
};

std::unique_ptr<WatchHandle> S2Engine::watch(const std::string& path,
                                             std::function<void(const CommitEvent&)> on_event) {
  auto c = cache(path);
  uint64_t id;
  {
    MutexLock lock(c->mu);
    id = c->next_watch++;
    c->watchers.emplace(id, std::move(on_event));
  }
  // Load (if needed), send the initial event, and open the one read session
  // this node keeps for the stream: all off the caller's thread.
  begin_task();
  spawn(run_watch_start(c, id));
  return std::make_unique<Handle>(c, id);
}

Task<void> S2Engine::run_watch_start(CachePtr c, uint64_t id) {
  TaskEnd ended{*this};
  bool loaded;
  {
    MutexLock lock(c->mu);
    loaded = c->loaded;
  }
  if (!loaded) {
    auto op = catch_up(c);
    auto st = co_await op;
    (void)st;
  }
  uint64_t gen = 0;
  bool open = false;
  {
    MutexLock lock(c->mu);
    auto it = c->watchers.find(id);
    if (it != c->watchers.end()) {
      CommitEvent initial;
      initial.tail = c->fold.meta.tail;
      initial.closed = c->fold.meta.closed;
      initial.gone = !c->fold.exists || c->fold.meta.soft_deleted;
      it->second(initial);
      if (initial.gone) {
        c->watchers.erase(it);
      } else if (!c->session) {
        open = true;
        gen = ++c->session_gen;
      }
    }
  }
  if (open) reopen_session(c, gen);
}

void S2Engine::reopen_session(const CachePtr& c, uint64_t gen) {
  uint64_t from;
  {
    MutexLock lock(c->mu);
    if (c->session_gen != gen || c->watchers.empty()) return;
    from = c->fold.next_seq;
  }
  s2::SessionHandlers handlers;
  std::weak_ptr<Cache> weak = c;
  handlers.on_batch = [this, weak](s2::ReadBatch batch) {
    auto cc = weak.lock();
    if (!cc) return;
    MutexLock lock(cc->mu);
    cc->session_failures = 0;
    fold_locked(*cc, batch.records);
  };
  handlers.on_end = [this, weak, gen](S2Error) {
    auto cc = weak.lock();
    if (!cc) return;
    int failures;
    {
      MutexLock lock(cc->mu);
      if (cc->session_gen != gen) return;
      failures = cc->session_failures++;
    }
    // Resume from the next seq this node has not folded: readers see no gap.
    // Back off when sessions keep failing before delivering anything (S2 down).
    auto delay =
        std::chrono::milliseconds(failures > 0 ? std::min(2000, 50 << std::min(failures, 6)) : 0);
    timers_.after(delay, [this, weak, gen] {
      auto c2 = weak.lock();
      if (!c2) return;
      std::unique_ptr<s2::ReadSession> old;
      {
        MutexLock lock(c2->mu);
        if (c2->session_gen != gen) return;
        old = std::move(c2->session);
      }
      old.reset();
      reopen_session(c2, gen);
    });
  };
  auto session = api_.open_session(c->name, from, std::move(handlers));
  MutexLock lock(c->mu);
  if (c->session_gen == gen && !c->watchers.empty()) c->session = std::move(session);
}

}  // namespace s2engine

std::unique_ptr<StreamStore> make_s2_store(const S2StoreOptions& options) {
  return std::make_unique<s2engine::S2Engine>(options);
}

}  // namespace ds
