#include "subs/webhook_url.h"

#include <arpa/inet.h>

#include <array>
#include <optional>

namespace ds::subs {

namespace {

using Bytes4 = std::array<uint8_t, 4>;
using Bytes16 = std::array<uint8_t, 16>;

Error rejected(std::string why) { return Error(errc::bad_request, "webhook URL rejected: " + why); }

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

/// Canonical dotted-quad only: four decimal parts 0-255, no leading zeros.
std::optional<Bytes4> parse_dotted_quad(std::string_view s) {
  Bytes4 out{};
  for (int i = 0; i < 4; ++i) {
    size_t dot = s.find('.');
    std::string_view part = i < 3 ? s.substr(0, dot) : s;
    if (i < 3 && dot == std::string_view::npos) return std::nullopt;
    if (!all_digits(part) || part.size() > 3 || (part.size() > 1 && part[0] == '0'))
      return std::nullopt;
    unsigned v = 0;
    for (char c : part) v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > 255) return std::nullopt;
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(v);
    if (i < 3) s.remove_prefix(dot + 1);
  }
  return out;
}

/// WHATWG URL hosts whose last label is a number (decimal, or 0x-hex) are IPv4
/// addresses in some spelling; resolvers (inet_aton) agree. We accept only the
/// canonical dotted-quad, so anything else that looks numeric is rejected.
bool looks_numeric(std::string_view host) {
  std::string_view last = host.substr(host.rfind('.') + 1);  // npos + 1 == 0
  if (all_digits(last)) return true;
  if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
    for (char c : last.substr(2))
      if (!is_hex(c)) return false;
    return true;
  }
  return false;
}

/// A DNS name in ASCII: labels of letters, digits and '-', 1-63 characters,
/// not starting or ending with '-'; at most 253 characters; no trailing dot
/// (so that `localhost.` cannot slip past the localhost check).
bool valid_dns_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    std::string_view label = host.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!is_digit(c) && !(c >= 'a' && c <= 'z') && c != '-') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool is_localhost_name(std::string_view host) {
  return host == "localhost" || host.ends_with(".localhost");
}

