// HttpS2Api on Beast, callback style (no coroutines: see DESIGN-NOTES 6 on
// g++ 12). Three kinds of operation objects, each owned by the handlers of
// its own pending I/O (shared_from_this) and confined to one strand:
//   Dialer      resolve + connect + TLS handshake, bounded by connect_timeout
//   UnaryCall   one REST call with retries; connections come from the pool
//   SessionOp   one SSE read session; its handle (SessionHandle) cancels it
// The client owns the io_context and the idle connection pool.

#include "s2/http_s2_api.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"
#include "net/tls_client.h"
#include "s2/sse_parser.h"
#include "s2/wire.h"

namespace ds::s2 {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Strand = asio::strand<asio::io_context::executor_type>;
using Kind = S2Error::Kind;

constexpr uint64_t kMaxUnaryResponseBytes = 32u << 20;
constexpr size_t kMaxSseEventBytes = 32u << 20;
constexpr size_t kMaxErrorBodyBytes = 64u << 10;

struct Endpoint {
  bool tls = false;
  std::string host;  ///< for connect, SNI and certificate verification
  std::string port;
  std::string host_header;
  std::string base_path;  ///< "/v1" unless the URL gave a path
  bool basin_header = true;
};

bool parse_endpoint(std::string url, const std::string& basin, Endpoint* ep, std::string* error) {
  for (size_t at; (at = url.find("{basin}")) != std::string::npos;) url.replace(at, 7, basin);
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    ep->tls = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    *error = "S2 endpoint must start with http:// or https://";
    return false;
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    *error = "S2 endpoint has no host (or has user info)";
    return false;
  }
  std::string_view host = authority, port;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      *error = "S2 endpoint has a malformed IPv6 host";
      return false;
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        *error = "S2 endpoint has a malformed port";
        return false;
      }
      port = authority.substr(close + 2);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (!port.empty() && port.find_first_not_of("0123456789") != std::string_view::npos) {
    *error = "S2 endpoint has a malformed port";
    return false;
  }
  ep->host = std::string(host);
  ep->port = port.empty() ? (ep->tls ? "443" : "80") : std::string(port);
  ep->host_header = std::string(authority);
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  ep->base_path = path.empty() || path == "/" ? "/v1" : std::string(path);
  // Cloud form: {basin}.b.s2.dev carries the basin; anything else needs the header.
  ep->basin_header = !ep->host.starts_with(basin + ".");
  return true;
}

/// One HTTP/1.1 connection, plain or TLS, bound to one strand.
class Connection {
 public:
  Connection(const Strand& strand, ssl::context* tls) {
    if (tls)
      secure.emplace(strand, *tls);
    else
      plain.emplace(strand);
    // Beast reads at most the buffer's free capacity per receive. A body
    // parsed into a string leaves the buffer at the head's size (~1 KiB), so a
    // 1 MiB read response took ~1000 receives, each with an epoll round trip
    // and a timer update: ~70 ms of CPU per MiB of catch-up on S2.
    buffer.reserve(kReceiveBytes);
  }
  static constexpr size_t kReceiveBytes = size_t{64} * 1024;
  beast::tcp_stream& tcp() { return secure ? secure->next_layer() : *plain; }
  template <class F>
  void visit(F&& f) {
    if (secure)
      f(*secure);
    else
      f(*plain);
  }

  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  Clock::time_point idle_since{};
};

