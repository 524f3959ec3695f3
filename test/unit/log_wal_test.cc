// The embedded log engine's on-disk format: CRC32C, WAL entry codecs,
// segment write/scan/reopen and the checkpoint file. Runs over an in-memory
// FileSystem so that it does not depend on the POSIX implementation.

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "store/log/checkpoint.h"
#include "store/log/crc32c.h"
#include "store/log/format.h"
#include "store/log/wal.h"
#include "store/meta_codec.h"

namespace ds::logstore {
namespace {

// ---- An in-memory FileSystem. ---------------------------------------------
// Contents are shared between every handle of a path (as the kernel's page
// cache is); syncs do nothing, since nothing here simulates a crash.

using Contents = std::shared_ptr<std::string>;

class MemFile : public File {
 public:
  explicit MemFile(Contents c) : c_(std::move(c)) {}
  Status write_at(uint64_t offset, std::string_view data) override {
    if (c_->size() < offset + data.size()) c_->resize(offset + data.size(), '\0');
    std::memcpy(c_->data() + offset, data.data(), data.size());
    return Unit{};
  }
  Status read_at(uint64_t offset, size_t n, std::string& out) const override {
    out = offset >= c_->size() ? std::string() : c_->substr(offset, n);
    return Unit{};
  }
  Status sync() override { return Unit{}; }
  Result<uint64_t> size() const override { return static_cast<uint64_t>(c_->size()); }
  Status truncate(uint64_t size) override {
    c_->resize(size, '\0');
    return Unit{};
  }

 private:
  Contents c_;
};

class MemFs : public FileSystem {
 public:
  Result<std::unique_ptr<File>> open(const std::string& path, OpenMode mode) override {
    auto it = files_.find(path);
    if (mode == OpenMode::read && it == files_.end())
      return Error(errc::not_found, "no such file " + path);
    if (it == files_.end()) it = files_.emplace(path, std::make_shared<std::string>()).first;
    if (mode == OpenMode::create_new) {
      // A fresh inode: handles to the old file keep the old contents.
      it->second = std::make_shared<std::string>();
    }
    return std::unique_ptr<File>(new MemFile(it->second));
  }
  bool exists(const std::string& path) override { return files_.count(path) != 0; }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    if (!dirs_.count(dir)) return Error(errc::not_found, "no such directory " + dir);
    std::vector<std::string> names;
    const std::string prefix = dir + "/";
    for (const auto& [path, _] : files_)
      if (path.starts_with(prefix) && path.find('/', prefix.size()) == std::string::npos)
        names.push_back(path.substr(prefix.size()));
    return names;
  }
  Status make_dirs(const std::string& dir) override {
    dirs_.insert(dir);
    return Unit{};
  }
  Status rename(const std::string& from, const std::string& to) override {
    auto it = files_.find(from);
    if (it == files_.end()) return Error(errc::not_found, "no such file " + from);
    files_[to] = it->second;
    files_.erase(from);
    return Unit{};
  }
  Status remove(const std::string& path) override {
    files_.erase(path);
    return Unit{};
  }
  Status sync_dir(const std::string&) override { return Unit{}; }
  Status sync_all(const std::string&) override { return Unit{}; }

  /// Direct access to a file's bytes, to tear and corrupt it.
  std::string& bytes(const std::string& path) { return *files_.at(path); }

 private:
  std::map<std::string, Contents> files_;
  std::set<std::string> dirs_;
};

// ---- Helpers. -----------------------------------------------------------------

StreamMeta sample_meta(uint64_t id, bool fork) {
  StreamMeta m;
  m.id = id;
  m.path = "/v1/stream/s-" + std::to_string(id);
  m.config.content_type = "application/json";
  m.config.ttl_seconds = 3600;
  m.tail = Offset{0, 1234 + id};
  m.last_stream_seq = "seq-" + std::to_string(id);
  m.created_ms = 1'700'000'000'000 + static_cast<int64_t>(id);
  m.last_access_ms = m.created_ms + 5;
  if (fork) {
    m.fork = ForkRef{"/v1/stream/src", id - 1, Offset{0, 1000}, 7};
    m.fork_depth = 2;
  }
  return m;
}

void expect_meta_eq(const StreamMeta& a, const StreamMeta& b) {
  // StreamMeta has no operator==; comparing encodings compares every field.
  EXPECT_EQ(encode_meta(a), encode_meta(b));
}

/// Splits one framed entry off the front of `framed`.
struct Framed {
  uint32_t len;
  uint32_t masked_crc;
  format::EntryType type;
  std::string_view payload;
};
Framed unframe(std::string_view framed) {
  EXPECT_GE(framed.size(), format::kEntryHeaderSize);
  Framed f{};
  auto le32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(framed[at + i]);
    return v;
  };
  f.len = le32(0);
  f.masked_crc = le32(4);
  f.type = static_cast<format::EntryType>(framed[8]);
  f.payload = framed.substr(format::kEntryHeaderSize, f.len);
  EXPECT_EQ(framed.size(), format::kEntryHeaderSize + f.len);
  return f;
}

