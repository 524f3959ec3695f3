#include "protocol/rules.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ds {
namespace {

// ---------------------------------------------------------------------------
// Producer state machine (PROTOCOL.md 5.2.1, "Validation Logic")

struct ProducerCase {
  const char* name;
  std::optional<ProducerState> state;
  uint64_t epoch;
  uint64_t seq;
  ProducerVerdict verdict;
};

TEST(CheckProducerTest, EveryVerdict) {
  const ProducerState s{/*epoch=*/2, /*last_seq=*/5, /*updated_ms=*/0};
  const std::vector<ProducerCase> cases = {
      {"new producer starts at seq 0", std::nullopt, 0, 0, ProducerVerdict::accept},
      {"new producer may start at a later epoch", std::nullopt, 7, 0, ProducerVerdict::accept},
      {"new producer skipping seq 0", std::nullopt, 0, 1, ProducerVerdict::seq_gap},
      {"new producer, later epoch, seq > 0", std::nullopt, 3, 4, ProducerVerdict::seq_gap},
      {"older epoch, seq 0", s, 1, 0, ProducerVerdict::stale_epoch},
      {"older epoch, next seq", s, 1, 6, ProducerVerdict::stale_epoch},
      {"epoch 0 after epoch 2", s, 0, 0, ProducerVerdict::stale_epoch},
      {"newer epoch at seq 0", s, 3, 0, ProducerVerdict::accept},
      {"much newer epoch at seq 0", s, 100, 0, ProducerVerdict::accept},
      {"newer epoch at seq 1", s, 3, 1, ProducerVerdict::bad_epoch_start},
      {"newer epoch continuing the old seq", s, 3, 6, ProducerVerdict::bad_epoch_start},
      {"same epoch, seq 0", s, 2, 0, ProducerVerdict::duplicate},
      {"same epoch, older seq", s, 2, 4, ProducerVerdict::duplicate},
      {"same epoch, last seq", s, 2, 5, ProducerVerdict::duplicate},
      {"same epoch, next seq", s, 2, 6, ProducerVerdict::accept},
      {"same epoch, seq + 2", s, 2, 7, ProducerVerdict::seq_gap},
      {"same epoch, far ahead", s, 2, 1000, ProducerVerdict::seq_gap},
  };
  for (const auto& c : cases) {
    const ProducerState* state = c.state ? &*c.state : nullptr;
    EXPECT_EQ(check_producer(state, ProducerTriple{"p", c.epoch, c.seq}), c.verdict) << c.name;
  }
}

TEST(CheckProducerTest, BootstrapRestartAndFencing) {
  // Section 5.2.1 "Bootstrap and Restart Flow", step by step.
  ProducerState st{0, 0, 0};
  EXPECT_EQ(check_producer(nullptr, {"p", 0, 0}), ProducerVerdict::accept);
  EXPECT_EQ(check_producer(&st, {"p", 0, 1}), ProducerVerdict::accept);
  st.last_seq = 1;
  EXPECT_EQ(check_producer(&st, {"p", 1, 0}), ProducerVerdict::accept);
  st = {1, 0, 0};
  EXPECT_EQ(check_producer(&st, {"p", 0, 2}), ProducerVerdict::stale_epoch);  // zombie
}

// ---------------------------------------------------------------------------
// decide_append

constexpr int64_t kNow = 1'700'000'000'000;

StreamMeta text_stream() {
  StreamMeta m;
  m.id = 1;
  m.path = "s";
  m.config.content_type = "text/plain";
  m.tail = Offset{0, 10};
  return m;
}

StreamMeta json_stream() {
  StreamMeta m = text_stream();
  m.config.content_type = "application/json";
  return m;
}

AppendRequest append(std::string body, std::string content_type = "text/plain") {
  AppendRequest r;
  r.path = "s";
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

AppendRequest close_only() {
  AppendRequest r;
  r.path = "s";
  r.close = true;
  return r;
}

const AppendAccepted& accepted(const Result<AppendDecision>& r) {
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  static const AppendAccepted kNone;
  if (!r.ok() || !std::holds_alternative<AppendAccepted>(r.value())) {
    ADD_FAILURE() << "not AppendAccepted";
    return kNone;
  }
  return std::get<AppendAccepted>(r.value());
}

AppendDuplicate duplicate(const Result<AppendDecision>& r) {
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r.ok() || !std::holds_alternative<AppendDuplicate>(r.value())) {
    ADD_FAILURE() << "not AppendDuplicate";
    return {};
  }
  return std::get<AppendDuplicate>(r.value());
}

errc error_code(const Result<AppendDecision>& r) { return r.ok() ? errc::ok : r.error().code; }

TEST(DecideAppendTest, PlainAppendStoresTheBodyAsIs) {
  auto r = decide_append(text_stream(), nullptr, append("hello\nworld"), kNow);
  const auto& a = accepted(r);
  EXPECT_EQ(a.record, "hello\nworld");
  EXPECT_FALSE(a.close);
  EXPECT_FALSE(a.producer.has_value());
}

TEST(DecideAppendTest, TakingTheBodyMovesItIntoTheRecordOfAByteStream) {
  auto req = append(std::string(1000, 'x'));
  const char* data = req.body.data();
  auto r = decide_append_taking_body(text_stream(), nullptr, req, kNow);
  const auto& a = accepted(r);
  EXPECT_EQ(a.record, std::string(1000, 'x'));
  EXPECT_EQ(a.record.data(), data) << "moved, not copied";
  EXPECT_TRUE(req.body.empty());
}

TEST(DecideAppendTest, TakingTheBodyOfAJsonStreamFramesItAndLeavesTheRequest) {
  auto req = append("[1,2]", "application/json");
  const std::string framed = accepted(decide_append(json_stream(), nullptr, req, kNow)).record;
  auto r = decide_append_taking_body(json_stream(), nullptr, req, kNow);
  EXPECT_EQ(accepted(r).record, framed);
  EXPECT_EQ(req.body, "[1,2]");
}

TEST(DecideAppendTest, TakingTheBodyOfARefusedAppendLeavesIt) {
  auto req = append("x", "application/json");
  auto r = decide_append_taking_body(text_stream(), nullptr, req, kNow);
  EXPECT_EQ(error_code(r), errc::content_type_mismatch);
  EXPECT_EQ(req.body, "x");
}

TEST(DecideAppendTest, AppendAndClose) {
  auto req = append("final");
  req.close = true;
  auto r = decide_append(text_stream(), nullptr, req, kNow);
  const auto& a = accepted(r);
  EXPECT_EQ(a.record, "final");
  EXPECT_TRUE(a.close);
}

TEST(DecideAppendTest, CloseOnlyOnOpenStreamStoresNothing) {
  auto r = decide_append(text_stream(), nullptr, close_only(), kNow);
  const auto& a = accepted(r);
  EXPECT_EQ(a.record, "");
  EXPECT_TRUE(a.close);
}

TEST(DecideAppendTest, CloseOnlyIgnoresContentType) {
  auto req = close_only();
  req.content_type = "text/plain";
  auto r = decide_append(json_stream(), nullptr, req, kNow);
  EXPECT_TRUE(accepted(r).close);
}

TEST(DecideAppendTest, ContentTypeComparesMediaTypesOnly) {
  EXPECT_EQ(accepted(decide_append(text_stream(), nullptr, append("x", "TEXT/PLAIN"), kNow)).record,
            "x");
  EXPECT_EQ(accepted(decide_append(text_stream(), nullptr, append("x", "text/plain; charset=utf-8"),
                                   kNow))
                .record,
            "x");
  auto r = decide_append(text_stream(), nullptr, append("{}", "application/json"), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::content_type_mismatch);
}

TEST(DecideAppendTest, AcceptedProducerGetsNewState) {
  auto req = append("a");
  req.producer = ProducerTriple{"p", 3, 0};
  ProducerState st{2, 9, 1};
  auto r = decide_append(text_stream(), &st, req, kNow);
  const auto& a = accepted(r);
  ASSERT_TRUE(a.producer.has_value());
  EXPECT_EQ(a.producer->epoch, 3u);
  EXPECT_EQ(a.producer->last_seq, 0u);
  EXPECT_EQ(a.producer->updated_ms, kNow);
}

TEST(DecideAppendTest, ProducerCloseOnlyAdvancesState) {
  auto req = close_only();
  req.producer = ProducerTriple{"p", 0, 1};
  ProducerState st{0, 0, 0};
  auto r = decide_append(text_stream(), &st, req, kNow);
  const auto& a = accepted(r);
  EXPECT_TRUE(a.close);
  EXPECT_EQ(a.record, "");
  ASSERT_TRUE(a.producer.has_value());
  EXPECT_EQ(a.producer->last_seq, 1u);
}

TEST(DecideAppendTest, DuplicateReportsHighestAcceptedSeq) {
  auto req = append("again");
  req.producer = ProducerTriple{"p", 0, 1};
  ProducerState st{0, 2, 0};
  auto d = duplicate(decide_append(text_stream(), &st, req, kNow));
  EXPECT_EQ(d.epoch, 0u);
  EXPECT_EQ(d.seq, 2u);
  EXPECT_FALSE(d.closed);
}

TEST(DecideAppendTest, StaleEpochCarriesCurrentEpoch) {
  auto req = append("zombie");
  req.producer = ProducerTriple{"p", 0, 1};
  ProducerState st{1, 0, 0};
  auto r = decide_append(text_stream(), &st, req, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::producer_stale_epoch);
  EXPECT_EQ(r.error().producer_epoch, 1u);
}

TEST(DecideAppendTest, SeqGapCarriesExpectedAndReceived) {
  auto req = append("gap");
  req.producer = ProducerTriple{"p", 0, 2};
  ProducerState st{0, 0, 0};
  auto r = decide_append(text_stream(), &st, req, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::producer_seq_gap);
  EXPECT_EQ(r.error().expected_seq, 1u);
  EXPECT_EQ(r.error().received_seq, 2u);

  // No state yet: seq 0 is expected.
  req.producer = ProducerTriple{"q", 0, 3};
  auto fresh = decide_append(text_stream(), nullptr, req, kNow);
  ASSERT_FALSE(fresh.ok());
  EXPECT_EQ(fresh.error().code, errc::producer_seq_gap);
  EXPECT_EQ(fresh.error().expected_seq, 0u);
  EXPECT_EQ(fresh.error().received_seq, 3u);
}

TEST(DecideAppendTest, NewEpochMustStartAtZero) {
  auto req = append("x");
  req.producer = ProducerTriple{"p", 1, 5};
  ProducerState st{0, 0, 0};
  EXPECT_EQ(error_code(decide_append(text_stream(), &st, req, kNow)),
            errc::producer_bad_epoch_start);
}

TEST(DecideAppendTest, StreamSeqMustStrictlyIncreaseBytewise) {
  struct Case {
    std::optional<std::string> last;
    std::string next;
    bool ok;
  };
  const std::vector<Case> cases = {
      {std::nullopt, "001", true}, {"001", "002", true}, {"002", "001", false},
      {"001", "001", false},       {"2", "10", false},   {"09", "10", true},
      {"a", "B", false},           {"B", "a", true},     {"a", "aa", true},
  };
  for (const auto& c : cases) {
    StreamMeta m = text_stream();
    m.last_stream_seq = c.last;
    auto req = append("x");
    req.stream_seq = c.next;
    auto r = decide_append(m, nullptr, req, kNow);
    EXPECT_EQ(error_code(r), c.ok ? errc::ok : errc::stream_seq_regression)
        << c.last.value_or("<none>") << " -> " << c.next;
  }
}

TEST(DecideAppendTest, JsonBodyIsFramed) {
  auto r = decide_append(json_stream(), nullptr,
                         append(R"([{"a":1}, {"b":2}])", "application/json"), kNow);
  EXPECT_EQ(accepted(r).record, R"({"a":1},{"b":2})");

  auto single =
      decide_append(json_stream(), nullptr, append(R"( {"a":1} )", "application/json"), kNow);
  EXPECT_EQ(accepted(single).record, R"({"a":1})");
}

TEST(DecideAppendTest, JsonWithCharsetIsStillJsonMode) {
  StreamMeta m = json_stream();
  m.config.content_type = "application/json; charset=utf-8";
  auto r = decide_append(m, nullptr, append("[1,2]", "application/json; charset=utf-8"), kNow);
  EXPECT_EQ(accepted(r).record, "1,2");
}

TEST(DecideAppendTest, TextStreamDoesNotParseJson) {
  auto r = decide_append(text_stream(), nullptr, append("[1, 2]"), kNow);
  EXPECT_EQ(accepted(r).record, "[1, 2]");
}

TEST(DecideAppendTest, EmptyJsonArrayIsRejected) {
  auto r = decide_append(json_stream(), nullptr, append("[]", "application/json"), kNow);
  EXPECT_EQ(error_code(r), errc::empty_json_array);

  auto with_producer = append(" [ ] ", "application/json");
  with_producer.producer = ProducerTriple{"p", 0, 0};
  EXPECT_EQ(error_code(decide_append(json_stream(), nullptr, with_producer, kNow)),
            errc::empty_json_array);

  auto and_close = append("[]", "application/json");
  and_close.close = true;
  EXPECT_EQ(error_code(decide_append(json_stream(), nullptr, and_close, kNow)),
            errc::empty_json_array);
}

TEST(DecideAppendTest, InvalidJsonIsRejected) {
  auto r =
      decide_append(json_stream(), nullptr, append("{ invalid json }", "application/json"), kNow);
  EXPECT_EQ(error_code(r), errc::bad_json);
}

// --- Closed streams --------------------------------------------------------

StreamMeta closed_stream(std::optional<ProducerTriple> by = std::nullopt) {
  StreamMeta m = text_stream();
  m.closed = true;
  m.closed_by = std::move(by);
  return m;
}

TEST(DecideAppendTest, AppendToClosedStreamIsConflictWithTailAndClosedFlag) {
  auto r = decide_append(closed_stream(), nullptr, append("late"), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::stream_closed);
  EXPECT_TRUE(r.error().closed);
  EXPECT_EQ(r.error().tail, (Offset{0, 10}));
}

TEST(DecideAppendTest, AppendAndCloseToClosedStreamIsNotIdempotent) {
  auto req = append("late");
  req.close = true;
  auto r = decide_append(closed_stream(), nullptr, req, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::stream_closed);
  EXPECT_TRUE(r.error().closed);
}

TEST(DecideAppendTest, CloseOnlyIsIdempotent) {
  auto r = decide_append(closed_stream(), nullptr, close_only(), kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(std::holds_alternative<AlreadyClosed>(*r));

  // Also when the closed stream was closed by a producer.
  auto by_producer =
      decide_append(closed_stream(ProducerTriple{"p", 0, 0}), nullptr, close_only(), kNow);
  ASSERT_TRUE(by_producer.ok());
  EXPECT_TRUE(std::holds_alternative<AlreadyClosed>(*by_producer));

  // And whatever Content-Type rides along.
  auto req = close_only();
  req.content_type = "application/json";
  auto typed = decide_append(closed_stream(), nullptr, req, kNow);
  ASSERT_TRUE(typed.ok());
  EXPECT_TRUE(std::holds_alternative<AlreadyClosed>(*typed));
}

TEST(DecideAppendTest, ClosingTupleRepeatIsDuplicate) {
  const ProducerTriple closer{"p", 0, 3};
  ProducerState st{0, 3, 0};

  // Append-and-close, repeated with any body: deduplicated against the closing tuple.
  auto req = append("body-B");
  req.close = true;
  req.producer = closer;
  auto d = duplicate(decide_append(closed_stream(closer), &st, req, kNow));
  EXPECT_EQ(d.epoch, 0u);
  EXPECT_EQ(d.seq, 3u);
  EXPECT_TRUE(d.closed);

  // Close-only with the closing tuple.
  auto co = close_only();
  co.producer = closer;
  auto d2 = duplicate(decide_append(closed_stream(closer), &st, co, kNow));
  EXPECT_EQ(d2.seq, 3u);
  EXPECT_TRUE(d2.closed);
}

TEST(DecideAppendTest, OtherTuplesOnAClosedStreamConflict) {
  const ProducerTriple closer{"p", 0, 0};
  ProducerState st{0, 0, 0};
  for (const ProducerTriple& other :
       {ProducerTriple{"q", 0, 0}, ProducerTriple{"p", 0, 1}, ProducerTriple{"p", 1, 0}}) {
    auto req = append("more");
    req.close = true;
    req.producer = other;
    auto r = decide_append(closed_stream(closer), &st, req, kNow);
    ASSERT_FALSE(r.ok()) << other.id << " " << other.epoch << " " << other.seq;
    EXPECT_EQ(r.error().code, errc::stream_closed);
    EXPECT_TRUE(r.error().closed);

    // A producer close-only that did not close the stream is not a duplicate either.
    auto co = close_only();
    co.producer = other;
    EXPECT_EQ(error_code(decide_append(closed_stream(closer), &st, co, kNow)), errc::stream_closed);
  }
}

// --- Error precedence: closed > content type > producer > Stream-Seq > body ---

struct Conflicts {
  bool closed = false;
  bool type_mismatch = false;
  bool stale_producer = false;
  bool seq_regression = false;
  bool bad_body = false;
};

errc decide_with(const Conflicts& c) {
  StreamMeta m = json_stream();
  m.closed = c.closed;
  m.last_stream_seq = "005";
  ProducerState st{4, 0, 0};
  AppendRequest req = append(c.bad_body ? "{ invalid" : R"({"ok":true})",
                             c.type_mismatch ? "text/plain" : "application/json");
  req.producer = ProducerTriple{"p", c.stale_producer ? 3u : 4u, 1};
  req.stream_seq = c.seq_regression ? "004" : "006";
  return error_code(decide_append(m, &st, req, kNow));
}

TEST(DecideAppendTest, ErrorPrecedence) {
  EXPECT_EQ(decide_with({}), errc::ok);
  EXPECT_EQ(decide_with({true, true, true, true, true}), errc::stream_closed);
  EXPECT_EQ(decide_with({false, true, true, true, true}), errc::content_type_mismatch);
  EXPECT_EQ(decide_with({false, false, true, true, true}), errc::producer_stale_epoch);
  EXPECT_EQ(decide_with({false, false, false, true, true}), errc::stream_seq_regression);
  EXPECT_EQ(decide_with({false, false, false, false, true}), errc::bad_json);
  // Each condition alone.
  EXPECT_EQ(decide_with({true, false, false, false, false}), errc::stream_closed);
  EXPECT_EQ(decide_with({false, true, false, false, false}), errc::content_type_mismatch);
  EXPECT_EQ(decide_with({false, false, true, false, false}), errc::producer_stale_epoch);
  EXPECT_EQ(decide_with({false, false, false, true, false}), errc::stream_seq_regression);
}

TEST(DecideAppendTest, ContentTypeIsCheckedBeforeJsonValidity) {
  auto r = decide_append(text_stream(), nullptr, append("{ invalid", "application/json"), kNow);
  EXPECT_EQ(error_code(r), errc::content_type_mismatch);
}

TEST(DecideAppendTest, ProducerDuplicateWinsOverStreamSeqRegression) {
  StreamMeta m = text_stream();
  m.last_stream_seq = "app-seq-001";
  ProducerState st{0, 0, 0};
  auto req = append("hello");
  req.producer = ProducerTriple{"p", 0, 0};
  req.stream_seq = "app-seq-001";
  auto d = duplicate(decide_append(m, &st, req, kNow));
  EXPECT_EQ(d.seq, 0u);
}

TEST(DecideAppendTest, ProducerDuplicateWinsOverBadBody) {
  ProducerState st{0, 0, 0};
  auto req = append("[]", "application/json");
  req.producer = ProducerTriple{"p", 0, 0};
  auto d = duplicate(decide_append(json_stream(), &st, req, kNow));
  EXPECT_EQ(d.seq, 0u);
}

// ---------------------------------------------------------------------------
// If-Match: conditional appends

// text_stream(): id 1, tail 0000000000000000_0000000000000010.
constexpr const char* kTail = "0000000000000000_0000000000000010";
constexpr const char* kOther = "0000000000000000_0000000000000009";

TailExpectation expect(std::string_view value) {
  auto r = parse_if_match(value);
  EXPECT_TRUE(r.ok()) << value;
  return r.ok() ? *r : TailExpectation{};
}

TEST(ParseIfMatchTest, AcceptedForms) {
  EXPECT_TRUE(expect("*").any);
  EXPECT_TRUE(expect("  * ").any);
  const std::string quoted = std::string("\"") + kTail + "\"";
  for (const std::string& v :
       {quoted, std::string(kTail), " " + quoted + " ",
        std::string("\"1:") + kOther + ":" + kTail + "\"",
        std::string("\"1:0000000000000000_0000000000000000:") + kTail + ":c\""}) {
    auto e = expect(v);
    EXPECT_FALSE(e.any) << v;
    ASSERT_EQ(e.tags.size(), 1u) << v;
    EXPECT_EQ(e.tags[0].tail, (Offset{0, 10})) << v;
  }
  EXPECT_FALSE(expect(quoted).tags[0].stream_id.has_value());
  EXPECT_EQ(expect(std::string("\"1:") + kOther + ":" + kTail + "\"").tags[0].stream_id, 1u);
  // A list: every tag counts.
  auto list = expect(std::string("\"") + kOther + "\", \"" + kTail + "\"");
  EXPECT_EQ(list.tags.size(), 2u);
}

TEST(ParseIfMatchTest, TagsTheServerNeverIssuesOrWeakTagsMatchNothing) {
  for (std::string_view v : {R"("abc")", R"("")", R"(W/"0000000000000000_0000000000000010")",
                             R"("1:0000000000000000_0000000000000010")", R"("x:a:b")"}) {
    auto e = expect(v);
    EXPECT_FALSE(e.any) << v;
    EXPECT_TRUE(e.tags.empty()) << v;
  }
}

TEST(ParseIfMatchTest, MalformedValuesAreBadRequests) {
  for (std::string_view v :
       {"", "  ", ",", "abc", "\"unterminated", "0000000000000000_000000000000001", "\"a\" \"b\"",
        "*, \"a\"", "W/0000000000000000_0000000000000010", "\"a\"x", "\"a b\""}) {
    auto r = parse_if_match(v);
    ASSERT_FALSE(r.ok()) << v;
    EXPECT_EQ(r.error().code, errc::bad_request) << v;
  }
}

TEST(TailMatchesTest, TailAndIncarnation) {
  const StreamMeta m = text_stream();
  EXPECT_TRUE(tail_matches(m, expect("*")));
  EXPECT_TRUE(tail_matches(m, expect(kTail)));
  EXPECT_FALSE(tail_matches(m, expect(kOther)));
  EXPECT_TRUE(tail_matches(m, expect(std::string("\"") + kOther + "\", \"" + kTail + "\"")));
  // The HEAD/GET ETag: its end is the tail, its id the incarnation.
  EXPECT_TRUE(tail_matches(
      m, expect(std::string("\"1:0000000000000000_0000000000000000:") + kTail + "\"")));
  EXPECT_FALSE(tail_matches(m, expect(std::string("\"2:0000000000000000_0000000000000000:") +
                                      kTail + "\"")));  // a former stream at this path
  EXPECT_FALSE(tail_matches(m, expect(R"("abc")")));
}

AppendRequest conditional(std::string_view if_match, std::string body = "more") {
  AppendRequest r = append(std::move(body));
  r.if_match = expect(if_match);
  return r;
}

TEST(DecideAppendTest, IfMatchOnTheTailAppends) {
  EXPECT_EQ(accepted(decide_append(text_stream(), nullptr, conditional(kTail), kNow)).record,
            "more");
  EXPECT_EQ(accepted(decide_append(text_stream(), nullptr, conditional("*"), kNow)).record, "more");
}

TEST(DecideAppendTest, StaleIfMatchIsPreconditionFailedWithTheTail) {
  auto r = decide_append(text_stream(), nullptr, conditional(kOther), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::precondition_failed);
  EXPECT_EQ(r.error().tail, (Offset{0, 10}));
  EXPECT_FALSE(r.error().closed);
}

TEST(DecideAppendTest, IfMatchAppliesToCloseOnly) {
  auto req = conditional(kOther, "");
  req.close = true;
  EXPECT_EQ(error_code(decide_append(text_stream(), nullptr, req, kNow)),
            errc::precondition_failed);
  req.if_match = expect(kTail);
  EXPECT_TRUE(accepted(decide_append(text_stream(), nullptr, req, kNow)).close);
  // Already closed: idempotent only if the expectation holds.
  EXPECT_TRUE(std::holds_alternative<AlreadyClosed>(
      decide_append(closed_stream(), nullptr, req, kNow).value()));
  req.if_match = expect(kOther);
  auto r = decide_append(closed_stream(), nullptr, req, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::precondition_failed);
  EXPECT_TRUE(r.error().closed);
  EXPECT_EQ(r.error().tail, (Offset{0, 10}));
}

TEST(DecideAppendTest, IfMatchPrecedence) {
  // Closure and content type come first.
  EXPECT_EQ(error_code(decide_append(closed_stream(), nullptr, conditional(kOther), kNow)),
            errc::stream_closed);
  auto typed = conditional(kOther);
  typed.content_type = "application/json";
  EXPECT_EQ(error_code(decide_append(text_stream(), nullptr, typed, kNow)),
            errc::content_type_mismatch);
  // Producer fencing and gaps before the tail.
  ProducerState st{2, 5, 0};
  auto fenced = conditional(kOther);
  fenced.producer = ProducerTriple{"p", 1, 6};
  EXPECT_EQ(error_code(decide_append(text_stream(), &st, fenced, kNow)),
            errc::producer_stale_epoch);
  auto gap = conditional(kOther);
  gap.producer = ProducerTriple{"p", 2, 9};
  EXPECT_EQ(error_code(decide_append(text_stream(), &st, gap, kNow)), errc::producer_seq_gap);
  // The tail before Stream-Seq and the body.
  StreamMeta m = text_stream();
  m.last_stream_seq = "b";
  auto seq = conditional(kOther);
  seq.stream_seq = "a";
  EXPECT_EQ(error_code(decide_append(m, nullptr, seq, kNow)), errc::precondition_failed);
  seq.if_match = expect(kTail);
  EXPECT_EQ(error_code(decide_append(m, nullptr, seq, kNow)), errc::stream_seq_regression);
  seq.stream_seq = "c";
  EXPECT_EQ(error_code(decide_append(m, nullptr, seq, kNow)), errc::ok);
  auto bad = conditional(kOther, "{ invalid");
  bad.content_type = "application/json";
  EXPECT_EQ(error_code(decide_append(json_stream(), nullptr, bad, kNow)),
            errc::precondition_failed);
}

TEST(DecideAppendTest, ProducerDuplicateWinsOverStaleIfMatch) {
  // A producer's retry carries the tail it saw before its first attempt
  // landed: it is answered as the duplicate, not 412.
  ProducerState st{0, 3, 0};
  auto retry = conditional(kOther);
  retry.producer = ProducerTriple{"p", 0, 3};
  EXPECT_EQ(duplicate(decide_append(text_stream(), &st, retry, kNow)).seq, 3u);
  // Its next append is conditional like any other.
  auto next = conditional(kOther);
  next.producer = ProducerTriple{"p", 0, 4};
  EXPECT_EQ(error_code(decide_append(text_stream(), &st, next, kNow)), errc::precondition_failed);
  next.if_match = expect(kTail);
  EXPECT_EQ(accepted(decide_append(text_stream(), &st, next, kNow)).producer->last_seq, 4u);
  // On a closed stream, the closing tuple's retry too.
  const ProducerTriple closer{"p", 0, 4};
  auto again = conditional(kOther, "");
  again.close = true;
  again.producer = closer;
  EXPECT_TRUE(duplicate(decide_append(closed_stream(closer), &st, again, kNow)).closed);
}

// ---------------------------------------------------------------------------
// create_matches (idempotent PUT)

StreamMeta existing(std::string type = "text/plain") {
  StreamMeta m;
  m.id = 7;
  m.path = "s";
  m.config.content_type = std::move(type);
  return m;
}

CreateRequest put(std::string type = "text/plain") {
  CreateRequest r;
  r.path = "s";
  r.config.content_type = std::move(type);
  return r;
}

TEST(CreateMatchesTest, SameConfigMatches) {
  EXPECT_TRUE(create_matches(existing(), put()));
  EXPECT_TRUE(create_matches(existing("application/json"), put("APPLICATION/JSON")));
  EXPECT_TRUE(create_matches(existing("application/json"), put("application/json; charset=utf-8")));
}

TEST(CreateMatchesTest, MissingContentTypeMeansOctetStream) {
  EXPECT_TRUE(create_matches(existing("application/octet-stream"), put("")));
  EXPECT_TRUE(create_matches(existing(""), put("application/octet-stream")));
  EXPECT_FALSE(create_matches(existing("text/plain"), put("")));
}

TEST(CreateMatchesTest, ContentTypeMismatch) {
  EXPECT_FALSE(create_matches(existing("text/plain"), put("application/json")));
}

TEST(CreateMatchesTest, TtlAndExpiryMustMatchExactly) {
  auto m = existing();
  m.config.ttl_seconds = 3600;
  auto r = put();
  r.config.ttl_seconds = 3600;
  EXPECT_TRUE(create_matches(m, r));
  r.config.ttl_seconds = 7200;
  EXPECT_FALSE(create_matches(m, r));
  r.config.ttl_seconds.reset();
  EXPECT_FALSE(create_matches(m, r));
  EXPECT_FALSE(create_matches(existing(), [] {
    auto p = put();
    p.config.ttl_seconds = 60;
    return p;
  }()));

  auto e = existing();
  e.config.expires_at_ms = 1000;
  auto re = put();
  re.config.expires_at_ms = 1000;
  EXPECT_TRUE(create_matches(e, re));
  re.config.expires_at_ms = 2000;
  EXPECT_FALSE(create_matches(e, re));
  re.config.expires_at_ms.reset();
  EXPECT_FALSE(create_matches(e, re));
}

TEST(CreateMatchesTest, ClosureStatusMustMatch) {
  auto open = existing();
  auto closed = existing();
  closed.closed = true;
  auto plain = put();
  auto closing = put();
  closing.closed = true;
  EXPECT_TRUE(create_matches(open, plain));
  EXPECT_FALSE(create_matches(closed, plain));
  EXPECT_TRUE(create_matches(closed, closing));
  EXPECT_FALSE(create_matches(open, closing));
}

StreamMeta existing_fork() {
  auto m = existing("text/plain");
  m.config.ttl_seconds = 3600;  // inherited from the source
  m.fork = ForkRef{"/v1/stream/src", 3, Offset{0, 5}, 2};
  return m;
}

CreateRequest fork_put() {
  CreateRequest r = put("");
  r.forked_from = "/v1/stream/src";
  r.fork_offset = Offset{0, 5};
  r.fork_sub_offset = 2;
  return r;
}

TEST(CreateMatchesTest, ForkRepeatMatches) {
  EXPECT_TRUE(create_matches(existing_fork(), fork_put()));
  auto typed = fork_put();
  typed.config.content_type = "Text/Plain";
  EXPECT_TRUE(create_matches(existing_fork(), typed));
  auto same_ttl = fork_put();
  same_ttl.config.ttl_seconds = 3600;
  EXPECT_TRUE(create_matches(existing_fork(), same_ttl));
  auto no_offset = fork_put();  // offset defaults to the source tail: not compared
  no_offset.fork_offset.reset();
  EXPECT_TRUE(create_matches(existing_fork(), no_offset));
}

TEST(CreateMatchesTest, ForkDifferences) {
  auto other_source = fork_put();
  other_source.forked_from = "/v1/stream/other";
  EXPECT_FALSE(create_matches(existing_fork(), other_source));

  auto other_offset = fork_put();
  other_offset.fork_offset = Offset{0, 6};
  EXPECT_FALSE(create_matches(existing_fork(), other_offset));

  auto other_sub = fork_put();
  other_sub.fork_sub_offset = 0;
  EXPECT_FALSE(create_matches(existing_fork(), other_sub));

  auto other_ttl = fork_put();
  other_ttl.config.ttl_seconds = 60;
  EXPECT_FALSE(create_matches(existing_fork(), other_ttl));

  auto other_expiry = fork_put();
  other_expiry.config.expires_at_ms = 1;
  EXPECT_FALSE(create_matches(existing_fork(), other_expiry));

  auto other_type = fork_put();
  other_type.config.content_type = "application/json";
  EXPECT_FALSE(create_matches(existing_fork(), other_type));

  auto closing = fork_put();
  closing.closed = true;
  EXPECT_FALSE(create_matches(existing_fork(), closing));
}

TEST(CreateMatchesTest, ForkAndNonForkNeverMatch) {
  auto plain = existing("text/plain");
  plain.config.ttl_seconds = 3600;
  EXPECT_FALSE(create_matches(plain, fork_put()));

  auto req = put("text/plain");
  req.config.ttl_seconds = 3600;
  EXPECT_FALSE(create_matches(existing_fork(), req));
}

// ---------------------------------------------------------------------------
// frame_initial_body

TEST(FrameInitialBodyTest, Cases) {
  auto empty = frame_initial_body("application/json", "");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");

  auto empty_array = frame_initial_body("application/json", "[]");
  ASSERT_TRUE(empty_array.ok());
  EXPECT_EQ(*empty_array, "");

  auto array = frame_initial_body("application/json; charset=utf-8", R"([{"n":1}, 2])");
  ASSERT_TRUE(array.ok());
  EXPECT_EQ(*array, R"({"n":1},2)");

  auto object = frame_initial_body("Application/JSON", R"({"initial": true})");
  ASSERT_TRUE(object.ok());
  EXPECT_EQ(*object, R"({"initial": true})");

  auto text = frame_initial_body("text/plain", "[not json");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "[not json");

  auto bad = frame_initial_body("application/json", "{ invalid");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, errc::bad_json);
}

