// WebhookClient (subs/webhook_client.h) against a small HTTP server on
// 127.0.0.1 run by the test, with the resolver seam pointing names at it.

#include "subs/webhook_client.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ds::subs {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Request = http::request<http::string_body>;

/// Accepts connections on 127.0.0.1:<ephemeral>, reads one request from each,
/// records it, writes `response` verbatim (or nothing when it is empty) and
/// then holds the connection until the client closes it.
class TestServer {
 public:
  explicit TestServer(std::string response) : response_(std::move(response)) {
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~TestServer() {
    ioc_.stop();
    thread_.join();
  }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }

  int accepted() {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  /// Waits for the n-th request (1-based) and returns it.
  Request wait_request(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 10s, [&] { return requests_.size() >= n; });
    return requests_.size() >= n ? requests_[n - 1] : Request{};
  }

 private:
  struct Conn : std::enable_shared_from_this<Conn> {
    Conn(TestServer& server, tcp::socket socket) : server(server), socket(std::move(socket)) {}
    void start() {
      auto self = shared_from_this();
      http::async_read(socket, buffer, request, [self](beast::error_code ec, size_t) {
        if (ec) return;
        {
          std::lock_guard lock(self->server.mu_);
          self->server.requests_.push_back(self->request);
        }
        self->server.cv_.notify_all();
        if (self->server.response_.empty()) return self->hold();
        asio::async_write(self->socket, asio::buffer(self->server.response_),
                          [self](beast::error_code, size_t) { self->hold(); });
      });
    }
    void hold() {
      auto self = shared_from_this();
      socket.async_read_some(asio::buffer(scratch), [self](beast::error_code ec, size_t) {
        if (!ec) self->hold();
      });
    }
    TestServer& server;
    tcp::socket socket;
    beast::flat_buffer buffer;
    Request request;
    char scratch[256];
  };

  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;
      {
        std::lock_guard lock(mu_);
        ++accepted_;
      }
      std::make_shared<Conn>(*this, std::move(socket))->start();
      accept();
    });
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::thread thread_;
  const std::string response_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Request> requests_;
  int accepted_ = 0;
};

std::string raw_response(const std::string& status_line, const std::string& extra_headers,
                         const std::string& body) {
  return "HTTP/1.1 " + status_line + "\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

/// A resolver seam that maps every name to `addresses` and counts its calls.
struct FakeDns {
  std::vector<std::string> addresses;
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
  std::function<Result<std::vector<std::string>>(const std::string&)> seam() const {
    return [addresses = addresses, calls = calls](const std::string& host) {
      ++*calls;
      if (host != "hook.example")
        return Result<std::vector<std::string>>(errc::unavailable, "unknown host " + host);
      return Result<std::vector<std::string>>(addresses);
    };
  }
};

/// Options with the resolver seam; tests adjust the rest.
WebhookClientOptions options(const FakeDns& dns, bool allow_localhost) {
  WebhookClientOptions o;
  o.allow_localhost = allow_localhost;
  o.resolve = dns.seam();
  return o;
}

WebhookUrl local_url(uint16_t port, std::string target = "/hook") {
  WebhookUrl url;
  url.https = false;
  url.host = "hook.example";
  url.port = port;
  url.target = std::move(target);
  url.original = "http://hook.example:" + std::to_string(port) + url.target;
  return url;
}

std::unique_ptr<WebhookClient> make_client(WebhookClientOptions options) {
  std::string error;
  auto client = make_webhook_client(std::move(options), &error);
  EXPECT_TRUE(client) << error;
  return client;
}

/// Posts and waits (bounded) for the single callback.
Result<WebhookResponse> post_and_wait(WebhookClient& client, const WebhookUrl& url,
                                      WebhookClient::Headers headers = {},
                                      std::string body = R"({"wake_id":"w1"})") {
  auto promise = std::make_shared<std::promise<Result<WebhookResponse>>>();
  auto future = promise->get_future();
  client.post(url, std::move(headers), std::move(body),
              [promise](Result<WebhookResponse> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(20s) != std::future_status::ready)
    return Error(errc::storage_failure, "test: no callback within 20 s");
  return future.get();
}

TEST(WebhookClientTest, PostsBodyAndHeadersAndReturnsResponse) {
  TestServer server(
      raw_response("200 OK", "Content-Type: application/json\r\n", R"({"done":true})"));
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, true));
  auto r = post_and_wait(*client, local_url(server.port(), "/hook?x=1"),
                         {{"Webhook-Signature", "t=1,kid=k,ed25519=sig"}}, R"({"wake_id":"w1"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, R"({"done":true})");
  EXPECT_EQ(*dns.calls, 1);

  Request req = server.wait_request(1);
  EXPECT_EQ(req.method(), http::verb::post);
  EXPECT_EQ(req.target(), "/hook?x=1");
  EXPECT_EQ(req.body(), R"({"wake_id":"w1"})");
  EXPECT_EQ(req[http::field::host], "hook.example:" + std::to_string(server.port()));
  EXPECT_EQ(req[http::field::content_type], "application/json");
  EXPECT_EQ(req[http::field::content_length], "16");
  EXPECT_EQ(req[http::field::user_agent], "dstreamd-webhook/1");
  EXPECT_EQ(req["Webhook-Signature"], "t=1,kid=k,ed25519=sig");
}

TEST(WebhookClientTest, RedirectIsReturnedNotFollowed) {
  TestServer target(raw_response("200 OK", "", "followed"));
  std::string location =
      "Location: http://127.0.0.1:" + std::to_string(target.port()) + "/elsewhere\r\n";
  TestServer server(raw_response("302 Found", location, ""));
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, true));
  auto r = post_and_wait(*client, local_url(server.port()));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 302u);
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(target.accepted(), 0);
}