std::string payload_of(const std::string& framed) { return std::string(unframe(framed).payload); }

// ---- CRC32C. -----------------------------------------------------------------

TEST(Crc32c, KnownVectors) {
  // The check value of CRC-32C, and the RFC 3720 (iSCSI) test vectors.
  std::string zeros(32, '\0'), ones(32, '\xff'), inc(32, '\0'), dec(32, '\0');
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<char>(i);
    dec[i] = static_cast<char>(31 - i);
  }
  for (auto* f : {&crc32c, &detail::crc32c_portable}) {
    EXPECT_EQ(f("", 0), 0u);
    EXPECT_EQ(f("123456789", 0), 0xE3069283u);
    EXPECT_EQ(f(zeros, 0), 0x8A9136AAu);
    EXPECT_EQ(f(ones, 0), 0x62A8AB43u);
    EXPECT_EQ(f(inc, 0), 0x46DD794Eu);
    EXPECT_EQ(f(dec, 0), 0x113FDB5Cu);
  }
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // default starting crc
}

TEST(Crc32c, ExtendsAPreviousCrc) {
  const std::string s = "The quick brown fox jumps over the lazy dog, twice over the lazy dog";
  const uint32_t whole = crc32c(s);
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    const std::string_view a = std::string_view(s).substr(0, cut);
    const std::string_view b = std::string_view(s).substr(cut);
    EXPECT_EQ(crc32c(b, crc32c(a)), whole) << cut;
    EXPECT_EQ(detail::crc32c_portable(b, detail::crc32c_portable(a)), whole) << cut;
  }
}

TEST(Crc32c, HardwareAgreesWithPortable) {
  std::mt19937_64 rng(42);
  std::string buf(1 << 16, '\0');
  for (auto& c : buf) c = static_cast<char>(rng());
  // Every length and alignment around the 8-byte steps, then large spans.
  for (size_t start = 0; start < 16; ++start)
    for (size_t len = 0; len < 80; ++len) {
      const auto v = std::string_view(buf).substr(start, len);
      ASSERT_EQ(crc32c(v, 0x12345678u), detail::crc32c_portable(v, 0x12345678u))
          << start << "+" << len;
    }
  for (int i = 0; i < 200; ++i) {
    const size_t start = rng() % 64;
    const size_t len = rng() % (buf.size() - start);
    const auto v = std::string_view(buf).substr(start, len);
    ASSERT_EQ(crc32c(v), detail::crc32c_portable(v)) << start << "+" << len;
  }
}

// ---- Entry codecs. ---------------------------------------------------------------

TEST(WalCodec, FramingHeaderAndCrc) {
  std::string out = "prefix";
  put_remove(out, RemoveEntry{300});
  ASSERT_TRUE(out.starts_with("prefix"));
  const Framed f = unframe(std::string_view(out).substr(6));
  EXPECT_EQ(f.type, format::EntryType::remove);
  EXPECT_EQ(f.len, 2u);  // varint 300
  const std::string typed = std::string(1, '\x04') + std::string(f.payload);
  EXPECT_EQ(format::unmask_crc(f.masked_crc), crc32c(typed));
}

TEST(WalCodec, CreateRoundTrip) {
  for (bool fork : {false, true})
    for (const std::vector<std::string>& records :
         {std::vector<std::string>{}, std::vector<std::string>{"a"},
          std::vector<std::string>{"", std::string(100000, 'x'), "{\"k\":1}", ""}}) {
      CreateEntry e{sample_meta(9, fork), records};
      std::string out;
      put_create(out, e);
      EXPECT_EQ(unframe(out).type, format::EntryType::create);
      auto d = decode_create(unframe(out).payload);
      ASSERT_TRUE(d);
      expect_meta_eq(d->meta, e.meta);
      EXPECT_EQ(d->records, e.records);
    }
}

