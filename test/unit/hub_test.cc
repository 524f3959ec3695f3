#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hub/live_hub.h"

namespace ds {
namespace {

// A StreamStore whose only working call is watch(): the test delivers
// CommitEvents by hand, synchronously, on its own thread.
class FakeStore final : public StreamStore {
 public:
  struct Watch {
    std::string path;
    std::function<void(const CommitEvent&)> on_event;
    bool active = true;
  };

  class Handle final : public WatchHandle {
   public:
    Handle(FakeStore& store, std::shared_ptr<Watch> w) : store_(store), w_(std::move(w)) {}
    ~Handle() override {
      w_->active = false;
      ++store_.unwatch_calls;
    }

   private:
    FakeStore& store_;
    std::shared_ptr<Watch> w_;
  };

  void create(CreateRequest, Callback<CreateOutcome> done) override { done(unsupported()); }
  void append(AppendRequest, Callback<AppendOutcome> done) override { done(unsupported()); }
  void read(ReadRequest, Callback<ReadOutcome> done) override { done(unsupported()); }
  void head(std::string, Callback<StreamMeta> done) override { done(unsupported()); }
  void remove(std::string, Callback<Unit> done) override { done(unsupported()); }
  Status health() override { return Unit{}; }

  std::unique_ptr<WatchHandle> watch(const std::string& path,
                                     std::function<void(const CommitEvent&)> on_event) override {
    ++watch_calls;
    // Like the embedded engine, describe the current state before returning.
    if (auto it = initial.find(path); it != initial.end()) on_event(it->second);
    auto w = std::make_shared<Watch>(Watch{path, std::move(on_event)});
    watches.push_back(w);
    return std::make_unique<Handle>(*this, w);
  }

  /// Delivers `ev` to every active watch of `path`; returns how many got it.
  int push(const std::string& path, const CommitEvent& ev) {
    int delivered = 0;
    for (const auto& w : watches) {
      if (w->active && w->path == path) {
        w->on_event(ev);
        ++delivered;
      }
    }
    return delivered;
  }

  int active_watches(const std::string& path) const {
    int n = 0;
    for (const auto& w : watches) n += (w->active && w->path == path) ? 1 : 0;
    return n;
  }

  /// If set for a path, watch() delivers this event synchronously, as the
  /// embedded engine does with its initial state.
  std::map<std::string, CommitEvent> initial;
  int watch_calls = 0;
  int unwatch_calls = 0;
  std::vector<std::shared_ptr<Watch>> watches;

 private:
  static Error unsupported() { return Error(errc::unavailable, "fake store: not supported"); }
};

Offset at(uint64_t pos) { return Offset{0, pos}; }

RecordPtr record(uint64_t begin, std::string bytes) {
  auto r = std::make_shared<Record>();
  r->begin = at(begin);
  r->end = at(begin + bytes.size());
  r->bytes = std::move(bytes);
  return r;
}

CommitEvent state(uint64_t tail, bool closed = false) {
  CommitEvent ev;
  ev.tail = at(tail);
  ev.closed = closed;
  return ev;
}

CommitEvent commit(std::vector<RecordPtr> records, bool closed = false) {
  CommitEvent ev;
  ev.tail = records.back()->end;
  ev.records = std::move(records);
  ev.closed = closed;
  return ev;
}

CommitEvent gone_event() {
  CommitEvent ev;
  ev.gone = true;
  return ev;
}

// Collects the wakes of one waiter.
struct Wakes {
  std::vector<Wake> got;
  std::function<void(Wake)> fn() {
    return [this](Wake w) { got.push_back(std::move(w)); };
  }
};

constexpr std::chrono::milliseconds kForever{std::chrono::hours(1)};

class HubTest : public ::testing::Test {
 protected:
  explicit HubTest(LiveHubs::Options options = {4 << 20, kForever}) : hubs_(store_, options) {}

