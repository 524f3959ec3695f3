// The S2 engine (store/s2) under the storage-engine contract, over the S2
// emulator (scripts/s2emu, s2emu/README.md).
//
// Storage: one emulator for the whole test binary, started on first use
// (test/s2/emulator.h) and stopped by a gtest Environment; every harness gets
// a fresh basin, so tests never see each other's streams. open() makes a new
// S2 client and a new S2 store over that basin: "reopen on the same storage"
// is exactly a stateless node restarting.
//
// Time: S2 stamps records with its own (real) arrival time, so the engine is
// declared without manual time (EngineTraits::manual_time).
//
// Faults: FaultControl drives the emulator's /_emu/faults. S2 has no separate
// durability barrier: an acknowledged append is durable, so both a failed log
// write and a failed log sync are "every S2 append fails (503, no side
// effect)" while on. There is no group commit, so pause_syncs() is not
// available (EngineTraits::group_commit). S2-only tests at the end cover the
// faults the embedded engine has no equivalent for: a lost acknowledgement
// and a racing writer.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "../s2/emulator.h"
#include "s2/http_s2_api.h"
#include "store/s2/s2_store.h"
#include "store_contract.h"

namespace ds::contract {
namespace {

using s2::test::Emulator;
using s2::test::http_exchange;
using s2::test::json_u64;

/// The one emulator of this process, started on first use.
class SharedEmulator {
 public:
  /// The running emulator, or null with *why (then the S2 tests skip or fail).
  static Emulator* get(std::string* why, bool* skip) {
    std::lock_guard lock(mu_);
    if (!tried_) {
      tried_ = true;
      if (std::system("node --version >/dev/null 2>&1") != 0) {
        skip_ = true;
        error_ = "node is not installed: the S2 emulator cannot run";
      } else {
        auto e = std::make_unique<Emulator>();
        if (e->start({"--ping-interval-ms", "1000"}, &error_)) emulator_ = std::move(e);
      }
    }
    *why = error_;
    *skip = skip_;
    return emulator_.get();
  }
  static void stop() {
    std::lock_guard lock(mu_);
    emulator_.reset();
  }

 private:
  static inline std::mutex mu_;
  static inline bool tried_ = false;
  static inline bool skip_ = false;
  static inline std::string error_;
  static inline std::unique_ptr<Emulator> emulator_;
};

class StopEmulator final : public ::testing::Environment {
 public:
  void TearDown() override { SharedEmulator::stop(); }
};
[[maybe_unused]] ::testing::Environment* const kStopEmulator =
    ::testing::AddGlobalTestEnvironment(new StopEmulator);

uint64_t injected_errors(Emulator& emu) {
  return json_u64(emu.stats(), {"injected", "errors"}).value_or(0);
}

class S2Faults final : public FaultControl {
 public:
  explicit S2Faults(Emulator& emu) : emu_(emu), baseline_(injected_errors(emu)) {}
  ~S2Faults() override { set(false, false); }

  void fail_syncs(bool on) override { set(on, appends_); }
  void fail_appends(bool on) override { set(syncs_, on); }
  uint64_t injected() const override { return injected_errors(emu_) - baseline_; }
  void pause_syncs(bool) override {
    ADD_FAILURE() << "the S2 engine has no group commit to pause (EngineTraits::group_commit)";
  }
  bool wait_until_paused(std::chrono::milliseconds) override { return false; }

 private:
  void set(bool syncs, bool appends) {
    syncs_ = syncs;
    appends_ = appends;
    // An acknowledged S2 append is durable: a failed write and a failed sync
    // are both an append that S2 refuses without applying it.
    const bool on = syncs || appends;
    const std::string json =
        on ? R"({"errorRate":1,"errorOps":["append"],"errorCodes":["unavailable"],)"
             R"("errorApplyAppend":false})"
           : R"({"errorRate":0,"errorNext":0,"errorOps":null,"errorApplyAppend":false})";
    if (!emu_.set_faults(json)) ADD_FAILURE() << "POST /_emu/faults " << json << " failed";
  }

  Emulator& emu_;
  const uint64_t baseline_;
  bool syncs_ = false;
  bool appends_ = false;
};

class S2Harness final : public EngineHarness {
 public:
  S2Harness(Emulator& emu, std::string basin) : emu_(emu), basin_(std::move(basin)) {}

