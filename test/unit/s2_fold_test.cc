// The S2 engine's fold (src/store/s2/fold.h): records -> stream state, and
// checkpoints that carry that state so a cold node can start from one.
#include <gtest/gtest.h>

#include "store/meta_codec.h"
#include "store/s2/fold.h"

namespace ds::s2fold {
namespace {

using s2::AppendRecord;
using s2::SequencedRecord;

SequencedRecord at(uint64_t seq, AppendRecord r, uint64_t ts = 1000) {
  SequencedRecord s;
  s.seq_num = seq;
  s.timestamp = ts;
  s.headers = std::move(r.headers);
  s.body = std::move(r.body);
  return s;
}

AppendRecord meta_record(uint64_t hi) {
  StreamMeta m;
  m.id = hi;
  m.path = "s";
  m.config.content_type = "text/plain";
  AppendRecord r = control_record(kMeta);
  r.body = encode_meta(m);
  return r;
}

AppendRecord data(const std::string& body, std::optional<ProducerTriple> p = std::nullopt,
                  std::optional<std::string> stream_seq = std::nullopt, bool close = false) {
  AppendRequest req;
  req.body = body;
  req.producer = std::move(p);
  req.stream_seq = std::move(stream_seq);
  AppendAccepted acc;
  acc.record = body;
  acc.close = close;
  return append_record(req, acc);
}

TEST(S2FoldTest, DataMovesTheTailControlRecordsDoNot) {
  FoldState st;
  auto r = fold(st, {at(0, meta_record(3)), at(1, data("a")), at(2, control_record(kTouch)),
                     at(3, data("b"))});
  EXPECT_TRUE(r.changed);
  ASSERT_EQ(r.event.records.size(), 2u);
  EXPECT_EQ(r.event.records[1]->begin, (Offset{3, 3}));
  EXPECT_EQ(st.meta.tail, (Offset{3, 4}));
  fold(st, {at(4, control_record(kTouch), 5000)});
  EXPECT_EQ(st.meta.tail, (Offset{3, 4}));
  EXPECT_EQ(st.next_seq, 5u);
  EXPECT_EQ(st.last_access_ms, 5000);
}

TEST(S2FoldTest, ACheckpointRestoresEverythingAColdNodeNeeds) {
  FoldState live;
  fold(live, {at(0, meta_record(2)), at(1, data("x", ProducerTriple{"p", 4, 9}, "s7")),
              at(2, data("y", ProducerTriple{"q", 0, 0})), at(3, control_record(kRef)),
              at(4, data("", std::nullopt, std::nullopt, true))});
  // The checkpoint's body is the state as of its own seq_num (5).
  AppendRecord ckpt = checkpoint_record(live);
  FoldState cold;
  ASSERT_TRUE(start_from_checkpoint(cold, 5, ckpt.body));
  EXPECT_EQ(cold.next_seq, 6u);
  EXPECT_TRUE(cold.exists);
  EXPECT_EQ(cold.meta.id, 2u);
  EXPECT_EQ(cold.meta.tail, live.meta.tail);
  EXPECT_EQ(cold.meta.last_stream_seq, std::optional<std::string>("s7"));
  EXPECT_EQ(cold.meta.closed, live.meta.closed);
  ASSERT_EQ(cold.producers.size(), 2u);
  EXPECT_EQ(cold.producers.at("p").epoch, 4u);
  EXPECT_EQ(cold.producers.at("p").last_seq, 9u);
  EXPECT_TRUE(cold.has_checkpoint);
  EXPECT_EQ(cold.checkpoint_seq, 5u);
  // Both go on the same way from there.
  fold(live, {at(5, std::move(ckpt)), at(6, control_record(kTouch))});
  fold(cold, {at(6, control_record(kTouch))});
  EXPECT_EQ(cold.next_seq, live.next_seq);
  EXPECT_EQ(cold.meta.tail, live.meta.tail);
  EXPECT_EQ(live.checkpoint_seq, 5u);
  EXPECT_EQ(live.records_since_checkpoint, 1u);
}

TEST(S2FoldTest, AMalformedCheckpointIsRefused) {
  FoldState st;
  EXPECT_FALSE(start_from_checkpoint(st, 1, ""));
  EXPECT_FALSE(start_from_checkpoint(st, 1, "\x02garbage"));
  FoldState live;
  fold(live, {at(0, meta_record(0))});
  std::string body = encode_checkpoint(live);
  EXPECT_FALSE(start_from_checkpoint(st, 1, body.substr(0, body.size() - 1)));
  EXPECT_FALSE(start_from_checkpoint(st, 1, body + "x"));
  EXPECT_FALSE(st.exists) << "a refused checkpoint leaves the state alone";
}

TEST(S2FoldTest, StampMarksTheBatchAndTheLatestCheckpoint) {
  std::vector<AppendRecord> batch{data("a"), data("b")};
  stamp(batch, "w1", 42);
  ASSERT_EQ(batch.size(), 2u);
  auto seq0 = at(10, batch[0]);
  auto seq1 = at(11, batch[1]);
  ASSERT_NE(find_header(seq0, kWriteId), nullptr);
  EXPECT_EQ(*find_header(seq0, kWriteId), "w1");
  EXPECT_EQ(find_header(seq1, kWriteId), nullptr) << "the write id goes on the first record only";
  EXPECT_EQ(*find_header(seq1, kCheckpointAt), "42");
}

TEST(S2FoldTest, WriteIdsBeingSettledAreFoundWhereTheyLanded) {
  FoldState st;
  fold(st, {at(0, meta_record(0))});
  std::vector<AppendRecord> batch{data("a")};
  stamp(batch, "mine", 0);
  std::unordered_map<std::string, uint64_t> awaited{{"mine", ~uint64_t{0}}, {"other", 7}};
  fold(st, {at(1, data("theirs")), at(2, batch[0])}, &awaited);
  EXPECT_EQ(awaited.at("mine"), 2u);
  EXPECT_EQ(awaited.at("other"), 7u);
}

TEST(S2FoldTest, DeletionEndsTheIncarnationAndKeepsItsNumber) {
  FoldState st;
  fold(st, {at(0, meta_record(5)), at(1, data("a"))});
  AppendRecord gone = control_record(kGone);
  gone.headers.push_back({"g", "hard"});
  gone.headers.push_back({"h", "5"});
  auto r = fold(st, {at(2, gone)});
  EXPECT_TRUE(r.event.gone);
  EXPECT_FALSE(st.exists);
  EXPECT_TRUE(st.ever_existed);
  EXPECT_EQ(st.last_hi, 5u);
}

TEST(S2FoldTest, ExpiryFromExpiresAtOrTheLastAccess) {
  FoldState st;
  fold(st, {at(0, meta_record(0), 1000)});
  EXPECT_FALSE(expired(st, 1'000'000'000));
  st.meta.config.ttl_seconds = 10;
  EXPECT_FALSE(expired(st, 10'999));
  EXPECT_TRUE(expired(st, 11'000));
  st.meta.config.ttl_seconds.reset();
  st.meta.config.expires_at_ms = 2000;
  EXPECT_TRUE(expired(st, 2000));
}

AppendRecord retained_meta(uint64_t hi, uint64_t max_bytes) {
  StreamMeta m;
  m.id = hi;
  m.path = "s";
  m.config.content_type = "text/plain";
  m.config.retention_max_bytes = max_bytes;
  AppendRecord r = control_record(kMeta);
  r.body = encode_meta(m);
  return r;
}

TEST(S2FoldTest, RetentionKeepsTheDataRecordsItMayTrim) {
  FoldState st;
  fold(st, {at(0, retained_meta(1, 10)), at(1, data("aaaaaa"), 100), at(2, control_record(kTouch)),
            at(3, data("bbbbbb"), 200)});
  ASSERT_EQ(st.retained.size(), 2u);
  EXPECT_EQ(st.retained[0].seq, 1u);
  EXPECT_EQ(st.retained[0].ts, 100);
  EXPECT_EQ(st.retained[1].seq, 3u);
  EXPECT_EQ(st.retained_bytes, 12u);
  EXPECT_EQ(st.retained_from, 1u);  // complete since the meta record
  // A stream without retention keeps none.
  FoldState plain;
  fold(plain, {at(0, meta_record(1)), at(1, data("aaaaaa"))});
  EXPECT_TRUE(plain.retained.empty());
}

TEST(S2FoldTest, ATrimMovesTheEarliestOffsetAndACheckpointCarriesIt) {
  FoldState live;
  fold(live, {at(0, retained_meta(4, 10)), at(1, data("aaaaaa", ProducerTriple{"p", 0, 0})),
              at(2, data("bbbbbb", ProducerTriple{"p", 0, 1}, "s2")),
              at(3, data("cccccc", ProducerTriple{"p", 0, 2}, "s3"))});
  // The retention batch: a trim up to the end of "bbbbbb", then a checkpoint.
  std::vector<AppendRecord> batch{s2::trim_record(3), checkpoint_record(live, Offset{4, 3})};
  stamp(batch, "w", 5);
  ASSERT_EQ(batch[0].headers.size(), 1u) << "a command record keeps its one header";
  auto ckpt_rec = at(5, batch[1]);
  EXPECT_EQ(*find_header(ckpt_rec, kWriteId), "w");
  auto r = fold(live, {at(4, batch[0]), ckpt_rec});
  EXPECT_EQ(live.meta.earliest, (Offset{4, 3}));
  EXPECT_EQ(live.meta.tail, (Offset{4, 4}));  // a trim moves no tail
  EXPECT_TRUE(r.event.records.empty());
  ASSERT_EQ(live.retained.size(), 1u);
  EXPECT_EQ(live.retained[0].seq, 3u);
  EXPECT_EQ(live.retained_bytes, 6u);
  EXPECT_EQ(live.checkpoint_seq, 5u);
  // A trim never moves back, nor past the tail, nor past its own seq_num + 1.
  fold(live, {at(6, s2::trim_record(1))});
  EXPECT_EQ(live.meta.earliest, (Offset{4, 3}));
  fold(live, {at(7, s2::trim_record(1000))});
  EXPECT_EQ(live.meta.earliest, (Offset{4, 4}));

  // A cold node starting at the checkpoint has the earliest offset and the
  // producer and Stream-Seq state, and knows no data record before it.
  FoldState cold;
  ASSERT_TRUE(start_from_checkpoint(cold, 5, ckpt_rec.body));
  EXPECT_EQ(cold.meta.earliest, (Offset{4, 3}));
  EXPECT_EQ(cold.producers.at("p").last_seq, 2u);
  EXPECT_EQ(cold.meta.last_stream_seq, std::optional<std::string>("s3"));
  EXPECT_EQ(cold.retained_from, 6u);
}

// Records S2 trimmed before this fold read them may have changed its state
// (producers, Stream-Seq): the fold stops before the hole instead of going on
// without them.
TEST(S2FoldTest, AHoleInALiveIncarnationStopsTheFold) {
  FoldState st;
  fold(st, {at(0, retained_meta(1, 10)), at(1, data("a", ProducerTriple{"p", 0, 0}))});
  auto r = fold(st, {at(5, data("b", ProducerTriple{"p", 0, 4})), at(6, data("c"))});
  EXPECT_TRUE(r.hole);
  EXPECT_EQ(st.next_seq, 2u);
  EXPECT_EQ(st.producers.at("p").last_seq, 0u);
  EXPECT_EQ(st.meta.tail, (Offset{1, 2}));
  // No live incarnation: nothing to lose, the fold goes on.
  FoldState none;
  none.next_seq = 3;
  EXPECT_FALSE(fold(none, {at(7, meta_record(2))}).hole);
  EXPECT_TRUE(none.exists);
}

TEST(S2FoldTest, TheTrimOfADeletedIncarnationIsNotRetention) {
  FoldState st;
  fold(st, {at(0, retained_meta(1, 10)), at(1, data("a"))});
  AppendRecord gone = control_record(kGone);
  gone.headers.push_back({"g", "hard"});
  gone.headers.push_back({"h", "1"});
  fold(st, {at(2, gone), at(3, s2::trim_record(2)), at(4, retained_meta(2, 10))});
  EXPECT_TRUE(st.exists);
  EXPECT_EQ(st.meta.earliest, Offset{});
  EXPECT_TRUE(st.retained.empty());
}

}  // namespace
}  // namespace ds::s2fold
