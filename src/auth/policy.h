#pragma once
// Who may do what: a verified token's claims, the request's method and the
// stream paths it touches -> allow, 401 or 403. Plain C++; no Asio. The clock
// is passed in (common/clock.h), so tests move time by hand.
//
// Scopes (from the token's `scope` and/or `scopes` claims):
//   GET, HEAD          read, write or manage
//   POST               write or manage
//   PUT, DELETE        manage (and any other method, which the server
//                      answers with 405 anyway)
// Streams: when the token has a `streams` claim, every stream the request
// touches (the target, and for a fork the Stream-Forked-From source) must
// match one of its patterns; see Claims::streams.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/jwt.h"
#include "auth/keys.h"
#include "common/clock.h"

namespace ds::auth {

enum class Method { get, head, post, put, del, other };

struct AuthConfig {
  KeySet keys;
  std::optional<std::string> issuer;    ///< require `iss` to equal this
  std::optional<std::string> audience;  ///< require `aud` to contain this
  int64_t clock_skew_ms = 30'000;       ///< allowance for exp and nbf
  bool allow_query_token = false;       ///< accept `?token=` (EventSource cannot set headers)
};

struct AccessRequest {
  Method method = Method::other;
  /// Stream names (decoded, without /v1/stream/) the request touches: the
  /// target first, then e.g. a fork source. nullopt: a name that could not
  /// be parsed; it matches no `streams` pattern.
  std::vector<std::optional<std::string>> streams;
};

struct Decision {
  enum class Outcome { allow, unauthorized, forbidden, bad_request };
  Outcome outcome = Outcome::allow;
  std::string message;
  /// RFC 6750 section 3.1 error code for WWW-Authenticate: "",
  /// "invalid_request", "invalid_token" or "insufficient_scope".
  std::string bearer_error;
  std::string required_scope;  ///< with insufficient_scope

  bool allowed() const noexcept { return outcome == Outcome::allow; }
  /// The WWW-Authenticate value for this decision ("" when allowed, or when a
  /// 403 is about stream paths rather than scope).
  std::string www_authenticate() const;
};

/// The scope a method needs at least ("read", "write" or "manage").
const char* required_scope(Method m) noexcept;
/// Whether `scopes` grant `m` (manage implies write implies read).
bool scopes_allow(const std::vector<std::string>& scopes, Method m) noexcept;
/// Whether a `streams` pattern matches a stream name.
bool stream_pattern_matches(std::string_view pattern, std::string_view name) noexcept;
/// Whether the claims' `streams` patterns cover a stream name (no `streams`
/// claim: every name).
bool claims_grant_stream(const Claims& claims, std::string_view name) noexcept;

/// The token from an `Authorization` value "Bearer <token>" (scheme
/// case-insensitive). nullopt for other schemes and for an empty token.
std::optional<std::string_view> bearer_token(std::string_view authorization) noexcept;

/// Claims -> decision at `now_ms` (time window, issuer, audience, scope, streams).
Decision evaluate(const Claims& claims, const AccessRequest& req, const AuthConfig& config,
                  int64_t now_ms);

class Authenticator {
 public:
  Authenticator(AuthConfig config, const Clock& clock);

  /// `token`: nullopt when the request carried none.
  Decision authorize(std::optional<std::string_view> token, const AccessRequest& req) const;
  /// As above; when allowed, also the token's verified claims in `*claims`
  /// (for a request that filters by them, e.g. the stream catalog by
  /// `streams`). `*claims` is left alone otherwise.
  Decision authorize(std::optional<std::string_view> token, const AccessRequest& req,
                     Claims* claims) const;

  const AuthConfig& config() const noexcept { return config_; }

 private:
  AuthConfig config_;
  const Clock& clock_;
};

}  // namespace ds::auth
