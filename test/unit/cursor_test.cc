#include "protocol/cursor.h"

#include <gtest/gtest.h>

#include "protocol/headers.h"

namespace ds {
namespace {

constexpr int64_t kEpoch = kCursorEpochMs;
constexpr int64_t kInterval = kCursorIntervalMs;

TEST(CursorTest, ConstantsMatchProtocol) {
  EXPECT_EQ(parse_rfc3339_ms("2024-10-09T00:00:00Z"), kCursorEpochMs);
  EXPECT_EQ(kCursorIntervalMs, 20'000);
}

TEST(CursorTest, IntervalCountsTwentySecondStepsSinceEpoch) {
  EXPECT_EQ(cursor_interval(0), 0u);
  EXPECT_EQ(cursor_interval(-5), 0u);
  EXPECT_EQ(cursor_interval(kEpoch - 1), 0u);
  EXPECT_EQ(cursor_interval(kEpoch), 0u);
  EXPECT_EQ(cursor_interval(kEpoch + kInterval - 1), 0u);
  EXPECT_EQ(cursor_interval(kEpoch + kInterval), 1u);
  EXPECT_EQ(cursor_interval(kEpoch + 7 * kInterval + 123), 7u);
  // 2025-01-01T00:00:00Z is 84 days = 7'257'600 s = 362'880 intervals after the epoch.
  EXPECT_EQ(cursor_interval(1'735'689'600'000), 362'880u);
}

TEST(CursorTest, WithoutClientCursorAnswersCurrentInterval) {
  const int64_t now = kEpoch + 1000 * kInterval + 5;
  EXPECT_EQ(next_cursor(now, ""), "1000");
}

TEST(CursorTest, ClientBehindCurrentIntervalGetsCurrentInterval) {
  const int64_t now = kEpoch + 1000 * kInterval;
  EXPECT_EQ(next_cursor(now, "0"), "1000");
  EXPECT_EQ(next_cursor(now, "999"), "1000");
}

TEST(CursorTest, ClientAtOrAheadOfCurrentIntervalGetsStrictlyGreater) {
  const int64_t now = kEpoch + 1000 * kInterval;
  EXPECT_EQ(next_cursor(now, "1000"), "1001");
  EXPECT_EQ(next_cursor(now, "1001"), "1002");
  EXPECT_EQ(next_cursor(now, "5000"), "5001");
  // Before the epoch the current interval is 0, so "0" must still advance.
  EXPECT_EQ(next_cursor(0, "0"), "1");
}

TEST(CursorTest, SameEchoGivesSameAnswer) {
  // No jitter: every client echoing the same cursor collapses onto one answer.
  const int64_t now = kEpoch + 42 * kInterval + 7;
  EXPECT_EQ(next_cursor(now, "42"), next_cursor(now + 1, "42"));
  EXPECT_EQ(next_cursor(now, "42"), "43");
}

TEST(CursorTest, UnparsableClientCursorIsIgnored) {
  const int64_t now = kEpoch + 1000 * kInterval;
  EXPECT_EQ(next_cursor(now, "abc"), "1000");
  EXPECT_EQ(next_cursor(now, "-5000"), "1000");
  EXPECT_EQ(next_cursor(now, "5000.5"), "1000");
  EXPECT_EQ(next_cursor(now, " 5000"), "1000");
  EXPECT_EQ(next_cursor(now, "9007199254740992"), "1000");  // above 2^53 - 1
}

TEST(CursorTest, LargestSafeClientCursorStillAdvances) {
  EXPECT_EQ(next_cursor(kEpoch, "9007199254740991"), "9007199254740992");
}

}  // namespace
}  // namespace ds
