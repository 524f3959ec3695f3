#pragma once
// Start-up checks of the S2 flags, before any request is made: a basin name
// S2 would refuse, or an endpoint URL the client cannot use, is reported at
// start with what to do, instead of as 500s on every request. Pure functions,
// no I/O, no Asio.

#include <optional>
#include <string>
#include <string_view>

namespace ds::s2 {

/// S2's basin name rules (../shared/s2-api.md §1.2, s2:common/src/basin.rs):
/// 8 to 48 bytes of [a-z0-9-], starting and ending with a letter or digit.
inline constexpr size_t kMinBasinNameBytes = 8;
inline constexpr size_t kMaxBasinNameBytes = 48;

/// Why `name` is not a valid S2 basin name, as one sentence naming the rule
/// it breaks; nullopt when it is valid.
std::optional<std::string> basin_name_error(std::string_view name);

/// Why `url` is not a usable S2 endpoint (http:// or https://, a host, an
/// optional numeric port 1..65535, an optional path; no user info, query,
/// fragment or whitespace); nullopt when it is usable. A literal `{basin}`
/// in the host is allowed (it is replaced by the basin name).
std::optional<std::string> endpoint_error(std::string_view url);

}  // namespace ds::s2