TEST(WalCodec, AppendRoundTripEveryFieldCombination) {
  for (unsigned mask = 0; mask < 16; ++mask) {
    AppendEntry e;
    e.id = 77;
    e.now_ms = 1'700'000'000'123;
    e.bytes = mask % 3 == 0 ? std::string() : std::string("payload-") + std::to_string(mask);
    e.close = mask & 1;
    if (mask & 2) e.producer = ProducerTriple{"prod-" + std::to_string(mask), 3, 41};
    if (mask & 4) e.producer_state = ProducerState{3, 41, 1'700'000'000'000};
    if (mask & 8) e.stream_seq = mask & 1 ? std::string() : std::string("000123");
    std::string out;
    put_append(out, e);
    EXPECT_EQ(unframe(out).type, format::EntryType::append);
    auto d = decode_append(unframe(out).payload);
    ASSERT_TRUE(d) << mask;
    EXPECT_EQ(d->id, e.id);
    EXPECT_EQ(d->now_ms, e.now_ms);
    EXPECT_EQ(d->bytes, e.bytes);
    EXPECT_EQ(d->close, e.close);
    EXPECT_EQ(d->producer, e.producer);
    ASSERT_EQ(d->producer_state.has_value(), e.producer_state.has_value());
    if (e.producer_state) {
      EXPECT_EQ(d->producer_state->epoch, e.producer_state->epoch);
      EXPECT_EQ(d->producer_state->last_seq, e.producer_state->last_seq);
      EXPECT_EQ(d->producer_state->updated_ms, e.producer_state->updated_ms);
    }
    EXPECT_EQ(d->stream_seq, e.stream_seq);
  }
}

TEST(WalCodec, AppendExtremeValues) {
  for (int64_t now : {INT64_MIN, int64_t{-1}, int64_t{0}, INT64_MAX}) {
    AppendEntry e;
    e.id = UINT64_MAX;
    e.now_ms = now;
    e.bytes = std::string(1 << 20, '\0');
    e.producer = ProducerTriple{std::string(300, 'p'), UINT64_MAX, UINT64_MAX};
    e.producer_state = ProducerState{UINT64_MAX, UINT64_MAX, INT64_MIN};
    e.stream_seq = std::string(200, 's');
    std::string out;
    put_append(out, e);
    auto d = decode_append(unframe(out).payload);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->id, UINT64_MAX);
    EXPECT_EQ(d->now_ms, now);
    EXPECT_EQ(d->bytes, e.bytes);
    EXPECT_EQ(d->producer, e.producer);
    EXPECT_EQ(d->producer_state->epoch, UINT64_MAX);
    EXPECT_EQ(d->producer_state->updated_ms, INT64_MIN);
    EXPECT_EQ(d->stream_seq, e.stream_seq);
  }
}

TEST(WalCodec, CommitMarkerIsAnEmptyEntry) {
  std::string out;
  put_commit(out);
  ASSERT_EQ(out.size(), format::kEntryHeaderSize);
  EXPECT_EQ(unframe(out).type, format::EntryType::commit);
  EXPECT_TRUE(unframe(out).payload.empty());
}

TEST(WalCodec, MetaAndRemoveRoundTrip) {
  for (bool fork : {false, true}) {
    MetaEntry e{sample_meta(5, fork)};
    e.meta.soft_deleted = true;
    e.meta.ref_count = 3;
    e.meta.closed = true;
    e.meta.closed_by = ProducerTriple{"p", 1, 2};
    e.meta.config.expires_at_ms = -5;
    std::string out;
    put_meta(out, e);
    EXPECT_EQ(unframe(out).type, format::EntryType::meta);
    auto d = decode_meta_entry(unframe(out).payload);
    ASSERT_TRUE(d);
    expect_meta_eq(d->meta, e.meta);
  }
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, uint64_t{128}, UINT64_MAX}) {
    std::string out;
    put_remove(out, RemoveEntry{id});
    EXPECT_EQ(unframe(out).type, format::EntryType::remove);
    auto d = decode_remove(unframe(out).payload);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->id, id);
  }
}

TEST(WalCodec, EveryTruncationAndTrailingGarbageIsMalformed) {
  std::string c, a, m, r;
  put_create(c, CreateEntry{sample_meta(3, true), {"one", "", "three"}});
  AppendEntry ae;
  ae.id = 3;
  ae.now_ms = 99;
  ae.bytes = "hello";
  ae.close = true;
  ae.producer = ProducerTriple{"p", 1, 2};
  ae.producer_state = ProducerState{1, 2, 3};
  ae.stream_seq = "s";
  put_append(a, ae);
  put_meta(m, MetaEntry{sample_meta(4, false)});
  put_remove(r, RemoveEntry{1u << 20});

  // Each prefix is copied into its own allocation so that ASan flags any
  // read past it.
  auto check = [](const std::string& payload, auto decode, const char* what) {
    ASSERT_TRUE(decode(payload)) << what;
    for (size_t n = 0; n < payload.size(); ++n) {
      const std::string prefix = payload.substr(0, n);
      EXPECT_FALSE(decode(prefix)) << what << " prefix " << n;
    }
    EXPECT_FALSE(decode(payload + '\0')) << what << " trailing byte";
    EXPECT_FALSE(decode(payload + "garbage")) << what << " trailing bytes";
  };
  check(payload_of(c), decode_create, "create");
  check(payload_of(a), decode_append, "append");
  check(payload_of(m), decode_meta_entry, "meta");
  check(payload_of(r), decode_remove, "remove");
}

