// The protocol's operations on a stream URL: PUT, POST, GET (catch-up,
// long-poll, SSE), HEAD and DELETE. Parsing and decisions come from
// protocol/ (and, for live reads, server/live_read.h); the handlers map them
// onto HTTP and onto the store's calls. This file routes a request to its
// handler (one file per concern, see server/stream_handlers.h) and holds
// what they share.

#include "server/stream_handlers.h"

#include <algorithm>
#include <charconv>

#include "common/json_string.h"
#include "protocol/headers.h"
#include "protocol/http_status.h"
#include "server/sse_output.h"

namespace ds::http_server {
namespace {

/// One live wait, in one allocation (from Asio's per-thread cache): the
/// hub's waiter, the inbox item that brings its wake to the event loop, the
/// shutdown hook and the timer the coroutine sleeps on. It used to be six: a
/// shared PendingWake, a std::function each for the hub and the shutdown
/// (their captures too big to be stored in place), the shutdown's map node,
/// the hub's Waiter and a WakeDelivery per wake.
///
/// The wake goes through the connection's inbox: the hub's callback runs on
/// the writer thread, where a post to the connection's strand (through
/// any_io_executor) cost ten allocations, none of them from Asio's
/// per-thread caches; the hand-off to the strand happens on an event-loop
/// thread instead.
class LiveWait final : public Waiter,
                       public Inbox::Item,
                       public StopSignals::Hook,
                       public std::enable_shared_from_this<LiveWait> {
 public:
  LiveWait(Offset from, const asio::any_io_executor& ex, Inbox* inbox)
      : Waiter(from), timer(ex), inbox_(inbox) {}

  static std::shared_ptr<LiveWait> make(Offset from, const asio::any_io_executor& ex,
                                        Inbox* inbox) {
    return std::allocate_shared<LiveWait>(asio::recycling_allocator<LiveWait>(), from, ex, inbox);
  }

  /// What the coroutine sleeps on: a wake, a shutdown or an idle SSE output
  /// cancel it.
  asio::steady_timer timer;
  /// The wake, once it has reached the coroutine's executor.
  std::optional<Wake> value;

 private:
  /// On an engine thread, or inline in LiveHubs::wait before the coroutine
  /// sleeps; at most once.
  void on_wake(Wake w) override {
    incoming_.emplace(std::move(w));
    if (inbox_) {
      self_ = shared_from_this();  // alive until delivered (or discarded)
      inbox_->push(this);
      return;
    }
    // Without an inbox: the callback may run on the coroutine's own thread
    // before it sleeps, so never inline.
    asio::post(timer.get_executor(), [self = shared_from_this()] { self->land(); });
  }
  /// From the inbox's drain, on an event-loop thread.
  void deliver() override {
    dispatch_to(timer.get_executor(), [this] { land(); });
  }
  void discard() override { self_.reset(); }  // may end this object: the last thing done
  /// On shutdown, the reader stops waiting (as if its deadline passed).
  void on_stop() override {
    asio::post(timer.get_executor(), [self = shared_from_this()] { self->timer.cancel(); });
  }
  /// On the coroutine's executor.
  void land() {
    auto keep = std::move(self_);  // the inbox's reference, if any: released last
    value = std::move(incoming_);
    incoming_.reset();
    timer.cancel();
  }

  Inbox* const inbox_;
  /// Set on the engine thread, read on the event loop after the inbox's
  /// hand-off (its lock orders the two).
  std::optional<Wake> incoming_;
  std::shared_ptr<LiveWait> self_;
};

/// An SSE output's on_idle pointing at a wait's timer while the wait lives
/// (a raw pointer: std::function holds it in place; cleared before the wait
/// goes, on the same strand).
class IdleCancel {
 public:
  IdleCancel(SseOutput* output, LiveWait* w) : output_(output) {
    if (output_) output_->on_idle = [w] { w->timer.cancel(); };
  }
  ~IdleCancel() { clear(); }
  IdleCancel(const IdleCancel&) = delete;
  IdleCancel& operator=(const IdleCancel&) = delete;
  void clear() {
    if (output_) output_->on_idle = nullptr;
    output_ = nullptr;
  }

