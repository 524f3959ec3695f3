#pragma once
// A fixed set of threads running queued jobs: where blocking work (disk
// reads) goes so that event-loop threads never wait on it.

#include <condition_variable>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace ds {

class WorkerPool {
 public:
  explicit WorkerPool(unsigned threads);
  ~WorkerPool();  ///< runs every job already queued, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void submit(std::function<void()> job);

 private:
  void run();

  Mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_ DS_GUARDED_BY(mu_);
  bool stopping_ DS_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace ds
