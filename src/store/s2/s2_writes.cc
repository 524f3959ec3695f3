// The S2 engine's writes: the per-stream writer that group-commits appends,
// conditional appends and how their ambiguous outcomes are settled, create,
// delete and fork references. docs/s2-mapping.md ("Writes") is the contract.

#include <algorithm>

#include "protocol/headers.h"
#include "protocol/json.h"
#include "store/meta_codec.h"
#include "store/s2/s2_engine.h"

namespace ds::s2engine {

using s2::AppendInput;
using s2::AppendRecord;
using s2::Header;
using s2::S2Error;
using s2::SequencedRecord;
using namespace s2fold;

namespace {

/// Metered bytes our stamp (`w`, `k`) adds to a batch of n records, with room.
uint64_t stamp_overhead(size_t n) { return 64 + 32 * n; }

/// One batch, decided against the fold as of `expected`.
struct Batch {
  uint64_t expected = 0;        ///< match_seq_num: the fold's next_seq
  uint64_t checkpoint_seq = 0;  ///< for the `k` stamp
  bool has_checkpoint = false;
  std::vector<AppendRecord> records;
  std::vector<Result<AppendOutcome>> answers;  ///< one per request taken
  bool expired = false;                        ///< the fold says the stream has expired
};

/// Decides `reqs` in order against the fold, as one-at-a-time appends would
/// be: each sees the effects of the ones before it. Takes requests while the
/// batch stays within S2's limits; returns how many it took.
size_t decide_batch(const FoldState& fold, const std::deque<PendingAppend>& reqs,
                    const S2StoreOptions& opts, int64_t now, Batch& b) {
  b.expected = fold.next_seq;
  b.has_checkpoint = fold.has_checkpoint;
  b.checkpoint_seq = fold.checkpoint_seq;
  if (!fold.exists || fold.meta.soft_deleted) {
    for (size_t i = 0; i < reqs.size(); ++i) {
      b.answers.push_back(fold.exists ? Error(errc::gone, "stream has been deleted")
                                      : Error(errc::not_found, "stream not found"));
    }
    return reqs.size();
  }
  if (expired(fold, now)) {
    b.expired = true;
    return 0;
  }
  // A checkpoint goes first when this batch would take the records after the
  // latest one past the configured distance (an upper bound: every request
  // one record of its body's size).
  uint64_t upper_records = std::min<uint64_t>(reqs.size(), s2::kMaxBatchRecords);
  uint64_t upper_bytes = 0;
  for (size_t i = 0; i < upper_records; ++i) upper_bytes += 64 + reqs[i].req.body.size();
  if (fold.records_since_checkpoint + upper_records > opts.checkpoint_records ||
      fold.bytes_since_checkpoint + upper_bytes > opts.checkpoint_bytes) {
    AppendRecord ckpt = checkpoint_record(fold);
    if (ckpt.body.size() <= kMaxRecordBody) {  // else a cold load folds further back
      b.records.push_back(std::move(ckpt));
      b.checkpoint_seq = fold.next_seq;
      b.has_checkpoint = true;
    }
  }
  uint64_t bytes = 0;
  for (const auto& r : b.records) bytes += s2::metered_bytes(r);

  StreamMeta staged = fold.meta;
  ProducerMap touched;  // producers this batch changed
  size_t taken = 0;
  for (; taken < reqs.size(); ++taken) {
    const AppendRequest& req = reqs[taken].req;
    const ProducerState* producer = nullptr;
    if (req.producer) {
      auto t = touched.find(req.producer->id);
      if (t != touched.end()) {
        producer = &t->second;
      } else if (auto it = fold.producers.find(req.producer->id); it != fold.producers.end()) {
        producer = &it->second;
      }
    }
    auto decision = decide_append(staged, producer, req, now);
    if (!decision) {
      b.answers.push_back(std::move(decision).error());
      continue;
    }
    if (auto* dup = std::get_if<AppendDuplicate>(&*decision)) {
      b.answers.push_back(AppendOutcome{AppendOutcome::Kind::duplicate, staged.tail,
                                        staged.closed || dup->closed, dup->epoch, dup->seq});
      continue;
    }
    if (std::holds_alternative<AlreadyClosed>(*decision)) {
      b.answers.push_back(
          AppendOutcome{AppendOutcome::Kind::already_closed, staged.tail, true, {}, {}});
      continue;
    }
    auto& acc = std::get<AppendAccepted>(*decision);
    if (acc.record.size() > kMaxRecordBody) {
      b.answers.push_back(
          Error(errc::payload_too_large, "the S2 engine takes at most 1000 KiB per append"));
      continue;
    }
    AppendRecord rec = append_record(req, acc);
    uint64_t size = s2::metered_bytes(rec);
    if (size + stamp_overhead(1) > kMaxRecordMetered) {
      b.answers.push_back(Error(errc::payload_too_large,
                                "the S2 engine takes at most 1000 KiB per append, headers "
                                "(Producer-Id, Stream-Seq) at most 16 KiB"));
      continue;
    }
    auto fits = [&] {
      return b.records.size() + 1 <= s2::kMaxBatchRecords &&
             bytes + size + stamp_overhead(b.records.size() + 1) <= s2::kMaxBatchBytes;
    };
    if (!fits() && b.records.size() == 1 && b.has_checkpoint && b.checkpoint_seq == b.expected) {
      // A big first append: it goes without the checkpoint (the next batch writes one).
      b.records.clear();
      bytes = 0;
      b.has_checkpoint = fold.has_checkpoint;
      b.checkpoint_seq = fold.checkpoint_seq;
    }
    if (!fits()) break;  // the next batch takes it
    bytes += size;
    b.records.push_back(std::move(rec));
    staged.tail = Offset{staged.id, b.expected + b.records.size()};
    if (acc.close) {
      staged.closed = true;
      staged.closed_by = req.producer;
    }
    if (req.stream_seq) staged.last_stream_seq = req.stream_seq;
    if (acc.producer) touched[req.producer->id] = *acc.producer;
    AppendOutcome out{AppendOutcome::Kind::appended, staged.tail, staged.closed, {}, {}};
    if (req.producer) {
      out.producer_epoch = req.producer->epoch;
      out.producer_seq = req.producer->seq;
    }
    b.answers.push_back(out);
  }
  // A batch that is only a checkpoint is no batch.
  const bool leading_checkpoint = b.has_checkpoint && b.checkpoint_seq == b.expected;
  if (leading_checkpoint && b.records.size() == 1) {
    b.records.clear();
    b.has_checkpoint = fold.has_checkpoint;
    b.checkpoint_seq = fold.checkpoint_seq;
  }
  return taken;
}

}  // namespace

// ---- appends: group commit ----

void S2Engine::append(AppendRequest req, Callback<AppendOutcome> done) {
  auto c = cache(req.path);
  bool start = false;
  {
    MutexLock lock(c->mu);
    c->pending.push_back(PendingAppend{std::move(req), std::move(done)});
    if (!c->writer_running) {
      c->writer_running = true;
      start = true;
    }
  }
  if (start) {
    begin_task();
    spawn(run_writer(c));
  }
}

Task<void> S2Engine::run_writer(CachePtr c) {
  TaskEnd ended{*this};
  // While one batch is in flight, every append that arrives for the stream
  // queues; the next batch takes them all.
  for (;;) {
    {
      MutexLock lock(c->mu);
      if (c->pending.empty()) {
        c->writer_running = false;
        break;
      }
    }
    // Linger briefly while the writers the last batch answered come back.
    for (auto waited = std::chrono::microseconds(0); waited < opts_.batch_linger;) {
      size_t queued, last;
      {
        MutexLock lock(c->mu);
        queued = c->pending.size();
        last = c->last_batch_size;
      }
      if (last <= 1 || queued * 10 >= last * 9) break;
      auto step = std::min(std::chrono::microseconds(200), opts_.batch_linger - waited);
      auto nap = timers_.sleep(step);
      co_await nap;
      waited += step;
    }
    // Pace the stream's batches (S2 allows 200 per second per stream and
    // connection); appends arriving meanwhile join the batch.
    std::chrono::microseconds pace;
    std::chrono::steady_clock::time_point last_batch;
    {
      // last_batch is only touched by this stream's writer (one at a time),
      // but it is declared under c->mu like the rest: read it there.
      MutexLock lock(c->mu);
      pace = std::max(c->pace, opts_.min_batch_interval);
      last_batch = c->last_batch;
    }
    auto since = std::chrono::steady_clock::now() - last_batch;
    if (since < pace) {
      auto pause =
          timers_.sleep(std::chrono::duration_cast<std::chrono::microseconds>(pace - since));
      co_await pause;
    }
    auto lock = c->write_mu.lock();
    co_await lock;
    try {
      auto op = write_batch(c);
      co_await op;
    } catch (const std::exception& e) {
      // A bug, not S2: fail what is queued rather than leave it hanging.
      std::deque<PendingAppend> failed;
      {
        MutexLock l(c->mu);
        failed.swap(c->pending);
      }
      for (auto& p : failed)
        p.done(Error(errc::storage_failure, std::string("S2 engine: ") + e.what()));
    }
    c->write_mu.unlock();
  }
}

Task<void> S2Engine::write_batch(CachePtr c) {
  // Answers given without a write must come from a fold known to be current;
  // a write proves it (a stale fold fails its match_seq_num).
  bool confirmed = false;
  std::deque<PendingAppend> reqs;
  {
    MutexLock lock(c->mu);
    reqs.swap(c->pending);
  }
  auto give_back = [&](size_t taken) {
    // What did not fit goes back to the front of the queue, in order.
    MutexLock lock(c->mu);
    for (size_t i = reqs.size(); i > taken; --i) c->pending.push_front(std::move(reqs[i - 1]));
    reqs.resize(taken);
  };
  auto fail_all = [&](const Error& e) {
    for (auto& p : reqs) p.done(e);
    reqs.clear();
  };
  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    bool loaded;
    {
      MutexLock lock(c->mu);
      loaded = c->loaded;
    }
    if (!loaded) {
      auto load_op = refresh(c, /*write_locked=*/true);
      auto st = co_await load_op;
      if (!st) {
        fail_all(st.error());
        co_return;
      }
      confirmed = true;
    }
    Batch b;
    size_t taken;
    {
      MutexLock lock(c->mu);
      taken = decide_batch(c->fold, reqs, opts_, now_ms(), b);
    }
    if (b.expired || (b.records.empty() && !confirmed)) {
      auto st_op = refresh(c, /*write_locked=*/true);  // confirms, and deletes what expired
      auto st = co_await st_op;
      if (!st) {
        fail_all(st.error());
        co_return;
      }
      confirmed = true;
      continue;
    }
    give_back(taken);
    if (b.records.empty()) {
      for (size_t i = 0; i < reqs.size(); ++i) reqs[i].done(std::move(b.answers[i]));
      co_return;
    }
    {
      MutexLock lock(c->mu);  // as every Cache field (read by the linger loop under it)
      c->last_batch = std::chrono::steady_clock::now();
      c->last_batch_size = reqs.size();
    }
    ++stats_.append_batches;
    stats_.batched_requests += reqs.size();
    if (b.has_checkpoint && b.checkpoint_seq == b.expected) ++stats_.checkpoints;
    auto append_op = conditional_append(c, std::move(b.records), b.expected,
                                        b.has_checkpoint ? b.checkpoint_seq : kNotSeen);
    auto landing = co_await append_op;
    if (!landing) {
      fail_all(landing.error());
      co_return;
    }
    if (*landing == Landing::landed) {
      for (size_t i = 0; i < reqs.size(); ++i) reqs[i].done(std::move(b.answers[i]));
      co_return;
    }
    // Another node wrote first: the fold has caught up; decide again.
    ++stats_.conflicts;
    confirmed = true;
    // Requests given back may be retaken with the rest.
    {
      MutexLock lock(c->mu);
      while (!c->pending.empty()) {
        reqs.push_back(std::move(c->pending.front()));
        c->pending.pop_front();
      }
    }
  }
  fail_all(Error(errc::unavailable, "too much write contention on this stream; retry"));
}