TEST(WalCodec, GarbagePayloadsAreRejectedOrDecodedWithoutCrashing) {
  // Unknown append flags are refused (a newer writer's field would be
  // misread otherwise).
  std::string bad;
  codec::put_varint(bad, 1);
  codec::put_varint(bad, 2);
  codec::put_varint(bad, 1u << 4);
  codec::put_string(bad, "x");
  EXPECT_FALSE(decode_append(bad));

  // A huge record count must not allocate: it is refused.
  std::string huge;
  codec::put_string(huge, encode_meta(sample_meta(1, false)));
  codec::put_varint(huge, UINT64_MAX);
  EXPECT_FALSE(decode_create(huge));

  // Random bytes: whatever they decode to, no crash, no out-of-bounds read.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string g(rng() % 64, '\0');
    for (auto& ch : g) ch = static_cast<char>(rng());
    (void)decode_create(g);
    (void)decode_append(g);
    (void)decode_meta_entry(g);
    (void)decode_remove(g);
  }
}

// ---- Segments. ---------------------------------------------------------------

constexpr const char* kDir = "/data/wal";

struct Scanned {
  SegmentScan scan;
  std::vector<std::pair<format::EntryType, std::string>> entries;
};

Scanned scan(MemFs& fs, uint64_t seq) {
  Scanned out;
  auto r = scan_segment(fs, kDir, seq, [&](format::EntryType t, std::string_view p) -> Status {
    out.entries.emplace_back(t, std::string(p));
    return Unit{};
  });
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  if (r) out.scan = *r;
  return out;
}

/// Three entries, each written as its own group; returns the start offset of
/// every entry and the end.
std::vector<uint64_t> write_three(MemFs& fs, uint64_t seq) {
  auto w = WalWriter::create(fs, kDir, seq);
  EXPECT_TRUE(w);
  std::vector<uint64_t> starts;
  std::string g;
  put_create(g, CreateEntry{sample_meta(1, false), {"r0"}});
  starts.push_back((*w)->size());
  EXPECT_TRUE((*w)->write(g));
  g.clear();
  AppendEntry ae;
  ae.id = 1;
  ae.bytes = "second";
  put_append(g, ae);
  starts.push_back((*w)->size());
  EXPECT_TRUE((*w)->write(g));
  g.clear();
  put_remove(g, RemoveEntry{1});
  starts.push_back((*w)->size());
  EXPECT_TRUE((*w)->write(g));
  EXPECT_TRUE((*w)->sync());
  starts.push_back((*w)->size());
  return starts;
}

TEST(WalSegment, PathAndListing) {
  EXPECT_EQ(segment_path("/d", 42), "/d/0000000000000042.wal");
  MemFs fs;
  auto none = list_segments(fs, kDir);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(fs.make_dirs(kDir));
  for (const char* name : {"0000000000000010.wal", "0000000000000002.wal", "9999999999999999.wal",
                           "123.wal", "00000000000000001.wal", "0000000000000003.wal.tmp",
                           "000000000000000x.wal", "0000000000000004.log", "checkpoint"}) {
    auto f = fs.open(std::string(kDir) + "/" + name, OpenMode::write);
    ASSERT_TRUE(f);
    ASSERT_TRUE((*f)->write_at(0, "x"));
  }
  auto seqs = list_segments(fs, kDir);
  ASSERT_TRUE(seqs);
  EXPECT_EQ(*seqs, (std::vector<uint64_t>{2, 10, 9999999999999999ull}));
}

TEST(WalSegment, EmptySegmentScansClean) {
  MemFs fs;
  auto w = WalWriter::create(fs, kDir, 7);
  ASSERT_TRUE(w);
  EXPECT_EQ((*w)->seq(), 7u);
  EXPECT_EQ((*w)->size(), format::kWalHeaderSize);
  const std::string& b = fs.bytes(segment_path(kDir, 7));
  ASSERT_EQ(b.size(), format::kWalHeaderSize);
  EXPECT_TRUE(b.starts_with(format::kWalMagic));
  EXPECT_EQ(static_cast<uint8_t>(b[8]), 7);
  auto s = scan(fs, 7);
  EXPECT_TRUE(s.scan.clean());
  EXPECT_EQ(s.scan.valid_end, format::kWalHeaderSize);
  EXPECT_EQ(s.scan.entries, 0u);
  EXPECT_TRUE(s.scan.stopped_because.empty());
}

