// The S2 engine under the storage-engine contract over an in-process S2
// (FakeS2Api): the DS-to-S2 mapping (records, folding, conditional appends,
// forks, TTL, deletion) tested with no HTTP at all. The fake follows
// ../shared/s2-api.md for what the engine relies on: consecutive seq_nums for
// every record (commands included), atomic batches, match_seq_num with the
// 412 tail, 416 at or past the tail, trim, and sessions that deliver every
// record from a seq_num on, in order. It stamps records with the engine's
// clock, so this instance has controllable time (unlike the emulator one).

#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "s2/s2_api.h"
#include "store/s2/s2_store.h"
#include "store_contract.h"

namespace ds::contract {
namespace {

using s2::S2Error;

class FakeS2Api final : public s2::S2Api {
 public:
  explicit FakeS2Api(const Clock* clock) : clock_(clock) {}

  void set_clock(const Clock* clock) {
    std::lock_guard lock(mu_);
    clock_ = clock;
  }
  /// While on, appends are refused (503 unavailable) without being applied.
  void fail_appends(bool on) {
    std::lock_guard lock(mu_);
    failing_ = on;
  }
  uint64_t injected() const {
    std::lock_guard lock(mu_);
    return injected_;
  }

  void create_stream(const std::string& stream, Callback<s2::Empty> done) override {
    std::unique_lock lock(mu_);
    if (streams_.count(stream)) {
      lock.unlock();
      return done(Failure<s2::Empty>(S2Error::Kind::already_exists, 409));
    }
    streams_[stream];
    lock.unlock();
    done(s2::S2Result<s2::Empty>::success({}));
  }

  void delete_stream(const std::string& stream, Callback<s2::Empty> done) override {
    std::unique_lock lock(mu_);
    bool erased = streams_.erase(stream) > 0;
    lock.unlock();
    if (!erased) return done(Failure<s2::Empty>(S2Error::Kind::not_found, 404));
    done(s2::S2Result<s2::Empty>::success({}));
  }

