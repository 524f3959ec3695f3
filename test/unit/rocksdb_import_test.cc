// The RocksDB import reader against data directories written as the previous
// release's engine wrote them (test/support/legacy_rocksdb.h, which writes
// keys through that engine's codec while the reader spells the layout out on
// its own), including what that engine never wrote: version-1 metadata,
// orphan keys, gaps and undecodable values. Every stream, byte and field
// imported must be what was written.

#include "store/log/rocksdb_import.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "store/meta_codec.h"
#include "store/rocksdb/codec.h"
#include "support/legacy_rocksdb.h"

namespace ds::logstore {
namespace {

namespace fs = std::filesystem;
using legacy::LegacyRocksDir;
using legacy::MetaVersion;
using V = std::vector<std::string>;

constexpr int64_t kT0 = 1'700'000'000'000;

void expect_same(const StreamMeta& a, const StreamMeta& b) {
  SCOPED_TRACE(b.path);
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
  }
  EXPECT_EQ(a.fork_depth, b.fork_depth);
  EXPECT_EQ(a.ref_count, b.ref_count);
  EXPECT_EQ(a.soft_deleted, b.soft_deleted);
  EXPECT_EQ(a.created_ms, b.created_ms);
  EXPECT_EQ(a.last_access_ms, b.last_access_ms);
}

/// Every file under `dir` with its size and modification time: a read-only
/// import must leave all three as they were.
using Listing = std::map<std::string, std::tuple<uintmax_t, fs::file_time_type>>;
Listing list_files(const std::string& dir) {
  Listing out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file())
      out[fs::relative(e.path(), dir).string()] = {e.file_size(), e.last_write_time()};
  }
  return out;
}

StreamMeta raw_meta(uint64_t id, const std::string& path, uint64_t tail) {
  StreamMeta m = legacy::stream_meta(id, path);
  m.tail = Offset{0, tail};
  return m;
}

class RocksdbImport : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ds-import-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    db_ = dir_ + "/db";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Result<ImportSummary> import(std::vector<ImportedStream>& out, const std::string& dir = "") {
    return import_rocksdb(dir.empty() ? db_ : dir, [&](ImportedStream&& s) -> Status {
      out.push_back(std::move(s));
      return Unit{};
    });
  }

  std::string dir_;
  std::string db_;
};