  ~S2Harness() override {
    // The fixture has destroyed every store opened here: the client is idle.
    faults_.reset();
    api_.reset();
    (void)http_exchange(emu_.port(), "DELETE", "/v1/basins/" + basin_);
  }

  Result<std::unique_ptr<StreamStore>> open(const EngineOptions& options) override {
    // A restart: the previous store is gone, so its client can go too.
    api_.reset();
    faults_.reset();
    std::string error;
    api_ = client(&error);
    if (!api_) return Error(errc::storage_failure, "S2 client: " + error);
    if (options.fault_injection) faults_ = std::make_unique<S2Faults>(emu_);
    S2StoreOptions so;
    so.api = api_.get();
    so.clock = options.clock;
    return make_s2_store(so);
  }

  /// A client of this basin for another node, next to the one open() made
  /// (destroy that node's store before its client).
  std::unique_ptr<s2::HttpS2Api> client(std::string* error) {
    s2::HttpS2Options o;
    o.endpoint = emu_.url();
    o.basin = basin_;
    o.backoff_base = std::chrono::milliseconds(5);
    o.backoff_max = std::chrono::milliseconds(40);
    o.request_timeout = std::chrono::seconds(5);
    o.threads = 2;
    return s2::make_http_s2_api(o, error);
  }

  FaultControl* faults() override { return faults_.get(); }
  Emulator& emulator() { return emu_; }

