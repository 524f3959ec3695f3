// Log lines (text and JSON) and request ids.

#include "common/log.h"

#include <gtest/gtest.h>

#include <limits>
#include <set>
#include <string>

namespace ds::log {
namespace {

constexpr int64_t kT = 1700000000123;  // 2023-11-14T22:13:20.123Z

TEST(LogLine, Text) {
  auto line = format_line(Format::text, Level::info, "access",
                          {{"id", "abc"},
                           {"path", "/v1/stream/a b"},
                           {"status", 200},
                           {"bytes_out", uint64_t{12}},
                           {"duration_ms", 1.5},
                           {"empty", ""}},
                          kT);
  EXPECT_EQ(line,
            "2023-11-14T22:13:20.123Z info access id=abc path=\"/v1/stream/a b\" status=200 "
            "bytes_out=12 duration_ms=1.500 empty=\"\"");
}

TEST(LogLine, Json) {
  auto line = format_line(Format::json, Level::warn, "odd \"msg\"",
                          {{"path", "/x\n\x01"}, {"status", 404}, {"ok", false}}, kT);
  EXPECT_EQ(line,
            "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"warn\",\"msg\":\"odd \\\"msg\\\"\","
            "\"path\":\"/x\\n\\u0001\",\"status\":404,\"ok\":false}");
}

TEST(LogConfig, ParseAndLevels) {
  EXPECT_EQ(parse_level("debug"), Level::debug);
  EXPECT_EQ(parse_level("warn"), Level::warn);
  EXPECT_EQ(parse_level("error"), Level::error);
  EXPECT_FALSE(parse_level("loud"));
  EXPECT_EQ(parse_format("json"), Format::json);
  EXPECT_EQ(parse_format("text"), Format::text);
  EXPECT_FALSE(parse_format("xml"));
  configure(Format::text, Level::warn);
  EXPECT_FALSE(enabled(Level::info));
  EXPECT_TRUE(enabled(Level::warn));
  EXPECT_TRUE(enabled(Level::error));
  configure(Format::text, Level::info);
  EXPECT_TRUE(enabled(Level::info));
  EXPECT_FALSE(enabled(Level::debug));
}

TEST(RequestId, Sanity) {
  EXPECT_TRUE(sane_request_id("abc-123_X.y"));
  EXPECT_TRUE(sane_request_id(std::string(64, 'a')));
  EXPECT_FALSE(sane_request_id(std::string(65, 'a')));
  EXPECT_FALSE(sane_request_id(""));
  EXPECT_FALSE(sane_request_id("a b"));
  EXPECT_FALSE(sane_request_id("a\"b"));
  EXPECT_FALSE(sane_request_id("a\nb"));
  EXPECT_FALSE(sane_request_id("é"));
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_request_id();
    EXPECT_EQ(id.size(), 16u);
    EXPECT_TRUE(sane_request_id(id));
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(LogFieldTest, NumbersAreRenderedInPlaceAtTheirExtremes) {
  auto line = format_line(Format::text, Level::info, "m",
                          {{"a", std::numeric_limits<int64_t>::min()},
                           {"b", std::numeric_limits<uint64_t>::max()},
                           {"c", -7},
                           {"d", 7u},
                           {"e", -1.25},
                           {"f", false}},
                          kT);
  EXPECT_EQ(line,
            "2023-11-14T22:13:20.123Z info m a=-9223372036854775808 b=18446744073709551615 c=-7 "
            "d=7 e=-1.250 f=false");
}

TEST(RequestIdTest, IntoAStringReplacesItsContent) {
  std::string id = "something longer than sixteen characters";
  new_request_id(id);
  EXPECT_EQ(id.size(), 16u);
  EXPECT_TRUE(sane_request_id(id));
}

}  // namespace
}  // namespace ds::log
