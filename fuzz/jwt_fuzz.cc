// Bearer tokens (auth::verify_jwt) and strict base64url. Each input is tried
// twice: as a raw token against HS256, RS256 and ES256 keys (the form, the
// header and the signature check are what an attacker reaches), and as
// `header-json \n payload-json` turned into a token signed with the HS256 key
// (so the header and claims parsers behind the signature are reached too).
// Properties: base64url decodes only canonical text, which encodes back to
// itself; a correctly signed token never fails on its signature; accepted
// claims are finite and a token verifies with no other secret.

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <simdjson.h>

#include <cmath>
#include <string>

#include "auth/jwt.h"
#include "fuzz_check.h"

namespace {

using ds::auth::base64url_decode;
using ds::auth::base64url_encode;

const std::string kSecret = "fuzz-secret-0123456789abcdef-0123456789";

ds::auth::KeySet make_keys(const std::string& secret) {
  ds::auth::KeySet keys;
  keys.add(std::move(ds::auth::Key::hmac(secret).value()));
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  FUZZ_CHECK(ec != nullptr);
  keys.add(std::move(ds::auth::Key::from_pkey(ec, "ec").value()));
  EVP_PKEY_free(ec);
  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  FUZZ_CHECK(rsa != nullptr);
  keys.add(std::move(ds::auth::Key::from_pkey(rsa, "rsa").value()));
  EVP_PKEY_free(rsa);
  return keys;
}

const ds::auth::KeySet& keys() {
  static const ds::auth::KeySet k = make_keys(kSecret);
  return k;
}

const ds::auth::KeySet& other_keys() {
  static const ds::auth::KeySet k = [] {
    ds::auth::KeySet s;
    s.add(std::move(ds::auth::Key::hmac("another-secret-0123456789abcdef-012345").value()));
    return s;
  }();
  return k;
}

std::string hs256(std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  FUZZ_CHECK(HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
                  reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len));
  return std::string(reinterpret_cast<const char*>(mac), len);
}

void check_claims(const ds::auth::Claims& c) {
  FUZZ_CHECK(std::isfinite(c.exp));
  if (c.nbf) FUZZ_CHECK(std::isfinite(*c.nbf));
  if (c.iat) FUZZ_CHECK(std::isfinite(*c.iat));
  for (const auto& s : c.scopes) FUZZ_CHECK(!s.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = ds::fuzz::as_text(data, size);

  if (auto raw = base64url_decode(in)) FUZZ_CHECK(base64url_encode(*raw) == in);
  auto round = base64url_decode(base64url_encode(in));
  FUZZ_CHECK(round && *round == in);

  if (auto claims = ds::auth::verify_jwt(in, keys())) {
    check_claims(*claims);
  } else {
    FUZZ_CHECK(claims.error().code == ds::errc::unauthorized);
  }

  // `header \n payload`, or only a payload under an HS256 header.
  const size_t nl = in.find('\n');
  const std::string header = nl == std::string_view::npos ? R"({"alg":"HS256","typ":"JWT"})"
                                                          : std::string(in.substr(0, nl));
  const std::string_view payload = nl == std::string_view::npos ? in : in.substr(nl + 1);
  const std::string signing_input = base64url_encode(header) + "." + base64url_encode(payload);
  const std::string token = signing_input + "." + base64url_encode(hs256(signing_input));
  auto claims = ds::auth::verify_jwt(token, keys());
  if (claims) {
    check_claims(*claims);
    FUZZ_CHECK(!ds::auth::verify_jwt(token, other_keys()));
  } else {
    FUZZ_CHECK(claims.error().code == ds::errc::unauthorized);
    // The token is signed correctly; only a header that does not select the
    // HS256 key can make the signature check fail.
    if (claims.error().message == "token signature is invalid") {
      simdjson::dom::parser parser;
      const simdjson::padded_string padded(header);
      std::string_view alg;
      FUZZ_CHECK(!parser.parse(padded)["alg"].get_string().get(alg) && alg != "HS256");
    }
  }
  return 0;
}
