#pragma once
// A stream offset as a value: two numbers, compared as (hi, lo). What they
// mean is the storage engine's business (the embedded engine: hi = 0, lo =
// byte position; S2: hi = incarnation, lo = sequence number). Here so that
// errors (common/errc.h) can carry one; the wire grammar (parsing, `-1`,
// `now`) is the protocol's, in protocol/offset.h.

#include <compare>
#include <cstdint>
#include <string>

namespace ds {

struct Offset {
  static constexpr uint64_t kMaxPart = 9'999'999'999'999'999ULL;  // 16 digits

  uint64_t hi = 0;
  uint64_t lo = 0;

  friend constexpr auto operator<=>(const Offset&, const Offset&) = default;
  /// The wire form: two 16-digit zero-padded decimal numbers joined by `_`.
  std::string str() const;
};

}  // namespace ds
