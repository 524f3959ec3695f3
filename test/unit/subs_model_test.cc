// Subscriptions' rules (subs/subscription.h, subs/glob.h), without I/O.

#include <gtest/gtest.h>

#include "subs/glob.h"
#include "subs/subscription.h"

namespace ds::subs {
namespace {

Offset off(uint64_t lo) { return Offset{0, lo}; }

Config parse_ok(std::string_view json) {
  auto c = parse_config(json);
  EXPECT_TRUE(std::holds_alternative<Config>(c)) << json;
  return std::holds_alternative<Config>(c) ? std::get<Config>(c) : Config{};
}

std::string parse_error(std::string_view json) {
  auto c = parse_config(json);
  if (auto* p = std::get_if<Problem>(&c)) return p->code;
  return "";
}

State webhook_state(std::string pattern, const std::vector<std::string>& existing,
                    const Tails& tails) {
  auto c = parse_ok(R"({"type":"webhook","pattern":")" + pattern +
                    R"(","webhook":{"url":"https://h.example/x"},"lease_ttl_ms":1000})");
  return create_state("s1", c, "http://h/v1/stream/", 1000, existing, tails);
}

TEST(SubsGlob, SegmentsAndDoubleStar) {
  EXPECT_TRUE(glob_match("events/*", "events/a"));
  EXPECT_FALSE(glob_match("events/*", "events/a/b"));
  EXPECT_FALSE(glob_match("events/*", "events"));
  EXPECT_TRUE(glob_match("events/**", "events"));
  EXPECT_TRUE(glob_match("events/**", "events/a/b/c"));
  EXPECT_TRUE(glob_match("**/inbox", "agents/1/inbox"));
  EXPECT_TRUE(glob_match("**/inbox", "inbox"));
  EXPECT_FALSE(glob_match("agents/*/inbox", "agents/1/2/inbox"));
  EXPECT_TRUE(glob_match("/events/*/", "events/x"));
  EXPECT_TRUE(glob_match("a/%2A", "a/*"));
  EXPECT_FALSE(glob_match("a/%2A", "a/b"));
  EXPECT_FALSE(glob_match("eventsx/*", "events/a"));
}

TEST(SubsGlob, LiteralPrefix) {
  EXPECT_EQ(glob_literal_prefix("events/*"), "events/");
  EXPECT_EQ(glob_literal_prefix("a/b/**/c"), "a/b/");
  EXPECT_EQ(glob_literal_prefix("**"), "");
  EXPECT_EQ(glob_literal_prefix("exact/name"), "exact/name");
}

TEST(SubsConfig, NormalisedAndCanonical) {
  auto a = parse_ok(
      R"({"type":"webhook","pattern":"/events/*","streams":["b","/a/","b"],"webhook":{"url":"https://x/y"}})");
  auto b = parse_ok(
      R"({"streams":["a","b"],"webhook":{"url":"https://x/y"},"pattern":"events/*","type":"webhook","lease_ttl_ms":30000})");
  EXPECT_EQ(a.canonical(), b.canonical());
  EXPECT_EQ(a.streams, (std::vector<std::string>{"a", "b"}));
  auto c = parse_ok(
      R"({"type":"webhook","pattern":"events/*","webhook":{"url":"https://x/y"},"description":"d"})");
  EXPECT_NE(a.canonical(), c.canonical());
}

TEST(SubsConfig, Rejections) {
  EXPECT_EQ(parse_error("not json"), "INVALID_REQUEST");
  EXPECT_EQ(parse_error(R"({"type":"other","pattern":"a"})"), "INVALID_REQUEST");
  EXPECT_EQ(parse_error(R"({"type":"webhook","webhook":{"url":"https://x"}})"), "INVALID_REQUEST");
  EXPECT_EQ(parse_error(R"({"type":"webhook","pattern":"a"})"), "INVALID_REQUEST");
  EXPECT_EQ(parse_error(R"({"type":"pull-wake","pattern":"a"})"), "INVALID_REQUEST");
  EXPECT_EQ(
      parse_error(R"({"type":"pull-wake","pattern":"a","wake_stream":"w","lease_ttl_ms":999})"),
      "INVALID_REQUEST");
  EXPECT_EQ(
      parse_error(R"({"type":"pull-wake","pattern":"a","wake_stream":"w","lease_ttl_ms":600001})"),
      "INVALID_REQUEST");
  EXPECT_EQ(
      parse_error(R"({"type":"pull-wake","pattern":"a","wake_stream":"w","lease_ttl_ms":1.5})"),
      "INVALID_REQUEST");
  EXPECT_EQ(parse_error(R"({"type":"webhook","streams":[""],"webhook":{"url":"https://x"}})"),
            "INVALID_REQUEST");
  EXPECT_EQ(parse_error(R"({"type":"pull-wake","streams":["a"],"wake_stream":"w"})"), "");
}

TEST(SubsState, BackfillLinksExistingMatchesAtTheirTails) {
  auto s = webhook_state("events/*", {"events/a", "other/b", "events/a/deep", "__ds/x"},
                         {{"events/a", off(40)}});
  ASSERT_EQ(s.links.size(), 1u);
  EXPECT_EQ(s.links["events/a"].acked, off(40));
  EXPECT_FALSE(has_pending(s, {{"events/a", off(40)}}));
  EXPECT_TRUE(has_pending(s, {{"events/a", off(41)}}));
}

TEST(SubsState, AWriteToANewMatchingStreamIsPendingFromItsFirstByte) {
  auto s = webhook_state("events/*", {}, {});
  EXPECT_FALSE(note_write(s, "other/x"));
  EXPECT_TRUE(note_write(s, "events/new"));
  EXPECT_FALSE(s.links["events/new"].acked.has_value());
  EXPECT_FALSE(has_pending(s, {{"events/new", Offset{}}}));
  EXPECT_TRUE(has_pending(s, {{"events/new", off(5)}}));
}

TEST(SubsState, OneWakeInFlightAndGenerationsIncrease) {
  auto s = webhook_state("events/*", {}, {});
  note_write(s, "events/a");
  Tails t{{"events/a", off(5)}};
  EXPECT_TRUE(maybe_wake(s, t, "w1", 2000));
  EXPECT_EQ(s.generation, 1u);
  EXPECT_EQ(s.wake->snapshot["events/a"], off(5));
  EXPECT_EQ(s.wake->next_attempt_ms, 2000);
  EXPECT_FALSE(maybe_wake(s, {{"events/a", off(9)}}, "w2", 2001));  // in flight
  EXPECT_EQ(s.wake->id, "w1");
}

TEST(SubsState, DoneAutoAcksTheSnapshotAndLaterWritesWakeAgain) {
  auto s = webhook_state("events/*", {}, {});
  note_write(s, "events/a");
  maybe_wake(s, {{"events/a", off(5)}}, "w1", 2000);
  delivery_succeeded(s, /*done=*/true, 2100);
  EXPECT_FALSE(s.wake);
  EXPECT_EQ(s.links["events/a"].acked, off(5));
  Tails later{{"events/a", off(8)}};
  EXPECT_TRUE(maybe_wake(s, later, "w2", 2200));
  EXPECT_EQ(s.generation, 2u);
}

