#include "server/reader_limits.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ds::live {
namespace {

using Refusal = ReaderLimits::Refusal;

TEST(ReaderLimits, PerStreamCapRefusesOnlyThatStream) {
  ReaderLimits limits(2, 0);
  Refusal why = Refusal::none;
  auto a1 = limits.try_acquire("a", why);
  auto a2 = limits.try_acquire("a", why);
  EXPECT_TRUE(a1);
  EXPECT_TRUE(a2);
  auto a3 = limits.try_acquire("a", why);
  EXPECT_FALSE(a3);
  EXPECT_EQ(why, Refusal::per_stream);
  auto b1 = limits.try_acquire("b", why);
  EXPECT_TRUE(b1);
  EXPECT_EQ(why, Refusal::none);
  EXPECT_EQ(limits.on_stream("a"), 2u);
  EXPECT_EQ(limits.total(), 3u);
}

TEST(ReaderLimits, ServerCapCountsEveryStream) {
  ReaderLimits limits(0, 3);
  Refusal why = Refusal::none;
  std::vector<ReaderLimits::Slot> held;
  for (const char* s : {"a", "b", "c"}) held.push_back(limits.try_acquire(s, why));
  for (auto& h : held) EXPECT_TRUE(h);
  auto d = limits.try_acquire("d", why);
  EXPECT_FALSE(d);
  EXPECT_EQ(why, Refusal::server);
  held.pop_back();  // a reader ends: room again
  auto d2 = limits.try_acquire("d", why);
  EXPECT_TRUE(d2);
}

TEST(ReaderLimits, ServerCapWinsWhenBothAreReached) {
  ReaderLimits limits(1, 1);
  Refusal why = Refusal::none;
  auto a = limits.try_acquire("a", why);
  auto again = limits.try_acquire("a", why);
  EXPECT_FALSE(again);
  EXPECT_EQ(why, Refusal::server);
}

TEST(ReaderLimits, ZeroMeansUnlimited) {
  ReaderLimits limits(0, 0);
  Refusal why = Refusal::none;
  std::vector<ReaderLimits::Slot> held;
  for (int i = 0; i < 1000; ++i) {
    held.push_back(limits.try_acquire("s", why));
    ASSERT_TRUE(held.back());
  }
  EXPECT_EQ(limits.total(), 1000u);
}

TEST(ReaderLimits, SlotsMoveAndReleaseOnce) {
  ReaderLimits limits(1, 0);
  Refusal why = Refusal::none;
  auto a = limits.try_acquire("a", why);
  ReaderLimits::Slot moved = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from slots are empty
  EXPECT_TRUE(moved);
  EXPECT_EQ(limits.total(), 1u);
  ReaderLimits::Slot other;
  other = std::move(moved);
  EXPECT_EQ(limits.total(), 1u);
  other.reset();
  EXPECT_EQ(limits.total(), 0u);
  EXPECT_EQ(limits.streams(), 0u);  // no entry left for a stream without readers
  auto again = limits.try_acquire("a", why);
  EXPECT_TRUE(again);
}

TEST(ReaderLimits, ManyStreamsKeepTheirCountsAcrossRehashing) {
  ReaderLimits limits(1, 0);
  Refusal why = Refusal::none;
  std::vector<ReaderLimits::Slot> held;
  for (int i = 0; i < 5000; ++i) held.push_back(limits.try_acquire(std::to_string(i), why));
  for (int i = 0; i < 5000; ++i) EXPECT_EQ(limits.on_stream(std::to_string(i)), 1u);
  held.clear();
  EXPECT_EQ(limits.total(), 0u);
  EXPECT_EQ(limits.streams(), 0u);
}

}  // namespace
}  // namespace ds::live