/// Without reading: has the peer closed or written to this idle connection?
bool idle_connection_usable(Connection& c) {
  auto& socket = c.tcp().socket();
  if (!socket.is_open() || c.buffer.size() > 0) return false;
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // 0: EOF. > 0: unsolicited bytes (e.g. a TLS close_notify). -1/EAGAIN: quiet.
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct SessionShared;
class SessionOp;

class Client final : public HttpS2Api {
 public:
  Client(HttpS2Options options, Endpoint endpoint, std::unique_ptr<ssl::context> tls);
  ~Client() override;

  void create_stream(const std::string& stream, Callback<Empty> done) override;
  void delete_stream(const std::string& stream, Callback<Empty> done) override;
  void append(const std::string& stream, AppendInput input, Callback<AppendAck> done) override;
  void read(const std::string& stream, uint64_t seq_num, ReadLimits limits,
            Callback<ReadBatch> done) override;
  void read_from_tail(const std::string& stream, uint64_t tail_offset, ReadLimits limits,
                      Callback<ReadBatch> done) override;
  void check_tail(const std::string& stream, Callback<uint64_t> done) override;
  void list_streams(const std::string& prefix, const std::string& start_after, uint64_t limit,
                    Callback<StreamPage> done) override;
  std::unique_ptr<ReadSession> open_session(const std::string& stream, uint64_t seq_num,
                                            SessionHandlers handlers) override;
  const HttpS2Stats& stats() const override { return stats_; }

  // For the operation objects.
  const HttpS2Options& options() const { return options_; }
  const Endpoint& endpoint() const { return endpoint_; }
  ssl::context* tls() { return tls_.get(); }
  Strand new_strand() { return asio::make_strand(*ioc_); }
  std::unique_ptr<Connection> take_idle();
  void put_idle(std::unique_ptr<Connection> conn);
  std::chrono::milliseconds backoff(int retry);
  void count_error(Kind kind) { ++stats_.errors[static_cast<int>(kind)]; }
  http::request<http::string_body> make_request(http::verb verb, const std::string& target,
                                                std::string body, const char* accept) const;
  std::string stream_path(const std::string& stream) const {
    return endpoint_.base_path + "/streams/" + wire::encode_path_segment(stream);
  }

  HttpS2Stats stats_;

 private:
  void read_records(const std::string& stream, const std::string& start, ReadLimits limits,
                    Callback<ReadBatch> done);

  HttpS2Options options_;
  Endpoint endpoint_;
  std::unique_ptr<ssl::context> tls_;
  std::unique_ptr<asio::io_context> ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  Mutex pool_mu_;
  std::deque<std::unique_ptr<Connection>> idle_ DS_GUARDED_BY(pool_mu_);  // most recent at the back
  Mutex sessions_mu_;
  std::vector<std::weak_ptr<SessionShared>> sessions_ DS_GUARDED_BY(sessions_mu_);
};

// ---------------------------------------------------------------------------
// Dialer

class Dialer : public std::enable_shared_from_this<Dialer> {
 public:
  using Done = std::function<void(beast::error_code, std::unique_ptr<Connection>)>;

  Dialer(Client& client, const Strand& strand, Done done)
      : client_(client),
        resolver_(strand),
        timer_(strand),
        conn_(std::make_unique<Connection>(strand, client.tls())),
        done_(std::move(done)) {}

  void start() {
    deadline_ = Clock::now() + client_.options().connect_timeout;
    ++client_.stats_.connections_opened;
    auto self = shared_from_this();
    timer_.expires_at(deadline_);
    timer_.async_wait([self](beast::error_code ec) {
      if (ec) return;
      self->timed_out_ = true;
      self->resolver_.cancel();
    });
    const auto& ep = client_.endpoint();
    resolver_.async_resolve(
        ep.host, ep.port,
        [self](beast::error_code ec, tcp::resolver::results_type r) { self->on_resolve(ec, r); });
  }

  /// On the strand. The done callback still runs (with operation_aborted).
  void cancel() {
    resolver_.cancel();
    timer_.cancel();
    if (conn_) conn_->tcp().close();
  }

 private:
  void on_resolve(beast::error_code ec, const tcp::resolver::results_type& results) {
    timer_.cancel();
    if (ec) return fail(timed_out_ ? beast::error::timeout : ec);
    auto self = shared_from_this();
    conn_->tcp().expires_at(deadline_);
    conn_->tcp().async_connect(
        results, [self](beast::error_code ec, const tcp::endpoint&) { self->on_connect(ec); });
  }

  void on_connect(beast::error_code ec) {
    if (ec) return fail(ec);
    conn_->tcp().socket().set_option(tcp::no_delay(true), ec);
    if (!conn_->secure) return succeed();
    const std::string& host = client_.endpoint().host;
    SSL* ssl = conn_->secure->native_handle();
    boost::system::error_code addr_ec;
    asio::ip::make_address(host, addr_ec);
    bool is_ip = !addr_ec;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, host.c_str());  // SNI
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    }
    conn_->secure->set_verify_mode(ssl::verify_peer);
    auto self = shared_from_this();
    conn_->secure->async_handshake(ssl::stream_base::client,
                                   [self](beast::error_code ec) { self->on_handshake(ec); });
  }

  void on_handshake(beast::error_code ec) {
    if (ec) return fail(ec);
    succeed();
  }

  void succeed() {
    conn_->tcp().expires_never();
    auto done = std::move(done_);
    done({}, std::move(conn_));
  }

  void fail(beast::error_code ec) {
    auto done = std::move(done_);
    done(ec, nullptr);
  }

  Client& client_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  std::unique_ptr<Connection> conn_;
  Done done_;
  Clock::time_point deadline_;
  bool timed_out_ = false;
};

