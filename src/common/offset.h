#pragma once
// A stream offset as a value: two numbers, compared as (hi, lo). What they
// mean is the storage engine's business (the embedded engine: hi = 0, lo =
// byte position; S2: hi = incarnation, lo = sequence number). Here so that
// errors (common/errc.h) can carry one; the wire grammar (parsing, `-1`,
// `now`) is the protocol's, in protocol/offset.h.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ds {

struct Offset {
  static constexpr uint64_t kMaxPart = 9'999'999'999'999'999ULL;  // 16 digits

  uint64_t hi = 0;
  uint64_t lo = 0;

  friend constexpr auto operator<=>(const Offset&, const Offset&) = default;
  /// Length of the wire form (every offset prints at this width).
  static constexpr size_t kTextSize = 33;

  /// The wire form rendered into a caller's buffer, without allocating:
  /// hot paths (response headers, ETags, SSE control events) use this.
  struct Text {
    char data[kTextSize];
    std::string_view view() const { return {data, kTextSize}; }
    operator std::string_view() const { return view(); }
  };

  /// Writes the wire form (kTextSize bytes) at `out`; returns the end.
  char* to_chars(char* out) const;
  /// The wire form in a small value (no heap).
  Text text() const {
    Text t;
    to_chars(t.data);
    return t;
  }
  /// The wire form: two 16-digit zero-padded decimal numbers joined by `_`.
  std::string str() const;
};

}  // namespace ds
