#include "server/parking.h"

#include <algorithm>
#include <array>
#include <map>

namespace ds::http_server {

using SteadyClock = std::chrono::steady_clock;

// ------------------------------------------------------------------ one stream's lot

namespace {

using live::chunk_size_line;
using live::kCrlf;
using live::kKeepAlive;
using live::kLastChunk;

using Parts = std::array<asio::const_buffer, 5>;

/// The unwritten tail of a gather write.
std::string rest_of(const Parts& parts, size_t written) {
  std::string rest;
  for (const auto& p : parts) {
    if (written >= p.size()) {
      written -= p.size();
      continue;
    }
    rest.append(static_cast<const char*>(p.data()) + written, p.size() - written);
    written = 0;
  }
  return rest;
}

bool would_block(const beast::error_code& ec) {
  return ec == asio::error::would_block || ec == asio::error::try_again;
}

void close_socket(tcp::socket& socket) {
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
}

}  // namespace

DetachedCount::DetachedCount(Context& shared, metrics::Gauge& gauge)
    : sessions_(shared.stop_signals.sessions), gauge_(gauge) {
  sessions_.fetch_add(1);
  gauge_.inc();
}

DetachedCount::~DetachedCount() {
  gauge_.dec();
  sessions_.fetch_sub(1);
}

void log_detached_end(Context& shared, const Exchange& ex, std::string_view name) {
  std::string path = "/v1/stream/";
  path.append(name);
  log_exchange(shared, ex, "GET", path, 0);
}

class SseLot : public std::enable_shared_from_this<SseLot> {
 public:
  SseLot(ParkingLot& lot, std::string name)
      : lot_(lot),
        ctx_(lot.shared_),
        name_(std::move(name)),
        strand_(asio::make_strand(lot.ex_)),
        timer_(strand_) {}

  /// park() calls on their way to the strand (the lot is kept meanwhile).
  std::atomic<size_t> arriving{0};

  /// On the strand.
  bool empty() const { return count_ == 0; }

  template <class Reader>
  void add(std::unique_ptr<Reader> r) {
    asio::post(strand_, [self = shared_from_this(), r = std::move(r)]() mutable {
      self->insert(std::move(r));
      self->arriving.fetch_sub(1);
      self->lot_.release(self);
    });
  }

  void stop() {
    asio::post(strand_, [self = shared_from_this()] {
      self->stopping_ = true;
      self->timer_.cancel();
      auto buckets = std::move(self->buckets_);
      self->buckets_.clear();
      for (auto& [at, b] : buckets) self->forget(b.readers.size());
      self->count_ = 0;
      for (auto& [at, b] : buckets) {
        if (b.waiter) b.waiter->cancel();
        for (auto& r : b.readers) self->end_with_position(*r);
        for (auto& r : b.polls) self->answer(std::move(r), std::nullopt);
      }
      self->lot_.release(self);
    });
  }

  /// On the strand, when the lot is dropped.
  void cancel_timer() { timer_.cancel(); }

 private:
  struct Bucket {
    std::vector<std::unique_ptr<ParkedSse>> readers;
    std::vector<std::unique_ptr<ParkedLongPoll>> polls;
    std::shared_ptr<Waiter> waiter;
    bool empty() const { return readers.empty() && polls.empty(); }
  };

  void insert(std::unique_ptr<ParkedSse> r) {
    if (stopping_ || ctx_.stopping) {
      end_with_position(*r);
      return;
    }
    ++count_;
    lot_.parked_.fetch_add(1);
    const Offset at = r->st.at;
    schedule_timer(due(r->st));
    auto& b = buckets_[at];
    b.readers.push_back(std::move(r));
    if (!b.waiter) watch(at, b);
  }

  /// `n` SSE readers left.
  void forget(size_t n) {
    count_ -= n;
    lot_.parked_.fetch_sub(n);
  }

  void insert(std::unique_ptr<ParkedLongPoll> r) {
    if (stopping_ || ctx_.stopping) {
      answer(std::move(r), std::nullopt);
      return;
    }
    ++count_;
    const Offset at = r->st.at;
    schedule_timer(r->st.deadline);
    auto& b = buckets_[at];
    b.polls.push_back(std::move(r));
    if (!b.waiter) watch(at, b);
  }

  /// Hands a long-poll back to a coroutine to answer.
  void answer(std::unique_ptr<ParkedLongPoll> r, std::optional<Wake> wake) {
    resume_long_poll(ctx_, name_, std::move(r), std::move(wake));
  }

