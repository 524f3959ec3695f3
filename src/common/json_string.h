#pragma once
// JSON string literals for the JSON this server writes by hand (error bodies,
// log lines, S2 requests). Pure functions, safe from any thread.

#include <string>
#include <string_view>

namespace ds {

/// Appends `s` as a JSON string literal, quotes included: `"`, `\` and
/// control characters are escaped, and every byte that is not part of a
/// well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
/// nothing above U+10FFFF) becomes `\ufffd`, one per maximal ill-formed
/// subpart (Unicode's recommended practice, chapter 3.9). The result is
/// valid UTF-8 JSON whatever bytes a client sent (offsets, Stream-Seq,
/// Content-Type echoed in error messages); valid UTF-8 passes unchanged.
void append_json_string(std::string& out, std::string_view s);

}  // namespace ds