Task<Result<Landing>> S2Engine::conditional_append(CachePtr c, std::vector<AppendRecord> records,
                                                   uint64_t expected, uint64_t checkpoint_seq) {
  std::string write_id = random_write_id(++write_counter_);
  if (checkpoint_seq != kNotSeen) {
    stamp(records, write_id, checkpoint_seq);
  } else {
    records.front().headers.push_back(Header{std::string(kWriteId), write_id});
  }
  // Registered before the first attempt: the stream's read session may fold
  // the position before this coroutine learns how its append went.
  {
    MutexLock lock(c->mu);
    c->awaited_writes.emplace(write_id, kNotSeen);
  }
  auto landed_at = [&]() -> uint64_t {
    MutexLock lock(c->mu);
    auto it = c->awaited_writes.find(write_id);
    return it == c->awaited_writes.end() ? kNotSeen : it->second;
  };
  auto forget = [&] {
    MutexLock lock(c->mu);
    c->awaited_writes.erase(write_id);
  };
  constexpr int kRateLimitedRetries = 20;
  int rate_limited = 0;
  for (int tries = 0;; ++tries) {
    AppendInput in;
    in.records = records;
    in.match_seq_num = expected;
    auto op = s2_append(c->name, std::move(in));
    auto r = co_await op;
    if (r.ok()) {
      // Fold what we wrote, exactly as a reader would see it.
      std::vector<SequencedRecord> seqd;
      seqd.reserve(records.size());
      auto now = static_cast<uint64_t>(now_ms());
      for (size_t i = 0; i < records.size(); ++i) {
        SequencedRecord s;
        s.seq_num = r.value->start_seq + i;
        s.timestamp = now;
        s.headers = std::move(records[i].headers);
        s.body = std::move(records[i].body);
        seqd.push_back(std::move(s));
      }
      MutexLock lock(c->mu);
      fold_locked(*c, seqd);
      c->awaited_writes.erase(write_id);
      c->pace -= c->pace / 8;  // S2 took it: ease off any back-pressure
      co_return Landing::landed;
    }
    const S2Error& e = *r.error;
    if (e.kind == S2Error::Kind::unavailable &&
        (e.http_status == 429 || e.code == "rate_limited") && rate_limited < kRateLimitedRetries) {
      // S2's per-stream limits: back-pressure, not failure. The client gave
      // up on retries that provably did not apply; slow this stream down and
      // send the same records at the same position again.
      ++rate_limited;
      std::chrono::microseconds pause;
      {
        MutexLock lock(c->mu);
        c->pace = std::min(std::max(c->pace * 2, std::chrono::microseconds(20'000)),
                           std::chrono::microseconds(1'000'000));
        pause = c->pace;
      }
      auto nap = timers_.sleep(pause);
      co_await nap;
      continue;
    }
    if (e.kind != S2Error::Kind::seq_num_mismatch && e.kind != S2Error::Kind::ambiguous) {
      forget();
      co_return s2_error(e);
    }
    // Either another writer took the position (412), or we cannot tell
    // whether ours did. A conditional append can only land at `expected`, so
    // folding through that position settles it: our write id there means it
    // landed (this attempt or an earlier one: they carry the same records).
    if (e.kind == S2Error::Kind::ambiguous) ++stats_.ambiguous;
    Status st = Unit{};
    if (e.kind == S2Error::Kind::seq_num_mismatch) {
      auto up = catch_up_to(c, e.tail);
      st = co_await up;
    } else {
      auto up = catch_up(c);
      st = co_await up;
    }
    if (!st) {
      if (landed_at() == expected) {
        forget();
        co_return Landing::landed;
      }
      forget();
      co_return st.error();
    }
    uint64_t at = landed_at();
    uint64_t next;
    {
      MutexLock lock(c->mu);
      next = c->fold.next_seq;
    }
    if (at == expected) {
      forget();
      co_return Landing::landed;
    }
    if (next > expected) {
      forget();  // the position holds another write: ours can never land
      co_return Landing::conflict;
    }
    // Nothing at the position yet: ours may still be on its way. Sending the
    // same records at the same position again is safe (only one can land).
    if (tries >= 3) {
      forget();
      co_return Error(errc::unavailable, "S2 is unavailable: append outcome unknown");
    }
    auto pause = timers_.sleep(std::chrono::milliseconds(50 << tries));
    co_await pause;
  }
}

// ---- retention ----
//
// docs/s2-mapping.md, "Retention". Every node looks, every retention_interval,
// at the streams it has loaded; one with data that retention removes gets a
// pass under its write lock: a conditional batch of an S2 `trim` up to the
// end of the last data record removed and a checkpoint whose state holds the
// new earliest offset. Conditional like every write, so of several nodes
// deciding the same trim only one lands (the others refold and find nothing
// left to do); the checkpoint comes after the trim point, so no fold ever
// needs a trimmed record.

namespace {

/// How many of fold.retained (from the front) retention removes at `now`.
size_t retention_cut(const FoldState& f, int64_t now) {
  const auto& cfg = f.meta.config;
  size_t cut = 0;
  if (const auto max = cfg.retention_max_bytes) {
    uint64_t total = f.retained_bytes;
    while (cut < f.retained.size() && total > *max) total -= f.retained[cut++].size;
  }
  if (const auto age = cfg.retention_max_age_s) {
    const int64_t age_ms = static_cast<int64_t>(std::min<uint64_t>(*age, 1ull << 40)) * 1000;
    size_t aged = 0;
    while (aged < f.retained.size() && f.retained[aged].ts + age_ms <= now) ++aged;
    cut = std::max(cut, aged);
  }
  return cut;
}

/// The first seq a retention pass must know the data records from.
uint64_t retention_floor(const FoldState& f) {
  uint64_t floor = f.start_seq + 1;
  if (f.meta.earliest.hi == f.meta.id) floor = std::max(floor, f.meta.earliest.lo);
  return floor;
}

}  // namespace

bool retention_due(const FoldState& f, int64_t now) {
  // A soft-deleted source is kept for its forks, and so is its retention.
  if (!f.exists || !f.meta.config.has_retention()) return false;
  return f.retained_from > retention_floor(f) || retention_cut(f, now) > 0;
}

void S2Engine::sweep_retention() {
  std::vector<CachePtr> due;
  {
    MutexLock lock(mu_);
    const int64_t now = now_ms();
    for (auto& [name, c] : caches_) {
      MutexLock cl(c->mu);
      if (c->loaded && !c->retaining && retention_due(c->fold, now) && !expired(c->fold, now)) {
        c->retaining = true;
        due.push_back(c);
      }
    }
  }
  for (auto& c : due) {
    if (try_begin_task()) {
      spawn(run_retention(c));
    } else {
      MutexLock cl(c->mu);
      c->retaining = false;
    }
  }
  {
    MutexLock lock(tasks_mu_);
    if (stopping_) return;
  }
  timers_.after(opts_.retention_interval, [this] { sweep_retention(); });
}

Task<void> S2Engine::run_retention(CachePtr c) {
  TaskEnd ended{*this};
  auto lock = c->write_mu.lock();
  co_await lock;
  try {
    auto op = retain_locked(c);
    co_await op;
  } catch (const std::exception&) {
    // A bug, not S2: the next sweep tries again.
  }
  c->write_mu.unlock();
  MutexLock l(c->mu);
  c->retaining = false;
}

Task<void> S2Engine::retain_locked(CachePtr c) {
  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    uint64_t hi = 0, start = 0, fill_from = 0, fill_to = 0, expected = 0, point = 0, bytes = 0;
    AppendRecord ckpt;
    {
      MutexLock lock(c->mu);
      const int64_t now = now_ms();
      if (!c->loaded || !retention_due(c->fold, now) || expired(c->fold, now)) co_return;
      hi = c->fold.meta.id;
      start = c->fold.start_seq;
      if (c->fold.retained_from > retention_floor(c->fold)) {
        // The fold began at a checkpoint: learn the data records before it.
        fill_from = retention_floor(c->fold);
        fill_to = c->fold.retained_from;
      } else {
        const size_t cut = retention_cut(c->fold, now);
        // The end of the last data record removed: the new earliest offset.
        point = c->fold.retained[cut - 1].seq + 1;
        for (size_t i = 0; i < cut; ++i) bytes += c->fold.retained[i].size;
        expected = c->fold.next_seq;
        ckpt = checkpoint_record(c->fold, Offset{hi, point});
        if (ckpt.body.size() > kMaxRecordBody) co_return;  // no checkpoint, no trim
      }
    }
    if (fill_to > 0) {
      std::vector<RetainedRecord> found;
      uint64_t pos = fill_from;
      while (pos < fill_to) {
        auto read_op = s2_read(c->name, pos, s2::kMaxBatchRecords);
        auto r = co_await read_op;
        if (!r.ok()) {
          if (r.error->kind == S2Error::Kind::range_not_satisfiable) break;
          co_return;  // S2 trouble: the next sweep tries again
        }
        if (r.value->records.empty()) break;
        for (const auto& rec : r.value->records) {
          if (rec.seq_num >= fill_to) {
            pos = fill_to;
            break;
          }
          pos = rec.seq_num + 1;
          const std::string* kind = rec.is_command() ? nullptr : find_header(rec, kKind);
          if (kind && *kind == kData) {
            found.push_back(
                RetainedRecord{rec.seq_num, static_cast<int64_t>(rec.timestamp), rec.body.size()});
          }
        }
      }
      MutexLock lock(c->mu);
      if (!c->fold.exists || c->fold.meta.id != hi || c->fold.start_seq != start ||
          c->fold.retained_from != fill_to)
        continue;  // the fold moved meanwhile: look again
      const uint64_t floor = retention_floor(c->fold);
      for (auto it = found.rbegin(); it != found.rend(); ++it) {
        if (it->seq < floor) break;
        c->fold.retained.push_front(*it);
        c->fold.retained_bytes += it->size;
      }
      c->fold.retained_from = std::min(c->fold.retained_from, floor);
      continue;
    }
    std::vector<AppendRecord> records;
    records.push_back(s2::trim_record(point));
    records.push_back(std::move(ckpt));
    auto append_op = conditional_append(c, std::move(records), expected, expected + 1);
    auto landing = co_await append_op;
    if (!landing) co_return;  // the next sweep tries again
    if (*landing == Landing::landed) {
      ++stats_.retention_trims;
      ++stats_.checkpoints;
      stats_.retention_trimmed_bytes += bytes;
      co_return;
    }
    ++stats_.conflicts;  // another node wrote first: refolded, decide again
  }
}

// ---- create ----

void S2Engine::create(CreateRequest req, Callback<CreateOutcome> done) {
  begin_task();
  auto c = cache(req.path);
  auto work = do_create(std::move(req));
  spawn(answer<CreateOutcome>(std::move(c), std::move(work), std::move(done)));
}

Task<Result<CreateOutcome>> S2Engine::do_create(CreateRequest req) {
  auto c = cache(req.path);  // its write_mu is held by the caller
  auto refresh_op = refresh(c, true);
  auto st = co_await refresh_op;
  if (!st) co_return st.error();
  {
    MutexLock lock(c->mu);
    if (c->fold.exists) {
      auto same = decide_create_existing(c->fold.meta, req, now_ms());
      if (!same) co_return std::move(same).error();
      lock.unlock();
      if (same->renew_ttl) maybe_touch(c);  // a PUT is a write: it renews the sliding TTL
      co_return CreateOutcome{false, std::move(same->meta)};
    }
  }

  CachePtr src;
  std::optional<StreamMeta> source;
  if (req.forked_from) {
    src = cache(*req.forked_from);
    auto src_op = refresh(src, false);
    auto sst = co_await src_op;
    if (!sst) co_return sst.error();
    MutexLock lock(src->mu);
    if (src->fold.exists) source = src->fold.meta;
  }
  auto decided = decide_create_new(req, source ? &*source : nullptr, now_ms());
  if (!decided) co_return std::move(decided).error();
  StreamMeta meta = std::move(decided->meta);
  const std::string& initial = decided->initial;
  std::string prefix;
  if (meta.fork && req.fork_sub_offset > 0) {
    // The inherited part of the append at the fork offset becomes the fork's
    // first record. Its anchor is the first append at or after the fork
    // offset (S2 offsets are not dense: control records between them hold no data).
    ReadRequest rr{*req.forked_from, OffsetSpec::position(meta.fork->offset), 1};
    auto first_op = do_read(rr);
    auto first = co_await first_op;
    if (!first) co_return std::move(first).error();
    if (first->records.empty()) {
      co_return Error(errc::bad_request, "Stream-Fork-Sub-Offset: no data at the fork offset");
    }
    auto p =
        fork_prefix(meta.config.content_type, first->records.front()->bytes, req.fork_sub_offset);
    if (!p) co_return std::move(p).error();
    prefix = std::move(*p);
  }
  if (initial.size() > kMaxRecordBody || prefix.size() > kMaxRecordBody) {
    co_return Error(errc::payload_too_large, "the S2 engine takes at most 1000 KiB per append");
  }
  meta.closed = false;  // closure is a record of its own (below)

  {
    auto create_op = s2_create_stream(req.path);
    auto created = co_await create_op;
    if (!created.ok() && created.error->kind != S2Error::Kind::already_exists)
      co_return s2_error(*created.error);
  }

  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    uint64_t expected;
    {
      MutexLock lock(c->mu);
      if (c->fold.exists) {
        // Another node created it meanwhile: answer as an idempotent PUT would.
        auto same = decide_create_existing(c->fold.meta, req, now_ms());
        if (!same) co_return std::move(same).error();
        co_return CreateOutcome{false, std::move(same->meta)};
      }
      uint64_t hi = c->fold.ever_existed ? c->fold.last_hi + 1 : 0;
      if (meta.fork) hi = std::max(hi, meta.fork->offset.hi + 1);
      meta.id = hi;
      expected = c->fold.next_seq;
    }
    std::vector<AppendRecord> records;
    records.push_back(control_record(kMeta));
    records.back().body = encode_meta(meta);
    const std::string* parts[] = {&prefix, &initial};
    for (const std::string* data : parts) {
      if (data->empty()) continue;
      records.push_back(control_record(kData));
      records.back().body = *data;
    }
    if (req.closed) records.push_back(control_record(kClose));
    auto append_op = conditional_append(c, std::move(records), expected, expected);
    auto landing = co_await append_op;
    if (!landing) co_return landing.error();
    if (*landing == Landing::conflict) continue;
    if (meta.fork) {
      std::optional<errc> refused;
      auto ref_op = add_ref(meta.fork->source_path, meta.fork->source_id, &refused);
      auto ref_err = co_await ref_op;
      if (ref_err || refused) {
        // Undo: the fork must not outlive a reference that never landed (and
        // must not drop a reference it never took).
        {
          MutexLock lock(c->mu);
          c->fold.meta.fork.reset();
        }
        auto undo_op = delete_locked(c, false);
        auto undo = co_await undo_op;
        (void)undo;
        if (ref_err) co_return *ref_err;
        if (*refused == errc::not_found)
          co_return Error(errc::not_found, "fork source stream not found");
        co_return Error(errc::fork_source_deleted, "fork source stream has been deleted");
      }
    }
    MutexLock lock(c->mu);
    co_return CreateOutcome{true, c->fold.meta};
  }
  co_return Error(errc::unavailable, "too much write contention on this stream; retry");
}

