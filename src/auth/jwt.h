#pragma once
// A strict verifier for compact JWS bearer tokens (RFC 7515/7519) signed with
// HS256, RS256 or ES256. Plain C++, OpenSSL 3 EVP and simdjson; no Asio.
//
// verify_jwt checks the token's form, its signature against a key pinned to
// the token's algorithm, and the types of the claims it knows. Whether the
// claims grant a request (time, issuer, audience, scopes, streams) is
// policy.h's business.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/keys.h"
#include "common/errc.h"

namespace ds::auth {

/// Longest token accepted, in bytes.
inline constexpr size_t kMaxTokenBytes = size_t{16} * 1024;

/// Strict base64url (RFC 4648 section 5) as JWS uses it: only the URL-safe
/// alphabet, no padding, no whitespace, and the unused low bits of the last
/// character must be zero (so every byte string has exactly one encoding).
std::optional<std::string> base64url_decode(std::string_view in);
std::string base64url_encode(std::string_view in);

struct Claims {
  double exp = 0;  ///< required (seconds since the epoch; fractions allowed)
  std::optional<double> nbf;
  std::optional<double> iat;
  std::optional<std::string> iss;
  std::vector<std::string> aud;  ///< `aud` as a string or an array of strings
  /// The union of `scope` (a space-separated string, as in RFC 8693 / OAuth)
  /// and `scopes` (an array of strings); either or both may be present.
  std::vector<std::string> scopes;
  /// `streams`: stream path patterns the token is limited to ("prefix/*"
  /// matches the prefix and everything under it, "*" matches everything, any
  /// other string matches exactly). Absent: no path restriction.
  std::optional<std::vector<std::string>> streams;
};

/// Verifies `token` (header.payload.signature) with `keys`. Errors carry
/// errc::unauthorized and a message safe to show the client (it never
/// contains the token).
///
/// Rejects: anything but three non-empty strict-base64url segments; a header
/// that is not a JSON object, lacks `alg`, has `crit`, or names an algorithm
/// other than HS256/RS256/ES256 (`none` included); an algorithm no configured
/// key is pinned to; a bad signature (HMACs compared in constant time; ES256
/// signatures must be the 64-byte JOSE R||S form); a payload that is not a JSON
/// object; a missing or non-numeric `exp`; mistyped `nbf`, `iat`, `iss`, `aud`,
/// `scope`, `scopes`, `streams`; any of these claims given twice.
/// Header parameters `jku`, `jwk`, `x5u`, `x5c` are ignored: keys only ever
/// come from the server's configuration.
Result<Claims> verify_jwt(std::string_view token, const KeySet& keys);

}  // namespace ds::auth
