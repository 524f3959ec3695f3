#include "auth/jwt.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <simdjson.h>

#include <cmath>
#include <memory>

namespace ds::auth {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

Error invalid(std::string msg) { return Error(errc::unauthorized, std::move(msg)); }

struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};

std::string_view bytes(const unsigned char* p, size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}
const unsigned char* uc(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

bool verify_hs256(const Key& key, std::string_view input, std::string_view sig) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const std::string& secret = key.secret();
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), uc(input), input.size(),
            mac, &len))
    return false;
  // The length is public (always 32); the comparison of the bytes is constant-time.
  bool ok = sig.size() == len && CRYPTO_memcmp(mac, sig.data(), len) == 0;
  OPENSSL_cleanse(mac, sizeof mac);
  return ok;
}

bool verify_digest(EVP_PKEY* pkey, std::string_view input, std::string_view der_sig) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) != 1) return false;
  return EVP_DigestVerify(ctx.get(), uc(der_sig), der_sig.size(), uc(input), input.size()) == 1;
}

bool verify_rs256(const Key& key, std::string_view input, std::string_view sig) {
  // RSASSA-PKCS1-v1_5 (the EVP default for RSA keys); the signature is
  // exactly as long as the modulus.
  if (sig.size() != static_cast<size_t>(EVP_PKEY_get_size(key.pkey()))) return false;
  return verify_digest(key.pkey(), input, sig);
}

bool verify_es256(const Key& key, std::string_view input, std::string_view sig) {
  // JOSE sends R || S, 32 bytes each (RFC 7518 3.4); EVP wants DER.
  if (sig.size() != 64) return false;
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> es(ECDSA_SIG_new());
  if (!es) return false;
  BIGNUM* r = BN_bin2bn(uc(sig), 32, nullptr);
  BIGNUM* s = BN_bin2bn(uc(sig) + 32, 32, nullptr);
  if (!r || !s || ECDSA_SIG_set0(es.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(es.get(), &der);
  if (der_len <= 0) return false;
  bool ok = verify_digest(key.pkey(), input, bytes(der, static_cast<size_t>(der_len)));
  OPENSSL_free(der);
  return ok;
}

bool verify_with(const Key& key, std::string_view input, std::string_view sig) {
  switch (key.alg()) {
    case Alg::hs256:
      return verify_hs256(key, input, sig);
    case Alg::rs256:
      return verify_rs256(key, input, sig);
    case Alg::es256:
      return verify_es256(key, input, sig);
  }
  return false;
}

struct Header {
  std::string alg;
  std::optional<std::string> kid;
};

simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

Result<Header> parse_header(const std::string& json) {
  simdjson::padded_string padded(json);
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (thread_parser().parse(padded).get(doc) || doc.get_object().get(obj))
    return invalid("malformed token: the header is not a JSON object");
  Header h;
  bool have_alg = false;
  for (auto field : obj) {
    std::string_view v;
    if (field.key == "alg") {
      if (have_alg || field.value.get_string().get(v))
        return invalid("malformed token: bad alg header");
      h.alg = std::string(v);
      have_alg = true;
    } else if (field.key == "kid") {
      if (h.kid || field.value.get_string().get(v))
        return invalid("malformed token: bad kid header");
      h.kid = std::string(v);
    } else if (field.key == "crit") {
      return invalid("token header has critical extensions this server does not support");
    }
  }
  if (!have_alg) return invalid("malformed token: the header has no alg");
  return h;
}

std::optional<double> number(simdjson::dom::element e) {
  double d = 0;
  if (!e.is_number() || e.get_double().get(d) || !std::isfinite(d)) return std::nullopt;
  return d;
}

std::optional<std::vector<std::string>> string_array(simdjson::dom::element e) {
  simdjson::dom::array arr;
  if (e.get_array().get(arr)) return std::nullopt;
  std::vector<std::string> out;
  for (simdjson::dom::element item : arr) {
    std::string_view v;
    if (item.get_string().get(v)) return std::nullopt;
    out.emplace_back(v);
  }
  return out;
}

Result<Claims> parse_claims(const std::string& json) {
  simdjson::padded_string padded(json);
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (thread_parser().parse(padded).get(doc) || doc.get_object().get(obj))
    return invalid("malformed token: the payload is not a JSON object");
  Claims c;
  bool have_exp = false, have_aud = false, have_scope = false, have_scopes = false;
  for (auto field : obj) {
    const std::string_view key = field.key;
    auto dup = [&](bool& seen) {
      bool was = seen;
      seen = true;
      return was;
    };
    if (key == "exp") {
      auto v = number(field.value);
      if (!v || dup(have_exp)) return invalid("token claim exp must be one number");
      c.exp = *v;
    } else if (key == "nbf") {
      auto v = number(field.value);
      if (!v || c.nbf) return invalid("token claim nbf must be one number");
      c.nbf = v;
    } else if (key == "iat") {
      auto v = number(field.value);
      if (!v || c.iat) return invalid("token claim iat must be one number");
      c.iat = v;
    } else if (key == "iss") {
      std::string_view v;
      if (c.iss || field.value.get_string().get(v))
        return invalid("token claim iss must be one string");
      c.iss = std::string(v);
    } else if (key == "aud") {
      std::string_view v;
      if (dup(have_aud)) return invalid("token claim aud is given twice");
      if (!field.value.get_string().get(v)) {
        c.aud.emplace_back(v);
      } else if (auto arr = string_array(field.value)) {
        c.aud = std::move(*arr);
      } else {
        return invalid("token claim aud must be a string or an array of strings");
      }
    } else if (key == "scope") {
      std::string_view v;
      if (dup(have_scope) || field.value.get_string().get(v))
        return invalid("token claim scope must be one space-separated string");
      size_t i = 0;
      while (i < v.size()) {
        size_t j = v.find(' ', i);
        if (j == std::string_view::npos) j = v.size();
        if (j > i) c.scopes.emplace_back(v.substr(i, j - i));
        i = j + 1;
      }
    } else if (key == "scopes") {
      auto arr = string_array(field.value);
      if (dup(have_scopes) || !arr)
        return invalid("token claim scopes must be an array of strings");
      // An empty name is no scope, as between the spaces of `scope`.
      for (auto& name : *arr)
        if (!name.empty()) c.scopes.push_back(std::move(name));
    } else if (key == "streams") {
      auto arr = string_array(field.value);
      if (c.streams || !arr) return invalid("token claim streams must be an array of strings");
      c.streams = std::move(*arr);
    }
  }
  if (!have_exp) return invalid("token has no exp claim");
  return c;
}

}  // namespace

std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    int v = b64_value(ch);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return std::nullopt;  // non-zero unused bits: not the canonical encoding
  return out;
}

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char ch : in) {
    acc = (acc << 8) | ch;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
    }
    acc &= (1u << bits) - 1;
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