// ---- delete and fork references ----

Task<std::optional<Error>> S2Engine::add_ref(std::string source, uint64_t source_hi,
                                             std::optional<errc>* refused) {
  auto s = cache(source);
  auto lock = s->write_mu.lock();
  co_await lock;
  auto op = change_ref_locked(s, source_hi, +1, refused);
  auto r = co_await op;
  s->write_mu.unlock();
  if (!r) co_return r.error();
  co_return std::nullopt;
}

Task<Result<bool>> S2Engine::change_ref_locked(CachePtr s, uint64_t source_hi, int delta,
                                               std::optional<errc>* refused) {
  refused->reset();
  auto up_op = catch_up(s);
  auto st = co_await up_op;
  if (!st) co_return st.error();
  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    uint64_t expected, ckpt;
    {
      MutexLock l(s->mu);
      if (!s->fold.exists || s->fold.meta.id != source_hi) {
        *refused = errc::not_found;
        co_return false;
      }
      if (delta > 0 && s->fold.meta.soft_deleted) {
        *refused = errc::fork_source_deleted;
        co_return false;
      }
      if (delta < 0 && s->fold.meta.soft_deleted && s->fold.meta.ref_count <= 1)
        co_return true;  // the last reference to a deleted source: the caller deletes it
      expected = s->fold.next_seq;
      ckpt = s->fold.has_checkpoint ? s->fold.checkpoint_seq : kNotSeen;
    }
    std::vector<AppendRecord> records;
    records.push_back(control_record(kRef));
    records.back().headers.push_back(Header{"r", delta > 0 ? "+1" : "-1"});
    auto append_op = conditional_append(s, std::move(records), expected, ckpt);
    auto landing = co_await append_op;
    if (!landing) co_return landing.error();
    if (*landing == Landing::landed) co_return false;
  }
  co_return Error(errc::unavailable, "too much write contention on the fork source; retry");
}

