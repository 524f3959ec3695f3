// Listener, connection loop and dispatch. One coroutine per connection, on
// its own strand; the coroutine frame owns the socket.

#include <sched.h>

#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/signal_set.hpp>
#include <cerrno>
#include <limits>
#include <thread>
#include <vector>

#include "common/json_string.h"
#include "common/log.h"
#include "protocol/framing.h"
#include "protocol/headers.h"
#include "protocol/target.h"
#include "server/file_send.h"
#include "server/http.h"
#include "server/parking.h"
#include "server/response_head.h"
#include "server/ui_assets.h"

namespace ds {

using namespace http_server;

namespace http_server {

template <class F>
void decorate(http::header<false, F>& res) {
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Cross-Origin-Resource-Policy", "cross-origin");
}
template void decorate(http::header<false, http::fields>&);
template void decorate(http::header<false, Fields>&);

namespace {

constexpr std::string_view kExposedHeaders =
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
    "Stream-Expires-At, Stream-Retention-Max-Age, Stream-Retention-Max-Bytes, "
    "Stream-Earliest-Offset, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
    "Producer-Received-Seq, Stream-SSE-Data-Encoding, ETag, Location, Content-Type, "
    "Content-Encoding, Vary, WWW-Authenticate, X-Request-Id";

/// Whether a shared cache may store the response (its headers then must
/// not depend on the request's Origin without saying so in Vary).
template <class F>
bool cacheable(const http::header<false, F>& head) {
  auto it = head.find(http::field::cache_control);
  if (it == head.end()) return head.result() == http::status::ok;
  const std::string_view v(it->value().data(), it->value().size());
  return v.find("no-store") == std::string_view::npos &&
         v.find("private") == std::string_view::npos;
}

}  // namespace

template <class F>
void add_vary(http::header<false, F>& head, std::string_view token) {
  auto it = head.find(http::field::vary);
  if (it == head.end()) {
    head.set(http::field::vary, token);
    return;
  }
  std::string v(it->value().data(), it->value().size());
  // Already listed (case-insensitively, as one comma-separated element)?
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    auto item = trim(std::string_view(v).substr(
        start, comma == std::string::npos ? std::string::npos : comma - start));
    if (iequals(item, token)) return;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  v += ", ";
  v += token;
  head.set(http::field::vary, v);
}
template void add_vary(http::header<false, http::fields>&, std::string_view);
template void add_vary(http::header<false, Fields>&, std::string_view);

template <class F>
void finalize_headers(Context& ctx, http::header<false, F>& head) {
  const auto& allowed = ctx.options.cors_origins;
  const bool any =
      allowed.empty() || std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  // A browser reads the exposed headers only on a CORS response, and every
  // CORS request carries an Origin: the 400 bytes go only to those. A
  // cacheable response then varies by Origin, so that a cache does not hand
  // a browser the copy stored for a client without one.
  const bool has_origin = !ctx.exchange || !ctx.exchange->origin.empty();
  if (has_origin) head.set(http::field::access_control_expose_headers, kExposedHeaders);
  if (any) {
    head.set(http::field::access_control_allow_origin, "*");
    if (cacheable(head)) add_vary(head, "Origin");
  } else {
    const std::string* origin = ctx.exchange ? &ctx.exchange->origin : nullptr;
    if (origin && !origin->empty() &&
        std::find(allowed.begin(), allowed.end(), *origin) != allowed.end()) {
      head.set(http::field::access_control_allow_origin, *origin);
      head.set(http::field::access_control_allow_credentials, "true");
    } else {
      head.erase(http::field::access_control_allow_origin);
    }
    add_vary(head, "Origin");
  }
  if (ctx.exchange) {
    head.set("X-Request-Id", ctx.exchange->id);
    ctx.exchange->status = head.result_int();
  }
}
template void finalize_headers(Context&, http::header<false, http::fields>&);
template void finalize_headers(Context&, http::header<false, Fields>&);

void ResponseMemory::add(uint64_t own, const std::vector<RecordPtr>* records) {
  uint64_t n = own;
  if (records) {
    MutexLock lock(mu_);
    for (const auto& r : *records) {
      if (r->bytes.size() < kShareMin) {
        n += r->bytes.size();
      } else if (shared_[r.get()]++ == 0) {
        n += r->bytes.size();
      }
    }
  }
  gauge_.inc(static_cast<int64_t>(n));
}

void ResponseMemory::remove(uint64_t own, const std::vector<RecordPtr>* records) {
  uint64_t n = own;
  if (records) {
    MutexLock lock(mu_);
    for (const auto& r : *records) {
      if (r->bytes.size() < kShareMin) {
        n += r->bytes.size();
        continue;
      }
      auto it = shared_.find(r.get());
      if (it != shared_.end() && --it->second == 0) {
        shared_.erase(it);
        n += r->bytes.size();
      }
    }
  }
  gauge_.dec(static_cast<int64_t>(n));
}

ResponseBytes::ResponseBytes(Context& ctx, uint64_t own, const std::vector<RecordPtr>* records)
    : memory_(ctx.response_memory),
      cap_(ctx.options.max_response_buffer_bytes),
      write_timeout_(ctx.options.write_timeout),
      own_(own),
      records_(records) {
  if (memory_) memory_->add(own_, records_);
}

ResponseBytes::~ResponseBytes() {
  if (memory_) memory_->remove(own_, records_);
}

std::chrono::milliseconds ResponseBytes::write_timeout() const {
  if (!memory_ || memory_->bytes() <= cap_) return write_timeout_;
  return std::min(write_timeout_, std::chrono::milliseconds(1000));
}

namespace {

/// Where a response's head is rendered: the connection's buffer (reused,
/// so it stops allocating after the first responses), or `local` for the
/// server-wide context of parked readers.
std::string& head_buffer(Context& ctx, std::string& local) {
  std::string& out = ctx.head_buffer ? *ctx.head_buffer : local;
  out.clear();
  return out;
}

/// Sends `pieces` (the rendered head first), waiting only if the socket is
/// full: each wait is bounded by --write-timeout (1 s while the responses
/// being written hold more than --max-response-buffer-bytes), and a client
/// that takes no bytes for that long has its connection closed, however
/// slowly it read before.
asio::awaitable<bool> send_all(Context& ctx, Stream& stream,
                               std::vector<file_send_detail::Piece> pieces,
                               const ResponseBytes& pinned) {
  const std::function<std::chrono::milliseconds()> wait_limit = [&pinned] {
    return pinned.write_timeout();
  };
  auto op = send_pieces(stream.socket(), std::move(pieces), wait_limit);
  const SendOutcome out = co_await std::move(op);
  count_sent(ctx, out.sent);
  if (out.ec == beast::error::timeout) ctx.metrics.write_timeouts.inc();
  co_return !out.ec;
}

/// A response whose body is in one string: head and body in one gathered
/// write, made at once, before any coroutine step; only what the socket did
/// not take is left to send_all.
asio::awaitable<bool> write_string_response(Context& ctx, Stream& stream, Response& res) {
  finalize_headers(ctx, res);
  if (ctx.stopping) res.keep_alive(false);
  ResponseBytes pinned(ctx, res.body().size());
  std::string local;
  std::string& head = head_buffer(ctx, local);
  render_head(res.base(), head);
  const std::string& body = res.body();
  auto& socket = stream.socket();
  beast::error_code ec;
  if (!socket.non_blocking()) socket.non_blocking(true, ec);
  size_t sent = 0;
  if (!ec) {
    const std::array<asio::const_buffer, 2> both{asio::buffer(head), asio::buffer(body)};
    sent = socket.write_some(both, ec);
    count_sent(ctx, sent);
  }
  if (!ec && sent == head.size() + body.size()) co_return res.keep_alive();
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) co_return false;
  std::vector<file_send_detail::Piece> rest;
  if (sent < head.size()) rest.push_back({head.data() + sent, -1, 0, head.size() - sent});
  const size_t body_sent = sent > head.size() ? sent - head.size() : 0;
  if (body_sent < body.size())
    rest.push_back({body.data() + body_sent, -1, 0, body.size() - body_sent});
  auto op = send_all(ctx, stream, std::move(rest), pinned);
  if (!co_await std::move(op)) co_return false;
  co_return res.keep_alive();
}

/// A records response: the rendered head, then the records from where they
/// are (memory, or file slices by sendfile) in gathered writes.
asio::awaitable<bool> write_records_response(Context& ctx, Stream& stream, RecordsResponse& res) {
  finalize_headers(ctx, res);
  if (ctx.stopping) res.keep_alive(false);
  // A file slice's `bytes` are empty, so ResponseMemory counts it as nothing:
  // only the in-memory records of the response hold memory, large shared
  // ones once.
  ResponseBytes pinned(ctx, 0, &res.body().records);
  std::string local;
  std::string& head = head_buffer(ctx, local);
  render_head(res.base(), head);
  auto op = send_all(
      ctx, stream, file_send_detail::pieces_of(res.body().records, res.body().json, head), pinned);
  if (!co_await std::move(op)) co_return false;
  co_return res.keep_alive();
}

/// Any other response (a chunked records body): Beast's serializer, one
/// write_some at a time, each with the same deadline as above.
template <class Body>
asio::awaitable<bool> write_message(Context& ctx, Stream& stream, http::response<Body, Fields>& res,
                                    uint64_t own_bytes, const std::vector<RecordPtr>* records) {
  finalize_headers(ctx, res);
  if (ctx.stopping) res.keep_alive(false);
  ResponseBytes pinned(ctx, own_bytes, records);
  http::response_serializer<Body, Fields> sr{res};
  beast::error_code ec;
  while (!sr.is_done()) {
    stream.expires_after(pinned.write_timeout());
    auto [wec, n] =
        co_await http::async_write_some(stream, sr, asio::as_tuple(asio::use_awaitable));
    count_sent(ctx, n);
    if (wec) {
      ec = wec;
      break;
    }
  }
  if (ec == beast::error::timeout) ctx.metrics.write_timeouts.inc();
  if (!ec) stream.expires_never();
  co_return !ec && res.keep_alive();
}

}  // namespace

// Not coroutines: each returns the chosen write's awaitable (no frame of its own).
asio::awaitable<bool> write_response(Context& ctx, Stream& stream, Response& res) {
  return write_string_response(ctx, stream, res);
}

asio::awaitable<bool> write_response(Context& ctx, Stream& stream, RecordsResponse& res) {
  // Rendered and sent by gathered writes and sendfile when the body has a
  // Content-Length (prepare_payload always gives one, RecordsBody knowing its
  // size) and is not too many pieces for a few writes; else Beast's
  // serializer, whose writer copies runs of small records into one buffer.
  constexpr size_t kMaxPieces = 4 * file_send_detail::kMaxGather;
  if (res.has_content_length() && !res.chunked() &&
      (has_file_slices(res.body().records) || res.body().records.size() < kMaxPieces))
    return write_records_response(ctx, stream, res);
  return write_message(ctx, stream, res, 0, &res.body().records);
}

uint64_t StopSignals::add(std::function<void()> on_stop) {
  MutexLock lock(mu_);
  uint64_t id = next_++;
  fns_.emplace(id, std::move(on_stop));
  return id;
}

void StopSignals::remove(uint64_t id) {
  MutexLock lock(mu_);
  fns_.erase(id);
}

void StopSignals::link(Hook& h) {
  MutexLock lock(mu_);
  h.prev_ = nullptr;
  h.next_ = hooks_;
  if (hooks_) hooks_->prev_ = &h;
  hooks_ = &h;
}

void StopSignals::unlink(Hook& h) {
  MutexLock lock(mu_);
  if (h.prev_) {
    h.prev_->next_ = h.next_;
  } else {
    hooks_ = h.next_;
  }
  if (h.next_) h.next_->prev_ = h.prev_;
  h.prev_ = h.next_ = nullptr;
}

void StopSignals::stop_all() {
  std::vector<std::function<void()>> fns;
  {
    MutexLock lock(mu_);
    for (auto& [id, fn] : fns_) fns.push_back(fn);
    // Under the lock: a hook's owner may unlink it and go away as soon as
    // the lock is free.
    for (Hook* h = hooks_; h; h = h->next_) h->on_stop();
  }
  for (auto& fn : fns) fn();
}

void log_exchange(Context& ctx, const Exchange& ex, std::string_view method, std::string_view path,
                  uint64_t bytes_in) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ex.started).count();
  if (ex.status != 0)
    ctx.metrics.record(metrics::HttpMetrics::method_from(method), ex.mode, ex.status, secs);
  if (!log::enabled(log::Level::info)) return;
  log::info("access", {{"id", ex.id},
                       {"remote", ex.remote},
                       {"method", method},
                       {"path", path},
                       {"mode", metrics::HttpMetrics::mode_name(ex.mode)},
                       {"status", ex.status},
                       {"bytes_in", bytes_in},
                       {"bytes_out", ex.bytes_out},
                       {"duration_ms", secs * 1000}});
}

}  // namespace http_server

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(75);
/// Bodies above this get a larger receive buffer while they are read (an
/// idle connection keeps only a small one).
constexpr uint64_t kSmallBody = uint64_t{16} * 1024;
constexpr uint64_t kBodyReceiveBytes = uint64_t{256} * 1024;
/// The first read of a request (the wait for its first byte) takes what the
/// buffer has room for, within these.
constexpr size_t kFirstReadMin = 1024;
constexpr size_t kFirstReadMax = size_t{64} * 1024;

