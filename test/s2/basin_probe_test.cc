// The S2 start-up probe and basin watch (src/s2/basin_probe.h) over a
// scripted S2Api: how S2's answers are classified, and that the watch backs
// off, turns ready, and stops cleanly.

#include "s2/basin_probe.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>

namespace ds::s2 {
namespace {

using namespace std::chrono_literals;
using Verdict = ProbeOutcome::Verdict;

S2Result<uint64_t> failure(S2Error::Kind kind, int status, std::string code,
                           std::string message = "m") {
  S2Error e;
  e.kind = kind;
  e.http_status = status;
  e.code = std::move(code);
  e.message = std::move(message);
  return S2Result<uint64_t>::failure(std::move(e));
}

ProbeOutcome classify(const S2Result<uint64_t>& r) {
  return classify_probe(r, "test-basin-1", "http://s2.test");
}

TEST(S2Probe, BasinThereIsReady) {
  EXPECT_EQ(classify(S2Result<uint64_t>::success(0)).verdict, Verdict::ready);
  EXPECT_EQ(classify(failure(S2Error::Kind::not_found, 404, "stream_not_found")).verdict,
            Verdict::ready);
  EXPECT_EQ(
      classify(failure(S2Error::Kind::deletion_pending, 409, "stream_deletion_pending")).verdict,
      Verdict::ready);
  EXPECT_TRUE(classify(S2Result<uint64_t>::success(7)).message.empty());
}

TEST(S2Probe, MissingBasinIsFatalAndSaysWhatToDo) {
  auto o = classify(failure(S2Error::Kind::not_found, 404, "basin_not_found"));
  EXPECT_EQ(o.verdict, Verdict::fatal);
  EXPECT_NE(o.message.find("'test-basin-1' does not exist"), std::string::npos) << o.message;
  EXPECT_NE(o.message.find("--s2-basin"), std::string::npos) << o.message;
  o = classify(failure(S2Error::Kind::deletion_pending, 409, "basin_deletion_pending"));
  EXPECT_EQ(o.verdict, Verdict::fatal);
}

TEST(S2Probe, RefusedTokenIsFatal) {
  auto o = classify(failure(S2Error::Kind::rejected, 401, "authn", "token expired"));
  EXPECT_EQ(o.verdict, Verdict::fatal);
  EXPECT_NE(o.message.find("access token"), std::string::npos) << o.message;
  EXPECT_NE(o.message.find("S2_ACCESS_TOKEN"), std::string::npos) << o.message;
  EXPECT_NE(o.message.find("token expired"), std::string::npos) << o.message;
  o = classify(failure(S2Error::Kind::rejected, 403, "permission_denied"));
  EXPECT_EQ(o.verdict, Verdict::fatal);
  EXPECT_NE(o.message.find("scope"), std::string::npos) << o.message;
  EXPECT_EQ(classify(failure(S2Error::Kind::rejected, 401, "")).verdict, Verdict::fatal);
}

TEST(S2Probe, NotAnS2EndpointIsFatal) {
  auto o = classify(failure(S2Error::Kind::not_found, 404, ""));  // unknown route
  EXPECT_EQ(o.verdict, Verdict::fatal);
  EXPECT_NE(o.message.find("--s2-endpoint"), std::string::npos) << o.message;
  EXPECT_EQ(classify(failure(S2Error::Kind::rejected, 400, "bad_header")).verdict, Verdict::fatal);
  EXPECT_EQ(classify(failure(S2Error::Kind::rejected, 501, "not_implemented")).verdict,
            Verdict::fatal);
}

TEST(S2Probe, UnreachableOrFailingIsUnavailable) {
  auto o = classify(failure(S2Error::Kind::unavailable, 0, "", "Connection refused"));
  EXPECT_EQ(o.verdict, Verdict::unavailable);
  EXPECT_NE(o.message.find("Connection refused"), std::string::npos) << o.message;
  EXPECT_NE(o.message.find("http://s2.test"), std::string::npos) << o.message;
  EXPECT_EQ(classify(failure(S2Error::Kind::unavailable, 503, "unavailable")).verdict,
            Verdict::unavailable);
  EXPECT_EQ(classify(failure(S2Error::Kind::ambiguous, 500, "other")).verdict,
            Verdict::unavailable);
}

/// An S2Api whose check_tail answers from a script (inline, on the caller's
/// thread), or holds the callback when the script says "no answer".
class ScriptedS2 : public S2Api {
 public:
  void push(std::optional<S2Result<uint64_t>> answer) {
    std::lock_guard lock(mu_);
    script_.push_back(std::move(answer));
  }
  void check_tail(const std::string& stream, Callback<uint64_t> done) override {
    std::optional<S2Result<uint64_t>> answer;
    {
      std::lock_guard lock(mu_);
      streams_.push_back(stream);
      ++calls_;
      if (script_.empty()) {
        answer = failure(S2Error::Kind::unavailable, 0, "", "Connection refused");
      } else {
        answer = std::move(script_.front());
        script_.pop_front();
      }
      if (!answer) {
        held_.push_back(std::move(done));
        return;
      }
    }
    done(std::move(*answer));
  }
  /// Answers every held call now (late answers).
  void release_held() {
    std::vector<Callback<uint64_t>> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (auto& cb : held) cb(S2Result<uint64_t>::success(1));
  }
  int calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<std::string> streams() const {
    std::lock_guard lock(mu_);
    return streams_;
  }

