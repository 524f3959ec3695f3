#include "protocol/json.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ds {
namespace {

struct Framed {
  std::string joined;
  uint32_t messages;
};

Framed frame_ok(std::string_view body) {
  auto r = frame_json(body);
  EXPECT_TRUE(r.ok()) << body << ": " << (r.ok() ? "" : r.error().message);
  if (!r.ok()) return {"<error>", 0};
  return {r->joined, r->messages};
}

TEST(FrameJsonTest, NonArrayIsOneMessageWithItsExactBytes) {
  auto f = frame_ok(R"({"a": 1,  "b":[1, 2]})");
  EXPECT_EQ(f.joined, R"({"a": 1,  "b":[1, 2]})");
  EXPECT_EQ(f.messages, 1u);
}

TEST(FrameJsonTest, SurroundingWhitespaceIsDropped) {
  auto f = frame_ok(" \t\r\n{\"a\":1}\n ");
  EXPECT_EQ(f.joined, R"({"a":1})");
  EXPECT_EQ(f.messages, 1u);
}

TEST(FrameJsonTest, ScalarsAreMessages) {
  for (const char* s : {"null", "true", "false", "42", "-1.5e3", R"("string value")"}) {
    auto f = frame_ok(s);
    EXPECT_EQ(f.joined, s);
    EXPECT_EQ(f.messages, 1u);
  }
}

TEST(FrameJsonTest, TopLevelArrayIsFlattenedOneLevel) {
  auto f = frame_ok("[1, 2 ,3]");
  EXPECT_EQ(f.joined, "1,2,3");
  EXPECT_EQ(f.messages, 3u);

  f = frame_ok(R"([{"id":1},{"id":2},{"id":3}])");
  EXPECT_EQ(f.joined, R"({"id":1},{"id":2},{"id":3})");
  EXPECT_EQ(f.messages, 3u);
}

TEST(FrameJsonTest, NestedArraysStayWhole) {
  auto f = frame_ok("[[1,2],[3,4]]");
  EXPECT_EQ(f.joined, "[1,2],[3,4]");
  EXPECT_EQ(f.messages, 2u);

  f = frame_ok("[[[1,2,3]]]");
  EXPECT_EQ(f.joined, "[[1,2,3]]");
  EXPECT_EQ(f.messages, 1u);
}

TEST(FrameJsonTest, MixedValueTypesKeepNull) {
  auto f = frame_ok(R"(["string value",42,true,null,{"object":"value"},[1,2,3]])");
  EXPECT_EQ(f.joined, R"("string value",42,true,null,{"object":"value"},[1,2,3])");
  EXPECT_EQ(f.messages, 6u);
}

TEST(FrameJsonTest, CommasAndBracketsInsideStringsDoNotSplit) {
  auto f = frame_ok(R"(["a,b", "c]\"d,", {"k":"[,]}"}, "e\\", "f"])");
  EXPECT_EQ(f.joined, R"("a,b","c]\"d,",{"k":"[,]}"},"e\\","f")");
  EXPECT_EQ(f.messages, 5u);
}

TEST(FrameJsonTest, ElementBytesArePreserved) {
  // Inner whitespace and escapes are kept as sent; only the separators change.
  auto f = frame_ok("[ { \"x\" : \"\\u00e9\" } ,\n\t\"\xC3\xA9\" ]");
  EXPECT_EQ(f.joined, "{ \"x\" : \"\\u00e9\" },\"\xC3\xA9\"");
  EXPECT_EQ(f.messages, 2u);
}

TEST(FrameJsonTest, EmptyArrayHasNoMessages) {
  for (const char* s : {"[]", "[ ]", " [\n] "}) {
    auto f = frame_ok(s);
    EXPECT_EQ(f.joined, "") << s;
    EXPECT_EQ(f.messages, 0u) << s;
  }
}

TEST(FrameJsonTest, EmbeddedNewlineEscapesStayEscaped) {
  const std::string body =
      R"({"message":"line1\nline2","attack":"try\r\n\r\nevent: control\r\ndata: {\"bad\":true}"})";
  auto f = frame_ok(body);
  EXPECT_EQ(f.joined, body);
  EXPECT_EQ(f.messages, 1u);
}

TEST(FrameJsonTest, RejectsInvalidJson) {
  const std::vector<std::string> bad = {
      "",      " ",       "{ invalid json }", "[1,",       "[1,2,]", "{\"a\":}", "[1]]", "{}}",
      "{} {}", "[1] [2]", "'single'",         "undefined", "\"open", "01",       "NaN",
  };
  for (const auto& s : bad) {
    auto r = frame_json(s);
    ASSERT_FALSE(r.ok()) << '"' << s << '"' << " framed as " << r->joined;
    EXPECT_EQ(r.error().code, errc::bad_json) << s;
  }
}

// RFC 8259 puts no range on numbers, and the reference server (JSON.parse)
// accepts these. The server never needs their values: it must store the bytes.
TEST(FrameJsonTest, AcceptsNumbersOutsideMachineRange) {
  // simdjson's DOM parser alone rejects all of these with NUMBER_ERROR (found
  // failing at f0d80fa); frame_json must not.
  for (const char* s : {"123456789012345678901234567890", "18446744073709551616",
                        "-9223372036854775809", "1e400", "-1e400", "1.5e-400"}) {
    auto r = frame_json(s);
    ASSERT_TRUE(r.ok()) << s << ": " << r.error().message;
    EXPECT_EQ(r->joined, s);
    EXPECT_EQ(r->messages, 1u);
  }
  auto batch = frame_json(R"([{"id":123456789012345678901234567890},1e400])");
  ASSERT_TRUE(batch.ok()) << batch.error().message;
  EXPECT_EQ(batch->joined, R"({"id":123456789012345678901234567890},1e400)");
  EXPECT_EQ(batch->messages, 2u);
}

TEST(JsonPrefixTest, TakesTheFirstMessages) {
  const std::string record = R"({"a":[1,2]},[3,4],"x,y",null)";
  auto p0 = json_prefix(record, 0);
  ASSERT_TRUE(p0.ok());
  EXPECT_EQ(*p0, "");
  auto p1 = json_prefix(record, 1);
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(*p1, R"({"a":[1,2]})");
  auto p2 = json_prefix(record, 2);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(*p2, R"({"a":[1,2]},[3,4])");
  auto p3 = json_prefix(record, 3);
  ASSERT_TRUE(p3.ok());
  EXPECT_EQ(*p3, R"({"a":[1,2]},[3,4],"x,y")");
  auto p4 = json_prefix(record, 4);
  ASSERT_TRUE(p4.ok());
  EXPECT_EQ(*p4, record);
}

TEST(JsonPrefixTest, OvershootIsAnError) {
  auto r = json_prefix("1,2", 3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::bad_request);

  auto empty = json_prefix("", 1);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, errc::bad_request);

  auto none = json_prefix("", 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
}

TEST(JsonPrefixTest, RoundTripsFrameJsonOutput) {
  auto f = frame_ok(R"([{"id":1},"a,]b",[5,[6]],7])");
  ASSERT_EQ(f.messages, 4u);
  auto all = json_prefix(f.joined, 4);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, f.joined);
  auto two = json_prefix(f.joined, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(*two, R"({"id":1},"a,]b")");
}

}  // namespace
}  // namespace ds
