#pragma once
// Internal to server/: Beast types and the pieces shared by the connection
// loop (http_session.cc) and the stream handlers (stream_handlers.cc).

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "auth/policy.h"
#include "common/clock.h"
#include "common/errc.h"
#include "common/thread_annotations.h"
#include "hub/live_hub.h"
#include "metrics/http_metrics.h"
#include "server/inbox.h"
#include "server/reader_limits.h"
#include "server/records_body.h"
#include "server/request_arena.h"
#include "server/server.h"
#include "store/stream_store.h"

namespace ds::subs {
class Manager;
}

namespace ds::http_server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
/// Header fields of the server's requests and responses: in the
/// connection's arena (server/request_arena.h) when built with its
/// allocator, on the heap otherwise (a default-built message, a copy).
using Fields = http::basic_fields<ArenaAllocator<char>>;
using Request = http::request<http::string_body, Fields>;
using Response = http::response<http::string_body, Fields>;
using Stream = beast::tcp_stream;
/// A response whose body is a read's records, shared, not copied.
using RecordsResponse = http::response<RecordsBody, Fields>;

/// A response to `req` whose fields live where the request's do (the
/// connection's arena), with the request's HTTP version.
template <class Message>
Message response_for(const Request& req, http::status status) {
  Message res{std::piecewise_construct, std::make_tuple(), std::make_tuple(req.get_allocator())};
  res.result(status);
  res.version(req.version());
  return res;
}

/// Things to do when the server starts draining: each is called once, from
/// the thread that calls stop_all(), and must only post to its own executor.
class StopSignals {
 public:
  /// A thing to do that lives in its owner and is linked in place (no
  /// allocation, unlike add()): a live wait registers one per wait. Its
  /// on_stop() runs under the list's lock, so unlink() (which waits for that
  /// lock) never returns while it runs.
  class Hook {
   public:
    virtual void on_stop() = 0;

   protected:
    ~Hook() = default;

   private:
    friend class StopSignals;
    Hook* prev_ = nullptr;
    Hook* next_ = nullptr;
  };

  /// Returns an id for remove().
  uint64_t add(std::function<void()> on_stop);
  void remove(uint64_t id);
  /// `h` stays linked until unlink(h), which must come before it dies.
  void link(Hook& h);
  void unlink(Hook& h);
  void stop_all();
  /// Open connections (counted in on accept, out when the session ends).
  std::atomic<size_t> sessions{0};

 private:
  Mutex mu_;
  uint64_t next_ DS_GUARDED_BY(mu_) = 1;
  std::unordered_map<uint64_t, std::function<void()>> fns_ DS_GUARDED_BY(mu_);
  Hook* hooks_ DS_GUARDED_BY(mu_) = nullptr;
};

/// Keeps a StopSignals::Hook linked while it lives.
class StopLink {
 public:
  StopLink(StopSignals& s, StopSignals::Hook& h) : s_(s), h_(h) { s_.link(h_); }
  ~StopLink() { s_.unlink(h_); }
  StopLink(const StopLink&) = delete;
  StopLink& operator=(const StopLink&) = delete;

 private:
  StopSignals& s_;
  StopSignals::Hook& h_;
};

/// Removes a StopSignals entry when it goes out of scope.
class StopRegistration {
 public:
  StopRegistration(StopSignals& s, std::function<void()> fn) : s_(s), id_(s.add(std::move(fn))) {}
  ~StopRegistration() { s_.remove(id_); }
  StopRegistration(const StopRegistration&) = delete;
  StopRegistration& operator=(const StopRegistration&) = delete;

 private:
  StopSignals& s_;
  uint64_t id_;
};

using ReadMode = metrics::HttpMetrics::Mode;

/// One request/response exchange, for headers, metrics and the access log.
struct Exchange {
  std::string id;      ///< X-Request-Id (sane incoming one, or generated)
  std::string origin;  ///< the request's Origin, if any
  std::string remote;  ///< the client's address
  std::chrono::steady_clock::time_point started;
  ReadMode mode = ReadMode::none;
  unsigned status = 0;  ///< of the response (head) written
  uint64_t bytes_out = 0;
  /// The response goes on without this connection's session (a parked live
  /// read owns the socket now and logs the exchange when it ends).
  bool detached = false;
  /// No bytes of a next request were read ahead, so the socket may be handed
  /// to the parking lot and the session later started afresh.
  bool can_detach = false;
};

class ParkingLot;
class ResponseMemory;