// ---------------------------------------------------------------------------
// resolve_fork_config: PROTOCOL.md 4.2, all nine rows.

enum class Expiry { none, ttl, expires_at };

StreamConfig config_with(Expiry e, uint64_t ttl, int64_t at_ms, const char* at_text) {
  StreamConfig c;
  c.content_type = "text/plain";
  if (e == Expiry::ttl) c.ttl_seconds = ttl;
  if (e == Expiry::expires_at) {
    c.expires_at_ms = at_ms;
    c.expires_at_text = at_text;
  }
  return c;
}

TEST(ResolveForkConfigTest, ProtocolTable) {
  struct Row {
    Expiry source;
    Expiry request;
    std::optional<uint64_t> ttl;
    std::optional<int64_t> expires_at;
    std::string expires_text;
  };
  const std::vector<Row> rows = {
      {Expiry::none, Expiry::none, std::nullopt, std::nullopt, ""},
      {Expiry::none, Expiry::ttl, 60, std::nullopt, ""},
      {Expiry::none, Expiry::expires_at, std::nullopt, 2000, "req"},
      {Expiry::ttl, Expiry::none, 3600, std::nullopt, ""},
      {Expiry::ttl, Expiry::ttl, 60, std::nullopt, ""},
      {Expiry::ttl, Expiry::expires_at, std::nullopt, 2000, "req"},
      {Expiry::expires_at, Expiry::none, std::nullopt, 1000, "src"},
      {Expiry::expires_at, Expiry::ttl, 60, std::nullopt, ""},
      {Expiry::expires_at, Expiry::expires_at, std::nullopt, 2000, "req"},
  };
  int i = 0;
  for (const auto& row : rows) {
    StreamConfig source = config_with(row.source, 3600, 1000, "src");
    StreamConfig request = config_with(row.request, 60, 2000, "req");
    request.content_type = "";
    StreamConfig out = resolve_fork_config(request, source);
    EXPECT_EQ(out.ttl_seconds, row.ttl) << "row " << i;
    EXPECT_EQ(out.expires_at_ms, row.expires_at) << "row " << i;
    EXPECT_EQ(out.expires_at_text, row.expires_text) << "row " << i;
    EXPECT_EQ(out.content_type, "text/plain") << "row " << i;
    ++i;
  }
}