// ---------------------------------------------------------------------------
// UnaryCall

struct Reply {
  int status = 0;
  std::string body;
};

struct CallSpec {
  http::verb verb = http::verb::get;
  std::string target;
  std::string body;
  /// An append: never retried unless the failure proves it did not happen.
  bool has_side_effects = false;
  std::chrono::milliseconds extra_timeout{0};
  std::string request_token;
};

class UnaryCall : public std::enable_shared_from_this<UnaryCall> {
 public:
  using Done = std::function<void(S2Result<Reply>)>;

  UnaryCall(Client& client, CallSpec spec, Done done)
      : client_(client),
        strand_(client.new_strand()),
        timer_(strand_),
        spec_(std::move(spec)),
        done_(std::move(done)) {}

  void start() { attempt(); }

 private:
  void attempt() {
    ++attempt_;
    if (attempt_ > 1) ++client_.stats_.retries;
    next_connection();
  }

  void next_connection() {
    ++client_.stats_.attempts;
    conn_ = client_.take_idle();
    reused_ = conn_ != nullptr;
    if (conn_) return send();
    auto self = shared_from_this();
    auto dialer = std::make_shared<Dialer>(
        client_, strand_, [self](beast::error_code ec, std::unique_ptr<Connection> conn) {
          self->on_dialed(ec, std::move(conn));
        });
    dialer->start();
  }

  void on_dialed(beast::error_code ec, std::unique_ptr<Connection> conn) {
    if (ec) return transport_failure(ec, /*sent=*/false);
    conn_ = std::move(conn);
    send();
  }

  void send() {
    req_ = client_.make_request(spec_.verb, spec_.target, spec_.body, "application/json");
    if (!spec_.request_token.empty()) req_.set("s2-request-token", spec_.request_token);
    conn_->tcp().expires_after(client_.options().request_timeout + spec_.extra_timeout);
    auto self = shared_from_this();
    conn_->visit([&](auto& stream) {
      http::async_write(stream, req_, [self](beast::error_code ec, size_t) { self->on_write(ec); });
    });
  }