Task<Result<std::optional<ForkRef>>> S2Engine::write_gone(CachePtr c, bool collect) {
  using Released = std::optional<ForkRef>;
  for (int attempt = 0; attempt < opts_.max_conflict_retries; ++attempt) {
    Released fork;
    bool soft;
    uint64_t hi, expected, ckpt;
    {
      MutexLock lock(c->mu);
      if (!c->fold.exists) co_return Released{};
      if (c->fold.meta.soft_deleted != collect)
        co_return Released{};  // already deleted / not ours to collect
      soft = !collect && c->fold.meta.ref_count > 0;
      fork = c->fold.meta.fork;
      hi = c->fold.meta.id;
      expected = c->fold.next_seq;
      ckpt = c->fold.has_checkpoint ? c->fold.checkpoint_seq : kNotSeen;
    }
    // `h` keeps the incarnation number after a trim removes the meta record,
    // so a re-created stream still gets a new one.
    std::vector<AppendRecord> records;
    records.push_back(control_record(kGone));
    records.back().headers.push_back(Header{"g", soft ? "soft" : "hard"});
    records.back().headers.push_back(Header{"h", std::to_string(hi)});
    auto append_op = conditional_append(c, std::move(records), expected, ckpt);
    auto landing = co_await append_op;
    if (!landing) co_return landing.error();
    if (*landing == Landing::conflict) continue;
    if (soft) co_return Released{};
    // Drop the dead incarnation's records (S2 trims asynchronously): those
    // before the `gone` record, which landed at `expected`. Not the fold's
    // next_seq: the read session may already have folded a new incarnation
    // another node created after it, which must not be trimmed.
    AppendInput trim;
    trim.records.push_back(s2::trim_record(expected));
    auto trim_op = s2_append(c->name, std::move(trim));
    auto tr = co_await trim_op;
    (void)tr;  // best effort
    co_return fork;
  }
  co_return Error(errc::unavailable, "too much write contention on this stream; retry");
}

