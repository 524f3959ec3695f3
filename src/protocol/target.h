#pragma once
// Request-target parsing: the stream name under /v1/stream/ and the query.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/errc.h"

namespace ds {

inline constexpr std::string_view kStreamPrefix = "/v1/stream/";
inline constexpr size_t kMaxStreamNameBytes = 512;

struct Target {
  std::string path;                                        ///< percent-decoded path
  std::vector<std::pair<std::string, std::string>> query;  ///< decoded, in order

  /// Values of one query parameter, in order.
  std::vector<std::string_view> all(std::string_view key) const;
  /// How many times the parameter is given, and its first value (no
  /// allocation, unlike all()).
  size_t count(std::string_view key) const;
  std::optional<std::string_view> first(std::string_view key) const;
};

/// A request target reduced to origin-form (RFC 9112 3.2).
struct OriginForm {
  std::string target;                    ///< path and query, e.g. `/v1/stream/x?offset=-1`
  std::optional<std::string> authority;  ///< `host[:port]` if the target was in absolute-form
};

/// Absolute-form targets (`http://host:port/path?query`, scheme `http` or
/// `https` in any case, any authority) become their path and query, with `/`
/// for an empty path, and their authority, which stands in for Host (RFC 9112
/// 3.2.2). An http(s) URI with an empty host or with userinfo is rejected
/// (RFC 9110 4.2.1, 4.2.4). Every other target (origin-form, `*`, other
/// schemes) is returned as it is, for the routes to answer.
Result<OriginForm> origin_form(std::string_view target);

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);
Result<Target> parse_target(std::string_view target);

/// The stream name of a decoded path under /v1/stream/ (or of a
/// Stream-Forked-From value). Rejects empty names, NUL bytes, `.`/`..`
/// segments and names over 512 bytes.
Result<std::string> stream_name(std::string_view path);
/// The same, reusing `path`'s storage for the name.
Result<std::string> take_stream_name(std::string&& path);

}  // namespace ds
