#include "protocol/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ds {
namespace {

// A WHATWG-style SSE parser, enough to see what a browser would: lines end at
// CR, LF or CRLF; a blank line ends an event; "data:" drops one leading space.
struct Event {
  std::string type;
  std::string data;
};

std::vector<Event> parse_sse(std::string_view text) {
  std::vector<Event> events;
  std::string type;
  std::vector<std::string> data;
  bool has_data = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) break;  // an unterminated line is never dispatched
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (text[end] == '\r' && pos < text.size() && text[pos] == '\n') ++pos;
    if (line.empty()) {
      if (has_data) {
        std::string joined;
        for (size_t i = 0; i < data.size(); ++i) {
          if (i) joined.push_back('\n');
          joined += data[i];
        }
        events.push_back({type.empty() ? "message" : type, joined});
      }
      type.clear();
      data.clear();
      has_data = false;
      continue;
    }
    auto colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    if (value.starts_with(' ')) value.remove_prefix(1);
    if (field == "event") type = value;
    if (field == "data") {
      data.emplace_back(value);
      has_data = true;
    }
  }
  return events;
}

std::string data_event(std::string_view payload, bool base64 = false) {
  std::string out;
  append_sse_data(out, payload, base64);
  return out;
}

// What the payload looks like after an SSE round trip: line ends become LF.
std::string normalise_newlines(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

TEST(SseDataTest, SingleLine) { EXPECT_EQ(data_event("hello"), "event: data\ndata:hello\n\n"); }

TEST(SseDataTest, EmptyPayload) { EXPECT_EQ(data_event(""), "event: data\ndata:\n\n"); }

TEST(SseDataTest, SplitsOnLf) {
  EXPECT_EQ(data_event("line1\nline2\nline3"),
            "event: data\ndata:line1\ndata:line2\ndata:line3\n\n");
}

TEST(SseDataTest, SplitsOnCr) {
  EXPECT_EQ(data_event("a\rb\rc"), "event: data\ndata:a\ndata:b\ndata:c\n\n");
}

TEST(SseDataTest, CrlfIsOneLineBreak) {
  EXPECT_EQ(data_event("a\r\nb"), "event: data\ndata:a\ndata:b\n\n");
  EXPECT_EQ(data_event("a\r\n\r\nb"), "event: data\ndata:a\ndata:\ndata:b\n\n");
}

TEST(SseDataTest, LfCrIsTwoLineBreaks) {
  EXPECT_EQ(data_event("a\n\rb"), "event: data\ndata:a\ndata:\ndata:b\n\n");
}

TEST(SseDataTest, TrailingLineBreaksBecomeEmptyDataLines) {
  EXPECT_EQ(data_event("x\n"), "event: data\ndata:x\ndata:\n\n");
  EXPECT_EQ(data_event("x\r"), "event: data\ndata:x\ndata:\n\n");
  EXPECT_EQ(data_event("x\r\n"), "event: data\ndata:x\ndata:\n\n");
  EXPECT_EQ(data_event("\n"), "event: data\ndata:\ndata:\n\n");
}

TEST(SseDataTest, LeadingSpaceGetsAnExtraSpace) {
  EXPECT_EQ(data_event(" hi"), "event: data\ndata:  hi\n\n");
  EXPECT_EQ(data_event("a\n  b\nc"), "event: data\ndata:a\ndata:   b\ndata:c\n\n");
  auto events = parse_sse(data_event("  two spaces\n one"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "  two spaces\n one");
}

TEST(SseDataTest, Base64) {
  EXPECT_EQ(data_event("Hello", true), "event: data\ndata:SGVsbG8=\n\n");
  EXPECT_EQ(data_event(std::string("\0\n\r\xff\xfe\0\n\r", 8), true),
            "event: data\ndata:AAoN//4ACg0=\n\n");
  EXPECT_EQ(data_event("", true), "event: data\ndata:\n\n");
}

TEST(SseDataTest, RoundTripsThroughAParser) {
  for (std::string_view payload :
       {"plain", "", "a\nb", "a\r\nb", "a\rb", " lead", "x\n\n\ny", "\r\n\r\n", "data: x\n\n"}) {
    auto events = parse_sse(data_event(payload));
    ASSERT_EQ(events.size(), 1u) << payload;
    EXPECT_EQ(events[0].type, "data");
    EXPECT_EQ(events[0].data, normalise_newlines(payload)) << payload;
  }
}

// The conformance suite's injection payloads: none may end the data event early
// or produce an event of its own.
TEST(SseDataTest, InjectionCannotForgeEvents) {
  const std::vector<std::string> attacks = {
      "safe content\r\n\r\nevent: control\r\ndata: {\"injected\":true}\r\n\r\nmore safe content",
      "start\n\nevent: data\ndata: fake-event\n\nend",
      "start\r\revent: control\rdata: {\"cr_injected\":true}\r\rend",
      "\n\nevent: control\ndata: {}\n\n",
      "x\r\n\r\nid: 5\r\nretry: 1\r\n\r\n",
  };
  for (const auto& attack : attacks) {
    std::string out = data_event(attack);
    SseControl c;
    c.next = Offset{0, 7};
    c.cursor = "12";
    append_sse_control(out, c);

    // Every line the server wrote is one of its own fields, never a payload's.
    std::string_view rest = out;
    size_t blank_lines = 0;
    while (!rest.empty()) {
      size_t nl = rest.find('\n');
      ASSERT_NE(nl, std::string_view::npos);
      std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl + 1);
      EXPECT_EQ(line.find('\r'), std::string_view::npos);
      if (line.empty()) {
        ++blank_lines;
        continue;
      }
      EXPECT_TRUE(line == "event: data" || line == "event: control" || line.starts_with("data:"))
          << line;
    }
    EXPECT_EQ(blank_lines, 2u) << attack;

    auto events = parse_sse(out);
    ASSERT_EQ(events.size(), 2u) << attack;
    EXPECT_EQ(events[0].type, "data");
    EXPECT_EQ(events[0].data, normalise_newlines(attack));
    EXPECT_EQ(events[1].type, "control");
    EXPECT_EQ(events[1].data, R"({"streamNextOffset":"0000000000000000_0000000000000007",)"
                              R"("streamCursor":"12"})");
  }
}

// RFC 4648 section 10 test vectors.
TEST(Base64Test, Rfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Base64Test, HighBytesAndAlphabetEnds) {
  EXPECT_EQ(base64_encode("\xff\xfe\xfd"), "//79");
  EXPECT_EQ(base64_encode("\xfb\xff"), "+/8=");
  EXPECT_EQ(base64_encode(std::string(3, '\0')), "AAAA");
  EXPECT_EQ(base64_encode(std::string("\0\1\2\3\4\5\6\7", 8)), "AAECAwQFBgc=");
}

TEST(Base64Test, LengthIsPaddedToFour) {
  std::string in;
  for (int i = 0; i < 1024; ++i) {
    in.push_back(static_cast<char>(i % 256));
    std::string out = base64_encode(in);
    ASSERT_EQ(out.size(), (in.size() + 2) / 3 * 4);
    ASSERT_EQ(out.find_first_of("\r\n"), std::string::npos);
  }
}

std::string control(const SseControl& c) {
  std::string out;
  append_sse_control(out, c);
  return out;
}

TEST(SseControlTest, Shape) {
  SseControl c;
  c.next = Offset{0, 42};
  c.cursor = "1000";
  EXPECT_EQ(control(c),
            "event: control\n"
            "data:{\"streamNextOffset\":\"0000000000000000_0000000000000042\","
            "\"streamCursor\":\"1000\"}\n\n");
}

TEST(SseControlTest, UpToDate) {
  SseControl c;
  c.next = Offset{0, 42};
  c.cursor = "1000";
  c.up_to_date = true;
  EXPECT_EQ(control(c),
            "event: control\n"
            "data:{\"streamNextOffset\":\"0000000000000000_0000000000000042\","
            "\"streamCursor\":\"1000\",\"upToDate\":true}\n\n");
}

TEST(SseControlTest, ClosedHasNoCursorAndIsUpToDate) {
  SseControl c;
  c.next = Offset{0, 42};
  c.cursor = "1000";
  c.closed = true;
  EXPECT_EQ(control(c),
            "event: control\n"
            "data:{\"streamNextOffset\":\"0000000000000000_0000000000000042\","
            "\"upToDate\":true,\"streamClosed\":true}\n\n");
}

TEST(SseControlTest, EmptyCursorIsOmitted) {
  SseControl c;
  EXPECT_EQ(control(c),
            "event: control\n"
            "data:{\"streamNextOffset\":\"0000000000000000_0000000000000000\"}\n\n");
}

TEST(SseControlTest, AppendsToExistingBuffer) {
  std::string out = "prefix";
  append_sse_data(out, "x", false);
  SseControl c;
  c.next = Offset{0, 1};
  append_sse_control(out, c);
  EXPECT_EQ(
      out,
      "prefixevent: data\ndata:x\n\n"
      "event: control\ndata:{\"streamNextOffset\":\"0000000000000000_0000000000000001\"}\n\n");
}

TEST(Utf8PrefixTest, CompleteInputIsWhole) {
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("\xC3\xA9"), 2u);          // é
  EXPECT_EQ(utf8_complete_prefix("\xE2\x82\xAC"), 3u);      // €
  EXPECT_EQ(utf8_complete_prefix("\xF0\x9F\x98\x80"), 4u);  // 😀
  EXPECT_EQ(utf8_complete_prefix("a\xF0\x9F\x98\x80"
                                 "b"),
            6u);
}