 private:
  Emulator& emu_;
  const std::string basin_;
  std::unique_ptr<s2::HttpS2Api> api_;
  std::unique_ptr<S2Faults> faults_;
};

void skip_test(const std::string& why) { GTEST_SKIP() << why; }

std::unique_ptr<EngineHarness> make_s2_harness() {
  std::string why;
  bool skip = false;
  Emulator* emu = SharedEmulator::get(&why, &skip);
  if (!emu) {
    if (skip) {
      skip_test(why);
    } else {
      ADD_FAILURE() << why;
    }
    return nullptr;
  }
  static std::atomic<int> counter{0};
  std::string basin = "contract-" + std::to_string(++counter);
  auto created = http_exchange(emu->port(), "POST", "/v1/basins", R"({"basin":")" + basin + "\"}");
  if (!created || created->status != 201) {
    ADD_FAILURE() << "could not create basin " << basin << ": "
                  << (created ? std::to_string(created->status) + " " + created->body
                              : std::string("no answer"));
    return nullptr;
  }
  return std::make_unique<S2Harness>(*emu, std::move(basin));
}

EngineFactory s2_emulator() {
  EngineTraits traits;
  traits.manual_time = false;
  traits.dense_offsets = false;
  traits.group_commit = false;
  return {"S2Emulator", make_s2_harness, traits};
}

std::string engine_name(const ::testing::TestParamInfo<EngineFactory>& info) {
  return info.param.name;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(S2, StoreContract, ::testing::Values(s2_emulator()), engine_name);

// ------------------------------------------------------------------ S2 only
//
// What the contract cannot say engine-neutrally: TTL across a restart in real
// time (the S2 engine reads access times back from S2's timestamps), and the
// S2 faults that have no embedded-engine equivalent.

class S2Engine : public StoreContract {
 protected:
  void TearDown() override {
    if (harness_) (void)emu().set_faults(kFaultsOff);
    StoreContract::TearDown();
  }

  Emulator& emu() { return static_cast<S2Harness&>(*harness_).emulator(); }
  uint64_t emu_stat(const std::vector<std::string>& path) {
    return json_u64(emu().stats(), path).value_or(0);
  }
  /// The test's clock follows real time (S2's timestamps are real time).
  void sync_clock() { clock_.set_ms(SystemClock::instance().now_ms()); }
  /// Sleeps until `at` (real ms since the epoch), then syncs the clock.
  void sleep_until_ms(int64_t at) {
    int64_t left = at - SystemClock::instance().now_ms();
    if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(left));
    sync_clock();
  }
  static int64_t real_ms() { return SystemClock::instance().now_ms(); }

  static CreateRequest ttl_create(const std::string& path, uint64_t ttl_seconds,
                                  const std::string& body) {
    auto r = create_req(path, "text/plain", body);
    r.config.ttl_seconds = ttl_seconds;
    return r;
  }

  static constexpr const char* kFaultsOff =
      R"({"errorRate":0,"errorNext":0,"errorOps":null,"errorApplyAppend":false,)"
      R"("racerProbability":0,"racerNext":0})";
  const std::string kA = "/v1/stream/s2-a";
};

INSTANTIATE_TEST_SUITE_P(S2, S2Engine, ::testing::Values(s2_emulator()), engine_name);

// ReadRenewalSurvivesRestart in real time: the touch record a read appends is
// what a restarted node folds back into the stream's last access.
TEST_P(S2Engine, ReadRenewalSurvivesRestartInRealTime) {
  const int64_t created = real_ms();
  sync_clock();
  DS_ASSERT_OK(create(ttl_create(kA, 2, "data")));
  sleep_until_ms(created + 1'200);
  EXPECT_EQ(read_all(kA), "data");
  const int64_t renewed = real_ms();  // the touch record is stamped before this
  reopen();
  sleep_until_ms(renewed + 1'000);  // > 2 s after creation, < 2 s after the read
  DS_EXPECT_OK(head(kA)) << "the read's TTL renewal was lost across a restart";
  sleep_until_ms(renewed + 2'100);
  DS_EXPECT_ERR(head(kA), errc::not_found);
}

// ReopenKeepsTtlAndExpiry in real time.
TEST_P(S2Engine, ReopenKeepsTtlAndExpiryInRealTime) {
  sync_clock();
  DS_ASSERT_OK(create(ttl_create(kA, 1, "data")));
  const int64_t created = real_ms();  // the meta record is stamped before this
  sleep_until_ms(created + 500);
  reopen();
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->config.ttl_seconds, std::optional<uint64_t>(1));
  sleep_until_ms(created + 1'100);
  DS_EXPECT_ERR(head(kA), errc::not_found);
  reopen();
  sync_clock();
  DS_EXPECT_ERR(head(kA), errc::not_found);
  DS_EXPECT_ERR(read(kA), errc::not_found);
}

// S2 failed an append after applying it (a lost acknowledgement): the engine
// finds its write id when it reads forward, so the append is acknowledged
// once and applied once.
TEST_P(S2Engine, LostAppendAckIsSettledByReadingForward) {
  make_stream(kA, "text/plain", "a");
  ASSERT_TRUE(
      emu().set_faults(R"({"errorNext":1,"errorOps":["append"],"errorCodes":["unavailable"],)"
                       R"("errorApplyAppend":true})"));
  const uint64_t before = emu_stat({"injected", "errors"});
  auto r = append(producer_req(kA, "b", "p", 0, 0));
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
  EXPECT_EQ(emu_stat({"injected", "errors"}) - before, 1u) << "the lost ack was never injected";
  auto again = append(producer_req(kA, "b", "p", 0, 0));
  DS_ASSERT_OK(again);
  EXPECT_EQ(again->kind, AppendOutcome::Kind::duplicate);
  EXPECT_EQ(again->tail, r->tail);
  EXPECT_EQ(read_all(kA), "ab");
  reopen();
  EXPECT_EQ(read_all(kA), "ab");
}

// A failed append that S2 did not apply is retried by the engine (it proved
// the write absent), so one transient 503 is invisible to the client.
TEST_P(S2Engine, TransientAppendFailureIsRetriedOnce) {
  make_stream(kA, "text/plain", "a");
  ASSERT_TRUE(
      emu().set_faults(R"({"errorNext":1,"errorOps":["append"],"errorCodes":["unavailable"],)"
                       R"("errorApplyAppend":false})"));
  const uint64_t before = emu_stat({"injected", "errors"});
  auto r = append(append_req(kA, "b"));
  DS_ASSERT_OK(r);
  EXPECT_EQ(emu_stat({"injected", "errors"}) - before, 1u);
  EXPECT_EQ(read_all(kA), "ab");
}

// Another writer appends between the engine's fold and its conditional
// append: S2 answers 412, the engine folds the foreign record (which is not
// dstreamd's and holds no data for readers), decides again and succeeds.
TEST_P(S2Engine, RacingWriterIsFoldedAndRetried) {
  make_stream(kA, "text/plain", "a");
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  const uint64_t before = emu_stat({"injected", "racer"});
  ASSERT_TRUE(emu().set_faults(R"({"racerNext":1})"));
  auto b = append(producer_req(kA, "b", "p", 0, 0));
  DS_ASSERT_OK(b);
  EXPECT_EQ(b->kind, AppendOutcome::Kind::appended);
  auto dup = append(producer_req(kA, "b", "p", 0, 0));
  DS_ASSERT_OK(dup);
  EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
  EXPECT_EQ(dup->tail, b->tail);
  ASSERT_TRUE(emu().set_faults(R"({"racerNext":1})"));
  auto c = append(close_req(kA));
  DS_ASSERT_OK(c);
  EXPECT_TRUE(c->closed);
  EXPECT_EQ(emu_stat({"injected", "racer"}) - before, 2u) << "the racing writer never struck";
  EXPECT_EQ(read_all(kA), "ab");
  ASSERT_TRUE(log.wait_for(3));
  std::string seen;
  for (const auto& ev : log.events()) {
    for (const auto& rec : ev.records) seen += rec->bytes;
  }
  EXPECT_EQ(seen, "b") << "watchers saw the racing writer's record";
  EXPECT_TRUE(log.events().back().closed);
  reopen();
  EXPECT_EQ(read_all(kA), "ab");
  EXPECT_TRUE(head(kA)->closed);
}

// Conditional appends across nodes: S2's match_seq_num makes each node's
// decision exact. A node deciding on a stale fold either loses its write to
// the other node (then folds, decides again: 412 with the real tail) or
// refuses against the stale tail without a write (then confirms the fold
// first, and finds that the expectation holds).
TEST_P(S2Engine, ConditionalAppendsAcrossNodes) {
  std::string error;
  auto api = static_cast<S2Harness&>(*harness_).client(&error);
  ASSERT_TRUE(api) << error;
  S2StoreOptions so;
  so.api = api.get();
  so.clock = &clock_;
  auto other = make_s2_store(so);
  ASSERT_TRUE(other);
  auto on_other = [&](AppendRequest req) -> Result<AppendOutcome> {
    auto done = std::make_shared<std::promise<Result<AppendOutcome>>>();
    auto answer = done->get_future();
    other->append(std::move(req), [done](Result<AppendOutcome> r) { done->set_value(r); });
    if (answer.wait_for(kCallTimeout) != std::future_status::ready)
      return Error(errc::unavailable, "no answer from the other node");
    return answer.get();
  };
  auto expecting = [](AppendRequest req, Offset tail) {
    req.if_match = TailExpectation{false, {TailTag{tail, std::nullopt}}};
    return req;
  };

  make_stream(kA, "text/plain", "a");
  const Offset t0 = head(kA)->tail;
  DS_ASSERT_OK(on_other(append_req(kA, "b")));  // the other node folds the stream
  const Offset t1 = head(kA)->tail;
  // This node's fold is stale (tail t0): its write at t0 loses to S2, it
  // folds the other node's append and answers 412 with t1.
  auto stale = append(expecting(append_req(kA, "x"), t0));
  DS_ASSERT_ERR(stale, errc::precondition_failed);
  EXPECT_EQ(stale.error().tail, std::optional<Offset>(t1));
  // Now the other node's fold is stale (tail t1): append here, then ask
  // the other node with the new tail.
  auto c = append(expecting(append_req(kA, "c"), t1));
  DS_ASSERT_OK(c);
  auto d = on_other(expecting(append_req(kA, "d"), c->tail));
  DS_ASSERT_OK(d) << "a stale fold refused an expectation that holds";
  EXPECT_EQ(d->kind, AppendOutcome::Kind::appended);
  // Racing: both nodes, the same expectation, several writers each.
  constexpr int kEach = 4;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Result<AppendOutcome>> results;
  auto done = [&](Result<AppendOutcome> r) {
    // Notify under the lock: the test's frame (and cv) may be gone once the
    // lock is released.
    std::lock_guard lock(mu);
    results.push_back(std::move(r));
    cv.notify_all();
  };
  for (int i = 0; i < kEach; ++i) {
    store().append(expecting(append_req(kA, "n"), d->tail), done);
    other->append(expecting(append_req(kA, "o"), d->tail), done);
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kCallTimeout, [&] { return results.size() == 2 * kEach; }));
  }
  int wins = 0;
  std::optional<Offset> winner;
  for (const auto& r : results) {
    if (r) {
      ++wins;
      winner = r->tail;
    } else {
      EXPECT_EQ(r.error().code, errc::precondition_failed) << r.error().message;
    }
  }
  EXPECT_EQ(wins, 1);
  for (const auto& r : results) {
    if (!r && winner) {
      EXPECT_EQ(r.error().tail, winner);
    }
  }
  const std::string data = read_all(kA);
  EXPECT_TRUE(data == "abcdn" || data == "abcdo") << data;
  other.reset();  // before its client
}

}  // namespace ds::contract