TEST(CreateMatchesTest, RetentionIsPartOfTheConfig) {
  StreamMeta m = existing();
  m.config.retention_max_age_s = 60;
  CreateRequest same = put();
  same.config.retention_max_age_s = 60;
  EXPECT_TRUE(create_matches(m, same));
  EXPECT_FALSE(create_matches(m, put()));
  CreateRequest other = same;
  other.config.retention_max_bytes = 100;
  EXPECT_FALSE(create_matches(m, other));
  other.config.retention_max_age_s = 61;
  other.config.retention_max_bytes.reset();
  EXPECT_FALSE(create_matches(m, other));
}

TEST(ResolveForkConfigTest, RetentionIsTheForksOwnNeverInherited) {
  StreamConfig source;
  source.content_type = "text/plain";
  source.retention_max_age_s = 60;
  source.retention_max_bytes = 1000;
  StreamConfig none = resolve_fork_config(StreamConfig{}, source);
  EXPECT_FALSE(none.has_retention());
  StreamConfig asked;
  asked.retention_max_bytes = 5;
  StreamConfig own = resolve_fork_config(asked, source);
  EXPECT_EQ(own.retention_max_bytes, std::optional<uint64_t>(5));
  EXPECT_EQ(own.retention_max_age_s, std::nullopt);
}