  FakeStore store_;  // outlives hubs_
  LiveHubs hubs_;
};

TEST_F(HubTest, WaiterAtTailParksUntilNewRecords) {
  Wakes w;
  hubs_.wait("s", at(5), w.fn());
  EXPECT_TRUE(w.got.empty());  // no state yet: park

  ASSERT_EQ(store_.push("s", state(5)), 1);
  EXPECT_TRUE(w.got.empty());  // at the tail: still parked

  auto r = record(5, "abc");
  store_.push("s", commit({r}));
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].kind, Wake::Kind::data);
  ASSERT_EQ(w.got[0].records.size(), 1u);
  EXPECT_EQ(w.got[0].records[0], r);  // the very record, no copy
  EXPECT_EQ(w.got[0].tail, at(8));
  EXPECT_FALSE(w.got[0].closed);

  // A waiter wakes once.
  store_.push("s", commit({record(8, "de")}));
  EXPECT_EQ(w.got.size(), 1u);
}

TEST_F(HubTest, WaiterArrivingAtTailAfterStateParks) {
  store_.push("s", state(0));  // nobody watches yet
  EXPECT_EQ(store_.watch_calls, 0);

  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  EXPECT_TRUE(w.got.empty());
  auto r = record(0, "x");
  store_.push("s", commit({r}));
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].kind, Wake::Kind::data);
  ASSERT_EQ(w.got[0].records.size(), 1u);
  EXPECT_EQ(w.got[0].records[0], r);
}

TEST_F(HubTest, WaiterInsideBufferIsWokenAtOnceWithClippedRecords) {
  Wakes first;
  hubs_.wait("s", at(0), first.fn());
  store_.push("s", state(0));
  auto a = record(0, "abc");
  auto b = record(3, "defg");
  store_.push("s", commit({a}));
  store_.push("s", commit({b}));

  Wakes mid;
  hubs_.wait("s", at(1), mid.fn());
  ASSERT_EQ(mid.got.size(), 1u);  // inline, before wait() returned
  const Wake& w = mid.got[0];
  EXPECT_EQ(w.kind, Wake::Kind::data);
  EXPECT_EQ(w.tail, at(7));
  ASSERT_EQ(w.records.size(), 2u);
  EXPECT_EQ(w.records[0]->begin, at(1));
  EXPECT_EQ(w.records[0]->end, at(3));
  EXPECT_EQ(w.records[0]->bytes, "bc");
  EXPECT_EQ(w.records[1], b);

  Wakes boundary;
  hubs_.wait("s", at(3), boundary.fn());
  ASSERT_EQ(boundary.got.size(), 1u);
  ASSERT_EQ(boundary.got[0].records.size(), 1u);
  EXPECT_EQ(boundary.got[0].records[0], b);

  Wakes last_byte;
  hubs_.wait("s", at(6), last_byte.fn());
  ASSERT_EQ(last_byte.got.size(), 1u);
  ASSERT_EQ(last_byte.got[0].records.size(), 1u);
  EXPECT_EQ(last_byte.got[0].records[0]->begin, at(6));
  EXPECT_EQ(last_byte.got[0].records[0]->end, at(7));
  EXPECT_EQ(last_byte.got[0].records[0]->bytes, "g");

  Wakes start;
  hubs_.wait("s", at(0), start.fn());
  ASSERT_EQ(start.got.size(), 1u);
  ASSERT_EQ(start.got[0].records.size(), 2u);
  EXPECT_EQ(start.got[0].records[0], a);
  EXPECT_EQ(start.got[0].records[1], b);
}

TEST_F(HubTest, HistoryBeforeTheWatchIsCatchUp) {
  Wakes early;
  hubs_.wait("s", at(4), early.fn());
  store_.push("s", state(10));  // 10 bytes exist, none of them buffered
  ASSERT_EQ(early.got.size(), 1u);
  EXPECT_EQ(early.got[0].kind, Wake::Kind::catch_up);
  EXPECT_EQ(early.got[0].tail, at(10));
  EXPECT_TRUE(early.got[0].records.empty());

  Wakes zero;
  hubs_.wait("s", at(0), zero.fn());
  ASSERT_EQ(zero.got.size(), 1u);
  EXPECT_EQ(zero.got[0].kind, Wake::Kind::catch_up);

  Wakes tail;
  hubs_.wait("s", at(10), tail.fn());
  EXPECT_TRUE(tail.got.empty());
}

