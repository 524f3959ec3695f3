#pragma once
// Parked SSE readers: the reactor half of live reads.
//
// An SSE response that has caught up and has nothing left to write does not
// keep its coroutines (a few kilobytes of frames each) while it waits. It
// hands its socket and a small SseState to the ParkingLot and its coroutines
// end. Per stream, the lot keeps the parked readers grouped by offset, with
// one hub waiter per group; when the hub has new data, the lot renders the
// data event once and writes it to every reader of the group straight from
// the lot's strand with non-blocking writes. What a wake means and what it
// writes is the live-read machine's (server/live_read.h), as for the
// coroutines: the lot only drives it. A reader whose socket cannot
// take the whole event at once, or that needs a storage read, is handed back
// to a coroutine (resume_sse) with what is left to write; it parks again
// once it has caught up. Keep-alive comments, the end of an SSE session
// (--sse-max-duration) and shutdown are handled per stream by one timer and
// one stop hook.
//
// Thread safety: park() may be called from any thread; everything else runs
// on the stream's lot strand.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/http.h"
#include "server/live_read.h"
#include "server/parked_memory.h"

namespace ds::http_server {

struct ParkedSse;
struct ParkedLongPoll;

/// What an SSE response carries from one event to the next: the live-read
/// machine's state (server/live_read.h), and the session's times and
/// exchange.
struct SseState : live::SseRead {
  std::chrono::steady_clock::time_point session_end;
  std::chrono::steady_clock::time_point last_write;
  Exchange ex;                    ///< for the access-log line when the response ends
  live::ReaderLimits::Slot slot;  ///< counts the reader against the reader caps
};

/// Continues an SSE response in a coroutine on the socket's executor: writes
/// `pending` (the rest of an event the socket did not take), handles `wake`
/// if given, then goes on like a fresh response (it may park again). The
/// reader's DetachedCount goes with it. Implemented with the stream handlers.
void resume_sse(Context& shared, std::string name, std::unique_ptr<ParkedSse> reader,
                std::string pending, std::optional<Wake> wake);

/// The access-log line (and request metrics) of a live read that ended after
/// it was parked at least once.
void log_detached_end(Context& shared, const Exchange& ex, std::string_view name);

/// A response that lives outside its connection's session (parked, or
/// resumed from the lot) counts as an open connection and an open SSE
/// response; this holds that count.
class DetachedCount {
 public:
  /// `gauge`: open SSE responses or parked long-polls.
  DetachedCount(Context& shared, metrics::Gauge& gauge);
  ~DetachedCount();
  DetachedCount(const DetachedCount&) = delete;
  DetachedCount& operator=(const DetachedCount&) = delete;

 private:
  // Not the Context: a reader's frame or handler may be destroyed with the
  // io_context, after the server's Context; these outlive the io_context.
  std::atomic<size_t>& sessions_;
  metrics::Gauge& gauge_;
};

/// A reader with no coroutine: its socket (no operation pending on it) and state.
struct ParkedSse {
  ParkedSse(Context& shared, tcp::socket s, SseState state)
      : socket(std::move(s)), st(std::move(state)), count(shared, shared.metrics.open_sse) {}
  tcp::socket socket;
  SseState st;
  DetachedCount count;
};

/// What a parked long-poll needs to answer its request: the request's
/// version and keep-alive, the stream's headers, and the read's position.
struct LongPollState {
  Offset at;     ///< the offset the request waits at
  Offset start;  ///< the request's offset (for the ETag)
  uint64_t stream_id = 0;
  std::string content_type;
  std::string cursor;  ///< the client's cursor
  unsigned version = 11;
  bool keep_alive = true;
  std::chrono::steady_clock::time_point deadline;
  Exchange ex;
  live::ReaderLimits::Slot slot;  ///< counts the reader against the reader caps
};

struct ParkedLongPoll {
  ParkedLongPoll(Context& shared, tcp::socket s, LongPollState state)
      : socket(std::move(s)),
        st(std::move(state)),
        count(shared, shared.metrics.parked_long_polls) {}
  tcp::socket socket;
  LongPollState st;
  DetachedCount count;
};

/// Answers a parked long-poll in a coroutine on the socket's executor: with
/// `wake`'s data, or 204 (deadline or shutdown) when there is none; then
/// serves the connection's next requests. Implemented with the stream handlers.
void resume_long_poll(Context& shared, std::string name, std::unique_ptr<ParkedLongPoll> reader,
                      std::optional<Wake> wake);

/// Serves the requests of a connection (the connection loop). The caller has
/// counted it in stop_signals.sessions; it counts itself out at the end.
/// Implemented with the session.
asio::awaitable<void> serve_connection(Stream stream, Context& shared);

class SseLot;

class ParkingLot {
 public:
  /// An event loop (an io_context that one thread runs) and the context of
  /// the connections on it.
  struct Loop {
    asio::io_context::executor_type ex;
    Context* ctx;
  };

  /// `shared`: the server-wide context (no exchange). `loops`: the server's
  /// event loops (at least one). Each stream's lot runs on one of them, dealt
  /// in turn, and hands its readers back to connections on that loop; a big
  /// fan-out is split over all of them.
  ParkingLot(Context& shared, std::vector<Loop> loops);
  ~ParkingLot();
  ParkingLot(const ParkingLot&) = delete;
  ParkingLot& operator=(const ParkingLot&) = delete;

  /// Takes over a caught-up SSE response with an idle socket.
  void park(const std::string& name, std::unique_ptr<ParkedSse> reader);
  /// Takes over a long-poll with nothing to answer yet.
  void park(const std::string& name, std::unique_ptr<ParkedLongPoll> reader);

  Context& shared() const { return shared_; }

  /// Readers parked right now (all streams).
  size_t parked() const { return parked_.load(); }

 private:
  friend class SseLot;
  std::shared_ptr<SseLot> lot_for(const std::string& name);
  /// Drops the lot if it is empty and nothing is on its way to it.
  void release(const std::shared_ptr<SseLot>& lot);
  void stop_all();
  /// After parks have added many entries to the lot: gives the heap's free
  /// pages back to the system a moment later (parking.cc, SlotPool).
  void trim_soon();

  Context& shared_;
  const std::vector<Loop> loops_;
  std::atomic<size_t> next_loop_{0};  ///< the loop of the next lot made, modulo loops_.size()
  std::atomic<size_t> parked_{0};
  Mutex mu_;
  /// Nodes from SlotPool (server/parked_memory.h): made by a burst's first readers.
  std::unordered_map<std::string, std::shared_ptr<SseLot>, std::hash<std::string>,
                     std::equal_to<std::string>,
                     PoolAllocator<std::pair<const std::string, std::shared_ptr<SseLot>>>>
      lots_ DS_GUARDED_BY(mu_);
  std::optional<StopRegistration> on_stop_;

 public:
  struct Trim;  ///< parking.cc

 private:
  std::shared_ptr<Trim> trim_;
};

}  // namespace ds::http_server