TEST(Utf8PrefixTest, SplitTwoByteSequence) {
  EXPECT_EQ(utf8_complete_prefix("\xC3"), 0u);
  EXPECT_EQ(utf8_complete_prefix("ab\xC3"), 2u);
}

TEST(Utf8PrefixTest, SplitThreeByteSequence) {
  EXPECT_EQ(utf8_complete_prefix("\xE2"), 0u);
  EXPECT_EQ(utf8_complete_prefix("\xE2\x82"), 0u);
  EXPECT_EQ(utf8_complete_prefix("x\xE2\x82"), 1u);
  EXPECT_EQ(utf8_complete_prefix("\xC3\xA9\xE2\x82"), 2u);
}

TEST(Utf8PrefixTest, SplitFourByteSequence) {
  EXPECT_EQ(utf8_complete_prefix("\xF0"), 0u);
  EXPECT_EQ(utf8_complete_prefix("\xF0\x9F"), 0u);
  EXPECT_EQ(utf8_complete_prefix("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(utf8_complete_prefix("\xE2\x82\xAC\xF0\x9F"), 3u);
}

TEST(Utf8PrefixTest, EverySplitOfMixedTextHoldsBackOnlyThePartialSequence) {
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
  // Boundaries of complete characters: 0, 1, 3, 6, 10, 11.
  const std::vector<size_t> expected = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11};
  for (size_t n = 0; n <= text.size(); ++n) {
    EXPECT_EQ(utf8_complete_prefix(std::string_view(text).substr(0, n)), expected[n]) << n;
  }
}

TEST(Utf8PrefixTest, InvalidBytesAreNotHeldBack) {
  // Stray continuation bytes or invalid lead bytes cannot become valid later.
  EXPECT_EQ(utf8_complete_prefix("\x80"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\x80\x80\x80\x80"), 5u);
  EXPECT_EQ(utf8_complete_prefix("\xFF"), 1u);
}

}  // namespace
}  // namespace ds
