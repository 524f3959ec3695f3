#include "protocol/offset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace ds {
namespace {

TEST(OffsetTest, FormatsTwoZeroPaddedSixteenDigitParts) {
  EXPECT_EQ(Offset{}.str(), "0000000000000000_0000000000000000");
  EXPECT_EQ((Offset{1, 23}.str()), "0000000000000001_0000000000000023");
  EXPECT_EQ((Offset{Offset::kMaxPart, Offset::kMaxPart}.str()),
            "9999999999999999_9999999999999999");
}

// The old rendering (snprintf), kept here as the reference the in-place
// rendering must match byte for byte.
std::string reference_str(const Offset& o) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%016llu_%016llu",
                static_cast<unsigned long long>(std::min(o.hi, Offset::kMaxPart)),
                static_cast<unsigned long long>(std::min(o.lo, Offset::kMaxPart)));
  return buf;
}

TEST(OffsetTest, RendersInPlaceExactlyAsStr) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  for (Offset o : {Offset{}, Offset{0, 1}, Offset{1, 0}, Offset{9, 10}, Offset{99, 100},
                   Offset{123456789, 987654321}, Offset{Offset::kMaxPart - 1, Offset::kMaxPart},
                   Offset{Offset::kMaxPart, Offset::kMaxPart},
                   Offset{Offset::kMaxPart + 1, Offset::kMaxPart + 1}, Offset{max, max},
                   Offset{0, max}, Offset{max, 0}, Offset{1'000'000'000'000'000ULL, 42}}) {
    const std::string want = reference_str(o);
    ASSERT_EQ(want.size(), Offset::kTextSize);
    EXPECT_EQ(o.str(), want);
    const auto text = o.text();
    EXPECT_EQ(text.view(), want);
    EXPECT_EQ(std::string_view(text), want);
    // to_chars writes exactly kTextSize bytes and touches nothing after.
    char buf[Offset::kTextSize + 4];
    std::memset(buf, '#', sizeof buf);
    EXPECT_EQ(o.to_chars(buf), buf + Offset::kTextSize);
    EXPECT_EQ(std::string_view(buf, Offset::kTextSize), want);
    EXPECT_EQ(std::string_view(buf + Offset::kTextSize, 4), "####");
  }
}

TEST(OffsetTest, ParsesWhatItFormats) {
  for (Offset o : {Offset{}, Offset{0, 5}, Offset{7, 0}, Offset{123456789, 987654321},
                   Offset{Offset::kMaxPart, Offset::kMaxPart}}) {
    auto parsed = parse_offset(o.str());
    ASSERT_TRUE(parsed.has_value()) << o.str();
    EXPECT_EQ(*parsed, o);
  }
  auto o = parse_offset("0000000000000012_0000000000000345");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->hi, 12u);
  EXPECT_EQ(o->lo, 345u);
}

TEST(OffsetTest, RejectsMalformedWireForms) {
  const std::vector<std::string> bad = {
      "",
      "0",
      "0_0",
      "-1",
      "now",
      "0000000000000000-0000000000000000",   // wrong separator
      "0000000000000000_000000000000000",    // 15-digit lo
      "000000000000000_00000000000000000",   // 15-digit hi, 17-digit lo
      "00000000000000000_0000000000000000",  // 17-digit hi
      "0000000000000000_00000000000000000",  // 17-digit lo
      "0000000000000000_000000000000000a",
      "+000000000000000_0000000000000000",
      "-000000000000001_0000000000000000",
      " 000000000000000_0000000000000000",
      "0000000000000000_000000000000000 ",
      "0000000000000000_0000000000000000\n",
      "0000000000000000,0000000000000000",
      "0000000000000000/0000000000000000",
      "0000000000000000__000000000000000",
      std::string("0000000000000000_000000000000000\0", 33),
  };
  for (const auto& s : bad) EXPECT_FALSE(parse_offset(s).has_value()) << '"' << s << '"';
}

TEST(OffsetTest, OrderIsHiThenLo) {
  EXPECT_LT((Offset{0, 9}), (Offset{1, 0}));
  EXPECT_LT((Offset{1, 0}), (Offset{1, 1}));
  EXPECT_EQ((Offset{3, 4}), (Offset{3, 4}));
  EXPECT_GT((Offset{2, 0}), (Offset{1, Offset::kMaxPart}));
}

TEST(OffsetTest, WireFormSortsLikeOffsets) {
  const std::vector<Offset> offsets = {{0, 0},
                                       {0, 1},
                                       {0, 9},
                                       {0, 10},
                                       {0, 99},
                                       {0, 100},
                                       {0, Offset::kMaxPart},
                                       {1, 0},
                                       {1, 2},
                                       {10, 0},
                                       {Offset::kMaxPart, Offset::kMaxPart}};
  for (const auto& a : offsets) {
    for (const auto& b : offsets) {
      EXPECT_EQ(a < b, a.str() < b.str()) << a.str() << " vs " << b.str();
      EXPECT_EQ(a == b, a.str() == b.str()) << a.str() << " vs " << b.str();
    }
  }
}

TEST(OffsetSpecTest, Sentinels) {
  auto start = parse_offset_spec("-1");
  ASSERT_TRUE(start.has_value());
  EXPECT_EQ(start->kind, OffsetSpec::Kind::start);

  auto now = parse_offset_spec("now");
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->kind, OffsetSpec::Kind::now);
}

TEST(OffsetSpecTest, Position) {
  auto spec = parse_offset_spec("0000000000000000_0000000000000042");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->kind, OffsetSpec::Kind::at);
  EXPECT_EQ(spec->at, (Offset{0, 42}));

  auto zero = parse_offset_spec("0000000000000000_0000000000000000");
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero->kind, OffsetSpec::Kind::at);
  EXPECT_EQ(zero->at, Offset{});
}

// The conformance suite's property test: anything outside ^(-1|now|offset)$ is
// a 400, with no trimming and no case folding.
TEST(OffsetSpecTest, RejectsEverythingElse) {
  const std::vector<std::string> bad = {
      "",
      " ",
      "-1 ",
      " -1",
      "-1\n",
      "-1\r\n",
      "-2",
      "-0",
      "1",
      "0",
      "NOW",
      "Now",
      "now ",
      " now",
      "now,",
      "now\n",
      "-1,now",
      "../x",
      "x/..",
      "0,1",
      "0 1",
      "0_0",
      "now/",
      "/",
      ",",
      "start",
      std::string("-1\0", 3),
      std::string("now\0", 4),
      "0000000000000000_0000000000000000 ",
      "0000000000000000_0000000000000000,0000000000000000_0000000000000001",
  };
  for (const auto& s : bad) EXPECT_FALSE(parse_offset_spec(s).has_value()) << '"' << s << '"';
}

}  // namespace
}  // namespace ds