TEST_F(RocksdbImport, DeliversEveryStreamAsWrittenWithItsRecordsAndProducers) {
  // What the previous release left after a session of creates, appends,
  // forks and deletes; each comment names the requests that wrote it.
  std::map<std::string, StreamMeta> written;
  std::map<std::string, V> records;
  std::map<std::string, ProducerMap> producers;
  StreamMeta gone;
  {
    LegacyRocksDir d(db_);
    auto put = [&](const StreamMeta& m, const V& recs) {
      written[m.path] = d.put_stream(m, recs);
      records[m.path] = recs;
      return written[m.path];
    };
    auto produce = [&](const StreamMeta& m, const std::string& id, ProducerState p) {
      d.put_producer(m.id, id, p);
      producers[m.path][id] = p;
    };

    // PUT "hello", POST " world" (Stream-Seq a1), POST "!" (a2); forked by /s/fork.
    auto plain = legacy::stream_meta(1, "/s/plain", "text/plain", kT0);
    plain.last_stream_seq = "a2";
    plain.last_access_ms = kT0 + 2;
    plain.ref_count = 1;
    plain = put(plain, {"hello", " world", "!"});

    // PUT [{"a":1},{"b":2}], POST [3,4], POST "five".
    put(legacy::stream_meta(2, "/s/json", "application/json", kT0),
        {legacy::json_record({R"({"a":1})", R"({"b":2})"}), legacy::json_record({"3", "4"}),
         legacy::json_record({R"("five")"})});

    // Producer p1: x, y (epoch 0), z (epoch 1, then retried); p2: w (epoch 3).
    auto pr = legacy::stream_meta(3, "/s/producers", "text/plain", kT0);
    pr.last_access_ms = kT0 + 12;
    pr = put(pr, {"x", "y", "z", "w"});
    produce(pr, "p1", {1, 0, kT0 + 11});
    produce(pr, "p2", {3, 0, kT0 + 12});

    // Producer "closer" appends "last" and closes.
    auto closed = legacy::stream_meta(4, "/s/closed", "text/plain", kT0);
    closed.closed = true;
    closed.closed_by = ProducerTriple{"closer", 2, 0};
    closed = put(closed, {"last"});
    produce(closed, "closer", {2, 0, kT0});

    // A fork inside " world" (at offset 5, 3 bytes in): it owns " wo", then
    // POST "RK"; forked in turn at its tail by /s/fork2, which POSTs "2".
    auto f = legacy::fork_meta(5, "/s/fork", plain, Offset{0, 5}, 3, kT0);
    f.ref_count = 1;
    f = put(f, {" wo", "RK"});
    put(legacy::fork_meta(6, "/s/fork2", f, f.tail, 0, kT0), {"2"});

    // Forked at its tail, then deleted: soft-deleted, as its fork reads through it.
    auto source = legacy::stream_meta(7, "/s/source", "text/plain", kT0);
    source.ref_count = 1;
    source.soft_deleted = true;
    source = put(source, {"source-data"});
    put(legacy::fork_meta(8, "/s/source-fork", source, source.tail, 0, kT0), {"own"});

    auto ttl = legacy::stream_meta(9, "/s/ttl", "text/plain", kT0);
    ttl.config.ttl_seconds = 3600;
    put(ttl, {"t"});
    auto expires = legacy::stream_meta(10, "/s/expires", "text/plain", kT0);
    expires.config.expires_at_ms = kT0 + 86'400'000;
    expires.config.expires_at_text = "2023-11-15T22:13:20Z";
    put(expires, {"e"});
    put(legacy::stream_meta(11, "/s/empty", "text/plain", kT0), {});

    // Hard-deleted, and the newest id: next_id must come from the 'N' key.
    gone = d.put_stream(legacy::stream_meta(12, "/s/gone", "text/plain", kT0), {"bye", "!"});
    d.put_producer(gone.id, "pg", {0, 0, kT0});
    d.delete_stream(gone);
    d.put_next_id(gone.id + 1);
  }

  const Listing before = list_files(db_);
  std::vector<ImportedStream> got;
  auto summary = import(got);
  ASSERT_TRUE(summary.ok()) << summary.error().message;

  ASSERT_EQ(got.size(), written.size());
  EXPECT_EQ(summary->streams, got.size());
  EXPECT_EQ(summary->next_id, gone.id + 1);
  std::map<std::string, const ImportedStream*> by_path;
  uint64_t record_count = 0, bytes = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(got[i - 1].meta.id, got[i].meta.id) << "ids not ascending at " << i;
    }
    by_path[got[i].meta.path] = &got[i];
    record_count += got[i].records.size();
    uint64_t own = 0;
    for (const auto& r : got[i].records) own += r.size();
    bytes += own;
    const auto& m = got[i].meta;
    EXPECT_EQ(own, m.tail.lo - (m.fork ? m.fork->offset.lo : 0)) << m.path;
  }
  EXPECT_EQ(summary->records, record_count);
  EXPECT_EQ(summary->bytes, bytes);
  EXPECT_FALSE(by_path.count("/s/gone"));

  // Every field, record and producer as written.
  for (const auto& [path, meta] : written) {
    ASSERT_TRUE(by_path.count(path)) << path << " not imported";
    const ImportedStream& s = *by_path[path];
    expect_same(s.meta, meta);
    EXPECT_EQ(s.records, records[path]) << path;
    const ProducerMap& want = producers[path];
    ASSERT_EQ(s.producers.size(), want.size()) << path;
    for (const auto& [id, p] : want) {
      SCOPED_TRACE(path + " producer " + id);
      ASSERT_TRUE(s.producers.count(id));
      EXPECT_EQ(s.producers.at(id).epoch, p.epoch);
      EXPECT_EQ(s.producers.at(id).last_seq, p.last_seq);
      EXPECT_EQ(s.producers.at(id).updated_ms, p.updated_ms);
    }
  }

  // The same, spelled out, so that a wrong helper in the writer cannot hide
  // a wrong import.
  const auto& p = *by_path["/s/plain"];
  EXPECT_EQ(p.records, (V{"hello", " world", "!"}));
  EXPECT_EQ(p.meta.tail, (Offset{0, 12}));
  EXPECT_EQ(p.meta.last_stream_seq, "a2");
  EXPECT_EQ(p.meta.ref_count, 1u);
  EXPECT_EQ(p.meta.created_ms, kT0);
  EXPECT_EQ(p.meta.last_access_ms, kT0 + 2);

  const auto& j = *by_path["/s/json"];
  EXPECT_EQ(j.meta.config.content_type, "application/json");
  EXPECT_EQ(j.records, (V{R"({"a":1},{"b":2})", "3,4", R"("five")"}));

  const auto& pr = *by_path["/s/producers"];
  EXPECT_EQ(pr.records, (V{"x", "y", "z", "w"}));
  ASSERT_EQ(pr.producers.size(), 2u);
  EXPECT_EQ(pr.producers.at("p1").epoch, 1u);
  EXPECT_EQ(pr.producers.at("p1").updated_ms, kT0 + 11);
  EXPECT_EQ(pr.producers.at("p2").epoch, 3u);

  const auto& c = *by_path["/s/closed"];
  EXPECT_TRUE(c.meta.closed);
  EXPECT_EQ(c.meta.closed_by, (ProducerTriple{"closer", 2, 0}));

  const auto& f = *by_path["/s/fork"];
  EXPECT_EQ(f.records, (V{" wo", "RK"}));
  ASSERT_TRUE(f.meta.fork);
  EXPECT_EQ(f.meta.fork->source_path, "/s/plain");
  EXPECT_EQ(f.meta.fork->source_id, p.meta.id);
  EXPECT_EQ(f.meta.fork->offset, (Offset{0, 5}));
  EXPECT_EQ(f.meta.fork->sub_offset, 3u);
  EXPECT_EQ(f.meta.fork_depth, 1u);
  EXPECT_EQ(f.meta.tail, (Offset{0, 10}));

  const auto& f2 = *by_path["/s/fork2"];
  EXPECT_EQ(f2.records, (V{"2"}));
  EXPECT_EQ(f2.meta.fork_depth, 2u);
  EXPECT_EQ(f2.meta.fork->offset, (Offset{0, 10}));

  const auto& s = *by_path["/s/source"];
  EXPECT_TRUE(s.meta.soft_deleted);
  EXPECT_EQ(s.meta.ref_count, 1u);
  EXPECT_EQ(s.records, (V{"source-data"}));
  const auto& sf = *by_path["/s/source-fork"];
  EXPECT_EQ(sf.records, (V{"own"}));
  EXPECT_EQ(sf.meta.fork->source_id, s.meta.id);

  EXPECT_EQ(by_path["/s/ttl"]->meta.config.ttl_seconds, 3600u);
  EXPECT_EQ(by_path["/s/expires"]->meta.config.expires_at_ms, kT0 + 86'400'000);
  EXPECT_EQ(by_path["/s/expires"]->meta.config.expires_at_text, "2023-11-15T22:13:20Z");
  EXPECT_TRUE(by_path["/s/empty"]->records.empty());
  EXPECT_EQ(by_path["/s/empty"]->meta.tail, (Offset{}));

  // Read-only: the directory is as it was, the lock was released (a second
  // import and the previous release itself open it again), and nothing is
  // lost.
  std::vector<ImportedStream> again;
  auto second = import(again);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->streams, summary->streams);
  EXPECT_EQ(second->bytes, summary->bytes);
  EXPECT_EQ(list_files(db_), before);
  EXPECT_NO_THROW(LegacyRocksDir{db_});
}

