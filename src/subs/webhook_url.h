#pragma once
// Webhook URL validation against SSRF (PROTOCOL.md 6.2 and 12.8): parses a
// subscription's webhook URL and classifies IP addresses, so that a webhook
// can only reach public hosts, plus localhost for development.
//
// Two checks make the defence; this file is the first, webhook_client.h the
// second. parse_webhook_url runs when a subscription is created: it rejects
// schemes, spellings and IP literals that are not allowed. A host name is only
// checked syntactically here; the client checks every address the name
// resolves to, at each delivery, and connects only to addresses it checked.
//
// Pure functions, no I/O, no Asio: safe from any thread.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/errc.h"

namespace ds::subs {

/// A webhook URL that passed parse_webhook_url.
struct WebhookUrl {
  bool https = true;
  /// Lowercased; an IPv6 literal without brackets; an IPv4 literal in
  /// canonical dotted-decimal form.
  std::string host;
  uint16_t port = 443;
  /// Path and query as given, "/" when the URL has no path. Never empty.
  std::string target;
  /// The URL as the client gave it.
  std::string original;
};

/// Parses and checks a webhook URL. Errors have code errc::bad_request and a
/// message naming the rule (the caller reports them as WEBHOOK_URL_REJECTED).
///
/// Accepted: `https://host[:port][/path][?query]` where host is a DNS name
/// (ASCII letters, digits, '-', '.'; IDNs as A-labels) or an IP literal
/// (`a.b.c.d`, `[v6]`) that address_allowed() accepts.
/// Rejected: other schemes; user info; fragments; empty or malformed hosts
/// and ports; IPv6 zone ids; hosts that look numeric but are not canonical
/// dotted-quad (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`); `localhost`
/// and `*.localhost` unless allow_localhost. `http://` is accepted only with
/// allow_localhost and only for `localhost` or `127.0.0.x` (x in 0-255).
Result<WebhookUrl> parse_webhook_url(std::string_view url, bool allow_localhost);

/// What an IP address is for, by the IANA special-purpose registries.
enum class AddressClass {
  public_,        ///< globally routable unicast
  loopback,       ///< 127.0.0.0/8, ::1
  private_,       ///< RFC 1918 (10/8, 172.16/12, 192.168/16), unique local fc00::/7
  link_local,     ///< 169.254/16 (cloud metadata 169.254.169.254), fe80::/10
  cgnat,          ///< shared address space 100.64/10
  multicast,      ///< 224/4, ff00::/8
  unspecified,    ///< 0/8 ("this network"), ::
  broadcast,      ///< 255.255.255.255
  documentation,  ///< 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  benchmarking,   ///< 198.18/15, 2001:2::/48
  tunnel,         ///< Teredo 2001::/32: the real destination is hidden in the address
  reserved,       ///< anything else special: 192.0.0/24, 192.88.99/24, 240/4, IPv6
                  ///< outside 2000::/3, 2001::/23, 64:ff9b:1::/48, 100::/64, ...
};

const char* address_class_name(AddressClass c) noexcept;

/// Classifies an IPv4 (4 bytes) or IPv6 (16 bytes) address in network byte
/// order. An IPv6 address that embeds an IPv4 one (IPv4-mapped ::ffff:0:0/96,
/// IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) is classified
/// by the embedded address. Any other size is `reserved`.
AddressClass classify(std::span<const uint8_t> bytes) noexcept;

/// True if a webhook may connect to this address: a public_ address, or a
/// loopback one when allow_localhost.
bool address_allowed(std::span<const uint8_t> bytes, bool allow_localhost) noexcept;

}  // namespace ds::subs
