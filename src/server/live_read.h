#pragma once
// The step of a live read (long-poll, SSE) as a pure state machine: a
// reader's position and cursor, and what the hub or a storage read brought,
// go in; the bytes to write and what to do next come out. No sockets, no
// Asio, no coroutines: it is tested without any (test/unit/live_read_test.cc).
//
// Two drivers run it. A coroutine (server/stream_sse.cc,
// server/stream_long_poll.cc) does the storage reads, waits on the
// hub and writes through SseOutput; the parking lot (server/parking.cc) holds
// caught-up readers without a coroutine and writes a wake to all of them from
// its strand. Both ask this machine what a wake means, what to write and
// what comes next, so the two cannot drift apart.

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "hub/live_hub.h"
#include "protocol/offset.h"
#include "store/stream_store.h"

namespace ds::live {

// ------------------------------------------------------------------ chunked framing

inline constexpr std::string_view kCrlf = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";
/// An SSE comment that keeps an idle connection from looking dead.
inline constexpr std::string_view kKeepAlive = ": keep-alive\n\n";

using ChunkSizeBuf = std::array<char, 24>;
/// "<hex size>\r\n", the line before a chunk of `n` bytes, written into `buf`.
std::string_view chunk_size_line(size_t n, ChunkSizeBuf& buf);
/// Appends `data` as one chunk (nothing for empty data: a zero-length chunk
/// would end the body).
void append_chunk(std::string& out, std::string_view data);

// ------------------------------------------------------------------ SSE

/// What an SSE response carries from one event to the next. Plain values:
/// a parked reader holds this and nothing on the heap beyond its strings.
struct SseRead {
  Offset at;           ///< how far the events went (after any held-back bytes)
  std::string cursor;  ///< the last cursor sent (at first, the client's)
  std::string held;    ///< bytes held back: a UTF-8 character split across records
  Offset held_from;    ///< where `held` begins, reported while it is held
  bool base64 = false;
  bool json = false;
  bool up_to_date = false;
  bool ended = false;  ///< closed at the tail, or gone: nothing more will come
};

/// What an SSE response does after a step.
enum class SseNext {
  wait,  ///< caught up: wait on the hub (or park); a keep-alive when idle
  read,  ///< behind: read on from storage at `at`
  end,   ///< the body is over: the last chunk, then close
};
SseNext sse_next(const SseRead& st);

/// The first read of a response, or a catch-up read: its events.
SseNext sse_on_read(SseRead& st, const Clock& clock, const ReadOutcome& r, std::string& out);
/// A hub wake: its events (none for `gone` and `catch_up`).
SseNext sse_on_wake(SseRead& st, const Clock& clock, const Wake& w, std::string& out);
/// A read failed because retention removed the data at the reader's offset
/// (errc::retention_trimmed): the reader is told, not skipped ahead. An
/// `event: error` whose data is the 410 body (`{"code":"retention_trimmed",
/// "message":...,"earliest_offset":...}`); the body then ends. The client
/// resumes at the earliest offset (or offset=-1) if it accepts the gap.
SseNext sse_on_trimmed(SseRead& st, const Error& e, std::string& out);
/// The server drains: a last control event with the offset the client has,
/// so it resumes from there on another server (nothing once ended).
void sse_on_stop(SseRead& st, const Clock& clock, std::string& out);

/// One data wake for many caught-up readers at the same offset, none holding
/// bytes back: the data event is rendered once, a control event per reader.
struct SseBroadcast {
  std::string data;  ///< the data event (empty when there is none)
  Offset next;
  bool caught_up = false;
  bool closed = false;
};
/// false: the records end inside a UTF-8 character, which each reader must
/// hold back on its own (sse_on_wake).
bool sse_broadcast(const Wake& w, Offset at, bool json, bool base64, SseBroadcast& out);
/// A reader's share of a broadcast: its control event (its cursor moves on)
/// and its new position. What sse_on_wake would have written after `b.data`.
SseNext sse_on_broadcast(SseRead& st, const Clock& clock, const SseBroadcast& b,
                         std::string& control);
/// The same for a reader that had sent the cursor `first` had before its
/// sse_on_broadcast: it shares `first`'s control event (and next cursor).
SseNext sse_share_broadcast(SseRead& st, const SseRead& first, const SseBroadcast& b);

// ------------------------------------------------------------------ long-poll

/// What a long-poll does after a step.
struct PollStep {
  enum class Kind {
    wait,    ///< nothing yet: wait on the hub at `at` (or park)
    data,    ///< answer 200 with the records, `next`, `up_to_date`, `closed`
    closed,  ///< answer 204: the stream is closed at `next`
    gone,    ///< answer 404: the stream was deleted
    read,    ///< read storage at `at`, then poll_on_read
  };
  Kind kind = Kind::wait;
  Offset next;
  bool up_to_date = false;
  bool closed = false;
};

/// The request's own read: records answer at once, else it waits at r.next.
PollStep poll_on_first_read(Offset& at, const ReadOutcome& r);
/// A hub wake for a long-poll waiting at `at`.
PollStep poll_on_wake(Offset& at, const Wake& w);
/// The storage read a catch_up wake asked for: records (or closure) answer,
/// else it waits on at r.next.
PollStep poll_on_read(Offset& at, const ReadOutcome& r);

}  // namespace ds::live