TEST(WebhookClientTest, PrivateAddressIsRejectedWithoutConnecting) {
  FakeDns dns{{"10.0.0.7"}};
  auto client = make_client(options(dns, false));
  auto url = parse_webhook_url("https://hook.example/hook", false);
  ASSERT_TRUE(url.ok());
  auto r = post_and_wait(*client, *url);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_NE(r.error().message.find("10.0.0.7"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("private"), std::string::npos) << r.error().message;
  EXPECT_EQ(*dns.calls, 1);
}

TEST(WebhookClientTest, OneBadAddressPoisonsAll) {
  TestServer server(raw_response("200 OK", "", "ok"));
  // Without allow_localhost, 127.0.0.1 (where a server does listen) rejects
  // the whole name, although 93.184.216.34 is public: nothing is connected.
  FakeDns dns{{"93.184.216.34", "127.0.0.1"}};
  auto strict = make_client(options(dns, false));
  WebhookUrl https_url = local_url(server.port());
  https_url.https = true;
  auto r = post_and_wait(*strict, https_url);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_NE(r.error().message.find("127.0.0.1"), std::string::npos) << r.error().message;
  EXPECT_EQ(server.accepted(), 0);

  // With allow_localhost both addresses pass; the local one is tried first.
  FakeDns dev_dns{{"127.0.0.1", "93.184.216.34"}};
  auto dev = make_client(options(dev_dns, true));
  r = post_and_wait(*dev, local_url(server.port()));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(server.accepted(), 1);
}

TEST(WebhookClientTest, IteratesCheckedAddressesOnConnectFailure) {
  TestServer server(raw_response("204 No Content", "", ""));
  // The server listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
  FakeDns dns{{"127.0.0.2", "127.0.0.1"}};
  auto client = make_client(options(dns, true));
  auto r = post_and_wait(*client, local_url(server.port()));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 204u);
}

TEST(WebhookClientTest, IpLiteralIsCheckedWithoutResolving) {
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, false));
  WebhookUrl url = local_url(443);
  url.https = true;
  url.host = "169.254.169.254";
  auto r = post_and_wait(*client, url);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_NE(r.error().message.find("link-local"), std::string::npos) << r.error().message;
  EXPECT_EQ(*dns.calls, 0);
}

