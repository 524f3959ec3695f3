#include "protocol/framing.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace ds {
namespace {

using Values = std::vector<std::string_view>;

/// The status class of the answer: 0 when the framing is accepted.
int refused(unsigned version, const Values& te, const Values& cl) {
  auto e = check_body_framing(version, te, cl);
  if (!e) return 0;
  EXPECT_FALSE(e->message.empty());
  return e->code == errc::not_implemented ? 501 : e->code == errc::bad_request ? 400 : -1;
}

TEST(BodyFramingTest, OneContentLengthOrChunkedIsAccepted) {
  EXPECT_EQ(refused(11, {}, {}), 0);
  EXPECT_EQ(refused(10, {}, {}), 0);
  EXPECT_EQ(refused(11, {}, {"0"}), 0);
  EXPECT_EQ(refused(11, {}, {"1024"}), 0);
  EXPECT_EQ(refused(10, {}, {"3"}), 0);
  EXPECT_EQ(refused(11, {"chunked"}, {}), 0);
  EXPECT_EQ(refused(11, {"Chunked"}, {}), 0);
  EXPECT_EQ(refused(11, {" chunked "}, {}), 0);
  EXPECT_EQ(refused(11, {", chunked,"}, {}), 0);  // empty list elements are allowed
}

// Issue 13.2: `Transfer-Encoding: gzip` made the body a second request.
TEST(BodyFramingTest, AFinalCodingOtherThanChunkedIs400) {
  for (std::string_view te :
       {"gzip", "identity", "chunked, gzip", "x", "deflate", "chunkedx", "chunked;q=1"}) {
    EXPECT_EQ(refused(11, {te}, {}), 400) << te;
  }
  EXPECT_EQ(refused(11, {"chunked", "gzip"}, {}), 400);  // two fields: one list
}

TEST(BodyFramingTest, ChunkedTwiceIs400) {
  EXPECT_EQ(refused(11, {"chunked, chunked"}, {}), 400);
  EXPECT_EQ(refused(11, {"chunked", "chunked"}, {}), 400);
  EXPECT_EQ(refused(11, {"chunked, gzip, chunked"}, {}), 400);
}

TEST(BodyFramingTest, AnotherCodingBeforeChunkedIs501) {
  EXPECT_EQ(refused(11, {"gzip, chunked"}, {}), 501);
  EXPECT_EQ(refused(11, {"gzip", "chunked"}, {}), 501);
  EXPECT_EQ(refused(11, {"x-custom;a=b, chunked"}, {}), 501);
}

TEST(BodyFramingTest, EmptyOrMalformedTransferEncodingIs400) {
  for (std::string_view te :
       {"", " ", ",", ", ,", "chu nked", "gzip chunked", "\"chunked\"", "chunked\x01"}) {
    EXPECT_EQ(refused(11, {te}, {}), 400) << te;
  }
}

TEST(BodyFramingTest, TransferEncodingWithContentLengthIs400) {
  EXPECT_EQ(refused(11, {"chunked"}, {"3"}), 400);
  EXPECT_EQ(refused(11, {"gzip"}, {"3"}), 400);
  EXPECT_EQ(refused(11, {"gzip, chunked"}, {"0"}), 400);
}

TEST(BodyFramingTest, TransferEncodingInHttp10Is400) {
  EXPECT_EQ(refused(10, {"chunked"}, {}), 400);
  EXPECT_EQ(refused(10, {"gzip"}, {}), 400);
  EXPECT_EQ(refused(10, {"chunked"}, {"3"}), 400);
}

TEST(BodyFramingTest, MoreThanOneOrAnInvalidContentLengthIs400) {
  EXPECT_EQ(refused(11, {}, {"3", "3"}), 400);
  EXPECT_EQ(refused(11, {}, {"3", "4"}), 400);
  for (std::string_view cl : {"3, 3", "3,4", "", "-1", "+3", "0x10", "3.0", "abc", "1 2"}) {
    EXPECT_EQ(refused(11, {}, {cl}), 400) << cl;
  }
}

TEST(BodyFramingTest, MessagesQuoteOnlyPrintableAscii) {
  auto e = check_body_framing(11, Values{"g\xffzip"}, Values{});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->message.find('\xff'), std::string::npos) << e->message;
}

}  // namespace
}  // namespace ds