TEST(SubsState, DoneAcksWhatTheLastAttemptShowed) {
  auto s = webhook_state("events/*", {}, {});
  note_write(s, "events/a");
  maybe_wake(s, {{"events/a", off(5)}}, "w1", 2000);
  delivery_failed(s, 2100, 0.0);
  attempt_started(s, 20000, {{"events/a", off(9)}});  // the retry's body shows tail 9
  EXPECT_EQ(s.wake->next_attempt_ms, 20000);
  delivery_succeeded(s, /*done=*/true, 3200);
  EXPECT_EQ(s.links["events/a"].acked, off(9));
}

TEST(SubsState, FencingNeedsGenerationAndWakeId) {
  auto s = webhook_state("events/*", {}, {});
  note_write(s, "events/a");
  maybe_wake(s, {{"events/a", off(5)}}, "w1", 2000);
  EXPECT_FALSE(fence(s, 1, 1, "w1"));
  EXPECT_EQ(fence(s, 0, 1, "w1")->code, "FENCED");
  EXPECT_EQ(fence(s, 1, 2, "w1")->code, "FENCED");
  EXPECT_EQ(fence(s, 1, std::nullopt, "w1")->code, "FENCED");
  EXPECT_EQ(fence(s, 1, 1, "w0")->code, "FENCED");
  release(s);
  EXPECT_EQ(fence(s, 1, 1, "w1")->code, "FENCED");
}

TEST(SubsState, AcksAreCheckedAllOrNothing) {
  auto s = webhook_state("events/*", {"events/a", "events/b"},
                         {{"events/a", off(10)}, {"events/b", off(10)}});
  Tails t{{"events/a", off(20)}, {"events/b", off(20)}};
  maybe_wake(s, t, "w1", 0);
  auto ack = [&](std::vector<std::pair<std::string, std::string>> acks, bool done) {
    AckRequest r;
    r.generation = 1;
    r.wake_id = "w1";
    r.acks = std::move(acks);
    r.done = done;
    return apply_ack(s, r, t, 5000);
  };
  EXPECT_EQ(ack({{"events/a", off(15).str()}, {"events/zzz", off(1).str()}}, false)->code,
            "INVALID_OFFSET");
  EXPECT_EQ(s.links["events/a"].acked, off(10));  // nothing applied
  EXPECT_EQ(ack({{"events/a", "-1"}}, false)->code, "INVALID_OFFSET");
  EXPECT_EQ(ack({{"events/a", off(9).str()}}, false)->code, "INVALID_OFFSET");
  EXPECT_EQ(ack({{"events/a", off(21).str()}}, false)->code, "INVALID_OFFSET");
  EXPECT_EQ(ack({{"events/a", "garbage"}}, false)->code, "INVALID_OFFSET");
  EXPECT_FALSE(ack({{"events/a", off(15).str()}}, false));  // heartbeat
  EXPECT_EQ(s.wake->lease_until_ms, 6000);
  EXPECT_FALSE(ack({{"events/a", off(20).str()}, {"events/b", off(20).str()}}, true));
  EXPECT_FALSE(s.wake);
  EXPECT_FALSE(has_pending(s, t));
}

