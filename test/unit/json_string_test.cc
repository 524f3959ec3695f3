#include "common/json_string.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace ds {
namespace {

std::string lit(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

/// A reference check, written from the code point ranges rather than the
/// byte table: is `s` well-formed UTF-8?
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len = b0 < 0x80           ? 1
                 : (b0 >> 5) == 0x6  ? 2
                 : (b0 >> 4) == 0xe  ? 3
                 : (b0 >> 3) == 0x1e ? 4
                                     : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1f) : len == 3 ? (b0 & 0x0f) : (b0 & 0x07);
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = cp << 6 | (b & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

TEST(JsonString, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(lit("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(lit("\n\r\t"), R"("\n\r\t")");
  EXPECT_EQ(lit(std::string_view("\0\x1f\x7f", 3)), R"("\u0000\u001f\u007f")");
}

TEST(JsonString, WellFormedUtf8PassesUnchanged) {
  for (std::string_view s :
       {"plain", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "\xee\x80\x80",
        "\xf4\x8f\xbf\xbf", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"}) {
    EXPECT_EQ(lit(s), "\"" + std::string(s) + "\"") << s;
  }
}

TEST(JsonString, IllFormedBytesBecomeReplacementCharacters) {
  // One U+FFFD per maximal ill-formed subpart (Unicode 3.9, table 3-8).
  EXPECT_EQ(lit("\xff\xfe"), R"("\ufffd\ufffd")");
  EXPECT_EQ(lit("\x80"), R"("\ufffd")");
  EXPECT_EQ(lit("a\xc3"), R"("a\ufffd")");                              // truncated at the end
  EXPECT_EQ(lit("\xe2\x82X"), R"("\ufffdX")");                          // truncated before ASCII
  EXPECT_EQ(lit("\xf0\x9f\x98!"), R"("\ufffd!")");                      // a 4-byte form cut short
  EXPECT_EQ(lit("\xc0\xaf"), R"("\ufffd\ufffd")");                      // overlong
  EXPECT_EQ(lit("\xe0\x80\xaf"), R"("\ufffd\ufffd\ufffd")");            // overlong
  EXPECT_EQ(lit("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");            // a surrogate
  EXPECT_EQ(lit("\xf4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // over U+10FFFF
  EXPECT_EQ(lit("\xf5\x80"), R"("\ufffd\ufffd")");
  EXPECT_EQ(lit("\"\xff\""), R"("\"\ufffd\"")");
  EXPECT_EQ(lit("\xc3\xa9\xff\xc3\xa9"), "\"\xc3\xa9\\ufffd\xc3\xa9\"");
}

TEST(JsonString, EveryOutputIsValidUtf8) {
  // Every 1- and 2-byte input, and 4-byte inputs over the bytes where the
  // UTF-8 rules change.
  const unsigned char edges[] = {0x00, 0x22, 0x41, 0x5c, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee,
                                 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xfe, 0xff};
  for (int a = 0; a < 256; ++a) {
    for (int b = -1; b < 256; ++b) {
      std::string s(1, static_cast<char>(a));
      if (b >= 0) s.push_back(static_cast<char>(b));
      const std::string out = lit(s);
      ASSERT_TRUE(valid_utf8(out)) << std::hex << a << " " << b;
      EXPECT_EQ(valid_utf8(s), out.find("\\ufffd") == std::string::npos) << std::hex << a << b;
    }
  }
  for (auto a : edges)
    for (auto b : edges)
      for (auto c : edges)
        for (auto d : edges) {
          const std::string s{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                              static_cast<char>(d)};
          const std::string out = lit(s);
          ASSERT_TRUE(valid_utf8(out)) << std::hex << +a << " " << +b << " " << +c << " " << +d;
          EXPECT_EQ(valid_utf8(s), out.find("\\ufffd") == std::string::npos);
        }
}

}  // namespace
}  // namespace ds
