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
  void head(std::string path, Callback<StreamMeta> done) override {
    ++head_calls;
    auto it = metas.find(path);
    if (it == metas.end()) return done(unsupported());
    done(it->second);
  }
  void touch(const std::string&) override {}
  void remove(std::string, Callback<Unit> done) override { done(unsupported()); }
  void list(ListRequest, Callback<ListOutcome> done) override { done(unsupported()); }
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
  /// What head() answers for a path (else an error).
  std::map<std::string, StreamMeta> metas;
  int watch_calls = 0;
  int unwatch_calls = 0;
  int head_calls = 0;
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

// A waiter that handles its wake itself (what the server's live waits are:
// one object, no std::function).
class OwnWaiter final : public Waiter {
 public:
  explicit OwnWaiter(Offset from) : Waiter(from) {}
  std::vector<Wake> got;

 private:
  void on_wake(Wake w) override { got.push_back(std::move(w)); }
};

TEST_F(HubTest, SubclassWaiterGetsItsWakeOnceThroughOnWake) {
  store_.push("s", state(0));
  auto w = std::make_shared<OwnWaiter>(at(0));
  hubs_.wait("s", w);
  store_.push("s", state(0));
  EXPECT_TRUE(w->got.empty());
  auto r = record(0, "xy");
  store_.push("s", commit({r}));
  ASSERT_EQ(w->got.size(), 1u);
  EXPECT_EQ(w->got[0].kind, Wake::Kind::data);
  ASSERT_EQ(w->got[0].records.size(), 1u);
  EXPECT_EQ(w->got[0].records[0], r);
  EXPECT_FALSE(w->cancel());  // it fired
  store_.push("s", commit({record(2, "z")}));
  EXPECT_EQ(w->got.size(), 1u);

  // Inline, when it need not wait; and a cancelled one never wakes.
  auto behind = std::make_shared<OwnWaiter>(at(1));
  hubs_.wait("s", behind);
  ASSERT_EQ(behind->got.size(), 1u);
  EXPECT_EQ(behind->got[0].records.size(), 2u);
  auto cancelled = std::make_shared<OwnWaiter>(at(3));
  hubs_.wait("s", cancelled);
  EXPECT_TRUE(cancelled->cancel());
  store_.push("s", commit({record(3, "w")}));
  EXPECT_TRUE(cancelled->got.empty());
}

TEST_F(HubTest, AnEventWakesSomeWaitersAndKeepsTheOthersParked) {
  store_.push("s", state(0));
  // Waiters at 0, 5, 1, 9, 2 (their order of arrival); a commit up to 3
  // wakes those at 0, 1 and 2 and keeps 5 and 9 parked, for the next ones.
  std::vector<std::shared_ptr<OwnWaiter>> ws;
  for (uint64_t pos : {0, 5, 1, 9, 2}) {
    ws.push_back(std::make_shared<OwnWaiter>(at(pos)));
    hubs_.wait("s", ws.back());
  }
  store_.push("s", commit({record(0, "abc")}));
  for (size_t i : {0u, 2u, 4u}) EXPECT_EQ(ws[i]->got.size(), 1u) << i;
  for (size_t i : {1u, 3u}) EXPECT_TRUE(ws[i]->got.empty()) << i;
  store_.push("s", commit({record(3, "defgh")}));  // tail 8: wakes 5
  EXPECT_EQ(ws[1]->got.size(), 1u);
  EXPECT_TRUE(ws[3]->got.empty());
  EXPECT_EQ(ws[0]->got.size(), 1u);             // woken ones are not woken again
  store_.push("s", commit({record(8, "ij")}));  // tail 10: wakes 9
  ASSERT_EQ(ws[3]->got.size(), 1u);
  ASSERT_EQ(ws[3]->got[0].records.size(), 1u);
  EXPECT_EQ(ws[3]->got[0].records[0]->begin, at(9));  // clipped to its offset
  for (const auto& w : ws) EXPECT_FALSE(w->cancel());
}

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

// ------------------------------------------------------------ read_buffered

StreamMeta meta_of(const std::string& content_type, Offset tail, uint64_t id = 7) {
  StreamMeta m;
  m.id = id;
  m.path = "s";
  m.config.content_type = content_type;
  m.tail = tail;
  return m;
}

class BufferedReadTest : public ::testing::Test {
 protected:
  BufferedReadTest() : hubs_(store_, LiveHubs::Options{4 << 20, kForever, &clock_}) {}

  /// A hub for "s" with records "abc" [0,3) and "defg" [3,7) and the
  /// metadata of a `content_type` stream.
  void setup(const std::string& content_type = "text/plain") {
    waiter_ = hubs_.wait("s", at(100), parked_.fn());  // a reader parked at the tail
    store_.push("s", state(0));
    store_.push("s", commit({a_}));
    store_.push("s", commit({b_}));
    hubs_.remember("s", hubs_.hub_id("s"), meta_of(content_type, at(7)));
  }