TEST(WebhookClientTest, PlainHttpNeedsAllowLocalhost) {
  TestServer server(raw_response("200 OK", "", "ok"));
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, false));
  auto r = post_and_wait(*client, local_url(server.port()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_EQ(server.accepted(), 0);
}

TEST(WebhookClientTest, ReservedOrMalformedHeadersAreRefused) {
  TestServer server(raw_response("200 OK", "", "ok"));
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, true));
  const WebhookClient::Headers bad[] = {
      {{"Host", "other.example"}},
      {{"content-length", "1"}},
      {{"Transfer-Encoding", "chunked"}},
      {{"X-Injected", "a\r\nHost: other.example"}},
      {{"Bad Name", "x"}},
  };
  for (const auto& headers : bad) {
    SCOPED_TRACE(headers[0].first);
    auto r = post_and_wait(*client, local_url(server.port()), headers);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, errc::bad_request);
  }
  EXPECT_EQ(server.accepted(), 0);
}

TEST(WebhookClientTest, ServerThatNeverAnswersTimesOut) {
  TestServer server("");  // reads the request, never answers
  FakeDns dns{{"127.0.0.1"}};
  auto o = options(dns, true);
  o.connect_timeout = 2000ms;
  o.request_timeout = 300ms;
  auto client = make_client(o);
  auto start = std::chrono::steady_clock::now();
  auto r = post_and_wait(*client, local_url(server.port()));
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("timed out"), std::string::npos) << r.error().message;
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 2300ms);  // connect_timeout + request_timeout
  EXPECT_EQ(server.wait_request(1).body(), R"({"wake_id":"w1"})");
}

TEST(WebhookClientTest, ResponseOverTheCapFails) {
  TestServer big(raw_response("200 OK", "", std::string(1025, 'x')));
  TestServer exact(raw_response("200 OK", "", std::string(1024, 'x')));
  FakeDns dns{{"127.0.0.1"}};
  auto o = options(dns, true);
  o.max_response_bytes = 1024;
  auto client = make_client(o);
  auto r = post_and_wait(*client, local_url(big.port()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("over 1024 bytes"), std::string::npos) << r.error().message;

  r = post_and_wait(*client, local_url(exact.port()));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->body.size(), 1024u);
}

TEST(WebhookClientTest, ResolverFailureIsUnavailable) {
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, true));
  WebhookUrl url = local_url(80);
  url.host = "other.example";
  auto r = post_and_wait(*client, url);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("other.example"), std::string::npos) << r.error().message;
}

TEST(WebhookClientTest, DestroyingTheClientInFlightNeverCallsBack) {
  TestServer server("");  // never answers
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, true));
  auto calls = std::make_shared<std::atomic<int>>(0);
  client->post(local_url(server.port()), {}, "{}", [calls](Result<WebhookResponse>) { ++*calls; });
  server.wait_request(1);  // the call is now waiting for the response
  client.reset();          // joins the client's threads: no callback can run later
  EXPECT_EQ(*calls, 0);
}

TEST(WebhookClientTest, BadOptionsAreRejected) {
  std::string error;
  WebhookClientOptions o;
  o.threads = 0;
  EXPECT_FALSE(make_webhook_client(o, &error));
  EXPECT_NE(error.find("threads"), std::string::npos);
  o = {};
  o.request_timeout = 0ms;
  EXPECT_FALSE(make_webhook_client(o, &error));
  o = {};
  o.ca_file = "/nonexistent/ca.pem";
  EXPECT_FALSE(make_webhook_client(o, &error));
  EXPECT_NE(error.find("TLS"), std::string::npos);
}

// ---------------------------------------------------------------------------
// TLS: a throwaway self-signed certificate per name, made with the openssl CLI.

namespace ssl = asio::ssl;

