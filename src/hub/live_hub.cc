#include "hub/live_hub.h"

#include <algorithm>
#include <deque>

#include "protocol/headers.h"

namespace ds {

/// One stream's hub. Its watch handle is only created and destroyed outside
/// engine callbacks (in LiveHubs), as the engine requires.
class Hub : public std::enable_shared_from_this<Hub> {
 public:
  Hub(size_t buffer_bytes, uint64_t id, const Clock& clock)
      : id(id), buffer_limit_(buffer_bytes), clock_(clock) {}

  const uint64_t id;  ///< unique per LiveHubs: a replaced hub never matches again

  void on_event(const CommitEvent& ev) {
    std::vector<std::pair<std::shared_ptr<Waiter>, Wake>> wakes;
    {
      MutexLock lock(mu_);
      wakes.reserve(waiters_.size());  // one allocation per event, not one per doubling
      if (ev.gone) {
        gone_ = true;
      } else {
        for (const auto& r : ev.records) {
          buffer_.push_back(r);
          buffered_ += buffered_cost(*r);
        }
        while (buffer_.size() > 1 && buffered_ > buffer_limit_) {
          buffered_ -= buffered_cost(*buffer_.front());
          buffer_.pop_front();
        }
        tail_ = ev.tail;
        closed_ = ev.closed;
        if (!ev.records.empty()) last_data_ = std::chrono::steady_clock::now();
      }
      initialized_ = true;
      // The waiters still waiting are kept in place (no second vector per event).
      size_t kept = 0;
      for (size_t i = 0; i < waiters_.size(); ++i) {
        if (auto wake = evaluate_locked(waiters_[i]->from_)) {
          wakes.emplace_back(std::move(waiters_[i]), std::move(*wake));
        } else {
          if (kept != i) waiters_[kept] = std::move(waiters_[i]);
          ++kept;
        }
      }
      waiters_.resize(kept);
      idle_since_ = std::chrono::steady_clock::now();
    }
    for (auto& [w, wake] : wakes) w->fire(std::move(wake));
  }

