#pragma once
// Callback and claim tokens for subscriptions (PROTOCOL.md 7.1, 7.2, 7.3,
// 12.9): a compact JWS signed with the server's Ed25519 key (subs/signing.h)
// that names one subscription, one wake generation and one wake, and expires.
//
//   base64url({"alg":"EdDSA","typ":"ds-wake"}) . base64url(payload) . base64url(signature)
//   payload: {"sub":"<subscription>","gen":<generation>,"wid":"<wake_id>","exp_ms":<unix ms>}
//
// A valid token only proves that this server issued it for that wake; the
// caller still compares its generation and wake_id (and the request's) with
// the subscription's current state (7.3). Pure functions, safe from any
// thread; no Asio.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "subs/signing.h"

namespace ds::subs {

/// Longest token check_wake_token looks at, in bytes.
inline constexpr size_t kMaxWakeTokenBytes = 4096;

struct WakeToken {
  std::string subscription;  ///< subscription id (valid UTF-8)
  uint64_t generation = 0;
  std::string wake_id;          ///< valid UTF-8
  int64_t expires_unix_ms = 0;  ///< the token is expired from this instant on

  friend bool operator==(const WakeToken&, const WakeToken&) = default;
};

/// A token for `claims`, signed with `key`. Empty only if OpenSSL cannot
/// allocate. Ids that are not valid UTF-8 are not representable in JSON; such
/// a token never checks against the original id.
std::string issue_wake_token(const SigningKey& key, const WakeToken& claims);

enum class TokenProblem {
  invalid,  ///< malformed, not ours, tampered with, or for another subscription
  expired,  ///< ours and intact, for this subscription, but past its expiry
};

/// The token's claims, or why it is refused.
using WakeTokenCheck = std::variant<WakeToken, TokenProblem>;

/// Checks `token` (the bearer credential, without "Bearer ") against `key`
/// and the subscription named in the request path. Invalid: over
/// kMaxWakeTokenBytes; not three non-empty strict-base64url segments; a
/// header other than exactly {"alg":"EdDSA","typ":"ds-wake"} in content
/// ("none" and every other alg included); a bad signature; a payload that is
/// not exactly the four claims with their types, each once; another
/// subscription. Expired: all of that holds and now_unix_ms >= expiry.
WakeTokenCheck check_wake_token(const SigningKey& key, std::string_view token,
                                std::string_view subscription, int64_t now_unix_ms);

}  // namespace ds::subs
