#include "server/parking.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/bind_allocator.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "server/parked_memory.h"

namespace ds::http_server {

using SteadyClock = std::chrono::steady_clock;

// ------------------------------------------------------------------ one stream's lot

namespace {

using live::chunk_size_line;
using live::kCrlf;
using live::kKeepAlive;
using live::kLastChunk;

using Parts = std::array<asio::const_buffer, 5>;

// ---- what a parked reader costs
//
// A parked reader is idle for seconds to minutes and there may be tens of
// thousands: the lot keeps each in a compact form of its own, not the
// ParkedSse/ParkedLongPoll the coroutines hand over. No Asio socket (its
// epoll registration, descriptor state and the per-connection strand of its
// executor were ~370 of ~900 bytes; the socket is a plain non-blocking
// descriptor here, written with sendmsg and registered again when a
// coroutine takes the reader back), and the exchange's strings (request id,
// Origin, remote address) with a long-poll's cursor and content type packed
// inline (PackedText); the entries themselves in blocks of their own
// (SlotPool, server/parked_memory.h). docs/benchmarks.md, "Run to
// completion (issue #12)".

// Every field of Exchange is carried over by ParkedLog below (and back):
// one added to Exchange must be added there too.
static_assert(sizeof(Exchange) == 3 * sizeof(std::string) + 32,
              "Exchange changed: carry the new field through ParkedLog");

/// The exchange of a parked reader: what the access-log line and metrics
/// need at its end, and what a resumed response needs (its Origin).
/// The parts of a ParkedLog's text.
enum ParkedText : size_t { kId, kOrigin, kRemote, kCursor, kContentType };

/// The Exchange a lot entry (ParkedLog, LotSse) keeps in its own fields,
/// rebuilt for the coroutine or the access log.
template <class Entry>
Exchange exchange_of(const Entry& e) {
  Exchange ex;
  ex.id = e.text.get(kId);
  ex.origin = e.text.get(kOrigin);
  ex.remote = e.text.get(kRemote);
  ex.started = e.started;
  ex.mode = e.mode;
  ex.status = e.status;
  ex.bytes_out = e.bytes_out;
  ex.detached = e.detached;
  ex.can_detach = e.can_detach;
  return ex;
}

template <size_t Inline>
struct ParkedLog {
  ParkedLog() = default;
  /// Takes `ex`'s fields; `extra` (a long-poll's cursor, content type)
  /// go into the same block.
  ParkedLog(const Exchange& ex, std::string_view cursor = {}, std::string_view content_type = {})
      : started(ex.started),
        bytes_out(ex.bytes_out),
        status(static_cast<uint16_t>(ex.status)),
        mode(ex.mode),
        detached(ex.detached),
        can_detach(ex.can_detach),
        text{ex.id, ex.origin, ex.remote, cursor, content_type} {}

  Exchange exchange() const { return exchange_of(*this); }