TEST(WalSegment, WriteScanRoundTrip) {
  MemFs fs;
  auto w = WalWriter::create(fs, kDir, 1);
  ASSERT_TRUE(w);
  // One group of many entries, then more groups: scan sees them in order.
  std::string group;
  std::vector<std::string> expected_bytes;
  for (int i = 0; i < 100; ++i) {
    AppendEntry e;
    e.id = 5;
    e.now_ms = i;
    e.bytes = std::string(static_cast<size_t>(i * 37), static_cast<char>('a' + i % 26));
    expected_bytes.push_back(e.bytes);
    put_append(group, e);
    if (i % 10 == 9) {
      ASSERT_TRUE((*w)->write(group));
      group.clear();
    }
  }
  ASSERT_TRUE((*w)->sync());
  auto s = scan(fs, 1);
  EXPECT_TRUE(s.scan.clean()) << s.scan.stopped_because;
  EXPECT_EQ(s.scan.entries, 100u);
  EXPECT_EQ(s.scan.valid_end, (*w)->size());
  EXPECT_EQ(s.scan.file_size, (*w)->size());
  ASSERT_EQ(s.entries.size(), 100u);
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(s.entries[i].first, format::EntryType::append);
    auto d = decode_append(s.entries[i].second);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->now_ms, static_cast<int64_t>(i));
    EXPECT_EQ(d->bytes, expected_bytes[i]);
  }
}

TEST(WalSegment, TornTailAtEveryByteKeepsTheEarlierEntries) {
  MemFs fs;
  const auto starts = write_three(fs, 3);
  const std::string path = segment_path(kDir, 3);
  const std::string whole = fs.bytes(path);
  ASSERT_EQ(whole.size(), starts[3]);
  for (uint64_t cut = starts[2]; cut < starts[3]; ++cut) {
    fs.bytes(path) = whole.substr(0, cut);
    auto s = scan(fs, 3);
    EXPECT_EQ(s.scan.entries, 2u) << cut;
    EXPECT_EQ(s.scan.valid_end, starts[2]) << cut;
    EXPECT_EQ(s.scan.file_size, cut);
    EXPECT_EQ(s.scan.clean(), cut == starts[2]) << cut;
    EXPECT_EQ(s.scan.stopped_because.empty(), cut == starts[2]) << cut;
    if (cut != starts[2]) {
      EXPECT_NE(s.scan.stopped_because.find(std::to_string(starts[2])), std::string::npos)
          << s.scan.stopped_because;
    }
  }
}

TEST(WalSegment, CorruptMiddleEntryStopsTheScanThere) {
  MemFs fs;
  const auto starts = write_three(fs, 4);
  const std::string path = segment_path(kDir, 4);
  const std::string whole = fs.bytes(path);
  // Flip every byte of the middle entry in turn (length, crc, type, payload).
  for (uint64_t at = starts[1]; at < starts[2]; ++at) {
    fs.bytes(path) = whole;
    fs.bytes(path)[at] ^= 0x20;
    auto s = scan(fs, 4);
    EXPECT_EQ(s.scan.entries, 1u) << at;
    EXPECT_EQ(s.scan.valid_end, starts[1]) << at;
    EXPECT_FALSE(s.scan.clean());
    EXPECT_FALSE(s.scan.stopped_because.empty());
    ASSERT_EQ(s.entries.size(), 1u);
    EXPECT_EQ(s.entries[0].first, format::EntryType::create);
  }
  // A payload byte specifically is a checksum mismatch.
  fs.bytes(path) = whole;
  fs.bytes(path)[starts[1] + format::kEntryHeaderSize + 1] ^= 1;
  EXPECT_NE(scan(fs, 4).scan.stopped_because.find("checksum"), std::string::npos);
}

TEST(WalSegment, OversizedLengthAndUnknownTypeStop) {
  MemFs fs;
  write_three(fs, 5);
  const std::string path = segment_path(kDir, 5);
  std::string& b = fs.bytes(path);
  // An entry of an unknown type with a valid checksum (as a newer writer
  // might leave) is not replayed.
  std::string unknown(format::kEntryHeaderSize, '\0');
  unknown[8] = 9;  // (5 is the commit marker)
  const uint32_t crc = format::mask_crc(crc32c(std::string_view(unknown).substr(8)));
  for (int i = 0; i < 4; ++i) unknown[4 + i] = static_cast<char>(crc >> (8 * i));
  const uint64_t end = b.size();
  b += unknown;
  auto s = scan(fs, 5);
  EXPECT_EQ(s.scan.entries, 3u);
  EXPECT_EQ(s.scan.valid_end, end);
  EXPECT_NE(s.scan.stopped_because.find("unknown entry type 9"), std::string::npos)
      << s.scan.stopped_because;

  b.resize(end);
  b += std::string("\xff\xff\xff\xff", 4) + std::string(20, '\0');
  s = scan(fs, 5);
  EXPECT_EQ(s.scan.valid_end, end);
  EXPECT_NE(s.scan.stopped_because.find("over the maximum"), std::string::npos)
      << s.scan.stopped_because;
}

