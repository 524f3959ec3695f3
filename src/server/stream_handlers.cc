// The protocol's operations on a stream URL: PUT, POST, GET (catch-up,
// long-poll, SSE), HEAD and DELETE. Parsing and decisions come from
// protocol/; this file maps them onto HTTP and onto the store's calls.

#include <algorithm>

#include "common/json_string.h"
#include "common/log.h"
#include "protocol/content_encoding.h"
#include "protocol/cursor.h"
#include "protocol/headers.h"
#include "protocol/http_status.h"
#include "protocol/sse.h"
#include "protocol/target.h"
#include "server/http.h"
#include "server/parking.h"
#include "server/sse_output.h"

namespace ds::http_server {
namespace {

using Clock_ = std::chrono::steady_clock;

/// How long a long-poll waits in its coroutine before it parks in the lot.
constexpr auto kParkLongPollAfter = std::chrono::milliseconds(250);

/// How long an SSE response past its session's end may still take to write
/// what was queued before its connection is closed anyway (at most
/// --write-timeout): a reader that keeps up gets its last events and the end
/// of the body, a reader that stopped reading is not waited for.
Clock_::time_point sse_hard_end(const Context& ctx, Clock_::time_point session_end) {
  return session_end +
         std::min<Clock_::duration>(std::chrono::seconds(1), ctx.options.write_timeout);
}

std::string_view header(const Request& req, std::string_view name) {
  auto it = req.find(name);
  if (it == req.end()) return {};
  return {it->value().data(), it->value().size()};
}

bool has_header(const Request& req, std::string_view name) { return req.find(name) != req.end(); }

Response make_response(const Request& req, http::status status) {
  Response res{status, req.version()};
  decorate(res);
  res.keep_alive(req.keep_alive());
  return res;
}

/// A Content-Type value shaped like `type/subtype`; anything else counts as absent.
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

std::string etag_for(uint64_t stream_id, const Offset& start, const Offset& end, bool closed) {
  std::string tag = "\"" + std::to_string(stream_id) + ":" + start.str() + ":" + end.str();
  if (closed) tag += ":c";
  tag += "\"";
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
}

asio::awaitable<bool> send(Context& ctx, Stream& stream, Response& res) {
  res.prepare_payload();
  co_return co_await write_response(ctx, stream, res);
}

asio::awaitable<bool> send(Context& ctx, Stream& stream, RecordsResponse& res) {
  res.prepare_payload();
  co_return co_await write_response(ctx, stream, res);
}

/// Keeps a gauge up while it lives.
class GaugeUp {
 public:
  explicit GaugeUp(metrics::Gauge& g) : g_(g) { g_.inc(); }
  ~GaugeUp() { g_.dec(); }
  GaugeUp(const GaugeUp&) = delete;
  GaugeUp& operator=(const GaugeUp&) = delete;

