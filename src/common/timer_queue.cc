#include "common/timer_queue.h"

namespace ds {

TimerQueue::TimerQueue() : thread_([this] { run(); }) {}

TimerQueue::~TimerQueue() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void TimerQueue::after(std::chrono::microseconds delay, std::function<void()> job) {
  {
    MutexLock lock(mu_);
    jobs_.emplace(Clock::now() + delay, std::move(job));
  }
  cv_.notify_one();
}

void TimerQueue::run() {
  MutexLock lock(mu_);
  while (!stopping_) {
    if (jobs_.empty()) {
      cv_.wait(lock.native());
      continue;
    }
    auto due = jobs_.begin()->first;
    if (Clock::now() < due) {
      cv_.wait_until(lock.native(), due);
      continue;
    }
    auto job = std::move(jobs_.begin()->second);
    jobs_.erase(jobs_.begin());
    lock.unlock();
    job();
    lock.lock();
  }
}

}  // namespace ds
