// SSE GET: the live-read machine (server/live_read.h) turns reads and wakes
// into events; this coroutine reads (paced by the output queue), waits on
// the hub, writes through SseOutput, and hands a caught-up idle response to
// the parking lot (and takes it back when the lot cannot go on alone).

#include "common/log.h"
#include "protocol/headers.h"
#include "server/live_read.h"
#include "server/parking.h"
#include "server/sse_output.h"
#include "server/stream_handlers.h"

namespace ds::http_server {
namespace {

/// How long an SSE response past its session's end may still take to write
/// what was queued before its connection is closed anyway (at most
/// --write-timeout): a reader that keeps up gets its last events and the end
/// of the body, a reader that stopped reading is not waited for.
Clock_::time_point sse_hard_end(const Context& ctx, Clock_::time_point session_end) {
  return session_end +
         std::min<Clock_::duration>(std::chrono::seconds(1), ctx.options.write_timeout);
}

enum class SseEnd {
  ended,  ///< the response is over (or the client gone): finish and close
  park,   ///< caught up with nothing left to write: hand the socket to the lot
};

enum class CatchUp {
  more,   ///< events queued: go on
  stop,   ///< no more to read (the reader fell behind retention, or the read failed)
  ended,  ///< the output failed
};

/// One catch-up read: read on only once the client has taken what was
/// queued, so a reader far behind never fills the queue. A coroutine of its
/// own, so that the read's outcome is not kept in sse_loop's frame for the
/// whole response (see sse_start).
asio::awaitable<CatchUp> sse_catch_up(Context& ctx, SseOutput& output, const std::string& name,
                                      SseState& st) {
  {
    auto room = output.wait_for_room();
    co_await std::move(room);
  }
  if (output.failed()) co_return CatchUp::ended;
  const auto more_from = OffsetSpec::position(st.at);
  auto more_op = live_read(ctx, name, more_from, false);
  auto more = co_await std::move(more_op);
  if (!more) {
    if (more.error().code == errc::retention_trimmed) {
      // Fell behind retention: told, not skipped ahead.
      std::string out;
      live::sse_on_trimmed(st, more.error(), out);
      output.push_paced(out);
    }
    co_return CatchUp::stop;
  }
  std::string out;
  live::sse_on_read(st, ctx.clock, *more, out);
  if (!output.push_paced(out)) co_return CatchUp::ended;
  co_return CatchUp::more;
}

/// The events of an SSE response from `st` on: catch-up reads (paced by the
/// output queue) and live wakes (`wake` first, if given) until the stream
/// closes, the session's time is up, the server drains, the client goes (or
/// falls too far behind), or the reader can park.
asio::awaitable<SseEnd> sse_loop(Context& ctx, SseOutput& output, const std::string& name,
                                 SseState& st, std::optional<Wake> wake) {
  for (;;) {
    if (!wake) {
      const auto next = live::sse_next(st);
      if (next == live::SseNext::end || ctx.stopping) break;
      if (next == live::SseNext::read) {
        // The session's time is up even while catching up (the reader resumes
        // from the last control event it got).
        if (Clock_::now() >= st.session_end) break;
        CatchUp step;
        {
          auto read = sse_catch_up(ctx, output, name, st);
          step = co_await std::move(read);
        }
        if (step == CatchUp::ended) co_return SseEnd::ended;
        if (step == CatchUp::stop) break;
        continue;
      }
      auto now = Clock_::now();
      if (now >= st.session_end) break;
      if (output.failed()) co_return SseEnd::ended;
      // Caught up with nothing left to write: wait in the lot, not here.
      const bool can_park = ctx.parking && st.held.empty();
      if (can_park && output.idle()) co_return SseEnd::park;
      const auto keepalive_at = std::min(st.session_end, now + ctx.options.sse_keepalive);
      wake = co_await wait_live(ctx, name, st.at, keepalive_at, can_park ? &output : nullptr);
      if (!wake) {
        if (ctx.stopping || Clock_::now() >= st.session_end) break;
        if (can_park && (output.idle() || output.failed()) && Clock_::now() < keepalive_at)
          continue;  // the write finished (or failed): park (or end) at the top
        if (!output.push(live::kKeepAlive)) co_return SseEnd::ended;
        continue;
      }
    }
    std::string out;
    live::sse_on_wake(st, ctx.clock, *wake, out);
    wake.reset();
    // Live data goes out without waiting for the client; one that does not
    // keep up overflows the queue's cap and is disconnected (it resumes from
    // the last control event it read).
    if (!out.empty() && !output.push(out)) co_return SseEnd::ended;
  }
  if (ctx.stopping) {
    // Draining: a last control event with the offset the client has, so it
    // resumes from there on another server.
    std::string out;
    live::sse_on_stop(st, ctx.clock, out);
    output.push_paced(out);
  }
  co_return SseEnd::ended;
}

/// Ends an SSE body that is not parking: the last chunk once everything
/// queued is written; a reader cut off for not keeping up is counted.
asio::awaitable<void> sse_finish(Context& ctx, SseOutput& output, const std::string& name) {
  output.finish();
  {
    auto drained = output.drain();
    co_await std::move(drained);
  }
  if (output.overflowed()) {
    ctx.metrics.slow_consumer_disconnects.inc();
    log::warn("SSE reader disconnected: it did not keep up",
              {{"id", ctx.exchange ? ctx.exchange->id : std::string()},
               {"stream", name},
               {"max_pending_output_bytes",
                static_cast<uint64_t>(ctx.options.max_pending_output_bytes)}});
  }
}

asio::awaitable<void> resume_sse_co(Context& shared, std::string name,
                                    std::unique_ptr<ParkedSse> reader, std::string pending,
                                    std::optional<Wake> wake) {
  Context ctx = shared;
  ctx.exchange = &reader->st.ex;
  Stream stream(std::move(reader->socket));
  auto output = std::make_shared<SseOutput>(ctx, stream, ctx.options.max_pending_output_bytes,
                                            sse_hard_end(ctx, reader->st.session_end));
  output->push_framed(pending);
  SseEnd end;
  {
    auto events = sse_loop(ctx, *output, name, reader->st, std::move(wake));
    end = co_await std::move(events);
  }
  if (end == SseEnd::park) {
    reader->st.last_write = Clock_::now();
    reader->socket = stream.release_socket();
    ctx.parking->park(name, std::move(reader));
    co_return;
  }
  {
    auto fin = sse_finish(ctx, *output, name);
    co_await std::move(fin);
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  log_detached_end(shared, reader->st.ex, name);
}

/// The start of an SSE response: the first read (before committing to a
/// 200), the reader caps, the head, and the first events (into `out`, with
/// what comes next). nullopt: the response started; else it did not, and
/// this is handle_sse's answer. A coroutine of its own so that its frame
/// (the first read's outcome, the head and Beast's serializer) is freed
/// before the response goes on: in a connect burst hundreds of responses are
/// in flight at once, and what they leave freed between the lot's and the
/// hub's long-lived objects stays resident (bench/analysis-run-to-completion.md,
/// "idle SSE readers under 400 B").
asio::awaitable<std::optional<bool>> sse_start(Context& ctx, Stream& stream, Request& req,
                                               const std::string& name, const ReadParams& p,
                                               SseState& st, std::string& out,
                                               live::SseNext& next) {
  // Resolve the stream (and the start offset) before committing to a 200.
  auto first_op = live_read(ctx, name, p.from, true);
  auto first = co_await std::move(first_op);
  if (!first) {
    auto err_ = send_error(ctx, stream, req, first.error());
    co_return co_await std::move(err_);
  }
  st.base64 = !is_text_media_type(media_type(first->meta.config.content_type));
  st.json = is_json_stream(first->meta);
  st.cursor = p.cursor;
  st.session_end = Clock_::now() + ctx.options.sse_max_duration;
  // Counted against the reader caps until the response ends (parked or not).
  auto refused = admit_reader(ctx, req, name, st.slot);
  if (refused) co_return co_await send(ctx, stream, *refused);

  http::response<http::empty_body> head{http::status::ok, req.version()};
  {
    Response tmp;
    decorate(tmp);
    for (const auto& f : tmp) head.set(f.name_string(), f.value());
  }
  head.set(http::field::content_type, "text/event-stream");
  head.set(http::field::cache_control, "no-cache, no-transform");
  head.set("X-Accel-Buffering", "no");
  if (st.base64) head.set("Stream-SSE-Data-Encoding", "base64");
  head.chunked(true);
  head.keep_alive(false);
  finalize_headers(ctx, head);
  http::response_serializer<http::empty_body> sr{head};
  stream.expires_after(ctx.options.write_timeout);
  auto [hec, hn] =
      co_await http::async_write_header(stream, sr, asio::as_tuple(asio::use_awaitable));
  count_sent(ctx, hn);
  if (hec) {
    if (hec == beast::error::timeout) ctx.metrics.write_timeouts.inc();
    co_return false;
  }
  stream.expires_never();
  next = live::sse_on_read(st, ctx.clock, *first, out);
  co_return std::nullopt;
}

}  // namespace

asio::awaitable<bool> handle_sse(Context& ctx, Stream& stream, Request& req,
                                 const std::string& name, const ReadParams& p) {
  SseState st;
  live::SseNext next = live::SseNext::end;
  std::string out;
  {
    auto start = sse_start(ctx, stream, req, name, p, st, out, next);
    const auto answered = co_await std::move(start);
    if (answered) co_return *answered;
  }
  GaugeUp open(ctx.metrics.open_sse);

  auto output = std::make_shared<SseOutput>(ctx, stream, ctx.options.max_pending_output_bytes,
                                            sse_hard_end(ctx, st.session_end));
  output->push_paced(out);
  out = std::string();
  SseEnd end = SseEnd::ended;
  if (next != live::SseNext::end) {
    std::optional<Wake> no_wake;
    auto events = sse_loop(ctx, *output, name, st, std::move(no_wake));
    end = co_await std::move(events);
  }
  if (end == SseEnd::park && ctx.exchange) {
    ctx.exchange->detached = true;
    st.ex = *ctx.exchange;
    st.ex.origin = std::string();
    st.last_write = Clock_::now();
    auto& shared = ctx.parking->shared();
    auto reader = std::make_unique<ParkedSse>(shared, stream.release_socket(), std::move(st));
    ctx.parking->park(name, std::move(reader));
    co_return false;
  }
  {
    auto fin = sse_finish(ctx, *output, name);
    co_await std::move(fin);
  }
  co_return false;  // SSE responses close the connection
}

void resume_sse(Context& shared, std::string name, std::unique_ptr<ParkedSse> reader,
                std::string pending, std::optional<Wake> wake) {
  auto ex = reader->socket.get_executor();
  auto co = resume_sse_co(shared, std::move(name), std::move(reader), std::move(pending),
                          std::move(wake));
  asio::co_spawn(ex, std::move(co), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::error("SSE response failed", {{"error", ex.what()}});
    }
  });
}

}  // namespace ds::http_server
