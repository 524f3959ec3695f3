// Webhook URL validation and address classification (subs/webhook_url.h).

#include "subs/webhook_url.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace ds::subs {
namespace {

struct UrlCase {
  const char* url;
  bool allow_localhost;
  bool accepted;
  const char* reason;  ///< a fragment of the error message, when rejected
};

TEST(WebhookUrlTest, RulesTable) {
  const UrlCase cases[] = {
      // Production: https to a public name or address.
      {"https://hooks.example.com/hook", false, true, ""},
      {"https://hooks.example.com:8443/a/b?x=1&y=2", false, true, ""},
      {"HTTPS://Hooks.Example.COM/Path", false, true, ""},
      {"https://93.184.216.34/hook", false, true, ""},
      {"https://[2606:2800:220:1:248:1893:25c8:1946]/hook", false, true, ""},
      {"https://xn--bcher-kva.example/", false, true, ""},
      // Scheme.
      {"http://hooks.example.com/hook", false, false, "https:// is required"},
      {"http://hooks.example.com/hook", true, false, "only allowed for localhost"},
      {"ftp://hooks.example.com/", false, false, "scheme 'ftp'"},
      {"javascript:alert(1)", false, false, "scheme 'javascript'"},
      {"hooks.example.com/hook", false, false, "no scheme"},
      {"https:/hooks.example.com", false, false, "no '//'"},
      // User info and fragments.
      {"https://user:pw@hooks.example.com/", false, false, "user info"},
      {"https://hooks.example.com@10.0.0.1/", false, false, "user info"},
      {"https://hooks.example.com/#frag", false, false, "fragment"},
      // Private, loopback, link-local literals.
      {"http://10.0.0.1/hook", false, false, "private"},
      {"https://10.0.0.1/hook", false, false, "private"},
      {"https://10.0.0.1/hook", true, false, "private"},
      {"https://192.168.1.1/", false, false, "private"},
      {"https://172.16.0.1/", false, false, "private"},
      {"https://169.254.169.254/latest/meta-data/", false, false, "link-local"},
      {"https://169.254.169.254/", true, false, "link-local"},
      {"https://100.64.0.1/", false, false, "CGNAT"},
      {"https://0.0.0.0/", false, false, "unspecified"},
      {"https://[::1]/", false, false, "loopback"},
      {"https://[::]/", false, false, "unspecified"},
      {"https://[fd00::1]/", false, false, "private"},
      {"https://[fe80::1]/", false, false, "link-local"},
      {"https://[::ffff:10.0.0.1]/", false, false, "private"},
      {"https://[::ffff:127.0.0.1]/", false, false, "loopback"},
      {"https://[fe80::1%25eth0]/", false, false, "zone ids"},
      // Localhost development exception.
      {"http://127.0.0.1:8080/x", false, false, "loopback"},
      {"http://127.0.0.1:8080/x", true, true, ""},
      {"http://127.0.0.255/x", true, true, ""},
      {"http://127.0.1.1/x", true, false, "only allowed for localhost and 127.0.0.x"},
      {"https://127.0.1.1/x", true, true, ""},
      {"http://localhost/hook", true, true, ""},
      {"http://LOCALHOST:3000/hook", true, true, ""},
      {"http://localhost/hook", false, false, "localhost"},
      {"https://localhost/hook", false, false, "localhost"},
      {"https://localhost/hook", true, true, ""},
      {"https://api.localhost/hook", false, false, "localhost"},
      {"http://api.localhost/hook", true, false, "only allowed for localhost"},
      {"http://[::1]/", true, false, "only allowed for localhost"},
      {"https://[::1]/", true, true, ""},
      // Numeric host spellings other than the canonical dotted-quad.
      {"https://2130706433/", false, false, "canonical dotted-quad"},
      {"http://2130706433/", true, false, "canonical dotted-quad"},
      {"https://0x7f.1/", true, false, "canonical dotted-quad"},
      {"https://0x7f000001/", false, false, "canonical dotted-quad"},
      {"https://0177.0.0.1/", true, false, "canonical dotted-quad"},
      {"https://127.1/", true, false, "canonical dotted-quad"},
      {"https://093.184.216.34/", false, false, "canonical dotted-quad"},
      {"https://93.184.216.34.5/", false, false, "canonical dotted-quad"},
      {"https://256.1.1.1/", false, false, "canonical dotted-quad"},
      {"https://example.123/", false, false, "canonical dotted-quad"},
      // Malformed hosts and ports.
      {"https:///hook", false, false, "no host"},
      {"https://:443/hook", false, false, "no host"},
      {"https://hooks.example.com:/", false, false, "malformed port"},
      {"https://hooks.example.com:0/", false, false, "port out of range"},
      {"https://hooks.example.com:65536/", false, false, "port out of range"},
      {"https://hooks.example.com:80:80/", false, false, "malformed port"},
      {"https://hooks..example.com/", false, false, "malformed host name"},
      {"https://localhost./", false, false, "malformed host name"},
      {"https://hooks_example.com/", false, false, "malformed host name"},
      {"https://-bad.example.com/", false, false, "malformed host name"},
      {"https://h%6fst.example.com/", false, false, "percent-encoding"},
      {"https://hooks.example.com\\@10.0.0.1/", false, false, "user info"},
      {"https://[::1/", false, false, "unterminated"},
      {"https://[1::2::3]/", false, false, "malformed IPv6"},
      {"https://[::1]x/", false, false, "after the IPv6"},
      // Target.
      {"https://hooks.example.com/a b", false, false, "path or query"},
      {"https://hooks.example.com/a\r\nX: y", false, false, "path or query"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.url) + (c.allow_localhost ? " (allow_localhost)" : ""));
    auto r = parse_webhook_url(c.url, c.allow_localhost);
    EXPECT_EQ(r.ok(), c.accepted) << (r.ok() ? "accepted" : r.error().message);
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, errc::bad_request);
      EXPECT_NE(r.error().message.find(c.reason), std::string::npos) << r.error().message;
    }
  }
}