Response preflight(const Request& req) {
  auto res = response_for<Response>(req, http::status::no_content);
  decorate(res);
  res.set(http::field::access_control_allow_methods, "GET, POST, PUT, DELETE, HEAD, OPTIONS");
  res.set(http::field::access_control_allow_headers,
          "Content-Type, Authorization, If-Match, If-None-Match, Stream-Seq, Stream-TTL, "
          "Stream-Expires-At, Stream-Retention-Max-Age, Stream-Retention-Max-Bytes, "
          "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, "
          "Stream-Fork-Offset, Stream-Fork-Sub-Offset, Last-Event-ID, Cache-Control, "
          "X-Request-Id");
  res.set(http::field::access_control_max_age, "86400");
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

/// A small response of the server's own (health, readiness, metrics).
Response own_response(const Request& req, http::status status, std::string_view content_type,
                      std::string body) {
  auto res = response_for<Response>(req, status);
  decorate(res);
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  const bool head = req.method() == http::verb::head;
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  if (head) res.body().clear();  // Content-Length stays the GET's
  return res;
}

/// /health, /ready and /metrics: GET or HEAD, never authenticated.
Response own_endpoint(Context& ctx, const Request& req, std::string_view path,
                      const metrics::Registry& registry) {
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    auto res = error_response(req, Error(errc::method_not_allowed, "use GET or HEAD"));
    res.set(http::field::allow, "GET, HEAD, OPTIONS");
    return res;
  }
  if (path == "/health")
    return own_response(req, http::status::ok, "application/json", "{\"status\":\"ok\"}");
  if (path == "/ready") {
    if (ctx.stopping)
      return own_response(req, http::status::service_unavailable, "application/json",
                          "{\"status\":\"shutting_down\"}");
    Status health = ctx.options.readiness ? ctx.options.readiness() : Status(Unit{});
    if (health) health = ctx.store.health();
    if (health)
      return own_response(req, http::status::ok, "application/json", "{\"status\":\"ready\"}");
    std::string body = "{\"status\":\"unavailable\",\"message\":";
    append_json_string(body, health.error().message);
    body.push_back('}');
    return own_response(req, http::status::service_unavailable, "application/json",
                        std::move(body));
  }
  return own_response(req, http::status::ok, metrics::kContentType, registry.render());
}

