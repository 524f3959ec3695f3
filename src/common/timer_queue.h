#pragma once
// Deferred work without an event loop: one thread that runs each job when its
// time comes. For engines that are not on Asio but must wait (pacing, backoff
// before a retry) without holding a thread per wait. Jobs must be short and
// must not block: they run one after another on the queue's thread.
//
// Thread safety: after() may be called from any thread, including from a job.
// stop() (and destruction) drops the jobs not yet due, lets a running one
// finish and joins the thread; after() then does nothing.

#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <functional>
#include <map>
#include <thread>

#include "common/thread_annotations.h"

namespace ds {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;

  TimerQueue();
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  /// Drops the jobs not yet due and joins the thread (not from a job).
  /// Idempotent.
  void stop();

  /// Runs `job` on the queue's thread once `delay` has passed.
  void after(std::chrono::microseconds delay, std::function<void()> job);

  /// `co_await queue.sleep(d)`: resumes the coroutine on the queue's thread.
  auto sleep(std::chrono::microseconds delay) {
    struct Awaiter {
      TimerQueue& q;
      std::chrono::microseconds d;
      bool await_ready() const noexcept { return d.count() <= 0; }
      void await_suspend(std::coroutine_handle<> h) {
        q.after(d, [h] { h.resume(); });
      }
      void await_resume() const noexcept {}
    };
    return Awaiter{*this, delay};
  }

 private:
  void run();

  Mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> jobs_ DS_GUARDED_BY(mu_);
  bool stopping_ DS_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ds
