#pragma once
// A minimal C++20 coroutine toolkit for engines that wait on callbacks
// without blocking a thread and without Asio: Task<T> (a lazily started
// coroutine that resumes its awaiter when it finishes), spawn() (runs a
// Task<void> detached), CallbackAwaiter (adapts a callback-style call), and
// AsyncMutex / AsyncSemaphore (FIFO, resume the next waiter on the releasing
// thread).
//
// A coroutine resumes on whatever thread completed what it awaited (an S2
// client thread, a timer thread, or inline), so code after a co_await must
// not assume a thread. g++ 12 rules (docs/architecture.md): no coroutine
// lambdas, and no class temporaries in a co_await expression: build the
// awaitable in one statement (`auto op = f(x);`) and `co_await op` in the next.

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "common/thread_annotations.h"

namespace ds {

template <class T>
class Task;

namespace detail {

struct TaskPromiseBase {
  // Who resumes the awaiter: kRunning (the awaiter is still in its
  // await_suspend), kAwaited (it suspended: the task resumes it when done),
  // kDone (the task finished first: the awaiter goes on without suspending,
  // so a loop of tasks that complete at once does not grow the stack).
  static constexpr int kRunning = 0, kAwaited = 1, kDone = 2;
  std::coroutine_handle<> continuation;
  std::exception_ptr error;
  std::atomic<int> state{kRunning};

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct Final {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto& p = h.promise();
      if (p.state.exchange(kDone) == kAwaited && p.continuation) return p.continuation;
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  Final final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct TaskPromise : TaskPromiseBase {
  std::optional<T> value;
  Task<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
};

template <>
struct TaskPromise<void> : TaskPromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
};

}  // namespace detail

/// A coroutine that starts when awaited and hands its result to the awaiter.
/// Owns its frame; awaiting an lvalue Task is allowed (once).
template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;

  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  /// Runs the task here until it finishes or suspends; suspends the awaiter
  /// only in the second case (the task then resumes it from wherever it ends).
  bool await_suspend(std::coroutine_handle<> awaiter) noexcept {
    auto& p = h_.promise();
    p.continuation = awaiter;
    h_.resume();
    return p.state.exchange(promise_type::kAwaited) != promise_type::kDone;
  }
  T await_resume() {
    auto& p = h_.promise();
    if (p.error) std::rethrow_exception(p.error);
    if constexpr (!std::is_void_v<T>) return std::move(*p.value);
  }

 private:
  friend promise_type;
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

/// The frame of a spawned task: starts at once, frees itself at the end.
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

inline Detached run_detached(Task<void> task) {
  try {
    co_await task;
  } catch (...) {
    // A spawned task handles its own errors (it answers its caller); an
    // exception that escapes one is a bug, but must not take the process down.
  }
}
}  // namespace detail

/// Starts `task` now, on this thread, and lets it run to completion on its own.
inline void spawn(Task<void> task) { detail::run_detached(std::move(task)); }

/// Awaits a callback-style operation: `start(cb)` must call `cb(T)` exactly
/// once, on any thread, possibly before start returns.
template <class T, class Start>
class CallbackAwaiter {
 public:
  explicit CallbackAwaiter(Start start) : start_(std::move(start)) {}
  CallbackAwaiter(const CallbackAwaiter&) = delete;
  CallbackAwaiter& operator=(const CallbackAwaiter&) = delete;

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    h_ = h;
    start_([this](T value) {
      result_.emplace(std::move(value));
      if (state_.exchange(kCompleted) == kSuspended) h_.resume();
    });
    // kCompleted already: the callback ran inline, so do not suspend.
    return state_.exchange(kSuspended) != kCompleted;
  }
  T await_resume() { return std::move(*result_); }

 private:
  static constexpr int kStarting = 0, kCompleted = 1, kSuspended = 2;
  Start start_;
  std::coroutine_handle<> h_;
  std::optional<T> result_;
  std::atomic<int> state_{kStarting};
};

/// A FIFO mutex for coroutines: `co_await m.lock()` ... `m.unlock()`.
/// unlock() hands the mutex to the next waiter and resumes it on the calling
/// thread before returning.
class AsyncMutex {
 public:
  class LockAwaiter {
   public:
    explicit LockAwaiter(AsyncMutex& m) : m_(m) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      MutexLock lock(m_.mu_);
      if (!m_.locked_) {
        m_.locked_ = true;
        return false;
      }
      m_.waiters_.push_back(h);
      return true;
    }
    void await_resume() const noexcept {}

   private:
    AsyncMutex& m_;
  };

  LockAwaiter lock() { return LockAwaiter(*this); }
  void unlock() {
    std::coroutine_handle<> next;
    {
      MutexLock lock(mu_);
      if (waiters_.empty()) {
        locked_ = false;
        return;
      }
      next = waiters_.front();  // ownership passes straight to it
      waiters_.pop_front();
    }
    next.resume();
  }

 private:
  Mutex mu_;
  bool locked_ DS_GUARDED_BY(mu_) = false;
  std::deque<std::coroutine_handle<>> waiters_ DS_GUARDED_BY(mu_);
};

/// A counting semaphore for coroutines, FIFO. `waits()` counts acquisitions
/// that had to queue.
class AsyncSemaphore {
 public:
  explicit AsyncSemaphore(size_t permits) : free_(permits) {}

  class AcquireAwaiter {
   public:
    explicit AcquireAwaiter(AsyncSemaphore& s) : s_(s) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
      MutexLock lock(s_.mu_);
      if (s_.free_ > 0) {
        --s_.free_;
        return false;
      }
      ++s_.waits_;
      s_.waiters_.push_back(h);
      return true;
    }
    void await_resume() const noexcept {}

   private:
    AsyncSemaphore& s_;
  };

  AcquireAwaiter acquire() { return AcquireAwaiter(*this); }
  void release() {
    std::coroutine_handle<> next;
    {
      MutexLock lock(mu_);
      if (waiters_.empty()) {
        ++free_;
        return;
      }
      next = waiters_.front();  // the permit passes straight to it
      waiters_.pop_front();
    }
    next.resume();
  }
  uint64_t waits() const {
    MutexLock lock(mu_);
    return waits_;
  }

 private:
  mutable Mutex mu_;
  size_t free_ DS_GUARDED_BY(mu_);
  uint64_t waits_ DS_GUARDED_BY(mu_) = 0;
  std::deque<std::coroutine_handle<>> waiters_ DS_GUARDED_BY(mu_);
};

}  // namespace ds