TEST(ResolveForkConfigTest, ContentTypeInheritedUnlessGiven) {
  StreamConfig source;
  source.content_type = "application/json";
  StreamConfig request;
  EXPECT_EQ(resolve_fork_config(request, source).content_type, "application/json");
  request.content_type = "  ";
  EXPECT_EQ(resolve_fork_config(request, source).content_type, "application/json");
  request.content_type = "application/json; charset=utf-8";
  EXPECT_EQ(resolve_fork_config(request, source).content_type, "application/json; charset=utf-8");
}

// ---- create and fork: one set of rules for every engine ----

StreamMeta stream_meta(const std::string& ct, std::optional<uint64_t> ttl = std::nullopt) {
  StreamMeta m;
  m.id = 7;
  m.path = "src";
  m.config.content_type = ct;
  m.config.ttl_seconds = ttl;
  m.tail = Offset{7, 40};
  return m;
}
CreateRequest put_req(const std::string& ct, std::optional<uint64_t> ttl = std::nullopt) {
  CreateRequest r;
  r.path = "src";
  r.config.content_type = ct;
  r.config.ttl_seconds = ttl;
  return r;
}

TEST(DecideCreateTest, IdenticalPutIsIdempotentAndRenewsASlidingTtl) {
  auto existing = stream_meta("text/plain", 60);
  existing.last_access_ms = 1000;
  auto same = decide_create_existing(existing, put_req("text/plain", 60), 5000);
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->renew_ttl);
  EXPECT_EQ(same->meta.last_access_ms, 5000);

  auto no_ttl = decide_create_existing(stream_meta("text/plain"), put_req("text/plain"), 5000);
  ASSERT_TRUE(no_ttl);
  EXPECT_FALSE(no_ttl->renew_ttl);
}