TEST_F(RocksdbImport, ADatabaseInUseIsRefusedAtOnce) {
  auto d = std::make_unique<LegacyRocksDir>(db_);
  const StreamMeta a = d->put_stream(legacy::stream_meta(1, "/s/a"), {"a"});
  d->put_next_id(2);
  // The database stays open, holding RocksDB's LOCK as a running dstreamd of
  // the previous release did. Run the import on its own thread so that a
  // hang fails the test instead of blocking it.
  auto done = std::make_shared<std::promise<Result<ImportSummary>>>();
  auto result = done->get_future();
  std::thread([done, db = db_] {
    done->set_value(import_rocksdb(db, [](ImportedStream&&) -> Status { return Unit{}; }));
  }).detach();
  ASSERT_EQ(result.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  auto r = result.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::storage_failure);
  EXPECT_NE(r.error().message.find(db_), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("in use"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Stop the dstreamd"), std::string::npos) << r.error().message;

  // The writer is unaffected (an append); once it is closed the import succeeds.
  d->put_stream(a, {"a", "b"});
  d.reset();
  std::vector<ImportedStream> got;
  auto ok = import(got);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].records, (V{"a", "b"}));
  EXPECT_EQ(got[0].meta.tail, (Offset{0, 2}));
}

TEST_F(RocksdbImport, OnlyADirectoryWithACurrentFileIsARocksdbDirectory) {
  EXPECT_FALSE(is_rocksdb_dir(dir_));  // empty
  EXPECT_FALSE(is_rocksdb_dir(dir_ + "/missing"));
  std::ofstream(dir_ + "/streams.log") << "not rocksdb";
  EXPECT_FALSE(is_rocksdb_dir(dir_));
  fs::create_directory(dir_ + "/CURRENT");  // a directory is not RocksDB's file
  EXPECT_FALSE(is_rocksdb_dir(dir_));

  const Listing before = list_files(dir_);
  std::vector<ImportedStream> got;
  auto r = import(got, dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::storage_failure);
  EXPECT_NE(r.error().message.find(dir_), std::string::npos) << r.error().message;
  EXPECT_EQ(list_files(dir_), before);
  EXPECT_FALSE(fs::exists(dir_ + "/LOCK"));

  { LegacyRocksDir d(db_); }
  EXPECT_TRUE(is_rocksdb_dir(db_));
}