  /// Registers the bucket's hub waiter: one per offset, however many readers.
  void watch(Offset at, Bucket& b) {
    std::weak_ptr<SseLot> weak = weak_from_this();
    auto strand = strand_;
    b.waiter = ctx_.hubs.wait(name_, at, [weak, strand, at](Wake w) {
      asio::post(strand, [weak, at, w = std::move(w)]() mutable {
        if (auto self = weak.lock()) self->on_wake(at, std::move(w));
      });
    });
  }

  /// Takes the bucket at `at` out of the lot (its waiter cancelled).
  Bucket take(Offset at) {
    auto it = buckets_.find(at);
    if (it == buckets_.end()) return {};
    Bucket b = std::move(it->second);
    if (b.waiter) b.waiter->cancel();
    buckets_.erase(it);
    count_ -= b.readers.size() + b.polls.size();
    lot_.parked_.fetch_sub(b.readers.size());
    return b;
  }

  void on_wake(Offset at, Wake w) {
    auto bucket = take(at);
    for (auto& r : bucket.polls) answer(std::move(r), w);
    auto& readers = bucket.readers;
    if (!readers.empty() && w.kind == Wake::Kind::data) {
      deliver(std::move(readers), at, w);
    } else {
      // Closed, gone or behind the hub's buffer: each reader steps alone.
      for (auto& r : readers) {
        std::string out;
        const auto next = live::sse_on_wake(r->st, ctx_.clock, w, out);
        if (next == live::SseNext::end) {
          finish(*r, out);
        } else {
          std::string pending;
          live::append_chunk(pending, out);
          unpark(std::move(r), std::move(pending), std::nullopt);
        }
      }
    }
    lot_.release(shared_from_this());
  }