  /// Parks the waiter, or wakes it at once if it need not wait. Returns
  /// false if the hub was retired by reap() meanwhile (use a fresh hub).
  bool add(const std::shared_ptr<Waiter>& w) {
    std::optional<Wake> wake;
    {
      MutexLock lock(mu_);
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
    MutexLock lock(mu_);
    if (gone_ || (waiters_.empty() && std::chrono::steady_clock::now() - idle_since_ >= grace))
      retired_ = true;
    return retired_;
  }

  void remove(const Waiter* w) {
    MutexLock lock(mu_);
    std::erase_if(waiters_, [w](const auto& p) { return p.get() == w; });
    if (waiters_.empty()) idle_since_ = std::chrono::steady_clock::now();
  }

  bool gone() const {
    MutexLock lock(mu_);
    return gone_;
  }

  std::chrono::steady_clock::time_point last_data() const {
    MutexLock lock(mu_);
    return last_data_;
  }

  bool retired() const {
    MutexLock lock(mu_);
    return retired_;
  }

  /// `meta` was read after this hub's watch was registered, so it describes
  /// the hub's incarnation or a later one; a later one has already ended the
  /// hub's (the hub is gone, or its tail is another incarnation's: checked
  /// again at every read). `accessed_ms`: the last access the read knew of.
  void remember(const StreamMeta& meta, int64_t accessed_ms) {
    MutexLock lock(mu_);
    if (gone_ || retired_) return;
    // S2 offsets carry the incarnation: metadata read from another one is
    // not this hub's (the embedded engine's offsets all have hi = 0).
    if (initialized_ && meta.tail.hi != tail_.hi) return;
    meta_ = meta;
    json_ = is_json_media_type(media_type(meta.config.content_type));
    accessed_ms_ = std::max(accessed_ms_, accessed_ms);
  }

  std::optional<ReadOutcome> read_buffered(Offset from, size_t max_bytes) {
    MutexLock lock(mu_);
    if (!initialized_ || gone_ || retired_ || !meta_ || meta_->tail.hi != tail_.hi)
      return std::nullopt;
    // Ahead of the tail this hub knows (on S2, possibly another node's newer
    // tail): storage decides. At the tail: nothing yet, the reader waits on
    // the hub. Behind it: the buffer must reach back to `from`.
    if (from > tail_) return std::nullopt;
    if (from < tail_ && (buffer_.empty() || from < buffer_.front()->begin)) return std::nullopt;
    const int64_t now = clock_.now_ms();
    const auto& cfg = meta_->config;
    if (cfg.expires_at_ms && now >= *cfg.expires_at_ms) return std::nullopt;
    if (cfg.ttl_seconds) {
      // Engines renew the sliding TTL at most once per min(1 s, TTL/4)
      // (StreamStore::touch), so the hub stops answering that much early and
      // lets storage decide whether the stream is still there.
      const int64_t ttl_ms = static_cast<int64_t>(*cfg.ttl_seconds) * 1000;
      if (now >= accessed_ms_ + ttl_ms - std::min<int64_t>(1000, ttl_ms / 4)) return std::nullopt;
    }
    ReadOutcome out;
    out.meta = *meta_;
    out.meta.tail = tail_;
    out.meta.closed = closed_;
    out.start = from;
    out.next = from;
    size_t used = 0;
    bool truncated = false;
    for (auto it = first_after_locked(from); it != buffer_.end(); ++it) {
      const RecordPtr& r = *it;
      RecordPtr piece = r;
      if (r->begin < from) {
        if (json_) return std::nullopt;  // not a message boundary: storage answers 400
        piece = slice(r, from);
      }
      if (!out.records.empty() && used + piece->bytes.size() > max_bytes) {
        truncated = true;
        break;
      }
      used += piece->bytes.size();
      out.next = piece->end;
      out.records.push_back(std::move(piece));
      if (used >= max_bytes) {
        truncated = true;
        break;
      }
    }
    // The buffer holds every record of the stream from its oldest on, so
    // past the last one there is nothing but the tail (on S2, control
    // records such as a close take offsets too).
    if (!truncated) out.next = tail_;
    out.up_to_date = out.next >= tail_;
    accessed_ms_ = now;  // the caller renews the TTL (StreamStore::touch)
    idle_since_ = std::chrono::steady_clock::now();  // in use, though nobody waits
    return out;
  }

  std::unique_ptr<WatchHandle> watch;

 private:
  /// The first buffered record that ends after `from`.
  std::deque<RecordPtr>::const_iterator first_after_locked(Offset from) const DS_REQUIRES(mu_) {
    return std::partition_point(buffer_.begin(), buffer_.end(),
                                [&](const RecordPtr& r) { return r->end <= from; });
  }

  /// The part of `r` from `from` on (`from` inside it).
  static RecordPtr slice(const RecordPtr& r, Offset from) {
    auto part = std::make_shared<Record>();
    part->begin = from;
    part->end = r->end;
    part->bytes = r->bytes.substr(from.lo - r->begin.lo);
    return part;
  }

  std::optional<Wake> evaluate_locked(Offset from) const DS_REQUIRES(mu_) {
    if (gone_) return Wake{Wake::Kind::gone, {}, tail_, closed_};
    if (from >= tail_) {
      if (closed_) return Wake{Wake::Kind::closed, {}, tail_, true};
      return std::nullopt;  // park: nothing new yet
    }
    // A stream with retention is read from storage, which alone knows its
    // earliest offset: the buffer may hold what retention removed, and on S2
    // a read session that fell behind a trim resumes after the trimmed range,
    // leaving a hole in the buffer. (LiveHubs::read_buffered's callers skip
    // the buffer for these streams too.)
    if (meta_ && meta_->config.has_retention())
      return Wake{Wake::Kind::catch_up, {}, tail_, closed_};
    // Data exists after `from`: serve it from the buffer if the buffer reaches back that far.
    Offset oldest = buffer_.empty() ? tail_ : buffer_.front()->begin;
    if (from < oldest) return Wake{Wake::Kind::catch_up, {}, tail_, closed_};
    Wake wake{Wake::Kind::data, {}, tail_, closed_};
    const auto first = first_after_locked(from);
    wake.records.reserve(static_cast<size_t>(buffer_.end() - first));
    for (auto it = first; it != buffer_.end(); ++it) {
      wake.records.push_back((*it)->begin < from ? slice(*it, from) : *it);
    }
    return wake;
  }

  const size_t buffer_limit_;
  const Clock& clock_;
  mutable Mutex mu_;
  bool initialized_ DS_GUARDED_BY(mu_) = false;
  bool gone_ DS_GUARDED_BY(mu_) = false;
  bool retired_ DS_GUARDED_BY(mu_) = false;  ///< reaped, takes no waiters
  bool closed_ DS_GUARDED_BY(mu_) = false;
  Offset tail_ DS_GUARDED_BY(mu_);
  std::deque<RecordPtr> buffer_ DS_GUARDED_BY(mu_);
  size_t buffered_ DS_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<Waiter>> waiters_ DS_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point idle_since_ DS_GUARDED_BY(mu_) =
      std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_data_ DS_GUARDED_BY(mu_){};
  std::optional<StreamMeta> meta_ DS_GUARDED_BY(mu_);  ///< from remember()
  bool json_ DS_GUARDED_BY(mu_) = false;               ///< meta_ is a JSON stream's
  int64_t accessed_ms_ DS_GUARDED_BY(mu_) = 0;         ///< last access this hub saw (ms)
};

bool Waiter::fire(Wake w) {
  {
    MutexLock lock(mu_);
    if (done_) return false;
    done_ = true;
  }
  // Once done_ is set, fn_ is this call's alone (cancel() no longer touches it).
  on_wake(std::move(w));
  return true;
}

void Waiter::on_wake(Wake w) {
  std::function<void(Wake)> fn = std::move(fn_);
  fn(std::move(w));
}

bool Waiter::cancel() {
  {
    MutexLock lock(mu_);
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
    MutexLock lock(mu_);
    hubs.swap(hubs_);
  }
  for (auto& [path, hub] : hubs) hub->watch.reset();
}

std::shared_ptr<Hub> LiveHubs::hub_for(const std::string& path) {
  std::shared_ptr<Hub> stale;
  std::shared_ptr<Hub> hub;
  {
    MutexLock lock(mu_);
    auto it = hubs_.find(path);
    if (it != hubs_.end()) {
      if (!it->second->gone() && !it->second->retired()) return it->second;
      stale = std::move(it->second);  // a deleted stream's hub; the path may hold a new stream
      hubs_.erase(it);
    }
    hub = std::make_shared<Hub>(options_.buffer_bytes, next_hub_id_++, *options_.clock);
    std::weak_ptr<Hub> weak = hub;
    hub->watch = store_.watch(path, [weak](const CommitEvent& ev) {
      if (auto h = weak.lock()) h->on_event(ev);
    });
    hubs_.emplace(path, hub);
  }
  if (stale) stale->watch.reset();  // outside mu_, like reap()
  // The stream's metadata, so the hub can answer live reads behind the tail
  // (read_buffered) without waiting for a reader's storage read to teach it:
  // one head per hub, read after the watch was registered (see remember).
  std::weak_ptr<Hub> weak = hub;
  store_.head(path, [weak](Result<StreamMeta> meta) {
    if (!meta) return;
    if (auto h = weak.lock()) h->remember(*meta, meta->last_access_ms);
  });
  return hub;
}

std::shared_ptr<Waiter> LiveHubs::wait(const std::string& path, Offset from,
                                       std::function<void(Wake)> wake) {
  auto waiter = std::make_shared<Waiter>(from, std::move(wake));
  wait(path, waiter);
  return waiter;
}

void LiveHubs::wait(const std::string& path, const std::shared_ptr<Waiter>& waiter) {
  // A hub retired by reap() between hub_for() and add() takes no waiters; the
  // next hub_for() then makes a fresh one.
  while (!hub_for(path)->add(waiter)) {
  }
}

void LiveHubs::reap() {
  std::vector<std::shared_ptr<Hub>> dead;
  {
    MutexLock lock(mu_);
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
  auto hub = find(path);
  if (!hub) return false;
  return std::chrono::steady_clock::now() - hub->last_data() < window;
}

std::shared_ptr<Hub> LiveHubs::find(const std::string& path) const {
  MutexLock lock(mu_);
  auto it = hubs_.find(path);
  return it == hubs_.end() ? nullptr : it->second;
}

uint64_t LiveHubs::hub_id(const std::string& path) const {
  auto hub = find(path);
  return hub ? hub->id : 0;
}

void LiveHubs::remember(const std::string& path, uint64_t id, const StreamMeta& meta) {
  if (id == 0) return;
  auto hub = find(path);
  if (hub && hub->id == id) hub->remember(meta, options_.clock->now_ms());  // the read renewed it
}

std::optional<ReadOutcome> LiveHubs::read_buffered(const std::string& path, Offset from,
                                                   size_t max_bytes) {
  auto hub = find(path);
  if (!hub) return std::nullopt;
  auto out = hub->read_buffered(from, max_bytes);
  if (out) buffered_reads_.fetch_add(1, std::memory_order_relaxed);
  return out;
}

size_t LiveHubs::hub_count() const {
  MutexLock lock(mu_);
  return hubs_.size();
}

}  // namespace ds