  void create_stream(const std::string&, Callback<Empty>) override { ADD_FAILURE(); }
  void delete_stream(const std::string&, Callback<Empty>) override { ADD_FAILURE(); }
  void append(const std::string&, AppendInput, Callback<AppendAck>) override { ADD_FAILURE(); }
  void read(const std::string&, uint64_t, ReadLimits, Callback<ReadBatch>) override {
    ADD_FAILURE();
  }
  void read_from_tail(const std::string&, uint64_t, ReadLimits, Callback<ReadBatch>) override {
    ADD_FAILURE();
  }
  void list_streams(const std::string&, const std::string&, uint64_t,
                    Callback<StreamPage>) override {
    ADD_FAILURE();
  }
  std::unique_ptr<ReadSession> open_session(const std::string&, uint64_t,
                                            SessionHandlers) override {
    ADD_FAILURE();
    return nullptr;
  }

 private:
  mutable std::mutex mu_;
  std::deque<std::optional<S2Result<uint64_t>>> script_;
  std::vector<Callback<uint64_t>> held_;
  std::vector<std::string> streams_;
  int calls_ = 0;
};

TEST(S2Probe, ProbeBasinChecksTheReservedStream) {
  ScriptedS2 api;
  api.push(failure(S2Error::Kind::not_found, 404, "stream_not_found"));
  auto o = probe_basin(api, "test-basin-1", "http://s2.test", 1s);
  EXPECT_TRUE(o.ready());
  ASSERT_EQ(api.streams().size(), 1u);
  EXPECT_EQ(api.streams()[0], kProbeStream);
  // The reserved name has a `.` segment, which no Durable Stream may have.
  EXPECT_TRUE(std::string(kProbeStream).starts_with("./"));
}

TEST(S2Probe, ProbeBasinGivesUpAfterTheTimeout) {
  ScriptedS2 api;
  api.push(std::nullopt);  // never answered
  auto t0 = std::chrono::steady_clock::now();
  auto o = probe_basin(api, "test-basin-1", "http://s2.test", 50ms);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  EXPECT_EQ(o.verdict, Verdict::unavailable);
  EXPECT_NE(o.message.find("did not answer"), std::string::npos) << o.message;
  api.release_held();  // a late answer is harmless
}

TEST(S2BasinWatch, ReadyAtStartMakesNoProbes) {
  ScriptedS2 api;
  BasinWatch watch(api, "test-basin-1", "http://s2.test", ProbeOutcome{Verdict::ready, ""});
  EXPECT_TRUE(watch.ready());
  EXPECT_EQ(watch.not_ready_reason(), std::nullopt);
  EXPECT_EQ(api.calls(), 0);
}

/// Polls `cond` (bounded) instead of sleeping a fixed time.
template <class F>
bool eventually(F cond, std::chrono::milliseconds bound = 5s) {
  auto deadline = std::chrono::steady_clock::now() + bound;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

TEST(S2BasinWatch, ProbesWithBackoffUntilS2AnswersThenStops) {
  ScriptedS2 api;
  for (int i = 0; i < 3; ++i)
    api.push(failure(S2Error::Kind::unavailable, 503, "unavailable", "S2 down"));
  api.push(failure(S2Error::Kind::not_found, 404, "stream_not_found"));
  std::mutex mu;
  std::vector<Verdict> changes;
  BasinWatchOptions opts;
  opts.initial_backoff = 4ms;
  opts.max_backoff = 16ms;
  opts.on_change = [&](const ProbeOutcome& o) {
    std::lock_guard lock(mu);
    changes.push_back(o.verdict);
  };
  BasinWatch watch(api, "test-basin-1", "http://s2.test",
                   ProbeOutcome{Verdict::unavailable, "S2 at http://s2.test is unreachable"}, opts);
  auto reason = watch.not_ready_reason();
  ASSERT_TRUE(reason);
  EXPECT_NE(reason->find("unreachable"), std::string::npos);
  ASSERT_TRUE(eventually([&] { return watch.ready(); }));
  EXPECT_EQ(api.calls(), 4);
  EXPECT_EQ(watch.probes(), 4u);
  // on_change runs after the state turned ready.
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    return changes.size() >= 2;
  }));
  {
    std::lock_guard lock(mu);
    // unreachable -> "S2 down" (message changed) -> ready
    ASSERT_EQ(changes.size(), 2u);
    EXPECT_EQ(changes[0], Verdict::unavailable);
    EXPECT_EQ(changes[1], Verdict::ready);
  }
  std::this_thread::sleep_for(50ms);  // no probe after ready
  EXPECT_EQ(api.calls(), 4);
}