  std::chrono::steady_clock::time_point started;
  uint64_t bytes_out = 0;
  uint16_t status = 0;
  ReadMode mode = ReadMode::none;
  bool detached = false;
  bool can_detach = false;
  PackedText<Inline> text;
};

/// A parked socket: a non-blocking descriptor, no reactor registration.
/// Just the descriptor (4 bytes, next to an entry's small fields): its
/// address family is asked again when a coroutine takes it back.
struct ParkedFd {
  ParkedFd() = default;
  /// Takes the descriptor out of `s` (which has no operation pending).
  explicit ParkedFd(tcp::socket& s) {
    beast::error_code ec;
    fd = s.release(ec);
    if (ec) {
      s.close(ec);
      fd = -1;
      return;
    }
    const int flags = ::fcntl(fd, F_GETFL, 0);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  ParkedFd(ParkedFd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  ParkedFd& operator=(ParkedFd&& o) noexcept {
    if (this != &o) {
      close();
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  ~ParkedFd() { close(); }

  /// Writes what it takes without blocking: bytes written, or an error
  /// (would_block when it takes nothing).
  size_t write_some(const std::array<asio::const_buffer, 5>& parts, beast::error_code& ec) {
    ec = {};
    std::array<iovec, 5> iov{};
    int n = 0;
    for (const auto& p : parts) {
      if (p.size() == 0) continue;
      iov[n].iov_base = const_cast<void*>(p.data());
      iov[n].iov_len = p.size();
      ++n;
    }
    if (fd < 0) {
      ec = asio::error::bad_descriptor;
      return 0;
    }
    if (n == 0) return 0;
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = static_cast<size_t>(n);
    for (;;) {
      const ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
      if (w >= 0) return static_cast<size_t>(w);
      if (errno == EINTR) continue;
      ec = beast::error_code(errno, asio::error::get_system_category());
      return 0;
    }
  }

  /// Ends the connection: FIN after what was written, then close.
  void shutdown_and_close() {
    if (fd < 0) return;
    ::shutdown(fd, SHUT_WR);
    close();
  }

  /// A socket on the event loop `loop`, for a coroutine to go on with
  /// (closed when the reactor refuses the descriptor). On the loop's own
  /// executor, as accepted connections are: no strand (one thread runs the
  /// loop), and nothing that answers Asio's property queries from the heap.
  tcp::socket take(const asio::io_context::executor_type& loop) {
    tcp::socket s(loop);
    if (fd < 0) return s;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    const bool v6 = ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
                    addr.ss_family == AF_INET6;
    beast::error_code ec;
    s.assign(v6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      close();
      return s;
    }
    fd = -1;
    return s;
  }

  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  int fd = -1;
};
static_assert(sizeof(ParkedFd) == 4);

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

}  // namespace

namespace {
/// A time as milliseconds after a base (the request's start), in 32 bits:
/// up to 49.7 days, later times are clamped to that (a session with a longer
/// --sse-max-duration ends there while parked, and the client resumes from
/// its last control event, as at any session's end).
/// `up`: rounded up (a deadline never comes early), else down.
uint32_t ms_after(SteadyClock::time_point base, SteadyClock::time_point t, bool up) {
  if (t <= base) return 0;
  const auto d = t - base;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d);
  if (up && ms < d) ++ms;
  return static_cast<uint32_t>(std::min<int64_t>(ms.count(), UINT32_MAX));
}
SteadyClock::time_point at_ms(SteadyClock::time_point base, uint32_t ms) {
  return base + std::chrono::milliseconds(ms);
}
}  // namespace

/// A parked SSE reader as the lot keeps it (see "what a parked reader
/// costs" above): ParkedSse less the socket object, the exchange's strings
/// and the live-read state's held-back bytes (a reader parks only with none:
/// stream_sse.cc's can_park). Flat, with the cursor inline (ShortText), the
/// session's times as 32-bit offsets from the request's start and the small
/// fields together: 152 bytes, where ParkedSse's members one by one took 184
/// (a 192-byte slot) and a bucket vector's slot more.
struct LotSse {
  static void* operator new(size_t n);
  static void operator delete(void* p);

  LotSse(Context& shared, ParkedSse&& r)
      : at(r.st.at),
        cursor(r.st.cursor),
        started(r.st.ex.started),
        bytes_out(r.st.ex.bytes_out),
        slot(std::move(r.st.slot)),
        count(shared, shared.metrics.open_sse),
        session_end_ms(ms_after(started, r.st.session_end, true)),
        last_write_ms(ms_after(started, r.st.last_write, false)),
        sock(r.socket),
        mode(r.st.ex.mode),
        status(static_cast<uint16_t>(r.st.ex.status)),
        base64(r.st.base64),
        json(r.st.json),
        up_to_date(r.st.up_to_date),
        ended(r.st.ended),
        detached(r.st.ex.detached),
        can_detach(r.st.ex.can_detach),
        // SSE: no Origin kept (stream_sse.cc)
        text{r.st.ex.id, r.st.ex.origin, r.st.ex.remote} {}

  // live::SseRead with nothing held back (read() and keep()).
  Offset at;
  ShortText cursor;
  // The exchange (exchange()).
  SteadyClock::time_point started;
  uint64_t bytes_out = 0;
  LotSse* next = nullptr;  ///< in its bucket (EntryList)
  live::ReaderLimits::Slot slot;
  DetachedCount count;
  uint32_t session_end_ms = 0;  ///< after `started`
  uint32_t last_write_ms = 0;   ///< after `started`
  ParkedFd sock;
  ReadMode mode = ReadMode::none;
  uint16_t status = 0;
  bool base64 = false;
  bool json = false;
  bool up_to_date = false;
  bool ended = false;
  bool detached = false;
  bool can_detach = false;
  PackedText<40> text;  ///< id, Origin, remote address

  SteadyClock::time_point session_end() const { return at_ms(started, session_end_ms); }
  SteadyClock::time_point last_write() const { return at_ms(started, last_write_ms); }
  void wrote_at(SteadyClock::time_point now) { last_write_ms = ms_after(started, now, false); }

  Exchange exchange() const { return exchange_of(*this); }

  /// The live-read state, for a step of the machine.
  live::SseRead read() const {
    live::SseRead st;
    st.at = at;
    st.cursor = cursor.view();
    st.base64 = base64;
    st.json = json;
    st.up_to_date = up_to_date;
    st.ended = ended;
    return st;
  }
  /// Takes the state back after a step that held nothing back.
  void keep(const live::SseRead& st) {
    at = st.at;
    if (st.cursor != cursor.view()) cursor.assign(st.cursor);
    up_to_date = st.up_to_date;
    ended = st.ended;
  }
  live::SseNext next_step() const {
    live::SseRead st;
    st.up_to_date = up_to_date;
    st.ended = ended;
    return live::sse_next(st);
  }
};

/// A parked long-poll as the lot keeps it.
struct LotPoll {
  static void* operator new(size_t n);
  static void operator delete(void* p);

  LotPoll(Context& shared, ParkedLongPoll&& r)
      : at(r.st.at),
        start(r.st.start),
        stream_id(r.st.stream_id),
        deadline(r.st.deadline),
        sock(r.socket),
        version(static_cast<uint16_t>(r.st.version)),
        keep_alive(r.st.keep_alive),
        log(r.st.ex, r.st.cursor, r.st.content_type),
        slot(std::move(r.st.slot)),
        count(shared, shared.metrics.parked_long_polls) {}
  Offset at;
  Offset start;
  uint64_t stream_id = 0;
  std::chrono::steady_clock::time_point deadline;
  ParkedFd sock;
  uint16_t version = 11;
  bool keep_alive = true;
  ParkedLog<64> log;
  LotPoll* next = nullptr;  ///< in its bucket (EntryList)
  live::ReaderLimits::Slot slot;
  DetachedCount count;
};

// What the lot's blocks hold per reader (SlotPool rounds to 8).
static_assert(sizeof(void*) != 8 || sizeof(LotSse) <= 152, "a parked SSE reader grew");
static_assert(sizeof(void*) != 8 || sizeof(LotPoll) <= 200, "a parked long-poll grew");

void* LotSse::operator new(size_t n) {
  (void)n;
  return SlotPool<sizeof(LotSse)>::get();
}
void LotSse::operator delete(void* p) { SlotPool<sizeof(LotSse)>::put(p); }
void* LotPoll::operator new(size_t n) {
  (void)n;
  return SlotPool<sizeof(LotPoll)>::get();
}
void LotPoll::operator delete(void* p) { SlotPool<sizeof(LotPoll)>::put(p); }

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
  SseLot(ParkingLot& lot, std::string name, size_t loop)
      : lot_(lot),
        loop_(loop),
        ctx_(*lot.loops_[loop].ctx),
        name_(std::move(name)),
        strand_(asio::make_strand(lot.loops_[loop].ex)),
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
        while (auto r = b.readers.pop_front()) self->end_with_position(*r);
        while (auto r = b.polls.pop_front()) self->answer(std::move(r), std::nullopt);
      }
      self->lot_.release(self);
    });
  }

  /// On the strand, when the lot is dropped.
  void cancel_timer() { timer_.cancel(); }

 private:
  struct Bucket {
    EntryList<LotSse> readers;
    EntryList<LotPoll> polls;
    std::shared_ptr<Waiter> waiter;
    bool empty() const { return readers.empty() && polls.empty(); }
  };

  void insert(std::unique_ptr<LotSse> r) {
    if (stopping_ || ctx_.stopping) {
      end_with_position(*r);
      return;
    }
    ++count_;
    lot_.parked_.fetch_add(1);
    const Offset at = r->at;
    schedule_timer(due(*r));
    auto& b = buckets_[at];
    b.readers.push_back(std::move(r));
    if (!b.waiter) watch(at, b);
  }

  /// `n` SSE readers left.
  void forget(size_t n) {
    count_ -= n;
    lot_.parked_.fetch_sub(n);
  }

  void insert(std::unique_ptr<LotPoll> r) {
    if (stopping_ || ctx_.stopping) {
      answer(std::move(r), std::nullopt);
      return;
    }
    ++count_;
    const Offset at = r->at;
    schedule_timer(r->deadline);
    auto& b = buckets_[at];
    b.polls.push_back(std::move(r));
    if (!b.waiter) watch(at, b);
  }

  /// Hands a long-poll back to a coroutine to answer.
  void answer(std::unique_ptr<LotPoll> r, std::optional<Wake> wake) {
    LongPollState st;
    st.at = r->at;
    st.start = r->start;
    st.stream_id = r->stream_id;
    st.content_type = r->log.text.get(kContentType);
    st.cursor = r->log.text.get(kCursor);
    st.version = r->version;
    st.keep_alive = r->keep_alive;
    st.deadline = r->deadline;
    st.ex = r->log.exchange();
    st.slot = std::move(r->slot);
    auto back = std::make_unique<ParkedLongPoll>(ctx_, r->sock.take(loop_ex()), std::move(st));
    r.reset();
    resume_long_poll(ctx_, name_, std::move(back), std::move(wake));
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
    while (auto r = bucket.polls.pop_front()) answer(std::move(r), w);
    auto& readers = bucket.readers;
    if (!readers.empty() && w.kind == Wake::Kind::data) {
      deliver(std::move(readers), at, w);
    } else {
      // Closed, gone or behind the hub's buffer: each reader steps alone.
      while (auto r = readers.pop_front()) {
        std::string out;
        auto st = r->read();
        const auto next = live::sse_on_wake(st, ctx_.clock, w, out);
        if (next == live::SseNext::end) {
          finish(*r, out);
        } else {
          std::string pending;
          live::append_chunk(pending, out);
          unpark(std::move(r), std::move(pending), std::nullopt, &st);
        }
      }
    }
    lot_.release(shared_from_this());
  }

  /// New records for readers all at `at` (all caught up, none holding bytes
  /// back): one data event for all, a control event each (shared by readers
  /// that sent the same cursor).
  void deliver(EntryList<LotSse> readers, Offset at, const Wake& w) {
    auto job = std::make_shared<Delivery>();
    const bool json = readers.front()->json;
    const bool base64 = readers.front()->base64;
    if (!live::sse_broadcast(w, at, json, base64, job->cast)) {
      // A character split across appends: coroutines hold it back per reader.
      while (auto r = readers.pop_front()) unpark(std::move(r), {}, w);
      return;
    }
    // Control events: one per distinct client cursor (usually one for all).
    std::vector<Addressed> all;
    all.reserve(readers.size());
    std::string cursor_in;
    bool have_first = false;
    live::SseRead first;  // after its step: the first reader that sent cursor_in
    while (auto r = readers.pop_front()) {
      auto st = r->read();
      if (!have_first || st.cursor != cursor_in) {
        cursor_in = st.cursor;
        job->controls.emplace_back();
        live::sse_on_broadcast(st, ctx_.clock, job->cast, job->controls.back());
        first.cursor = st.cursor;
        have_first = true;
      } else {
        live::sse_share_broadcast(st, first, job->cast);
      }
      r->keep(st);
      all.push_back({std::move(r), job->controls.size() - 1});
    }
    // Many readers: the writes are split across the event loops (the other
    // loops each take a part), so one stream's fan-out uses every core.
    // Readers that stay come back here to park again.
    const auto& loops = lot_.loops_;
    const size_t parts = all.size() >= kParallelFanout ? loops.size() : 1;
    const size_t per = (all.size() + parts - 1) / parts;
    for (size_t i = 1; i < parts && i * per < all.size(); ++i) {
      auto first = all.begin() + static_cast<std::ptrdiff_t>(i * per);
      auto last = all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), (i + 1) * per));
      std::vector<Addressed> part(std::make_move_iterator(first), std::make_move_iterator(last));
      arriving.fetch_add(1);  // they come back: keep the lot (in the lots' map)
      // Another loop's queue holds only a weak reference: if the server is
      // torn down with this queued, the lot (its timer on this loop) must not
      // end there. Meanwhile `arriving` keeps it alive in the map.
      asio::post(loops[(loop_ + i) % loops.size()].ex,
                 [weak = weak_from_this(), job, part = std::move(part)]() mutable {
                   auto self = weak.lock();
                   if (!self) return;
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
    std::unique_ptr<LotSse> reader;
    size_t control = 0;  ///< index into Delivery::controls
  };
  static constexpr size_t kParallelFanout = 256;

  /// Writes a delivery to readers; returns those that stay parked. Touches
  /// only the readers (and thread-safe metrics): runs on any strand.
  std::vector<std::unique_ptr<LotSse>> write_all(const Delivery& job,
                                                 std::vector<Addressed> readers) {
    std::vector<std::unique_ptr<LotSse>> stay;
    stay.reserve(readers.size());
    const auto now = SteadyClock::now();
    for (auto& [r, ctl] : readers) {
      const std::string& control = job.controls[ctl];
      live::ChunkSizeBuf size_buf;
      const auto next = r->next_step();
      auto size_line = chunk_size_line(job.cast.data.size() + control.size(), size_buf);
      Parts parts{asio::buffer(size_line), asio::buffer(job.cast.data), asio::buffer(control),
                  asio::buffer(kCrlf),
                  next == live::SseNext::end ? asio::buffer(kLastChunk) : asio::const_buffer()};
      if (!write_or_hand_back(r, parts, now)) continue;
      switch (next) {
        case live::SseNext::end:
          r->sock.shutdown_and_close();
          log_detached_end(ctx_, r->exchange(), name_);
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
  bool write_or_hand_back(std::unique_ptr<LotSse>& r, const Parts& parts,
                          SteadyClock::time_point now) {
    size_t total = 0;
    for (const auto& p : parts) total += p.size();
    beast::error_code ec;
    const size_t n = r->sock.write_some(parts, ec);
    if (ec && !would_block(ec)) {
      r->sock.shutdown_and_close();
      log_detached_end(ctx_, r->exchange(), name_);
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

  void sent(LotSse& r, size_t n, SteadyClock::time_point now) {
    if (n == 0) return;
    ctx_.metrics.sent_bytes.inc(n);
    r.bytes_out += n;
    r.wrote_at(now);
  }

  /// Hands the reader back to a coroutine. `read`: its live-read state after
  /// a step that may hold bytes back (else the kept one).
  void unpark(std::unique_ptr<LotSse> r, std::string pending, std::optional<Wake> wake,
              live::SseRead* read = nullptr) {
    SseState st;
    static_cast<live::SseRead&>(st) = read ? std::move(*read) : r->read();
    st.session_end = r->session_end();
    st.last_write = r->last_write();
    st.ex = r->exchange();
    st.slot = std::move(r->slot);
    auto back = std::make_unique<ParkedSse>(ctx_, r->sock.take(loop_ex()), std::move(st));
    r.reset();
    resume_sse(ctx_, name_, std::move(back), std::move(pending), std::move(wake));
  }

  /// Writes `last` and the terminating chunk (best effort: a parked socket
  /// has room, so it normally takes it all) and ends the response.
  void finish(LotSse& r, std::string_view last) {
    live::ChunkSizeBuf size_buf;
    auto size_line = last.empty() ? std::string_view() : chunk_size_line(last.size(), size_buf);
    Parts parts{asio::buffer(size_line), asio::buffer(last),
                last.empty() ? asio::const_buffer() : asio::buffer(kCrlf), asio::buffer(kLastChunk),
                asio::const_buffer()};
    beast::error_code ec;
    size_t n = r.sock.write_some(parts, ec);
    sent(r, ec ? 0 : n, SteadyClock::now());
    r.sock.shutdown_and_close();
    log_detached_end(ctx_, r.exchange(), name_);
  }

  /// Shutdown: a last control event with the reader's position, so it
  /// resumes from there on another server, then the end of the body.
  void end_with_position(LotSse& r) {
    std::string out;
    auto st = r.read();
    live::sse_on_stop(st, ctx_.clock, out);
    r.keep(st);
    finish(r, out);
  }

  // ---- keep-alive comments and the end of SSE sessions: one timer per lot.

  SteadyClock::time_point due(const LotSse& r) const {
    return std::min(r.session_end(), r.last_write() + ctx_.options.sse_keepalive);
  }

  void schedule_timer(SteadyClock::time_point due) {
    // Coarse on purpose: one sweep serves every reader due within it.
    due = std::max(due, SteadyClock::now() + kSweepGranularity);
    if (timer_armed_ && due >= timer_due_) return;
    timer_due_ = due;
    timer_armed_ = true;
    timer_.expires_at(due);
    // The wait is pending while the stream's readers are idle: its operation
    // from SlotPool, not the heap (see PoolAllocator).
    timer_.async_wait(asio::bind_allocator(PoolAllocator<char>(),
                                           [self = shared_from_this()](beast::error_code ec) {
                                             if (ec) return;  // re-armed earlier, or stopping
                                             self->timer_armed_ = false;
                                             self->sweep();
                                           }));
  }

  void sweep() {
    const auto now = SteadyClock::now();
    std::vector<std::unique_ptr<LotSse>> out;  // leaving the lot
    std::vector<bool> ending;                  // per `out`: session over (else keep-alive due)
    std::vector<std::unique_ptr<LotPoll>> timed_out;
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      it->second.polls.take_if(
          [&](const LotPoll& r) { return now >= r.deadline; },
          [&](std::unique_ptr<LotPoll> r) { timed_out.push_back(std::move(r)); });
      it->second.readers.take_if(
          [&](const LotSse& r) {
            return now >= r.session_end() || now - r.last_write() >= ctx_.options.sse_keepalive;
          },
          [&](std::unique_ptr<LotSse> r) {
            ending.push_back(now >= r->session_end());
            out.push_back(std::move(r));
          });
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
      b.readers.for_each([&](const LotSse& r) { next = next ? std::min(*next, due(r)) : due(r); });
      b.polls.for_each(
          [&](const LotPoll& r) { next = next ? std::min(*next, r.deadline) : r.deadline; });
    }
    if (next) schedule_timer(*next);
    lot_.release(shared_from_this());
  }

  static constexpr auto kSweepGranularity = std::chrono::milliseconds(250);

  const asio::io_context::executor_type& loop_ex() const { return lot_.loops_[loop_].ex; }

  ParkingLot& lot_;
  const size_t loop_;  ///< index into lot_.loops_
  /// The context of connections on the lot's loop.
  Context& ctx_;
  const std::string name_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer timer_;
  bool timer_armed_ = false;
  SteadyClock::time_point timer_due_;
  bool stopping_ = false;
  size_t count_ = 0;
  std::map<Offset, Bucket, std::less<Offset>, PoolAllocator<std::pair<const Offset, Bucket>>>
      buckets_;
};

// ------------------------------------------------------------------ the lot of lots

// ---- giving the heap back
//
// Parking a reader frees its coroutine frames, buffers and parser: a burst of
// parks (thousands of readers connecting at once) leaves the heap at its
// in-flight peak, free but resident, which glibc gives back only from its
// top. The lot's entries live in SlotPool blocks, so those free pages hold
// nothing: once the entries in the lot have grown by kTrimAfter since the
// last time, malloc_trim gives them back a moment after the burst (once per
// kTrimDelay at most).

struct ParkingLot::Trim {
  explicit Trim(const asio::io_context::executor_type& ex) : timer(asio::make_strand(ex)) {}
  asio::steady_timer timer;
  std::atomic<bool> armed{false};
  std::atomic<bool> stopped{false};   ///< the server drains: no more trims
  std::atomic<size_t> trimmed_at{0};  ///< entries when last trimmed
  size_t seen = 0;                    ///< entries when the timer was last set (on its strand)
};

namespace {
constexpr size_t kTrimAfter = 1024;
constexpr auto kTrimDelay = std::chrono::milliseconds(500);
size_t lot_entries() {
  return SlotPool<sizeof(LotSse)>::in_use() + SlotPool<sizeof(LotPoll)>::in_use();
}

/// Trims kTrimDelay from now, and again after each trim while the lot is
/// still growing: the last one comes after the burst, when its connections'
/// frames and buffers are all free. On the timer's strand.
void trim_after_delay(const std::shared_ptr<ParkingLot::Trim>& trim) {
  if (trim->stopped.load()) {
    trim->armed.store(false);
    return;
  }
  trim->seen = lot_entries();
  trim->timer.expires_after(kTrimDelay);
  trim->timer.async_wait([trim](beast::error_code ec) {
    if (ec) {
      trim->armed.store(false);
      return;
    }
#ifdef __GLIBC__
    ::malloc_trim(0);
#endif
    const size_t n = lot_entries();
    if (n > trim->seen) {
      trim_after_delay(trim);  // still growing
      return;
    }
    trim->trimmed_at.store(n);
    trim->armed.store(false);
  });
}
}  // namespace

void ParkingLot::trim_soon() {
  const size_t n = lot_entries();
  auto& t = *trim_;
  if (n < t.trimmed_at.load()) t.trimmed_at.store(n);  // fewer now: grow from here
  if (shared_.stopping || n < t.trimmed_at.load() + kTrimAfter || t.armed.exchange(true)) return;
  asio::post(t.timer.get_executor(), [trim = trim_] { trim_after_delay(trim); });
}

namespace {
/// Asio keeps the state of as many descriptors as were ever registered at
/// once (the epoll reactor's pool, never freed). Made during a connect
/// burst, they land among the burst's short-lived frames and pin a page of
/// freed memory each once those are freed. Made here, at start, they lie
/// together and the burst reuses them: `n` sockets opened at once and
/// closed (fewer if descriptors run out; at most an eighth of the limit).
void prewarm_descriptor_states(const asio::io_context::executor_type& ex, size_t n) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    n = std::min<size_t>(n, rl.rlim_cur / 8);
  std::vector<tcp::socket> open;
  open.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    tcp::socket s(ex);
    beast::error_code ec;
    s.open(tcp::v4(), ec);
    if (ec) break;
    open.push_back(std::move(s));
  }
}  // closed: their states go back to the pool
constexpr size_t kPrewarmDescriptors = 512;  // a connect burst of ds-loadgen's 256 and more
}  // namespace

ParkingLot::ParkingLot(Context& shared, std::vector<Loop> loops)
    : shared_(shared), loops_(std::move(loops)), trim_(std::make_shared<Trim>(loops_.at(0).ex)) {
  // Each loop's reactor keeps its own descriptor states.
  for (const auto& loop : loops_)
    prewarm_descriptor_states(loop.ex, kPrewarmDescriptors / loops_.size());
  on_stop_.emplace(shared.stop_signals, [this] { stop_all(); });
}

ParkingLot::~ParkingLot() = default;

std::shared_ptr<SseLot> ParkingLot::lot_for(const std::string& name) {
  MutexLock lock(mu_);
  auto& lot = lots_[name];
  if (!lot)
    lot = std::allocate_shared<SseLot>(PoolAllocator<SseLot>(), *this, name,
                                       next_loop_.fetch_add(1) % loops_.size());
  lot->arriving.fetch_add(1);
  return lot;
}

void ParkingLot::park(const std::string& name, std::unique_ptr<ParkedSse> reader) {
  // Compacted here, on the connection's thread: the lot keeps only that.
  auto kept = std::make_unique<LotSse>(shared_, std::move(*reader));
  reader.reset();
  lot_for(name)->add(std::move(kept));
  trim_soon();
}

void ParkingLot::park(const std::string& name, std::unique_ptr<ParkedLongPoll> reader) {
  auto kept = std::make_unique<LotPoll>(shared_, std::move(*reader));
  reader.reset();
  lot_for(name)->add(std::move(kept));
  trim_soon();
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
  // A pending trim would hold the event loop up to kTrimDelay.
  trim_->stopped.store(true);
  asio::post(trim_->timer.get_executor(), [trim = trim_] { trim->timer.cancel(); });
}

}  // namespace ds::http_server