TEST(WalSegment, BadOrMissingHeader) {
  MemFs fs;
  auto missing = scan(fs, 1);
  EXPECT_EQ(missing.scan.valid_end, 0u);
  EXPECT_FALSE(missing.scan.stopped_because.empty());

  write_three(fs, 2);
  const std::string path = segment_path(kDir, 2);
  const std::string whole = fs.bytes(path);
  for (size_t n = 0; n < format::kWalHeaderSize; ++n) {
    fs.bytes(path) = whole.substr(0, n);
    auto s = scan(fs, 2);
    EXPECT_EQ(s.scan.valid_end, 0u);
    EXPECT_EQ(s.scan.entries, 0u);
    EXPECT_FALSE(s.scan.stopped_because.empty());
  }
  fs.bytes(path) = whole;
  fs.bytes(path)[0] = 'X';
  EXPECT_EQ(scan(fs, 2).scan.valid_end, 0u);
  // A segment renamed to another number is refused by its header.
  fs.bytes(path) = whole;
  ASSERT_TRUE(fs.open(segment_path(kDir, 9), OpenMode::create_new));
  fs.bytes(segment_path(kDir, 9)) = whole;
  auto renamed = scan(fs, 9);
  EXPECT_EQ(renamed.scan.valid_end, 0u);
  EXPECT_EQ(renamed.scan.entries, 0u);
  EXPECT_NE(renamed.scan.stopped_because.find("sequence 2"), std::string::npos)
      << renamed.scan.stopped_because;
}

TEST(WalSegment, CallbackErrorStopsTheScan) {
  MemFs fs;
  write_three(fs, 6);
  int calls = 0;
  auto r = scan_segment(fs, kDir, 6, [&](format::EntryType, std::string_view) -> Status {
    if (++calls == 2) return Error(errc::storage_failure, "replay failed");
    return Unit{};
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "replay failed");
  EXPECT_EQ(calls, 2);
}

TEST(WalSegment, ReopenTruncatesGarbageAndContinues) {
  MemFs fs;
  const auto starts = write_three(fs, 8);
  const std::string path = segment_path(kDir, 8);
  fs.bytes(path) += "torn half of an entry";
  auto s = scan(fs, 8);
  ASSERT_EQ(s.scan.valid_end, starts[3]);

  auto w = WalWriter::reopen(fs, kDir, 8, s.scan.valid_end);
  ASSERT_TRUE(w);
  EXPECT_EQ((*w)->size(), starts[3]);
  EXPECT_EQ(fs.bytes(path).size(), starts[3]);
  std::string g;
  put_remove(g, RemoveEntry{2});
  ASSERT_TRUE((*w)->write(g));
  ASSERT_TRUE((*w)->sync());
  s = scan(fs, 8);
  EXPECT_TRUE(s.scan.clean()) << s.scan.stopped_because;
  EXPECT_EQ(s.scan.entries, 4u);
  EXPECT_EQ(decode_remove(s.entries[3].second)->id, 2u);

  // Continuing a clean segment leaves it alone; an impossible end is refused.
  auto again = WalWriter::reopen(fs, kDir, 8, (*w)->size());
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->size(), fs.bytes(path).size());
  EXPECT_FALSE(WalWriter::reopen(fs, kDir, 8, fs.bytes(path).size() + 1));
  EXPECT_FALSE(WalWriter::reopen(fs, kDir, 8, 3));
}

// ---- Preallocation: zeros ahead of the end. ---------------------------------------

TEST(WalSegment, PreallocatedZerosAreTheCleanEndOfASegment) {
  MemFs fs;
  auto w = WalWriter::create(fs, kDir, 2, 4096);
  ASSERT_TRUE(w);
  const std::string path = segment_path(kDir, 2);
  EXPECT_EQ(fs.bytes(path).size(), 4096u);
  EXPECT_EQ((*w)->size(), format::kWalHeaderSize);
  EXPECT_EQ((*w)->allocated(), 4096u);
  auto empty = scan(fs, 2);
  EXPECT_TRUE(empty.scan.clean()) << empty.scan.stopped_because;
  EXPECT_EQ(empty.scan.data_end, format::kWalHeaderSize);
  EXPECT_EQ(empty.scan.file_size, 4096u);

  // Groups written over the zeros leave the file's size alone.
  std::string g;
  for (int i = 0; i < 20; ++i) {
    AppendEntry e;
    e.id = 1;
    e.bytes = std::string(50, static_cast<char>('a' + i));
    put_append(g, e);
    put_commit(g);
    ASSERT_TRUE((*w)->write(g));
    g.clear();
  }
  ASSERT_TRUE((*w)->sync());
  EXPECT_EQ(fs.bytes(path).size(), 4096u);
  auto s = scan(fs, 2);
  EXPECT_TRUE(s.scan.clean()) << s.scan.stopped_because;
  EXPECT_EQ(s.scan.entries, 40u);
  EXPECT_EQ(s.scan.valid_end, (*w)->size());
  EXPECT_EQ(s.scan.data_end, (*w)->size());

  // A group past the zeros extends the file as before; more zeros follow.
  AppendEntry big;
  big.id = 1;
  big.bytes = std::string(5000, 'z');
  put_append(g, big);
  ASSERT_TRUE((*w)->write(g));
  EXPECT_EQ((*w)->allocated(), (*w)->size());
  EXPECT_EQ(fs.bytes(path).size(), (*w)->size());
  ASSERT_TRUE((*w)->preallocate((*w)->size() + 100));
  EXPECT_EQ(fs.bytes(path).size(), (*w)->size() + 100);
  ASSERT_TRUE((*w)->preallocate((*w)->size() + 50));  // already there: nothing
  EXPECT_EQ(fs.bytes(path).size(), (*w)->size() + 100);
  auto more = scan(fs, 2);
  EXPECT_TRUE(more.scan.clean()) << more.scan.stopped_because;
  EXPECT_EQ(more.scan.entries, 41u);

  // A rewind (after a failed write) cuts the zeros too.
  ASSERT_TRUE((*w)->rewind());
  EXPECT_EQ((*w)->allocated(), (*w)->size());
  EXPECT_EQ(fs.bytes(path).size(), (*w)->size());
}

