// auth/policy: scopes x methods x stream paths x token faults -> allow / 401 / 403.

#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "auth/policy.h"
#include "auth_test_util.h"

namespace ds::auth {
namespace {

using namespace testkit;
using Outcome = Decision::Outcome;

constexpr int64_t kNowMs = 1'700'000'000'000;
constexpr long long kNow = kNowMs / 1000;

AuthConfig config_with_keys() {
  AuthConfig c;
  c.keys = keys_of({Key::hmac(kSecret), Key::from_pem(public_pem(rsa_key()))});
  return c;
}

AccessRequest request(Method m, std::string stream) {
  AccessRequest r;
  r.method = m;
  r.streams.emplace_back(std::move(stream));
  return r;
}

const char* method_name(Method m) {
  switch (m) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::del:
      return "DELETE";
    case Method::other:
      return "OTHER";
  }
  return "?";
}

const Method kMethods[] = {Method::get, Method::head, Method::post, Method::put, Method::del};

// ------------------------------------------------------------- the matrix

enum class Scopes { none, read, write, manage, read_write };

std::string scope_claim(Scopes s) {
  switch (s) {
    case Scopes::none:
      return "";
    case Scopes::read:
      return R"("scope":"read",)";
    case Scopes::write:
      return R"("scopes":["write"],)";
    case Scopes::manage:
      return R"("scope":"manage",)";
    case Scopes::read_write:
      return R"("scope":"read write",)";
  }
  return "";
}

/// Written out by hand (not derived from the code under test).
bool scope_grants(Scopes s, Method m) {
  static const std::map<std::pair<Scopes, Method>, bool> table = {
      {{Scopes::none, Method::get}, false},       {{Scopes::none, Method::head}, false},
      {{Scopes::none, Method::post}, false},      {{Scopes::none, Method::put}, false},
      {{Scopes::none, Method::del}, false},       {{Scopes::read, Method::get}, true},
      {{Scopes::read, Method::head}, true},       {{Scopes::read, Method::post}, false},
      {{Scopes::read, Method::put}, false},       {{Scopes::read, Method::del}, false},
      {{Scopes::write, Method::get}, true},       {{Scopes::write, Method::head}, true},
      {{Scopes::write, Method::post}, true},      {{Scopes::write, Method::put}, false},
      {{Scopes::write, Method::del}, false},      {{Scopes::manage, Method::get}, true},
      {{Scopes::manage, Method::head}, true},     {{Scopes::manage, Method::post}, true},
      {{Scopes::manage, Method::put}, true},      {{Scopes::manage, Method::del}, true},
      {{Scopes::read_write, Method::get}, true},  {{Scopes::read_write, Method::head}, true},
      {{Scopes::read_write, Method::post}, true}, {{Scopes::read_write, Method::put}, false},
      {{Scopes::read_write, Method::del}, false},
  };
  return table.at({s, m});
}

class AuthMatrixTest : public ::testing::TestWithParam<std::tuple<Scopes, Method, bool>> {};

TEST_P(AuthMatrixTest, ScopeMethodPath) {
  const auto [scopes, method, inside] = GetParam();
  ManualClock clock(kNowMs);
  Authenticator authn(config_with_keys(), clock);
  const std::string token = hs256("{" + scope_claim(scopes) + R"("streams":["tenant-a/*"],"exp":)" +
                                  std::to_string(kNow + 300) + "}");
  const std::string stream = inside ? "tenant-a/orders/1" : "tenant-b/orders/1";
  auto d = authn.authorize(token, request(method, stream));
  const bool allow = scope_grants(scopes, method) && inside;
  EXPECT_EQ(d.outcome, allow ? Outcome::allow : Outcome::forbidden)
      << method_name(method) << " " << stream << ": " << d.message;
  if (!allow) {
    EXPECT_FALSE(d.message.empty());
    if (!scope_grants(scopes, method)) {
      EXPECT_EQ(d.bearer_error, "insufficient_scope");
      EXPECT_EQ(d.required_scope, required_scope(method));
    }
  }
  // Without a token, or with the same token broken, every cell is a 401.
  EXPECT_EQ(authn.authorize(std::nullopt, request(method, stream)).outcome, Outcome::unauthorized);
  EXPECT_EQ(authn.authorize(token + "x", request(method, stream)).outcome, Outcome::unauthorized);
}

std::string matrix_name(const ::testing::TestParamInfo<AuthMatrixTest::ParamType>& info) {
  static const char* names[] = {"none", "read", "write", "manage", "readwrite"};
  return std::string(names[static_cast<int>(std::get<0>(info.param))]) + "_" +
         method_name(std::get<1>(info.param)) + "_" +
         (std::get<2>(info.param) ? "inside" : "outside");
}

INSTANTIATE_TEST_SUITE_P(All, AuthMatrixTest,
                         ::testing::Combine(::testing::Values(Scopes::none, Scopes::read,
                                                              Scopes::write, Scopes::manage,
                                                              Scopes::read_write),
                                            ::testing::ValuesIn(kMethods), ::testing::Bool()),
                         matrix_name);

// ------------------------------------------------------------- token faults x methods

enum class Fault {
  missing,
  expired,
  not_yet_valid,
  wrong_key,
  alg_none,
  hs256_with_rsa_pem,
  tampered_payload,
  tampered_signature,
  two_segments,
  bad_base64url,
  padded,
  non_json_header,
  missing_exp,
  wrong_issuer,
  wrong_audience,
};

std::optional<std::string> faulty_token(Fault f) {
  const std::string ok_claims = R"("scope":"manage","iss":"issuer","aud":"dstreamd")";
  const std::string good = hs256(payload(kNow + 300, ok_claims));
  const auto d1 = good.find('.'), d2 = good.rfind('.');
  switch (f) {
    case Fault::missing:
      return std::nullopt;
    case Fault::expired:
      return hs256(payload(kNow - 31, ok_claims));
    case Fault::not_yet_valid:
      return hs256(payload(kNow + 300, ok_claims + ",\"nbf\":" + std::to_string(kNow + 31)));
    case Fault::wrong_key:
      return hs256(payload(kNow + 300, ok_claims), kOtherSecret);
    case Fault::alg_none:
      return signing_input(R"({"alg":"none"})", payload(kNow + 300, ok_claims)) + ".";
    case Fault::hs256_with_rsa_pem:
      return hs256(payload(kNow + 300, ok_claims), public_pem(rsa_key()));
    case Fault::tampered_payload:
      return good.substr(0, d1 + 1) + b64(payload(kNow + 300, ok_claims + R"(,"streams":["*"])")) +
             good.substr(d2);
    case Fault::tampered_signature: {
      std::string t = good;
      t[d2 + 5] = t[d2 + 5] == 'A' ? 'B' : 'A';
      return t;
    }
    case Fault::two_segments:
      return good.substr(0, d2);
    case Fault::bad_base64url:
      return good.substr(0, d1) + "*" + good.substr(d1);
    case Fault::padded:
      return good + "==";
    case Fault::non_json_header:
      return hs256(payload(kNow + 300, ok_claims), kSecret, "HS256");
    case Fault::missing_exp:
      return hs256("{" + ok_claims + "}");
    case Fault::wrong_issuer:
      return hs256(payload(kNow + 300, R"("scope":"manage","iss":"evil","aud":"dstreamd")"));
    case Fault::wrong_audience:
      return hs256(payload(kNow + 300, R"("scope":"manage","iss":"issuer","aud":["x","y"])"));
  }
  return std::nullopt;
}

class AuthFaultTest : public ::testing::TestWithParam<std::tuple<Fault, Method>> {};

TEST_P(AuthFaultTest, IsUnauthorized) {
  const auto [fault, method] = GetParam();
  ManualClock clock(kNowMs);
  AuthConfig config = config_with_keys();
  config.issuer = "issuer";
  config.audience = "dstreamd";
  Authenticator authn(std::move(config), clock);
  auto token = faulty_token(fault);
  auto d = authn.authorize(token, request(method, "s"));
  EXPECT_EQ(d.outcome, Outcome::unauthorized) << d.message;
  EXPECT_EQ(d.bearer_error, fault == Fault::missing ? "" : "invalid_token");
  EXPECT_EQ(d.www_authenticate().rfind("Bearer realm=\"dstreamd\"", 0), 0u);
  if (token) {
    EXPECT_EQ(d.message.find(*token), std::string::npos);
  }
}

std::string fault_name(const ::testing::TestParamInfo<AuthFaultTest::ParamType>& info) {
  static const char* names[] = {"missing",          "expired",
                                "not_yet_valid",    "wrong_key",
                                "alg_none",         "hs256_with_rsa_pem",
                                "tampered_payload", "tampered_signature",
                                "two_segments",     "bad_base64url",
                                "padded",           "non_json_header",
                                "missing_exp",      "wrong_issuer",
                                "wrong_audience"};
  return std::string(names[static_cast<int>(std::get<0>(info.param))]) + "_" +
         method_name(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    All, AuthFaultTest,
    ::testing::Combine(::testing::Values(Fault::missing, Fault::expired, Fault::not_yet_valid,
                                         Fault::wrong_key, Fault::alg_none,
                                         Fault::hs256_with_rsa_pem, Fault::tampered_payload,
                                         Fault::tampered_signature, Fault::two_segments,
                                         Fault::bad_base64url, Fault::padded,
                                         Fault::non_json_header, Fault::missing_exp,
                                         Fault::wrong_issuer, Fault::wrong_audience),
                       ::testing::ValuesIn(kMethods)),
    fault_name);

// ------------------------------------------------------------- time

class AuthTimeTest : public ::testing::Test {
 protected:
  ManualClock clock{kNowMs};
  Authenticator authn{config_with_keys(), clock};
  Outcome at(const std::string& token) {
    return authn.authorize(token, request(Method::get, "s")).outcome;
  }
};

TEST_F(AuthTimeTest, ExpWithinSkewIsAccepted) {
  EXPECT_EQ(at(hs256(payload(kNow - 29, R"("scope":"read")"))), Outcome::allow);
  EXPECT_EQ(at(hs256(payload(kNow - 30, R"("scope":"read")"))), Outcome::unauthorized);
  EXPECT_EQ(at(hs256(payload(kNow - 3600, R"("scope":"read")"))), Outcome::unauthorized);
}

TEST_F(AuthTimeTest, NbfWithinSkewIsAccepted) {
  const std::string exp = "\"scope\":\"read\",\"nbf\":";
  EXPECT_EQ(at(hs256(payload(kNow + 300, exp + std::to_string(kNow + 30)))), Outcome::allow);
  EXPECT_EQ(at(hs256(payload(kNow + 300, exp + std::to_string(kNow + 31)))), Outcome::unauthorized);
  EXPECT_EQ(at(hs256(payload(kNow + 300, exp + std::to_string(kNow - 100)))), Outcome::allow);
}

TEST_F(AuthTimeTest, TokenExpiresAsTheClockMoves) {
  const auto token = hs256(payload(kNow + 10, R"("scope":"read")"));
  EXPECT_EQ(at(token), Outcome::allow);
  clock.advance_ms(39'000);
  EXPECT_EQ(at(token), Outcome::allow);
  clock.advance_ms(1'000);
  EXPECT_EQ(at(token), Outcome::unauthorized);
}

TEST_F(AuthTimeTest, ZeroSkewIsExact) {
  AuthConfig c = config_with_keys();
  c.clock_skew_ms = 0;
  Authenticator strict(std::move(c), clock);
  auto get = request(Method::get, "s");
  EXPECT_EQ(strict.authorize(hs256(payload(kNow, R"("scope":"read")")), get).outcome,
            Outcome::unauthorized);
  EXPECT_EQ(strict.authorize(hs256(payload(kNow + 1, R"("scope":"read")")), get).outcome,
            Outcome::allow);
}

// ------------------------------------------------------------- issuer and audience

TEST(AuthPolicyTest, IssuerAndAudience) {
  ManualClock clock(kNowMs);
  AuthConfig c = config_with_keys();
  c.issuer = "https://issuer.example";
  c.audience = "streams";
  Authenticator authn(std::move(c), clock);
  auto get = request(Method::get, "s");
  auto with = [&](const std::string& claims) {
    return authn.authorize(rs256(payload(kNow + 60, R"("scope":"read",)" + claims)), get).outcome;
  };
  EXPECT_EQ(with(R"("iss":"https://issuer.example","aud":"streams")"), Outcome::allow);
  EXPECT_EQ(with(R"("iss":"https://issuer.example","aud":["x","streams"])"), Outcome::allow);
  EXPECT_EQ(with(R"("iss":"https://issuer.example","aud":["x"])"), Outcome::unauthorized);
  EXPECT_EQ(with(R"("iss":"https://issuer.example")"), Outcome::unauthorized);
  EXPECT_EQ(with(R"("iss":"https://other.example","aud":"streams")"), Outcome::unauthorized);
  EXPECT_EQ(with(R"("aud":"streams")"), Outcome::unauthorized);
}

TEST(AuthPolicyTest, Rs256TokenRejectedWhenOnlyHsSecretConfigured) {
  ManualClock clock(kNowMs);
  AuthConfig c;
  c.keys = keys_of({Key::hmac(kSecret)});
  Authenticator authn(std::move(c), clock);
  auto d =
      authn.authorize(rs256(payload(kNow + 60, R"("scope":"manage")")), request(Method::get, "s"));
  EXPECT_EQ(d.outcome, Outcome::unauthorized);
}

// ------------------------------------------------------------- streams claim

TEST(AuthPolicyTest, StreamPatterns) {
  EXPECT_TRUE(stream_pattern_matches("tenant-a/*", "tenant-a"));
  EXPECT_TRUE(stream_pattern_matches("tenant-a/*", "tenant-a/x"));
  EXPECT_TRUE(stream_pattern_matches("tenant-a/*", "tenant-a/x/y"));
  EXPECT_FALSE(stream_pattern_matches("tenant-a/*", "tenant-ab"));
  EXPECT_FALSE(stream_pattern_matches("tenant-a/*", "tenant-ab/x"));
  EXPECT_FALSE(stream_pattern_matches("tenant-a/*", "tenant"));
  EXPECT_FALSE(stream_pattern_matches("tenant-a/*", "x/tenant-a/y"));
  EXPECT_TRUE(stream_pattern_matches("a/b", "a/b"));
  EXPECT_FALSE(stream_pattern_matches("a/b", "a/b/c"));
  EXPECT_FALSE(stream_pattern_matches("a/b", "a"));
  EXPECT_TRUE(stream_pattern_matches("*", "anything/at/all"));
  EXPECT_FALSE(stream_pattern_matches("", "a"));
  EXPECT_FALSE(stream_pattern_matches("/*", "a"));
  EXPECT_FALSE(stream_pattern_matches("tenant-*", "tenant-a")) << "no globbing inside a segment";
  EXPECT_TRUE(stream_pattern_matches("tenant-*", "tenant-*"));
}

TEST(AuthPolicyTest, EveryTouchedStreamMustMatch) {
  ManualClock clock(kNowMs);
  Authenticator authn(config_with_keys(), clock);
  const auto token =
      hs256(payload(kNow + 60, R"("scope":"manage","streams":["tenant-a/*","shared/readme"])"));
  AccessRequest fork = request(Method::put, "tenant-a/copy");
  fork.streams.emplace_back("tenant-a/source");
  EXPECT_EQ(authn.authorize(token, fork).outcome, Outcome::allow);
  fork.streams.back() = "shared/readme";
  EXPECT_EQ(authn.authorize(token, fork).outcome, Outcome::allow);
  fork.streams.back() = "tenant-b/secret";  // forking someone else's stream is reading it
  EXPECT_EQ(authn.authorize(token, fork).outcome, Outcome::forbidden);
  fork.streams.back() = std::nullopt;  // unparseable source name
  EXPECT_EQ(authn.authorize(token, fork).outcome, Outcome::forbidden);
  AccessRequest odd;
  odd.method = Method::get;
  odd.streams.emplace_back(std::nullopt);
  EXPECT_EQ(authn.authorize(token, odd).outcome, Outcome::forbidden);
  // Without a streams claim the path is not restricted (the handler rejects bad names).
  const auto open = hs256(payload(kNow + 60, R"("scope":"manage")"));
  EXPECT_EQ(authn.authorize(open, odd).outcome, Outcome::allow);
  EXPECT_EQ(authn.authorize(open, fork).outcome, Outcome::allow);
  // An empty streams claim grants no stream.
  const auto none = hs256(payload(kNow + 60, R"("scope":"manage","streams":[])"));
  EXPECT_EQ(authn.authorize(none, request(Method::get, "tenant-a/x")).outcome, Outcome::forbidden);
}

TEST(AuthPolicyTest, ClaimsGrantStream) {
  Claims open;
  EXPECT_TRUE(claims_grant_stream(open, "anything/at/all")) << "no streams claim: every stream";
  Claims some;
  some.streams = std::vector<std::string>{"tenant-a/*", "shared/readme"};
  EXPECT_TRUE(claims_grant_stream(some, "tenant-a"));
  EXPECT_TRUE(claims_grant_stream(some, "tenant-a/x/y"));
  EXPECT_TRUE(claims_grant_stream(some, "shared/readme"));
  EXPECT_FALSE(claims_grant_stream(some, "tenant-ab/x"));
  EXPECT_FALSE(claims_grant_stream(some, "shared/other"));
  Claims none;
  none.streams = std::vector<std::string>{};
  EXPECT_FALSE(claims_grant_stream(none, "tenant-a/x")) << "an empty streams claim grants none";
}

TEST(AuthPolicyTest, AuthorizeHandsOutClaimsOnlyWhenAllowed) {
  ManualClock clock(kNowMs);
  Authenticator authn(config_with_keys(), clock);
  AccessRequest list;  // a request naming no stream (the catalog)
  list.method = Method::put;
  const auto manage =
      hs256(payload(kNow + 60, R"("scope":"manage","streams":["tenant-a/*","shared/readme"])"));
  Claims claims;
  ASSERT_EQ(authn.authorize(manage, list, &claims).outcome, Outcome::allow);
  ASSERT_TRUE(claims.streams);
  EXPECT_EQ(*claims.streams, (std::vector<std::string>{"tenant-a/*", "shared/readme"}));
  EXPECT_EQ(claims.scopes, (std::vector<std::string>{"manage"}));
  EXPECT_TRUE(claims_grant_stream(claims, "tenant-a/x"));
  EXPECT_FALSE(claims_grant_stream(claims, "tenant-b/x"));

  // Denied: the claims are left alone.
  Claims untouched;
  untouched.iss = "sentinel";
  const auto read = hs256(payload(kNow + 60, R"("scope":"read","streams":["tenant-b/*"])"));
  EXPECT_EQ(authn.authorize(read, list, &untouched).outcome, Outcome::forbidden);
  EXPECT_EQ(untouched.iss, std::optional<std::string>("sentinel"));
  EXPECT_FALSE(untouched.streams);
  EXPECT_EQ(authn.authorize(std::nullopt, list, &untouched).outcome, Outcome::unauthorized);
  EXPECT_EQ(authn.authorize("garbage", list, &untouched).outcome, Outcome::unauthorized);
  EXPECT_EQ(untouched.iss, std::optional<std::string>("sentinel"));
  // A null out-pointer is the two-argument form.
  EXPECT_EQ(authn.authorize(manage, list, nullptr).outcome, Outcome::allow);
}

TEST(AuthPolicyTest, OtherMethodsNeedManage) {
  std::vector<std::string> read{"read"}, write{"write"}, manage{"manage"};
  EXPECT_FALSE(scopes_allow(read, Method::other));
  EXPECT_FALSE(scopes_allow(write, Method::other));
  EXPECT_TRUE(scopes_allow(manage, Method::other));
  EXPECT_FALSE(scopes_allow({"READ"}, Method::get)) << "scopes are case-sensitive";
  EXPECT_FALSE(scopes_allow({"admin"}, Method::get));
}

// ------------------------------------------------------------- header parsing, challenges

TEST(AuthPolicyTest, BearerToken) {
  EXPECT_EQ(bearer_token("Bearer abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(bearer_token("bearer   abc "), "abc");
  EXPECT_EQ(bearer_token("BEARER\tabc"), "abc");
  EXPECT_FALSE(bearer_token("Bearer"));
  EXPECT_FALSE(bearer_token("Bearer "));
  EXPECT_FALSE(bearer_token("Bearerabc"));
  EXPECT_FALSE(bearer_token("Basic dXNlcjpwYXNz"));
  EXPECT_FALSE(bearer_token(""));
  // A token with inner spaces is passed on whole (and then fails verification).
  EXPECT_EQ(bearer_token("Bearer a b"), "a b");
}

TEST(AuthPolicyTest, WwwAuthenticate) {
  ManualClock clock(kNowMs);
  Authenticator authn(config_with_keys(), clock);
  auto get = request(Method::post, "s");
  EXPECT_EQ(authn.authorize(std::nullopt, get).www_authenticate(), "Bearer realm=\"dstreamd\"");
  auto expired = authn.authorize(hs256(payload(kNow - 100, R"("scope":"read")")), get);
  EXPECT_EQ(expired.www_authenticate(),
            "Bearer realm=\"dstreamd\", error=\"invalid_token\", error_description=\"token has "
            "expired\"");
  auto scope = authn.authorize(hs256(payload(kNow + 100, R"("scope":"read")")), get);
  EXPECT_EQ(scope.outcome, Outcome::forbidden);
  EXPECT_NE(scope.www_authenticate().find("error=\"insufficient_scope\""), std::string::npos);
  EXPECT_NE(scope.www_authenticate().find("scope=\"write\""), std::string::npos);
  auto path =
      authn.authorize(hs256(payload(kNow + 100, R"("scope":"write","streams":["x"])")), get);
  EXPECT_EQ(path.outcome, Outcome::forbidden);
  EXPECT_EQ(path.www_authenticate(), "");
  EXPECT_EQ(
      authn.authorize(hs256(payload(kNow + 100, R"("scope":"write")")), get).www_authenticate(),
      "");
}

}  // namespace
}  // namespace ds::auth
