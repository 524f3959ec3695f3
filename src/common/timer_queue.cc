#include "common/timer_queue.h"

namespace ds {

TimerQueue::TimerQueue() : thread_([this] { run(); }) {}

TimerQueue::~TimerQueue() {
  stop();
  // Only when the last job destroyed the queue's owner: the thread cannot
  // join itself, and returns from run() right after this.
  if (thread_.joinable()) thread_.detach();
}

void TimerQueue::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void TimerQueue::after(std::chrono::microseconds delay, std::function<void()> job) {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
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