  void on_write(beast::error_code ec) {
    if (ec) return transport_failure(ec, /*sent=*/true);
    parser_.emplace();
    parser_->body_limit(kMaxUnaryResponseBytes);
    auto self = shared_from_this();
    conn_->visit([&](auto& stream) {
      http::async_read(stream, conn_->buffer, *parser_,
                       [self](beast::error_code ec, size_t) { self->on_read(ec); });
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) return transport_failure(ec, /*sent=*/true);
    auto& res = parser_->get();
    Reply reply{static_cast<int>(res.result_int()), std::move(res.body())};
    bool reusable = res.keep_alive() && conn_->buffer.size() == 0;
    parser_.reset();
    if (reusable) {
      conn_->tcp().expires_never();
      client_.put_idle(std::move(conn_));
    } else {
      conn_.reset();
    }
    if (reply.status >= 200 && reply.status < 300)
      return finish(S2Result<Reply>::success(std::move(reply)));
    S2Error e = wire::error_from_response(reply.status, reply.body);
    if (!wire::is_retryable(reply.status, e.code))
      return finish(S2Result<Reply>::failure(std::move(e)));
    if (spec_.has_side_effects && !wire::has_no_side_effects(e.code)) {
      e.kind = Kind::ambiguous;
      e.message = "the append may have happened: " + e.message;
      return finish(S2Result<Reply>::failure(std::move(e)));
    }
    retry_or_fail(std::move(e));
  }

  void transport_failure(beast::error_code ec, bool sent) {
    bool stale = reused_ && (ec == http::error::end_of_stream || ec == asio::error::eof ||
                             ec == asio::error::connection_reset || ec == asio::error::broken_pipe);
    if (conn_) {
      beast::error_code ignored;
      conn_->tcp().socket().close(ignored);
      conn_.reset();
    }
    S2Error e;
    e.kind = Kind::unavailable;
    e.message = std::string(sent ? "S2 request failed: " : "S2 connection failed: ") + ec.message();
    if (sent && spec_.has_side_effects) {
      e.kind = Kind::ambiguous;
      e.message = "the append may have happened: " + e.message;
      return finish(S2Result<Reply>::failure(std::move(e)));
    }
    // A pooled connection the server had closed: not S2's failure, and a
    // request without side effects may go again at once (each stale
    // connection is dropped, so this ends).
    if (stale) return next_connection();
    retry_or_fail(std::move(e));
  }

  void retry_or_fail(S2Error e) {
    if (attempt_ >= client_.options().max_attempts) {
      e.kind = Kind::unavailable;
      e.message = "S2 unavailable after " + std::to_string(attempt_) + " attempts: " + e.message;
      return finish(S2Result<Reply>::failure(std::move(e)));
    }
    timer_.expires_after(client_.backoff(attempt_));
    auto self = shared_from_this();
    timer_.async_wait([self](beast::error_code ec) {
      if (!ec) self->attempt();
    });
  }

  void finish(S2Result<Reply> result) {
    auto done = std::move(done_);
    done(std::move(result));
  }

  Client& client_;
  Strand strand_;
  asio::steady_timer timer_;
  CallSpec spec_;
  Done done_;
  int attempt_ = 0;
  bool reused_ = false;
  std::unique_ptr<Connection> conn_;
  http::request<http::string_body> req_;
  std::optional<http::response_parser<http::string_body>> parser_;
};

// ---------------------------------------------------------------------------
// Read sessions

/// Shared by a session's handle and its operation. `mu` is held while a
/// handler runs, so the handle's destructor waits for a running handler and
/// none starts after it. Recursive: a handler may destroy its own handle.
struct SessionShared {
  std::recursive_mutex mu;
  bool closed = false;    ///< the handle is gone
  bool ended = false;     ///< on_end was called
  bool api_gone = false;  ///< the client is being destroyed: post nothing
  std::thread::id in_handler;
  SessionHandlers handlers;
  std::optional<Strand> strand;
  std::weak_ptr<SessionOp> op;
};

class SessionOp : public std::enable_shared_from_this<SessionOp> {
 public:
  SessionOp(Client& client, std::shared_ptr<SessionShared> shared, Strand strand,
            std::string target)
      : client_(client),
        shared_(std::move(shared)),
        strand_(std::move(strand)),
        timer_(strand_),
        stall_timer_(strand_),
        target_(std::move(target)),
        sse_(kMaxSseEventBytes) {
    ++client_.stats_.open_sessions;
  }
  ~SessionOp() { --client_.stats_.open_sessions; }

  /// On the strand.
  void start() { attempt(); }

  /// On the strand: stop without calling on_end (the handle is gone).
  void cancel() {
    if (stopped_) return;
    stopped_ = true;
    close_all();
  }

 private:
  void attempt() {
    if (stopped_) return;
    ++attempt_;
    if (attempt_ > 1) ++client_.stats_.retries;
    ++client_.stats_.attempts;
    auto self = shared_from_this();
    auto dialer = std::make_shared<Dialer>(
        client_, strand_, [self](beast::error_code ec, std::unique_ptr<Connection> conn) {
          self->on_dialed(ec, std::move(conn));
        });
    dialer_ = dialer;
    dialer->start();
  }

  void on_dialed(beast::error_code ec, std::unique_ptr<Connection> conn) {
    dialer_.reset();
    if (stopped_) return;
    if (ec) return retry_or_end(transport_error("S2 connection failed: ", ec));
    conn_ = std::move(conn);
    req_ = client_.make_request(http::verb::get, target_, "", "text/event-stream");
    conn_->tcp().expires_after(client_.options().request_timeout);
    auto self = shared_from_this();
    conn_->visit([&](auto& stream) {
      http::async_write(stream, req_, [self](beast::error_code ec, size_t) { self->on_write(ec); });
    });
  }

  void on_write(beast::error_code ec) {
    if (stopped_) return;
    if (ec) return retry_or_end(transport_error("S2 request failed: ", ec));
    parser_.emplace();
    parser_->body_limit(boost::none);
    auto self = shared_from_this();
    conn_->visit([&](auto& stream) {
      http::async_read_header(stream, conn_->buffer, *parser_,
                              [self](beast::error_code ec, size_t) { self->on_header(ec); });
    });
  }