/// What handlers need from the server. Each connection works on its own copy
/// (so `exchange` is per connection).
struct Context {
  const ServerOptions& options;
  StreamStore& store;
  LiveHubs& hubs;
  const Clock& clock;
  /// Set when the server is draining: live responses end early.
  const std::atomic<bool>& stopping;
  /// Checks bearer tokens on stream requests; null: auth is off.
  const auth::Authenticator* auth;
  /// Parked live waits register here so a shutdown wakes them.
  StopSignals& stop_signals;
  metrics::HttpMetrics& metrics;
  /// What /metrics renders.
  const metrics::Registry& registry;
  /// The request being answered on this connection; null between requests.
  Exchange* exchange = nullptr;
  /// Where caught-up SSE readers wait without a coroutine; null: they don't.
  ParkingLot* parking = nullptr;
  /// What responses being written hold, server-wide; null: not counted.
  ResponseMemory* response_memory = nullptr;
  /// Where results from the store's threads come back to the event loop;
  /// null: each by its own post.
  Inbox* inbox = nullptr;
  /// Where this connection renders response heads (reused from response to
  /// response); null: a buffer per response.
  std::string* head_buffer = nullptr;
  /// Live readers counted against --max-readers-per-stream and
  /// --max-parked-readers; null: no caps.
  live::ReaderLimits* readers = nullptr;
  /// Subscriptions (the __ds control API, wakes on writes); null: off.
  subs::Manager* subscriptions = nullptr;
};

/// Headers every response carries (browser security). These three are
/// defined (explicitly instantiated) for http::fields and Fields.
template <class F>
void decorate(http::header<false, F>& res);

/// Per-request headers, set just before a response head is written: CORS
/// (Access-Control-Allow-Origin, Vary: Origin, credentials, and the exposed
/// headers, only for a request with an Origin: no browser reads them
/// otherwise) and X-Request-Id. Records the status in ctx.exchange.
template <class F>
void finalize_headers(Context& ctx, http::header<false, F>& head);

/// Adds `token` to the response's Vary header.
template <class F>
void add_vary(http::header<false, F>& head, std::string_view token);

/// Writes a complete response (finalize_headers first; no keep-alive once the
/// server is draining) and counts its bytes. Returns whether the connection
/// may be kept alive. The caller has called prepare_payload().
asio::awaitable<bool> write_response(Context& ctx, Stream& stream, Response& res);
asio::awaitable<bool> write_response(Context& ctx, Stream& stream, RecordsResponse& res);

/// What the responses being written hold, server-wide
/// (dstreamd_http_response_buffer_bytes): their own bytes, and the records
/// they refer to, a large record shared by many responses counted once.
class ResponseMemory {
 public:
  explicit ResponseMemory(metrics::Gauge& gauge) : gauge_(gauge) {}
  void add(uint64_t own, const std::vector<RecordPtr>* records);
  void remove(uint64_t own, const std::vector<RecordPtr>* records);
  uint64_t bytes() const { return static_cast<uint64_t>(std::max<int64_t>(0, gauge_.value())); }

 private:
  /// Records smaller than this count for each response that holds them.
  static constexpr size_t kShareMin = size_t{16} * 1024;
  metrics::Gauge& gauge_;
  Mutex mu_;
  std::unordered_map<const Record*, size_t> shared_ DS_GUARDED_BY(mu_);  // holders per large record
};

/// Counts a response being written in the server's ResponseMemory while it
/// lives, and gives its writes their deadline.
class ResponseBytes {
 public:
  /// `own`: bytes the response holds itself; `records`: records it refers to
  /// (they must outlive this).
  ResponseBytes(Context& ctx, uint64_t own, const std::vector<RecordPtr>* records = nullptr);
  ~ResponseBytes();
  ResponseBytes(const ResponseBytes&) = delete;
  ResponseBytes& operator=(const ResponseBytes&) = delete;

  /// How long the next write_some may take: --write-timeout, or at most
  /// 1 s while the responses being written hold more than
  /// --max-response-buffer-bytes.
  std::chrono::milliseconds write_timeout() const;

 private:
  ResponseMemory* memory_;
  const uint64_t cap_;
  const std::chrono::milliseconds write_timeout_;
  const uint64_t own_;
  const std::vector<RecordPtr>* records_;
};

/// Metrics and the access-log line of one finished exchange.
void log_exchange(Context& ctx, const Exchange& ex, std::string_view method, std::string_view path,
                  uint64_t bytes_in);

/// Counts bytes written outside write_response (SSE heads and chunks).
inline void count_sent(Context& ctx, size_t n) {
  ctx.metrics.sent_bytes.inc(n);
  if (ctx.exchange) ctx.exchange->bytes_out += n;
}

/// A JSON error response `{"code": ..., "message": ...}` with the status and
/// protocol headers the error calls for.
Response error_response(const Request& req, const Error& e);