TEST(S2BasinWatch, BacksOffRatherThanBusyLooping) {
  ScriptedS2 api;  // an empty script answers "Connection refused" forever
  BasinWatchOptions opts;
  opts.initial_backoff = 20ms;
  opts.max_backoff = 40ms;
  BasinWatch watch(api, "test-basin-1", "http://s2.test",
                   ProbeOutcome{Verdict::unavailable, "down"}, opts);
  std::this_thread::sleep_for(300ms);
  // Pauses of at least 10, 20, 20, ... ms: at most ~15 probes in 300 ms.
  EXPECT_LE(api.calls(), 16);
  EXPECT_GE(api.calls(), 2);
  EXPECT_FALSE(watch.ready());
}

TEST(S2BasinWatch, FatalAnswerLaterKeepsItNotReadyWithTheReason) {
  ScriptedS2 api;
  // S2 keeps saying so (the watch keeps probing, at the backoff cap).
  for (int i = 0; i < 100; ++i) api.push(failure(S2Error::Kind::not_found, 404, "basin_not_found"));
  BasinWatchOptions opts;
  opts.initial_backoff = 1ms;
  opts.max_backoff = 1000ms;
  BasinWatch watch(api, "test-basin-1", "http://s2.test",
                   ProbeOutcome{Verdict::unavailable, "down"}, opts);
  ASSERT_TRUE(eventually([&] {
    auto r = watch.not_ready_reason();
    return r && r->find("does not exist") != std::string::npos;
  }));
  ASSERT_TRUE(eventually([&] { return api.calls() >= 3; }));
  EXPECT_FALSE(watch.ready());
  EXPECT_NE(watch.not_ready_reason()->find("does not exist"), std::string::npos);
}

TEST(S2BasinWatch, DestructionWakesAPendingProbe) {
  ScriptedS2 api;
  api.push(std::nullopt);  // the first probe is never answered
  BasinWatchOptions opts;
  opts.initial_backoff = 1ms;
  opts.probe_timeout = 60s;
  auto t0 = std::chrono::steady_clock::now();
  {
    BasinWatch watch(api, "test-basin-1", "http://s2.test",
                     ProbeOutcome{Verdict::unavailable, "down"}, opts);
    ASSERT_TRUE(eventually([&] { return api.calls() == 1; }));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  api.release_held();  // the answer after the watch is gone is dropped
}

TEST(S2BasinWatch, AProbeThatTimesOutIsRetried) {
  ScriptedS2 api;
  api.push(std::nullopt);  // no answer: times out
  api.push(S2Result<uint64_t>::success(0));
  BasinWatchOptions opts;
  opts.initial_backoff = 1ms;
  opts.probe_timeout = 20ms;
  BasinWatch watch(api, "test-basin-1", "http://s2.test",
                   ProbeOutcome{Verdict::unavailable, "down"}, opts);
  ASSERT_TRUE(eventually([&] { return watch.ready(); }));
  EXPECT_EQ(api.calls(), 2);
  api.release_held();
}

}  // namespace
}  // namespace ds::s2