/// Answers one request per connection over TLS with `response`; records the
/// SNI name the client sent.
class TlsServer {
 public:
  TlsServer(const std::string& cert, const std::string& key, std::string response)
      : response_(std::move(response)) {
    tls_.use_certificate_chain_file(cert);
    tls_.use_private_key_file(key, ssl::context::pem);
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~TlsServer() {
    ioc_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string sni() {
    std::lock_guard lock(mu_);
    return sni_;
  }

 private:
  struct Conn : std::enable_shared_from_this<Conn> {
    Conn(TlsServer& server, tcp::socket socket)
        : server(server), stream(std::move(socket), server.tls_) {}
    void start() {
      auto self = shared_from_this();
      stream.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) return;
        if (const char* name =
                SSL_get_servername(self->stream.native_handle(), TLSEXT_NAMETYPE_host_name)) {
          std::lock_guard lock(self->server.mu_);
          self->server.sni_ = name;
        }
        http::async_read(self->stream, self->buffer, self->request,
                         [self](beast::error_code ec, size_t) {
                           if (ec) return;
                           asio::async_write(self->stream, asio::buffer(self->server.response_),
                                             [self](beast::error_code, size_t) {});
                         });
      });
    }
    TlsServer& server;
    ssl::stream<tcp::socket> stream;
    beast::flat_buffer buffer;
    Request request;
  };

  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;
      std::make_shared<Conn>(*this, std::move(socket))->start();
      accept();
    });
  }

  asio::io_context ioc_;
  ssl::context tls_{ssl::context::tls_server};
  tcp::acceptor acceptor_{ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::thread thread_;
  const std::string response_;
  std::mutex mu_;
  std::string sni_;
};

class WebhookClientTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("openssl version >/dev/null 2>&1") != 0) return;
    char tmpl[] = "/tmp/ds-webhook-tls-XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir_ = tmpl;
    for (const char* name : {"hook.example", "wrong.example"}) {
      std::string cmd = "cd " + dir_ + " && openssl req -x509 -newkey rsa:2048 -nodes -keyout " +
                        name + ".key -out " + name + ".pem -days 1 -subj /CN=" + name +
                        " -addext subjectAltName=DNS:" + name + " >/dev/null 2>&1";
      if (std::system(cmd.c_str()) != 0) return;
    }
    ready_ = true;
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void SetUp() override {
    if (!ready_) GTEST_SKIP() << "openssl could not make test certificates";
  }
  static std::string file(const std::string& name) { return dir_ + "/" + name; }

  static inline std::string dir_;
  static inline bool ready_ = false;
};

WebhookUrl https_url(uint16_t port) {
  WebhookUrl url = local_url(port);
  url.https = true;
  return url;
}

TEST_F(WebhookClientTlsTest, VerifiesTheHostNameAndSendsSni) {
  TlsServer server(file("hook.example.pem"), file("hook.example.key"),
                   raw_response("200 OK", "", "secure"));
  FakeDns dns{{"127.0.0.1"}};
  auto o = options(dns, true);
  o.ca_file = file("hook.example.pem");
  auto client = make_client(o);
  auto r = post_and_wait(*client, https_url(server.port()));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, "secure");
  EXPECT_EQ(server.sni(), "hook.example");
}

TEST_F(WebhookClientTlsTest, RejectsACertificateForAnotherName) {
  TlsServer server(file("wrong.example.pem"), file("wrong.example.key"),
                   raw_response("200 OK", "", "secure"));
  FakeDns dns{{"127.0.0.1"}};
  auto o = options(dns, true);
  o.ca_file = file("wrong.example.pem");  // trusted, but not for hook.example
  auto client = make_client(o);
  auto r = post_and_wait(*client, https_url(server.port()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("TLS handshake"), std::string::npos) << r.error().message;
}

TEST_F(WebhookClientTlsTest, RejectsAnUntrustedCertificate) {
  TlsServer server(file("hook.example.pem"), file("hook.example.key"),
                   raw_response("200 OK", "", "secure"));
  FakeDns dns{{"127.0.0.1"}};
  auto client = make_client(options(dns, true));  // system CAs only
  auto r = post_and_wait(*client, https_url(server.port()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("TLS handshake"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace ds::subs