  void on_header(beast::error_code ec) {
    if (stopped_) return;
    if (ec) return retry_or_end(transport_error("S2 request failed: ", ec));
    status_ = static_cast<int>(parser_->get().result_int());
    if (status_ == 200) {
      // Live from here on: the stall timer replaces the request timeout.
      conn_->tcp().expires_never();
      last_event_ = Clock::now();
      arm_stall_timer();
    }
    read_some();
  }

  void read_some() {
    if (parser_->is_done()) return on_body_done();
    auto& body = parser_->get().body();
    body.data = buf_.data();
    body.size = buf_.size();
    auto self = shared_from_this();
    conn_->visit([&](auto& stream) {
      http::async_read_some(stream, conn_->buffer, *parser_,
                            [self](beast::error_code ec, size_t) { self->on_body(ec); });
    });
  }

  void on_body(beast::error_code ec) {
    if (stopped_) return;
    if (ec == http::error::need_buffer) ec = {};
    size_t got = buf_.size() - parser_->get().body().size;
    std::string_view bytes(buf_.data(), got);
    if (status_ != 200) {
      if (error_body_.size() < kMaxErrorBodyBytes) error_body_.append(bytes);
    } else if (got > 0) {
      bool ok = sse_.feed(bytes, [this](SseEvent&& ev) { return on_event(std::move(ev)); });
      if (stopped_) return;  // an event ended the session
      if (!ok) return end(protocol_error("S2 sent an SSE event over the size limit"));
    }
    if (ec) {
      if (status_ != 200) return retry_or_end(transport_error("S2 request failed: ", ec));
      return end(transport_error("S2 read session lost: ", ec));
    }
    read_some();
  }

  void on_body_done() {
    if (status_ == 200) return end(protocol_error("S2 ended the read session without [DONE]"));
    S2Error e = wire::error_from_response(status_, error_body_);
    error_body_.clear();
    if (wire::is_retryable(status_, e.code)) return retry_or_end(std::move(e));
    end(std::move(e));
  }

  bool on_event(SseEvent&& ev) {
    last_event_ = Clock::now();
    std::string error;
    if (ev.type == "batch") {
      ReadBatch batch;
      if (!wire::parse_read_batch(ev.data, &batch, &error)) {
        end(protocol_error(error));
        return false;
      }
      deliver(std::move(batch));
    } else if (ev.type == "ping") {
      ReadBatch batch;
      if (!wire::parse_tail(ev.data, &batch.tail, &error)) batch.tail.reset();
      deliver(std::move(batch));
    } else if (ev.type == "error") {
      // A mid-session error (storage, streamer gone, draining): the owner
      // reopens, so transient codes are `unavailable`.
      S2Error e = wire::error_from_response(0, ev.data);
      if (e.kind == Kind::rejected && (e.code.empty() || wire::is_retryable_code(e.code)))
        e.kind = Kind::unavailable;
      e.message = "S2 ended the read session: " + e.message;
      end(std::move(e));
      return false;
    } else if (ev.data == "[DONE]") {
      S2Error e;
      e.kind = Kind::unavailable;
      e.message = "S2 ended the read session ([DONE])";
      end(std::move(e));
      return false;
    }
    return !stopped_;
  }

  void deliver(ReadBatch batch) {
    std::lock_guard lock(shared_->mu);
    if (shared_->closed || shared_->ended || !shared_->handlers.on_batch) return;
    shared_->in_handler = std::this_thread::get_id();
    shared_->handlers.on_batch(std::move(batch));
    shared_->in_handler = {};
  }

  void arm_stall_timer() {
    stall_timer_.expires_at(last_event_ + client_.options().session_stall_timeout);
    auto self = shared_from_this();
    stall_timer_.async_wait([self](beast::error_code ec) {
      if (ec || self->stopped_) return;
      if (Clock::now() - self->last_event_ >= self->client_.options().session_stall_timeout) {
        S2Error e;
        e.kind = Kind::unavailable;
        e.message = "S2 read session stalled: no event for " +
                    std::to_string(self->client_.options().session_stall_timeout.count()) + " ms";
        return self->end(std::move(e));
      }
      self->arm_stall_timer();
    });
  }

  S2Error transport_error(const char* what, beast::error_code ec) {
    S2Error e;
    e.kind = Kind::unavailable;
    e.message = what + ec.message();
    return e;
  }