/// A response to a request whose head or body could not be read in full: the
/// connection is closed after it.
asio::awaitable<void> reject_and_close(Context& ctx, Stream& stream, unsigned version, Error e) {
  Request req;
  req.version(version);
  auto res = error_response(req, e);
  res.keep_alive(false);
  co_await write_response(ctx, stream, res);
}

auth::Method auth_method(http::verb v) {
  switch (v) {
    case http::verb::get:
      return auth::Method::get;
    case http::verb::head:
      return auth::Method::head;
    case http::verb::post:
      return auth::Method::post;
    case http::verb::put:
      return auth::Method::put;
    case http::verb::delete_:
      return auth::Method::del;
    default:
      return auth::Method::other;
  }
}

/// The stream a Stream-Forked-From value names, parsed exactly as the PUT
/// handler parses it; nullopt if it does not parse.
std::optional<std::string> fork_source_name(std::string_view value) {
  auto source = percent_decode(value, false);
  std::string_view sv = source ? std::string_view(*source) : std::string_view();
  if (auto scheme = sv.find("://"); scheme != std::string_view::npos) {
    auto slash = sv.find('/', scheme + 3);
    sv = slash == std::string_view::npos ? std::string_view() : sv.substr(slash);
  }
  auto name = stream_name(sv);
  if (!name) return std::nullopt;
  return std::move(*name);
}

}  // namespace

// Declared in server/http.h; defined here, beside its use for streams.
std::optional<http_server::Response> http_server::authorize_request(
    const auth::Authenticator& authn, const Request& req, const auth::AccessRequest& ar,
    auth::Claims* claims) {
  using Outcome = auth::Decision::Outcome;
  // `target` owns the decoded values the tokens view: it lives to the end.
  auto target = parse_target(std::string_view(req.target().data(), req.target().size()));
  std::vector<std::string_view> query_tokens;
  if (target) query_tokens = target->all("token");

  auth::Decision d;
  const size_t header_count = req.count(http::field::authorization);
  std::optional<std::string_view> token;
  if (header_count == 1)
    token = auth::bearer_token(std::string_view(req[http::field::authorization]));
  const bool use_query = authn.config().allow_query_token && !query_tokens.empty();
  if (header_count > 1 || (use_query && (token || query_tokens.size() > 1))) {
    d.outcome = Outcome::bad_request;
    d.bearer_error = "invalid_request";
    d.message = "give exactly one bearer token (one Authorization header or one token parameter)";
  } else {
    if (use_query) token = query_tokens.front();
    d = claims ? authn.authorize(token, ar, claims) : authn.authorize(token, ar);
    if (!d.allowed() && !token && !query_tokens.empty())
      d.message = "a bearer token is required (the token query parameter is not enabled)";
  }
  if (d.allowed()) return std::nullopt;
  errc code = d.outcome == Outcome::forbidden     ? errc::forbidden
              : d.outcome == Outcome::bad_request ? errc::bad_request
                                                  : errc::unauthorized;
  Response res = error_response(req, Error(code, d.message));
  if (auto www = d.www_authenticate(); !www.empty()) res.set(http::field::www_authenticate, www);
  if (req.method() == http::verb::head) {
    res.body().clear();
    res.prepare_payload();
  }
  return res;
}