  /// While closed, appends are held (not applied, not answered) until the
  /// gate opens; then they run in order on the opening thread.
  void close_gate() {
    std::lock_guard lock(mu_);
    gate_closed_ = true;
  }
  void open_gate() {
    std::vector<std::function<void()>> held;
    {
      std::lock_guard lock(mu_);
      gate_closed_ = false;
      held.swap(held_);
    }
    for (auto& h : held) h();
  }
  size_t held() const {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  /// Appends applied, and the largest batch seen (records, metered bytes).
  uint64_t appends() const {
    std::lock_guard lock(mu_);
    return appends_;
  }
  uint64_t max_batch_records() const {
    std::lock_guard lock(mu_);
    return max_records_;
  }

  void append(const std::string& stream, s2::AppendInput input,
              Callback<s2::AppendAck> done) override {
    {
      std::lock_guard lock(mu_);
      if (gate_closed_) {
        held_.push_back([this, stream, input = std::move(input), done = std::move(done)]() mutable {
          append(stream, std::move(input), std::move(done));
        });
        return;
      }
    }
    uint64_t metered = 0;
    for (const auto& r : input.records) metered += s2::metered_bytes(r);
    if (input.records.empty() || input.records.size() > s2::kMaxBatchRecords ||
        metered > s2::kMaxBatchBytes) {
      return done(Failure<s2::AppendAck>(S2Error::Kind::rejected, 422));
    }
    std::vector<s2::SequencedRecord> added;
    s2::AppendAck ack;
    {
      std::lock_guard lock(mu_);
      auto it = streams_.find(stream);
      if (it == streams_.end()) return done(Failure<s2::AppendAck>(S2Error::Kind::not_found, 404));
      if (failing_) {
        ++injected_;
        return done(Failure<s2::AppendAck>(S2Error::Kind::unavailable, 503));
      }
      auto& s = it->second;
      const uint64_t tail = s.first_seq + s.records.size();
      if (input.match_seq_num && *input.match_seq_num != tail) {
        auto e = Error(S2Error::Kind::seq_num_mismatch, 412);
        e.tail = tail;
        return done(s2::S2Result<s2::AppendAck>::failure(e));
      }
      ack.start_seq = tail;
      ++appends_;
      max_records_ = std::max<uint64_t>(max_records_, input.records.size());
      for (auto& r : input.records) {
        s2::SequencedRecord sr;
        sr.seq_num = s.first_seq + s.records.size();
        sr.timestamp = static_cast<uint64_t>(clock_->now_ms());
        sr.headers = std::move(r.headers);
        sr.body = std::move(r.body);
        s.records.push_back(sr);
        added.push_back(std::move(sr));
      }
      ack.end_seq = ack.tail_seq = s.first_seq + s.records.size();
      // Trim commands drop records before their seq_num (S2 does it later; at once is allowed).
      for (const auto& r : added) {
        if (!r.is_command() || r.headers[0].value != "trim" || r.body.size() != 8) continue;
        uint64_t upto = 0;
        for (unsigned char c : r.body) upto = (upto << 8) | c;
        while (s.first_seq < upto && !s.records.empty()) {
          s.records.erase(s.records.begin());
          ++s.first_seq;
        }
      }
      // Delivered under the lock that orders appends, so every session sees
      // batches in seq order (the engine treats a jump as a trim).
      for (auto& session : s.sessions) session->deliver(added);
    }
    done(s2::S2Result<s2::AppendAck>::success(ack));
  }

  void read(const std::string& stream, uint64_t seq_num, s2::ReadLimits limits,
            Callback<s2::ReadBatch> done) override {
    s2::ReadBatch batch;
    {
      std::lock_guard lock(mu_);
      auto it = streams_.find(stream);
      if (it == streams_.end()) return done(Failure<s2::ReadBatch>(S2Error::Kind::not_found, 404));
      auto& s = it->second;
      const uint64_t tail = s.first_seq + s.records.size();
      if (seq_num >= tail) {
        auto e = Error(S2Error::Kind::range_not_satisfiable, 416);
        e.tail = tail;
        return done(s2::S2Result<s2::ReadBatch>::failure(e));
      }
      uint64_t count = std::min<uint64_t>(limits.count.value_or(1000), 1000);
      uint64_t bytes = std::min<uint64_t>(limits.bytes.value_or(1 << 20), 1 << 20);
      uint64_t used = 0;
      for (uint64_t seq = std::max(seq_num, s.first_seq);
           seq < tail && batch.records.size() < count; ++seq) {
        const auto& r = s.records[seq - s.first_seq];
        if (!batch.records.empty() && used + r.body.size() > bytes) break;
        used += r.body.size();
        batch.records.push_back(r);
      }
    }
    done(s2::S2Result<s2::ReadBatch>::success(std::move(batch)));
  }

  void read_from_tail(const std::string& stream, uint64_t tail_offset, s2::ReadLimits limits,
                      Callback<s2::ReadBatch> done) override {
    uint64_t start = 0;
    {
      std::lock_guard lock(mu_);
      auto it = streams_.find(stream);
      if (it != streams_.end()) {
        const uint64_t tail = it->second.first_seq + it->second.records.size();
        start = tail - std::min(tail, tail_offset);
      }
    }
    read(stream, start, limits, std::move(done));
  }

  void check_tail(const std::string& stream, Callback<uint64_t> done) override {
    std::unique_lock lock(mu_);
    auto it = streams_.find(stream);
    if (it == streams_.end()) {
      lock.unlock();
      return done(Failure<uint64_t>(S2Error::Kind::not_found, 404));
    }
    uint64_t tail = it->second.first_seq + it->second.records.size();
    lock.unlock();
    done(s2::S2Result<uint64_t>::success(tail));
  }

  void list_streams(const std::string& prefix, const std::string& start_after, uint64_t limit,
                    Callback<s2::StreamPage> done) override {
    // S2 deletes at once here (no deleted_at window): every name is live.
    if (limit < 1 || limit > s2::kMaxListLimit)
      return done(Failure<s2::StreamPage>(S2Error::Kind::rejected, 400));
    s2::StreamPage page;
    {
      std::lock_guard lock(mu_);
      for (auto it = streams_.upper_bound(start_after); it != streams_.end(); ++it) {
        if (!it->first.starts_with(prefix)) {
          if (it->first > prefix) break;  // past every name with the prefix
          continue;
        }
        if (page.names.size() == limit) {
          page.has_more = true;
          break;
        }
        page.names.push_back(it->first);
        page.last = it->first;
      }
    }
    done(s2::S2Result<s2::StreamPage>::success(std::move(page)));
  }

  std::unique_ptr<s2::ReadSession> open_session(const std::string& stream, uint64_t seq_num,
                                                s2::SessionHandlers handlers) override {
    auto session = std::make_shared<Session>(std::move(handlers));
    std::vector<s2::SequencedRecord> backlog;
    bool missing = false;
    {
      std::lock_guard lock(mu_);
      auto it = streams_.find(stream);
      if (it == streams_.end()) {
        missing = true;
      } else {
        auto& s = it->second;
        for (uint64_t seq = std::max(seq_num, s.first_seq); seq < s.first_seq + s.records.size();
             ++seq) {
          backlog.push_back(s.records[seq - s.first_seq]);
        }
        // Registered under the same lock that orders appends: no record is
        // missed or delivered twice between the backlog and live delivery.
        s.sessions.push_back(session);
        session->deliver(backlog);
      }
    }
    if (missing) session->end(Error(S2Error::Kind::not_found, 404));
    return std::make_unique<Handle>(this, stream, session);
  }

 private:
  /// Delivers batches; after close() no callback runs, and close() waits for
  /// one in progress.
  class Session {
   public:
    explicit Session(s2::SessionHandlers h) : handlers_(std::move(h)) {}
    void deliver(const std::vector<s2::SequencedRecord>& records) {
      std::lock_guard lock(mu_);
      if (closed_ || records.empty()) return;
      s2::ReadBatch batch;
      batch.records = records;
      handlers_.on_batch(std::move(batch));
    }
    void end(S2Error e) {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      handlers_.on_end(std::move(e));
    }
    void close() {
      std::lock_guard lock(mu_);
      closed_ = true;
    }

   private:
    std::recursive_mutex mu_;  // a handler may destroy its own session
    bool closed_ = false;
    s2::SessionHandlers handlers_;
  };

  class Handle final : public s2::ReadSession {
   public:
    Handle(FakeS2Api* api, std::string stream, std::shared_ptr<Session> s)
        : api_(api), stream_(std::move(stream)), session_(std::move(s)) {}
    ~Handle() override {
      session_->close();
      std::lock_guard lock(api_->mu_);
      auto it = api_->streams_.find(stream_);
      if (it != api_->streams_.end()) std::erase(it->second.sessions, session_);
    }

   private:
    FakeS2Api* api_;
    std::string stream_;
    std::shared_ptr<Session> session_;
  };

  struct Stream {
    uint64_t first_seq = 0;  // seq_num of records[0] (after trims)
    std::vector<s2::SequencedRecord> records;
    std::vector<std::shared_ptr<Session>> sessions;
  };

  static S2Error Error(S2Error::Kind kind, int status) {
    S2Error e;
    e.kind = kind;
    e.http_status = status;
    e.message = "fake S2";
    return e;
  }
  template <class T>
  static s2::S2Result<T> Failure(S2Error::Kind kind, int status) {
    return s2::S2Result<T>::failure(Error(kind, status));
  }

  mutable std::mutex mu_;
  const Clock* clock_;                       // guarded by mu_
  std::map<std::string, Stream> streams_;    // guarded by mu_
  bool failing_ = false;                     // guarded by mu_
  bool gate_closed_ = false;                 // guarded by mu_
  std::vector<std::function<void()>> held_;  // guarded by mu_
  uint64_t appends_ = 0;                     // guarded by mu_
  uint64_t max_records_ = 0;                 // guarded by mu_
  uint64_t injected_ = 0;                    // guarded by mu_
};

class FakeFaults final : public FaultControl {
 public:
  explicit FakeFaults(FakeS2Api& api) : api_(api), baseline_(api.injected()) {}
  ~FakeFaults() override { api_.fail_appends(false); }
  void fail_syncs(bool on) override { set(on, appends_); }
  void fail_appends(bool on) override { set(syncs_, on); }
  uint64_t injected() const override { return api_.injected() - baseline_; }
  void pause_syncs(bool) override { ADD_FAILURE() << "the S2 engine has no group commit to pause"; }
  bool wait_until_paused(std::chrono::milliseconds) override { return false; }