class SmallBufferHubTest : public HubTest {
 protected:
  SmallBufferHubTest() : HubTest({/*buffer_bytes=*/4, kForever}) {}
};

TEST_F(SmallBufferHubTest, WaiterOlderThanBufferGetsCatchUp) {
  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  store_.push("s", commit({record(0, "abc")}));
  auto b = record(3, "defg");
  store_.push("s", commit({b}));  // 7 bytes > 4: "abc" is evicted

  for (uint64_t from : {0, 2}) {
    Wakes old;
    hubs_.wait("s", at(from), old.fn());
    ASSERT_EQ(old.got.size(), 1u) << from;
    EXPECT_EQ(old.got[0].kind, Wake::Kind::catch_up) << from;
    EXPECT_EQ(old.got[0].tail, at(7));
    EXPECT_TRUE(old.got[0].records.empty());
  }

  Wakes kept;
  hubs_.wait("s", at(3), kept.fn());
  ASSERT_EQ(kept.got.size(), 1u);
  EXPECT_EQ(kept.got[0].kind, Wake::Kind::data);
  ASSERT_EQ(kept.got[0].records.size(), 1u);
  EXPECT_EQ(kept.got[0].records[0], b);
}

TEST_F(SmallBufferHubTest, NewestRecordIsKeptEvenWhenLargerThanTheBuffer) {
  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  auto big = record(0, "0123456789");
  store_.push("s", commit({big}));

  Wakes again;
  hubs_.wait("s", at(0), again.fn());
  ASSERT_EQ(again.got.size(), 1u);
  EXPECT_EQ(again.got[0].kind, Wake::Kind::data);
  ASSERT_EQ(again.got[0].records.size(), 1u);
  EXPECT_EQ(again.got[0].records[0], big);
}

TEST_F(HubTest, ClosedStreamAtTail) {
  Wakes w;
  hubs_.wait("s", at(5), w.fn());
  store_.push("s", state(5, /*closed=*/true));
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].kind, Wake::Kind::closed);
  EXPECT_EQ(w.got[0].tail, at(5));
  EXPECT_TRUE(w.got[0].closed);
  EXPECT_TRUE(w.got[0].records.empty());

  Wakes late;
  hubs_.wait("s", at(5), late.fn());
  ASSERT_EQ(late.got.size(), 1u);
  EXPECT_EQ(late.got[0].kind, Wake::Kind::closed);
}

TEST_F(HubTest, CloseOnlyWakesParkedWaiter) {
  Wakes w;
  hubs_.wait("s", at(5), w.fn());
  store_.push("s", state(5));
  ASSERT_TRUE(w.got.empty());
  store_.push("s", state(5, /*closed=*/true));
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].kind, Wake::Kind::closed);
  EXPECT_TRUE(w.got[0].closed);
}

TEST_F(HubTest, FinalAppendIsDeliveredBeforeClosed) {
  Wakes w;
  hubs_.wait("s", at(5), w.fn());
  store_.push("s", state(5));
  auto last = record(5, "sse-data");
  store_.push("s", commit({last}, /*closed=*/true));
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].kind, Wake::Kind::data);
  ASSERT_EQ(w.got[0].records.size(), 1u);
  EXPECT_EQ(w.got[0].records[0], last);
  EXPECT_TRUE(w.got[0].closed);
  EXPECT_EQ(w.got[0].tail, at(13));

  Wakes next;
  hubs_.wait("s", at(13), next.fn());
  ASSERT_EQ(next.got.size(), 1u);
  EXPECT_EQ(next.got[0].kind, Wake::Kind::closed);
}

TEST_F(HubTest, GoneWakesEveryone) {
  Wakes a, b;
  hubs_.wait("s", at(0), a.fn());
  store_.push("s", state(0));
  hubs_.wait("s", at(0), b.fn());
  store_.push("s", gone_event());
  for (const Wakes* w : {&a, &b}) {
    ASSERT_EQ(w->got.size(), 1u);
    EXPECT_EQ(w->got[0].kind, Wake::Kind::gone);
    EXPECT_TRUE(w->got[0].records.empty());
  }
}

TEST_F(HubTest, GoneBeforeFirstStateWakesWaiter) {
  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", gone_event());
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].kind, Wake::Kind::gone);
}