namespace {

/// Bearer-token check of a stream request (auth/policy.h): the target and,
/// for a fork, its source. nullopt: go on; otherwise the 400/401/403 to
/// send. Never logs or echoes the token.
std::optional<Response> check_auth(const auth::Authenticator& authn, const Request& req) {
  auth::AccessRequest ar;
  ar.method = auth_method(req.method());
  std::optional<std::string> name;
  if (auto target = parse_target(std::string_view(req.target().data(), req.target().size())))
    if (auto n = stream_name(target->path)) name = std::move(*n);
  ar.streams.push_back(std::move(name));
  if (req.method() == http::verb::put && req.find("stream-forked-from") != req.end())
    ar.streams.push_back(fork_source_name(std::string_view(req["stream-forked-from"])));
  return authorize_request(authn, req, ar);
}

asio::awaitable<bool> dispatch(Context& ctx, Stream& stream, Request& req) {
  if (req.method() == http::verb::options) {
    auto res = preflight(req);
    co_return co_await write_response(ctx, stream, res);
  }
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/health" || path == "/ready" || path == "/metrics") {
    auto res = own_endpoint(ctx, req, path, ctx.registry);
    co_return co_await write_response(ctx, stream, res);
  }
  if (path == "/v1/stream/__ds" || path.starts_with("/v1/stream/__ds/")) {
    co_return co_await handle_control_request(ctx, stream, req);
  }
  if (path == "/v1/streams") co_return co_await handle_catalog_request(ctx, stream, req);
  if (path.starts_with("/v1/stream/")) {
    if (ctx.auth) {
      auto denied = check_auth(*ctx.auth, req);
      if (denied) co_return co_await write_response(ctx, stream, *denied);
    }
    co_return co_await handle_stream_request(ctx, stream, req);
  }
  if (ctx.options.ui && is_ui_path(path)) {
    auto res = ui_response(req, path);
    co_return co_await write_response(ctx, stream, res);
  }
  auto res = error_response(req, Error(errc::not_found, "no such route"));
  co_return co_await write_response(ctx, stream, res);
}

using SteadyClock = std::chrono::steady_clock;

/// What the shutdown needs to know about a connection. Touched only on the
/// connection's strand (or after the io_context has stopped).
struct SessionState {
  Stream* stream = nullptr;  ///< null once the session has ended
  bool idle = false;         ///< waiting for a request head
};

/// On shutdown, an idle keep-alive connection stops waiting for a request.
std::function<void()> idle_closer(std::shared_ptr<SessionState> state, asio::any_io_executor ex) {
  return [state, ex] {
    asio::post(ex, [state] {
      if (state->stream && state->idle) state->stream->cancel();
    });
  };
}

/// Marks the session ended and counts it out (accept_loop counted it in).
class SessionScope {
 public:
  SessionScope(std::shared_ptr<SessionState> state, std::atomic<size_t>& sessions)
      : state_(std::move(state)), sessions_(sessions) {}
  ~SessionScope() {
    state_->stream = nullptr;
    sessions_.fetch_sub(1);
  }
  SessionScope(const SessionScope&) = delete;
  SessionScope& operator=(const SessionScope&) = delete;

 private:
  std::shared_ptr<SessionState> state_;
  std::atomic<size_t>& sessions_;
};

/// The error for a request head whose body framing dstreamd refuses
/// (protocol/framing.h), or nullopt.
std::optional<Error> framing_error(const http::request_header<Fields>& head) {
  // Values of one field name: a few in place, any number on the heap.
  struct Values {
    std::array<std::string_view, 4> few;
    std::vector<std::string_view> many;
    size_t n = 0;
    void add(std::string_view v) {
      if (n < few.size()) {
        few[n++] = v;
        return;
      }
      if (many.empty()) many.assign(few.begin(), few.end());
      many.push_back(v);
      ++n;
    }
    std::span<const std::string_view> all() const {
      if (!many.empty()) return many;
      return {few.data(), n};
    }
  };
  Values transfer_encoding;
  Values content_length;
  for (auto [it, end] = head.equal_range(http::field::transfer_encoding); it != end; ++it)
    transfer_encoding.add({it->value().data(), it->value().size()});
  for (auto [it, end] = head.equal_range(http::field::content_length); it != end; ++it)
    content_length.add({it->value().data(), it->value().size()});
  return check_body_framing(head.version(), transfer_encoding.all(), content_length.all());
}

/// A deadline on reading a request's head or body. When it passes, the
/// pending read is cancelled, not the socket closed (as the stream's own
/// expiry would): a 408 can still be written. Runs on the connection's strand.
class ReadDeadline {
 public:
  explicit ReadDeadline(Stream& stream)
      : timer_(stream.get_executor()), state_(std::make_shared<State>()) {
    state_->stream = &stream;
  }
  ~ReadDeadline() {
    state_->stream = nullptr;
    disarm();
  }
  ReadDeadline(const ReadDeadline&) = delete;
  ReadDeadline& operator=(const ReadDeadline&) = delete;

  void arm(std::chrono::milliseconds limit) {
    const uint64_t armed = ++state_->generation;
    state_->expired = false;
    timer_.expires_after(limit);
    // A plain callback, not a coroutine: it only flags and cancels. A stale
    // one (disarmed, or armed again since) finds another generation.
    timer_.async_wait([state = state_, armed](const beast::error_code& ec) {
      if (ec || state->generation != armed || !state->stream) return;
      state->expired = true;
      state->stream->cancel();
    });
  }
  void disarm() {
    ++state_->generation;
    timer_.cancel();
  }
  /// Whether the last arm()'s deadline passed (the read it bounded was cancelled).
  bool expired() const { return state_->expired; }

