#include "auth/keys.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <simdjson.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "auth/jwt.h"

namespace ds::auth {

const char* alg_name(Alg a) noexcept {
  switch (a) {
    case Alg::hs256:
      return "HS256";
    case Alg::rs256:
      return "RS256";
    case Alg::es256:
      return "ES256";
  }
  return "?";
}

std::optional<Alg> alg_from_name(std::string_view name) noexcept {
  if (name == "HS256") return Alg::hs256;
  if (name == "RS256") return Alg::rs256;
  if (name == "ES256") return Alg::es256;
  return std::nullopt;
}

namespace {

Error key_error(std::string msg) { return Error(errc::bad_request, std::move(msg)); }

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};

Result<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return key_error(std::string("cannot read ") + what + " '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return key_error(std::string("cannot read ") + what + " '" + path + "'");
  return ss.str();
}

/// Makes an EVP_PKEY of `type` ("RSA" or "EC") from public parameters.
EVP_PKEY* pkey_from_params(const char* type, OSSL_PARAM* params) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  EVP_PKEY* pkey = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) return nullptr;
  return pkey;
}

Result<Key> rsa_from_jwk(std::string_view n64, std::string_view e64, std::string kid) {
  auto n = base64url_decode(n64);
  auto e = base64url_decode(e64);
  if (!n || !e || n->empty() || e->empty())
    return key_error("JWKS RSA key: n and e must be base64url");
  const std::string& nb = *n;
  const std::string& eb = *e;
  std::unique_ptr<BIGNUM, BnFree> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(nb.data()),
                                                 static_cast<int>(nb.size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(eb.data()),
                                                 static_cast<int>(eb.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()))
    return key_error("JWKS RSA key: out of memory");
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return key_error("JWKS RSA key: out of memory");
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(pkey_from_params("RSA", params.get()));
  if (!pkey) return key_error("JWKS RSA key is not a valid RSA public key");
  return Key::from_pkey(pkey.get(), std::move(kid));
}

Result<Key> ec_from_jwk(std::string_view x64, std::string_view y64, std::string kid) {
  auto x = base64url_decode(x64);
  auto y = base64url_decode(y64);
  if (!x || !y || x->size() != 32 || y->size() != 32)
    return key_error("JWKS EC key: x and y must be 32-byte base64url values");
  std::string point = "\x04" + *x + *y;
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size()))
    return key_error("JWKS EC key: out of memory");
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return key_error("JWKS EC key: out of memory");
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(pkey_from_params("EC", params.get()));
  if (!pkey) return key_error("JWKS EC key is not a valid P-256 public key");
  return Key::from_pkey(pkey.get(), std::move(kid));
}

}  // namespace

Result<Key> Key::hmac(std::string_view secret, std::string kid) {
  if (secret.size() < kMinHmacSecretBytes)
    return key_error("the HS256 secret must be at least " + std::to_string(kMinHmacSecretBytes) +
                     " bytes");
  Key k;
  k.alg_ = Alg::hs256;
  k.kid_ = std::move(kid);
  k.secret_ = std::shared_ptr<const std::string>(new std::string(secret), [](const std::string* s) {
    OPENSSL_cleanse(const_cast<char*>(s->data()), s->size());
    delete s;
  });
  return k;
}

Result<Key> Key::from_pkey(EVP_PKEY* pkey, std::string kid) {
  if (!pkey) return key_error("no key");
  Key k;
  k.kid_ = std::move(kid);
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    if (EVP_PKEY_get_bits(pkey) < kMinRsaBits)
      return key_error("RSA keys must have at least " + std::to_string(kMinRsaBits) + " bits");
    k.alg_ = Alg::rs256;
  } else if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) != 1 ||
        std::strcmp(group, "prime256v1") != 0)
      return key_error("EC keys must be on the P-256 curve (ES256)");
    k.alg_ = Alg::es256;
  } else {
    return key_error("public keys must be RSA (RS256) or EC P-256 (ES256)");
  }
  // Is the public part well formed (for EC: on the curve)?
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx || EVP_PKEY_public_check(ctx.get()) != 1) return key_error("the public key is invalid");
  if (EVP_PKEY_up_ref(pkey) != 1) return key_error("out of memory");
  k.pkey_ = std::shared_ptr<EVP_PKEY>(pkey, PkeyFree{});
  return k;
}

