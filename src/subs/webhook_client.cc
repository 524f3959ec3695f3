// WebhookClient on Beast, callback style (no coroutines: see DESIGN-NOTES 6
// on g++ 12). Each post() is one Delivery object, owned by the handlers of
// its own pending I/O (shared_from_this) and confined to one strand:
//   resolve -> check every address -> connect (to those addresses only)
//   -> TLS handshake -> write request -> read response (body capped).
// One timer bounds the connect phase (connect_timeout) and then the request
// phase (request_timeout). The first outcome (result, error or timeout) ends
// the delivery; completions that arrive after it are ignored.

#include "subs/webhook_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <thread>

#include "net/tls_client.h"

namespace ds::subs {

WebhookClient::~WebhookClient() = default;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;
using error_code = boost::system::error_code;

constexpr const char* kUserAgent = "dstreamd-webhook/1";

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto la = static_cast<unsigned char>(a[i]) | 0x20, lb = static_cast<unsigned char>(b[i]) | 0x20;
    if (la != lb) return false;
  }
  return true;
}

bool reserved_header(std::string_view name) {
  for (const char* r :
       {"host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent"})
    if (iequals(name, r)) return true;
  return false;
}

/// RFC 9110 token characters.
bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    bool ok = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool valid_header_value(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

/// Visible ASCII only: nothing that could end the request line or a header.
bool visible_ascii(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return !s.empty();
}

bool allowed(const asio::ip::address& a, bool allow_localhost) {
  if (a.is_v4()) {
    auto bytes = a.to_v4().to_bytes();
    return address_allowed(bytes, allow_localhost);
  }
  auto bytes = a.to_v6().to_bytes();
  return address_allowed(bytes, allow_localhost);
}

AddressClass class_of(const asio::ip::address& a) {
  if (a.is_v4()) {
    auto bytes = a.to_v4().to_bytes();
    return classify(bytes);
  }
  auto bytes = a.to_v6().to_bytes();
  return classify(bytes);
}

class Client final : public WebhookClient {
 public:
  Client(WebhookClientOptions options, std::unique_ptr<ssl::context> tls)
      : options_(std::move(options)),
        tls_(std::move(tls)),
        ioc_(std::make_unique<asio::io_context>(static_cast<int>(options_.threads))) {
    work_.emplace(ioc_->get_executor());
    for (unsigned i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { ioc_->run(); });
  }

  ~Client() override {
    work_.reset();
    ioc_->stop();
    for (auto& t : threads_) t.join();
    ioc_.reset();  // destroys the deliveries still in flight without calling them back
  }

  void post(const WebhookUrl& url, Headers headers, std::string body, Done done) override;

  const WebhookClientOptions& options() const { return options_; }
  ssl::context& tls() { return *tls_; }

 private:
  WebhookClientOptions options_;
  std::unique_ptr<ssl::context> tls_;
  std::unique_ptr<asio::io_context> ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

class Delivery : public std::enable_shared_from_this<Delivery> {
 public:
  Delivery(Client& client, const Strand& strand, WebhookUrl url, WebhookClient::Headers headers,
           std::string body, WebhookClient::Done done)
      : client_(client),
        strand_(strand),
        timer_(strand),
        resolver_(strand),
        url_(std::move(url)),
        headers_(std::move(headers)),
        body_(std::move(body)),
        done_(std::move(done)) {}

  void start() {
    if (auto refusal = check_request()) return fail(errc::bad_request, *refusal);
    if (url_.https) {
      secure_.emplace(strand_, client_.tls());
    } else {
      plain_.emplace(strand_);
    }
    arm_timer(client_.options().connect_timeout, "connecting");
    error_code ec;
    auto literal = asio::ip::make_address(url_.host, ec);
    if (!ec) return on_addresses({literal});
    if (client_.options().resolve) {
      auto resolved = client_.options().resolve(url_.host);
      if (!resolved)
        return fail(errc::unavailable,
                    "could not resolve " + url_.host + ": " + resolved.error().message);
      std::vector<asio::ip::address> addresses;
      for (const auto& text : *resolved) {
        addresses.push_back(asio::ip::make_address(text, ec));
        if (ec) return fail(errc::unavailable, "resolver returned a bad address '" + text + "'");
      }
      return on_addresses(std::move(addresses));
    }
    auto self = shared_from_this();
    resolver_.async_resolve(url_.host, std::to_string(url_.port), tcp::resolver::numeric_service,
                            [self](error_code ec, const tcp::resolver::results_type& results) {
                              self->on_resolve(ec, results);
                            });
  }

 private:
  /// Why this request may not be sent, if it may not.
  std::optional<std::string> check_request() const {
    if (!url_.https && !client_.options().allow_localhost)
      return "webhook URL rejected: https:// is required";
    if (!visible_ascii(url_.host) || !visible_ascii(url_.target) || url_.target[0] != '/')
      return "webhook URL rejected: malformed host or target";
    for (const auto& [name, value] : headers_) {
      if (!valid_header_name(name) || !valid_header_value(value))
        return "webhook header '" + name + "' is malformed";
      if (reserved_header(name)) return "webhook header '" + name + "' is set by the client";
    }
    return std::nullopt;
  }

  void on_resolve(error_code ec, const tcp::resolver::results_type& results) {
    if (finished_) return;
    if (ec) return fail(errc::unavailable, "could not resolve " + url_.host + ": " + ec.message());
    std::vector<asio::ip::address> addresses;
    for (const auto& entry : results) addresses.push_back(entry.endpoint().address());
    on_addresses(std::move(addresses));
  }

  /// The SSRF check: every address must be allowed, and only these are used.
  void on_addresses(std::vector<asio::ip::address> addresses) {
    if (addresses.empty()) return fail(errc::unavailable, url_.host + " has no addresses");
    bool allow_localhost = client_.options().allow_localhost;
    for (const auto& a : addresses) {
      if (!allowed(a, allow_localhost))
        return fail(errc::bad_request,
                    "webhook host " + url_.host + " resolves to " + a.to_string() + ", a " +
                        address_class_name(class_of(a)) + " address, which is not allowed");
    }
    std::vector<tcp::endpoint> endpoints;
    for (const auto& a : addresses) endpoints.emplace_back(a, url_.port);
    auto self = shared_from_this();
    asio::async_connect(socket(), endpoints,
                        [self](error_code ec, const tcp::endpoint&) { self->on_connect(ec); });
  }

  void on_connect(error_code ec) {
    if (finished_) return;
    if (ec)
      return fail(errc::unavailable, "could not connect to " + url_.host + ": " + ec.message());
    error_code ignored;
    socket().set_option(tcp::no_delay(true), ignored);
    if (!secure_) return send();
    SSL* ssl = secure_->native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    error_code addr_ec;
    asio::ip::make_address(url_.host, addr_ec);
    if (!addr_ec) {
      X509_VERIFY_PARAM_set1_ip_asc(param, url_.host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, url_.host.c_str());  // SNI
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, url_.host.c_str(), url_.host.size());
    }
    secure_->set_verify_mode(ssl::verify_peer);
    auto self = shared_from_this();
    secure_->async_handshake(ssl::stream_base::client,
                             [self](error_code ec) { self->on_handshake(ec); });
  }

  void on_handshake(error_code ec) {
    if (finished_) return;
    if (ec)
      return fail(errc::unavailable,
                  "TLS handshake with " + url_.host + " failed: " + ec.message());
    send();
  }

  void send() {
    arm_timer(client_.options().request_timeout, "waiting for the response");
    request_.method(http::verb::post);
    request_.target(url_.target);
    request_.version(11);
    bool default_port = url_.port == (url_.https ? 443 : 80);
    bool v6 = url_.host.find(':') != std::string::npos;
    std::string host = v6 ? "[" + url_.host + "]" : url_.host;
    if (!default_port) host += ":" + std::to_string(url_.port);
    request_.set(http::field::host, host);
    request_.set(http::field::user_agent, kUserAgent);
    request_.set(http::field::content_type, "application/json");
    request_.set(http::field::connection, "close");
    for (auto& [name, value] : headers_) request_.insert(name, value);
    request_.body() = std::move(body_);
    request_.prepare_payload();
    auto self = shared_from_this();
    visit([&](auto& stream) {
      http::async_write(stream, request_, [self](error_code ec, size_t) { self->on_write(ec); });
    });
  }

  void on_write(error_code ec) {
    if (finished_) return;
    if (ec) return fail(errc::unavailable, "could not send the webhook request: " + ec.message());
    parser_.body_limit(client_.options().max_response_bytes);
    auto self = shared_from_this();
    visit([&](auto& stream) {
      http::async_read(stream, buffer_, parser_,
                       [self](error_code ec, size_t) { self->on_read(ec); });
    });
  }

  void on_read(error_code ec) {
    if (finished_) return;
    // A TLS peer that ends a read-to-EOF body by closing without close_notify.
    if (ec == ssl::error::stream_truncated && parser_.need_eof()) {
      ec = {};
      parser_.put_eof(ec);
    }
    if (ec == http::error::body_limit)
      return fail(errc::unavailable, "webhook response body is over " +
                                         std::to_string(client_.options().max_response_bytes) +
                                         " bytes");
    if (ec) return fail(errc::unavailable, "could not read the webhook response: " + ec.message());
    auto& res = parser_.get();
    finish(WebhookResponse{res.result_int(), std::move(res.body())});
  }

  /// (Re)arms the phase timer; a wait from an earlier phase is ignored.
  void arm_timer(std::chrono::milliseconds timeout, const char* phase) {
    phase_ = phase;
    unsigned generation = ++timer_generation_;
    timer_.expires_after(timeout);
    auto self = shared_from_this();
    timer_.async_wait([self, generation](error_code ec) {
      if (ec || self->finished_ || generation != self->timer_generation_) return;
      self->fail(errc::unavailable, std::string("webhook timed out ") + self->phase_);
    });
  }

  void fail(errc code, std::string message) { finish(Error(code, std::move(message))); }

  /// Delivers the outcome once and releases the connection; the handlers
  /// still pending complete with operation_aborted and see finished_.
  void finish(Result<WebhookResponse> result) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    resolver_.cancel();
    if (plain_ || secure_) {
      error_code ignored;
      socket().close(ignored);
    }
    auto done = std::move(done_);
    done(std::move(result));
  }

  tcp::socket& socket() { return secure_ ? secure_->next_layer() : *plain_; }

  template <class F>
  void visit(F&& f) {
    if (secure_)
      f(*secure_);
    else
      f(*plain_);
  }

  Client& client_;
  Strand strand_;
  asio::steady_timer timer_;
  tcp::resolver resolver_;
  std::optional<tcp::socket> plain_;
  std::optional<ssl::stream<tcp::socket>> secure_;
  WebhookUrl url_;
  WebhookClient::Headers headers_;
  std::string body_;
  WebhookClient::Done done_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  const char* phase_ = "";
  unsigned timer_generation_ = 0;
  bool finished_ = false;
};

void Client::post(const WebhookUrl& url, Headers headers, std::string body, Done done) {
  Strand strand = asio::make_strand(*ioc_);
  auto delivery = std::make_shared<Delivery>(*this, strand, url, std::move(headers),
                                             std::move(body), std::move(done));
  asio::post(strand, [delivery] { delivery->start(); });
}

}  // namespace

std::unique_ptr<WebhookClient> make_webhook_client(WebhookClientOptions options,
                                                   std::string* error) {
  std::string scratch;
  if (!error) error = &scratch;
  if (options.threads < 1) {
    *error = "webhook client needs threads >= 1";
    return nullptr;
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    *error = "webhook client timeouts must be positive";
    return nullptr;
  }
  std::string tls_error;
  auto tls = net::make_tls_client_context(options.ca_file, &tls_error);
  if (!tls) {
    *error = "webhook TLS setup failed: " + tls_error;
    return nullptr;
  }
  return std::make_unique<Client>(std::move(options), std::move(tls));
}

}  // namespace ds::subs