 private:
  struct State {
    Stream* stream = nullptr;
    uint64_t generation = 0;
    bool expired = false;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

/// How a refused request head was cut off: whether its connection may still
/// carry a response (the cancelled read's error), or the client went away.
bool cancelled_by(const ReadDeadline& deadline, const beast::error_code& ec) {
  return deadline.expired() && ec == asio::error::operation_aborted;
}

/// After an error response to a request that was not read in full (a limit
/// refused it): reads and drops what the client still sends, for at most 1 s
/// and 1 MiB, so that closing with unread bytes does not reset the connection
/// before the client has read the response.
asio::awaitable<void> discard_rest(Stream& stream) {
  constexpr auto kLinger = std::chrono::seconds(1);
  constexpr size_t kMaxDiscard = 1u << 20;
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.expires_after(kLinger);
  std::array<char, 4096> sink;
  size_t dropped = 0;
  while (dropped < kMaxDiscard) {
    auto [rec, rn] =
        co_await stream.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
    if (rec) break;
    dropped += rn;
  }
}

/// Header fields of a request head.
size_t header_count(const http::request_header<Fields>& head) {
  return static_cast<size_t>(std::distance(head.begin(), head.end()));
}

std::string seconds_text(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

/// The exchange's X-Request-Id into `id` (whose capacity is reused from
/// request to request).
void request_id(const http::request_header<Fields>& head, std::string& id) {
  auto it = head.find("x-request-id");
  if (it != head.end()) {
    std::string_view v(it->value().data(), it->value().size());
    if (log::sane_request_id(v)) {
      id.assign(v);
      return;
    }
  }
  log::new_request_id(id);
}

/// Readies the connection's exchange record for its next request, keeping
/// its strings' capacity (the id, remote and origin of every request).
void reset_exchange(Exchange& ex, const std::string& remote) {
  ex.id.clear();
  ex.origin.clear();
  ex.remote.assign(remote);
  ex.started = SteadyClock::now();
  ex.mode = ReadMode::none;
  ex.status = 0;
  ex.bytes_out = 0;
  ex.detached = false;
  ex.can_detach = false;
}

/// Room for the header fields of a typical request and of its response
/// (request_arena.h): a POST's 5-10 fields and the response's 6-10, with the
/// 400 bytes of Access-Control-Expose-Headers when the request has an Origin.
constexpr size_t kFieldArenaBytes = 4096;

asio::awaitable<void> run_session(Stream stream, Context& shared) {
  Context ctx = shared;  // this connection's copy: ctx.exchange is ours
  std::string head_buffer;
  ctx.head_buffer = &head_buffer;
  auto state = std::make_shared<SessionState>();
  state->stream = &stream;
  SessionScope scope(state, shared.stop_signals.sessions);
  StopRegistration on_stop(ctx.stop_signals, idle_closer(state, stream.get_executor()));
  std::string remote;
  {
    beast::error_code rec;
    auto ep = stream.socket().remote_endpoint(rec);
    if (!rec) remote = ep.address().to_string();
  }
  beast::flat_buffer buffer;
  ReadDeadline deadline(stream);
  // Each request's fields, and its response's, are allocated here; nothing
  // built from them outlives this frame (copies use the heap). It is free
  // again once the request and response of one iteration are destroyed.
  InlineRequestArena<kFieldArenaBytes> arena;
  // One exchange record per connection, reset for each request.
  Exchange ex;
  using Limit = metrics::HttpMetrics::Limit;
  for (;;) {
    if (ctx.stopping) break;
    http::request_parser<http::string_body, ArenaAllocator<char>> parser{
        std::piecewise_construct, std::make_tuple(), std::make_tuple(ArenaAllocator<char>(&arena))};
    parser.body_limit(boost::none);  // checked against --max-body-bytes below
    parser.header_limit(static_cast<uint32_t>(
        std::min<size_t>(ctx.options.max_header_bytes, std::numeric_limits<uint32_t>::max())));
    state->idle = true;
    if (buffer.size() == 0) {
      // Between requests a connection may stay idle for kIdleTimeout (the
      // stream's own expiry: it closes the socket, nothing to answer).
      stream.expires_after(kIdleTimeout);
      const size_t want = std::clamp<size_t>(buffer.capacity(), kFirstReadMin, kFirstReadMax);
      auto [fec, fn] = co_await stream.async_read_some(buffer.prepare(want),
                                                       asio::as_tuple(asio::use_awaitable));
      buffer.commit(fn);
      if (fec) {
        state->idle = false;
        break;  // closed by the client, idle too long, or shutdown
      }
    }
    // From a request's first byte on, its whole head must arrive within
    // --request-head-timeout (slowloris: a byte now and then does not keep
    // the connection).
    stream.expires_never();
    deadline.arm(ctx.options.request_head_timeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser,
                                                    asio::as_tuple(asio::use_awaitable));
    deadline.disarm();
    state->idle = false;
    reset_exchange(ex, remote);
    ctx.exchange = &ex;
    if (ec) {
      if (cancelled_by(deadline, ec)) {
        ctx.metrics.limit_hit(Limit::request_head_timeout);
        ex.id = log::new_request_id();
        {
          auto op = reject_and_close(
              ctx, stream, 11,
              Error(errc::request_timeout, "the request head did not arrive within " +
                                               seconds_text(ctx.options.request_head_timeout)));
          co_await std::move(op);
        }
        log_exchange(ctx, ex, "-", "-", 0);
        auto rest = discard_rest(stream);
        co_await std::move(rest);
      } else if (ec == http::error::header_limit) {
        ctx.metrics.limit_hit(Limit::max_header_bytes);
        ex.id = log::new_request_id();
        {
          auto op = reject_and_close(
              ctx, stream, 11,
              Error(errc::header_fields_too_large,
                    "request head is larger than " + std::to_string(ctx.options.max_header_bytes) +
                        " bytes (--max-header-bytes)"));
          co_await std::move(op);
        }
        log_exchange(ctx, ex, "-", "-", 0);
        auto rest = discard_rest(stream);
        co_await std::move(rest);
      } else if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
                 ec != asio::error::eof && ec != asio::error::connection_reset &&
                 ec != asio::error::operation_aborted) {
        ex.id = log::new_request_id();
        {
          auto op = reject_and_close(
              ctx, stream, 11, Error(errc::bad_request, "malformed HTTP request: " + ec.message()));
          co_await std::move(op);
        }
        log_exchange(ctx, ex, "-", "-", 0);
      }
      break;
    }
    const auto& head = parser.get();
    const unsigned version = head.version();
    request_id(head, ex.id);
    if (auto it = head.find(http::field::origin); it != head.end())
      ex.origin.assign(it->value().data(), it->value().size());
    const std::string method(head.method_string().data(), head.method_string().size());
    if (ctx.options.max_header_count && header_count(head) > ctx.options.max_header_count) {
      ctx.metrics.limit_hit(Limit::max_header_count);
      {
        auto op = reject_and_close(
            ctx, stream, version,
            Error(errc::header_fields_too_large, "request has more than " +
                                                     std::to_string(ctx.options.max_header_count) +
                                                     " header fields (--max-header-count)"));
        co_await std::move(op);
      }
      log_exchange(ctx, ex, method, "-", 0);
      auto rest = discard_rest(stream);
      co_await std::move(rest);
      break;
    }
    // An origin-form target (the usual one, starting with '/') is what
    // origin_form would return as it is: only other forms need its copy.
    const std::string_view raw_target(head.target().data(), head.target().size());
    auto target =
        raw_target.starts_with('/') ? Result<OriginForm>(OriginForm{}) : origin_form(raw_target);
    if (target && target->authority) {
      // Absolute-form: route, authorize and log by its path and query; its
      // authority replaces Host (RFC 9112 3.2.2), e.g. for Location.
      parser.get().target(target->target);
      parser.get().set(http::field::host, *target->authority);
    }
    // The path, for the access log: a view of the target, which lives (and
    // stays unchanged) until the exchange is logged. Taken again from `req`
    // below, where the message has moved.
    std::string_view path(head.target().data(), head.target().size());
    path = path.substr(0, path.find('?'));
    if (!target) {
      {
        auto op = reject_and_close(ctx, stream, version, std::move(target).error());
        co_await std::move(op);
      }
      log_exchange(ctx, ex, method, "-", 0);
      break;
    }
    if (auto refused = framing_error(head)) {
      // Beast delimits some of these differently (`Transfer-Encoding: gzip`
      // as no body at all): the bytes after the head must not be read as the
      // next request. protocol/framing.h has the rules.
      {
        auto op = reject_and_close(ctx, stream, version, std::move(*refused));
        co_await std::move(op);
      }
      log_exchange(ctx, ex, method, path, 0);
      break;
    }
    if (auto len = parser.content_length(); len && *len > ctx.options.max_body_bytes) {
      {
        auto op =
            reject_and_close(ctx, stream, version,
                             Error(errc::payload_too_large,
                                   "request body is larger than " +
                                       std::to_string(ctx.options.max_body_bytes) + " bytes"));
        co_await std::move(op);
      }
      log_exchange(ctx, ex, method, path, 0);
      break;
    }
    // From the end of the head, the whole body (100 Continue included) must
    // arrive within --request-body-timeout.
    deadline.arm(ctx.options.request_body_timeout);
    if (iequals(std::string_view(head[http::field::expect]), "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, version};
      auto [wec, wn] =
          co_await http::async_write(stream, cont, asio::as_tuple(asio::use_awaitable));
      if (wec) break;  // the deadline is disarmed at the end of the session
      count_sent(ctx, wn);
    }
    parser.body_limit(ctx.options.max_body_bytes);
    if (auto len = parser.content_length(); len && *len > kSmallBody) {
      // Beast receives at most the buffer's free capacity at a time: give a
      // large body room, or a 1 MiB body takes hundreds of receives.
      buffer.reserve(buffer.size() + std::min<uint64_t>(*len, kBodyReceiveBytes));
    }
    if (!parser.is_done()) {
      auto [bec, bn] =
          co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      deadline.disarm();
      if (cancelled_by(deadline, bec)) {
        ctx.metrics.limit_hit(Limit::request_body_timeout);
        {
          auto op = reject_and_close(
              ctx, stream, version,
              Error(errc::request_timeout, "the request body did not arrive within " +
                                               seconds_text(ctx.options.request_body_timeout)));
          co_await std::move(op);
        }
        log_exchange(ctx, ex, method, path, 0);
        auto rest = discard_rest(stream);
        co_await std::move(rest);
        break;
      }
      if (bec == http::error::body_limit) {
        {
          auto op =
              reject_and_close(ctx, stream, version,
                               Error(errc::payload_too_large,
                                     "request body is larger than " +
                                         std::to_string(ctx.options.max_body_bytes) + " bytes"));
          co_await std::move(op);
        }
        log_exchange(ctx, ex, method, path, 0);
        break;
      }
      if (bec) {
        // A body that breaks HTTP framing (bad chunk sizes, ...) gets a 400
        // before the connection closes; a client that went away gets nothing.
        if (bec.category() == http::make_error_code(http::error::bad_chunk).category() &&
            bec != http::error::end_of_stream && bec != http::error::partial_message) {
          auto op = reject_and_close(
              ctx, stream, version,
              Error(errc::bad_request, "malformed request body: " + bec.message()));
          co_await std::move(op);
          log_exchange(ctx, ex, method, path, 0);
        }
        break;
      }
    }
    deadline.disarm();
    stream.expires_never();
    if (buffer.size() == 0 && buffer.capacity() > kSmallBody) buffer.shrink_to_fit();
    Request req = parser.release();
    path = std::string_view(req.target().data(), req.target().size());
    path = path.substr(0, path.find('?'));
    const uint64_t bytes_in = req.body().size();
    ctx.metrics.received_bytes.inc(bytes_in);
    ex.can_detach = buffer.size() == 0;
    bool keep_alive = co_await dispatch(ctx, stream, req);
    if (ex.detached) co_return;  // a parked SSE reader owns the socket and the exchange now
    log_exchange(ctx, ex, method, path, bytes_in);
    ctx.exchange = nullptr;
    if (!keep_alive || ctx.stopping) break;
  }
  ctx.exchange = nullptr;
  deadline.disarm();
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

/// A connection over --max-connections: 503 with Retry-After and a JSON
/// body, whatever it asks, then closed. The whole exchange is bounded (a
/// client that does not read gets no more of the server's time); what the
/// client sent is read and dropped until it closes, so that the close does
/// not reset the connection before the client has read the answer.
asio::awaitable<void> reject_connection(Stream stream, size_t max_connections) {
  constexpr auto kRejectTime = std::chrono::seconds(2);
  stream.expires_after(kRejectTime);
  Request req;
  req.version(11);
  auto res = error_response(
      req, Error(errc::unavailable, "too many connections (" + std::to_string(max_connections) +
                                        " open): retry later"));
  res.keep_alive(false);
  auto [ec, n] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
  beast::error_code ignored;
  if (!ec) {
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    std::array<char, 1024> sink;
    for (;;) {
      auto [rec, rn] =
          co_await stream.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
      if (rec) break;
    }
  }
  stream.socket().close(ignored);
}

}  // namespace

namespace http_server {

asio::awaitable<void> serve_connection(Stream stream, Context& shared) {
  return run_session(std::move(stream), shared);
}

}  // namespace http_server

/// The CPUs this process may run on (its affinity mask, as taskset, cgroup
/// cpusets and container CPU pinning set it), not all the machine's: more
/// event-loop threads than that only take turns on the same CPUs, waking
/// each other for nothing.
unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    if (const int n = CPU_COUNT(&set); n > 0) return static_cast<unsigned>(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

/// One event loop: an io_context that one thread runs. A connection lives on
/// one loop from accept to close, so its coroutine needs no strand: the
/// loop's thread is the only one that runs it, and the io_context's own
/// executor (which any_io_executor holds in place) replaces the strand that
/// every async operation used to copy to the heap and lock.
struct EventLoop {
  EventLoop() = default;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  asio::io_context io{1};
  /// After the io_context: results it still holds are released while the
  /// io_context (the coroutines' executors) exists.
  Inbox inbox{io.get_executor()};
  /// The server's context with this loop's inbox: results of the store's
  /// calls come back to the loop that made them.
  std::optional<Context> ctx;
  /// run() returns only at stop(), not when the loop is idle.
  asio::executor_work_guard<asio::io_context::executor_type> busy{io.get_executor()};
};

std::vector<std::unique_ptr<EventLoop>> make_loops(unsigned n) {
  std::vector<std::unique_ptr<EventLoop>> loops;
  for (unsigned i = 0; i < std::max(1u, n); ++i) loops.push_back(std::make_unique<EventLoop>());
  return loops;
}

struct Server::Impl {
  Impl(ServerOptions o, StreamStore& store, LiveHubs& hubs, const Clock& clock)
      : options(std::move(o)),
        registry(options.metrics ? options.metrics : std::make_shared<metrics::Registry>()),
        loops(make_loops(options.threads ? options.threads : usable_cpus())),
        ioc(loops.front()->io),
        control(asio::make_strand(ioc)),
        acceptor(ioc),
        signals(ioc, SIGINT, SIGTERM),
        reaper(control),
        ctx{options,      store,        hubs,     clock, stopping, options.auth.get(),
            stop_signals, http_metrics, *registry} {
    ctx.response_memory = &response_memory;
    ctx.inbox = &loops.front()->inbox;
    ctx.readers = &readers;
    ctx.subscriptions = options.subscriptions.get();
    std::vector<ParkingLot::Loop> lot_loops;
    for (auto& loop : loops) {
      loop->ctx.emplace(ctx);
      loop->ctx->inbox = &loop->inbox;
      lot_loops.push_back({loop->io.get_executor(), &*loop->ctx});
    }
    ctx.parking = &parking.emplace(ctx, std::move(lot_loops));
    for (auto& loop : loops) loop->ctx->parking = ctx.parking;
    registry->add([this](metrics::Exposition& e) {
      http_metrics.collect(e);
      e.gauge("dstreamd_live_hubs", "Streams with a live hub (parked readers) on this node",
              static_cast<int64_t>(ctx.hubs.hub_count()));
      e.gauge("dstreamd_http_connections", "Open HTTP connections",
              static_cast<int64_t>(stop_signals.sessions.load()));
      e.gauge("dstreamd_live_readers",
              "Long-polls waiting for data and open SSE responses, as counted against "
              "--max-readers-per-stream and --max-parked-readers",
              static_cast<int64_t>(readers.total()));
      e.gauge("dstreamd_sse_parked_readers",
              "Caught-up SSE readers waiting in the parking lot (no coroutine each)",
              static_cast<int64_t>(parking->parked()));
    });
  }

  /// Accept failures that mean the process (or the system) is out of file
  /// descriptors or socket memory: retrying at once would spin.
  static bool out_of_resources(const beast::error_code& ec) {
    if (ec.category() != boost::system::system_category()) return false;
    const int v = ec.value();
    return v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM;
  }

  asio::awaitable<void> accept_loop() {
    asio::steady_timer backoff(control);
    auto pause = kAcceptPauseMin;
    uint64_t failed_accepts = 0;  // of the current fd-exhaustion episode
    bool at_limit = false;        // of the current --max-connections episode
    // One warning per episode, and at most one per kEpisodeLogEvery: a server
    // that hovers at a limit does not flood its log.
    bool fd_logged = false;
    auto last_fd_log = SteadyClock::now() - kEpisodeLogEvery;
    auto last_limit_log = SteadyClock::now() - kEpisodeLogEvery;
    uint64_t rejected = 0;  // since the last limit warning
    for (size_t accepted = 0;; ++accepted) {
      // Connections are dealt to the loops in turn.
      EventLoop& loop = *loops[accepted % loops.size()];
      auto [ec, socket] = co_await acceptor.async_accept(loop.io.get_executor(),
                                                         asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        if (!out_of_resources(ec)) continue;  // e.g. a connection reset before accept
        // Out of file descriptors: the pending connection stays in the
        // listen backlog, so accepting again at once fails again at once.
        // Pause (10 ms doubling to 100 ms) and keep serving the connections
        // we have; they free descriptors as they end.
        http_metrics.accept_fd_exhausted.inc();
        if (failed_accepts++ == 0 && SteadyClock::now() - last_fd_log >= kEpisodeLogEvery) {
          fd_logged = true;
          last_fd_log = SteadyClock::now();
          log::warn("out of file descriptors: accepting paused until some are free",
                    {{"error", ec.message()},
                     {"connections", static_cast<uint64_t>(stop_signals.sessions.load())}});
        }
        backoff.expires_after(pause);
        co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
        pause = std::min(pause * 2, kAcceptPauseMax);
        if (stopping) co_return;
        continue;
      }
      if (failed_accepts) {
        if (fd_logged)
          log::info("file descriptors available again: accepting",
                    {{"failed_accepts", failed_accepts}});
        fd_logged = false;
        failed_accepts = 0;
        pause = kAcceptPauseMin;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto ex = socket.get_executor();
      if (options.max_connections && stop_signals.sessions.load() >= options.max_connections) {
        http_metrics.connections_rejected.inc();
        ++rejected;
        if (!at_limit && SteadyClock::now() - last_limit_log >= kEpisodeLogEvery) {
          last_limit_log = SteadyClock::now();
          log::warn("connection limit reached: new connections get 503",
                    {{"max_connections", static_cast<uint64_t>(options.max_connections)},
                     {"rejected", rejected}});
          rejected = 0;
        }
        at_limit = true;
        asio::co_spawn(ex, reject_connection(Stream(std::move(socket)), options.max_connections),
                       asio::detached);
        continue;
      }
      at_limit = false;
      stop_signals.sessions.fetch_add(1);
      asio::co_spawn(ex, run_session(Stream(std::move(socket)), *loop.ctx),
                     [](std::exception_ptr e) {
                       if (!e) return;
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         log::error("connection failed", {{"error", ex.what()}});
                       }
                     });
    }
  }

  static constexpr auto kAcceptPauseMin = std::chrono::milliseconds(10);
  static constexpr auto kAcceptPauseMax = std::chrono::milliseconds(100);
  static constexpr auto kEpisodeLogEvery = std::chrono::seconds(10);

  asio::awaitable<void> reap_loop() {
    for (;;) {
      reaper.expires_after(std::chrono::seconds(5));
      auto [ec] = co_await reaper.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec || stopping) co_return;
      ctx.hubs.reap();
    }
  }

  /// Waits (on `control`) until every connection has ended or the shutdown
  /// timeout passes, then stops the event loops.
  asio::awaitable<void> drain() {
    const auto deadline = SteadyClock::now() + options.shutdown_timeout;
    asio::steady_timer tick(control);
    while (stop_signals.sessions.load() > 0 && SteadyClock::now() < deadline) {
      tick.expires_after(std::chrono::milliseconds(20));
      co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (size_t left = stop_signals.sessions.load(); left > 0) {
      log::warn("shutdown timeout: closing the remaining connections",
                {{"connections", static_cast<uint64_t>(left)}});
    } else {
      log::info("all connections closed");
    }
    stop_loops();
  }

  void stop_loops() {
    for (auto& loop : loops) loop->io.stop();
  }

  /// Runs on `control`.
  void begin_shutdown() {
    if (stopping.exchange(true)) return;
    log::info("shutting down",
              {{"connections", static_cast<uint64_t>(stop_signals.sessions.load())},
               {"timeout_ms", static_cast<int64_t>(options.shutdown_timeout.count())}});
    beast::error_code ec;
    acceptor.close(ec);
    reaper.cancel();
    stop_signals.stop_all();
    asio::co_spawn(control, drain(), asio::detached);
  }

  void wait_signal() {
    signals.async_wait(asio::bind_executor(control, [this](const beast::error_code& ec, int sig) {
      if (ec) return;
      if (stopping) {
        log::warn("second signal: stopping now", {{"signal", sig}});
        stop_loops();
        return;
      }
      log::info("signal received", {{"signal", sig}});
      begin_shutdown();
      wait_signal();
    }));
  }

  ServerOptions options;
  std::shared_ptr<metrics::Registry> registry;
  // Declared before the io_context: coroutine frames destroyed with it still
  // unregister from these.
  StopSignals stop_signals;
  metrics::HttpMetrics http_metrics;
  live::ReaderLimits readers{options.max_readers_per_stream, options.max_parked_readers};
  ResponseMemory response_memory{http_metrics.response_buffer_bytes};
  std::atomic<bool> stopping{false};
  /// One per --threads; each run by one thread (Server::run).
  std::vector<std::unique_ptr<EventLoop>> loops;
  asio::io_context& ioc;  ///< the first loop's: accept, signals, shutdown
  asio::strand<asio::io_context::executor_type> control;  ///< accept, reap, shutdown
  tcp::acceptor acceptor;
  asio::signal_set signals;
  asio::steady_timer reaper;
  Context ctx;
  // After the loops: destroyed first, while their io_contexts still exist.
  std::optional<ParkingLot> parking;
};

Server::Server(ServerOptions options, StreamStore& store, LiveHubs& hubs, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), store, hubs, clock)) {}

Server::~Server() = default;

Result<uint16_t> Server::bind() {
  beast::error_code ec;
  auto address = asio::ip::make_address(impl_->options.host, ec);
  if (ec) return Error(errc::bad_request, "invalid listen address '" + impl_->options.host + "'");
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Error(errc::unavailable, "cannot listen on " + impl_->options.host + ":" +
                                        std::to_string(impl_->options.port) + ": " + ec.message());
  return acc.local_endpoint().port();
}

void Server::run() {
  auto& impl = *impl_;
  impl.wait_signal();
  asio::co_spawn(impl.control, impl.accept_loop(), asio::detached);
  asio::co_spawn(impl.control, impl.reap_loop(), asio::detached);
  std::vector<std::thread> pool;
  for (size_t i = 1; i < impl.loops.size(); ++i)
    pool.emplace_back([&loop = *impl.loops[i]] { loop.io.run(); });
  impl.ioc.run();
  for (auto& t : pool) t.join();
}

void Server::stop() {
  asio::post(impl_->control, [impl = impl_.get()] { impl->begin_shutdown(); });
}

}  // namespace ds