  S2Error protocol_error(std::string message) {
    S2Error e;
    e.kind = Kind::unavailable;
    e.message = std::move(message);
    return e;
  }

  /// Before the session is live: retryable failures go again.
  void retry_or_end(S2Error e) {
    if (conn_) {
      beast::error_code ignored;
      conn_->tcp().socket().close(ignored);
    }
    if (attempt_ >= client_.options().max_attempts) {
      e.kind = Kind::unavailable;
      e.message = "S2 unavailable after " + std::to_string(attempt_) + " attempts: " + e.message;
      return end(std::move(e));
    }
    timer_.expires_after(client_.backoff(attempt_));
    auto self = shared_from_this();
    timer_.async_wait([self](beast::error_code ec) {
      if (ec || self->stopped_) return;
      self->conn_.reset();
      self->parser_.reset();
      self->attempt();
    });
  }

  void end(S2Error e) {
    if (stopped_) return;
    stopped_ = true;
    close_all();
    client_.count_error(e.kind);
    std::lock_guard lock(shared_->mu);
    if (shared_->closed || shared_->ended) return;
    shared_->ended = true;
    if (!shared_->handlers.on_end) return;
    shared_->in_handler = std::this_thread::get_id();
    shared_->handlers.on_end(std::move(e));
    shared_->in_handler = {};
  }

  void close_all() {
    timer_.cancel();
    stall_timer_.cancel();
    if (auto dialer = dialer_.lock()) dialer->cancel();
    if (conn_) {
      beast::error_code ignored;
      conn_->tcp().socket().close(ignored);
    }
  }

  Client& client_;
  std::shared_ptr<SessionShared> shared_;
  Strand strand_;
  asio::steady_timer timer_;
  asio::steady_timer stall_timer_;
  std::string target_;
  int attempt_ = 0;
  bool stopped_ = false;
  int status_ = 0;
  std::weak_ptr<Dialer> dialer_;  // weak: the dialer's callback owns this op
  std::unique_ptr<Connection> conn_;
  http::request<http::string_body> req_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::array<char, 16384> buf_;
  std::string error_body_;
  SseParser sse_;
  Clock::time_point last_event_;
};

class SessionHandle final : public ReadSession {
 public:
  explicit SessionHandle(std::shared_ptr<SessionShared> shared) : shared_(std::move(shared)) {}

  ~SessionHandle() override {
    SessionHandlers released;  // destroyed after the lock is released
    std::lock_guard lock(shared_->mu);
    shared_->closed = true;
    if (!shared_->api_gone) {
      asio::post(*shared_->strand, [op = shared_->op] {
        if (auto live = op.lock()) live->cancel();
      });
    }
    // A handler running on this thread (destroying its own handle) keeps its
    // std::function alive until it returns; otherwise drop the captures now.
    if (shared_->in_handler != std::this_thread::get_id()) released = std::move(shared_->handlers);
  }

 private:
  std::shared_ptr<SessionShared> shared_;
};

// ---------------------------------------------------------------------------
// Client

Client::Client(HttpS2Options options, Endpoint endpoint, std::unique_ptr<ssl::context> tls)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      tls_(std::move(tls)),
      ioc_(std::make_unique<asio::io_context>(static_cast<int>(options_.threads))) {
  work_.emplace(ioc_->get_executor());
  for (unsigned i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { ioc_->run(); });
}

Client::~Client() {
  {
    MutexLock lock(sessions_mu_);
    for (auto& weak : sessions_) {
      if (auto shared = weak.lock()) {
        std::lock_guard session_lock(shared->mu);
        shared->api_gone = true;
        shared->strand.reset();  // a strand must not outlive its io_context
      }
    }
  }
  work_.reset();
  ioc_->stop();
  for (auto& t : threads_) t.join();
  {
    MutexLock lock(pool_mu_);
    idle_.clear();
  }
  ioc_.reset();  // destroys the handlers (and operations) still queued
}

std::unique_ptr<Connection> Client::take_idle() {
  std::unique_ptr<Connection> dropped;
  MutexLock lock(pool_mu_);
  auto now = Clock::now();
  while (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    if (now - conn->idle_since < options_.idle_connection_timeout && idle_connection_usable(*conn))
      return conn;
  }
  return nullptr;
}

void Client::put_idle(std::unique_ptr<Connection> conn) {
  conn->idle_since = Clock::now();
  MutexLock lock(pool_mu_);
  idle_.push_back(std::move(conn));
  while (idle_.size() > options_.max_idle_connections) idle_.pop_front();
}

std::chrono::milliseconds Client::backoff(int retry) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto base = options_.backoff_base.count();
  int64_t d = base;
  for (int i = 1; i < retry && d < options_.backoff_max.count(); ++i) d *= 2;
  d = std::min<int64_t>(d, options_.backoff_max.count());
  std::uniform_int_distribution<int64_t> dist(d / 2, std::max<int64_t>(d / 2, d));
  return std::chrono::milliseconds(dist(rng));
}

