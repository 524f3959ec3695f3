#include "subs/glob.h"

#include <vector>

namespace ds::subs {
namespace {

std::vector<std::string_view> segments(std::string_view p) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t slash = p.find('/', i);
    if (slash == std::string_view::npos) slash = p.size();
    if (slash > i) out.push_back(p.substr(i, slash - i));
    i = slash + 1;
  }
  return out;
}

bool literal_equals(std::string_view pattern_segment, std::string_view segment) {
  // `%2A` (either case) in a pattern segment is a literal `*`.
  size_t i = 0, j = 0;
  while (i < pattern_segment.size()) {
    char want = pattern_segment[i];
    size_t step = 1;
    if (want == '%' && i + 2 < pattern_segment.size() && pattern_segment[i + 1] == '2' &&
        (pattern_segment[i + 2] == 'A' || pattern_segment[i + 2] == 'a')) {
      want = '*';
      step = 3;
    }
    if (j >= segment.size() || segment[j] != want) return false;
    i += step;
    ++j;
  }
  return j == segment.size();
}

/// Matches pattern[pi..] against path[si..]. `**` tries every split; the
/// recursion depth is bounded by the number of `**` segments.
bool match(const std::vector<std::string_view>& pattern, size_t pi,
           const std::vector<std::string_view>& path, size_t si) {
  while (pi < pattern.size()) {
    if (pattern[pi] == "**") {
      for (size_t k = si; k <= path.size(); ++k)
        if (match(pattern, pi + 1, path, k)) return true;
      return false;
    }
    if (si >= path.size()) return false;
    if (pattern[pi] != "*" && !literal_equals(pattern[pi], path[si])) return false;
    ++pi;
    ++si;
  }
  return si == path.size();
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view path) {
  return match(segments(pattern), 0, segments(path), 0);
}

std::string glob_literal_prefix(std::string_view pattern) {
  std::string prefix;
  auto parts = segments(pattern);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == "*" || parts[i] == "**" || parts[i].find('%') != std::string_view::npos)
      return prefix;
    prefix.append(parts[i]);
    if (i + 1 < parts.size()) prefix.push_back('/');
  }
  return prefix;
}

std::string normalize_path(std::string_view path) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  return std::string(path);
}

}  // namespace ds::subs