  /// New records for readers all at `at` (all caught up, none holding bytes
  /// back): one data event for all, a control event each (shared by readers
  /// that sent the same cursor).
  void deliver(std::vector<std::unique_ptr<ParkedSse>> readers, Offset at, const Wake& w) {
    auto job = std::make_shared<Delivery>();
    const bool json = readers.front()->st.json;
    const bool base64 = readers.front()->st.base64;
    if (!live::sse_broadcast(w, at, json, base64, job->cast)) {
      // A character split across appends: coroutines hold it back per reader.
      for (auto& r : readers) unpark(std::move(r), {}, w);
      return;
    }
    // Control events: one per distinct client cursor (usually one for all).
    std::vector<Addressed> all;
    all.reserve(readers.size());
    std::string cursor_in;
    const live::SseRead* first = nullptr;  // of the readers that sent cursor_in
    for (auto& r : readers) {
      if (!first || r->st.cursor != cursor_in) {
        cursor_in = r->st.cursor;
        job->controls.emplace_back();
        live::sse_on_broadcast(r->st, ctx_.clock, job->cast, job->controls.back());
        first = &r->st;
      } else {
        live::sse_share_broadcast(r->st, *first, job->cast);
      }
      all.push_back({std::move(r), job->controls.size() - 1});
    }
    // Many readers: the writes are split across the fan-out strands (one per
    // event-loop thread), so one stream's fan-out uses every core. Readers
    // that stay come back here to park again.
    const auto& helpers = lot_.fanout_;
    const size_t parts = all.size() >= kParallelFanout ? helpers.size() + 1 : 1;
    const size_t per = (all.size() + parts - 1) / parts;
    for (size_t i = 1; i < parts && i * per < all.size(); ++i) {
      auto first = all.begin() + static_cast<std::ptrdiff_t>(i * per);
      auto last = all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), (i + 1) * per));
      std::vector<Addressed> part(std::make_move_iterator(first), std::make_move_iterator(last));
      arriving.fetch_add(1);  // they come back: keep the lot
      asio::post(helpers[i - 1],
                 [self = shared_from_this(), job, part = std::move(part)]() mutable {
                   auto stay = self->write_all(*job, std::move(part));
                   asio::post(self->strand_, [self, stay = std::move(stay)]() mutable {
                     for (auto& r : stay) self->insert(std::move(r));
                     self->arriving.fetch_sub(1);
                     self->lot_.release(self);
                   });
                 });
    }
    all.resize(std::min(all.size(), per));
    for (auto& r : write_all(*job, std::move(all))) insert(std::move(r));
  }

  /// One data event for many readers: what every fan-out part shares.
  struct Delivery {
    live::SseBroadcast cast;
    std::vector<std::string> controls;
  };
  struct Addressed {
    std::unique_ptr<ParkedSse> reader;
    size_t control = 0;  ///< index into Delivery::controls
  };
  static constexpr size_t kParallelFanout = 256;

  /// Writes a delivery to readers; returns those that stay parked. Touches
  /// only the readers (and thread-safe metrics): runs on any strand.
  std::vector<std::unique_ptr<ParkedSse>> write_all(const Delivery& job,
                                                    std::vector<Addressed> readers) {
    std::vector<std::unique_ptr<ParkedSse>> stay;
    stay.reserve(readers.size());
    const auto now = SteadyClock::now();
    for (auto& [r, ctl] : readers) {
      const std::string& control = job.controls[ctl];
      live::ChunkSizeBuf size_buf;
      const auto next = live::sse_next(r->st);
      auto size_line = chunk_size_line(job.cast.data.size() + control.size(), size_buf);
      Parts parts{asio::buffer(size_line), asio::buffer(job.cast.data), asio::buffer(control),
                  asio::buffer(kCrlf),
                  next == live::SseNext::end ? asio::buffer(kLastChunk) : asio::const_buffer()};
      if (!write_or_hand_back(r, parts, now)) continue;
      switch (next) {
        case live::SseNext::end:
          close_socket(r->socket);
          log_detached_end(ctx_, r->st.ex, name_);
          break;
        case live::SseNext::read:
          unpark(std::move(r), {}, std::nullopt);
          break;
        case live::SseNext::wait:
          stay.push_back(std::move(r));
          break;
      }
    }
    return stay;
  }

  /// Writes `parts` without blocking. true: all written. Otherwise the reader
  /// is gone (ended) or handed back to a coroutine with the rest to write.
  bool write_or_hand_back(std::unique_ptr<ParkedSse>& r, const Parts& parts,
                          SteadyClock::time_point now) {
    size_t total = 0;
    for (const auto& p : parts) total += p.size();
    beast::error_code ec;
    const size_t n = r->socket.write_some(parts, ec);
    if (ec && !would_block(ec)) {
      close_socket(r->socket);
      log_detached_end(ctx_, r->st.ex, name_);
      r.reset();
      return false;
    }
    const size_t written = ec ? 0 : n;
    sent(*r, written, now);
    if (written < total) {
      unpark(std::move(r), rest_of(parts, written), std::nullopt);
      return false;
    }
    return true;
  }

  void sent(ParkedSse& r, size_t n, SteadyClock::time_point now) {
    if (n == 0) return;
    ctx_.metrics.sent_bytes.inc(n);
    r.st.ex.bytes_out += n;
    r.st.last_write = now;
  }

  /// Hands the reader back to a coroutine.
  void unpark(std::unique_ptr<ParkedSse> r, std::string pending, std::optional<Wake> wake) {
    resume_sse(ctx_, name_, std::move(r), std::move(pending), std::move(wake));
  }

  /// Writes `last` and the terminating chunk (best effort: a parked socket
  /// has room, so it normally takes it all) and ends the response.
  void finish(ParkedSse& r, std::string_view last) {
    live::ChunkSizeBuf size_buf;
    auto size_line = last.empty() ? std::string_view() : chunk_size_line(last.size(), size_buf);
    Parts parts{asio::buffer(size_line), asio::buffer(last),
                last.empty() ? asio::const_buffer() : asio::buffer(kCrlf), asio::buffer(kLastChunk),
                asio::const_buffer()};
    beast::error_code ec;
    size_t n = r.socket.write_some(parts, ec);
    sent(r, ec ? 0 : n, SteadyClock::now());
    close_socket(r.socket);
    log_detached_end(ctx_, r.st.ex, name_);
  }

  /// Shutdown: a last control event with the reader's position, so it
  /// resumes from there on another server, then the end of the body.
  void end_with_position(ParkedSse& r) {
    std::string out;
    live::sse_on_stop(r.st, ctx_.clock, out);
    finish(r, out);
  }

  // ---- keep-alive comments and the end of SSE sessions: one timer per lot.

  SteadyClock::time_point due(const SseState& st) const {
    return std::min(st.session_end, st.last_write + ctx_.options.sse_keepalive);
  }

  void schedule_timer(SteadyClock::time_point due) {
    // Coarse on purpose: one sweep serves every reader due within it.
    due = std::max(due, SteadyClock::now() + kSweepGranularity);
    if (timer_armed_ && due >= timer_due_) return;
    timer_due_ = due;
    timer_armed_ = true;
    timer_.expires_at(due);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return;  // re-armed earlier, or stopping
      self->timer_armed_ = false;
      self->sweep();
    });
  }

  void sweep() {
    const auto now = SteadyClock::now();
    std::vector<std::unique_ptr<ParkedSse>> out;  // leaving the lot
    std::vector<bool> ending;                     // per `out`: session over (else keep-alive due)
    std::vector<std::unique_ptr<ParkedLongPoll>> timed_out;
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      auto& polls = it->second.polls;
      for (size_t i = 0; i < polls.size();) {
        if (now >= polls[i]->st.deadline) {
          timed_out.push_back(std::move(polls[i]));
          polls[i] = std::move(polls.back());
          polls.pop_back();
          continue;
        }
        ++i;
      }
      auto& readers = it->second.readers;
      for (size_t i = 0; i < readers.size();) {
        auto& r = *readers[i];
        const bool over = now >= r.st.session_end;
        if (over || now - r.st.last_write >= ctx_.options.sse_keepalive) {
          out.push_back(std::move(readers[i]));
          ending.push_back(over);
          readers[i] = std::move(readers.back());
          readers.pop_back();
          continue;
        }
        ++i;
      }
      if (it->second.empty()) {
        if (it->second.waiter) it->second.waiter->cancel();
        it = buckets_.erase(it);
      } else {
        ++it;
      }
    }
    forget(out.size());
    count_ -= timed_out.size();
    for (auto& r : timed_out) answer(std::move(r), std::nullopt);
    for (size_t i = 0; i < out.size(); ++i) {
      if (ending[i]) {
        finish(*out[i], {});
        continue;
      }
      live::ChunkSizeBuf size_buf;
      auto size_line = chunk_size_line(kKeepAlive.size(), size_buf);
      Parts parts{asio::buffer(size_line), asio::buffer(kKeepAlive), asio::buffer(kCrlf),
                  asio::const_buffer(), asio::const_buffer()};
      if (write_or_hand_back(out[i], parts, now)) insert(std::move(out[i]));
    }
    // Re-arm for the readers that stayed.
    std::optional<SteadyClock::time_point> next;
    for (const auto& [at, b] : buckets_) {
      for (const auto& r : b.readers) next = next ? std::min(*next, due(r->st)) : due(r->st);
      for (const auto& r : b.polls) next = next ? std::min(*next, r->st.deadline) : r->st.deadline;
    }
    if (next) schedule_timer(*next);
    lot_.release(shared_from_this());
  }

  static constexpr auto kSweepGranularity = std::chrono::milliseconds(250);

  ParkingLot& lot_;
  Context& ctx_;
  const std::string name_;
  asio::strand<asio::any_io_executor> strand_;
  asio::steady_timer timer_;
  bool timer_armed_ = false;
  SteadyClock::time_point timer_due_;
  bool stopping_ = false;
  size_t count_ = 0;
  std::map<Offset, Bucket> buckets_;
};