http::request<http::string_body> Client::make_request(http::verb verb, const std::string& target,
                                                      std::string body, const char* accept) const {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, endpoint_.host_header);
  req.set(http::field::user_agent, "dstreamd");
  req.set(http::field::accept, accept);
  req.set("s2-format", "base64");
  if (endpoint_.basin_header) req.set("s2-basin", options_.basin);
  if (!options_.token.empty()) req.set(http::field::authorization, "Bearer " + options_.token);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
  }
  req.keep_alive(true);
  req.prepare_payload();
  return req;
}

/// Starts a call; `on_reply` gets the 2xx reply, or the error already counted.
template <class T, class Parse>
void start_call(Client& client, CallSpec spec, S2Api::Callback<T> done, Parse parse) {
  auto call = std::make_shared<UnaryCall>(
      client, std::move(spec),
      [&client, done = std::move(done), parse = std::move(parse)](S2Result<Reply> r) {
        if (!r.ok()) {
          client.count_error(r.error->kind);
          return done(S2Result<T>::failure(std::move(*r.error)));
        }
        S2Result<T> result = parse(*r.value);
        if (!result.ok()) client.count_error(result.error->kind);
        done(std::move(result));
      });
  call->start();
}

S2Error malformed(Kind kind, int status, std::string message) {
  S2Error e;
  e.kind = kind;
  e.http_status = status;
  e.message = std::move(message);
  return e;
}

void Client::create_stream(const std::string& stream, Callback<Empty> done) {
  ++stats_.requests[HttpS2Stats::create_stream];
  CallSpec spec;
  spec.verb = http::verb::post;
  spec.target = endpoint_.base_path + "/streams";
  spec.body = wire::create_stream_body(stream);
  // Idempotency token: a retried create that did land answers 201 noop.
  static constexpr char kHex[] = "0123456789abcdef";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  for (int i = 0; i < 32; ++i) spec.request_token.push_back(kHex[rng() & 15]);
  start_call<Empty>(*this, std::move(spec), std::move(done),
                    [](const Reply&) { return S2Result<Empty>::success({}); });
}

void Client::delete_stream(const std::string& stream, Callback<Empty> done) {
  ++stats_.requests[HttpS2Stats::delete_stream];
  CallSpec spec;
  spec.verb = http::verb::delete_;
  spec.target = stream_path(stream);
  start_call<Empty>(*this, std::move(spec), std::move(done),
                    [](const Reply&) { return S2Result<Empty>::success({}); });
}

void Client::append(const std::string& stream, AppendInput input, Callback<AppendAck> done) {
  ++stats_.requests[HttpS2Stats::append];
  CallSpec spec;
  spec.verb = http::verb::post;
  spec.target = stream_path(stream) + "/records";
  spec.body = wire::append_body(input);
  spec.has_side_effects = true;
  start_call<AppendAck>(*this, std::move(spec), std::move(done), [](const Reply& r) {
    AppendAck ack;
    std::string error;
    if (!wire::parse_append_ack(r.body, &ack, &error))
      return S2Result<AppendAck>::failure(malformed(Kind::ambiguous, r.status, error));
    return S2Result<AppendAck>::success(ack);
  });
}

void Client::read(const std::string& stream, uint64_t seq_num, ReadLimits limits,
                  Callback<ReadBatch> done) {
  read_records(stream, "seq_num=" + std::to_string(seq_num), limits, std::move(done));
}

void Client::read_from_tail(const std::string& stream, uint64_t tail_offset, ReadLimits limits,
                            Callback<ReadBatch> done) {
  read_records(stream, "tail_offset=" + std::to_string(tail_offset), limits, std::move(done));
}

