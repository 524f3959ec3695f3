#pragma once
// Internal to server/: Beast types and the pieces shared by the connection
// loop (http_session.cc) and the stream handlers (stream_handlers.cc).

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "auth/policy.h"
#include "common/clock.h"
#include "common/errc.h"
#include "hub/live_hub.h"
#include "server/server.h"
#include "store/stream_store.h"

namespace ds::http_server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using Stream = beast::tcp_stream;

/// What handlers need from the server.
struct Context {
  const ServerOptions& options;
  StreamStore& store;
  LiveHubs& hubs;
  const Clock& clock;
  /// Set when the server is draining: live responses end early.
  const std::atomic<bool>& stopping;
  /// Checks bearer tokens on stream requests; null: auth is off.
  const auth::Authenticator* auth = nullptr;
};

/// Headers every response carries (CORS, browser security).
void decorate(Response& res);

/// A JSON error response `{"code": ..., "message": ...}` with the status and
/// protocol headers the error calls for.
Response error_response(const Request& req, const Error& e);

/// Handles one request on a stream URL. Writes the response itself (live
/// modes stream it). Returns whether the connection may be kept alive.
asio::awaitable<bool> handle_stream_request(Context& ctx, Stream& stream, Request& req);

/// Adapts a callback-style call to `co_await`. `start(cb)` must arrange for
/// cb(T) to be called exactly once, on any thread; the coroutine resumes on
/// its own executor.
///
/// This is deliberately not a coroutine and takes `start` by value: g++ 12
/// destroys lambda temporaries passed to coroutine parameters twice (see
/// docs/architecture.md), so lambdas only ever travel through plain functions.
template <class T, class Start>
auto async_call(Start start) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::shared_ptr<T>)>(
      [](auto handler, Start start) {
        auto ex = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        start([shared, ex](T value) {
          auto result = std::make_shared<T>(std::move(value));
          asio::post(ex, [shared, result]() mutable { std::move (*shared)(std::move(result)); });
        });
      },
      asio::use_awaitable, std::move(start));
}

}  // namespace ds::http_server
