#include "common/json_string.h"

#include <algorithm>

namespace ds {

namespace {

/// How many bytes at the start of `s` are a well-formed UTF-8 sequence or
/// the start of one (`*complete` says which); 0 if the first byte can start
/// none.
size_t utf8_prefix(std::string_view s, bool* complete) {
  *complete = false;
  if (s.empty()) return 0;
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) {
    *complete = true;
    return 1;
  }
  size_t len = 0;
  // The range the second byte must fall in (RFC 3629 section 4): it excludes
  // overlong forms (E0, F0), surrogates (ED) and code points over U+10FFFF (F4).
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    if (b0 == 0xe0) lo = 0xa0;
    if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    if (b0 == 0xf0) lo = 0x90;
    if (b0 == 0xf4) hi = 0x8f;
  } else {
    return 0;  // a continuation byte, C0, C1 or F5..FF
  }
  size_t n = 1;
  for (; n < len && n < s.size(); ++n) {
    const auto b = static_cast<unsigned char>(s[n]);
    if (b < (n == 1 ? lo : 0x80) || b > (n == 1 ? hi : 0xbf)) break;
  }
  *complete = n == len;
  return n;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      // A well-formed sequence is copied; an ill-formed one (its maximal
      // subpart, as Unicode recommends) becomes one U+FFFD.
      bool complete = false;
      const size_t len = utf8_prefix(s.substr(i), &complete);
      if (complete) {
        out.append(s.substr(i, len));
      } else {
        out += "\\ufffd";
      }
      i += std::max<size_t>(len, 1);
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += "\\u00";
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0xf]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

}  // namespace ds