TEST(DecideCreateTest, DifferentConfigOrSoftDeletedIsAConflict) {
  auto other = decide_create_existing(stream_meta("text/plain"), put_req("application/json"), 0);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, errc::config_mismatch);
  auto deleted = stream_meta("text/plain");
  deleted.soft_deleted = true;
  auto d = decide_create_existing(deleted, put_req("text/plain"), 0);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, errc::config_mismatch);
}

TEST(DecideCreateTest, NewStreamDefaultsItsTypeAndFramesJson) {
  auto plain = decide_create_new(put_req(""), nullptr, 9);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->meta.config.content_type, "application/octet-stream");
  EXPECT_EQ(plain->meta.created_ms, 9);
  auto json = put_req("application/json");
  json.body = "[1,2]";
  auto j = decide_create_new(json, nullptr, 0);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->initial, "1,2");
  json.body = "[1,";
  EXPECT_FALSE(decide_create_new(json, nullptr, 0));
}

TEST(DecideCreateTest, ForkValidationInPrecedenceOrder) {
  auto fork = put_req("");
  fork.path = "fork";
  fork.forked_from = "src";
  auto missing = decide_create_new(fork, nullptr, 0);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::not_found);

  auto deleted = stream_meta("text/plain");
  deleted.soft_deleted = true;
  EXPECT_EQ(decide_create_new(fork, &deleted, 0).error().code, errc::fork_source_deleted);

  auto src = stream_meta("text/plain", 30);
  auto wrong_type = fork;
  wrong_type.config.content_type = "application/json";
  EXPECT_EQ(decide_create_new(wrong_type, &src, 0).error().code, errc::content_type_mismatch);

  auto beyond = fork;
  beyond.fork_offset = Offset{7, 41};
  EXPECT_EQ(decide_create_new(beyond, &src, 0).error().code, errc::fork_offset_beyond_tail);

  auto ok = decide_create_new(fork, &src, 0);
  ASSERT_TRUE(ok);
  ASSERT_TRUE(ok->meta.fork);
  EXPECT_EQ(ok->meta.fork->source_id, 7u);
  EXPECT_EQ(ok->meta.fork->offset, (Offset{7, 40}));
  EXPECT_EQ(ok->meta.tail, (Offset{7, 40}));
  EXPECT_EQ(ok->meta.config.content_type, "text/plain");
  EXPECT_EQ(ok->meta.config.ttl_seconds, 30u);  // inherited (PROTOCOL.md 4.2)
}

