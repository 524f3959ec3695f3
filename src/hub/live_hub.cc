#include "hub/live_hub.h"

#include <deque>

namespace ds {

/// One stream's hub. Its watch handle is only created and destroyed outside
/// engine callbacks (in LiveHubs), as the engine requires.
class Hub : public std::enable_shared_from_this<Hub> {
 public:
  explicit Hub(size_t buffer_bytes) : buffer_limit_(buffer_bytes) {}

  void on_event(const CommitEvent& ev) {
    std::vector<std::pair<std::shared_ptr<Waiter>, Wake>> wakes;
    {
      std::lock_guard lock(mu_);
      if (ev.gone) {
        gone_ = true;
      } else {
        for (const auto& r : ev.records) {
          buffer_.push_back(r);
          buffered_ += r->bytes.size();
        }
        while (buffer_.size() > 1 && buffered_ > buffer_limit_) {
          buffered_ -= buffer_.front()->bytes.size();
          buffer_.pop_front();
        }
        tail_ = ev.tail;
        closed_ = ev.closed;
        if (!ev.records.empty()) last_data_ = std::chrono::steady_clock::now();
      }
      initialized_ = true;
      std::vector<std::shared_ptr<Waiter>> still;
      for (auto& w : waiters_) {
        if (auto wake = evaluate_locked(w->from_)) {
          wakes.emplace_back(w, std::move(*wake));
        } else {
          still.push_back(w);
        }
      }
      waiters_.swap(still);
      idle_since_ = std::chrono::steady_clock::now();
    }
    for (auto& [w, wake] : wakes) w->fire(std::move(wake));
  }

  /// Parks the waiter, or wakes it at once if it need not wait. Returns
  /// false if the hub was retired by reap() meanwhile (use a fresh hub).
  bool add(const std::shared_ptr<Waiter>& w) {
    std::optional<Wake> wake;
    {
      std::lock_guard lock(mu_);
      if (retired_) return false;
      w->hub_ = weak_from_this();
      if (initialized_) wake = evaluate_locked(w->from_);
      if (!wake) waiters_.push_back(w);
    }
    if (wake) w->fire(std::move(*wake));
    return true;
  }

  /// Retires the hub if it is gone or has been idle for `grace`; a retired
  /// hub accepts no waiters. Called by reap() under LiveHubs::mu_.
  bool retire_if_idle(std::chrono::milliseconds grace) {
    std::lock_guard lock(mu_);
    if (gone_ || (waiters_.empty() && std::chrono::steady_clock::now() - idle_since_ >= grace))
      retired_ = true;
    return retired_;
  }

  void remove(const Waiter* w) {
    std::lock_guard lock(mu_);
    std::erase_if(waiters_, [w](const auto& p) { return p.get() == w; });
    if (waiters_.empty()) idle_since_ = std::chrono::steady_clock::now();
  }

  bool gone() const {
    std::lock_guard lock(mu_);
    return gone_;
  }

  std::chrono::steady_clock::time_point last_data() const {
    std::lock_guard lock(mu_);
    return last_data_;
  }

  bool retired() const {
    std::lock_guard lock(mu_);
    return retired_;
  }

  std::unique_ptr<WatchHandle> watch;

 private:
  std::optional<Wake> evaluate_locked(Offset from) const {
    if (gone_) return Wake{Wake::Kind::gone, {}, tail_, closed_};
    if (from >= tail_) {
      if (closed_) return Wake{Wake::Kind::closed, {}, tail_, true};
      return std::nullopt;  // park: nothing new yet
    }
    // Data exists after `from`: serve it from the buffer if the buffer reaches back that far.
    Offset oldest = buffer_.empty() ? tail_ : buffer_.front()->begin;
    if (from < oldest) return Wake{Wake::Kind::catch_up, {}, tail_, closed_};
    Wake wake{Wake::Kind::data, {}, tail_, closed_};
    for (const auto& r : buffer_) {
      if (r->end <= from) continue;
      if (r->begin < from) {
        auto part = std::make_shared<Record>();
        part->begin = from;
        part->end = r->end;
        part->bytes = r->bytes.substr(from.lo - r->begin.lo);
        wake.records.push_back(std::move(part));
      } else {
        wake.records.push_back(r);
      }
    }
    return wake;
  }

