#include "protocol/target.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ds {
namespace {

using Query = std::vector<std::pair<std::string, std::string>>;

TEST(PercentDecodeTest, DecodesEscapes) {
  EXPECT_EQ(percent_decode("a%20b", false), "a b");
  EXPECT_EQ(percent_decode("%41%42%43", false), "ABC");
  EXPECT_EQ(percent_decode("%2F%2f", false), "//");
  EXPECT_EQ(percent_decode("%e2%82%ac", false), "\xE2\x82\xAC");
  EXPECT_EQ(percent_decode("%FF", false), "\xFF");
  EXPECT_EQ(percent_decode("%25", false), "%");
  EXPECT_EQ(percent_decode("%2541", false), "%41");  // decoded once only
  EXPECT_EQ(percent_decode("", false), "");
}

TEST(PercentDecodeTest, PlusIsSpaceOnlyWhenAsked) {
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("a%2Bb", true), "a+b");
}

TEST(PercentDecodeTest, NulIsDecoded) {
  auto s = percent_decode("a%00b", false);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(*s, std::string("a\0b", 3));
}

TEST(PercentDecodeTest, RejectsBadEscapes) {
  for (const char* s : {"%", "%2", "a%", "a%4", "%G0", "%0G", "%%", "%-1", "% 1", "%2%41"}) {
    EXPECT_EQ(percent_decode(s, false), std::nullopt) << s;
    EXPECT_EQ(percent_decode(s, true), std::nullopt) << s;
  }
}

Target parse_ok(std::string_view s) {
  auto r = parse_target(s);
  EXPECT_TRUE(r.ok()) << s;
  return r.ok() ? r.value() : Target{};
}

TEST(ParseTargetTest, PathOnly) {
  auto t = parse_ok("/v1/stream/foo");
  EXPECT_EQ(t.path, "/v1/stream/foo");
  EXPECT_TRUE(t.query.empty());
}

TEST(ParseTargetTest, PathIsDecodedAndPlusIsLiteral) {
  auto t = parse_ok("/v1/stream/a%20b+c%2Fd");
  EXPECT_EQ(t.path, "/v1/stream/a b+c/d");
}

TEST(ParseTargetTest, QueryInOrder) {
  auto t = parse_ok("/v1/stream/s?offset=-1&live=sse&cursor=12");
  EXPECT_EQ(t.path, "/v1/stream/s");
  EXPECT_EQ(t.query, (Query{{"offset", "-1"}, {"live", "sse"}, {"cursor", "12"}}));
}

TEST(ParseTargetTest, QueryDecoding) {
  auto t = parse_ok("/x?offset=0%201&a+b=c+d&k%3D=v%26");
  EXPECT_EQ(t.query, (Query{{"offset", "0 1"}, {"a b", "c d"}, {"k=", "v&"}}));
}

TEST(ParseTargetTest, EmptyValuesAndMissingEquals) {
  auto t = parse_ok("/x?offset=&flag&=v&a=b=c");
  EXPECT_EQ(t.query, (Query{{"offset", ""}, {"flag", ""}, {"", "v"}, {"a", "b=c"}}));
}

TEST(ParseTargetTest, EmptyPairsAreSkipped) {
  auto t = parse_ok("/x?&&a=1&&");
  EXPECT_EQ(t.query, (Query{{"a", "1"}}));
  auto empty = parse_ok("/x?");
  EXPECT_EQ(empty.path, "/x");
  EXPECT_TRUE(empty.query.empty());
}

TEST(ParseTargetTest, RepeatedParametersAreKept) {
  auto t = parse_ok("/x?offset=a&live=sse&offset=b");
  EXPECT_EQ(t.all("offset"), (std::vector<std::string_view>{"a", "b"}));
  EXPECT_EQ(t.all("live"), (std::vector<std::string_view>{"sse"}));
  EXPECT_TRUE(t.all("cursor").empty());
}

TEST(ParseTargetTest, QuestionMarkInQueryBelongsToTheQuery) {
  auto t = parse_ok("/x?a=?b");
  EXPECT_EQ(t.path, "/x");
  EXPECT_EQ(t.query, (Query{{"a", "?b"}}));
}

TEST(ParseTargetTest, BadEscapesAreBadRequests) {
  for (const char* s :
       {"/v1/stream/%zz", "/v1/stream/a%", "/x?offset=%", "/x?%G1=1", "/x?a=1&b=%2"}) {
    auto r = parse_target(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(r.error().code, errc::bad_request) << s;
  }
}

errc name_error(std::string_view path) {
  auto r = stream_name(path);
  return r.ok() ? errc::ok : r.error().code;
}

TEST(StreamNameTest, NamesUnderThePrefix) {
  auto r = stream_name("/v1/stream/foo");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "foo");
  auto nested = stream_name("/v1/stream/a/b/c");
  ASSERT_TRUE(nested.ok());
  EXPECT_EQ(*nested, "a/b/c");
  auto dots = stream_name("/v1/stream/.../.a/a./a..b");
  ASSERT_TRUE(dots.ok());
  EXPECT_EQ(*dots, ".../.a/a./a..b");
  auto spaces = stream_name("/v1/stream/a b");
  ASSERT_TRUE(spaces.ok());
  EXPECT_EQ(*spaces, "a b");
}

TEST(StreamNameTest, OtherRoutesAreNotFound) {
  EXPECT_EQ(name_error("/"), errc::not_found);
  EXPECT_EQ(name_error("/v1/stream"), errc::not_found);
  EXPECT_EQ(name_error("/v1/streams/a"), errc::not_found);
  EXPECT_EQ(name_error("/v2/stream/a"), errc::not_found);
  EXPECT_EQ(name_error("v1/stream/a"), errc::not_found);
  EXPECT_EQ(name_error("stream-name"), errc::not_found);
}