  ManualClock clock_;
  FakeStore store_;
  LiveHubs hubs_;
  RecordPtr a_ = record(0, "abc");
  RecordPtr b_ = record(3, "defg");
  Wakes parked_;
  std::shared_ptr<Waiter> waiter_;
};

// A stream with retention: only storage knows its earliest offset (the
// buffer may hold what retention removed, or, on S2, have a hole where a read
// session skipped a trimmed range), so waiters behind the tail read storage.
TEST_F(BufferedReadTest, WaitersOfAStreamWithRetentionReadStorage) {
  waiter_ = hubs_.wait("s", at(100), parked_.fn());
  store_.push("s", state(0));
  store_.push("s", commit({a_}));
  store_.push("s", commit({b_}));
  StreamMeta m = meta_of("text/plain", at(7));
  m.config.retention_max_bytes = 4;
  hubs_.remember("s", hubs_.hub_id("s"), m);
  Wakes behind;
  hubs_.wait("s", at(3), behind.fn());
  ASSERT_EQ(behind.got.size(), 1u);
  EXPECT_EQ(behind.got[0].kind, Wake::Kind::catch_up);
  EXPECT_EQ(behind.got[0].tail, at(7));
  // At the tail it parks as ever, and a commit wakes it to read storage.
  Wakes at_tail;
  hubs_.wait("s", at(7), at_tail.fn());
  EXPECT_TRUE(at_tail.got.empty());
  store_.push("s", commit({record(7, "h")}));
  ASSERT_EQ(at_tail.got.size(), 1u);
  EXPECT_EQ(at_tail.got[0].kind, Wake::Kind::catch_up);
  EXPECT_EQ(at_tail.got[0].tail, at(8));
}

TEST_F(BufferedReadTest, AnswersBehindTheTailFromTheBuffer) {
  setup();
  auto r = hubs_.read_buffered("s", at(0), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->start, at(0));
  ASSERT_EQ(r->records.size(), 2u);
  EXPECT_EQ(r->records[0], a_);  // the very records, no copy
  EXPECT_EQ(r->records[1], b_);
  EXPECT_EQ(r->next, at(7));
  EXPECT_TRUE(r->up_to_date);
  EXPECT_EQ(r->meta.tail, at(7));
  EXPECT_FALSE(r->meta.closed);
  EXPECT_EQ(r->meta.id, 7u);
  EXPECT_EQ(r->meta.config.content_type, "text/plain");

  // The hub's tail and closure, not the remembered ones.
  auto c = record(7, "h");
  store_.push("s", commit({c}, /*closed=*/true));
  r = hubs_.read_buffered("s", at(3), 1 << 20);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->records.size(), 2u);
  EXPECT_EQ(r->records[0], b_);
  EXPECT_EQ(r->records[1], c);
  EXPECT_EQ(r->next, at(8));
  EXPECT_TRUE(r->up_to_date);
  EXPECT_EQ(r->meta.tail, at(8));
  EXPECT_TRUE(r->meta.closed);
  EXPECT_EQ(hubs_.buffered_reads(), 2u);
}

TEST_F(BufferedReadTest, AtTheTailNothingYetUpToDate) {
  setup();
  auto r = hubs_.read_buffered("s", at(7), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_EQ(r->start, at(7));
  EXPECT_EQ(r->next, at(7));
  EXPECT_TRUE(r->up_to_date);
  EXPECT_FALSE(r->meta.closed);

  // A closed stream's tail says so (the reader's wait then ends at once).
  store_.push("s", state(7, /*closed=*/true));
  r = hubs_.read_buffered("s", at(7), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->up_to_date);
  EXPECT_TRUE(r->meta.closed);

  // A hub that has seen no records yet answers at its tail too.
  Wakes w;
  auto waiter = hubs_.wait("t", at(100), w.fn());
  store_.push("t", state(4));
  hubs_.remember("t", hubs_.hub_id("t"), meta_of("text/plain", at(4)));
  r = hubs_.read_buffered("t", at(4), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_TRUE(r->up_to_date);
  EXPECT_FALSE(hubs_.read_buffered("t", at(3), 1 << 20));  // behind, nothing buffered
  waiter->cancel();
}

TEST_F(BufferedReadTest, InsideARecordOfABinaryStreamClipsIt) {
  setup("application/octet-stream");
  auto r = hubs_.read_buffered("s", at(4), 1 << 20);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0]->begin, at(4));
  EXPECT_EQ(r->records[0]->end, at(7));
  EXPECT_EQ(r->records[0]->bytes, "efg");
  EXPECT_EQ(r->start, at(4));
}

