// Verification key files: a JWK Set (auth::parse_jwks) and a PEM public key
// (auth::Key::from_pem). Both come from the operator's configuration, not a
// client, but a JWKS is often fetched from an identity provider, so a
// malformed one must be refused, never crash. Properties: every accepted key
// is pinned to RS256 or ES256 (a JWKS never yields an HMAC secret) and holds
// a public key; a PEM key has no kid.

#include <string>

#include "auth/keys.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = ds::fuzz::as_text(data, size);

  if (auto keys = ds::auth::parse_jwks(in)) {
    FUZZ_CHECK(!keys->empty());
    for (const auto& key : *keys) {
      FUZZ_CHECK(key.alg() == ds::auth::Alg::rs256 || key.alg() == ds::auth::Alg::es256);
      FUZZ_CHECK(key.pkey() != nullptr);
    }
  }
  if (auto key = ds::auth::Key::from_pem(in)) {
    FUZZ_CHECK(key->alg() == ds::auth::Alg::rs256 || key->alg() == ds::auth::Alg::es256);
    FUZZ_CHECK(key->kid().empty());
  }
  return 0;
}
