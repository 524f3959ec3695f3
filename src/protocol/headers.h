#pragma once
// Parsers for the protocol's request header and query values. Pure functions:
// no I/O, no allocation beyond the returned values.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

/// Largest integer JavaScript can represent exactly (2^53 - 1); the protocol
/// caps Producer-Epoch and Producer-Seq at it.
inline constexpr uint64_t kMaxSafeInteger = (1ULL << 53) - 1;

/// A non-negative decimal integer with no sign, no leading zeros (except "0"
/// itself), no decimal point and no exponent: the Stream-TTL grammar.
std::optional<uint64_t> parse_strict_uint(std::string_view s);

/// parse_strict_uint, but leading zeros are tolerated and the value must not
/// exceed 2^53 - 1 (Producer-Epoch, Producer-Seq, Stream-Fork-Sub-Offset).
std::optional<uint64_t> parse_safe_uint(std::string_view s);

/// An RFC 3339 timestamp (`2025-01-01T00:00:00Z`, fractional seconds and
/// numeric offsets allowed), as milliseconds since the Unix epoch.
std::optional<int64_t> parse_rfc3339_ms(std::string_view s);

/// The longest Stream-TTL accepted: 10 years of 365 days, in seconds. Expiry
/// times are milliseconds in an int64 (last access + TTL), which a TTL this
/// size cannot overflow. docs/protocol-decisions.md.
inline constexpr uint64_t kMaxTtlSeconds = 10ULL * 365 * 24 * 3600;

/// The latest Stream-Expires-At accepted: 9999-12-31T23:59:59.999Z, in
/// milliseconds since the Unix epoch (a later instant can only be written
/// with a negative UTC offset).
inline constexpr int64_t kMaxExpiresAtMs = 253402300799999;

/// A Stream-TTL value: parse_strict_uint, at most kMaxTtlSeconds.
std::optional<uint64_t> parse_ttl_seconds(std::string_view s);

/// A Stream-Expires-At value: parse_rfc3339_ms, at most kMaxExpiresAtMs.
std::optional<int64_t> parse_expires_at_ms(std::string_view s);

/// `true`, compared case-insensitively: the only value that turns on
/// Stream-Closed. Every other value is treated as absent.
bool is_true_flag(std::string_view s);

/// The media type of a Content-Type value: parameters dropped, trimmed,
/// lower-cased. `Text/Plain; charset=utf-8` -> `text/plain`.
std::string media_type(std::string_view content_type);

/// JSON mode applies to `application/json` streams.
bool is_json_media_type(std::string_view media);

/// SSE carries text/* and application/json as text; everything else base64.
bool is_text_media_type(std::string_view media);

std::string_view trim(std::string_view s);

/// Case-insensitive ASCII comparison.
bool iequals(std::string_view a, std::string_view b);

}  // namespace ds
