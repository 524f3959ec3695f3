#include "store/rocksdb/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "store/meta_codec.h"

namespace ds::rocks {
namespace {

void expect_same(const StreamMeta& a, const StreamMeta& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.config, b.config);
  EXPECT_EQ(a.tail, b.tail);
  EXPECT_EQ(a.closed, b.closed);
  EXPECT_EQ(a.closed_by, b.closed_by);
  EXPECT_EQ(a.last_stream_seq, b.last_stream_seq);
  ASSERT_EQ(a.fork.has_value(), b.fork.has_value());
  if (a.fork) {
    EXPECT_EQ(a.fork->source_path, b.fork->source_path);
    EXPECT_EQ(a.fork->source_id, b.fork->source_id);
    EXPECT_EQ(a.fork->offset, b.fork->offset);
    EXPECT_EQ(a.fork->sub_offset, b.fork->sub_offset);
    EXPECT_EQ(a.fork_depth, b.fork_depth);
  }
  EXPECT_EQ(a.ref_count, b.ref_count);
  EXPECT_EQ(a.soft_deleted, b.soft_deleted);
  EXPECT_EQ(a.created_ms, b.created_ms);
  EXPECT_EQ(a.last_access_ms, b.last_access_ms);
  EXPECT_EQ(a.earliest, b.earliest);
}

StreamMeta minimal_meta() {
  StreamMeta m;
  m.id = 1;
  m.path = "a";
  m.config.content_type = "text/plain";
  return m;
}

StreamMeta full_meta() {
  StreamMeta m;
  m.id = 0x0123456789abcdefULL;
  m.path = std::string("dir/stream \xC3\xA9\0x", 15);
  m.config.content_type = "application/json; charset=utf-8";
  m.config.ttl_seconds = 3600;
  m.config.expires_at_ms = 1'748'773'230'456;
  m.config.expires_at_text = "2025-06-01T10:20:30.456Z";
  m.tail = Offset{Offset::kMaxPart, 1'234'567'890'123};
  m.closed = true;
  m.closed_by = ProducerTriple{"producer-1", 7, 9'007'199'254'740'991};
  m.last_stream_seq = "seq-0042";
  m.fork = ForkRef{"/v1/stream/source", 99, Offset{0, 5000}, 3};
  m.fork_depth = 1000;
  m.ref_count = 4;
  m.soft_deleted = true;
  m.created_ms = 1'700'000'000'000;
  m.last_access_ms = 1'700'000'123'456;
  return m;
}

TEST(MetaCodecTest, RoundTripWithEveryOptionalFieldUnset) {
  const StreamMeta m = minimal_meta();
  auto d = decode_meta(encode_meta(m));
  ASSERT_TRUE(d.has_value());
  expect_same(*d, m);
  EXPECT_FALSE(d->config.ttl_seconds.has_value());
  EXPECT_FALSE(d->config.expires_at_ms.has_value());
  EXPECT_FALSE(d->closed_by.has_value());
  EXPECT_FALSE(d->last_stream_seq.has_value());
  EXPECT_FALSE(d->fork.has_value());
}

TEST(MetaCodecTest, RoundTripWithEveryOptionalFieldSet) {
  const StreamMeta m = full_meta();
  auto d = decode_meta(encode_meta(m));
  ASSERT_TRUE(d.has_value());
  expect_same(*d, m);
}

TEST(MetaCodecTest, EachOptionalFieldAlone) {
  std::vector<StreamMeta> variants;
  auto add = [&](auto&& set) {
    StreamMeta m = minimal_meta();
    set(m);
    variants.push_back(m);
  };
  add([](StreamMeta& m) { m.config.ttl_seconds = 1; });
  add([](StreamMeta& m) { m.config.expires_at_ms = 5; });
  add([](StreamMeta& m) { m.closed_by = ProducerTriple{"p", 0, 0}; });
  add([](StreamMeta& m) { m.last_stream_seq = "x"; });
  add([](StreamMeta& m) { m.fork = ForkRef{"/v1/stream/s", 1, Offset{}, 0}; });
  for (const auto& m : variants) {
    auto d = decode_meta(encode_meta(m));
    ASSERT_TRUE(d.has_value());
    expect_same(*d, m);
  }
}

TEST(MetaCodecTest, ZeroAndEmptyValuesStayDistinctFromUnset) {
  StreamMeta m = minimal_meta();
  m.config.ttl_seconds = 0;
  m.config.expires_at_ms = 0;
  m.last_stream_seq = "";
  m.closed_by = ProducerTriple{"", 0, 0};
  auto d = decode_meta(encode_meta(m));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->config.ttl_seconds, std::optional<uint64_t>(0));
  EXPECT_EQ(d->config.expires_at_ms, std::optional<int64_t>(0));
  EXPECT_EQ(d->last_stream_seq, std::optional<std::string>(""));
  EXPECT_EQ(d->closed_by, (std::optional<ProducerTriple>(ProducerTriple{"", 0, 0})));
}

TEST(MetaCodecTest, NegativeTimesRoundTrip) {
  StreamMeta m = minimal_meta();
  m.config.expires_at_ms = -1;  // 1969-12-31T23:59:59.999Z
  m.created_ms = -86'400'000;
  m.last_access_ms = INT64_MIN;
  auto d = decode_meta(encode_meta(m));
  ASSERT_TRUE(d.has_value());
  expect_same(*d, m);
}

TEST(MetaCodecTest, ExtremeValuesRoundTrip) {
  StreamMeta m = full_meta();
  m.id = UINT64_MAX;
  m.ref_count = UINT64_MAX;
  m.config.ttl_seconds = UINT64_MAX;
  m.config.expires_at_ms = INT64_MAX;
  m.fork->sub_offset = UINT64_MAX;
  m.path = std::string(100'000, 'p');
  auto d = decode_meta(encode_meta(m));
  ASSERT_TRUE(d.has_value());
  expect_same(*d, m);
}

TEST(MetaCodecTest, EveryTruncationIsRejected) {
  for (const StreamMeta& m : {minimal_meta(), full_meta()}) {
    const std::string enc = encode_meta(m);
    for (size_t n = 0; n < enc.size(); ++n) {
      EXPECT_FALSE(decode_meta(std::string_view(enc).substr(0, n)).has_value())
          << "prefix of " << n << " of " << enc.size() << " bytes";
    }
  }
}

TEST(MetaCodecTest, TrailingBytesAreRejected) {
  std::string enc = encode_meta(full_meta());
  enc.push_back('\0');
  EXPECT_FALSE(decode_meta(enc).has_value());
}

TEST(MetaCodecTest, UnknownVersionIsRejected) {
  std::string enc = encode_meta(minimal_meta());
  ASSERT_EQ(enc[0], '\x03');
  enc[0] = '\x04';
  EXPECT_FALSE(decode_meta(enc).has_value());
  enc[0] = '\0';
  EXPECT_FALSE(decode_meta(enc).has_value());
}

// A version 3 encoding of a stream without retention, as version 2 wrote
// it: the six zero bytes of the retention fields and earliest offset cut.
std::string without_retention(std::string v3) {
  EXPECT_EQ(v3.substr(v3.size() - 6), std::string(6, '\0'));
  v3.resize(v3.size() - 6);
  v3[0] = '\x02';
  return v3;
}

TEST(MetaCodecTest, VersionTwoStillDecodes) {
  auto d = decode_meta(without_retention(encode_meta(full_meta())));
  ASSERT_TRUE(d.has_value());
  expect_same(*d, full_meta());
}

TEST(MetaCodecTest, RetentionRoundTrips) {
  StreamMeta m = full_meta();
  m.config.retention_max_age_s = 0;
  m.config.retention_max_bytes = UINT64_MAX;
  m.earliest = Offset{3, 42};
  auto d = decode_meta(encode_meta(m));
  ASSERT_TRUE(d.has_value());
  expect_same(*d, m);
  EXPECT_EQ(d->config.retention_max_age_s, std::optional<uint64_t>(0));
  EXPECT_EQ(d->earliest, (Offset{3, 42}));
}

// Version 1 (before the fork depth) still decodes; a fork's unknown depth is 1.
TEST(MetaCodecTest, VersionOneStillDecodes) {
  std::string plain = without_retention(encode_meta(minimal_meta()));
  plain[0] = '\x01';  // without a fork, versions 1 and 2 lay out the same
  auto d = decode_meta(plain);
  ASSERT_TRUE(d.has_value());
  expect_same(*d, minimal_meta());

  StreamMeta fork = minimal_meta();
  fork.fork = ForkRef{"/v1/stream/s", 1, Offset{0, 5}, 0};
  fork.fork_depth = 7;  // ref_count, soft_deleted and the times are 0: four 0 bytes follow
  const std::string v2 = without_retention(encode_meta(fork));
  ASSERT_EQ(v2.substr(v2.size() - 5), std::string("\x07\0\0\0\0", 5));
  std::string v1 = "\x01" + v2.substr(1, v2.size() - 6) + std::string(4, '\0');
  auto f = decode_meta(v1);
  ASSERT_TRUE(f.has_value());
  fork.fork_depth = 1;
  expect_same(*f, fork);
}

TEST(MetaCodecTest, OverlongVarintIsRejected) {
  // Version byte, then an id varint that never terminates within 64 bits.
  std::string enc = "\x01";
  enc.append(11, '\xff');
  enc.push_back('\x00');
  EXPECT_FALSE(decode_meta(enc).has_value());
}

TEST(ProducerCodecTest, RoundTrip) {
  for (const ProducerState& p : {ProducerState{0, 0, 0}, ProducerState{3, 17, 1'700'000'000'000},
                                 ProducerState{9'007'199'254'740'991, 9'007'199'254'740'991, -5}}) {
    auto d = decode_producer(encode_producer(p));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->epoch, p.epoch);
    EXPECT_EQ(d->last_seq, p.last_seq);
    EXPECT_EQ(d->updated_ms, p.updated_ms);
  }
}

TEST(ProducerCodecTest, TruncatedAndTrailingInputIsRejected) {
  const std::string enc = encode_producer(ProducerState{300, 70'000, 1'700'000'000'000});
  for (size_t n = 0; n < enc.size(); ++n) {
    EXPECT_FALSE(decode_producer(std::string_view(enc).substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(decode_producer(enc + "x").has_value());
}

TEST(U64CodecTest, BigEndianEightBytes) {
  EXPECT_EQ(encode_u64(0x0102030405060708ULL), std::string("\x01\x02\x03\x04\x05\x06\x07\x08"));
  EXPECT_EQ(decode_u64(encode_u64(UINT64_MAX)), UINT64_MAX);
  EXPECT_EQ(decode_u64(encode_u64(0)), 0u);
  EXPECT_EQ(decode_u64("1234567"), std::nullopt);
  EXPECT_EQ(decode_u64("123456789"), std::nullopt);
  EXPECT_EQ(decode_u64(""), std::nullopt);
}

TEST(KeyTest, Layout) {
  EXPECT_EQ(meta_key("a/b"), "Ma/b");
  EXPECT_EQ(meta_key(""), "M");
  EXPECT_EQ(kNextIdKey, "N");
  EXPECT_EQ(producer_prefix(1), std::string("P\0\0\0\0\0\0\0\x01", 9));
  EXPECT_EQ(producer_key(1, "p-1"), std::string("P\0\0\0\0\0\0\0\x01p-1", 12));
  EXPECT_EQ(data_prefix(0x0102), std::string("D\0\0\0\0\0\0\x01\x02", 9));
  EXPECT_EQ(data_key(2, 0x0304), std::string("D\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\x03\x04", 17));
}

TEST(KeyTest, DataKeyPositionRoundTrips) {
  for (uint64_t pos : std::vector<uint64_t>{0, 1, 255, 256, 0xdeadbeef, UINT64_MAX}) {
    std::string k = data_key(42, pos);
    EXPECT_EQ(data_key_position(k), pos);
    EXPECT_TRUE(k.starts_with(data_prefix(42)));
    EXPECT_EQ(k.size(), 17u);
  }
}

TEST(KeyTest, DataKeysSortByPosition) {
  const std::vector<uint64_t> positions = {0,
                                           1,
                                           127,
                                           128,
                                           255,
                                           256,
                                           65'535,
                                           65'536,
                                           1ULL << 32,
                                           1ULL << 63,
                                           UINT64_MAX - 1,
                                           UINT64_MAX,
                                           1'000'000'000,
                                           999};
  for (uint64_t a : positions) {
    for (uint64_t b : positions) {
      // std::string compares bytes as unsigned char, like RocksDB's bytewise comparator.
      EXPECT_EQ(a < b, data_key(7, a) < data_key(7, b)) << a << " vs " << b;
    }
  }
}

TEST(KeyTest, StreamsOccupyContiguousRanges) {
  const std::string next_stream = data_prefix(8);
  for (uint64_t pos : std::vector<uint64_t>{0, 1ULL << 40, UINT64_MAX}) {
    EXPECT_LT(data_prefix(7), data_key(7, pos));
    EXPECT_LT(data_key(7, pos), next_stream);
    EXPECT_LT(data_key(255, pos), data_prefix(256));
  }
  // Producer keys and meta keys never fall inside the data range.
  EXPECT_FALSE(producer_key(7, "x").starts_with("D"));
  EXPECT_FALSE(meta_key("D").starts_with("D"));
  EXPECT_LT(producer_key(7, "a"), producer_key(7, "b"));
  EXPECT_LT(producer_key(7, "\xff\xff"), producer_prefix(8));
}

}  // namespace
}  // namespace ds::rocks
