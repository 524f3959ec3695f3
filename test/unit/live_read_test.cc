#include "server/live_read.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "protocol/cursor.h"
#include "protocol/sse.h"

namespace ds::live {
namespace {

// A fixed time, so that cursors are predictable.
ManualClock clock_at_cursor() { return ManualClock(kCursorEpochMs + 5 * kCursorIntervalMs); }

RecordPtr rec(Offset begin, Offset end, std::string bytes) {
  auto r = std::make_shared<Record>();
  r->begin = begin;
  r->end = end;
  r->bytes = std::move(bytes);
  return r;
}

/// Embedded engine: offsets are byte positions.
RecordPtr bytes_at(uint64_t pos, std::string bytes) {
  const uint64_t n = bytes.size();
  return rec({0, pos}, {0, pos + n}, std::move(bytes));
}

/// S2 engine: one sequence number per record, whatever its size.
RecordPtr s2_at(uint64_t hi, uint64_t seq, std::string bytes) {
  return rec({hi, seq}, {hi, seq + 1}, std::move(bytes));
}

ReadOutcome read_of(std::vector<RecordPtr> records, Offset next, bool up_to_date,
                    bool closed = false) {
  ReadOutcome r;
  r.records = std::move(records);
  r.start = r.records.empty() ? next : r.records.front()->begin;
  r.next = next;
  r.up_to_date = up_to_date;
  r.meta.tail = next;
  r.meta.closed = closed;
  return r;
}

Wake data_wake(std::vector<RecordPtr> records, Offset tail, bool closed = false) {
  return Wake{Wake::Kind::data, std::move(records), tail, closed};
}

std::string control(Offset next, const std::string& cursor, bool up_to_date, bool closed = false) {
  SseControl c{next, cursor, up_to_date, closed};
  std::string out;
  append_sse_control(out, c);
  return out;
}

std::string data_event(std::string_view payload, bool base64 = false) {
  std::string out;
  append_sse_data(out, payload, base64);
  return out;
}

// ------------------------------------------------------------------ framing

TEST(LiveReadFraming, ChunksAreHexSizedAndNeverEmpty) {
  std::string out;
  append_chunk(out, "hello");
  append_chunk(out, "");
  append_chunk(out, std::string(26, 'x'));
  EXPECT_EQ(out, "5\r\nhello\r\n1a\r\n" + std::string(26, 'x') + "\r\n");
  ChunkSizeBuf buf;
  EXPECT_EQ(chunk_size_line(0, buf), "0\r\n");
  EXPECT_EQ(chunk_size_line(SIZE_MAX, buf), "ffffffffffffffff\r\n");
}

// ------------------------------------------------------------------ SSE

TEST(LiveReadSse, ReadRendersDataAndControlThenWaits) {
  auto clock = clock_at_cursor();
  const std::string cur = next_cursor(clock.now_ms(), "");
  SseRead st;
  std::string out;
  auto next =
      sse_on_read(st, clock, read_of({bytes_at(0, "ab"), bytes_at(2, "c")}, {0, 3}, true), out);
  EXPECT_EQ(next, SseNext::wait);
  EXPECT_EQ(out, data_event("abc") + control({0, 3}, cur, true));
  EXPECT_EQ(st.at, (Offset{0, 3}));
  EXPECT_EQ(st.cursor, cur);
}

TEST(LiveReadSse, BehindTheTailReadsOn) {
  auto clock = clock_at_cursor();
  SseRead st;
  std::string out;
  EXPECT_EQ(sse_on_read(st, clock, read_of({bytes_at(0, "ab")}, {0, 2}, false), out),
            SseNext::read);
  EXPECT_NE(out.find("\"streamNextOffset\":\"0000000000000000_0000000000000002\""),
            std::string::npos);
  EXPECT_EQ(out.find("upToDate"), std::string::npos);
}

TEST(LiveReadSse, ClosedAtTheTailEnds) {
  auto clock = clock_at_cursor();
  SseRead st;
  std::string out;
  EXPECT_EQ(sse_on_read(st, clock, read_of({bytes_at(0, "x")}, {0, 1}, true, true), out),
            SseNext::end);
  EXPECT_EQ(out, data_event("x") + control({0, 1}, "", true, true));
}

TEST(LiveReadSse, CursorMovesForwardFromEventToEvent) {
  auto clock = clock_at_cursor();
  SseRead st;
  st.cursor = next_cursor(clock.now_ms(), "");
  const std::string first = next_cursor(clock.now_ms(), st.cursor);
  std::string out;
  sse_on_wake(st, clock, data_wake({bytes_at(0, "a")}, {0, 1}), out);
  EXPECT_EQ(st.cursor, first);
  out.clear();
  sse_on_wake(st, clock, data_wake({bytes_at(1, "b")}, {0, 2}), out);
  EXPECT_EQ(st.cursor, next_cursor(clock.now_ms(), first));
  EXPECT_EQ(out, data_event("b") + control({0, 2}, st.cursor, true));
}

TEST(LiveReadSse, FallingBehindRetentionIsAnErrorEventThenTheEnd) {
  SseRead st;
  Error e(errc::retention_trimmed, "gone \"old\"");
  e.earliest = Offset{0, 42};
  std::string out;
  EXPECT_EQ(sse_on_trimmed(st, e, out), SseNext::end);
  EXPECT_EQ(out,
            "event: error\ndata: {\"code\":\"retention_trimmed\",\"message\":\"gone "
            "\\\"old\\\"\",\"earliest_offset\":\"" +
                (Offset{0, 42}).str() + "\"}\n\n");
  EXPECT_TRUE(st.ended);
}

TEST(LiveReadSse, WakeKinds) {
  auto clock = clock_at_cursor();
  {
    SseRead st;
    st.up_to_date = true;
    std::string out;
    EXPECT_EQ(sse_on_wake(st, clock, Wake{Wake::Kind::closed, {}, {0, 7}, true}, out),
              SseNext::end);
    EXPECT_EQ(out, control({0, 7}, "", true, true));
  }
  {
    SseRead st;
    st.up_to_date = true;
    std::string out;
    EXPECT_EQ(sse_on_wake(st, clock, Wake{Wake::Kind::gone, {}, {0, 7}, false}, out), SseNext::end);
    EXPECT_EQ(out, "");
    sse_on_stop(st, clock, out);
    EXPECT_EQ(out, "") << "an ended response says nothing more on shutdown";
  }
  {
    SseRead st;
    st.up_to_date = true;
    std::string out;
    EXPECT_EQ(sse_on_wake(st, clock, Wake{Wake::Kind::catch_up, {}, {0, 7}, false}, out),
              SseNext::read);
    EXPECT_EQ(out, "");
    EXPECT_FALSE(st.up_to_date);
  }
  {
    // Records that stop short of the tail: read the rest from storage.
    SseRead st;
    std::string out;
    EXPECT_EQ(sse_on_wake(st, clock, data_wake({bytes_at(0, "a")}, {0, 9}), out), SseNext::read);
    EXPECT_EQ(st.at, (Offset{0, 1}));
  }
  {
    // The records that close the stream.
    SseRead st;
    std::string out;
    EXPECT_EQ(sse_on_wake(st, clock, data_wake({bytes_at(0, "a")}, {0, 1}, true), out),
              SseNext::end);
    EXPECT_EQ(out, data_event("a") + control({0, 1}, "", true, true));
  }
}

TEST(LiveReadSse, JsonAndBase64Payloads) {
  auto clock = clock_at_cursor();
  SseRead json;
  json.json = true;
  std::string out;
  sse_on_wake(json, clock, data_wake({bytes_at(0, "{\"a\":1}"), bytes_at(7, "2")}, {0, 8}), out);
  EXPECT_TRUE(out.starts_with(data_event("[{\"a\":1},2]")));
  SseRead bin;
  bin.base64 = true;
  out.clear();
  sse_on_wake(bin, clock, data_wake({bytes_at(0, "ab\xC3")}, {0, 3}), out);
  EXPECT_TRUE(out.starts_with(data_event("ab\xC3", true))) << "base64 holds nothing back";
  EXPECT_TRUE(bin.held.empty());
}

TEST(LiveReadSse, SplitCharacterWithByteOffsetsIsHeldBackToTheByte) {
  auto clock = clock_at_cursor();
  SseRead st;
  std::string out;
  // "€" is E2 82 AC: the first two bytes end one append, the last starts the next.
  sse_on_read(st, clock, read_of({bytes_at(0, "ab"), bytes_at(2, "c\xE2\x82")}, {0, 5}, true), out);
  EXPECT_EQ(out, data_event("abc") + control({0, 3}, st.cursor, false));
  EXPECT_EQ(st.held, "\xE2\x82");
  EXPECT_EQ(st.at, (Offset{0, 5})) << "storage reads go on after the held bytes";
  std::string stop;
  SseRead copy = st;
  sse_on_stop(copy, clock, stop);
  EXPECT_NE(stop.find("0000000000000000_0000000000000003"), std::string::npos);
  EXPECT_EQ(stop.find("upToDate"), std::string::npos);
  out.clear();
  sse_on_wake(st, clock, data_wake({bytes_at(5, "\xAC!")}, {0, 7}), out);
  EXPECT_EQ(out, data_event("\xE2\x82\xAC!") + control({0, 7}, st.cursor, true));
  EXPECT_TRUE(st.held.empty());
}

// On S2 an offset's low half is a sequence number, one per record: no offset
// points inside a record, so a hold that begins inside one holds back the
// whole record and reports where it begins. (Counting bytes back from the
// end reported 1_5 here, before "ab", after sending "abc".)
TEST(LiveReadSse, SplitCharacterWithSequenceOffsetsHoldsTheWholeRecord) {
  auto clock = clock_at_cursor();
  SseRead st;
  std::string out;
  sse_on_read(st, clock, read_of({s2_at(1, 5, "ab"), s2_at(1, 6, "c\xE2\x82")}, {1, 7}, true), out);
  EXPECT_EQ(out, data_event("ab") + control({1, 6}, st.cursor, false));
  EXPECT_EQ(st.held, "c\xE2\x82");
  EXPECT_EQ(st.held_from, (Offset{1, 6}));
  std::string stop;
  SseRead copy = st;
  sse_on_stop(copy, clock, stop);
  EXPECT_NE(stop.find("\"0000000000000001_0000000000000006\""), std::string::npos) << stop;
  out.clear();
  sse_on_wake(st, clock, data_wake({s2_at(1, 7, "\xAC!")}, {1, 8}), out);
  EXPECT_EQ(out, data_event("c\xE2\x82\xAC!") + control({1, 8}, st.cursor, true));
  EXPECT_TRUE(st.held.empty());
}

TEST(LiveReadSse, SplitAcrossWholeSequenceRecordsReportsTheFirstRecord) {
  auto clock = clock_at_cursor();
  SseRead st;
  std::string out;
  // F0 9F 98 80: the first three bytes in three one-byte records after "ok".
  sse_on_read(
      st, clock,
      read_of({s2_at(2, 0, "ok"), s2_at(2, 1, "\xF0"), s2_at(2, 2, "\x9F"), s2_at(2, 3, "\x98")},
              {2, 4}, true),
      out);
  EXPECT_EQ(out, data_event("ok") + control({2, 1}, st.cursor, false));
  EXPECT_EQ(st.held, "\xF0\x9F\x98");
  out.clear();
  sse_on_wake(st, clock, data_wake({s2_at(2, 4, "\x80")}, {2, 5}, true), out);
  EXPECT_EQ(out, data_event("\xF0\x9F\x98\x80") + control({2, 5}, "", true, true));
}

TEST(LiveReadSse, ClosingFlushesHeldBytes) {
  auto clock = clock_at_cursor();
  SseRead st;
  std::string out;
  sse_on_read(st, clock, read_of({bytes_at(0, "a\xC3")}, {0, 2}, true), out);
  out.clear();
  EXPECT_EQ(sse_on_wake(st, clock, Wake{Wake::Kind::closed, {}, {0, 2}, true}, out), SseNext::end);
  EXPECT_EQ(out, data_event("\xC3") + control({0, 2}, "", true, true));
}

TEST(LiveReadSse, BroadcastIsWhatEachReaderWouldWriteAlone) {
  auto clock = clock_at_cursor();
  const Wake w = data_wake({bytes_at(4, "hi\nthere")}, {0, 12});
  SseRead alone;
  alone.at = {0, 4};
  alone.up_to_date = true;
  alone.cursor = "123";
  SseRead a = alone;
  SseRead b = alone;
  std::string expected;
  EXPECT_EQ(sse_on_wake(alone, clock, w, expected), SseNext::wait);

  SseBroadcast cast;
  ASSERT_TRUE(sse_broadcast(w, {0, 4}, false, false, cast));
  std::string control;
  EXPECT_EQ(sse_on_broadcast(a, clock, cast, control), SseNext::wait);
  EXPECT_EQ(cast.data + control, expected);
  EXPECT_EQ(sse_share_broadcast(b, a, cast), SseNext::wait);
  EXPECT_EQ(b.cursor, alone.cursor);
  EXPECT_EQ(b.at, alone.at);
  EXPECT_EQ(a.at, alone.at);
}

TEST(LiveReadSse, BroadcastRefusesASplitCharacter) {
  SseBroadcast cast;
  EXPECT_FALSE(
      sse_broadcast(data_wake({bytes_at(0, "a\xC3")}, {0, 2}), {0, 0}, false, false, cast));
  EXPECT_TRUE(sse_broadcast(data_wake({bytes_at(0, "a\xC3")}, {0, 2}), {0, 0}, false, true, cast));
  EXPECT_TRUE(
      sse_broadcast(data_wake({bytes_at(0, "a\xC3")}, {0, 2}, true), {0, 0}, false, false, cast))
      << "the stream closes: nothing more could complete it";
}

TEST(LiveReadSse, StopReportsThePosition) {
  auto clock = clock_at_cursor();
  SseRead st;
  st.at = {0, 9};
  st.up_to_date = true;
  st.cursor = "5";
  std::string out;
  sse_on_stop(st, clock, out);
  EXPECT_EQ(out, control({0, 9}, st.cursor, true));
}

// ------------------------------------------------------------------ long-poll

TEST(LiveReadPoll, FirstReadAnswersRecordsOrWaits) {
  Offset at;
  auto step = poll_on_first_read(at, read_of({bytes_at(0, "a")}, {0, 1}, true));
  EXPECT_EQ(step.kind, PollStep::Kind::data);
  EXPECT_EQ(step.next, (Offset{0, 1}));
  EXPECT_TRUE(step.up_to_date);
  step = poll_on_first_read(at, read_of({}, {0, 4}, true, true));
  EXPECT_EQ(step.kind, PollStep::Kind::wait) << "at a closed tail the hub answers";
  EXPECT_EQ(at, (Offset{0, 4}));
}

TEST(LiveReadPoll, Wakes) {
  Offset at{0, 4};
  auto step = poll_on_wake(at, data_wake({bytes_at(4, "ab")}, {0, 9}, false));
  EXPECT_EQ(step.kind, PollStep::Kind::data);
  EXPECT_EQ(step.next, (Offset{0, 6}));
  EXPECT_FALSE(step.up_to_date);
  step = poll_on_wake(at, data_wake({bytes_at(4, "ab")}, {0, 6}, true));
  EXPECT_TRUE(step.up_to_date);
  EXPECT_TRUE(step.closed);
  step = poll_on_wake(at, Wake{Wake::Kind::closed, {}, {0, 4}, true});
  EXPECT_EQ(step.kind, PollStep::Kind::closed);
  EXPECT_EQ(step.next, (Offset{0, 4}));
  EXPECT_EQ(poll_on_wake(at, Wake{Wake::Kind::gone, {}, {}, false}).kind, PollStep::Kind::gone);
  EXPECT_EQ(poll_on_wake(at, Wake{Wake::Kind::catch_up, {}, {0, 99}, false}).kind,
            PollStep::Kind::read);
  EXPECT_EQ(at, (Offset{0, 4}));
}

TEST(LiveReadPoll, CatchUpReadAnswersOrWaitsFurtherOn) {
  Offset at{0, 4};
  auto step = poll_on_read(at, read_of({}, {0, 8}, true));
  EXPECT_EQ(step.kind, PollStep::Kind::wait);
  EXPECT_EQ(at, (Offset{0, 8}));
  step = poll_on_read(at, read_of({}, {0, 8}, true, true));
  EXPECT_EQ(step.kind, PollStep::Kind::data) << "a closed stream answers even without records";
  EXPECT_TRUE(step.closed);
  step = poll_on_read(at, read_of({bytes_at(8, "z")}, {0, 9}, true));
  EXPECT_EQ(step.kind, PollStep::Kind::data);
  EXPECT_EQ(step.next, (Offset{0, 9}));
}

}  // namespace
}  // namespace ds::live