 private:
  metrics::Gauge& g_;
};

// --------------------------------------------------------------------- store calls

template <class T>
using StoreResult = Result<T>;

auto store_read(Context& ctx, ReadRequest rr) {
  return async_call<Result<ReadOutcome>>([&ctx, rr = std::move(rr)](auto cb) mutable {
    ctx.store.read(std::move(rr), std::move(cb));
  });
}

/// A read for a long-poll or SSE response: from the stream's hub buffer when
/// it holds the records from `from` on (no storage read; the sliding TTL is
/// renewed with a touch), else from storage, whose metadata the hub then
/// remembers so that it can answer the next ones. `live`: the storage read's
/// ReadRequest::live.
asio::awaitable<Result<ReadOutcome>> live_read(Context& ctx, const std::string& name,
                                               const OffsetSpec& from, bool live) {
  if (from.kind == OffsetSpec::Kind::at) {
    auto hit = ctx.hubs.read_buffered(name, from.at, ctx.options.read_chunk_bytes);
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
  auto r = std::move(*co_await std::move(r_op));
  if (r) ctx.hubs.remember(name, hub, r->meta);
  co_return r;
}

/// Where a hub wake lands: set on the connection's executor, which then
/// cancels the timer the coroutine sleeps on.
struct PendingWake {
  explicit PendingWake(asio::any_io_executor ex) : timer(std::move(ex)) {}
  asio::steady_timer timer;
  std::optional<Wake> value;
};

/// On shutdown, a parked reader stops waiting (as if its deadline passed).
std::function<void()> wake_on_stop(std::shared_ptr<PendingWake> pending) {
  return [pending] {
    auto ex = pending->timer.get_executor();
    asio::post(ex, [pending] { pending->timer.cancel(); });
  };
}

/// Parks on the stream's hub until it has something for `from` or the deadline
/// passes (nullopt).
asio::awaitable<std::optional<Wake>> wait_live(Context& ctx, const std::string& path, Offset from,
                                               Clock_::time_point deadline,
                                               SseOutput* output = nullptr) {
  auto ex = co_await asio::this_coro::executor;
  auto pending = std::make_shared<PendingWake>(ex);
  // An SSE response also stops waiting once its output has gone idle (it
  // can park then); the caller tells that from a deadline by the output.
  if (output) output->on_idle = [pending] { pending->timer.cancel(); };
  StopRegistration on_stop(ctx.stop_signals, wake_on_stop(pending));
  auto waiter = ctx.hubs.wait(path, from, [pending](Wake w) {
    auto wex = pending->timer.get_executor();
    asio::post(wex, [pending, w = std::move(w)]() mutable {
      pending->value.emplace(std::move(w));
      pending->timer.cancel();
    });
  });
  // Registered before this check, so a shutdown either sees this wait or
  // was already visible here.
  if (!pending->value && !ctx.stopping && !(output && output->idle())) {
    pending->timer.expires_at(deadline);
    co_await pending->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (output) output->on_idle = nullptr;
  if (!pending->value && !waiter->cancel()) {
    // The wake fired just as the deadline passed: it is already posted.
    while (!pending->value) {
      pending->timer.expires_at(Clock_::time_point::max());
      co_await pending->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
  co_return std::move(pending->value);
}

// --------------------------------------------------------------------- PUT

asio::awaitable<bool> handle_put(Context& ctx, Stream& stream, Request& req,
                                 const std::string& name) {
  CreateRequest cr;
  cr.path = name;
  std::string_view ct = header(req, "content-type");
  if (valid_content_type(ct)) cr.config.content_type = std::string(trim(ct));

  bool has_ttl = has_header(req, "stream-ttl");
  bool has_expires = has_header(req, "stream-expires-at");
  if (has_ttl && has_expires) {
    {
      Response err_ = error_response(
          req, Error(errc::bad_request, "Stream-TTL and Stream-Expires-At are mutually exclusive"));
      co_return co_await send(ctx, stream, err_);
    }
  }
  if (has_ttl) {
    auto ttl = parse_ttl_seconds(header(req, "stream-ttl"));
    if (!ttl) {
      Response err_ = error_response(
          req, Error(errc::bad_request,
                     "Stream-TTL must be a non-negative integer without sign or leading zeros, "
                     "at most " +
                         std::to_string(kMaxTtlSeconds) + " (10 years)"));
      co_return co_await send(ctx, stream, err_);
    }
    cr.config.ttl_seconds = *ttl;
  }
  if (has_expires) {
    auto text = header(req, "stream-expires-at");
    auto at = parse_expires_at_ms(text);
    if (!at) {
      Response err_ =
          error_response(req, Error(errc::bad_request,
                                    "Stream-Expires-At must be an RFC 3339 timestamp no later than "
                                    "9999-12-31T23:59:59.999Z"));
      co_return co_await send(ctx, stream, err_);
    }
    cr.config.expires_at_ms = *at;
    cr.config.expires_at_text = std::string(text);
  }
  cr.closed = is_true_flag(header(req, "stream-closed"));

  if (has_header(req, "stream-forked-from")) {
    auto source = percent_decode(header(req, "stream-forked-from"), false);
    std::string_view sv = source ? std::string_view(*source) : std::string_view();
    if (auto scheme = sv.find("://"); scheme != std::string_view::npos) {
      auto slash = sv.find('/', scheme + 3);
      sv = slash == std::string_view::npos ? std::string_view() : sv.substr(slash);
    }
    auto src = stream_name(sv);
    if (!src) {
      if (src.error().code == errc::not_found) {
        {
          Response err_ =
              error_response(req, Error(errc::not_found, "fork source stream not found"));
          co_return co_await send(ctx, stream, err_);
        }
      }
      {
        Response err_ = error_response(req, src.error());
        co_return co_await send(ctx, stream, err_);
      }
    }
    cr.forked_from = std::move(*src);
    if (has_header(req, "stream-fork-offset")) {
      auto off = parse_offset(header(req, "stream-fork-offset"));
      if (!off) {
        Response err_ =
            error_response(req, Error(errc::bad_offset, "malformed Stream-Fork-Offset"));
        co_return co_await send(ctx, stream, err_);
      }
      cr.fork_offset = *off;
    }
    if (has_header(req, "stream-fork-sub-offset")) {
      auto sub = parse_strict_uint(header(req, "stream-fork-sub-offset"));
      if (!sub || *sub > kMaxSafeInteger) {
        {
          Response err_ = error_response(
              req,
              Error(errc::bad_request, "Stream-Fork-Sub-Offset must be a non-negative integer"));
          co_return co_await send(ctx, stream, err_);
        }
      }
      cr.fork_sub_offset = *sub;
    }
  } else if (has_header(req, "stream-fork-offset") || has_header(req, "stream-fork-sub-offset")) {
    {
      Response err_ = error_response(
          req, Error(errc::bad_request,
                     "Stream-Fork-Offset and Stream-Fork-Sub-Offset require Stream-Forked-From"));
      co_return co_await send(ctx, stream, err_);
    }
  }
  cr.body = std::move(req.body());

  auto result_op = async_call<Result<CreateOutcome>>([&ctx, cr = std::move(cr)](auto cb) mutable {
    ctx.store.create(std::move(cr), std::move(cb));
  });
  auto result = std::move(*co_await std::move(result_op));
  if (!result) {
    Response err_ = error_response(req, result.error());
    co_return co_await send(ctx, stream, err_);
  }

  const auto& meta = result->meta;
  auto res = make_response(req, result->created ? http::status::created : http::status::ok);
  res.set(http::field::content_type, meta.config.content_type);
  res.set("Stream-Next-Offset", meta.tail.str());
  if (meta.closed) res.set("Stream-Closed", "true");
  if (result->created) {
    std::string host(header(req, "host"));
    if (host.empty()) host = "localhost";
    res.set(http::field::location,
            "http://" + host + std::string(req.target().substr(0, req.target().find('?'))));
  }
  res.set(http::field::cache_control, "no-store");
  co_return co_await send(ctx, stream, res);
}

// --------------------------------------------------------------------- POST

asio::awaitable<bool> handle_post(Context& ctx, Stream& stream, Request& req,
                                  const std::string& name) {
  AppendRequest ar;
  ar.path = name;
  const bool has_id = has_header(req, "producer-id");
  const bool has_epoch = has_header(req, "producer-epoch");
  const bool has_seq = has_header(req, "producer-seq");
  if (has_id || has_epoch || has_seq) {
    if (!(has_id && has_epoch && has_seq)) {
      {
        Response err_ = error_response(
            req, Error(errc::bad_request,
                       "Producer-Id, Producer-Epoch and Producer-Seq must be sent together"));
        co_return co_await send(ctx, stream, err_);
      }
    }
    auto id = header(req, "producer-id");
    auto epoch = parse_safe_uint(header(req, "producer-epoch"));
    auto seq = parse_safe_uint(header(req, "producer-seq"));
    if (id.empty()) {
      Response err_ =
          error_response(req, Error(errc::bad_request, "Producer-Id must not be empty"));
      co_return co_await send(ctx, stream, err_);
    }
    if (!epoch || !seq) {
      {
        Response err_ = error_response(
            req, Error(errc::bad_request,
                       "Producer-Epoch and Producer-Seq must be integers from 0 to 2^53-1"));
        co_return co_await send(ctx, stream, err_);
      }
    }
    ar.producer = ProducerTriple{std::string(id), *epoch, *seq};
  }
  if (has_header(req, "stream-seq")) ar.stream_seq = std::string(header(req, "stream-seq"));
  ar.close = is_true_flag(header(req, "stream-closed"));
  ar.body = std::move(req.body());
  if (ar.body.empty() && !ar.close) {
    {
      Response err_ = error_response(
          req,
          Error(errc::empty_body, "empty body: an append needs data (or Stream-Closed: true)"));
      co_return co_await send(ctx, stream, err_);
    }
  }
  if (!ar.body.empty()) {
    std::string_view ct = header(req, "content-type");
    if (!valid_content_type(ct)) {
      {
        Response err_ = error_response(
            req, Error(errc::bad_request, "an append with a body needs a Content-Type"));
        co_return co_await send(ctx, stream, err_);
      }
    }
    ar.content_type = std::string(ct);
  }
  const bool has_body = !ar.body.empty();
  const bool with_producer = ar.producer.has_value();

  auto result_op = async_call<Result<AppendOutcome>>([&ctx, ar = std::move(ar)](auto cb) mutable {
    ctx.store.append(std::move(ar), std::move(cb));
  });
  auto result = std::move(*co_await std::move(result_op));
  if (!result) {
    Response err_ = error_response(req, result.error());
    co_return co_await send(ctx, stream, err_);
  }

  const auto& out = *result;
  http::status status = http::status::no_content;
  if (out.kind == AppendOutcome::Kind::appended && with_producer && has_body)
    status = http::status::ok;
  auto res = make_response(req, status);
  res.set("Stream-Next-Offset", out.tail.str());
  if (out.closed) res.set("Stream-Closed", "true");
  if (out.producer_epoch) res.set("Producer-Epoch", std::to_string(*out.producer_epoch));
  if (out.producer_seq) res.set("Producer-Seq", std::to_string(*out.producer_seq));
  res.set(http::field::cache_control, "no-store");
  co_return co_await send(ctx, stream, res);
}

// --------------------------------------------------------------------- HEAD / DELETE

asio::awaitable<bool> handle_head(Context& ctx, Stream& stream, Request& req,
                                  const std::string& name) {
  auto result_op = async_call<Result<StreamMeta>>(
      [&ctx, name](auto cb) { ctx.store.head(name, std::move(cb)); });
  auto result = std::move(*co_await std::move(result_op));
  if (!result) {
    auto res = error_response(req, result.error());
    res.body().clear();
    co_return co_await send(ctx, stream, res);
  }
  auto res = make_response(req, http::status::ok);
  set_stream_headers(res, *result);
  res.set("Stream-Next-Offset", result->tail.str());
  if (result->closed) res.set("Stream-Closed", "true");
  res.set(http::field::cache_control, "no-store");
  res.set(http::field::etag, etag_for(result->id, Offset{}, result->tail, result->closed));
  res.prepare_payload();
  co_return co_await write_response(ctx, stream, res);
}

asio::awaitable<bool> handle_delete(Context& ctx, Stream& stream, Request& req,
                                    const std::string& name) {
  auto result_op =
      async_call<Result<Unit>>([&ctx, name](auto cb) { ctx.store.remove(name, std::move(cb)); });
  auto result = std::move(*co_await std::move(result_op));
  if (!result) {
    Response err_ = error_response(req, result.error());
    co_return co_await send(ctx, stream, err_);
  }
  auto res = make_response(req, http::status::no_content);
  co_return co_await send(ctx, stream, res);
}

// --------------------------------------------------------------------- GET

enum class Live { none, long_poll, sse };

struct ReadParams {
  OffsetSpec from;
  bool offset_given = false;
  Live live = Live::none;
  std::string cursor;
};

Result<ReadParams> parse_read_params(const Target& t) {
  ReadParams p;
  auto offsets = t.all("offset");
  if (offsets.size() > 1) return Error(errc::bad_offset, "offset must be given at most once");
  if (offsets.size() == 1) {
    auto spec = parse_offset_spec(offsets[0]);
    if (!spec) return Error(errc::bad_offset, "malformed offset '" + std::string(offsets[0]) + "'");
    p.from = *spec;
    p.offset_given = true;
  }
  auto live = t.all("live");
  if (live.size() > 1) return Error(errc::bad_request, "live must be given at most once");
  if (live.size() == 1) {
    if (live[0] == "long-poll") {
      p.live = Live::long_poll;
    } else if (live[0] == "sse") {
      p.live = Live::sse;
    } else {
      return Error(errc::bad_request, "live must be 'long-poll' or 'sse'");
    }
    if (!p.offset_given) return Error(errc::bad_offset, "live reads need an offset");
  }
  if (auto c = t.all("cursor"); !c.empty()) p.cursor = std::string(c[0]);
  return p;
}

bool is_json_stream(const StreamMeta& m) {
  return is_json_media_type(media_type(m.config.content_type));
}

/// A 200 carrying records (catch-up or long-poll). The body refers to the
/// records (no copy): every answer built from the same records shares them.
RecordsResponse data_response(Context& ctx, const Request& req, const StreamMeta& meta,
                              const Offset& start, const std::vector<RecordPtr>& records,
                              const Offset& next, bool up_to_date, bool closed, bool now_read,
                              const std::string* cursor) {
  RecordsResponse res{http::status::ok, req.version()};
  decorate(res);
  res.keep_alive(req.keep_alive());
  res.set(http::field::content_type, meta.config.content_type);
  res.set("Stream-Next-Offset", next.str());
  if (up_to_date) res.set("Stream-Up-To-Date", "true");
  if (closed && up_to_date) res.set("Stream-Closed", "true");
  if (cursor && !(closed && up_to_date)) res.set("Stream-Cursor", *cursor);
  if (now_read) {
    res.set(http::field::cache_control, "no-store");
  } else {
    res.set(http::field::etag, etag_for(meta.id, start, next, closed && up_to_date));
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
  res.set("Stream-Next-Offset", next.str());
  res.set("Stream-Up-To-Date", "true");
  if (closed) {
    res.set("Stream-Closed", "true");
  } else {
    res.set("Stream-Cursor", cursor);
  }
  res.set(http::field::cache_control, "no-store");
  return res;
}

asio::awaitable<bool> handle_catch_up(Context& ctx, Stream& stream, Request& req,
                                      const std::string& name, const ReadParams& p) {
  const bool gzip_on = ctx.options.gzip_min_bytes > 0;
  const bool client_gzip = gzip_on && accepts_gzip(header(req, "accept-encoding"));
  ReadRequest rr{name, p.from, ctx.options.read_chunk_bytes};
  // The records may be file slices (sent with sendfile) unless the response
  // may be gzipped: the body then has to be in memory anyway, and a body too
  // small to be gzipped gains little from sendfile. (RecordsBody would still
  // pread slices for gzip; this keeps that path off the hot one.)
  rr.file_slices = !client_gzip;
  auto r_op = store_read(ctx, std::move(rr));
  auto r = std::move(*co_await std::move(r_op));
  if (!r) {
    Response err_ = error_response(req, r.error());
    co_return co_await send(ctx, stream, err_);
  }
  const bool now_read = p.from.kind == OffsetSpec::Kind::now;
  auto res = data_response(ctx, req, r->meta, r->start, r->records, r->next, r->up_to_date,
                           r->meta.closed, now_read, nullptr);
  // gzip: a separate representation, with its own ETag, for clients that
  // accept it; caches keep both apart by Vary: Accept-Encoding.
  const bool gzip =
      client_gzip && gzip_eligible(RecordsBody::size(res.body()), ctx.options.gzip_min_bytes);
  if (gzip_on) add_vary(res, "Accept-Encoding");
  std::string identity_etag(res[http::field::etag]);
  if (gzip && !identity_etag.empty()) res.set(http::field::etag, gzip_etag(identity_etag));
  if (!now_read &&
      etag_matches(header(req, "if-none-match"), std::string_view(res[http::field::etag]))) {
    auto not_modified = make_response(req, http::status::not_modified);
    not_modified.set(http::field::etag, res[http::field::etag]);
    not_modified.set(http::field::cache_control, res[http::field::cache_control]);
    if (gzip_on) add_vary(not_modified, "Accept-Encoding");
    co_return co_await send(ctx, stream, not_modified);
  }
  if (gzip) {
    auto plain = RecordsBody::render(res.body());
    if (!plain) {
      // A file slice could not be read: sending the identity body would fail
      // the same way, after a 200 head.
      Response err_ =
          error_response(req, Error(errc::storage_failure, "cannot read the stream's data"));
      co_return co_await send(ctx, stream, err_);
    }
    if (auto z = gzip_compress(*plain, 1)) {
      Response zipped{std::move(res.base())};
      zipped.body() = std::move(*z);
      zipped.set(http::field::content_encoding, "gzip");
      co_return co_await send(ctx, stream, zipped);
    }
    if (!identity_etag.empty()) res.set(http::field::etag, identity_etag);
  }
  co_return co_await send(ctx, stream, res);
}

/// Hands a waiting long-poll to the parking lot: it answers from there.
void park_long_poll(Context& ctx, Stream& stream, const Request& req, const std::string& name,
                    const StreamMeta& meta, Offset start, Offset at,
                    const std::string& client_cursor, Clock_::time_point deadline) {
  LongPollState st;
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

/// The waiting part of a long-poll at `at` (nothing to answer at once):
/// parks it in the lot when it can, else waits on the hub here. `wake`: the
/// hub's answer already in hand (a resumed long-poll), if any.
asio::awaitable<bool> long_poll_wait(Context& ctx, Stream& stream, Request& req,
                                     const std::string& name, const StreamMeta& meta, Offset start,
                                     Offset at, const std::string& client_cursor,
                                     Clock_::time_point deadline, std::optional<Wake> wake) {
  auto cursor = [&] { return next_cursor(ctx.clock.now_ms(), client_cursor); };
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
        park_long_poll(ctx, stream, req, name, meta, start, at, client_cursor, deadline);
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
          park_long_poll(ctx, stream, req, name, meta, start, at, client_cursor, deadline);
          co_return false;
        }
        continue;
      }
    }
    switch (wake->kind) {
      case Wake::Kind::data: {
        auto c = cursor();
        Offset next = wake->records.empty() ? at : wake->records.back()->end;
        bool up_to_date = next >= wake->tail;
        auto res = data_response(ctx, req, meta, start, wake->records, next, up_to_date,
                                 wake->closed, false, &c);
        co_return co_await send(ctx, stream, res);
      }
      case Wake::Kind::closed: {
        auto res = no_content_live(req, wake->tail, true, "");
        co_return co_await send(ctx, stream, res);
      }
      case Wake::Kind::gone: {
        Response err_ = error_response(req, Error(errc::not_found, "stream was deleted"));
        co_return co_await send(ctx, stream, err_);
      }
      case Wake::Kind::catch_up: {
        const auto again_from = OffsetSpec::position(at);
        auto again_op = live_read(ctx, name, again_from, false);
        auto again = co_await std::move(again_op);
        if (!again) {
          Response err_ = error_response(req, again.error());
          co_return co_await send(ctx, stream, err_);
        }
        if (!again->records.empty() || again->meta.closed) {
          auto c = cursor();
          auto res = data_response(ctx, req, again->meta, start, again->records, again->next,
                                   again->up_to_date, again->meta.closed, false, &c);
          co_return co_await send(ctx, stream, res);
        }
        at = again->next;
        break;
      }
    }
    wake.reset();
  }
  auto res = no_content_live(req, at, false, cursor());
  co_return co_await send(ctx, stream, res);
}

asio::awaitable<bool> handle_long_poll(Context& ctx, Stream& stream, Request& req,
                                       const std::string& name, const ReadParams& p) {
  const auto deadline = Clock_::now() + ctx.options.long_poll_timeout;
  auto r_op = live_read(ctx, name, p.from, true);
  auto r = co_await std::move(r_op);
  if (!r) {
    Response err_ = error_response(req, r.error());
    co_return co_await send(ctx, stream, err_);
  }
  if (!r->records.empty()) {
    auto c = next_cursor(ctx.clock.now_ms(), p.cursor);
    auto res = data_response(ctx, req, r->meta, r->start, r->records, r->next, r->up_to_date,
                             r->meta.closed, false, &c);
    co_return co_await send(ctx, stream, res);
  }
  const StreamMeta meta = r->meta;
  std::optional<Wake> no_wake;
  auto waiting = long_poll_wait(ctx, stream, req, name, meta, r->start, r->next, p.cursor, deadline,
                                std::move(no_wake));
  co_return co_await std::move(waiting);
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
    auto answer = long_poll_wait(ctx, stream, req, name, meta, reader->st.start, reader->st.at,
                                 reader->st.cursor, reader->st.deadline, std::move(wake));
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

enum class SseEnd {
  ended,  ///< the response is over (or the client gone): finish and close
  park,   ///< caught up with nothing left to write: hand the socket to the lot
};

/// The events of an SSE response from `st` on: catch-up reads (paced by the
/// output queue) and live wakes (`wake` first, if given) until the stream
/// closes, the session's time is up, the server drains, the client goes (or
/// falls too far behind), or the reader can park.
asio::awaitable<SseEnd> sse_loop(Context& ctx, SseOutput& output, const std::string& name,
                                 SseState& st, std::optional<Wake> wake) {
  bool closed_at_tail = false;
  for (;;) {
    if (!wake) {
      if (closed_at_tail || ctx.stopping) break;
      if (!st.up_to_date) {
        // The session's time is up even while catching up (the reader resumes
        // from the last control event it got).
        if (Clock_::now() >= st.session_end) break;
        // Catch-up: read on only once the client has taken what was queued, so
        // a reader far behind never fills the queue.
        {
          auto room = output.wait_for_room();
          co_await std::move(room);
        }
        if (output.failed()) co_return SseEnd::ended;
        const auto more_from = OffsetSpec::position(st.at);
        auto more_op = live_read(ctx, name, more_from, false);
        auto more = co_await std::move(more_op);
        if (!more) break;
        closed_at_tail = more->up_to_date && more->meta.closed;
        std::string out;
        sse_emit(ctx.clock, st, out, more->records, more->next, more->up_to_date, closed_at_tail);
        if (!output.push_paced(out)) co_return SseEnd::ended;
        st.at = more->next;
        st.up_to_date = more->up_to_date;
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
        static const std::string kKeepAlive = ": keep-alive\n\n";
        if (!output.push(kKeepAlive)) co_return SseEnd::ended;
        continue;
      }
    }
    std::string out;
    switch (wake->kind) {
      case Wake::Kind::data: {
        Offset next = wake->records.empty() ? st.at : wake->records.back()->end;
        bool caught_up = next >= wake->tail;
        closed_at_tail = caught_up && wake->closed;
        sse_emit(ctx.clock, st, out, wake->records, next, caught_up, closed_at_tail);
        st.at = next;
        st.up_to_date = caught_up;
        break;
      }
      case Wake::Kind::closed:
        closed_at_tail = true;
        sse_emit(ctx.clock, st, out, {}, wake->tail, true, true);
        break;
      case Wake::Kind::gone:
        closed_at_tail = true;  // nothing more will come; end the response
        break;
      case Wake::Kind::catch_up:
        st.up_to_date = false;
        break;
    }
    wake.reset();
    // Live data goes out without waiting for the client; one that does not
    // keep up overflows the queue's cap and is disconnected (it resumes from
    // the last control event it read).
    if (!out.empty() && !output.push(out)) co_return SseEnd::ended;
  }
  if (ctx.stopping && !closed_at_tail) {
    // Draining: a last control event with the offset the client has, so it
    // resumes from there on another server.
    std::string out;
    Offset delivered = st.at;
    if (!st.held.empty()) delivered = Offset{st.at.hi, st.at.lo - st.held.size()};
    sse_control(ctx.clock, st, out, delivered, st.up_to_date && st.held.empty(), false);
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

asio::awaitable<bool> handle_sse(Context& ctx, Stream& stream, Request& req,
                                 const std::string& name, const ReadParams& p) {
  // Resolve the stream (and the start offset) before committing to a 200.
  auto first_op = live_read(ctx, name, p.from, true);
  auto first = co_await std::move(first_op);
  if (!first) {
    Response err_ = error_response(req, first.error());
    co_return co_await send(ctx, stream, err_);
  }
  SseState st;
  st.base64 = !is_text_media_type(media_type(first->meta.config.content_type));
  st.json = is_json_stream(first->meta);
  st.cursor = p.cursor;
  st.session_end = Clock_::now() + ctx.options.sse_max_duration;

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
  GaugeUp open(ctx.metrics.open_sse);

  auto output = std::make_shared<SseOutput>(ctx, stream, ctx.options.max_pending_output_bytes,
                                            sse_hard_end(ctx, st.session_end));
  st.at = first->next;
  st.up_to_date = first->up_to_date;
  const bool closed_at_tail = first->up_to_date && first->meta.closed;
  {
    std::string out;
    sse_emit(ctx.clock, st, out, first->records, first->next, first->up_to_date, closed_at_tail);
    output->push_paced(out);
  }
  first = Error(errc::not_found, "");  // drop the records: the lot keeps only the state
  SseEnd end = SseEnd::ended;
  if (!closed_at_tail) {
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

}  // namespace

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

Response error_response(const Request& req, const Error& e) {
  Response res{static_cast<http::status>(http_status(e.code)), req.version()};
  decorate(res);
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  if (e.closed) res.set("Stream-Closed", "true");
  if (e.tail) res.set("Stream-Next-Offset", e.tail->str());
  if (e.producer_epoch) res.set("Producer-Epoch", std::to_string(*e.producer_epoch));
  if (e.expected_seq) res.set("Producer-Expected-Seq", std::to_string(*e.expected_seq));
  if (e.received_seq) res.set("Producer-Received-Seq", std::to_string(*e.received_seq));
  if (e.code == errc::unavailable || e.code == errc::shutting_down)
    res.set(http::field::retry_after, "1");
  std::string body = std::string("{\"code\":\"") + errc_name(e.code) + "\",\"message\":";
  append_json_string(body, e.message);
  body.push_back('}');
  res.body() = std::move(body);
  const bool fatal = e.code == errc::payload_too_large;
  res.keep_alive(req.keep_alive() && !fatal);
  res.prepare_payload();
  return res;
}

asio::awaitable<bool> handle_stream_request(Context& ctx, Stream& stream, Request& req) {
  std::string_view raw(req.target().data(), req.target().size());
  auto target = parse_target(raw);
  if (!target) {
    Response err_ = error_response(req, target.error());
    co_return co_await send(ctx, stream, err_);
  }
  auto name = stream_name(target->path);
  if (!name) {
    Response err_ = error_response(req, name.error());
    co_return co_await send(ctx, stream, err_);
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
    case http::verb::get: {
      auto params = parse_read_params(*target);
      if (!params) {
        // An unknown stream is a 404 even when the parameters are bad.
        auto exists_op = async_call<Result<StreamMeta>>(
            [&ctx, &name](auto cb) { ctx.store.head(*name, std::move(cb)); });
        auto exists = std::move(*co_await std::move(exists_op));
        if (!exists) {
          Response err_ = error_response(req, exists.error());
          co_return co_await send(ctx, stream, err_);
        }
        {
          Response err_ = error_response(req, params.error());
          co_return co_await send(ctx, stream, err_);
        }
      }
      if (ctx.exchange)
        ctx.exchange->mode = params->live == Live::none        ? ReadMode::catchup
                             : params->live == Live::long_poll ? ReadMode::long_poll
                                                               : ReadMode::sse;
      switch (params->live) {
        case Live::none:
          co_return co_await handle_catch_up(ctx, stream, req, *name, *params);
        case Live::long_poll:
          co_return co_await handle_long_poll(ctx, stream, req, *name, *params);
        case Live::sse:
          co_return co_await handle_sse(ctx, stream, req, *name, *params);
      }
      break;
    }
    default:
      break;
  }
  auto res = error_response(req, Error(errc::method_not_allowed, "method not allowed on a stream"));
  res.set(http::field::allow, "GET, HEAD, PUT, POST, DELETE, OPTIONS");
  co_return co_await send(ctx, stream, res);
}

}  // namespace ds::http_server
