#pragma once
// JSON string literals for the JSON this server writes by hand (error bodies,
// log lines, S2 requests).

#include <string>
#include <string_view>

namespace ds {

/// Appends `s` as a JSON string literal, quotes included: `"`, `\` and
/// control characters are escaped; other bytes pass through unchanged.
void append_json_string(std::string& out, std::string_view s);

}  // namespace ds
