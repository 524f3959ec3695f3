#pragma once
// Response compression: when a catch-up response is gzipped, and the gzip
// itself (zlib). No I/O.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

/// Whether an Accept-Encoding value accepts gzip: `gzip` (or `x-gzip`) with
/// q > 0, or `*` with q > 0 when gzip is not listed. Case-insensitive.
bool accepts_gzip(std::string_view accept_encoding);

/// Whether a response body is worth offering gzip for: compression is on
/// (`min_bytes` > 0) and the body has at least `min_bytes` bytes. Only
/// catch-up (non-live) reads ask; SSE and long-poll never compress.
inline bool gzip_eligible(size_t body_bytes, size_t min_bytes) {
  return min_bytes > 0 && body_bytes >= min_bytes;
}

/// The ETag of the gzip representation: `"abc"` -> `"abc-gz"` (W/ kept).
std::string gzip_etag(std::string_view etag);

/// gzip (RFC 1952) of `data`; nullopt if zlib fails.
std::optional<std::string> gzip_compress(std::string_view data, int level = 6);

}  // namespace ds