/// The bearer-token check of every authenticated route: one Authorization
/// header or, with --allow-query-token, one `token` parameter, against `ar`.
/// nullopt: allowed (the token's claims in *claims, if given); otherwise the
/// 400/401/403 to send (no body for HEAD). Never logs or echoes the token.
std::optional<Response> authorize_request(const auth::Authenticator& authn, const Request& req,
                                          const auth::AccessRequest& ar,
                                          auth::Claims* claims = nullptr);

/// Handles one request on a stream URL. Writes the response itself (live
/// modes stream it). Returns whether the connection may be kept alive.
asio::awaitable<bool> handle_stream_request(Context& ctx, Stream& stream, Request& req);

/// Handles one request under the reserved /v1/stream/__ds/ prefix
/// (subscriptions and the webhook JWKS; server/subscription_routes.cc).
asio::awaitable<bool> handle_control_request(Context& ctx, Stream& stream, Request& req);

/// Handles GET /v1/streams, the stream catalog (server/catalog.cc,
/// docs/operations.md).
asio::awaitable<bool> handle_catalog_request(Context& ctx, Stream& stream, Request& req);

/// asio::dispatch(ex, f), without the type-erased path when `ex` is a
/// connection's event loop or a strand: dispatching through any_io_executor
/// copies a strand into a new any_io_executor (asio::prefer), on the heap,
/// on every call; through the executor's own type it costs nothing (the
/// queued operation, if any, comes from Asio's per-thread cache either way).
template <class F>
void dispatch_to(const asio::any_io_executor& ex, F&& f) {
  using Loop = asio::io_context::executor_type;
  using IoStrand = asio::strand<Loop>;
  using AnyStrand = asio::strand<asio::any_io_executor>;
  if (const auto* l = ex.target<Loop>()) {
    asio::dispatch(*l, std::forward<F>(f));
  } else if (const auto* s = ex.target<IoStrand>()) {
    asio::dispatch(*s, std::forward<F>(f));
  } else if (const auto* a = ex.target<AnyStrand>()) {
    asio::dispatch(*a, std::forward<F>(f));
  } else {
    asio::dispatch(ex, std::forward<F>(f));
  }
}

/// Adapts a callback-style call to `co_await`. `start(cb)` must arrange for
/// cb(T) to be called exactly once, on any thread; the coroutine resumes on
/// its own executor, by way of `inbox` (a batch of results from the store's
/// writer costs one wake-up of the event loop) or, without one, by its own
/// post. The call's own state comes from Asio's per-thread recycling cache
/// (asio::recycling_allocator: a block freed on an event-loop thread is kept
/// for that thread's next call, so a connection's calls reuse it; one freed
/// elsewhere goes back to the heap); the callback the store keeps holds two
/// pointers, which std::function stores in place.
///
/// This is deliberately not a coroutine and takes `start` by value: g++ 12
/// destroys lambda temporaries passed to coroutine parameters twice (see
/// docs/architecture.md), so lambdas only ever travel through plain functions.
template <class T, class Start>
auto async_call(Inbox* inbox, Start start) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [](auto handler, Inbox* inbox, Start start) {
        using Handler = decltype(handler);
        struct Call final : Inbox::Item {
          explicit Call(Handler h) : handler(std::move(h)) {}
          Handler handler;
          std::optional<T> value;
          void deliver() override {
            // From the inbox's drain, on an event-loop thread: an idle
            // connection's strand runs the handler right here, with no
            // second trip through the scheduler (or wake-up of another
            // event-loop thread); a busy one queues it.
            dispatch_to(asio::get_associated_executor(handler), [this] { complete(); });
          }
          void discard() override { destroy(this); }
          /// Without an inbox: the callback may run on the coroutine's own
          /// thread before it has suspended (an inline read), so never inline.
          void post() {
            asio::post(asio::get_associated_executor(handler), [this] { complete(); });
          }
          void complete() {
            // The memory goes back before the coroutine resumes, so its
            // next call (on this thread) finds it in the cache.
            Handler h = std::move(handler);
            T v = std::move(*value);
            destroy(this);
            std::move(h)(std::move(v));
          }
          static Call* make(Handler h) {
            asio::recycling_allocator<Call> alloc;
            Call* p = alloc.allocate(1);
            try {
              return new (p) Call(std::move(h));
            } catch (...) {
              alloc.deallocate(p, 1);
              throw;
            }
          }
          static void destroy(Call* c) {
            c->~Call();
            asio::recycling_allocator<Call> alloc;
            alloc.deallocate(c, 1);
          }
        };
        auto* call = Call::make(std::move(handler));
        start([call, inbox](T value) {
          call->value.emplace(std::move(value));
          if (inbox) {
            inbox->push(call);
          } else {
            call->post();
          }
        });
      },
      asio::use_awaitable, inbox, std::move(start));
}

}  // namespace ds::http_server