// Issue 13.1: a fork's depth is its source's + 1, and no fork goes deeper
// than kMaxForkDepth, so no engine ever walks a longer chain.
TEST(DecideCreateTest, ForkDepthIsCountedAndLimited) {
  auto fork = put_req("");
  fork.path = "fork";
  fork.forked_from = "src";
  auto root = stream_meta("text/plain");
  auto first = decide_create_new(fork, &root, 0);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->meta.fork_depth, 1u);

  auto deep = stream_meta("text/plain");
  deep.fork = ForkRef{"up", 6, Offset{6, 1}, 0};
  deep.fork_depth = kMaxForkDepth - 1;
  auto last = decide_create_new(fork, &deep, 0);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->meta.fork_depth, kMaxForkDepth);

  deep.fork_depth = kMaxForkDepth;
  auto refused = decide_create_new(fork, &deep, 0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::bad_request);
  EXPECT_NE(refused.error().message.find("fork chain too deep"), std::string::npos);

  auto plain = decide_create_new(put_req("text/plain"), nullptr, 0);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->meta.fork_depth, 0u);
}

TEST(DecideCreateTest, ForkPrefixKeepsWholeJsonMessagesAndBoundsBytes) {
  auto p = fork_prefix("text/plain", "abcdef", 3);
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, "abc");
  EXPECT_FALSE(fork_prefix("text/plain", "abc", 4));
  auto j = fork_prefix("application/json", "1,{\"a\":2},3", 2);
  ASSERT_TRUE(j);
  EXPECT_EQ(*j, "1,{\"a\":2}");
}

}  // namespace
}  // namespace ds
