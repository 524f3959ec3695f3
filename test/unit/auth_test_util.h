#pragma once
// Test-only token minting for the auth tests: key generation (RSA 2048, EC
// P-256), PEM/JWK export and HS256/RS256/ES256 signing with OpenSSL 3.

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "auth/jwt.h"
#include "auth/keys.h"

namespace ds::auth::testkit {

using PkeyPtr = std::shared_ptr<EVP_PKEY>;

inline PkeyPtr wrap(EVP_PKEY* p) {
  if (!p) throw std::runtime_error("key generation failed");
  return PkeyPtr(p, EVP_PKEY_free);
}

/// Generated once per process (RSA generation is slow).
inline EVP_PKEY* rsa_key() {
  static PkeyPtr k = wrap(EVP_RSA_gen(2048));
  return k.get();
}
inline EVP_PKEY* other_rsa_key() {
  static PkeyPtr k = wrap(EVP_RSA_gen(2048));
  return k.get();
}
inline EVP_PKEY* ec_key() {
  static PkeyPtr k = wrap(EVP_EC_gen("P-256"));
  return k.get();
}
inline EVP_PKEY* other_ec_key() {
  static PkeyPtr k = wrap(EVP_EC_gen("P-256"));
  return k.get();
}

inline const std::string kSecret = "test-secret-0123456789abcdef-0123456789";
inline const std::string kOtherSecret = "other-secret-0123456789abcdef-012345678";

inline std::string public_pem(EVP_PKEY* k) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), k) != 1) throw std::runtime_error("PEM export");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

inline std::string private_pem(EVP_PKEY* k) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), k, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw std::runtime_error("PEM export");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

inline std::string b64(std::string_view s) { return base64url_encode(s); }

inline std::string bn_bytes(EVP_PKEY* k, const char* param, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(k, param, &bn) != 1) throw std::runtime_error("bn param");
  std::string out(pad ? static_cast<size_t>(pad) : static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

/// One JWK (no trailing comma) for an RSA or EC P-256 public key.
inline std::string jwk(EVP_PKEY* k, const std::string& kid, const std::string& extra = "") {
  std::string body;
  if (EVP_PKEY_is_a(k, "RSA")) {
    body = "\"kty\":\"RSA\",\"n\":\"" + b64(bn_bytes(k, OSSL_PKEY_PARAM_RSA_N)) + "\",\"e\":\"" +
           b64(bn_bytes(k, OSSL_PKEY_PARAM_RSA_E)) + "\"";
  } else {
    body = "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" +
           b64(bn_bytes(k, OSSL_PKEY_PARAM_EC_PUB_X, 32)) + "\",\"y\":\"" +
           b64(bn_bytes(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + "\"";
  }
  if (!kid.empty()) body += ",\"kid\":\"" + kid + "\"";
  if (!extra.empty()) body += "," + extra;
  return "{" + body + "}";
}

inline std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

/// DER signature over SHA-256 (RSA PKCS#1 v1.5 or ECDSA).
inline std::string der_sign(EVP_PKEY* k, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, k) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                     data.size()) != 1)
    throw std::runtime_error("sign");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
    throw std::runtime_error("sign");
  sig.resize(len);
  return sig;
}

/// ECDSA DER -> JOSE R || S (32 bytes each).
inline std::string der_to_jose(const std::string& der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (!sig) throw std::runtime_error("der");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig, &r, &s);
  std::string out(64, '\0');
  BN_bn2binpad(r, reinterpret_cast<unsigned char*>(out.data()), 32);
  BN_bn2binpad(s, reinterpret_cast<unsigned char*>(out.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return out;
}

/// header.payload, both JSON texts, base64url-encoded.
inline std::string signing_input(const std::string& header, const std::string& payload) {
  return b64(header) + "." + b64(payload);
}

inline std::string hs256(const std::string& payload, std::string_view secret = kSecret,
                         const std::string& header = R"({"alg":"HS256","typ":"JWT"})") {
  auto in = signing_input(header, payload);
  return in + "." + b64(hmac_sha256(secret, in));
}

inline std::string rs256(const std::string& payload, EVP_PKEY* k = rsa_key(),
                         const std::string& header = R"({"alg":"RS256","typ":"JWT"})") {
  auto in = signing_input(header, payload);
  return in + "." + b64(der_sign(k, in));
}

inline std::string es256(const std::string& payload, EVP_PKEY* k = ec_key(),
                         const std::string& header = R"({"alg":"ES256","typ":"JWT"})") {
  auto in = signing_input(header, payload);
  return in + "." + b64(der_to_jose(der_sign(k, in)));
}

/// A payload with `exp` (seconds) and any other members (`extra` is JSON
/// object content without braces, e.g. R"("scope":"read")").
inline std::string payload(long long exp, const std::string& extra = "") {
  std::string p = "{\"exp\":" + std::to_string(exp);
  if (!extra.empty()) p += "," + extra;
  return p + "}";
}

inline KeySet keys_of(std::vector<Result<Key>> keys) {
  KeySet set;
  for (auto& k : keys) {
    if (!k) throw std::runtime_error(k.error().message);
    set.add(std::move(*k));
  }
  return set;
}

}  // namespace ds::auth::testkit
