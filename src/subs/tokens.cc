#include "subs/tokens.h"

#include <simdjson.h>

#include <optional>

#include "auth/jwt.h"
#include "common/json_string.h"

namespace ds::subs {

namespace {

constexpr std::string_view kAlg = "EdDSA";
constexpr std::string_view kTyp = "ds-wake";

const std::string& header_segment() {
  static const std::string segment = auth::base64url_encode(R"({"alg":"EdDSA","typ":"ds-wake"})");
  return segment;
}

simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// The returned object lives in this thread's parser until its next parse;
// callers use it before then, while `padded` is alive.
std::optional<simdjson::dom::object> parse_object(const simdjson::padded_string& padded) {
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (thread_parser().parse(padded).get(doc) || doc.get_object().get(obj)) return std::nullopt;
  return obj;
}

// Exactly {"alg":"EdDSA","typ":"ds-wake"} in any member order: we issue no
// other header, so any other member (crit, kid, jwk, ...) is refused.
bool header_ok(const std::string& json) {
  const simdjson::padded_string padded(json);
  auto obj = parse_object(padded);
  if (!obj) return false;
  bool alg = false, typ = false;
  for (auto field : *obj) {
    std::string_view v;
    if (field.value.get_string().get(v)) return false;
    if (field.key == "alg" && !alg && v == kAlg) {
      alg = true;
    } else if (field.key == "typ" && !typ && v == kTyp) {
      typ = true;
    } else {
      return false;
    }
  }
  return alg && typ;
}

// Exactly the four claims, each once, with their types; integers must be
// JSON integers (no fractions, exponents or signs where unsigned).
std::optional<WakeToken> parse_claims(const std::string& json) {
  const simdjson::padded_string padded(json);
  auto obj = parse_object(padded);
  if (!obj) return std::nullopt;
  WakeToken t;
  bool sub = false, gen = false, wid = false, exp = false;
  for (auto field : *obj) {
    const std::string_view key = field.key;
    std::string_view s;
    if (key == "sub" && !sub && !field.value.get_string().get(s)) {
      t.subscription = std::string(s);
      sub = true;
    } else if (key == "gen" && !gen && field.value.is_uint64() &&
               !field.value.get_uint64().get(t.generation)) {
      gen = true;
    } else if (key == "wid" && !wid && !field.value.get_string().get(s)) {
      t.wake_id = std::string(s);
      wid = true;
    } else if (key == "exp_ms" && !exp && field.value.is_int64() &&
               !field.value.get_int64().get(t.expires_unix_ms)) {
      exp = true;
    } else {
      return std::nullopt;
    }
  }
  if (!sub || !gen || !wid || !exp) return std::nullopt;
  return t;
}

}  // namespace

std::string issue_wake_token(const SigningKey& key, const WakeToken& claims) {
  std::string payload = R"({"sub":)";
  append_json_string(payload, claims.subscription);
  payload += R"(,"gen":)" + std::to_string(claims.generation) + R"(,"wid":)";
  append_json_string(payload, claims.wake_id);
  payload += R"(,"exp_ms":)" + std::to_string(claims.expires_unix_ms) + "}";

  std::string token = header_segment() + "." + auth::base64url_encode(payload);
  const std::string sig = key.sign(token);
  if (sig.empty()) return {};
  token += '.';
  token += auth::base64url_encode(sig);
  return token;
}

WakeTokenCheck check_wake_token(const SigningKey& key, std::string_view token,
                                std::string_view subscription, int64_t now_unix_ms) {
  constexpr TokenProblem invalid = TokenProblem::invalid;
  if (token.empty() || token.size() > kMaxWakeTokenBytes) return invalid;
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return invalid;
  const std::string_view h64 = token.substr(0, d1);
  const std::string_view p64 = token.substr(d1 + 1, d2 - d1 - 1);
  const std::string_view s64 = token.substr(d2 + 1);
  if (h64.empty() || p64.empty() || s64.empty()) return invalid;

  auto header = auth::base64url_decode(h64);
  if (!header || !header_ok(*header)) return invalid;
  // The signature covers the segments as sent, so it is checked before the
  // payload is parsed: nothing an outsider wrote reaches the claim parser.
  auto sig = auth::base64url_decode(s64);
  if (!sig || !key.verify(token.substr(0, d2), *sig)) return invalid;
  auto payload = auth::base64url_decode(p64);
  if (!payload) return invalid;
  auto claims = parse_claims(*payload);
  if (!claims || claims->subscription != subscription) return invalid;
  if (now_unix_ms >= claims->expires_unix_ms) return TokenProblem::expired;
  return std::move(*claims);
}

}  // namespace ds::subs
