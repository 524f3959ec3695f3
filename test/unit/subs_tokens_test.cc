// subs/tokens: wake tokens round-trip, expire, and refuse anything tampered
// with, meant for another subscription, signed by another key, or unsigned.

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "auth/jwt.h"
#include "subs/tokens.h"

namespace ds::subs {
namespace {

using auth::base64url_decode;
using auth::base64url_encode;

constexpr int64_t kNow = 1778324210000;

SigningKey fresh() {
  auto k = SigningKey::generate();
  EXPECT_TRUE(k.ok());
  return std::move(k).value();
}

WakeToken claims(int64_t ttl_ms = 30000) {
  return WakeToken{"sub-1", 7, "w_abc123", kNow + ttl_ms};
}

bool is_invalid(const WakeTokenCheck& c) {
  return std::holds_alternative<TokenProblem>(c) &&
         std::get<TokenProblem>(c) == TokenProblem::invalid;
}
bool is_expired(const WakeTokenCheck& c) {
  return std::holds_alternative<TokenProblem>(c) &&
         std::get<TokenProblem>(c) == TokenProblem::expired;
}

struct Parts {
  std::string header, payload, signature;  // still base64url
};
Parts split(const std::string& token) {
  const size_t d1 = token.find('.');
  const size_t d2 = token.find('.', d1 + 1);
  return {token.substr(0, d1), token.substr(d1 + 1, d2 - d1 - 1), token.substr(d2 + 1)};
}

// A token with this header and payload JSON, correctly signed by `key`: what
// a forger holding the key could mint, to test the parser behind the signature.
std::string signed_with(const SigningKey& key, std::string_view header_json,
                        std::string_view payload_json) {
  std::string input = base64url_encode(header_json) + "." + base64url_encode(payload_json);
  return input + "." + base64url_encode(key.sign(input));
}

constexpr std::string_view kHeader = R"({"alg":"EdDSA","typ":"ds-wake"})";

TEST(SubsTokensTest, RoundTrip) {
  SigningKey key = fresh();
  const std::string token = issue_wake_token(key, claims());
  auto c = check_wake_token(key, token, "sub-1", kNow);
  ASSERT_TRUE(std::holds_alternative<WakeToken>(c));
  EXPECT_EQ(std::get<WakeToken>(c), claims());
  EXPECT_LE(token.size(), kMaxWakeTokenBytes);
}

TEST(SubsTokensTest, IsACompactJwsWithTheAgreedHeader) {
  SigningKey key = fresh();
  const std::string token = issue_wake_token(key, claims());
  EXPECT_EQ(std::count(token.begin(), token.end(), '.'), 2);
  Parts p = split(token);
  EXPECT_EQ(*base64url_decode(p.header), kHeader);
  EXPECT_EQ(*base64url_decode(p.payload),
            R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":1778324240000})");
  auto sig = base64url_decode(p.signature);
  ASSERT_TRUE(sig);
  EXPECT_TRUE(key.verify(p.header + "." + p.payload, *sig));
}

TEST(SubsTokensTest, RoundTripsAwkwardValues) {
  SigningKey key = fresh();
  WakeToken t{"sub \"quoted\" \\ back/slash \xc3\xa9", std::numeric_limits<uint64_t>::max(),
              "w_\n\t", std::numeric_limits<int64_t>::max()};
  auto c = check_wake_token(key, issue_wake_token(key, t), t.subscription, kNow);
  ASSERT_TRUE(std::holds_alternative<WakeToken>(c));
  EXPECT_EQ(std::get<WakeToken>(c), t);
}

TEST(SubsTokensTest, ExpiresAtItsExpiry) {
  SigningKey key = fresh();
  const std::string token = issue_wake_token(key, claims(1000));
  EXPECT_TRUE(std::holds_alternative<WakeToken>(check_wake_token(key, token, "sub-1", kNow + 999)));
  EXPECT_TRUE(is_expired(check_wake_token(key, token, "sub-1", kNow + 1000)));
  EXPECT_TRUE(is_expired(check_wake_token(key, token, "sub-1", kNow + 86400000)));
}

TEST(SubsTokensTest, OtherSubscriptionIsInvalidEvenWhenExpired) {
  SigningKey key = fresh();
  const std::string token = issue_wake_token(key, claims());
  EXPECT_TRUE(is_invalid(check_wake_token(key, token, "sub-2", kNow)));
  EXPECT_TRUE(is_invalid(check_wake_token(key, token, "sub-1 ", kNow)));
  EXPECT_TRUE(is_invalid(check_wake_token(key, token, "", kNow)));
  EXPECT_TRUE(is_invalid(check_wake_token(key, token, "sub-2", kNow + 60000)));
}

TEST(SubsTokensTest, TamperedPayloadIsInvalid) {
  SigningKey key = fresh();
  Parts p = split(issue_wake_token(key, claims()));
  for (const char* forged : {
           R"({"sub":"sub-1","gen":8,"wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":9778324240000})",
           R"({"sub":"sub-2","gen":7,"wid":"w_abc123","exp_ms":1778324240000})",
       }) {
    const std::string token = p.header + "." + base64url_encode(forged) + "." + p.signature;
    EXPECT_TRUE(is_invalid(check_wake_token(key, token, "sub-1", kNow))) << forged;
    EXPECT_TRUE(is_invalid(check_wake_token(key, token, "sub-2", kNow))) << forged;
  }
}

TEST(SubsTokensTest, TamperedSignatureIsInvalid) {
  SigningKey key = fresh();
  Parts p = split(issue_wake_token(key, claims()));
  std::string sig = *base64url_decode(p.signature);
  for (size_t i : {size_t{0}, size_t{20}, size_t{63}}) {
    std::string bad = sig;
    bad[i] = static_cast<char>(bad[i] ^ 0x80);
    EXPECT_TRUE(is_invalid(check_wake_token(
        key, p.header + "." + p.payload + "." + base64url_encode(bad), "sub-1", kNow)))
        << i;
  }
  // Truncated, extended, and the same bytes with base64 padding.
  EXPECT_TRUE(is_invalid(check_wake_token(
      key, p.header + "." + p.payload + "." + base64url_encode(sig.substr(0, 63)), "sub-1", kNow)));
  EXPECT_TRUE(is_invalid(check_wake_token(
      key, p.header + "." + p.payload + "." + base64url_encode(sig + "x"), "sub-1", kNow)));
  EXPECT_TRUE(is_invalid(
      check_wake_token(key, p.header + "." + p.payload + "." + p.signature + "==", "sub-1", kNow)));
}

TEST(SubsTokensTest, AnotherKeysTokenIsInvalid) {
  SigningKey ours = fresh(), theirs = fresh();
  const std::string token = issue_wake_token(theirs, claims());
  EXPECT_TRUE(std::holds_alternative<WakeToken>(check_wake_token(theirs, token, "sub-1", kNow)));
  EXPECT_TRUE(is_invalid(check_wake_token(ours, token, "sub-1", kNow)));
}

TEST(SubsTokensTest, GarbageIsInvalid) {
  SigningKey key = fresh();
  const std::string good = issue_wake_token(key, claims());
  for (const std::string& junk :
       {std::string(), std::string("."), std::string(".."), std::string("..."), std::string("a.b"),
        std::string("a.b.c"), std::string("a.b.c.d"), std::string("Bearer ") + good, good + ".",
        "." + good, good + " ", std::string("\x00\xff\x01", 3), std::string(5000, 'A'),
        good.substr(0, good.size() - 1)}) {
    EXPECT_TRUE(is_invalid(check_wake_token(key, junk, "sub-1", kNow))) << junk;
  }
}

TEST(SubsTokensTest, OversizedTokenIsInvalidEvenIfSigned) {
  SigningKey key = fresh();
  WakeToken big = claims();
  big.wake_id = std::string(kMaxWakeTokenBytes, 'w');
  const std::string token = issue_wake_token(key, big);
  ASSERT_GT(token.size(), kMaxWakeTokenBytes);
  EXPECT_TRUE(is_invalid(check_wake_token(key, token, "sub-1", kNow)));
}

TEST(SubsTokensTest, AlgNoneIsInvalid) {
  SigningKey key = fresh();
  const std::string payload =
      base64url_encode(R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":1778324240000})");
  const std::string none = base64url_encode(R"({"alg":"none","typ":"ds-wake"})");
  EXPECT_TRUE(is_invalid(check_wake_token(key, none + "." + payload + ".", "sub-1", kNow)));
  // Even with a valid signature over that header, only EdDSA is accepted.
  const std::string input = none + "." + payload;
  EXPECT_TRUE(is_invalid(
      check_wake_token(key, input + "." + base64url_encode(key.sign(input)), "sub-1", kNow)));
}

TEST(SubsTokensTest, OtherHeadersAreInvalidEvenIfSigned) {
  SigningKey key = fresh();
  const std::string payload = R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":1778324240000})";
  // Control: the agreed header, in either member order, passes.
  EXPECT_FALSE(
      is_invalid(check_wake_token(key, signed_with(key, kHeader, payload), "sub-1", kNow)));
  EXPECT_FALSE(is_invalid(check_wake_token(
      key, signed_with(key, R"({"typ":"ds-wake","alg":"EdDSA"})", payload), "sub-1", kNow)));
  for (const char* header : {
           R"({"alg":"EdDSA","typ":"JWT"})",      // a service JWT is not a wake token
           R"({"alg":"EdDSA"})",                  // typ required
           R"({"typ":"ds-wake"})",                // alg required
           R"({"alg":"HS256","typ":"ds-wake"})",  // other algorithms
           R"({"alg":"ES256","typ":"ds-wake"})",
           R"({"alg":"eddsa","typ":"ds-wake"})",
           R"({"alg":"EdDSA","typ":"ds-wake","crit":["exp"]})",
           R"({"alg":"EdDSA","typ":"ds-wake","kid":"x"})",
           R"({"alg":"EdDSA","alg":"EdDSA","typ":"ds-wake"})",
           R"({"alg":["EdDSA"],"typ":"ds-wake"})",
           R"(["EdDSA","ds-wake"])",
           R"({"alg":"EdDSA","typ":"ds-wake"} x)",
       }) {
    EXPECT_TRUE(is_invalid(check_wake_token(key, signed_with(key, header, payload), "sub-1", kNow)))
        << header;
  }
}

TEST(SubsTokensTest, MistypedClaimsAreInvalidEvenIfSigned) {
  SigningKey key = fresh();
  for (const char* payload : {
           R"({"sub":"sub-1","gen":"7","wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":-7,"wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":7.0,"wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":1.778e12})",
           R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":"1778324240000"})",
           R"({"sub":"sub-1","gen":7,"wid":7,"exp_ms":1778324240000})",
           R"({"sub":["sub-1"],"gen":7,"wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":7,"wid":"w_abc123"})",
           R"({"sub":"sub-1","gen":7,"exp_ms":1778324240000})",
           R"({"gen":7,"wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-2","sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":7,"gen":8,"wid":"w_abc123","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":1778324240000,"x":1})",
           R"({"sub":"sub-1","gen":18446744073709551616,"wid":"w","exp_ms":1778324240000})",
           R"({"sub":"sub-1","gen":7,"wid":"w_abc123","exp_ms":1778324240000)",
           R"([])",
           R"(null)",
       }) {
    EXPECT_TRUE(
        is_invalid(check_wake_token(key, signed_with(key, kHeader, payload), "sub-1", kNow)))
        << payload;
  }
  // Control: the same minting helper with well-formed claims passes.
  auto ok = check_wake_token(
      key, signed_with(key, kHeader, R"({"exp_ms":1778324240000,"wid":"w","gen":0,"sub":"sub-1"})"),
      "sub-1", kNow);
  ASSERT_TRUE(std::holds_alternative<WakeToken>(ok));
  EXPECT_EQ(std::get<WakeToken>(ok), (WakeToken{"sub-1", 0, "w", 1778324240000}));
}

}  // namespace
}  // namespace ds::subs