 private:
  SseOutput* output_;
};

}  // namespace

std::string_view header(const Request& req, std::string_view name) {
  auto it = req.find(name);
  if (it == req.end()) return {};
  return {it->value().data(), it->value().size()};
}

bool has_header(const Request& req, std::string_view name) { return req.find(name) != req.end(); }

Response make_response(const Request& req, http::status status) {
  auto res = response_for<Response>(req, status);
  decorate(res);
  res.keep_alive(req.keep_alive());
  return res;
}

bool valid_content_type(std::string_view ct) {
  auto media = media_type(ct);
  auto slash = media.find('/');
  auto word = [](std::string_view w) {
    return !w.empty() && std::all_of(w.begin(), w.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
             c == '+';
    });
  };
  return slash != std::string::npos && word(std::string_view(media).substr(0, slash)) &&
         word(std::string_view(media).substr(slash + 1));
}

EtagText etag_for(uint64_t stream_id, const Offset& start, const Offset& end, bool closed) {
  // Rendered into a fixed buffer: `"` id(<= 20) `:` start `:` end [`:c`] `"`.
  static_assert(sizeof(EtagText::data) >= 1 + 20 + 1 + 2 * Offset::kTextSize + 1 + 2 + 1);
  EtagText tag;
  char* p = tag.data;
  *p++ = '"';
  p = std::to_chars(p, p + 20, stream_id).ptr;
  *p++ = ':';
  p = start.to_chars(p);
  *p++ = ':';
  p = end.to_chars(p);
  if (closed) {
    *p++ = ':';
    *p++ = 'c';
  }
  *p++ = '"';
  tag.size = static_cast<size_t>(p - tag.data);
  return tag;
}

bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  if (if_none_match.empty()) return false;
  if (trim(if_none_match) == "*") return true;
  size_t start = 0;
  while (start < if_none_match.size()) {
    size_t comma = if_none_match.find(',', start);
    auto candidate = trim(if_none_match.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (candidate.starts_with("W/")) candidate.remove_prefix(2);
    if (candidate == etag) return true;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return false;
}

void set_stream_headers(Response& res, const StreamMeta& m) {
  res.set(http::field::content_type, m.config.content_type);
  if (m.config.ttl_seconds) res.set("Stream-TTL", std::to_string(*m.config.ttl_seconds));
  if (m.config.expires_at_ms) res.set("Stream-Expires-At", m.config.expires_at_text);
  if (m.config.retention_max_age_s)
    res.set("Stream-Retention-Max-Age", std::to_string(*m.config.retention_max_age_s));
  if (m.config.retention_max_bytes)
    res.set("Stream-Retention-Max-Bytes", std::to_string(*m.config.retention_max_bytes));
  if (m.config.has_retention() || m.earliest != Offset{})
    res.set("Stream-Earliest-Offset", m.earliest.text().view());
}

// Not coroutines: each returns the write's own awaitable, so a response
// costs no coroutine frame of these.
asio::awaitable<bool> send(Context& ctx, Stream& stream, Response& res) {
  res.prepare_payload();
  return write_response(ctx, stream, res);
}

asio::awaitable<bool> send(Context& ctx, Stream& stream, RecordsResponse& res) {
  res.prepare_payload();
  return write_response(ctx, stream, res);
}

asio::awaitable<bool> send_owned(Context& ctx, Stream& stream, Response res) {
  res.prepare_payload();
  co_return co_await write_response(ctx, stream, res);
}

asio::awaitable<bool> send_error(Context& ctx, Stream& stream, const Request& req, Error e) {
  Response res = error_response(req, e);
  res.prepare_payload();
  co_return co_await write_response(ctx, stream, res);
}

// --------------------------------------------------------------------- live reads

/// A read for a long-poll or SSE response: from the stream's hub buffer when
/// it holds the records from `from` on (no storage read; the sliding TTL is
/// renewed with a touch), else from storage, whose metadata the hub then
/// remembers so that it can answer the next ones. `live`: the storage read's
/// ReadRequest::live.
asio::awaitable<Result<ReadOutcome>> live_read(Context& ctx, const std::string& name,
                                               const OffsetSpec& from, bool live) {
  if (from.kind == OffsetSpec::Kind::at) {
    auto hit = ctx.hubs.read_buffered(name, from.at, ctx.options.read_chunk_bytes);
    // A stream with retention is read from storage, which alone knows its
    // current earliest offset: a reader behind it must get 410, not data
    // the hub still happens to hold.
    if (hit && hit->meta.config.has_retention()) hit.reset();
    if (hit) {
      ctx.metrics.live_reads_hub.inc();
      if (hit->meta.config.ttl_seconds) ctx.store.touch(name);
      co_return std::move(*hit);
    }
  }
  ctx.metrics.live_reads_storage.inc();
  const uint64_t hub = ctx.hubs.hub_id(name);  // before the read: see LiveHubs::remember
  ReadRequest rr{name, from, ctx.options.read_chunk_bytes};
  rr.live = live;
  auto r_op = store_read(ctx, std::move(rr));
  auto r = co_await std::move(r_op);
  if (r) ctx.hubs.remember(name, hub, r->meta);
  co_return r;
}

/// Parks on the stream's hub until it has something for `from` or the deadline
/// passes (nullopt).
asio::awaitable<std::optional<Wake>> wait_live(Context& ctx, const std::string& path, Offset from,
                                               Clock_::time_point deadline, SseOutput* output) {
  auto ex = co_await asio::this_coro::executor;
  auto w = LiveWait::make(from, ex, ctx.inbox);
  // An SSE response also stops waiting once its output has gone idle (it
  // can park then); the caller tells that from a deadline by the output.
  IdleCancel idle(output, w.get());
  StopLink on_stop(ctx.stop_signals, *w);
  ctx.hubs.wait(path, w);
  // Registered before this check, so a shutdown either sees this wait or
  // was already visible here.
  if (!w->value && !ctx.stopping && !(output && output->idle())) {
    w->timer.expires_at(deadline);
    co_await w->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  idle.clear();
  if (!w->value && !w->cancel()) {
    // The wake fired just as the deadline passed: it is already on its way.
    while (!w->value) {
      w->timer.expires_at(Clock_::time_point::max());
      co_await w->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
  co_return std::move(w->value);
}

// --------------------------------------------------------------------- GET

Result<ReadParams> parse_read_params(const Target& t) {
  ReadParams p;
  // count() and first(): no vector of values per parameter.
  const size_t offsets = t.count("offset");
  if (offsets > 1) return Error(errc::bad_offset, "offset must be given at most once");
  if (offsets == 1) {
    const std::string_view offset = *t.first("offset");
    auto spec = parse_offset_spec(offset);
    if (!spec) return Error(errc::bad_offset, "malformed offset '" + std::string(offset) + "'");
    p.from = *spec;
    p.offset_given = true;
  }
  const size_t lives = t.count("live");
  if (lives > 1) return Error(errc::bad_request, "live must be given at most once");
  if (lives == 1) {
    const std::string_view live = *t.first("live");
    if (live == "long-poll") {
      p.live = Live::long_poll;
    } else if (live == "sse") {
      p.live = Live::sse;
    } else {
      return Error(errc::bad_request, "live must be 'long-poll' or 'sse'");
    }
    if (!p.offset_given) return Error(errc::bad_offset, "live reads need an offset");
  }
  if (auto c = t.first("cursor")) p.cursor = std::string(*c);
  return p;
}

bool is_json_stream(const StreamMeta& m) {
  return is_json_media_type(media_type(m.config.content_type));
}

RecordsResponse data_response(Context& ctx, const Request& req, const StreamMeta& meta,
                              const Offset& start, const std::vector<RecordPtr>& records,
                              const Offset& next, bool up_to_date, bool closed, bool now_read,
                              const std::string* cursor) {
  auto res = response_for<RecordsResponse>(req, http::status::ok);
  decorate(res);
  res.keep_alive(req.keep_alive());
  res.set(http::field::content_type, meta.config.content_type);
  res.set("Stream-Next-Offset", next.text().view());
  if (meta.config.has_retention() || meta.earliest != Offset{})
    res.set("Stream-Earliest-Offset", meta.earliest.text().view());
  if (up_to_date) res.set("Stream-Up-To-Date", "true");
  if (closed && up_to_date) res.set("Stream-Closed", "true");
  if (cursor && !(closed && up_to_date)) res.set("Stream-Cursor", *cursor);
  if (now_read) {
    res.set(http::field::cache_control, "no-store");
  } else {
    res.set(http::field::etag, etag_for(meta.id, start, next, closed && up_to_date).view());
    const bool empty_open_tail = records.empty() && !(closed && up_to_date);
    res.set(http::field::cache_control,
            empty_open_tail ? "no-store" : "public, max-age=60, stale-while-revalidate=300");
  }
  res.body().records = records;
  res.body().json = is_json_stream(meta);
  (void)ctx;
  return res;
}

Response no_content_live(const Request& req, const Offset& next, bool closed,
                         const std::string& cursor) {
  auto res = make_response(req, http::status::no_content);
  res.set("Stream-Next-Offset", next.text().view());
  res.set("Stream-Up-To-Date", "true");
  if (closed) {
    res.set("Stream-Closed", "true");
  } else {
    res.set("Stream-Cursor", cursor);
  }
  res.set(http::field::cache_control, "no-store");
  return res;
}

Response error_response(const Request& req, const Error& e) {
  auto res = response_for<Response>(req, static_cast<http::status>(http_status(e.code)));
  decorate(res);
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  if (e.closed) res.set("Stream-Closed", "true");
  if (e.tail) res.set("Stream-Next-Offset", e.tail->text().view());
  if (e.tail && e.code == errc::precondition_failed)
    res.set(http::field::etag, "\"" + e.tail->str() + "\"");
  if (e.producer_epoch) res.set("Producer-Epoch", std::to_string(*e.producer_epoch));
  if (e.expected_seq) res.set("Producer-Expected-Seq", std::to_string(*e.expected_seq));
  if (e.received_seq) res.set("Producer-Received-Seq", std::to_string(*e.received_seq));
  if (e.earliest) res.set("Stream-Earliest-Offset", e.earliest->text().view());
  if (e.code == errc::unavailable || e.code == errc::shutting_down ||
      e.code == errc::too_many_readers)
    res.set(http::field::retry_after, "1");
  std::string body = std::string("{\"code\":\"") + errc_name(e.code) + "\",\"message\":";
  append_json_string(body, e.message);
  if (e.earliest) {
    body += ",\"earliest_offset\":";
    append_json_string(body, e.earliest->str());
  }
  body.push_back('}');
  res.body() = std::move(body);
  // The rest of such a request is not read: the connection cannot go on.
  const bool fatal = e.code == errc::payload_too_large || e.code == errc::request_timeout ||
                     e.code == errc::header_fields_too_large;
  res.keep_alive(req.keep_alive() && !fatal);
  res.prepare_payload();
  return res;
}

std::optional<Response> admit_reader(Context& ctx, const Request& req, const std::string& name,
                                     live::ReaderLimits::Slot& slot) {
  if (!ctx.readers || slot) return std::nullopt;
  using Refusal = live::ReaderLimits::Refusal;
  Refusal why = Refusal::none;
  slot = ctx.readers->try_acquire(name, why);
  if (slot) return std::nullopt;
  using Limit = metrics::HttpMetrics::Limit;
  std::string message;
  if (why == Refusal::per_stream) {
    ctx.metrics.limit_hit(Limit::max_readers_per_stream);
    message = "too many live readers on this stream (" +
              std::to_string(ctx.readers->per_stream_cap()) + "): retry later";
  } else {
    ctx.metrics.limit_hit(Limit::max_parked_readers);
    message = "too many live readers on this server (" + std::to_string(ctx.readers->total_cap()) +
              "): retry later";
  }
  return error_response(req, Error(errc::too_many_readers, std::move(message)));
}

namespace {

// handle_stream_request runs for every request on a stream, and g++ 12 sizes
// a coroutine's frame for every local of every scope: what only a GET or a
// rejected method needs lives in these frames, so that its own frame stays
// within the size Asio's per-thread frame cache recycles (1020 bytes).

/// A GET whose parameters are bad: a 404 if the stream does not exist
/// (an unknown stream is a 404 even when the parameters are bad), else the
/// parameters' 400.
asio::awaitable<bool> reject_read_params(Context& ctx, Stream& stream, Request& req,
                                         const std::string& name, const Error& bad) {
  auto exists_op = async_call<Result<StreamMeta>>(
      ctx.inbox, [&ctx, &name](auto cb) { ctx.store.head(name, std::move(cb)); });
  auto exists = co_await std::move(exists_op);
  if (!exists) {
    auto err_ = send_error(ctx, stream, req, exists.error());
    co_return co_await std::move(err_);
  }
  auto err_ = send_error(ctx, stream, req, bad);
  co_return co_await std::move(err_);
}

asio::awaitable<bool> handle_get(Context& ctx, Stream& stream, Request& req,
                                 const std::string& name, const Target& target) {
  auto params = parse_read_params(target);
  if (!params) {
    auto rejected = reject_read_params(ctx, stream, req, name, params.error());
    co_return co_await std::move(rejected);
  }
  if (ctx.exchange)
    ctx.exchange->mode = params->live == Live::none        ? ReadMode::catchup
                         : params->live == Live::long_poll ? ReadMode::long_poll
                                                           : ReadMode::sse;
  switch (params->live) {
    case Live::none:
      co_return co_await handle_catch_up(ctx, stream, req, name, *params);
    case Live::long_poll:
      co_return co_await handle_long_poll(ctx, stream, req, name, *params);
    case Live::sse:
      co_return co_await handle_sse(ctx, stream, req, name, *params);
  }
  co_return false;  // not reached: every Live is handled above
}

asio::awaitable<bool> method_not_allowed(Context& ctx, Stream& stream, Request& req) {
  auto res = error_response(req, Error(errc::method_not_allowed, "method not allowed on a stream"));
  res.set(http::field::allow, "GET, HEAD, PUT, POST, DELETE, OPTIONS");
  co_return co_await send(ctx, stream, res);
}

}  // namespace

asio::awaitable<bool> handle_stream_request(Context& ctx, Stream& stream, Request& req) {
  std::string_view raw(req.target().data(), req.target().size());
  auto target = parse_target(raw);
  if (!target) {
    auto err_ = send_error(ctx, stream, req, target.error());
    co_return co_await std::move(err_);
  }
  // The decoded path is not needed after this: its storage becomes the name.
  auto name = take_stream_name(std::move(target->path));
  if (!name) {
    auto err_ = send_error(ctx, stream, req, name.error());
    co_return co_await std::move(err_);
  }

  switch (req.method()) {
    case http::verb::put:
      co_return co_await handle_put(ctx, stream, req, *name);
    case http::verb::post:
      co_return co_await handle_post(ctx, stream, req, *name);
    case http::verb::head:
      co_return co_await handle_head(ctx, stream, req, *name);
    case http::verb::delete_:
      co_return co_await handle_delete(ctx, stream, req, *name);
    case http::verb::get:
      co_return co_await handle_get(ctx, stream, req, *name, *target);
    default:
      break;
  }
  co_return co_await method_not_allowed(ctx, stream, req);
}

}  // namespace ds::http_server
