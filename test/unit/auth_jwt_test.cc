// auth/jwt: strict parsing, signatures pinned per key, claim types.

#include <gtest/gtest.h>

#include "auth/jwt.h"
#include "auth_test_util.h"

namespace ds::auth {
namespace {

using namespace testkit;

constexpr long long kFar = 4102444800;  // 2100-01-01

KeySet hs_only() { return keys_of({Key::hmac(kSecret)}); }
KeySet rsa_only() { return keys_of({Key::from_pem(public_pem(rsa_key()))}); }
KeySet ec_only() { return keys_of({Key::from_pem(public_pem(ec_key()))}); }

void expect_rejected(const std::string& token, const KeySet& keys, std::string_view why = "") {
  auto r = verify_jwt(token, keys);
  ASSERT_FALSE(r.ok()) << "accepted a token that should fail: " << why;
  EXPECT_EQ(r.error().code, errc::unauthorized);
  if (token.size() > 8) {
    EXPECT_EQ(r.error().message.find(token), std::string::npos) << "message echoes the token";
  }
}

// ------------------------------------------------------------- base64url

TEST(AuthBase64UrlTest, RoundTripsEveryLength) {
  std::string s;
  for (int i = 0; i < 70; ++i) {
    auto enc = base64url_encode(s);
    EXPECT_EQ(enc.find('='), std::string::npos);
    auto dec = base64url_decode(enc);
    ASSERT_TRUE(dec) << i;
    EXPECT_EQ(*dec, s);
    s.push_back(static_cast<char>(i * 37 + 200));
  }
}

TEST(AuthBase64UrlTest, RejectsNonStrictInput) {
  EXPECT_FALSE(base64url_decode("YQ=="));  // padding
  EXPECT_FALSE(base64url_decode("YQ="));
  EXPECT_FALSE(base64url_decode("a+b/"));   // standard alphabet
  EXPECT_FALSE(base64url_decode("YW Jj"));  // whitespace
  EXPECT_FALSE(base64url_decode("YWJjZ"));  // length 1 mod 4
  EXPECT_FALSE(base64url_decode("YR"));     // non-zero unused bits ("YQ" is canonical)
  EXPECT_FALSE(base64url_decode("YWJ"));    // "YWI" is canonical for "ab"
  EXPECT_EQ(*base64url_decode("YQ"), "a");
  EXPECT_EQ(*base64url_decode("YWI"), "ab");
  EXPECT_EQ(*base64url_decode("-_8"), "\xfb\xff");
  EXPECT_EQ(*base64url_decode(""), "");
}

// ------------------------------------------------------------- valid tokens

TEST(AuthJwtTest, AcceptsHs256) {
  auto c = verify_jwt(hs256(payload(kFar, R"("scope":"read write")")), hs_only());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->exp, kFar);
  EXPECT_EQ(c->scopes, (std::vector<std::string>{"read", "write"}));
  EXPECT_FALSE(c->streams);
}

TEST(AuthJwtTest, AcceptsRs256) {
  auto c = verify_jwt(rs256(payload(kFar)), rsa_only());
  ASSERT_TRUE(c.ok()) << c.error().message;
}

TEST(AuthJwtTest, AcceptsEs256) {
  for (int i = 0; i < 20; ++i) {  // R or S with leading zero bytes show up sometimes
    auto c = verify_jwt(es256(payload(kFar + i)), ec_only());
    ASSERT_TRUE(c.ok()) << c.error().message;
  }
}

TEST(AuthJwtTest, ParsesClaims) {
  auto c = verify_jwt(
      hs256(R"({"exp":1.7e9,"nbf":1600000000,"iat":1600000000.5,"iss":"me","aud":["a","b"],)"
            R"("scope":" read  manage ","scopes":["write",""],"streams":["t/*","x"],"sub":42})"),
      hs_only());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->exp, 1.7e9);
  EXPECT_EQ(*c->nbf, 1600000000);
  EXPECT_EQ(*c->iat, 1600000000.5);
  EXPECT_EQ(*c->iss, "me");
  EXPECT_EQ(c->aud, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c->scopes, (std::vector<std::string>{"read", "manage", "write"}));
  EXPECT_EQ(*c->streams, (std::vector<std::string>{"t/*", "x"}));
  auto single = verify_jwt(hs256(payload(kFar, R"("aud":"only")")), hs_only());
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->aud, (std::vector<std::string>{"only"}));
}

// ------------------------------------------------------------- keys and algorithms

TEST(AuthJwtTest, RejectsWrongKey) {
  expect_rejected(hs256(payload(kFar), kOtherSecret), hs_only(), "other HS secret");
  expect_rejected(rs256(payload(kFar), other_rsa_key()), rsa_only(), "other RSA key");
  expect_rejected(es256(payload(kFar), other_ec_key()), ec_only(), "other EC key");
}

TEST(AuthJwtTest, RejectsAlgNone) {
  const std::string in = signing_input(R"({"alg":"none","typ":"JWT"})", payload(kFar));
  expect_rejected(in + ".", hs_only(), "none, empty signature");
  expect_rejected(in + "." + b64("x"), hs_only(), "none, with a signature");
  expect_rejected(signing_input(R"({"alg":"None"})", payload(kFar)) + "." + b64("x"), hs_only());
  // Even when the "signature" is a valid HS256 MAC.
  expect_rejected(in + "." + b64(hmac_sha256(kSecret, in)), hs_only(), "none with a MAC");
}

TEST(AuthJwtTest, RejectsHs256SignedWithTheRsaPublicKeyPem) {
  // The classic confusion: the attacker knows the server's RSA public key and
  // uses its PEM bytes as an HMAC secret.
  const std::string pem = public_pem(rsa_key());
  const std::string forged = hs256(payload(kFar, R"("scope":"manage")"), pem);
  expect_rejected(forged, rsa_only(), "server holds only the RSA key");
  // Same with an HS secret configured alongside (a different one).
  auto both = keys_of({Key::from_pem(pem), Key::hmac(kSecret)});
  expect_rejected(forged, both, "server holds the RSA key and another HS secret");
  // Same against a JWKS holding the RSA key.
  auto jwks = parse_jwks("{\"keys\":[" + jwk(rsa_key(), "k1") + "]}");
  ASSERT_TRUE(jwks.ok());
  KeySet set;
  for (auto& k : *jwks) set.add(std::move(k));
  expect_rejected(hs256(payload(kFar), pem, R"({"alg":"HS256","kid":"k1"})"), set, "JWKS");
}

TEST(AuthJwtTest, RejectsRs256WhenOnlyAnHsSecretIsConfigured) {
  expect_rejected(rs256(payload(kFar)), hs_only());
  // Or an RS256 header on an HMAC signature made with the secret.
  auto in = signing_input(R"({"alg":"RS256"})", payload(kFar));
  expect_rejected(in + "." + b64(hmac_sha256(kSecret, in)), hs_only());
}

TEST(AuthJwtTest, AlgorithmIsPinnedPerKeyType) {
  expect_rejected(es256(payload(kFar)), rsa_only(), "ES256 vs RSA key");
  expect_rejected(rs256(payload(kFar)), ec_only(), "RS256 vs EC key");
  // An ES256 header on an RSA signature (and vice versa).
  auto in = signing_input(R"({"alg":"ES256"})", payload(kFar));
  expect_rejected(in + "." + b64(der_sign(rsa_key(), in)), rsa_only());
  auto in2 = signing_input(R"({"alg":"RS256"})", payload(kFar));
  expect_rejected(in2 + "." + b64(der_to_jose(der_sign(ec_key(), in2))), ec_only());
}

TEST(AuthJwtTest, RejectsUnsupportedAlgorithms) {
  for (const char* alg : {"HS384", "HS512", "RS512", "PS256", "ES384", "EdDSA", "hs256", ""}) {
    auto in = signing_input(std::string(R"({"alg":")") + alg + "\"}", payload(kFar));
    expect_rejected(in + "." + b64(hmac_sha256(kSecret, in)), hs_only(), alg);
  }
}

TEST(AuthJwtTest, Es256NeedsJoseSignatureForm) {
  auto in = signing_input(R"({"alg":"ES256"})", payload(kFar));
  auto der = der_sign(ec_key(), in);
  expect_rejected(in + "." + b64(der), ec_only(), "DER instead of R||S");
  auto jose = der_to_jose(der);
  expect_rejected(in + "." + b64(jose.substr(0, 63)), ec_only(), "63 bytes");
  ASSERT_TRUE(verify_jwt(in + "." + b64(jose), ec_only()).ok());
}

TEST(AuthJwtTest, KidSelectsTheJwksKey) {
  auto jwks = parse_jwks("{\"keys\":[" + jwk(rsa_key(), "a") + "," + jwk(other_rsa_key(), "b") +
                         "," + jwk(ec_key(), "e") + "]}");
  ASSERT_TRUE(jwks.ok()) << jwks.error().message;
  KeySet set;
  for (auto& k : *jwks) set.add(std::move(k));
  EXPECT_TRUE(
      verify_jwt(rs256(payload(kFar), rsa_key(), R"({"alg":"RS256","kid":"a"})"), set).ok());
  EXPECT_TRUE(
      verify_jwt(rs256(payload(kFar), other_rsa_key(), R"({"alg":"RS256","kid":"b"})"), set).ok());
  EXPECT_TRUE(verify_jwt(es256(payload(kFar), ec_key(), R"({"alg":"ES256","kid":"e"})"), set).ok());
  // A kid naming another key is not rescued by trying the rest.
  expect_rejected(rs256(payload(kFar), rsa_key(), R"({"alg":"RS256","kid":"b"})"), set);
  expect_rejected(rs256(payload(kFar), rsa_key(), R"({"alg":"RS256","kid":"zz"})"), set);
  // ES256 header with an RSA key's kid: the key's algorithm wins.
  expect_rejected(es256(payload(kFar), ec_key(), R"({"alg":"ES256","kid":"a"})"), set);
  // No kid: any key of the token's algorithm.
  EXPECT_TRUE(verify_jwt(rs256(payload(kFar), other_rsa_key()), set).ok());
}

// ------------------------------------------------------------- tampering and form

TEST(AuthJwtTest, RejectsTamperedPayload) {
  const std::string good = hs256(payload(kFar, R"("scope":"read")"));
  const auto d1 = good.find('.'), d2 = good.rfind('.');
  const std::string forged =
      good.substr(0, d1 + 1) + b64(payload(kFar, R"("scope":"manage")")) + good.substr(d2);
  expect_rejected(forged, hs_only(), "HS256");
  const std::string rgood = rs256(payload(kFar, R"("scope":"read")"));
  const auto r1 = rgood.find('.'), r2 = rgood.rfind('.');
  expect_rejected(
      rgood.substr(0, r1 + 1) + b64(payload(kFar, R"("scope":"manage")")) + rgood.substr(r2),
      rsa_only(), "RS256");
}

TEST(AuthJwtTest, RejectsTamperedSignature) {
  for (const auto& [token, keys] :
       std::vector<std::pair<std::string, KeySet>>{{hs256(payload(kFar)), hs_only()},
                                                   {rs256(payload(kFar)), rsa_only()},
                                                   {es256(payload(kFar)), ec_only()}}) {
    const auto dot = token.rfind('.');
    auto sig = *base64url_decode(token.substr(dot + 1));
    auto flipped = sig;
    flipped[flipped.size() / 2] ^= 0x01;
    expect_rejected(token.substr(0, dot + 1) + b64(flipped), keys, "bit flip");
    expect_rejected(token.substr(0, dot + 1) + b64(sig.substr(1)), keys, "truncated");
    expect_rejected(token.substr(0, dot + 1) + b64(sig + "x"), keys, "extended");
    ASSERT_TRUE(verify_jwt(token, keys).ok());
  }
}

TEST(AuthJwtTest, RejectsMalformedTokens) {
  const std::string good = hs256(payload(kFar));
  const auto d1 = good.find('.'), d2 = good.rfind('.');
  const auto keys = hs_only();
  expect_rejected("", keys, "empty");
  expect_rejected("abc", keys, "one segment");
  expect_rejected(good.substr(0, d2), keys, "two segments");
  expect_rejected(good + ".", keys, "four segments");
  expect_rejected(good + "." + b64("x"), keys, "four segments");
  expect_rejected(good.substr(0, d2 + 1), keys, "empty signature");
  expect_rejected("." + good.substr(d1 + 1), keys, "empty header");
  expect_rejected(good + "=", keys, "padding");
  expect_rejected(good.substr(0, d1) + "=" + good.substr(d1), keys, "padding in header");
  std::string std_alphabet = good;
  for (auto& ch : std_alphabet) {
    if (ch == '-') ch = '+';
    if (ch == '_') ch = '/';
  }
  if (std_alphabet != good) expect_rejected(std_alphabet, keys, "standard base64");
  expect_rejected(good.substr(0, d1) + "!" + good.substr(d1), keys, "bad character");
  expect_rejected(" " + good, keys, "leading space");
  expect_rejected(std::string(kMaxTokenBytes + 1, 'a'), keys, "too long");
  // Validly signed, but the header is not a JSON object with a string alg.
  for (const char* header : {"not json", "[\"HS256\"]", "{\"alg\":\"HS256\"", "{}", "{\"alg\":256}",
                             "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
                             "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}"}) {
    expect_rejected(hs256(payload(kFar), kSecret, header), keys, header);
  }
}

TEST(AuthJwtTest, RejectsBadClaims) {
  const auto keys = hs_only();
  for (const char* p : {
           "{}",                                       // missing exp
           "{\"scope\":\"read\"}",                     // missing exp
           "{\"exp\":\"4102444800\"}",                 // exp not a number
           "{\"exp\":null}",                           //
           "{\"exp\":4102444800,\"exp\":4102444800}",  // duplicated
           "{\"exp\":4102444800,\"nbf\":\"0\"}",       //
           "{\"exp\":4102444800,\"iat\":true}",        //
           "{\"exp\":4102444800,\"iss\":1}",           //
           "{\"exp\":4102444800,\"aud\":[1]}",         //
           "{\"exp\":4102444800,\"aud\":{}}",          //
           "{\"exp\":4102444800,\"scope\":[\"read\"]}",
           "{\"exp\":4102444800,\"scopes\":\"read\"}",
           "{\"exp\":4102444800,\"streams\":\"a/*\"}",
           "{\"exp\":4102444800,\"streams\":[\"a\",2]}",
           "[{\"exp\":4102444800}]",  // not an object
           "not json",
       }) {
    expect_rejected(hs256(p), keys, p);
  }
}

}  // namespace
}  // namespace ds::auth
