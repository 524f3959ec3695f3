// When catch-up responses are gzipped, their ETag, and the gzip itself.

#include "protocol/content_encoding.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

namespace ds {
namespace {

std::string gunzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  std::string out(in.size() * 20 + 1024, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&zs, Z_FINISH);
  inflateEnd(&zs);
  EXPECT_EQ(rc, Z_STREAM_END);
  out.resize(zs.total_out);
  return out;
}

TEST(AcceptsGzip, Codings) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("gzip, deflate, br"));  // what fetch sends
  EXPECT_TRUE(accepts_gzip("br;q=1.0, GZIP;q=0.5"));
  EXPECT_TRUE(accepts_gzip("x-gzip"));
  EXPECT_TRUE(accepts_gzip(" deflate , gzip "));
  EXPECT_TRUE(accepts_gzip("*"));
  EXPECT_TRUE(accepts_gzip("identity, *;q=0.1"));
  EXPECT_FALSE(accepts_gzip(""));
  EXPECT_FALSE(accepts_gzip("identity"));
  EXPECT_FALSE(accepts_gzip("br, deflate"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip; q=0.000"));
  EXPECT_FALSE(accepts_gzip("*;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0, *"));  // explicit gzip refusal beats *
  EXPECT_FALSE(accepts_gzip("gzipx"));
  EXPECT_FALSE(accepts_gzip("gzip;q=abc"));  // malformed q counts as refusal
  EXPECT_FALSE(accepts_gzip("gzip;q=2"));
}

TEST(GzipEligible, Threshold) {
  EXPECT_FALSE(gzip_eligible(5000, 0));  // 0 disables
  EXPECT_FALSE(gzip_eligible(1023, 1024));
  EXPECT_TRUE(gzip_eligible(1024, 1024));
  EXPECT_TRUE(gzip_eligible(1 << 20, 1024));
  EXPECT_FALSE(gzip_eligible(0, 1));
  EXPECT_TRUE(gzip_eligible(1, 1));
}

TEST(GzipEtag, DiffersFromIdentity) {
  EXPECT_EQ(gzip_etag("\"1:a:b\""), "\"1:a:b-gz\"");
  EXPECT_EQ(gzip_etag("\"1:a:b:c\""), "\"1:a:b:c-gz\"");
  EXPECT_EQ(gzip_etag("W/\"x\""), "W/\"x-gz\"");
  EXPECT_NE(gzip_etag("\"x\""), "\"x\"");
}

TEST(GzipCompress, RoundTrips) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "{\"n\":" + std::to_string(i) + "},";
  auto z = gzip_compress(text, 1);
  ASSERT_TRUE(z);
  ASSERT_GE(z->size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>((*z)[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>((*z)[1]), 0x8b);
  EXPECT_LT(z->size(), text.size() / 4);
  EXPECT_EQ(gunzip(*z), text);

  std::string binary;
  for (int i = 0; i < 4096; ++i) binary.push_back(static_cast<char>((i * 7919) & 0xff));
  auto zb = gzip_compress(binary);
  ASSERT_TRUE(zb);
  EXPECT_EQ(gunzip(*zb), binary);

  auto empty = gzip_compress("");
  ASSERT_TRUE(empty);
  EXPECT_EQ(gunzip(*empty), "");
}

}  // namespace
}  // namespace ds