TEST_F(RocksdbImport, AnErrorFromOnStreamStopsTheImportAndIsReturned) {
  {
    LegacyRocksDir d(db_);
    uint64_t id = 1;
    for (const char* p : {"/s/1", "/s/2", "/s/3"})
      d.put_stream(legacy::stream_meta(id++, p), {"x"});
    d.put_next_id(id);
  }
  std::vector<std::string> seen;
  auto r = import_rocksdb(db_, [&](ImportedStream&& s) -> Status {
    seen.push_back(s.meta.path);
    if (seen.size() == 2) return Error(errc::unavailable, "target is full");
    return Unit{};
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_EQ(r.error().message, "target is full");
  EXPECT_EQ(seen, (V{"/s/1", "/s/2"}));
}

TEST_F(RocksdbImport, StreamsComeInIdOrderNotPathOrder) {
  {
    // Paths sort the other way round from ids (RocksDB returns metadata in
    // path order), and the fork's path sorts before its source's.
    LegacyRocksDir d(db_);
    auto source = legacy::stream_meta(1, "/z/source");
    source.ref_count = 1;
    source = d.put_stream(source, {"s"});
    d.put_stream(legacy::stream_meta(2, "/y/other"), {"o"});
    d.put_stream(legacy::fork_meta(3, "/a/fork", source, source.tail), {});
    d.put_next_id(4);
  }
  std::vector<ImportedStream> got;
  ASSERT_TRUE(import(got).ok());
  std::vector<std::string> order;
  for (const auto& s : got) order.push_back(s.meta.path);
  EXPECT_EQ(order, (V{"/z/source", "/y/other", "/a/fork"}));
}

TEST_F(RocksdbImport, LegacyForkDepthsAreDerivedAndOrphanKeysSkipped) {
  {
    LegacyRocksDir d(db_);
    StreamMeta root = raw_meta(1, "/l/root", 4);
    root.ref_count = 1;
    StreamMeta f1 = raw_meta(2, "/l/f1", 4);
    f1.fork = ForkRef{"/l/root", 1, Offset{0, 4}, 0};
    f1.ref_count = 1;
    StreamMeta f2 = raw_meta(3, "/l/f2", 6);
    f2.fork = ForkRef{"/l/f1", 2, Offset{0, 4}, 0};
    // A fork whose source is gone: a broken chain keeps its stored depth
    // (version 1 stores none: 1).
    StreamMeta broken = raw_meta(5, "/l/broken", 0);
    broken.fork = ForkRef{"/l/missing", 4, Offset{}, 0};
    for (const auto* m : {&root, &f1, &f2, &broken}) d.put_meta(*m, MetaVersion::v1);
    d.put_record(1, 0, "root");
    d.put_record(3, 4, "f2");
    // Keys of hard-deleted streams 4 and 9, which have no metadata.
    d.put_record(4, 0, "zombie");
    d.put_producer(4, "ghost", ProducerState{1, 1, 1});
    d.put_record(9, 0, "zombie");
    d.put_producer(9, "ghost", ProducerState{1, 1, 1});
    // No 'N' key: the next id follows the largest stream id.
  }
  std::vector<ImportedStream> got;
  auto r = import(got);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].meta.fork_depth, 0u);
  EXPECT_EQ(got[1].meta.fork_depth, 1u);
  EXPECT_EQ(got[2].meta.fork_depth, 2u);
  EXPECT_EQ(got[3].meta.path, "/l/broken");
  EXPECT_EQ(got[3].meta.fork_depth, 1u);
  EXPECT_EQ(got[0].records, (V{"root"}));
  EXPECT_TRUE(got[1].records.empty());
  EXPECT_EQ(got[2].records, (V{"f2"}));
  for (const auto& s : got) EXPECT_TRUE(s.producers.empty()) << s.meta.path;
  EXPECT_EQ(r->records, 2u);
  EXPECT_EQ(r->bytes, 6u);
  EXPECT_EQ(r->next_id, 6u);
}

