#include "protocol/headers.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace ds {
namespace {

TEST(StrictUintTest, AcceptsCanonicalDecimal) {
  EXPECT_EQ(parse_strict_uint("0"), 0u);
  EXPECT_EQ(parse_strict_uint("1"), 1u);
  EXPECT_EQ(parse_strict_uint("3600"), 3600u);
  EXPECT_EQ(parse_strict_uint("18446744073709551615"), UINT64_MAX);
}

TEST(StrictUintTest, RejectsEverythingTheTtlGrammarForbids) {
  const std::vector<std::string> bad = {
      "",
      "00",
      "03600",
      "00060",
      "+60",
      "-1",
      "60.5",
      "3600.0",
      "1e3",
      "3.6e3",
      "abc",
      " 60",
      "60 ",
      "6 0",
      "0x10",
      "\t1",
      "18446744073709551616",  // UINT64_MAX + 1
      "99999999999999999999",
  };
  for (const auto& s : bad) EXPECT_EQ(parse_strict_uint(s), std::nullopt) << '"' << s << '"';
}

TEST(SafeUintTest, AcceptsUpToTwoPow53MinusOne) {
  EXPECT_EQ(kMaxSafeInteger, 9'007'199'254'740'991u);
  EXPECT_EQ(parse_safe_uint("0"), 0u);
  EXPECT_EQ(parse_safe_uint("5"), 5u);
  EXPECT_EQ(parse_safe_uint("9007199254740991"), kMaxSafeInteger);
}

TEST(SafeUintTest, ToleratesLeadingZeros) {
  EXPECT_EQ(parse_safe_uint("00"), 0u);
  EXPECT_EQ(parse_safe_uint("007"), 7u);
  EXPECT_EQ(parse_safe_uint("0009007199254740991"), kMaxSafeInteger);
}

TEST(SafeUintTest, RejectsNonIntegersAndUnsafeValues) {
  const std::vector<std::string> bad = {
      "",
      "1abc",
      "0xyz",
      "1e3",
      "-1",
      "+1",
      "1.0",
      " 1",
      "1 ",
      "9007199254740992",  // 2^53
      "18446744073709551616",
  };
  for (const auto& s : bad) EXPECT_EQ(parse_safe_uint(s), std::nullopt) << '"' << s << '"';
}

TEST(Rfc3339Test, UtcForms) {
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339_ms("2025-01-01T00:00:00Z"), 1'735'689'600'000);
  EXPECT_EQ(parse_rfc3339_ms("2025-06-01T10:20:30.456Z"), 1'748'773'230'456);
  EXPECT_EQ(parse_rfc3339_ms("2025-06-01T10:20:30.456+00:00"), 1'748'773'230'456);
  EXPECT_EQ(parse_rfc3339_ms("2025-06-01T10:20:30.456-00:00"), 1'748'773'230'456);
  EXPECT_EQ(parse_rfc3339_ms("2025-06-01t10:20:30.456z"), 1'748'773'230'456);
  EXPECT_EQ(parse_rfc3339_ms("2025-06-01 10:20:30.456Z"), 1'748'773'230'456);
  EXPECT_EQ(parse_rfc3339_ms("2024-02-29T12:00:00Z"), 1'709'208'000'000);
  EXPECT_EQ(parse_rfc3339_ms("1969-12-31T23:59:59Z"), -1000);
}

TEST(Rfc3339Test, NumericOffsetsShiftToUtc) {
  EXPECT_EQ(parse_rfc3339_ms("2025-01-01T02:00:00+02:00"), 1'735'689'600'000);
  EXPECT_EQ(parse_rfc3339_ms("2024-12-31T19:30:00-04:30"), 1'735'689'600'000);
}

TEST(Rfc3339Test, FractionalSecondsAreMilliseconds) {
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), 500);
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00.05Z"), 50);
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00.007Z"), 7);
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00.123456789Z"), 123);  // truncated, not rounded
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00.9999Z"), 999);
}

TEST(Rfc3339Test, LeapSecondIsAccepted) {
  EXPECT_EQ(parse_rfc3339_ms("2016-12-31T23:59:60Z"), 1'483'228'800'000);
}

TEST(Rfc3339Test, RejectsMalformedTimestamps) {
  const std::vector<std::string> bad = {
      "",
      "not-a-timestamp",
      "2025-06-01",
      "2025-06-01T10:20:30",        // no zone
      "2025-06-01T10:20Z",          // no seconds
      "2025-06-01X10:20:30Z",       // bad separator
      "25-06-01T10:20:30Z",         // 2-digit year
      "2025-6-01T10:20:30Z",        // 1-digit month
      "2025-13-01T10:20:30Z",       // month 13
      "2025-00-01T10:20:30Z",       // month 0
      "2025-02-30T10:20:30Z",       // Feb 30
      "2025-02-29T10:20:30Z",       // not a leap year
      "2025-06-01T24:00:00Z",       // hour 24
      "2025-06-01T10:60:00Z",       // minute 60
      "2025-06-01T10:20:61Z",       // second 61
      "2025-06-01T10:20:30.Z",      // empty fraction
      "2025-06-01T10:20:30+0200",   // offset without colon
      "2025-06-01T10:20:30+02",     // offset without minutes
      "2025-06-01T10:20:30+24:00",  // offset hour out of range
      "2025-06-01T10:20:30+02:60",  // offset minute out of range
      "2025-06-01T10:20:30Z ",      // trailing space
      " 2025-06-01T10:20:30Z",      // leading space
      "2025-06-01T10:20:30ZZ",      // trailing garbage
      "2025-06-01T10:20:30.456",    // fraction, no zone
  };
  for (const auto& s : bad) EXPECT_EQ(parse_rfc3339_ms(s), std::nullopt) << '"' << s << '"';
}

