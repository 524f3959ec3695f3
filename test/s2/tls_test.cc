// HttpS2Api over TLS: a node TLS front (tls_proxy.mjs) with a throwaway
// self-signed certificate for DNS:localhost, in front of the S2 emulator.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <future>

#include "emulator.h"
#include "s2/http_s2_api.h"

namespace ds::s2 {
namespace {

using namespace std::chrono_literals;
using test::Emulator;

class HttpS2TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("node --version >/dev/null 2>&1 && openssl version >/dev/null 2>&1") != 0) {
      skip_ = "node or openssl is not installed";
      return;
    }
    char tmpl[] = "/tmp/ds-s2-tls-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    std::string cmd = "cd " + dir_ +
                      " && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out "
                      "cert.pem -days 1 -subj /CN=localhost -addext "
                      "subjectAltName=DNS:localhost >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      error_ = "openssl could not make a certificate";
      return;
    }
    emulator_ = new Emulator();
    proxy_ = new Emulator();
    std::string why;
    if (!emulator_->start({"--basin", "test-basin-1", "--auto-create-streams"}, &why) ||
        !proxy_->start_command(
            {"node", std::string(DS_SOURCE_DIR) + "/test/s2/tls_proxy.mjs", dir_ + "/key.pem",
             dir_ + "/cert.pem", std::to_string(emulator_->port())},
            "TLS_URL", &why)) {
      error_ = why;
    }
  }
  static void TearDownTestSuite() {
    delete proxy_;
    delete emulator_;
    proxy_ = emulator_ = nullptr;
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
  }

  S2Result<uint64_t> check_tail(const std::string& endpoint, const std::string& ca_file) {
    HttpS2Options o;
    o.endpoint = endpoint;
    o.basin = "test-basin-1";
    o.ca_file = ca_file;
    o.max_attempts = 2;
    o.backoff_base = 5ms;
    std::string error;
    auto api = make_http_s2_api(o, &error);
    EXPECT_TRUE(api) << error;
    auto promise = std::make_shared<std::promise<S2Result<uint64_t>>>();
    auto future = promise->get_future();
    api->check_tail("tls-stream", [promise](S2Result<uint64_t> r) { promise->set_value(r); });
    EXPECT_EQ(future.wait_for(15s), std::future_status::ready);
    return future.get();
  }

  static inline Emulator* emulator_ = nullptr;
  static inline Emulator* proxy_ = nullptr;
  static inline std::string dir_, skip_, error_;
};

TEST_F(HttpS2TlsTest, VerifiesAgainstThePrivateCaWithSni) {
  auto r = check_tail(proxy_->url(), dir_ + "/cert.pem");
  ASSERT_TRUE(r.ok()) << r.error->message;
  EXPECT_EQ(*r.value, 0u);
}

TEST_F(HttpS2TlsTest, RejectsAnUntrustedCertificate) {
  auto r = check_tail(proxy_->url(), "");  // system CAs only
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->kind, S2Error::Kind::unavailable);
  EXPECT_NE(r.error->message.find("certificate verify failed"), std::string::npos)
      << r.error->message;
}

TEST_F(HttpS2TlsTest, RejectsAHostNameMismatch) {
  // Same server and trusted certificate, but reached as 127.0.0.1, which the
  // certificate does not name.
  std::string url = proxy_->url();
  url.replace(url.find("localhost"), 9, "127.0.0.1");
  auto r = check_tail(url, dir_ + "/cert.pem");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error->message.find("certificate verify failed"), std::string::npos)
      << r.error->message;
}

}  // namespace
}  // namespace ds::s2