 private:
  void set(bool syncs, bool appends) {
    syncs_ = syncs;
    appends_ = appends;
    api_.fail_appends(syncs || appends);  // S2 acknowledges only durable appends
  }
  FakeS2Api& api_;
  const uint64_t baseline_;
  bool syncs_ = false;
  bool appends_ = false;
};

class InProcessHarness final : public EngineHarness {
 public:
  Result<std::unique_ptr<StreamStore>> open(const EngineOptions& options) override {
    faults_.reset();
    const Clock* clock = options.clock ? options.clock : &SystemClock::instance();
    if (!api_) {
      api_ = std::make_unique<FakeS2Api>(clock);
    } else {
      api_->set_clock(clock);
    }
    if (options.fault_injection) faults_ = std::make_unique<FakeFaults>(*api_);
    S2StoreOptions so;
    so.api = api_.get();
    so.clock = clock;
    return make_s2_store(so);
  }
  FaultControl* faults() override { return faults_.get(); }

  ~InProcessHarness() override { faults_.reset(); }

 private:
  std::unique_ptr<FakeS2Api> api_;  // the "basin": outlives every store opened here
  std::unique_ptr<FakeFaults> faults_;
};

EngineFactory s2_in_process() {
  EngineTraits traits;
  traits.manual_time = true;  // the fake stamps records with the engine's clock
  traits.dense_offsets = false;
  traits.group_commit = false;
  return {"S2InProcess", [] { return std::unique_ptr<EngineHarness>(new InProcessHarness()); },
          traits};
}

std::string engine_name(const ::testing::TestParamInfo<EngineFactory>& info) {
  return info.param.name;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(S2Fake, StoreContract, ::testing::Values(s2_in_process()), engine_name);

// ---- group commit over S2 (issue 10, item 1), on the fake's append gate ----

namespace {

template <class T>
std::future<Result<T>> later(std::function<void(StreamStore::Callback<T>)> start) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto f = p->get_future();
  start([p](Result<T> r) { p->set_value(std::move(r)); });
  return f;
}

class S2GroupCommit : public ::testing::Test {
 protected:
  S2GroupCommit() : api_(&SystemClock::instance()) {
    S2StoreOptions so;
    so.api = &api_;
    store_ = make_s2_store(so);
    CreateRequest c;
    c.path = "gc";
    c.config.content_type = "text/plain";
    auto created = later<CreateOutcome>([&](auto cb) { store_->create(c, cb); });
    EXPECT_TRUE(created.get());
  }
  std::future<Result<AppendOutcome>> append(std::string body,
                                            std::optional<ProducerTriple> p = std::nullopt) {
    AppendRequest a;
    a.path = "gc";
    a.content_type = "text/plain";
    a.body = std::move(body);
    a.producer = std::move(p);
    return later<AppendOutcome>([&](auto cb) { store_->append(a, cb); });
  }
  std::string read_all() {
    std::string out;
    OffsetSpec from = OffsetSpec::start();
    for (int i = 0; i < 10'000; ++i) {
      ReadRequest r{"gc", from, 1 << 20};
      auto got = later<ReadOutcome>([&](auto cb) { store_->read(r, cb); }).get();
      EXPECT_TRUE(got);
      if (!got) return out;
      for (const auto& rec : got->records) out += rec->bytes;
      if (got->up_to_date) return out;
      from = OffsetSpec::position(got->next);
    }
    return out;
  }

  FakeS2Api api_;
  std::unique_ptr<StreamStore> store_;
};

TEST_F(S2GroupCommit, AppendsQueuedBehindABatchInFlightGoOutAsOneBatchInSubmissionOrder) {
  const uint64_t before = api_.appends();
  api_.close_gate();
  std::vector<std::future<Result<AppendOutcome>>> answers;
  // A producer's pipelined seqs: any reordering would be a sequence gap.
  for (uint64_t seq = 0; seq < 200; ++seq)
    answers.push_back(append("m" + std::to_string(seq) + ";", ProducerTriple{"p", 0, seq}));
  ASSERT_EQ(api_.held(), 1u) << "the first append is in flight; the rest queue behind it";
  api_.open_gate();
  Offset last;
  std::string expected;
  for (uint64_t seq = 0; seq < 200; ++seq) {
    auto r = answers[seq].get();
    ASSERT_TRUE(r) << "seq " << seq << ": " << r.error().message;
    EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
    EXPECT_EQ(r->producer_seq, seq);
    EXPECT_GT(r->tail, last) << "each request gets its own offset, in order";
    last = r->tail;
    expected += "m" + std::to_string(seq) + ";";
  }
  EXPECT_EQ(api_.appends() - before, 2u) << "one S2 append in flight, then one batch for the rest";
  EXPECT_EQ(read_all(), expected);
}

TEST_F(S2GroupCommit, ABatchOverS2LimitsIsSplitNeverFailed) {
  api_.close_gate();
  std::vector<std::future<Result<AppendOutcome>>> answers;
  const std::string kilobyte(1000, 'k');
  for (int i = 0; i < 2500; ++i) answers.push_back(append(kilobyte));
  api_.open_gate();
  for (auto& a : answers) {
    auto r = a.get();
    ASSERT_TRUE(r) << r.error().message;
  }
  EXPECT_LE(api_.max_batch_records(), s2::kMaxBatchRecords);
  EXPECT_GE(api_.appends(), 4u)
      << "2.5 MB cannot go in fewer than 3 batches of 1 MiB (+ the first)";
  EXPECT_EQ(read_all().size(), 2500u * 1000u);
}

}  // namespace

}  // namespace ds::contract