TEST(TrueFlagTest, OnlyTrueCaseInsensitive) {
  EXPECT_TRUE(is_true_flag("true"));
  EXPECT_TRUE(is_true_flag("TRUE"));
  EXPECT_TRUE(is_true_flag("True"));
  EXPECT_TRUE(is_true_flag("tRuE"));
  EXPECT_TRUE(is_true_flag(" true\t"));  // optional whitespace around a field value
  for (const char* s : {"", "false", "yes", "1", "on", "t", "truee", "tru", "t rue", "true;"}) {
    EXPECT_FALSE(is_true_flag(s)) << '"' << s << '"';
  }
}

TEST(MediaTypeTest, DropsParametersTrimsAndLowerCases) {
  EXPECT_EQ(media_type("Text/Plain; charset=utf-8"), "text/plain");
  EXPECT_EQ(media_type("application/json"), "application/json");
  EXPECT_EQ(media_type("APPLICATION/JSON"), "application/json");
  EXPECT_EQ(media_type("  application/json  ;charset=utf-8"), "application/json");
  EXPECT_EQ(media_type("\tapplication/octet-stream\t"), "application/octet-stream");
  EXPECT_EQ(media_type(""), "");
  EXPECT_EQ(media_type("   "), "");
  EXPECT_EQ(media_type("; charset=utf-8"), "");
}

TEST(MediaTypeTest, JsonModeOnlyForApplicationJson) {
  EXPECT_TRUE(is_json_media_type("application/json"));
  EXPECT_FALSE(is_json_media_type("text/plain"));
  EXPECT_FALSE(is_json_media_type("application/x-json"));
  EXPECT_FALSE(is_json_media_type("application/jsonl"));
  EXPECT_FALSE(is_json_media_type(""));
  // Callers pass media_type() output: parameters are already gone.
  EXPECT_TRUE(is_json_media_type(media_type("Application/JSON; charset=utf-8")));
}

TEST(MediaTypeTest, TextTypesAreSentAsTextInSse) {
  EXPECT_TRUE(is_text_media_type("text/plain"));
  EXPECT_TRUE(is_text_media_type("text/csv"));
  EXPECT_TRUE(is_text_media_type("text/event-stream"));
  EXPECT_TRUE(is_text_media_type("application/json"));
  EXPECT_FALSE(is_text_media_type("application/octet-stream"));
  EXPECT_FALSE(is_text_media_type("application/x-protobuf"));
  EXPECT_FALSE(is_text_media_type("image/png"));
  EXPECT_FALSE(is_text_media_type("text"));
  EXPECT_FALSE(is_text_media_type(""));
}

TEST(TrimTest, SpacesAndTabsOnly) {
  EXPECT_EQ(trim("  a b \t"), "a b");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim(" \t "), "");
  EXPECT_EQ(trim("\na\n"), "\na\n");
}

TEST(IequalsTest, AsciiCaseInsensitive) {
  EXPECT_TRUE(iequals("Content-Type", "content-type"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("abc", "abcd"));
  EXPECT_FALSE(iequals("abc", "abd"));
}

// Issue 13.6: a TTL near 2^63 ms overflowed the expiry time (201, then the
// stream was gone at once).
TEST(TtlTest, AtMostTenYears) {
  EXPECT_EQ(parse_ttl_seconds("0"), 0u);
  EXPECT_EQ(parse_ttl_seconds("3600"), 3600u);
  EXPECT_EQ(parse_ttl_seconds("315360000"), kMaxTtlSeconds);
  EXPECT_EQ(kMaxTtlSeconds, 315360000u);
  for (std::string_view s :
       {"315360001", "9223372036854775", "9223372036854775807", "9223372036854775808",
        "18446744073709551615", "99999999999999999999999", "00060", "-1", ""}) {
    EXPECT_EQ(parse_ttl_seconds(s), std::nullopt) << s;
  }
}

TEST(ExpiresAtTest, AtMostTheEndOfYear9999) {
  EXPECT_EQ(parse_expires_at_ms("2030-01-01T00:00:00Z"), 1893456000000);
  EXPECT_EQ(parse_expires_at_ms("9999-12-31T23:59:59.999Z"), kMaxExpiresAtMs);
  EXPECT_EQ(parse_expires_at_ms("9999-12-31T23:59:59.999+01:00"), kMaxExpiresAtMs - 3600000);
  EXPECT_EQ(parse_expires_at_ms("9999-12-31T23:59:60Z"), std::nullopt);
  EXPECT_EQ(parse_expires_at_ms("9999-12-31T23:59:59Z"), kMaxExpiresAtMs - 999);
  EXPECT_EQ(parse_expires_at_ms("9999-12-31T23:00:00-01:00"), std::nullopt);
  EXPECT_EQ(parse_expires_at_ms("not a time"), std::nullopt);
}

}  // namespace
}  // namespace ds