Result<Claims> verify_jwt(std::string_view token, const KeySet& keys) {
  if (token.empty()) return invalid("empty token");
  if (token.size() > kMaxTokenBytes) return invalid("token is too long");
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return invalid("malformed token: expected three dot-separated segments");
  const std::string_view h64 = token.substr(0, d1);
  const std::string_view p64 = token.substr(d1 + 1, d2 - d1 - 1);
  const std::string_view s64 = token.substr(d2 + 1);
  if (h64.empty() || p64.empty() || s64.empty())
    return invalid("malformed token: empty segment (unsigned tokens are not accepted)");
  auto header_json = base64url_decode(h64);
  auto payload_json = base64url_decode(p64);
  auto sig = base64url_decode(s64);
  if (!header_json || !payload_json || !sig)
    return invalid("malformed token: segments must be unpadded base64url");

  auto header = parse_header(*header_json);
  if (!header) return std::move(header).error();
  auto alg = alg_from_name(header->alg);
  if (!alg) return invalid("token algorithm is not accepted (HS256, RS256 and ES256 are)");
  std::optional<std::string_view> kid;
  if (header->kid) kid = *header->kid;
  auto candidates = keys.candidates(*alg, kid);
  if (candidates.empty())
    return invalid(std::string("no key for this token (") + alg_name(*alg) +
                   (kid ? " with this kid" : "") + " is not configured)");

  const std::string_view signing_input = token.substr(0, d2);
  bool verified = false;
  for (const Key* key : candidates) {
    if (verify_with(*key, signing_input, *sig)) {
      verified = true;
      break;
    }
  }
  if (!verified) return invalid("token signature is invalid");
  return parse_claims(*payload_json);
}

}  // namespace ds::auth
