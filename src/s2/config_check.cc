#include "s2/config_check.h"

#include <cstdint>

namespace ds::s2 {

namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

std::string quoted(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    // Keep the message on one line and printable.
    auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  out.push_back('\'');
  return out;
}

}  // namespace

std::optional<std::string> basin_name_error(std::string_view name) {
  const std::string rules =
      "S2 basin names are 8 to 48 characters of lowercase letters, digits and hyphens, "
      "starting and ending with a letter or digit";
  if (name.empty()) return "the basin name is empty; " + rules;
  if (name.size() < kMinBasinNameBytes || name.size() > kMaxBasinNameBytes) {
    return "basin name " + quoted(name) + " is " + std::to_string(name.size()) + " characters " +
           (name.size() < kMinBasinNameBytes ? "(too short)" : "(too long)") + "; " + rules;
  }
  for (char c : name) {
    if (!is_lower_alnum(c) && c != '-') {
      std::string what = c >= 'A' && c <= 'Z' ? "an uppercase letter" : "the character '";
      if (!(c >= 'A' && c <= 'Z')) {
        auto u = static_cast<unsigned char>(c);
        what += u < 0x20 || u >= 0x7f ? std::string("?") : std::string(1, c);
        what += "'";
      }
      return "basin name " + quoted(name) + " contains " + what + "; " + rules;
    }
  }
  if (name.front() == '-' || name.back() == '-')
    return "basin name " + quoted(name) + " begins or ends with a hyphen; " + rules;
  return std::nullopt;
}

std::optional<std::string> endpoint_error(std::string_view url) {
  const std::string example =
      " (e.g. https://{basin}.b.s2.dev, or http://127.0.0.1:8080 for s2-lite)";
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f)
      return "S2 endpoint " + quoted(url) + " contains whitespace or a control character";
  }
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    return "S2 endpoint " + quoted(url) + " must start with http:// or https://" + example;
  }
  if (rest.find_first_of("?#") != std::string_view::npos)
    return "S2 endpoint " + quoted(url) + " must not have a query or fragment" + example;
  std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.find('@') != std::string_view::npos)
    return "S2 endpoint " + quoted(url) +
           " must not contain user info; pass the token with --s2-token or S2_ACCESS_TOKEN";
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1)
      return "S2 endpoint " + quoted(url) + " has a malformed IPv6 host" + example;
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return "S2 endpoint " + quoted(url) + " has a malformed port" + example;
      port = after.substr(1);
      if (port.empty()) return "S2 endpoint " + quoted(url) + " has an empty port" + example;
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return "S2 endpoint " + quoted(url) + " has an empty port" + example;
  }
  if (host.empty()) return "S2 endpoint " + quoted(url) + " has no host" + example;
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
      return "S2 endpoint " + quoted(url) + " has a malformed port" + example;
    uint32_t n = 0;
    for (char c : port) n = n * 10 + static_cast<uint32_t>(c - '0');
    if (n == 0 || n > 65535)
      return "S2 endpoint " + quoted(url) + " has a port outside 1..65535" + example;
  }
  return std::nullopt;
}

}  // namespace ds::s2
