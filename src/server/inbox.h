#pragma once
// Results that other threads (the store's writer, the S2 client) hand to the
// event loop. An append's answer comes back from the writer thread after its
// group's fdatasync; posting each one on its own costs a wake-up of an
// event-loop thread and a cross-thread allocation per append. The inbox
// takes them as a batch: the first result of a batch posts one drain, the
// others only join the list, and the drain hands each to its own connection
// (its strand) from the event-loop thread, where Asio's allocations recycle.
//
// An item is delivered exactly once, or, if the inbox is destroyed first (the
// server stopping), discarded: what it owns is released either way.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <mutex>

#include "common/thread_annotations.h"
#include "common/wake_batch.h"

namespace ds::http_server {

class Inbox {
 public:
  /// One result on its way to a connection. Owned by the inbox from push()
  /// until deliver() or discard(), each of which must end its life.
  class Item {
   public:
    /// On an event-loop thread: hand the result on (and delete this).
    virtual void deliver() = 0;
    /// The inbox is going away undelivered: release everything (and delete this).
    virtual void discard() = 0;

   protected:
    ~Item() = default;

   private:
    friend class Inbox;
    Item* next_ = nullptr;
  };

  /// `ex`: where drains run (the io_context's executor, not a strand).
  explicit Inbox(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  /// From any thread.
  void push(Item* item);

  /// Drains run so far (each one post and one wake-up), for tests.
  uint64_t drains() const {
    MutexLock lock(mu_);
    return drains_;
  }

 private:
  /// Takes the list and delivers it, in push order.
  void drain();
  static void post_drain(void* self);

  boost::asio::any_io_executor ex_;
  mutable Mutex mu_;
  Item* head_ DS_GUARDED_BY(mu_) = nullptr;
  Item* tail_ DS_GUARDED_BY(mu_) = nullptr;
  bool scheduled_ DS_GUARDED_BY(mu_) = false;  // a drain is posted and has not taken the list
  uint64_t drains_ DS_GUARDED_BY(mu_) = 0;
};

inline void Inbox::push(Item* item) {
  item->next_ = nullptr;
  {
    MutexLock lock(mu_);
    if (tail_) {
      tail_->next_ = item;
    } else {
      head_ = item;
    }
    tail_ = item;
    if (scheduled_) return;
    scheduled_ = true;
  }
  // Inside the store writer's batch, the drain is posted once at its end.
  if (WakeBatch::defer(&Inbox::post_drain, this)) return;
  post_drain(this);
}

inline void Inbox::post_drain(void* self) {
  auto* inbox = static_cast<Inbox*>(self);
  boost::asio::post(inbox->ex_, [inbox] { inbox->drain(); });
}

inline void Inbox::drain() {
  Item* item;
  {
    MutexLock lock(mu_);
    item = head_;
    head_ = tail_ = nullptr;
    scheduled_ = false;
    ++drains_;
  }
  while (item) {
    Item* next = item->next_;
    item->deliver();
    item = next;
  }
}

inline Inbox::~Inbox() {
  Item* item;
  {
    MutexLock lock(mu_);
    item = head_;
    head_ = tail_ = nullptr;
  }
  while (item) {
    Item* next = item->next_;
    item->discard();
    item = next;
  }
}

}  // namespace ds::http_server
