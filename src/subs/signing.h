#pragma once
// The server's Ed25519 webhook signing key (PROTOCOL.md 6.5, 7.1, 12.10):
// signs webhook bodies (the Webhook-Signature header), signs wake tokens
// (subs/tokens.h), and publishes its public half as a JWK Set.
//
// Plain C++ and OpenSSL 3; no Asio. A SigningKey is an immutable value that
// shares one OpenSSL key between its copies: copying is cheap, and every
// const method may be called from any number of threads at once. A
// moved-from key is empty: it signs nothing (empty results) and verifies
// nothing. The private key never appears in a log line or an error message.

#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/errc.h"

namespace ds::subs {

/// Longest key file load_or_create reads, in bytes (an Ed25519 PKCS#8 PEM is
/// about 120).
inline constexpr size_t kMaxKeyFileBytes = size_t{64} * 1024;

class SigningKey {
 public:
  /// A fresh key from OpenSSL's CSPRNG.
  static Result<SigningKey> generate();
  /// A PKCS#8 private key PEM ("BEGIN PRIVATE KEY"). Keys of any other type
  /// (RSA, EC, X25519, Ed448) and encrypted PEMs are refused; nothing ever
  /// prompts for a passphrase.
  static Result<SigningKey> from_pem(std::string_view pem);
  /// The 32-byte private key (the RFC 8032 "secret key", a seed).
  static Result<SigningKey> from_seed(std::string_view seed);
  /// Loads the PEM at `path`. When no file is there, generates a key and
  /// writes it durably: `path.tmp` with mode 0600, fsync, rename to `path`
  /// (never replacing a file another process put there meanwhile), fsync of
  /// the directory. A file that exists but is unreadable or not an Ed25519
  /// private key is an error; it is never overwritten.
  /// Errors: errc::bad_request (the file's content), errc::storage_failure
  /// (the file system).
  static Result<SigningKey> load_or_create(const std::string& path);

  /// PKCS#8 PEM of the private key, unencrypted. Secret: store it with mode
  /// 0600 and never log it.
  std::string private_pem() const;
  /// "ds_" + base64url(SHA-256(thumbprint_input())), unpadded: the RFC 7638
  /// JWK thumbprint, so it is stable for the key's lifetime and derived
  /// from nothing but the public key.
  const std::string& kid() const noexcept { return kid_; }
  /// The 32-byte public key.
  const std::string& public_key() const noexcept { return public_key_; }
  /// RFC 7638's canonical JSON for an OKP key:
  /// `{"crv":"Ed25519","kty":"OKP","x":"<x>"}` (members in lexicographic
  /// order, no whitespace).
  std::string thumbprint_input() const;
  /// `{"kty":"OKP","crv":"Ed25519","kid":...,"use":"sig","alg":"EdDSA","x":...}`.
  std::string public_jwk_json() const;

  /// The 64-byte Ed25519 signature of `message` (deterministic, RFC 8032).
  /// Empty only if OpenSSL cannot allocate.
  std::string sign(std::string_view message) const;
  /// True when `signature` is this key's valid signature of `message`.
  bool verify(std::string_view message, std::string_view signature) const;

 private:
  SigningKey() = default;
  static Result<SigningKey> from_pkey(EVP_PKEY* pkey);  // takes ownership

  std::shared_ptr<EVP_PKEY> pkey_;
  std::string public_key_;
  std::string kid_;
};

/// `{"keys":[<public_jwk_json()>,...]}`, in the given order (the
/// application/jwk-set+json body of GET .../__ds/jwks.json). Null entries are
/// skipped.
std::string jwks_json(const std::vector<const SigningKey*>& keys);

/// The Webhook-Signature header value for a request body sent at
/// `unix_seconds`: `t=<unix_seconds>,kid=<kid>,ed25519=<sig>`, where <sig>
/// is the unpadded base64url Ed25519 signature of "<t>.<body>" (the decimal
/// timestamp, a dot, the exact body bytes).
std::string webhook_signature_header(const SigningKey& key, int64_t unix_seconds,
                                     std::string_view body);

}  // namespace ds::subs