TEST_F(BufferedReadTest, JsonStreamsOnlyFromARecordBoundary) {
  setup("application/json; charset=utf-8");
  EXPECT_FALSE(hubs_.read_buffered("s", at(1), 1 << 20));  // storage answers 400
  auto r = hubs_.read_buffered("s", at(3), 1 << 20);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0], b_);
}

TEST_F(BufferedReadTest, StorageAnswersWhatTheHubCannot) {
  // No hub.
  EXPECT_EQ(hubs_.hub_id("s"), 0u);
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));
  // A hub with records but no metadata yet.
  waiter_ = hubs_.wait("s", at(100), parked_.fn());
  store_.push("s", state(0));
  store_.push("s", commit({a_}));
  store_.push("s", commit({b_}));
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));
  // Metadata from a read that started before there was a hub is not taken.
  hubs_.remember("s", 0, meta_of("text/plain", at(7)));
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));
  hubs_.remember("s", hubs_.hub_id("s"), meta_of("text/plain", at(7)));
  EXPECT_TRUE(hubs_.read_buffered("s", at(0), 1 << 20));
  // Ahead of the tail (another node's newer tail): storage.
  EXPECT_FALSE(hubs_.read_buffered("s", at(9), 1 << 20));
  EXPECT_FALSE(hubs_.read_buffered("s", Offset{1, 0}, 1 << 20));
  EXPECT_EQ(hubs_.buffered_reads(), 1u);
}

TEST_F(BufferedReadTest, ANewHubLearnsTheMetadataWithOneHead) {
  StreamMeta m = meta_of("text/plain", at(0));
  m.config.ttl_seconds = 4;
  m.last_access_ms = clock_.now_ms() - 3500;  // renewed 3.5 s ago
  store_.metas["s"] = m;
  waiter_ = hubs_.wait("s", at(100), parked_.fn());
  Wakes other;
  auto again = hubs_.wait("s", at(100), other.fn());
  EXPECT_EQ(store_.head_calls, 1);  // per hub, not per waiter
  store_.push("s", state(0));
  store_.push("s", commit({a_}));
  // Close to the end of the TTL as far as the head said: storage decides.
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));
  // A storage read (which renewed it) tells the hub.
  hubs_.remember("s", hubs_.hub_id("s"), m);
  EXPECT_TRUE(hubs_.read_buffered("s", at(0), 1 << 20));
  // Without a TTL, the head alone lets the hub answer.
  store_.push("s", gone_event());
  store_.metas["s"] = meta_of("text/plain", at(0), 9);
  Wakes w;
  auto fresh = hubs_.wait("s", at(100), w.fn());
  EXPECT_EQ(store_.head_calls, 2);
  store_.push("s", state(0));
  store_.push("s", commit({record(0, "xy")}));
  auto r = hubs_.read_buffered("s", at(1), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->meta.id, 9u);
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0]->bytes, "y");
  fresh->cancel();
  again->cancel();
}

TEST_F(BufferedReadTest, OlderThanTheBufferGoesToStorage) {
  store_.initial["s"] = state(10);  // history before the watch is not buffered
  waiter_ = hubs_.wait("s", at(100), parked_.fn());
  auto c = record(10, "xyz");
  store_.push("s", commit({c}));
  hubs_.remember("s", hubs_.hub_id("s"), meta_of("text/plain", at(13)));
  EXPECT_FALSE(hubs_.read_buffered("s", at(9), 1 << 20));
  auto r = hubs_.read_buffered("s", at(10), 1 << 20);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0], c);
}

TEST_F(BufferedReadTest, MaxBytesTruncatesAfterAtLeastOneRecord) {
  setup();
  auto r = hubs_.read_buffered("s", at(0), 2);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->records.size(), 1u);  // at least one record, even over the cap
  EXPECT_EQ(r->records[0], a_);
  EXPECT_EQ(r->next, at(3));
  EXPECT_FALSE(r->up_to_date);
  EXPECT_EQ(r->meta.tail, at(7));
}