TEST(WalSegment, ATornEntryOrBytesAfterTheZerosAreStillAStop) {
  MemFs fs;
  const auto starts = write_three(fs, 4);
  const std::string path = segment_path(kDir, 4);
  const std::string whole = fs.bytes(path);
  // The last entry torn at every byte, the rest of the space zeros (as a
  // group written over preallocated space and cut short by a crash).
  for (uint64_t cut = starts[2] + 1; cut < starts[3]; ++cut) {
    std::string b = whole.substr(0, cut) + std::string(4096, '\0');
    fs.bytes(path) = b;
    auto s = scan(fs, 4);
    // A prefix that is itself all zeros is indistinguishable from space
    // never written (and holds nothing): then the data ends at the entry.
    const bool zero_prefix = std::all_of(whole.begin() + static_cast<std::ptrdiff_t>(starts[2]),
                                         whole.begin() + static_cast<std::ptrdiff_t>(cut),
                                         [](char c) { return c == 0; });
    EXPECT_EQ(s.scan.clean(), zero_prefix) << cut;
    EXPECT_EQ(s.scan.valid_end, starts[2]) << cut;
    EXPECT_EQ(s.scan.entries, 2u) << cut;
  }
  // Zeros, then bytes again: not a tail of zeros, so a stop where the zeros begin.
  std::string b = whole + std::string(100, '\0') + "x" + std::string(100, '\0');
  fs.bytes(path) = b;
  auto s = scan(fs, 4);
  EXPECT_FALSE(s.scan.clean());
  EXPECT_FALSE(s.scan.stopped_because.empty());
  EXPECT_EQ(s.scan.valid_end, starts[3]);
  EXPECT_EQ(s.scan.data_end, b.size());
  EXPECT_EQ(s.scan.entries, 3u);
}

// ---- Checkpoint. ---------------------------------------------------------------

constexpr const char* kDataDir = "/data";

Checkpoint sample_checkpoint() {
  Checkpoint cp;
  cp.wal_segment = 12;
  cp.next_id = 1ull << 40;
  {
    CheckpointStream s;  // empty stream: no producers, no records
    s.meta = sample_meta(1, false);
    cp.streams.push_back(s);
  }
  {
    CheckpointStream s;
    s.meta = sample_meta(2, false);
    s.producers = {{"alpha", ProducerState{1, 5, 100}}, {"", ProducerState{0, 0, -1}}};
    s.record_ends = {3, 10, 11, 5000, 1ull << 50};
    s.file_end = 1ull << 50;
    cp.streams.push_back(s);
  }
  {
    CheckpointStream s;  // a fork: its ends start after the fork offset (1000)
    s.meta = sample_meta(3, true);
    s.producers = {{"p", ProducerState{UINT64_MAX, UINT64_MAX, INT64_MAX}}};
    s.record_ends = {1001, 1500, 2000, 2003};
    s.file_end = 2000;
    s.tail = std::string("a\0b", 3);  // the last record, not yet in the file
    cp.streams.push_back(s);
  }
  {
    CheckpointStream s;  // ends that do not ascend still round trip
    s.meta = sample_meta(4, true);
    s.record_ends = {5, 999, 3};
    cp.streams.push_back(s);
  }
  return cp;
}

