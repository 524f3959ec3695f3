// The layout of parked readers' state (server/parked_memory.h).

#include "server/parked_memory.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace ds::http_server {
namespace {

TEST(PackedText, EmptyHasNoParts) {
  PackedText<40> t;
  EXPECT_EQ(t.get(0), "");
  EXPECT_EQ(t.get(4), "");
}

TEST(PackedText, ShortPartsRoundTripInline) {
  PackedText<40> t{"0123456789abcdef", "", "127.0.0.1", "8123456"};
  EXPECT_EQ(t.get(0), "0123456789abcdef");
  EXPECT_EQ(t.get(1), "");
  EXPECT_EQ(t.get(2), "127.0.0.1");
  EXPECT_EQ(t.get(3), "8123456");
  EXPECT_EQ(t.get(4), "");  // past the end
}

TEST(PackedText, LongPartsGoToTheHeap) {
  const std::string id(64, 'i');
  const std::string origin = "https://app.example.com";
  const std::string ct = "application/json; charset=utf-8";
  PackedText<64> t{id, origin, "2001:db8::1", "cursor", ct};
  EXPECT_EQ(t.get(0), id);
  EXPECT_EQ(t.get(1), origin);
  EXPECT_EQ(t.get(2), "2001:db8::1");
  EXPECT_EQ(t.get(3), "cursor");
  EXPECT_EQ(t.get(4), ct);
}

TEST(PackedText, PartsLongerThanSixteenBitsKeepTheirLength) {
  const std::string big(70'000, 'c');
  PackedText<64> t{"a", big, "b"};
  EXPECT_EQ(t.get(0), "a");
  EXPECT_EQ(t.get(1), big);
  EXPECT_EQ(t.get(2), "b");
}

TEST(SlotPool, HandsOutDistinctSlotsAndReusesFreedOnes) {
  using Pool = SlotPool<200>;
  const size_t before = Pool::in_use();
  std::vector<void*> got;
  std::set<void*> distinct;
  // More than one block's worth.
  for (int i = 0; i < 1000; ++i) {
    void* p = Pool::get();
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xab, 200);  // the whole slot is writable
    got.push_back(p);
    distinct.insert(p);
  }
  EXPECT_EQ(distinct.size(), got.size());
  EXPECT_EQ(Pool::in_use(), before + 1000);
  for (void* p : got) Pool::put(p);
  EXPECT_EQ(Pool::in_use(), before);
  Pool::put(nullptr);  // no-op
  EXPECT_EQ(Pool::in_use(), before);
}

}  // namespace
}  // namespace ds::http_server
