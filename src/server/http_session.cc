// Listener, connection loop and dispatch. One coroutine per connection, on
// its own strand; the coroutine frame owns the socket.

#include <boost/asio/signal_set.hpp>
#include <iostream>
#include <thread>
#include <vector>

#include "protocol/headers.h"
#include "protocol/target.h"
#include "server/http.h"

namespace ds {

using namespace http_server;

namespace http_server {

void decorate(Response& res) {
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Cross-Origin-Resource-Policy", "cross-origin");
  res.set(http::field::access_control_allow_origin, "*");
  res.set(http::field::access_control_expose_headers,
          "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
          "Stream-Expires-At, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
          "Producer-Received-Seq, Stream-SSE-Data-Encoding, ETag, Location, Content-Type, "
          "Content-Encoding, Vary, WWW-Authenticate");
}

}  // namespace http_server

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(75);

Response preflight(const Request& req) {
  Response res{http::status::no_content, req.version()};
  decorate(res);
  res.set(http::field::access_control_allow_methods, "GET, POST, PUT, DELETE, HEAD, OPTIONS");
  res.set(http::field::access_control_allow_headers,
          "Content-Type, Authorization, If-None-Match, Stream-Seq, Stream-TTL, Stream-Expires-At, "
          "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, "
          "Stream-Fork-Offset, Stream-Fork-Sub-Offset, Last-Event-ID, Cache-Control");
  res.set(http::field::access_control_max_age, "86400");
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

Response plain(const Request& req, http::status status, std::string body) {
  Response res{status, req.version()};
  decorate(res);
  res.set(http::field::content_type, "text/plain");
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

/// A response to a request whose head could not be read in full: the
/// connection is closed after it.
asio::awaitable<void> reject_and_close(Stream& stream, unsigned version, Error e) {
  Request req;
  req.version(version);
  auto res = error_response(req, e);
  res.keep_alive(false);
  co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
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

/// Bearer-token check of a stream request (auth/policy.h). nullopt: go on;
/// otherwise the 400/401/403 to send. Never logs or echoes the token.
std::optional<Response> check_auth(const auth::Authenticator& authn, const Request& req) {
  using Outcome = auth::Decision::Outcome;
  auth::AccessRequest ar;
  ar.method = auth_method(req.method());
  std::string_view raw(req.target().data(), req.target().size());
  auto target = parse_target(raw);
  std::optional<std::string> name;
  std::vector<std::string_view> query_tokens;
  if (target) {
    if (auto n = stream_name(target->path)) name = std::move(*n);
    query_tokens = target->all("token");
  }
  ar.streams.push_back(std::move(name));
  if (req.method() == http::verb::put && req.find("stream-forked-from") != req.end())
    ar.streams.push_back(fork_source_name(std::string_view(req["stream-forked-from"])));

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
    d = authn.authorize(token, ar);
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

asio::awaitable<bool> dispatch(Context& ctx, Stream& stream, Request& req) {
  if (req.method() == http::verb::options) {
    auto res = preflight(req);
    auto [ec, n] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    co_return !ec && res.keep_alive();
  }
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/health" || path == "/ready") {
    auto health = ctx.store.health();
    auto res = health
                   ? plain(req, http::status::ok, "ok\n")
                   : plain(req, http::status::service_unavailable, health.error().message + "\n");
    auto [ec, n] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    co_return !ec && res.keep_alive();
  }
  if (path.starts_with("/v1/stream/")) {
    if (ctx.auth) {
      auto denied = check_auth(*ctx.auth, req);
      if (denied) {
        auto [ec, n] =
            co_await http::async_write(stream, *denied, asio::as_tuple(asio::use_awaitable));
        co_return !ec && denied->keep_alive();
      }
    }
    co_return co_await handle_stream_request(ctx, stream, req);
  }
  auto res = error_response(req, Error(errc::not_found, "no such route"));
  auto [ec, n] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
  co_return !ec && res.keep_alive();
}

asio::awaitable<void> run_session(Stream stream, Context& ctx) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(boost::none);  // checked against --max-body-bytes below
    parser.header_limit(64 * 1024);
    stream.expires_after(kIdleTimeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser,
                                                    asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
          ec != asio::error::eof && ec != asio::error::connection_reset &&
          ec != asio::error::operation_aborted) {
        {
          auto op = reject_and_close(
              stream, 11, Error(errc::bad_request, "malformed HTTP request: " + ec.message()));
          co_await std::move(op);
        }
      }
      break;
    }
    const auto& head = parser.get();
    const unsigned version = head.version();
    if (auto len = parser.content_length(); len && *len > ctx.options.max_body_bytes) {
      {
        auto op =
            reject_and_close(stream, version,
                             Error(errc::payload_too_large,
                                   "request body is larger than " +
                                       std::to_string(ctx.options.max_body_bytes) + " bytes"));
        co_await std::move(op);
      }
      break;
    }
    if (iequals(std::string_view(head[http::field::expect]), "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, version};
      auto [wec, wn] =
          co_await http::async_write(stream, cont, asio::as_tuple(asio::use_awaitable));
      if (wec) break;
    }
    parser.body_limit(ctx.options.max_body_bytes);
    if (!parser.is_done()) {
      auto [bec, bn] =
          co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      if (bec == http::error::body_limit) {
        {
          auto op =
              reject_and_close(stream, version,
                               Error(errc::payload_too_large,
                                     "request body is larger than " +
                                         std::to_string(ctx.options.max_body_bytes) + " bytes"));
          co_await std::move(op);
        }
        break;
      }
      if (bec) {
        // A body that breaks HTTP framing (bad chunk sizes, ...) gets a 400
        // before the connection closes; a client that went away gets nothing.
        if (bec.category() == http::make_error_code(http::error::bad_chunk).category() &&
            bec != http::error::end_of_stream && bec != http::error::partial_message) {
          auto op = reject_and_close(
              stream, version,
              Error(errc::bad_request, "malformed request body: " + bec.message()));
          co_await std::move(op);
        }
        break;
      }
    }
    stream.expires_never();
    Request req = parser.release();
    bool keep_alive = co_await dispatch(ctx, stream, req);
    if (!keep_alive || ctx.stopping) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

struct Server::Impl {
  Impl(ServerOptions o, StreamStore& store, LiveHubs& hubs, const Clock& clock)
      : options(std::move(o)),
        threads(options.threads ? options.threads
                                : std::max(1u, std::thread::hardware_concurrency())),
        ioc(static_cast<int>(threads)),
        acceptor(ioc),
        signals(ioc, SIGINT, SIGTERM),
        reaper(ioc),
        ctx{options, store, hubs, clock, stopping, options.auth.get()} {}

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto strand = asio::make_strand(ioc);
      auto [ec, socket] =
          co_await acceptor.async_accept(strand, asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        continue;  // e.g. EMFILE: keep serving the connections we have
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto ex = socket.get_executor();
      asio::co_spawn(ex, run_session(Stream(std::move(socket)), ctx), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          std::cerr << "dstreamd: connection failed: " << ex.what() << "\n";
        }
      });
    }
  }

  asio::awaitable<void> reap_loop() {
    for (;;) {
      reaper.expires_after(std::chrono::seconds(5));
      auto [ec] = co_await reaper.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      ctx.hubs.reap();
    }
  }

  void shutdown() {
    stopping = true;
    beast::error_code ec;
    acceptor.close(ec);
    reaper.cancel();
    ioc.stop();
  }

  ServerOptions options;
  unsigned threads;
  asio::io_context ioc;
  tcp::acceptor acceptor;
  asio::signal_set signals;
  asio::steady_timer reaper;
  std::atomic<bool> stopping{false};
  Context ctx;
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
  impl.signals.async_wait([&impl](const beast::error_code& ec, int) {
    if (!ec) impl.shutdown();
  });
  asio::co_spawn(impl.ioc, impl.accept_loop(), asio::detached);
  asio::co_spawn(impl.ioc, impl.reap_loop(), asio::detached);
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < impl.threads; ++i) pool.emplace_back([&impl] { impl.ioc.run(); });
  impl.ioc.run();
  for (auto& t : pool) t.join();
}

void Server::stop() {
  asio::post(impl_->ioc, [impl = impl_.get()] { impl->shutdown(); });
}

}  // namespace ds