Result<Key> Key::from_pem(std::string_view pem, std::string kid) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return key_error("out of memory");
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) return key_error("expected a PEM public key (-----BEGIN PUBLIC KEY-----)");
  return from_pkey(pkey.get(), std::move(kid));
}

std::vector<const Key*> KeySet::candidates(Alg alg, std::optional<std::string_view> kid) const {
  std::vector<const Key*> exact, unnamed;
  for (const auto& k : keys_) {
    if (k.alg() != alg) continue;
    if (k.kid().empty()) {
      unnamed.push_back(&k);
    } else if (!kid || *kid == k.kid()) {
      exact.push_back(&k);
    }
  }
  if (kid && !exact.empty()) return exact;
  exact.insert(exact.end(), unnamed.begin(), unnamed.end());
  return exact;
}

Result<Key> load_pem_file(const std::string& path) {
  auto text = read_file(path, "public key file");
  if (!text) return std::move(text).error();
  auto key = Key::from_pem(*text);
  if (!key) return Error(errc::bad_request, path + ": " + key.error().message);
  return key;
}

Result<std::vector<Key>> parse_jwks(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc)) return key_error("the JWKS is not valid JSON");
  simdjson::dom::array arr;
  if (doc["keys"].get_array().get(arr)) return key_error("the JWKS has no \"keys\" array");
  std::vector<Key> out;
  size_t index = 0;
  for (simdjson::dom::element jwk : arr) {
    const std::string where = "JWKS key " + std::to_string(index++);
    simdjson::dom::object obj;
    if (jwk.get_object().get(obj)) return key_error(where + " is not an object");
    auto str = [&obj](const char* name) -> std::optional<std::string_view> {
      std::string_view v;
      if (obj[name].get_string().get(v)) return std::nullopt;
      return v;
    };
    auto kty = str("kty");
    if (!kty) return key_error(where + " has no kty");
    if (auto use = str("use"); use && *use != "sig") continue;
    if (obj["use"].error() == simdjson::SUCCESS && !str("use"))
      return key_error(where + ": use must be a string");
    std::string kid(str("kid").value_or(""));
    if (obj["kid"].error() == simdjson::SUCCESS && !str("kid"))
      return key_error(where + ": kid must be a string");
    auto alg = str("alg");
    Result<Key> key = key_error("unsupported");
    if (*kty == "RSA") {
      auto n = str("n"), e = str("e");
      if (!n || !e) return key_error(where + ": RSA keys need n and e");
      key = rsa_from_jwk(*n, *e, kid);
    } else if (*kty == "EC") {
      auto crv = str("crv"), x = str("x"), y = str("y");
      if (!crv || *crv != "P-256") continue;  // other curves: not ES256
      if (!x || !y) return key_error(where + ": EC keys need x and y");
      key = ec_from_jwk(*x, *y, kid);
    } else {
      continue;  // "oct", "OKP", ...: not supported here
    }
    if (!key) return key_error(where + ": " + key.error().message);
    if (alg && alg_from_name(*alg) != key->alg())
      return key_error(where + ": alg does not match the key type");
    out.push_back(std::move(*key));
  }
  if (out.empty()) return key_error("the JWKS has no RSA or EC P-256 signing key");
  return out;
}

Result<std::vector<Key>> load_jwks_file(const std::string& path) {
  auto text = read_file(path, "JWKS file");
  if (!text) return std::move(text).error();
  auto keys = parse_jwks(*text);
  if (!keys) return Error(errc::bad_request, path + ": " + keys.error().message);
  return keys;
}

}  // namespace ds::auth