TEST(StreamNameTest, EmptyNameIsBadRequest) {
  EXPECT_EQ(name_error("/v1/stream/"), errc::bad_request);
}

TEST(StreamNameTest, DotSegmentsAreRejected) {
  for (const char* p :
       {"/v1/stream/.", "/v1/stream/..", "/v1/stream/./a", "/v1/stream/../a", "/v1/stream/a/.",
        "/v1/stream/a/..", "/v1/stream/a/./b", "/v1/stream/a/../b", "/v1/stream/a/b/../../.."}) {
    EXPECT_EQ(name_error(p), errc::bad_request) << p;
  }
}

TEST(StreamNameTest, EncodedDotSegmentsAreRejectedAfterDecoding) {
  auto t = parse_target("/v1/stream/a/%2E%2E/b");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(name_error(t->path), errc::bad_request);
  auto slash = parse_target("/v1/stream/a%2F..%2Fb");
  ASSERT_TRUE(slash.ok());
  EXPECT_EQ(name_error(slash->path), errc::bad_request);
}

TEST(StreamNameTest, NulIsRejected) {
  EXPECT_EQ(name_error(std::string("/v1/stream/a\0b", 14)), errc::bad_request);
  auto t = parse_target("/v1/stream/a%00");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(name_error(t->path), errc::bad_request);
}

TEST(StreamNameTest, AtMost512Bytes) {
  const std::string prefix(kStreamPrefix);
  auto ok = stream_name(prefix + std::string(512, 'n'));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->size(), 512u);
  EXPECT_EQ(name_error(prefix + std::string(513, 'n')), errc::uri_too_long);
  // Bytes, not characters: 256 two-byte characters fit, one more byte does not.
  std::string utf8;
  for (int i = 0; i < 256; ++i) utf8 += "\xC3\xA9";
  EXPECT_EQ(name_error(prefix + utf8), errc::ok);
  EXPECT_EQ(name_error(prefix + utf8 + "x"), errc::uri_too_long);
}

// RFC 9112 3.2.2: a server accepts absolute-form and uses its path and query.
TEST(OriginFormTest, AbsoluteFormBecomesPathAndQuery) {
  auto t = origin_form("http://example.com/v1/stream/x?offset=-1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target, "/v1/stream/x?offset=-1");
  EXPECT_EQ(t->authority, "example.com");
  t = origin_form("HTTPS://Example.COM:8443/v1/stream/a%2Fb");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target, "/v1/stream/a%2Fb");
  EXPECT_EQ(t->authority, "Example.COM:8443");
  t = origin_form("http://[::1]:4437/health");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target, "/health");
  EXPECT_EQ(t->authority, "[::1]:4437");
}

TEST(OriginFormTest, EmptyPathIsTheRoot) {
  auto t = origin_form("http://h");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target, "/");
  t = origin_form("http://h:80?x=1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->target, "/?x=1");
  EXPECT_EQ(t->authority, "h:80");
}

TEST(OriginFormTest, OtherFormsPassUnchanged) {
  for (std::string_view s : {"/v1/stream/x?offset=-1", "*", "/http://h/x", "ftp://h/x",
                             "httpx://h/x", "http:/h/x", "example.com:443"}) {
    auto t = origin_form(s);
    ASSERT_TRUE(t.ok()) << s;
    EXPECT_EQ(t->target, s);
    EXPECT_FALSE(t->authority.has_value()) << s;
  }
}

TEST(OriginFormTest, EmptyHostUserinfoAndFragmentsAreBadRequests) {
  for (std::string_view s : {"http:///v1/stream/x", "http://:80/v1/stream/x",
                             "http://user:pw@h/v1/stream/x", "http://@h/x", "http://h#frag"}) {
    auto t = origin_form(s);
    ASSERT_FALSE(t.ok()) << s;
    EXPECT_EQ(t.error().code, errc::bad_request) << s;
  }
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

TEST(TakeStreamNameTest, ChecksLikeStreamNameAndKeepsTheStorage) {
  std::string path = "/v1/stream/some/long-enough-name-to-be-on-the-heap";
  const char* storage = path.data();
  auto name = take_stream_name(std::move(path));
  ASSERT_TRUE(name);
  EXPECT_EQ(*name, "some/long-enough-name-to-be-on-the-heap");
  EXPECT_EQ(name->data(), storage);
  for (std::string bad : {"/v1/stream/", "/v1/stream/a/../b", "/other/x"}) {
    auto a = take_stream_name(std::string(bad));
    auto b = stream_name(bad);
    ASSERT_FALSE(a) << bad;
    ASSERT_FALSE(b) << bad;
    EXPECT_EQ(a.error().code, b.error().code) << bad;
  }
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

TEST(TargetCountFirstTest, AgreeWithAll) {
  auto t = parse_target("/v1/stream/x?offset=1&live=sse&offset=2&cursor=c%20d");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->count("offset"), 2u);
  EXPECT_EQ(t->count("live"), 1u);
  EXPECT_EQ(t->count("nope"), 0u);
  EXPECT_EQ(t->first("offset"), std::optional<std::string_view>("1"));
  EXPECT_EQ(t->first("cursor"), std::optional<std::string_view>("c d"));
  EXPECT_EQ(t->first("nope"), std::nullopt);
  EXPECT_EQ(t->all("offset").size(), t->count("offset"));
}

}  // namespace
}  // namespace ds
