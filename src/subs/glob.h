#pragma once
// Subscription patterns over stream-root-relative paths (PROTOCOL.md 6.2):
// `*` matches exactly one path segment, `**` zero or more, any other segment
// itself (`%2A` in a pattern segment stands for a literal `*`). Empty
// segments and leading or trailing slashes are ignored on both sides.
// Pure functions, safe from any thread.

#include <string>
#include <string_view>

namespace ds::subs {

bool glob_match(std::string_view pattern, std::string_view path);

/// The literal part of `pattern` before its first wildcard segment, with a
/// trailing `/` when something follows: every matching path starts with it
/// (what to list when a subscription backfills its pattern).
std::string glob_literal_prefix(std::string_view pattern);

/// A stream path as subscriptions store it: no leading or trailing slashes.
std::string normalize_path(std::string_view path);

}  // namespace ds::subs
