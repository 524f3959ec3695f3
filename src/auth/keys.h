#pragma once
// Verification keys for bearer JWTs, each pinned to exactly one algorithm:
// an HMAC secret only ever verifies HS256, an RSA public key only RS256, an EC
// P-256 public key only ES256. The token's `alg` header selects among keys; it
// never changes how a key is used (no algorithm confusion).
//
// Plain C++ and OpenSSL 3; no Asio.

#include <openssl/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/errc.h"

namespace ds::auth {

enum class Alg { hs256, rs256, es256 };

const char* alg_name(Alg a) noexcept;
/// "HS256", "RS256", "ES256"; anything else (including "none") is nullopt.
std::optional<Alg> alg_from_name(std::string_view name) noexcept;

/// Shortest HS256 secret accepted (RFC 7518 3.2: at least the hash size).
inline constexpr size_t kMinHmacSecretBytes = 32;
/// Smallest RSA modulus accepted.
inline constexpr int kMinRsaBits = 2048;

class Key {
 public:
  /// An HS256 secret (raw bytes, at least kMinHmacSecretBytes).
  static Result<Key> hmac(std::string_view secret, std::string kid = "");
  /// A PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY"): RSA (>= 2048 bits)
  /// becomes an RS256 key, EC P-256 an ES256 key; other types are refused.
  static Result<Key> from_pem(std::string_view pem, std::string kid = "");
  /// Wraps a public EVP_PKEY (takes one reference); same rules as from_pem.
  static Result<Key> from_pkey(EVP_PKEY* pkey, std::string kid = "");

  Alg alg() const noexcept { return alg_; }
  /// Empty when the key has no id; such a key matches tokens with any kid.
  const std::string& kid() const noexcept { return kid_; }
  /// HS256 only.
  const std::string& secret() const noexcept { return *secret_; }
  /// RS256 / ES256 only.
  EVP_PKEY* pkey() const noexcept { return pkey_.get(); }

 private:
  Key() = default;
  Alg alg_ = Alg::hs256;
  std::string kid_;
  std::shared_ptr<const std::string> secret_;  // wiped when the last copy goes
  std::shared_ptr<EVP_PKEY> pkey_;
};

class KeySet {
 public:
  void add(Key key) { keys_.push_back(std::move(key)); }
  bool empty() const noexcept { return keys_.empty(); }
  size_t size() const noexcept { return keys_.size(); }
  const std::vector<Key>& keys() const noexcept { return keys_; }

  /// Keys a token with this `alg` (and `kid`, if it has one) may be verified
  /// with: keys of exactly that algorithm whose kid equals the token's, or
  /// which have no kid. When some key's kid equals the token's kid, only
  /// those are returned.
  std::vector<const Key*> candidates(Alg alg, std::optional<std::string_view> kid) const;

 private:
  std::vector<Key> keys_;
};

/// Reads a PEM public key file (see Key::from_pem).
Result<Key> load_pem_file(const std::string& path);

/// Parses a JWK Set `{"keys": [...]}`. Accepted members: kty "RSA" (n, e) and
/// kty "EC" with crv "P-256" (x, y); optional kid, and optional alg, which
/// must then agree with the key type. Keys with "use" other than "sig", and
/// other key types (including "oct": secrets do not belong in a key file),
/// are skipped. Fails if no usable key remains.
Result<std::vector<Key>> parse_jwks(std::string_view json);
Result<std::vector<Key>> load_jwks_file(const std::string& path);

}  // namespace ds::auth