Task<std::optional<Error>> S2Engine::delete_locked(CachePtr c, bool collect) {
  // A loop, not recursion: the cascade up a fork chain is as long as the
  // chain. Besides the caller's lock on the first stream, it holds at most
  // one source's write lock at a time, taken hand over hand (a fork's before
  // its source's, the engine's lock order).
  CachePtr held;
  std::optional<Error> result;
  for (;;) {
    auto gone_op = write_gone(c, collect);
    auto gone = co_await gone_op;
    if (!gone) {
      result = gone.error();
      break;
    }
    if (!*gone) break;  // soft-deleted, already gone, or not a fork
    const ForkRef fork = **gone;
    CachePtr s = cache(fork.source_path);
    auto lock = s->write_mu.lock();
    co_await lock;
    if (held) held->write_mu.unlock();
    held = s;
    std::optional<errc> refused;  // a -1 is never refused
    auto ref_op = change_ref_locked(s, fork.source_id, -1, &refused);
    auto last = co_await ref_op;
    if (!last) {
      result = last.error();
      break;
    }
    if (!*last) break;  // the source keeps other references (or is gone)
    c = s;              // the last reference to a deleted source: collect it
    collect = true;
  }
  if (held) held->write_mu.unlock();
  co_return result;
}

void S2Engine::remove(std::string path, Callback<Unit> done) {
  begin_task();
  auto c = cache(path);
  auto work = do_remove(std::move(path));
  spawn(answer<Unit>(std::move(c), std::move(work), std::move(done)));
}

Task<Result<Unit>> S2Engine::do_remove(std::string path) {
  auto c = cache(path);                // its write_mu is held by the caller
  auto refresh_op = refresh(c, true);  // an expired stream is deleted here, and is then not found
  auto st = co_await refresh_op;
  if (!st) co_return st.error();
  {
    MutexLock lock(c->mu);
    if (!c->fold.exists) co_return Error(errc::not_found, "stream not found");
    if (c->fold.meta.soft_deleted) co_return Error(errc::gone, "stream has been deleted");
  }
  auto del_op = delete_locked(c, false);
  auto err = co_await del_op;
  if (err) co_return *err;
  co_return Unit{};
}

}  // namespace ds::s2engine
