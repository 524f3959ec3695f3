#include "common/offset.h"

#include <algorithm>
#include <cstdio>

namespace ds {

std::string Offset::str() const {
  // Engines never mint parts above 16 digits; clamp rather than emit a
  // string that would parse as another offset.
  constexpr int kPartDigits = 16;
  const uint64_t h = std::min(hi, kMaxPart);
  const uint64_t l = std::min(lo, kMaxPart);
  char buf[2 * kPartDigits + 8];
  std::snprintf(buf, sizeof buf, "%016llu_%016llu", static_cast<unsigned long long>(h),
                static_cast<unsigned long long>(l));
  return buf;
}

}  // namespace ds