TEST_F(HubTest, WaitAfterGoneWatchesTheNewIncarnation) {
  Wakes a;
  hubs_.wait("s", at(3), a.fn());
  store_.push("s", state(3));
  store_.push("s", gone_event());
  ASSERT_EQ(a.got.size(), 1u);
  EXPECT_EQ(store_.watch_calls, 1);

  // The path may hold a new stream now: a fresh hub, a fresh watch, no stale state.
  Wakes b;
  hubs_.wait("s", at(0), b.fn());
  EXPECT_EQ(store_.watch_calls, 2);
  EXPECT_EQ(store_.unwatch_calls, 1);
  EXPECT_EQ(store_.active_watches("s"), 1);
  EXPECT_EQ(hubs_.hub_count(), 1u);
  EXPECT_TRUE(b.got.empty());
  store_.push("s", state(0));
  EXPECT_TRUE(b.got.empty());
  auto r = record(0, "new");
  store_.push("s", commit({r}));
  ASSERT_EQ(b.got.size(), 1u);
  EXPECT_EQ(b.got[0].kind, Wake::Kind::data);
  EXPECT_EQ(b.got[0].records[0], r);
}

TEST_F(HubTest, CancelPreventsTheWake) {
  Wakes w;
  auto waiter = hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  EXPECT_TRUE(waiter->cancel());
  store_.push("s", commit({record(0, "x")}));
  EXPECT_TRUE(w.got.empty());
  EXPECT_FALSE(waiter->cancel());  // already cancelled
}

TEST_F(HubTest, CancelAfterWakeReportsFalse) {
  Wakes w;
  auto waiter = hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  store_.push("s", commit({record(0, "x")}));
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_FALSE(waiter->cancel());
}

TEST_F(HubTest, CancelBeforeFirstStatePreventsTheWake) {
  Wakes w;
  auto waiter = hubs_.wait("s", at(0), w.fn());
  EXPECT_TRUE(waiter->cancel());
  store_.push("s", state(0, /*closed=*/true));
  store_.push("s", gone_event());
  EXPECT_TRUE(w.got.empty());
}

TEST_F(HubTest, ManyWaitersShareOneWatch) {
  std::vector<Wakes> on_s(5);
  for (auto& w : on_s) hubs_.wait("s", at(0), w.fn());
  Wakes on_t;
  hubs_.wait("t", at(0), on_t.fn());
  EXPECT_EQ(store_.watch_calls, 2);
  EXPECT_EQ(store_.active_watches("s"), 1);
  EXPECT_EQ(store_.active_watches("t"), 1);
  EXPECT_EQ(hubs_.hub_count(), 2u);

  store_.push("s", state(0));
  auto r = record(0, "fan-out");
  store_.push("s", commit({r}));
  for (const auto& w : on_s) {
    ASSERT_EQ(w.got.size(), 1u);
    EXPECT_EQ(w.got[0].kind, Wake::Kind::data);
    ASSERT_EQ(w.got[0].records.size(), 1u);
    EXPECT_EQ(w.got[0].records[0], r);
  }
  EXPECT_TRUE(on_t.got.empty());

  // Later waiters on the same stream still use the same watch.
  Wakes more;
  hubs_.wait("s", at(7), more.fn());
  EXPECT_EQ(store_.watch_calls, 2);
}

TEST_F(HubTest, ReapKeepsHubsWithinTheGracePeriod) {
  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  store_.push("s", commit({record(0, "x")}));
  ASSERT_EQ(w.got.size(), 1u);
  hubs_.reap();  // idle, but for less than an hour
  EXPECT_EQ(hubs_.hub_count(), 1u);
  EXPECT_EQ(store_.unwatch_calls, 0);
}

TEST_F(HubTest, ReapDropsGoneHubs) {
  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", gone_event());
  hubs_.reap();
  EXPECT_EQ(hubs_.hub_count(), 0u);
  EXPECT_EQ(store_.unwatch_calls, 1);
  EXPECT_EQ(store_.active_watches("s"), 0);
}

class NoGraceHubTest : public HubTest {
 protected:
  NoGraceHubTest() : HubTest({4 << 20, std::chrono::milliseconds(0)}) {}
};