TEST(WebhookUrlTest, ParsedFields) {
  auto r = parse_webhook_url("HTTPS://Hooks.Example.COM:8443/a/B?x=Y", false);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->https);
  EXPECT_EQ(r->host, "hooks.example.com");
  EXPECT_EQ(r->port, 8443);
  EXPECT_EQ(r->target, "/a/B?x=Y");
  EXPECT_EQ(r->original, "HTTPS://Hooks.Example.COM:8443/a/B?x=Y");

  r = parse_webhook_url("https://hooks.example.com", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->port, 443);
  EXPECT_EQ(r->target, "/");

  r = parse_webhook_url("https://hooks.example.com?q=1", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->host, "hooks.example.com");
  EXPECT_EQ(r->target, "/?q=1");

  r = parse_webhook_url("http://localhost", true);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->https);
  EXPECT_EQ(r->port, 80);

  r = parse_webhook_url("https://[2606:2800:220:1::1]:9443/h", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->host, "2606:2800:220:1::1");
  EXPECT_EQ(r->port, 9443);
}

std::vector<uint8_t> addr(const char* text) {
  std::array<uint8_t, 16> buf{};
  if (::inet_pton(AF_INET, text, buf.data()) == 1) return {buf.begin(), buf.begin() + 4};
  if (::inet_pton(AF_INET6, text, buf.data()) == 1) return {buf.begin(), buf.end()};
  ADD_FAILURE() << "bad address in test: " << text;
  return {};
}

TEST(WebhookUrlTest, ClassifyTable) {
  using C = AddressClass;
  const std::pair<const char*, AddressClass> cases[] = {
      // IPv4
      {"0.0.0.0", C::unspecified},
      {"0.255.255.255", C::unspecified},
      {"10.0.0.0", C::private_},
      {"10.255.255.255", C::private_},
      {"100.63.255.255", C::public_},
      {"100.64.0.0", C::cgnat},
      {"100.127.255.255", C::cgnat},
      {"100.128.0.0", C::public_},
      {"127.0.0.1", C::loopback},
      {"127.255.255.254", C::loopback},
      {"169.254.0.1", C::link_local},
      {"169.254.169.254", C::link_local},
      {"172.15.255.255", C::public_},
      {"172.16.0.0", C::private_},
      {"172.31.255.255", C::private_},
      {"172.32.0.0", C::public_},
      {"192.0.0.8", C::reserved},
      {"192.0.2.1", C::documentation},
      {"192.88.99.1", C::reserved},
      {"192.168.0.1", C::private_},
      {"192.169.0.1", C::public_},
      {"198.17.255.255", C::public_},
      {"198.18.0.1", C::benchmarking},
      {"198.19.255.255", C::benchmarking},
      {"198.20.0.0", C::public_},
      {"198.51.100.7", C::documentation},
      {"203.0.113.9", C::documentation},
      {"224.0.0.1", C::multicast},
      {"239.255.255.255", C::multicast},
      {"240.0.0.1", C::reserved},
      {"255.255.255.254", C::reserved},
      {"255.255.255.255", C::broadcast},
      {"1.1.1.1", C::public_},
      {"8.8.8.8", C::public_},
      {"93.184.216.34", C::public_},
      {"223.255.255.255", C::public_},
      // IPv6
      {"::", C::unspecified},
      {"::1", C::loopback},
      {"fc00::1", C::private_},
      {"fdff:ffff::1", C::private_},
      {"fe80::1", C::link_local},
      {"febf::1", C::link_local},
      {"ff02::1", C::multicast},
      {"2001:db8::1", C::documentation},
      {"3fff::1", C::documentation},
      {"2001::1", C::tunnel},
      {"2001:0:4136:e378:8000:63bf:3fff:fdd2", C::tunnel},
      {"2001:2::1", C::benchmarking},
      {"2001:10::1", C::reserved},
      {"100::1", C::reserved},
      {"fec0::1", C::reserved},
      {"64:ff9b:1::1", C::reserved},
      {"2606:2800:220:1:248:1893:25c8:1946", C::public_},
      {"2a00:1450:4001:80b::200e", C::public_},
      // IPv6 that embeds IPv4: the embedded address decides.
      {"::ffff:127.0.0.1", C::loopback},
      {"::ffff:10.1.2.3", C::private_},
      {"::ffff:169.254.169.254", C::link_local},
      {"::ffff:93.184.216.34", C::public_},
      {"::127.0.0.1", C::loopback},
      {"::10.0.0.1", C::private_},
      {"::0.0.0.2", C::unspecified},
      {"64:ff9b::10.0.0.1", C::private_},
      {"64:ff9b::169.254.169.254", C::link_local},
      {"64:ff9b::93.184.216.34", C::public_},
      {"2002:7f00:1::", C::loopback},
      {"2002:a00:1::1", C::private_},
      {"2002:5db8:d822::1", C::public_},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    auto bytes = addr(text);
    EXPECT_EQ(address_class_name(classify(bytes)), std::string(address_class_name(expected)));
    EXPECT_EQ(address_allowed(bytes, false), expected == C::public_);
    EXPECT_EQ(address_allowed(bytes, true), expected == C::public_ || expected == C::loopback);
  }
  std::vector<uint8_t> odd(5, 1);
  EXPECT_EQ(classify(odd), C::reserved);
  EXPECT_FALSE(address_allowed(odd, true));
}

}  // namespace
}  // namespace ds::subs
