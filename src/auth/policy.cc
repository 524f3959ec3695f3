#include "auth/policy.h"

#include <algorithm>

namespace ds::auth {

namespace {

Decision deny(Decision::Outcome outcome, std::string message, std::string bearer_error,
              std::string scope = "") {
  Decision d;
  d.outcome = outcome;
  d.message = std::move(message);
  d.bearer_error = std::move(bearer_error);
  d.required_scope = std::move(scope);
  return d;
}

Decision invalid_token(std::string message) {
  return deny(Decision::Outcome::unauthorized, std::move(message), "invalid_token");
}

/// Quoted-string content for a WWW-Authenticate parameter: RFC 6750 allows
/// %x20-21 / %x23-5B / %x5D-7E only.
std::string quoted_safe(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c >= 0x20 && c <= 0x7E && c != '"' && c != '\\') out.push_back(c);
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

}  // namespace

std::string Decision::www_authenticate() const {
  switch (outcome) {
    case Outcome::allow:
      return "";
    case Outcome::forbidden:
      if (bearer_error.empty()) return "";
      [[fallthrough]];
    case Outcome::unauthorized:
    case Outcome::bad_request: {
      std::string v = "Bearer realm=\"dstreamd\"";
      if (!bearer_error.empty()) {
        v += ", error=\"" + bearer_error + "\"";
        if (!message.empty()) v += ", error_description=\"" + quoted_safe(message) + "\"";
        if (!required_scope.empty()) v += ", scope=\"" + required_scope + "\"";
      }
      return v;
    }
  }
  return "";
}

const char* required_scope(Method m) noexcept {
  switch (m) {
    case Method::get:
    case Method::head:
      return "read";
    case Method::post:
      return "write";
    case Method::put:
    case Method::del:
    case Method::other:
      return "manage";
  }
  return "manage";
}

bool scopes_allow(const std::vector<std::string>& scopes, Method m) noexcept {
  auto has = [&scopes](std::string_view s) {
    return std::find(scopes.begin(), scopes.end(), s) != scopes.end();
  };
  switch (m) {
    case Method::get:
    case Method::head:
      return has("read") || has("write") || has("manage");
    case Method::post:
      return has("write") || has("manage");
    case Method::put:
    case Method::del:
    case Method::other:
      return has("manage");
  }
  return false;
}

bool stream_pattern_matches(std::string_view pattern, std::string_view name) noexcept {
  if (pattern == "*") return true;
  if (pattern.size() >= 2 && pattern.ends_with("/*")) {
    std::string_view prefix = pattern.substr(0, pattern.size() - 2);
    if (prefix.empty()) return false;
    return name == prefix ||
           (name.size() > prefix.size() && name.starts_with(prefix) && name[prefix.size()] == '/');
  }
  return !pattern.empty() && pattern == name;
}

bool claims_grant_stream(const Claims& claims, std::string_view name) noexcept {
  if (!claims.streams) return true;
  return std::any_of(claims.streams->begin(), claims.streams->end(),
                     [name](const std::string& p) { return stream_pattern_matches(p, name); });
}

std::optional<std::string_view> bearer_token(std::string_view v) noexcept {
  while (!v.empty() && is_space(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_space(v.back())) v.remove_suffix(1);
  constexpr std::string_view kScheme = "bearer";
  if (v.size() <= kScheme.size() || !is_space(v[kScheme.size()])) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = v[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return std::nullopt;
  }
  v.remove_prefix(kScheme.size());
  while (!v.empty() && is_space(v.front())) v.remove_prefix(1);
  if (v.empty()) return std::nullopt;
  return v;
}

Decision evaluate(const Claims& c, const AccessRequest& req, const AuthConfig& config,
                  int64_t now_ms) {
  const double now = static_cast<double>(now_ms) / 1000.0;
  const double skew = static_cast<double>(config.clock_skew_ms) / 1000.0;
  if (now >= c.exp + skew) return invalid_token("token has expired");
  if (c.nbf && now + skew < *c.nbf) return invalid_token("token is not valid yet");
  if (config.issuer && (!c.iss || *c.iss != *config.issuer))
    return invalid_token("token issuer is not accepted");
  if (config.audience && std::find(c.aud.begin(), c.aud.end(), *config.audience) == c.aud.end())
    return invalid_token("token audience is not accepted");
  if (!scopes_allow(c.scopes, req.method))
    return deny(Decision::Outcome::forbidden,
                std::string("token lacks the scope for this method (needs ") +
                    required_scope(req.method) + " or higher)",
                "insufficient_scope", required_scope(req.method));
  if (c.streams) {
    for (const auto& name : req.streams) {
      if (!name || !claims_grant_stream(c, *name))
        return deny(Decision::Outcome::forbidden, "token does not grant access to this stream", "");
    }
  }
  return Decision{};
}

Authenticator::Authenticator(AuthConfig config, const Clock& clock)
    : config_(std::move(config)), clock_(clock) {}

Decision Authenticator::authorize(std::optional<std::string_view> token,
                                  const AccessRequest& req) const {
  return authorize(token, req, nullptr);
}

Decision Authenticator::authorize(std::optional<std::string_view> token, const AccessRequest& req,
                                  Claims* claims_out) const {
  if (!token) return deny(Decision::Outcome::unauthorized, "a bearer token is required", "");
  auto claims = verify_jwt(*token, config_.keys);
  if (!claims) return invalid_token(claims.error().message);
  Decision d = evaluate(*claims, req, config_, clock_.now_ms());
  if (d.allowed() && claims_out) *claims_out = std::move(*claims);
  return d;
}

}  // namespace ds::auth