TEST(SubsState, PullWakeClaimLeaseAndExpiry) {
  auto c = parse_ok(
      R"({"type":"pull-wake","pattern":"events/*","wake_stream":"wake/pool","lease_ttl_ms":1000})");
  auto s = create_state("p", c, "", 0, {}, {});
  Tails none;
  EXPECT_EQ(claim(s, "w1", none, "x", 10)->code, "NO_PENDING_WORK");
  note_write(s, "events/a");
  Tails t{{"events/a", off(3)}};
  EXPECT_TRUE(maybe_wake(s, t, "wk1", 10));  // the wake event goes to the wake stream
  EXPECT_EQ(next_deadline_ms(s), 0);         // unclaimed: no lease yet
  EXPECT_FALSE(claim(s, "w1", t, "unused", 20));
  EXPECT_EQ(s.wake->id, "wk1");
  EXPECT_EQ(s.wake->lease_until_ms, 1020);
  auto busy = claim(s, "w2", t, "x", 30);
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->code, "ALREADY_CLAIMED");
  EXPECT_NE(busy->extra.find("\"current_holder\":\"w1\""), std::string::npos);
  EXPECT_FALSE(expire_lease(s, 1019));
  EXPECT_TRUE(expire_lease(s, 1020));
  EXPECT_FALSE(s.wake);
  EXPECT_TRUE(maybe_wake(s, t, "wk2", 1020));  // still pending: woken again
  EXPECT_EQ(s.generation, 2u);
}

TEST(SubsState, RetryBackoffFromOneToSixtySecondsWithJitter) {
  auto s = webhook_state("events/*", {}, {});
  note_write(s, "events/a");
  maybe_wake(s, {{"events/a", off(1)}}, "w1", 0);
  std::vector<int64_t> delays;
  for (int i = 0; i < 9; ++i) {
    delivery_failed(s, 0, 0.0);
    delays.push_back(s.wake->next_attempt_ms);
  }
  EXPECT_EQ(delays.front(), 1000);
  EXPECT_EQ(delays[1], 2000);
  EXPECT_EQ(delays[5], 32000);
  EXPECT_EQ(delays.back(), 60000);
  delivery_failed(s, 0, 1.0);
  EXPECT_EQ(s.wake->next_attempt_ms, 72000);
  delivery_failed(s, 0, -1.0);
  EXPECT_EQ(s.wake->next_attempt_ms, 48000);
  EXPECT_EQ(next_deadline_ms(s), 48000);
}

TEST(SubsState, ExplicitLinksOutliveAndYieldToGlobLinks) {
  auto s = webhook_state("events/*", {}, {});
  add_explicit(s, {"events/a", "manual/b"}, {{"manual/b", off(7)}});
  EXPECT_EQ(s.links["manual/b"].acked, off(7));
  note_write(s, "events/a");
  s.links["events/a"].by_glob = true;
  remove_explicit(s, "events/a");
  EXPECT_TRUE(s.links.count("events/a"));  // the glob link stays
  remove_explicit(s, "manual/b");
  EXPECT_FALSE(s.links.count("manual/b"));
  remove_explicit(s, "absent");  // idempotent
}

TEST(SubsRecord, RoundTripsEveryField) {
  auto s = webhook_state("events/*", {"events/a"}, {{"events/a", off(4)}});
  add_explicit(s, {"x/y"}, {});
  note_write(s, "events/b");
  maybe_wake(s, {{"events/a", off(9)}, {"events/b", off(2)}}, "w_1", 123);
  delivery_failed(s, 200, 0.5);
  s.version = 7;
  auto back = from_record(to_record(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(to_record(*back), to_record(s));
  EXPECT_EQ(back->wake->attempts, 1u);
  EXPECT_FALSE(back->links["events/b"].acked.has_value());
  EXPECT_FALSE(from_record("{}"));
  EXPECT_FALSE(from_record("[1]"));
}

TEST(SubsApi, ViewMatchesTheProtocolShape) {
  auto s = webhook_state("events/*", {"events/a"}, {{"events/a", off(4)}});
  add_explicit(s, {"events/a"}, {});
  auto json = to_api_json(s, {{"events/a", off(4)}}, R"({"alg":"ed25519"})");
  EXPECT_NE(json.find(R"("id":"s1","subscription_id":"s1","type":"webhook")"), std::string::npos);
  EXPECT_NE(json.find(R"("link_type":"explicit")"), std::string::npos);
  EXPECT_NE(json.find(R"("webhook":{"url":"https://h.example/x","signing":{"alg":"ed25519"}})"),
            std::string::npos);
  EXPECT_NE(json.find(R"("status":"active")"), std::string::npos);
  EXPECT_EQ(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(iso8601_ms(1778324210123), "2026-05-09T10:56:50.123Z");
}

}  // namespace
}  // namespace ds::subs