void expect_checkpoint_eq(const Checkpoint& a, const Checkpoint& b) {
  EXPECT_EQ(a.wal_segment, b.wal_segment);
  EXPECT_EQ(a.next_id, b.next_id);
  ASSERT_EQ(a.streams.size(), b.streams.size());
  for (size_t i = 0; i < a.streams.size(); ++i) {
    const auto& x = a.streams[i];
    const auto& y = b.streams[i];
    expect_meta_eq(x.meta, y.meta);
    ASSERT_EQ(x.producers.size(), y.producers.size());
    for (size_t p = 0; p < x.producers.size(); ++p) {
      EXPECT_EQ(x.producers[p].first, y.producers[p].first);
      EXPECT_EQ(encode_producer(x.producers[p].second), encode_producer(y.producers[p].second));
    }
    EXPECT_EQ(x.file_end, y.file_end);
    EXPECT_EQ(x.record_ends, y.record_ends);
    EXPECT_EQ(x.tail, y.tail);
  }
}

TEST(Checkpoint, MissingIsNullopt) {
  MemFs fs;
  auto r = read_checkpoint(fs, kDataDir);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_value());
}

TEST(Checkpoint, RoundTrip) {
  MemFs fs;
  const Checkpoint cp = sample_checkpoint();
  ASSERT_TRUE(write_checkpoint(fs, kDataDir, cp));
  EXPECT_TRUE(fs.exists("/data/checkpoint"));
  EXPECT_FALSE(fs.exists("/data/checkpoint.tmp"));
  EXPECT_TRUE(fs.bytes("/data/checkpoint").starts_with(format::kCheckpointMagic));
  auto r = read_checkpoint(fs, kDataDir);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->has_value());
  expect_checkpoint_eq(**r, cp);

  // A second checkpoint replaces the first.
  Checkpoint empty;
  empty.wal_segment = 13;
  ASSERT_TRUE(write_checkpoint(fs, kDataDir, empty));
  r = read_checkpoint(fs, kDataDir);
  ASSERT_TRUE(r && r->has_value());
  expect_checkpoint_eq(**r, empty);
}

TEST(Checkpoint, EveryCorruptByteOrTruncationIsRefused) {
  MemFs fs;
  ASSERT_TRUE(write_checkpoint(fs, kDataDir, sample_checkpoint()));
  const std::string path = "/data/checkpoint";
  const std::string whole = fs.bytes(path);
  for (size_t at = 0; at < whole.size(); ++at) {
    fs.bytes(path) = whole;
    fs.bytes(path)[at] ^= 0x01;
    auto r = read_checkpoint(fs, kDataDir);
    ASSERT_FALSE(r) << "flipped byte " << at;
    EXPECT_EQ(r.error().code, errc::storage_failure);
    EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
  }
  for (size_t n = 0; n < whole.size(); ++n) {
    fs.bytes(path) = whole.substr(0, n);
    auto r = read_checkpoint(fs, kDataDir);
    ASSERT_FALSE(r) << "truncated to " << n;
    EXPECT_EQ(r.error().code, errc::storage_failure);
  }
  fs.bytes(path) = whole + "x";
  EXPECT_FALSE(read_checkpoint(fs, kDataDir));
}

TEST(Checkpoint, UnsupportedVersionIsNamed) {
  MemFs fs;
  ASSERT_TRUE(write_checkpoint(fs, kDataDir, Checkpoint{}));
  std::string& b = fs.bytes("/data/checkpoint");
  b[8] = 3;  // version 3, with a checksum that matches it
  const uint32_t crc = format::mask_crc(crc32c(std::string_view(b).substr(0, b.size() - 4)));
  for (int i = 0; i < 4; ++i) b[b.size() - 4 + i] = static_cast<char>(crc >> (8 * i));
  auto r = read_checkpoint(fs, kDataDir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::storage_failure);
  EXPECT_NE(r.error().message.find("version 3"), std::string::npos) << r.error().message;
}

TEST(Checkpoint, ManyStreams) {
  MemFs fs;
  Checkpoint cp;
  constexpr size_t kStreams = 100000;
  cp.streams.reserve(kStreams);
  for (size_t i = 0; i < kStreams; ++i) {
    CheckpointStream s;
    s.meta = sample_meta(i + 1, i % 10 == 0);
    const uint64_t base = s.meta.fork ? s.meta.fork->offset.lo : 0;
    for (uint64_t k = 1; k <= i % 5; ++k) s.record_ends.push_back(base + 10 * k);
    s.file_end = s.record_ends.empty() ? base : s.record_ends.back();
    if (i % 3 == 0) s.producers.push_back({"w" + std::to_string(i), ProducerState{1, i, 2}});
    cp.streams.push_back(std::move(s));
  }
  ASSERT_TRUE(write_checkpoint(fs, kDataDir, cp));
  auto r = read_checkpoint(fs, kDataDir);
  ASSERT_TRUE(r && r->has_value());
  expect_checkpoint_eq(**r, cp);
}

}  // namespace
}  // namespace ds::logstore