  const size_t buffer_limit_;
  mutable std::mutex mu_;
  bool initialized_ = false;                      // guarded by mu_
  bool gone_ = false;                             // guarded by mu_
  bool retired_ = false;                          // guarded by mu_: reaped, takes no waiters
  bool closed_ = false;                           // guarded by mu_
  Offset tail_;                                   // guarded by mu_
  std::deque<RecordPtr> buffer_;                  // guarded by mu_
  size_t buffered_ = 0;                           // guarded by mu_
  std::vector<std::shared_ptr<Waiter>> waiters_;  // guarded by mu_
  std::chrono::steady_clock::time_point idle_since_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_data_{};  // guarded by mu_
};

bool Waiter::fire(Wake w) {
  std::function<void(Wake)> fn;
  {
    std::lock_guard lock(mu_);
    if (done_) return false;
    done_ = true;
    fn = std::move(fn_);
  }
  fn(std::move(w));
  return true;
}

bool Waiter::cancel() {
  {
    std::lock_guard lock(mu_);
    if (done_) return false;
    done_ = true;
    fn_ = nullptr;
  }
  if (auto hub = hub_.lock()) hub->remove(this);
  return true;
}

LiveHubs::LiveHubs(StreamStore& store, Options options) : store_(store), options_(options) {}

LiveHubs::~LiveHubs() {
  std::unordered_map<std::string, std::shared_ptr<Hub>> hubs;
  {
    std::lock_guard lock(mu_);
    hubs.swap(hubs_);
  }
  for (auto& [path, hub] : hubs) hub->watch.reset();
}

std::shared_ptr<Hub> LiveHubs::hub_for(const std::string& path) {
  std::shared_ptr<Hub> stale;
  std::shared_ptr<Hub> hub;
  {
    std::lock_guard lock(mu_);
    auto it = hubs_.find(path);
    if (it != hubs_.end()) {
      if (!it->second->gone() && !it->second->retired()) return it->second;
      stale = std::move(it->second);  // a deleted stream's hub; the path may hold a new stream
      hubs_.erase(it);
    }
    hub = std::make_shared<Hub>(options_.buffer_bytes);
    std::weak_ptr<Hub> weak = hub;
    hub->watch = store_.watch(path, [weak](const CommitEvent& ev) {
      if (auto h = weak.lock()) h->on_event(ev);
    });
    hubs_.emplace(path, hub);
  }
  if (stale) stale->watch.reset();  // outside mu_, like reap()
  return hub;
}

std::shared_ptr<Waiter> LiveHubs::wait(const std::string& path, Offset from,
                                       std::function<void(Wake)> wake) {
  auto waiter = std::make_shared<Waiter>(from, std::move(wake));
  // A hub retired by reap() between hub_for() and add() takes no waiters; the
  // next hub_for() then makes a fresh one.
  while (!hub_for(path)->add(waiter)) {
  }
  return waiter;
}

void LiveHubs::reap() {
  std::vector<std::shared_ptr<Hub>> dead;
  {
    std::lock_guard lock(mu_);
    for (auto it = hubs_.begin(); it != hubs_.end();) {
      if (it->second->retire_if_idle(options_.idle_grace)) {
        dead.push_back(std::move(it->second));
        it = hubs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& hub : dead) hub->watch.reset();  // outside mu_: unwatching takes engine locks
}

bool LiveHubs::recently_active(const std::string& path, std::chrono::milliseconds window) const {
  std::shared_ptr<Hub> hub;
  {
    std::lock_guard lock(mu_);
    auto it = hubs_.find(path);
    if (it == hubs_.end()) return false;
    hub = it->second;
  }
  return std::chrono::steady_clock::now() - hub->last_data() < window;
}

size_t LiveHubs::hub_count() const {
  std::lock_guard lock(mu_);
  return hubs_.size();
}

}  // namespace ds