/// Path and query: visible ASCII only, so nothing can split the request line.
bool valid_target(std::string_view target) {
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

bool in_v4(const Bytes4& a, uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3, int prefix) {
  uint32_t addr = (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | a[3];
  uint32_t net = (uint32_t{b0} << 24) | (uint32_t{b1} << 16) | (uint32_t{b2} << 8) | b3;
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (addr & mask) == (net & mask);
}

AddressClass classify_v4(const Bytes4& a) {
  if (in_v4(a, 255, 255, 255, 255, 32)) return AddressClass::broadcast;
  if (in_v4(a, 0, 0, 0, 0, 8)) return AddressClass::unspecified;
  if (in_v4(a, 127, 0, 0, 0, 8)) return AddressClass::loopback;
  if (in_v4(a, 10, 0, 0, 0, 8) || in_v4(a, 172, 16, 0, 0, 12) || in_v4(a, 192, 168, 0, 0, 16))
    return AddressClass::private_;
  if (in_v4(a, 169, 254, 0, 0, 16)) return AddressClass::link_local;
  if (in_v4(a, 100, 64, 0, 0, 10)) return AddressClass::cgnat;
  if (in_v4(a, 224, 0, 0, 0, 4)) return AddressClass::multicast;
  if (in_v4(a, 192, 0, 2, 0, 24) || in_v4(a, 198, 51, 100, 0, 24) || in_v4(a, 203, 0, 113, 0, 24))
    return AddressClass::documentation;
  if (in_v4(a, 198, 18, 0, 0, 15)) return AddressClass::benchmarking;
  if (in_v4(a, 192, 0, 0, 0, 24) || in_v4(a, 192, 88, 99, 0, 24) || in_v4(a, 240, 0, 0, 0, 4))
    return AddressClass::reserved;
  return AddressClass::public_;
}

bool starts_with_bytes(const Bytes16& a, std::initializer_list<uint8_t> prefix) {
  size_t i = 0;
  for (uint8_t b : prefix)
    if (a[i++] != b) return false;
  return true;
}

Bytes4 v4_at(const Bytes16& a, size_t at) { return {a[at], a[at + 1], a[at + 2], a[at + 3]}; }

AddressClass classify_v6(const Bytes16& a) {
  const Bytes16 zero{};
  bool first10_zero = starts_with_bytes(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  if (a == zero) return AddressClass::unspecified;
  Bytes16 one{};
  one[15] = 1;
  if (a == one) return AddressClass::loopback;
  // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d: the kernel (or a
  // stack that still honours ::/96) sends to the embedded IPv4 address.
  if (first10_zero && a[10] == 0xff && a[11] == 0xff) return classify_v4(v4_at(a, 12));
  if (first10_zero && a[10] == 0 && a[11] == 0) return classify_v4(v4_at(a, 12));
  // NAT64 well-known prefix 64:ff9b::/96: translated to the embedded address.
  if (starts_with_bytes(a, {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0}))
    return classify_v4(v4_at(a, 12));
  if (starts_with_bytes(a, {0, 0x64, 0xff, 0x9b, 0, 1})) return AddressClass::reserved;  // /48
  if ((a[0] & 0xfe) == 0xfc) return AddressClass::private_;                              // fc00::/7
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return AddressClass::link_local;  // fe80::/10
  if (a[0] == 0xff) return AddressClass::multicast;                            // ff00::/8
  if (starts_with_bytes(a, {0x20, 0x01, 0x0d, 0xb8})) return AddressClass::documentation;
  if (a[0] == 0x3f && (a[1] & 0xf0) == 0xf0) return AddressClass::documentation;  // 3fff::/20
  if (starts_with_bytes(a, {0x20, 0x02})) return classify_v4(v4_at(a, 2));        // 6to4
  if (starts_with_bytes(a, {0x20, 0x01, 0, 0})) return AddressClass::tunnel;      // Teredo
  if (starts_with_bytes(a, {0x20, 0x01, 0, 0x02, 0, 0})) return AddressClass::benchmarking;
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 0x02) return AddressClass::reserved;  // 2001::/23
  if ((a[0] & 0xe0) != 0x20) return AddressClass::reserved;  // not global unicast 2000::/3
  return AddressClass::public_;
}

}  // namespace

const char* address_class_name(AddressClass c) noexcept {
  switch (c) {
    case AddressClass::public_:
      return "public";
    case AddressClass::loopback:
      return "loopback";
    case AddressClass::private_:
      return "private";
    case AddressClass::link_local:
      return "link-local";
    case AddressClass::cgnat:
      return "shared (CGNAT)";
    case AddressClass::multicast:
      return "multicast";
    case AddressClass::unspecified:
      return "unspecified";
    case AddressClass::broadcast:
      return "broadcast";
    case AddressClass::documentation:
      return "documentation";
    case AddressClass::benchmarking:
      return "benchmarking";
    case AddressClass::tunnel:
      return "tunnel (Teredo)";
    case AddressClass::reserved:
      return "reserved";
  }
  return "unknown";
}

AddressClass classify(std::span<const uint8_t> bytes) noexcept {
  if (bytes.size() == 4) return classify_v4({bytes[0], bytes[1], bytes[2], bytes[3]});
  if (bytes.size() == 16) {
    Bytes16 a;
    for (size_t i = 0; i < 16; ++i) a[i] = bytes[i];
    return classify_v6(a);
  }
  return AddressClass::reserved;
}

bool address_allowed(std::span<const uint8_t> bytes, bool allow_localhost) noexcept {
  AddressClass c = classify(bytes);
  return c == AddressClass::public_ || (allow_localhost && c == AddressClass::loopback);
}

Result<WebhookUrl> parse_webhook_url(std::string_view url, bool allow_localhost) {
  WebhookUrl out;
  out.original = std::string(url);
  size_t colon = url.find(':');
  if (colon == std::string_view::npos) return rejected("no scheme");
  std::string scheme;
  for (char c : url.substr(0, colon)) scheme += lower(c);
  if (scheme == "https") {
    out.https = true;
  } else if (scheme == "http") {
    out.https = false;
  } else {
    return rejected("scheme '" + scheme + "' is not http or https");
  }
  std::string_view rest = url.substr(colon + 1);
  if (!rest.starts_with("//")) return rejected("no '//' after the scheme");
  rest.remove_prefix(2);
  if (rest.find('#') != std::string_view::npos) return rejected("fragments are not allowed");

  size_t authority_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view target =
      authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos)
    return rejected("user info (user:password@) is not allowed");
  if (authority.find('%') != std::string_view::npos)
    return rejected("percent-encoding and zone ids are not allowed in the host");

  // Host and port.
  std::string_view host_part, port_part;
  bool has_port = false;
  bool ipv6_literal = false;
  if (authority.starts_with("[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return rejected("unterminated IPv6 literal");
    host_part = authority.substr(1, close - 1);
    ipv6_literal = true;
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return rejected("unexpected characters after the IPv6 literal");
      has_port = true;
      port_part = after.substr(1);
    }
  } else {
    size_t port_colon = authority.find(':');
    host_part = authority.substr(0, port_colon);
    if (port_colon != std::string_view::npos) {
      has_port = true;
      port_part = authority.substr(port_colon + 1);
    }
  }
  if (host_part.empty()) return rejected("no host");
  out.port = out.https ? 443 : 80;
  if (has_port) {
    if (!all_digits(port_part) || port_part.size() > 5) return rejected("malformed port");
    unsigned port = 0;
    for (char c : port_part) port = port * 10 + static_cast<unsigned>(c - '0');
    if (port == 0 || port > 65535) return rejected("port out of range");
    out.port = static_cast<uint16_t>(port);
  }
  for (char c : host_part) out.host += lower(c);

  // What the host is: an IPv6 literal, an IPv4 literal, or a DNS name.
  std::optional<AddressClass> literal_class;
  bool loopback_127_0_0 = false;  // the http development exception: 127.0.0.x
  if (ipv6_literal) {
    Bytes16 v6;
    if (::inet_pton(AF_INET6, out.host.c_str(), v6.data()) != 1)
      return rejected("malformed IPv6 literal");
    literal_class = classify(v6);
    if (!address_allowed(v6, allow_localhost))
      return rejected("address " + out.host + " is " + address_class_name(*literal_class));
  } else if (looks_numeric(out.host)) {
    auto v4 = parse_dotted_quad(out.host);
    if (!v4) return rejected("host '" + out.host + "' is not a canonical dotted-quad IPv4 address");
    literal_class = classify(*v4);
    loopback_127_0_0 = (*v4)[0] == 127 && (*v4)[1] == 0 && (*v4)[2] == 0;
    if (!address_allowed(*v4, allow_localhost))
      return rejected("address " + out.host + " is " + address_class_name(*literal_class));
  } else {
    if (!valid_dns_name(out.host)) return rejected("malformed host name '" + out.host + "'");
    if (is_localhost_name(out.host) && !allow_localhost)
      return rejected("localhost is only allowed in development (allow_localhost)");
  }

  if (!out.https) {
    bool dev_host = out.host == "localhost" || loopback_127_0_0;
    if (!dev_host || !allow_localhost)
      return rejected(allow_localhost ? "http:// is only allowed for localhost and 127.0.0.x"
                                      : "https:// is required");
  }

  if (!valid_target(target)) return rejected("path or query contains spaces or non-ASCII bytes");
  out.target = target.empty() ? "/" : std::string(target);
  if (out.target.front() == '?') out.target.insert(0, "/");
  return out;
}

}  // namespace ds::subs
