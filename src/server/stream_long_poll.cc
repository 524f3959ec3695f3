// Long-poll GET: the live-read machine (server/live_read.h) decides what a
// wake or a read answers; this coroutine reads, waits on the hub for a
// moment, hands a quiet wait to the parking lot and answers (also for a
// long-poll the lot hands back).

#include "common/log.h"
#include "protocol/cursor.h"
#include "server/live_read.h"
#include "server/parking.h"
#include "server/stream_handlers.h"

namespace ds::http_server {
namespace {

/// How long a long-poll waits in its coroutine before it parks in the lot.
constexpr auto kParkLongPollAfter = std::chrono::milliseconds(250);

/// Hands a waiting long-poll to the parking lot: it answers from there.
void park_long_poll(Context& ctx, Stream& stream, const Request& req, const std::string& name,
                    const StreamMeta& meta, Offset start, Offset at,
                    const std::string& client_cursor, Clock_::time_point deadline,
                    live::ReaderLimits::Slot& slot) {
  LongPollState st;
  st.slot = std::move(slot);
  st.at = at;
  st.start = start;
  st.stream_id = meta.id;
  st.content_type = meta.config.content_type;
  st.cursor = client_cursor;
  st.version = req.version();
  st.keep_alive = req.keep_alive();
  st.deadline = deadline;
  ctx.exchange->detached = true;
  st.ex = *ctx.exchange;
  auto reader = std::make_unique<ParkedLongPoll>(ctx.parking->shared(), stream.release_socket(),
                                                 std::move(st));
  ctx.parking->park(name, std::move(reader));
}

/// Counts a waiting long-poll against the reader caps (admit_reader), or
/// sends the 503 when it is over one. Not a coroutine: the refusal's
/// Response stays out of handle_long_poll's frame.
std::optional<asio::awaitable<bool>> refuse_reader(Context& ctx, Stream& stream, const Request& req,
                                                   const std::string& name,
                                                   live::ReaderLimits::Slot& slot) {
  auto refused = admit_reader(ctx, req, name, slot);
  if (!refused) return std::nullopt;
  return send_owned(ctx, stream, std::move(*refused));
}

/// A long-poll's answer as the live-read machine decided it (not `wait` or `read`).
asio::awaitable<bool> answer_long_poll(Context& ctx, Stream& stream, Request& req,
                                       const StreamMeta& meta, Offset start,
                                       const live::PollStep& step,
                                       const std::vector<RecordPtr>& records,
                                       const std::string& client_cursor) {
  switch (step.kind) {
    case live::PollStep::Kind::data: {
      auto c = next_cursor(ctx.clock.now_ms(), client_cursor);
      auto res = data_response(ctx, req, meta, start, records, step.next, step.up_to_date,
                               step.closed, false, &c);
      co_return co_await send(ctx, stream, res);
    }
    case live::PollStep::Kind::closed: {
      auto res = no_content_live(req, step.next, true, "");
      co_return co_await send(ctx, stream, res);
    }
    case live::PollStep::Kind::gone:
    case live::PollStep::Kind::wait:
    case live::PollStep::Kind::read:
      break;
  }
  auto err_ = send_error(ctx, stream, req, Error(errc::not_found, "stream was deleted"));
  co_return co_await std::move(err_);
}

/// After a wake that calls for it (the reader's offset fell out of the hub's
/// buffer, or the stream has retention): reads again at `at` and answers, or
/// nullopt when there is still nothing there (the long-poll waits again, at
/// `at` as the read moved it: poll_on_read). Its own coroutine: the read's
/// result stays out of long_poll_wait's frame.
asio::awaitable<std::optional<bool>> long_poll_read_again(Context& ctx, Stream& stream,
                                                          Request& req, const std::string& name,
                                                          Offset start, Offset& at,
                                                          const std::string& client_cursor) {
  const auto again_from = OffsetSpec::position(at);
  auto again_op = live_read(ctx, name, again_from, false);
  auto again = co_await std::move(again_op);
  if (!again) {
    auto err_ = send_error(ctx, stream, req, again.error());
    co_return co_await std::move(err_);
  }
  const auto step = live::poll_on_read(at, *again);
  if (step.kind == live::PollStep::Kind::wait) co_return std::nullopt;
  auto answer =
      answer_long_poll(ctx, stream, req, again->meta, start, step, again->records, client_cursor);
  co_return co_await std::move(answer);
}

/// The waiting part of a long-poll at `at` (nothing to answer at once):
/// parks it in the lot when it can, else waits on the hub here. `wake`: the
/// hub's answer already in hand (a resumed long-poll), if any. `slot`: the
/// reader's count against the reader caps; it goes to the lot with a parked
/// long-poll.
asio::awaitable<bool> long_poll_wait(Context& ctx, Stream& stream, Request& req,
                                     const std::string& name, const StreamMeta& meta, Offset start,
                                     Offset at, const std::string& client_cursor,
                                     Clock_::time_point deadline, std::optional<Wake> wake,
                                     live::ReaderLimits::Slot& slot) {
  for (;;) {
    if (!wake) {
      const auto now = Clock_::now();
      if (ctx.stopping || now >= deadline) break;
      // On a busy stream (new records within the last moment) a long-poll
      // first waits here briefly: it is likely answered within milliseconds,
      // and handing it to the lot and back would cost more than it saves. On
      // a quiet stream, or once that moment has passed, it goes to the lot.
      const bool can_park = ctx.parking && ctx.exchange && ctx.exchange->can_detach;
      if (can_park && !ctx.hubs.recently_active(name, kParkLongPollAfter)) {
        park_long_poll(ctx, stream, req, name, meta, start, at, client_cursor, deadline, slot);
        co_return false;
      }
      {
        GaugeUp parked(ctx.metrics.parked_long_polls);
        const auto until = can_park ? std::min(deadline, now + kParkLongPollAfter) : deadline;
        wake = co_await wait_live(ctx, name, at, until);
      }
      if (!wake) {
        if (ctx.stopping || Clock_::now() >= deadline) break;  // 204 with the current offset
        if (can_park) {
          park_long_poll(ctx, stream, req, name, meta, start, at, client_cursor, deadline, slot);
          co_return false;
        }
        continue;
      }
    }
    const auto step = live::poll_on_wake(at, *wake);
    if (step.kind == live::PollStep::Kind::read) {
      wake.reset();
      auto again_op = long_poll_read_again(ctx, stream, req, name, start, at, client_cursor);
      const auto answered = co_await std::move(again_op);
      if (!answered) continue;
      co_return *answered;
    }
    auto answer =
        answer_long_poll(ctx, stream, req, meta, start, step, wake->records, client_cursor);
    co_return co_await std::move(answer);
  }
  auto timeout_ = send_owned(
      ctx, stream, no_content_live(req, at, false, next_cursor(ctx.clock.now_ms(), client_cursor)));
  co_return co_await std::move(timeout_);
}

asio::awaitable<void> resume_long_poll_co(Context& shared, std::string name,
                                          std::unique_ptr<ParkedLongPoll> reader,
                                          std::optional<Wake> wake) {
  Context ctx = shared;
  ctx.exchange = &reader->st.ex;
  ctx.exchange->detached = false;
  ctx.exchange->can_detach = false;  // answer here: it was parked once already
  Stream stream(std::move(reader->socket));
  Request req;
  req.version(reader->st.version);
  req.keep_alive(reader->st.keep_alive);
  StreamMeta meta;
  meta.id = reader->st.stream_id;
  meta.config.content_type = reader->st.content_type;
  bool keep_alive = false;
  {
    auto answer =
        long_poll_wait(ctx, stream, req, name, meta, reader->st.start, reader->st.at,
                       reader->st.cursor, reader->st.deadline, std::move(wake), reader->st.slot);
    keep_alive = co_await std::move(answer);
  }
  log_detached_end(shared, reader->st.ex, name);
  ctx.exchange = nullptr;
  if (!keep_alive || ctx.stopping) {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }
  // Back to the connection loop for the client's next request, counted as a
  // session before this response's count goes.
  shared.stop_signals.sessions.fetch_add(1);
  reader.reset();
  auto serving = serve_connection(std::move(stream), shared);
  co_await std::move(serving);
}

}  // namespace

asio::awaitable<bool> handle_long_poll(Context& ctx, Stream& stream, Request& req,
                                       const std::string& name, const ReadParams& p) {
  const auto deadline = Clock_::now() + ctx.options.long_poll_timeout;
  auto r_op = live_read(ctx, name, p.from, true);
  auto r = co_await std::move(r_op);
  if (!r) {
    auto err_ = send_error(ctx, stream, req, r.error());
    co_return co_await std::move(err_);
  }
  Offset at;
  const auto step = live::poll_on_first_read(at, *r);
  if (step.kind != live::PollStep::Kind::wait) {
    auto answer = answer_long_poll(ctx, stream, req, r->meta, r->start, step, r->records, p.cursor);
    co_return co_await std::move(answer);
  }
  // It waits: it counts against the reader caps from here until it is answered.
  live::ReaderLimits::Slot slot;
  if (auto refused_ = refuse_reader(ctx, stream, req, name, slot)) {
    co_return co_await std::move(*refused_);
  }
  // r lives in this frame until the wait has answered: its metadata is not copied.
  std::optional<Wake> no_wake;
  auto waiting = long_poll_wait(ctx, stream, req, name, r->meta, r->start, at, p.cursor, deadline,
                                std::move(no_wake), slot);
  co_return co_await std::move(waiting);
}

void resume_long_poll(Context& shared, std::string name, std::unique_ptr<ParkedLongPoll> reader,
                      std::optional<Wake> wake) {
  auto ex = reader->socket.get_executor();
  auto co = resume_long_poll_co(shared, std::move(name), std::move(reader), std::move(wake));
  asio::co_spawn(ex, std::move(co), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::error("long-poll response failed", {{"error", ex.what()}});
    }
  });
}

}  // namespace ds::http_server