TEST_F(BufferedReadTest, SparseOffsetsEndAtTheTail) {
  // S2-like: records take one sequence number each, control records (a
  // close) take some too, so the tail lies past the last data record.
  waiter_ = hubs_.wait("s", Offset{3, 100}, parked_.fn());
  CommitEvent init;
  init.tail = Offset{3, 1};
  store_.push("s", init);
  auto d1 = std::make_shared<Record>(Record{Offset{3, 1}, Offset{3, 2}, "one", {}});
  auto d2 = std::make_shared<Record>(Record{Offset{3, 4}, Offset{3, 5}, "two", {}});
  CommitEvent ev;
  ev.records = {d1, d2};
  ev.tail = Offset{3, 7};
  ev.closed = true;
  store_.push("s", ev);
  hubs_.remember("s", hubs_.hub_id("s"), meta_of("text/plain", Offset{3, 5}, 3));
  auto r = hubs_.read_buffered("s", Offset{3, 2}, 1 << 20);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0], d2);
  EXPECT_EQ(r->next, (Offset{3, 7}));
  EXPECT_TRUE(r->up_to_date);
  EXPECT_TRUE(r->meta.closed);
  // Between the last record and the tail: nothing but the tail.
  r = hubs_.read_buffered("s", Offset{3, 5}, 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_EQ(r->next, (Offset{3, 7}));
  EXPECT_TRUE(r->up_to_date);
}

TEST_F(BufferedReadTest, MetadataOfAnotherIncarnationIsNotTaken) {
  waiter_ = hubs_.wait("s", Offset{3, 100}, parked_.fn());
  CommitEvent init;
  init.tail = Offset{3, 1};
  store_.push("s", init);
  auto d = std::make_shared<Record>(Record{Offset{3, 1}, Offset{3, 2}, "one", {}});
  CommitEvent ev;
  ev.records = {d};
  ev.tail = Offset{3, 2};
  store_.push("s", ev);
  hubs_.remember("s", hubs_.hub_id("s"), meta_of("text/plain", Offset{4, 1}, 4));
  EXPECT_FALSE(hubs_.read_buffered("s", Offset{3, 1}, 1 << 20));
}

TEST_F(BufferedReadTest, AReplacedHubForgetsTheMetadata) {
  setup();
  const uint64_t old_id = hubs_.hub_id("s");
  store_.push("s", gone_event());
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));
  // The path is re-created (another content type); a read that began while
  // the old hub was current must not teach the new hub its metadata.
  Wakes w;
  auto again = hubs_.wait("s", at(100), w.fn());
  EXPECT_NE(hubs_.hub_id("s"), old_id);
  store_.push("s", state(0));
  store_.push("s", commit({record(0, "[1]")}));
  hubs_.remember("s", old_id, meta_of("text/plain", at(3)));
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));
  hubs_.remember("s", hubs_.hub_id("s"), meta_of("application/json", at(3), 8));
  auto r = hubs_.read_buffered("s", at(0), 1 << 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->meta.id, 8u);
  EXPECT_EQ(r->meta.config.content_type, "application/json");
  again->cancel();
}

TEST_F(BufferedReadTest, SlidingTtlAndExpiresAt) {
  setup();
  // TTL 4 s: the hub answers while it has seen an access within the last
  // 3 s (TTL minus min(1 s, TTL/4)); each answer is an access.
  StreamMeta m = meta_of("text/plain", at(7));
  m.config.ttl_seconds = 4;
  hubs_.remember("s", hubs_.hub_id("s"), m);
  clock_.advance_ms(2900);
  EXPECT_TRUE(hubs_.read_buffered("s", at(0), 1 << 20));
  clock_.advance_ms(2900);
  EXPECT_TRUE(hubs_.read_buffered("s", at(0), 1 << 20));
  clock_.advance_ms(3000);
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));  // storage decides
  hubs_.remember("s", hubs_.hub_id("s"), m);               // ... and renews
  EXPECT_TRUE(hubs_.read_buffered("s", at(0), 1 << 20));

  StreamMeta e = meta_of("text/plain", at(7));
  e.config.expires_at_ms = clock_.now_ms() + 1000;
  hubs_.remember("s", hubs_.hub_id("s"), e);
  EXPECT_TRUE(hubs_.read_buffered("s", at(0), 1 << 20));
  clock_.advance_ms(1000);
  EXPECT_FALSE(hubs_.read_buffered("s", at(0), 1 << 20));
}

class TenRecordHubTest : public HubTest {
 protected:
  TenRecordHubTest() : HubTest({10 * buffered_cost(*record(0, "x")), kForever}) {}
};

TEST_F(TenRecordHubTest, TheBufferCountsWhatEachRecordCostsNotOnlyItsBytes) {
  Wakes w;
  hubs_.wait("s", at(0), w.fn());
  store_.push("s", state(0));
  for (uint64_t i = 0; i < 100; ++i) store_.push("s", commit({record(i, "x")}));
  hubs_.remember("s", hubs_.hub_id("s"), meta_of("text/plain", at(100)));
  // A limit of ten one-byte records' cost keeps ten, not the 100 bytes'
  // worth it would if only bytes counted.
  auto kept = hubs_.read_buffered("s", at(90), 1 << 20);
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->records.size(), 10u);
  EXPECT_FALSE(hubs_.read_buffered("s", at(89), 1 << 20));
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
