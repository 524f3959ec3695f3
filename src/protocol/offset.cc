#include "protocol/offset.h"

namespace ds {
namespace {
constexpr size_t kPartDigits = 16;

std::optional<uint64_t> parse_part(std::string_view s) {
  if (s.size() != kPartDigits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}
}  // namespace

std::optional<Offset> parse_offset(std::string_view s) {
  if (s.size() != 2 * kPartDigits + 1 || s[kPartDigits] != '_') return std::nullopt;
  auto hi = parse_part(s.substr(0, kPartDigits));
  auto lo = parse_part(s.substr(kPartDigits + 1));
  if (!hi || !lo) return std::nullopt;
  return Offset{*hi, *lo};
}

std::optional<OffsetSpec> parse_offset_spec(std::string_view s) {
  if (s == "-1") return OffsetSpec::start();
  if (s == "now") return OffsetSpec::now();
  if (auto o = parse_offset(s)) return OffsetSpec::position(*o);
  return std::nullopt;
}

}  // namespace ds
