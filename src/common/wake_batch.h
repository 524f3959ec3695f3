#pragma once
// A thread that answers many requests at once (the log store's writer after a
// group commit) holds a WakeBatch while it runs their callbacks. A consumer
// that would wake another thread for each answer (server/inbox.h: an
// event-loop thread) defers that wake-up to the batch's end instead, so a
// group of N appends costs one wake-up, not N. Without a batch open on the
// thread, nothing is deferred.

#include <array>
#include <cstddef>

namespace ds {

class WakeBatch {
 public:
  using Wake = void (*)(void* arg);

  WakeBatch() : outer_(current_) { current_ = this; }
  /// Runs the deferred wake-ups, each once.
  ~WakeBatch() {
    current_ = outer_;
    for (size_t i = 0; i < count_; ++i) wakes_[i].fn(wakes_[i].arg);
  }
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;

  /// If a batch is open on this thread, remembers the wake-up `fn(arg)` (at
  /// most once per `arg`) for its end and returns true; else returns false
  /// and the caller wakes at once.
  static bool defer(Wake fn, void* arg) {
    WakeBatch* b = current_;
    if (!b) return false;
    for (size_t i = 0; i < b->count_; ++i)
      if (b->wakes_[i].arg == arg) return true;
    if (b->count_ == b->wakes_.size()) return false;  // rare: as many consumers as slots
    b->wakes_[b->count_++] = {fn, arg};
    return true;
  }

 private:
  struct Pending {
    Wake fn = nullptr;
    void* arg = nullptr;
  };
  static inline thread_local WakeBatch* current_ = nullptr;
  WakeBatch* outer_;
  std::array<Pending, 8> wakes_{};
  size_t count_ = 0;
};

}  // namespace ds