void Client::read_records(const std::string& stream, const std::string& start, ReadLimits limits,
                          Callback<ReadBatch> done) {
  ++stats_.requests[HttpS2Stats::read];
  CallSpec spec;
  spec.target = stream_path(stream) + "/records?" + start;
  if (limits.count) spec.target += "&count=" + std::to_string(*limits.count);
  if (limits.bytes) spec.target += "&bytes=" + std::to_string(*limits.bytes);
  if (limits.wait_s) {
    spec.target += "&wait=" + std::to_string(*limits.wait_s);
    spec.extra_timeout = std::chrono::seconds(std::min<uint32_t>(*limits.wait_s, 60));
  }
  start_call<ReadBatch>(*this, std::move(spec), std::move(done), [](const Reply& r) {
    ReadBatch batch;
    std::string error;
    if (!wire::parse_read_batch(r.body, &batch, &error))
      return S2Result<ReadBatch>::failure(malformed(Kind::rejected, r.status, error));
    return S2Result<ReadBatch>::success(std::move(batch));
  });
}

void Client::check_tail(const std::string& stream, Callback<uint64_t> done) {
  ++stats_.requests[HttpS2Stats::check_tail];
  CallSpec spec;
  spec.target = stream_path(stream) + "/records/tail";
  start_call<uint64_t>(*this, std::move(spec), std::move(done), [](const Reply& r) {
    std::optional<uint64_t> tail;
    std::string error = "check tail answer without a tail";
    if (!wire::parse_tail(r.body, &tail, &error) || !tail)
      return S2Result<uint64_t>::failure(malformed(Kind::rejected, r.status, error));
    return S2Result<uint64_t>::success(*tail);
  });
}

void Client::list_streams(const std::string& prefix, const std::string& start_after, uint64_t limit,
                          Callback<StreamPage> done) {
  // Not counted in stats_.requests (its Method list is part of /metrics);
  // attempts, retries and errors count it.
  CallSpec spec;
  spec.target =
      endpoint_.base_path + "/streams?" +
      wire::list_streams_query(prefix, start_after, std::clamp<uint64_t>(limit, 1, kMaxListLimit));
  start_call<StreamPage>(*this, std::move(spec), std::move(done), [](const Reply& r) {
    StreamPage page;
    std::string error;
    if (!wire::parse_stream_page(r.body, &page, &error))
      return S2Result<StreamPage>::failure(malformed(Kind::rejected, r.status, error));
    return S2Result<StreamPage>::success(std::move(page));
  });
}

std::unique_ptr<ReadSession> Client::open_session(const std::string& stream, uint64_t seq_num,
                                                  SessionHandlers handlers) {
  ++stats_.requests[HttpS2Stats::open_session];
  auto shared = std::make_shared<SessionShared>();
  shared->handlers = std::move(handlers);
  shared->strand.emplace(new_strand());
  auto op = std::make_shared<SessionOp>(
      *this, shared, *shared->strand,
      stream_path(stream) + "/records?seq_num=" + std::to_string(seq_num));
  shared->op = op;
  {
    MutexLock lock(sessions_mu_);
    std::erase_if(sessions_, [](const std::weak_ptr<SessionShared>& w) { return w.expired(); });
    sessions_.push_back(shared);
  }
  asio::post(*shared->strand, [op] { op->start(); });
  return std::make_unique<SessionHandle>(std::move(shared));
}

}  // namespace

std::unique_ptr<HttpS2Api> make_http_s2_api(HttpS2Options options, std::string* error) {
  std::string scratch;
  if (!error) error = &scratch;
  if (options.basin.empty()) {
    *error = "S2 basin is required";
    return nullptr;
  }
  if (options.max_attempts < 1 || options.threads < 1) {
    *error = "S2 client needs max_attempts >= 1 and threads >= 1";
    return nullptr;
  }
  Endpoint endpoint;
  if (!parse_endpoint(options.endpoint, options.basin, &endpoint, error)) return nullptr;
  std::unique_ptr<ssl::context> tls;
  if (endpoint.tls) {
    std::string tls_error;
    tls = net::make_tls_client_context(options.ca_file, &tls_error);
    if (!tls) {
      *error = "S2 TLS setup failed: " + tls_error;
      return nullptr;
    }
  }
  return std::make_unique<Client>(std::move(options), std::move(endpoint), std::move(tls));
}

}  // namespace ds::s2
