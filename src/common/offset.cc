#include "common/offset.h"

#include <algorithm>

namespace ds {
namespace {

constexpr int kPartDigits = 16;

/// `v` as kPartDigits zero-padded decimal digits at `out`.
void put_part(char* out, uint64_t v) {
  for (int i = kPartDigits - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

}  // namespace

char* Offset::to_chars(char* out) const {
  // Engines never mint parts above 16 digits; clamp rather than emit a
  // string that would parse as another offset.
  put_part(out, std::min(hi, kMaxPart));
  out[kPartDigits] = '_';
  put_part(out + kPartDigits + 1, std::min(lo, kMaxPart));
  return out + kTextSize;
}

std::string Offset::str() const {
  char buf[kTextSize];
  to_chars(buf);
  return std::string(buf, kTextSize);
}

}  // namespace ds