TEST_F(NoGraceHubTest, ReapDropsIdleHubsAndUnwatches) {
  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  store_.push("s", commit({record(0, "x")}));
  ASSERT_EQ(w.got.size(), 1u);

  hubs_.reap();
  EXPECT_EQ(hubs_.hub_count(), 0u);
  EXPECT_EQ(store_.unwatch_calls, 1);
  EXPECT_EQ(store_.active_watches("s"), 0);

  // The next reader starts a new watch.
  Wakes again;
  hubs_.wait("s", at(1), again.fn());
  EXPECT_EQ(store_.watch_calls, 2);
  EXPECT_EQ(hubs_.hub_count(), 1u);
}

TEST_F(NoGraceHubTest, ReapKeepsHubsWithParkedWaiters) {
  Wakes parked;
  hubs_.wait("s", at(0), parked.fn());
  store_.push("s", state(0));
  Wakes idle;
  hubs_.wait("t", at(0), idle.fn());
  store_.push("t", state(0, /*closed=*/true));  // wakes and leaves "t" idle
  ASSERT_EQ(idle.got.size(), 1u);

  hubs_.reap();
  EXPECT_EQ(hubs_.hub_count(), 1u);
  EXPECT_EQ(store_.active_watches("s"), 1);
  EXPECT_EQ(store_.active_watches("t"), 0);

  // The parked waiter still works after the reap.
  store_.push("s", commit({record(0, "x")}));
  ASSERT_EQ(parked.got.size(), 1u);
  EXPECT_EQ(parked.got[0].kind, Wake::Kind::data);
}

TEST_F(NoGraceHubTest, CancelledWaiterLeavesHubIdle) {
  Wakes w;
  auto waiter = hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  hubs_.reap();
  EXPECT_EQ(hubs_.hub_count(), 1u);
  ASSERT_TRUE(waiter->cancel());
  hubs_.reap();
  EXPECT_EQ(hubs_.hub_count(), 0u);
  EXPECT_EQ(store_.unwatch_calls, 1);
}

TEST_F(HubTest, InitialStateDeliveredInsideWatch) {
  store_.initial["behind"] = state(10);
  Wakes behind;
  hubs_.wait("behind", at(4), behind.fn());
  ASSERT_EQ(behind.got.size(), 1u);
  EXPECT_EQ(behind.got[0].kind, Wake::Kind::catch_up);
  EXPECT_EQ(behind.got[0].tail, at(10));

  Wakes at_tail;
  hubs_.wait("behind", at(10), at_tail.fn());
  EXPECT_TRUE(at_tail.got.empty());
  EXPECT_EQ(store_.watch_calls, 1);

  store_.initial["closed"] = state(3, /*closed=*/true);
  Wakes closed;
  hubs_.wait("closed", at(3), closed.fn());
  ASSERT_EQ(closed.got.size(), 1u);
  EXPECT_EQ(closed.got[0].kind, Wake::Kind::closed);
}

TEST_F(HubTest, MissingStreamIsGoneAtOnce) {
  store_.initial["missing"] = gone_event();
  Wakes w;
  hubs_.wait("missing", at(0), w.fn());
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].kind, Wake::Kind::gone);

  // Every later wait retries the store: the stream may have been created since.
  store_.initial.erase("missing");
  Wakes later;
  hubs_.wait("missing", at(0), later.fn());
  EXPECT_TRUE(later.got.empty());
  EXPECT_EQ(store_.watch_calls, 2);
  EXPECT_EQ(hubs_.hub_count(), 1u);
}

TEST(LiveHubsTest, DestructionUnwatchesEverything) {
  FakeStore store;
  {
    LiveHubs hubs(store);
    Wakes a, b;
    hubs.wait("a", at(0), a.fn());
    hubs.wait("b", at(0), b.fn());
    EXPECT_EQ(store.watch_calls, 2);
  }
  EXPECT_EQ(store.unwatch_calls, 2);
  EXPECT_EQ(store.active_watches("a"), 0);
  EXPECT_EQ(store.active_watches("b"), 0);
}

}  // namespace
}  // namespace ds
