#include "protocol/headers.h"

#include <algorithm>
#include <cctype>
#include <chrono>

namespace ds {
namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<uint64_t> digits_value(std::string_view s, uint64_t max) {
  if (!all_digits(s)) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// Reads exactly n digits at s[pos..]; advances pos.
std::optional<int> fixed_digits(std::string_view s, size_t& pos, size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  auto v = digits_value(s.substr(pos, n), 1'000'000'000);
  if (!v) return std::nullopt;
  pos += n;
  return static_cast<int>(*v);
}

bool expect(std::string_view s, size_t& pos, char c) {
  if (pos < s.size() && s[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

}  // namespace

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<uint64_t> parse_strict_uint(std::string_view s) {
  if (s.size() > 1 && s[0] == '0') return std::nullopt;
  return digits_value(s, UINT64_MAX);
}

std::optional<uint64_t> parse_safe_uint(std::string_view s) {
  return digits_value(s, kMaxSafeInteger);
}

std::optional<int64_t> parse_rfc3339_ms(std::string_view s) {
  size_t p = 0;
  auto year = fixed_digits(s, p, 4);
  if (!year || !expect(s, p, '-')) return std::nullopt;
  auto month = fixed_digits(s, p, 2);
  if (!month || !expect(s, p, '-')) return std::nullopt;
  auto day = fixed_digits(s, p, 2);
  if (!day || p >= s.size() || (s[p] != 'T' && s[p] != 't' && s[p] != ' ')) return std::nullopt;
  ++p;
  auto hour = fixed_digits(s, p, 2);
  if (!hour || !expect(s, p, ':')) return std::nullopt;
  auto minute = fixed_digits(s, p, 2);
  if (!minute || !expect(s, p, ':')) return std::nullopt;
  auto second = fixed_digits(s, p, 2);
  if (!second) return std::nullopt;
  int64_t millis = 0;
  if (p < s.size() && s[p] == '.') {
    ++p;
    size_t start = p;
    int64_t scale = 100;
    while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
      millis += (s[p] - '0') * scale;
      scale /= 10;
      ++p;
    }
    if (p == start) return std::nullopt;
  }
  int64_t tz_minutes = 0;
  if (p < s.size() && (s[p] == 'Z' || s[p] == 'z')) {
    ++p;
  } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
    int sign = s[p] == '-' ? -1 : 1;
    ++p;
    auto tzh = fixed_digits(s, p, 2);
    if (!tzh || !expect(s, p, ':')) return std::nullopt;
    auto tzm = fixed_digits(s, p, 2);
    if (!tzm || *tzh > 23 || *tzm > 59) return std::nullopt;
    tz_minutes = static_cast<int64_t>(sign) * (int64_t{*tzh} * 60 + *tzm);
  } else {
    return std::nullopt;
  }
  if (p != s.size()) return std::nullopt;

  using namespace std::chrono;
  year_month_day ymd{std::chrono::year{*year}, std::chrono::month{static_cast<unsigned>(*month)},
                     std::chrono::day{static_cast<unsigned>(*day)}};
  if (!ymd.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
  int64_t days = sys_days{ymd}.time_since_epoch().count();
  int64_t secs =
      days * 86400 + int64_t{*hour} * 3600 + int64_t{*minute} * 60 + *second - tz_minutes * 60;
  return secs * 1000 + millis;
}

std::optional<uint64_t> parse_ttl_seconds(std::string_view s) {
  auto ttl = parse_strict_uint(s);
  if (!ttl || *ttl > kMaxTtlSeconds) return std::nullopt;
  return ttl;
}

std::optional<int64_t> parse_expires_at_ms(std::string_view s) {
  auto at = parse_rfc3339_ms(s);
  if (!at || *at > kMaxExpiresAtMs) return std::nullopt;
  return at;
}

bool is_true_flag(std::string_view s) { return iequals(trim(s), "true"); }

std::string media_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  std::string_view base = trim(content_type.substr(0, semi));
  std::string out(base);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_json_media_type(std::string_view media) { return media == "application/json"; }

bool is_text_media_type(std::string_view media) {
  return media.starts_with("text/") || is_json_media_type(media);
}

}  // namespace ds
