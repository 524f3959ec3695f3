#include "protocol/target.h"

#include <algorithm>

#include "protocol/headers.h"

namespace ds {
namespace {
int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::vector<std::string_view> Target::all(std::string_view key) const {
  std::vector<std::string_view> out;
  for (const auto& [k, v] : query) {
    if (k == key) out.emplace_back(v);
  }
  return out;
}

size_t Target::count(std::string_view key) const {
  size_t n = 0;
  for (const auto& [k, v] : query) n += k == key;
  return n;
}

std::optional<std::string_view> Target::first(std::string_view key) const {
  for (const auto& [k, v] : query) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

Result<OriginForm> origin_form(std::string_view target) {
  OriginForm out;
  size_t scheme_end = std::string_view::npos;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() && iequals(target.substr(0, scheme.size()), scheme)) {
      scheme_end = scheme.size();
      break;
    }
  }
  if (scheme_end == std::string_view::npos) {
    out.target = std::string(target);
    return out;
  }
  std::string_view rest = target.substr(scheme_end);
  const size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos)
    return Error(errc::bad_request, "the request target must not contain userinfo");
  // The host is everything before an optional `:port` (an IPv6 literal is
  // in brackets).
  std::string_view host = authority;
  if (const size_t colon = host.rfind(':');
      colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host.empty()) return Error(errc::bad_request, "the request target has an empty host");
  if (!rest.empty() && rest.front() == '#')
    return Error(errc::bad_request, "the request target must not contain a fragment");
  // Built in a fresh string, not as "/" + std::string(rest): g++ 12 warns
  // -Wrestrict there at -O3 (GCC bug 105329, a false positive), and -Werror
  // turns the warning into a failed build.
  std::string target_out(rest.empty() || rest.front() == '?' ? 1 : 0, '/');
  target_out.insert(target_out.end(), rest.begin(), rest.end());
  out.target = std::move(target_out);
  out.authority = std::string(authority);
  return out;
}

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex(s[i + 1]);
      int lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<Target> parse_target(std::string_view target) {
  Target t;
  auto q = target.find('?');
  auto path = percent_decode(target.substr(0, q), false);
  if (!path) return Error(errc::bad_request, "malformed percent-encoding in path");
  t.path = std::move(*path);
  if (q == std::string_view::npos) return t;
  std::string_view rest = target.substr(q + 1);
  // One allocation for the parameters, not one per doubling.
  t.query.reserve(static_cast<size_t>(std::count(rest.begin(), rest.end(), '&')) + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = percent_decode(
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
    if (!key || !value) return Error(errc::bad_request, "malformed percent-encoding in query");
    t.query.emplace_back(std::move(*key), std::move(*value));
  }
  return t;
}

namespace {

/// The checks of stream_name(); the name on success.
Result<std::string_view> checked_stream_name(std::string_view path) {
  if (!path.starts_with(kStreamPrefix)) return Error(errc::not_found, "no such route");
  std::string_view name = path.substr(kStreamPrefix.size());
  if (name.empty()) return Error(errc::bad_request, "missing stream name");
  if (name.size() > kMaxStreamNameBytes) {
    return Error(errc::uri_too_long, "stream name is longer than 512 bytes");
  }
  if (name.find('\0') != std::string_view::npos)
    return Error(errc::bad_request, "stream name contains NUL");
  size_t start = 0;
  for (;;) {
    size_t end = name.find('/', start);
    std::string_view seg =
        name.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (seg == "." || seg == "..")
      return Error(errc::bad_request, "stream name contains a dot segment");
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return name;
}

}  // namespace

Result<std::string> stream_name(std::string_view path) {
  auto name = checked_stream_name(path);
  if (!name) return name.error();
  return std::string(*name);
}

Result<std::string> take_stream_name(std::string&& path) {
  auto name = checked_stream_name(path);
  if (!name) return name.error();
  // The name is the path's tail: cut the prefix off in place (no copy).
  path.erase(0, kStreamPrefix.size());
  return std::move(path);
}

}  // namespace ds
