// The coroutine toolkit of the S2 engine (src/common/task.h), with no I/O:
// callbacks that complete inline or later, on another thread; FIFO mutex and
// semaphore hand-offs; exceptions carried to the awaiter.
#include "common/task.h"

#include <gtest/gtest.h>

#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/timer_queue.h"

namespace ds {
namespace {

using Start = std::function<void(std::function<void(int)>)>;

Task<int> await_callback(Start start) {
  CallbackAwaiter<int, Start> op(std::move(start));
  int v = co_await op;
  co_return v + 1;
}

Task<void> record(Start start, std::vector<int>* out) {
  auto op = await_callback(std::move(start));
  out->push_back(co_await op);
}

TEST(TaskTest, ACallbackThatCompletesInlineDoesNotSuspend) {
  std::vector<int> out;
  spawn(record([](std::function<void(int)> cb) { cb(41); }, &out));
  EXPECT_EQ(out, std::vector<int>{42});
}

TEST(TaskTest, ACallbackThatCompletesLaterResumesTheCoroutine) {
  std::vector<int> out;
  std::function<void(int)> saved;
  spawn(record([&](std::function<void(int)> cb) { saved = std::move(cb); }, &out));
  EXPECT_TRUE(out.empty());
  std::thread t([&] { saved(1); });
  t.join();
  EXPECT_EQ(out, std::vector<int>{2});
}

Task<int> done_at_once(int v) { co_return v; }

Task<void> many_in_a_row(int n, long* sum) {
  for (int i = 0; i < n; ++i) {
    auto op = done_at_once(i);
    *sum += co_await op;
  }
}

TEST(TaskTest, TasksThatCompleteAtOnceDoNotGrowTheStack) {
  // Each finished task lets its awaiter go on in place (no resumption nested
  // in the last one), whatever the compiler does with symmetric transfer: a
  // million in a row would overflow the stack otherwise (ASan builds).
  long sum = 0;
  spawn(many_in_a_row(1'000'000, &sum));
  EXPECT_EQ(sum, 499'999'500'000L);
}

Task<int> throws() {
  throw std::runtime_error("boom");
  co_return 0;
}

Task<void> catches(std::string* what) {
  try {
    auto op = throws();
    co_await op;
  } catch (const std::exception& e) {
    *what = e.what();
  }
}

TEST(TaskTest, AnExceptionReachesTheAwaiter) {
  std::string what;
  spawn(catches(&what));
  EXPECT_EQ(what, "boom");
}

Task<void> locked_section(AsyncMutex& m, std::vector<int>* order, int id,
                          std::function<void(int)>* park) {
  auto lock = m.lock();
  co_await lock;
  order->push_back(id);
  if (park && *park == nullptr) {
    // Hold the mutex until the test resumes us.
    Start start = [park](std::function<void(int)> cb) { *park = std::move(cb); };
    CallbackAwaiter<int, Start> op(std::move(start));
    co_await op;
  }
  m.unlock();
}

TEST(TaskTest, AsyncMutexGrantsInArrivalOrder) {
  AsyncMutex m;
  std::vector<int> order;
  std::function<void(int)> park;
  spawn(locked_section(m, &order, 0, &park));
  for (int i = 1; i <= 5; ++i) spawn(locked_section(m, &order, i, nullptr));
  EXPECT_EQ(order, std::vector<int>{0}) << "the others wait for the holder";
  park(0);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

Task<void> with_permit(AsyncSemaphore& s, int* inside, int* peak,
                       std::vector<std::function<void(int)>>* parked) {
  auto acquire = s.acquire();
  co_await acquire;
  ++*inside;
  *peak = std::max(*peak, *inside);
  Start start = [parked](std::function<void(int)> cb) { parked->push_back(std::move(cb)); };
  CallbackAwaiter<int, Start> op(std::move(start));
  co_await op;
  --*inside;
  s.release();
}

TEST(TaskTest, AsyncSemaphoreBoundsConcurrencyAndCountsWaits) {
  AsyncSemaphore s(2);
  int inside = 0, peak = 0;
  std::vector<std::function<void(int)>> parked;
  for (int i = 0; i < 5; ++i) spawn(with_permit(s, &inside, &peak, &parked));
  EXPECT_EQ(inside, 2);
  EXPECT_EQ(s.waits(), 3u);
  for (size_t i = 0; i < parked.size(); ++i) {  // grows as permits pass on
    auto cb = std::move(parked[i]);
    cb(0);
  }
  EXPECT_EQ(parked.size(), 5u);
  EXPECT_EQ(inside, 0);
  EXPECT_EQ(peak, 2);
}

Task<void> nap(TimerQueue& q, std::thread::id* resumed_on, std::function<void()> done) {
  auto pause = q.sleep(std::chrono::milliseconds(1));
  co_await pause;
  *resumed_on = std::this_thread::get_id();
  done();
}

TEST(TaskTest, SleepResumesOnTheTimerThread) {
  TimerQueue q;
  std::thread::id on;
  std::promise<void> finished;
  spawn(nap(q, &on, [&] { finished.set_value(); }));
  ASSERT_EQ(finished.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_NE(on, std::this_thread::get_id());
}

}  // namespace
}  // namespace ds
