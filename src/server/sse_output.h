#pragma once
// The write side of one SSE response: chunks queue here and one write at a
// time drains them, so a live SSE response never waits on its client before
// taking the next wake from the hub, and a client that stops reading is cut
// off once its queue passes a cap instead of growing the server's memory.
//
// Everything here runs on the connection's strand (the stream's executor).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "server/http.h"

namespace ds::http_server {

class SseOutput : public std::enable_shared_from_this<SseOutput> {
 public:
  /// `cap`: bytes that may wait behind the write in flight (see push).
  /// Every write must make progress within ctx.options.write_timeout, and
  /// none goes on past `hard_end` (the SSE session's end and a short grace):
  /// then the connection is closed and the output fails.
  SseOutput(Context& ctx, Stream& stream, size_t cap,
            std::chrono::steady_clock::time_point hard_end =
                std::chrono::steady_clock::time_point::max());

  /// Queues one chunk of the body (the chunked framing is added here) and
  /// starts writing it if no write is in flight. A chunk is always taken when
  /// nothing waits behind the write in flight; otherwise the waiting bytes may
  /// not pass the cap: then the client is not keeping up, the connection is
  /// closed (overflowed()) and false is returned. false too once a write has
  /// failed (the client went away).
  bool push(std::string_view data);
  /// Like push, never past the cap's check: for output the caller paced with
  /// wait_for_room (catch-up reads).
  bool push_paced(std::string_view data);
  /// Queues bytes that are already chunk-framed (the rest of an event a
  /// parked reader's socket did not take).
  void push_framed(std::string_view framed);
  /// Queues the terminating zero-length chunk.
  void finish();

  /// Waits until nothing waits behind the write in flight, or the output failed.
  asio::awaitable<void> wait_for_room();
  /// Waits until every queued byte was written or the output failed. Must be
  /// awaited before the stream or the context go away: the write in flight
  /// refers to both.
  asio::awaitable<void> drain();
  /// Closes the connection (pending writes end with an error).
  void abort();

  bool failed() const { return failed_; }
  /// Nothing is being written or waits to be.
  bool idle() const { return !writing_ && waiting_.empty(); }
  /// Called (on the strand) whenever a write completes and nothing else is
  /// queued: the producer, parked on the hub, may hand the socket over now.
  std::function<void()> on_idle;
  bool overflowed() const { return overflowed_; }
  /// A write was cut off by its deadline (the client was not reading).
  bool timed_out() const { return timed_out_; }

 private:
  void queue(std::string_view data);
  void start_write();
  void write_some();
  void notify();

  Context& ctx_;
  Stream& stream_;
  size_t cap_;
  std::chrono::steady_clock::time_point hard_end_;
  std::string waiting_;                  ///< framed chunks not yet handed to a write
  std::string inflight_;                 ///< the bytes of the write in flight
  std::optional<ResponseBytes> pinned_;  ///< counts inflight_ server-wide
  size_t written_ = 0;                   ///< of inflight_
  bool writing_ = false;
  bool failed_ = false;
  bool overflowed_ = false;
  bool timed_out_ = false;
  /// The producer sleeps on this; every completed write cancels it.
  asio::steady_timer progress_;
};

}  // namespace ds::http_server