TEST_F(RocksdbImport, VersionOneMetadataIsVersionTwoWithoutTheForkDepth) {
  // Values past one varint byte, to check encode_meta_v1 itself.
  StreamMeta m = raw_meta(300, "/l/f", 70'000);
  m.fork = ForkRef{"/l/src", 200, Offset{0, 1000}, 2};
  m.fork_depth = 130;
  m.ref_count = 129;
  m.created_ms = kT0;
  m.last_access_ms = kT0 + 1;
  const std::string v1 = legacy::encode_meta_v1(m);
  EXPECT_EQ(v1[0], '\x01');
  EXPECT_EQ(v1.size() + 2, legacy::encode_meta_v2(m).size());  // depth 130 is a two-byte varint
  auto decoded = decode_meta(v1);
  ASSERT_TRUE(decoded);
  StreamMeta want = m;
  want.fork_depth = 1;  // what version 1 decodes to
  expect_same(*decoded, want);

  StreamMeta plain = raw_meta(1, "/l/plain", 3);
  EXPECT_EQ(legacy::encode_meta_v1(plain).substr(1), legacy::encode_meta_v2(plain).substr(1));
}

TEST_F(RocksdbImport, GapsAndUndecodableValuesAreStorageFailuresNamingTheStream) {
  struct Case {
    const char* name;
    std::function<void(LegacyRocksDir&)> fill;
    std::string names;  // what the message must mention
  };
  const std::vector<Case> cases = {
      {"gap",
       [](LegacyRocksDir& d) {
         d.put_meta(raw_meta(1, "/c/gap", 8));
         d.put_record(1, 0, "abc");
         d.put_record(1, 5, "xyz");
       },
       "/c/gap has a gap at offset 3"},
      {"overlap",
       [](LegacyRocksDir& d) {
         d.put_meta(raw_meta(1, "/c/overlap", 9));
         d.put_record(1, 0, "abcdef");
         d.put_record(1, 3, "xyz");
       },
       "/c/overlap has overlapping records"},
      {"short of its tail",
       [](LegacyRocksDir& d) {
         d.put_meta(raw_meta(1, "/c/short", 10));
         d.put_record(1, 0, "abc");
       },
       "/c/short ends at offset 3"},
      {"beyond its tail",
       [](LegacyRocksDir& d) {
         d.put_meta(raw_meta(1, "/c/long", 2));
         d.put_record(1, 0, "abc");
       },
       "/c/long has records beyond its tail"},
      {"fork not starting at its fork offset",
       [](LegacyRocksDir& d) {
         d.put_meta(raw_meta(1, "/c/src", 4));
         d.put_record(1, 0, "abcd");
         StreamMeta f = raw_meta(2, "/c/fork", 8);
         f.fork = ForkRef{"/c/src", 1, Offset{0, 4}, 0};
         f.fork_depth = 1;
         d.put_meta(f);
         d.put_record(2, 0, "wxyz");
         d.put_record(2, 4, "wxyz");
       },
       "/c/fork has overlapping records at offset 4"},
      {"undecodable metadata",
       [](LegacyRocksDir& d) { d.put_raw(rocks::meta_key("/c/meta"), "garbage"); },
       "metadata of stream /c/meta"},
      {"metadata under another path",
       [](LegacyRocksDir& d) {
         d.put_raw(rocks::meta_key("/c/here"), encode_meta(raw_meta(1, "/c/there", 0)));
       },
       "/c/here names /c/there"},
      {"two streams with one id",
       [](LegacyRocksDir& d) {
         d.put_meta(raw_meta(1, "/c/one", 0));
         d.put_meta(raw_meta(1, "/c/two", 0));
       },
       "/c/one and /c/two have the same id 1"},
      {"undecodable producer",
       [](LegacyRocksDir& d) {
         d.put_meta(raw_meta(1, "/c/producer", 0));
         d.put_raw(rocks::producer_key(1, "p1"), "\xff");
       },
       "producer p1 of stream /c/producer"},
      {"undecodable next id", [](LegacyRocksDir& d) { d.put_raw(rocks::kNextIdKey, "short"); },
       "next stream id"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const std::string db = dir_ + "/case" + std::to_string(i);
    {
      LegacyRocksDir d(db);
      cases[i].fill(d);
    }
    int delivered = 0;
    auto r = import_rocksdb(db, [&](ImportedStream&& s) -> Status {
      // Only a healthy stream may be delivered before the failure.
      EXPECT_EQ(s.meta.path, "/c/src");
      ++delivered;
      return Unit{};
    });
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, errc::storage_failure);
    EXPECT_NE(r.error().message.find(db), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(cases[i].names), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("Restore the directory from a backup"), std::string::npos)
        << r.error().message;
    EXPECT_LE(delivered, 1);
  }
}

TEST_F(RocksdbImport, ADatabaseThatCannotBeOpenedIsAStorageFailure) {
  {
    LegacyRocksDir d(db_);
    d.put_stream(legacy::stream_meta(1, "/s/a"), {"a"});
    d.put_next_id(2);
  }
  // CURRENT names the manifest: one that does not exist makes the database
  // unopenable, as a lost or damaged file would.
  std::ofstream(db_ + "/CURRENT", std::ios::trunc) << "MANIFEST-999999\n";
  std::vector<ImportedStream> got;
  auto r = import(got);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::storage_failure);
  EXPECT_NE(r.error().message.find(db_), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("cannot open it"), std::string::npos) << r.error().message;
  EXPECT_TRUE(got.empty());
}

}  // namespace
}  // namespace ds::logstore