// ------------------------------------------------------------------ the lot of lots

ParkingLot::ParkingLot(Context& shared, asio::any_io_executor ex, unsigned threads)
    : shared_(shared), ex_(std::move(ex)) {
  for (unsigned i = 1; i < threads; ++i) fanout_.push_back(asio::make_strand(ex_));
  on_stop_.emplace(shared.stop_signals, [this] { stop_all(); });
}

ParkingLot::~ParkingLot() = default;

std::shared_ptr<SseLot> ParkingLot::lot_for(const std::string& name) {
  MutexLock lock(mu_);
  auto& lot = lots_[name];
  if (!lot) lot = std::make_shared<SseLot>(*this, name);
  lot->arriving.fetch_add(1);
  return lot;
}

void ParkingLot::park(const std::string& name, std::unique_ptr<ParkedSse> reader) {
  beast::error_code ec;
  reader->socket.non_blocking(true, ec);
  lot_for(name)->add(std::move(reader));
}

void ParkingLot::park(const std::string& name, std::unique_ptr<ParkedLongPoll> reader) {
  lot_for(name)->add(std::move(reader));
}

void ParkingLot::release(const std::shared_ptr<SseLot>& lot) {
  if (!lot->empty()) return;
  MutexLock lock(mu_);
  if (lot->arriving.load() != 0) return;
  for (auto it = lots_.begin(); it != lots_.end(); ++it) {
    if (it->second == lot) {
      lot->cancel_timer();
      lots_.erase(it);
      return;
    }
  }
}

void ParkingLot::stop_all() {
  std::vector<std::shared_ptr<SseLot>> lots;
  {
    MutexLock lock(mu_);
    for (auto& [name, lot] : lots_) lots.push_back(lot);
  }
  for (auto& lot : lots) lot->stop();
}

}  // namespace ds::http_server
