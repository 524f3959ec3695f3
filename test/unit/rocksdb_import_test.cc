// The RocksDB import reader against databases written by the real RocksDB
// engine (so the reader's idea of the key layout cannot drift from the
// engine's), plus hand-written databases for what the engine never writes:
// version-1 metadata, orphan keys, gaps and undecodable values.

#include "store/log/rocksdb_import.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "store/meta_codec.h"
#include "store/rocksdb/codec.h"
#include "store/rocksdb/rocksdb_store.h"

namespace ds::logstore {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kT0 = 1'700'000'000'000;

template <class T>
errc code_of(const Result<T>& r) {
  return r.ok() ? errc::ok : r.error().code;
}

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

/// Version-1 metadata, as a dstreamd from before the fork depth limit wrote
/// it: version 2 without the fork depth. With one-byte fork depth and
/// one-byte trailing fields (ref_count, soft_deleted, created_ms,
/// last_access_ms all < 128), that is the version-2 encoding minus the fifth
/// byte from the end.
std::string encode_meta_v1(const StreamMeta& m) {
  std::string v = encode_meta(m);
  v[0] = '\x01';
  if (!m.fork) return v;
  EXPECT_LT(m.fork_depth, 128u);
  EXPECT_LT(m.ref_count, 128u);
  EXPECT_EQ(m.created_ms, 0);
  EXPECT_EQ(m.last_access_ms, 0);
  return v.substr(0, v.size() - 5) + v.substr(v.size() - 4);
}

StreamMeta raw_meta(uint64_t id, const std::string& path, uint64_t tail) {
  StreamMeta m;
  m.id = id;
  m.path = path;
  m.config.content_type = "text/plain";
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
    clock_.set_ms(kT0);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void open() {
    store_.reset();
    RocksStoreOptions o;
    o.path = db_;
    o.clock = &clock_;
    o.maintenance_interval_ms = 3'600'000;  // no sweep between the writes and the checks
    auto s = open_rocksdb_store(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(*s);
  }
  void close() { store_.reset(); }

  template <class T, class Start>
  static Result<T> wait(Start&& start) {
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto f = p->get_future();
    start([p](Result<T> r) { p->set_value(std::move(r)); });
    if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
      return Error(errc::unavailable, "no answer within 60 s");
    return f.get();
  }

  StreamMeta create(CreateRequest req) {
    const std::string path = req.path;
    auto r = wait<CreateOutcome>([&](auto cb) { store_->create(std::move(req), cb); });
    EXPECT_TRUE(r.ok() && r->created) << path << ": " << (r.ok() ? "exists" : r.error().message);
    return r.ok() ? r->meta : StreamMeta{};
  }
  AppendOutcome::Kind append(AppendRequest req) {
    const std::string path = req.path;
    auto r = wait<AppendOutcome>([&](auto cb) { store_->append(std::move(req), cb); });
    EXPECT_TRUE(r.ok()) << path << ": " << r.error().message;
    return r.ok() ? r->kind : AppendOutcome::Kind::already_closed;
  }
  StreamMeta head(const std::string& path) {
    auto r = wait<StreamMeta>([&](auto cb) { store_->head(path, cb); });
    EXPECT_TRUE(r.ok()) << path << ": " << r.error().message;
    return r.ok() ? *r : StreamMeta{};
  }
  void remove(const std::string& path) {
    auto r = wait<Unit>([&](auto cb) { store_->remove(path, cb); });
    EXPECT_TRUE(r.ok()) << path << ": " << r.error().message;
  }
  /// The stream's own records as the engine serves them (a read returns a
  /// fork's inherited records too: those begin before its fork offset).
  std::vector<std::string> own_records(const StreamMeta& meta) {
    ReadRequest req{meta.path, OffsetSpec::start()};
    req.max_bytes = 1 << 30;
    auto r = wait<ReadOutcome>([&](auto cb) { store_->read(req, cb); });
    EXPECT_TRUE(r.ok()) << meta.path << ": " << r.error().message;
    std::vector<std::string> out;
    if (!r.ok()) return out;
    EXPECT_TRUE(r->up_to_date) << meta.path;
    const uint64_t first = meta.fork ? meta.fork->offset.lo : 0;
    for (const auto& rec : r->records)
      if (rec->begin.lo >= first) out.push_back(rec->bytes);
    return out;
  }

  static CreateRequest stream(const std::string& path, const std::string& body = "",
                              const std::string& type = "text/plain") {
    CreateRequest r;
    r.path = path;
    r.config.content_type = type;
    r.body = body;
    return r;
  }
  static CreateRequest fork(const std::string& path, const std::string& source) {
    CreateRequest r;
    r.path = path;
    r.forked_from = source;
    return r;
  }
  static AppendRequest post(const std::string& path, const std::string& body,
                            const std::string& type = "text/plain") {
    AppendRequest r;
    r.path = path;
    r.content_type = type;
    r.body = body;
    return r;
  }
  static AppendRequest produce(const std::string& path, const std::string& body,
                               ProducerTriple producer) {
    AppendRequest r = post(path, body);
    r.producer = std::move(producer);
    return r;
  }

  Result<ImportSummary> import(std::vector<ImportedStream>& out, const std::string& dir = "") {
    return import_rocksdb(dir.empty() ? db_ : dir, [&](ImportedStream&& s) -> Status {
      out.push_back(std::move(s));
      return Unit{};
    });
  }

  /// Writes `fill`'s batch straight into a new database at `dir`, for what
  /// the engine itself never writes.
  static void write_raw(const std::string& dir,
                        const std::function<void(rocksdb::WriteBatch&)>& fill) {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteBatch batch;
    fill(batch);
    ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());
  }

  std::string dir_;
  std::string db_;
  ManualClock clock_;
  std::unique_ptr<StreamStore> store_;
};

TEST_F(RocksdbImport, DeliversEveryStreamTheEngineWroteWithItsRecordsAndProducers) {
  open();
  const auto plain = create(stream("/s/plain", "hello"));
  clock_.set_ms(kT0 + 1);
  auto seq1 = post("/s/plain", " world");
  seq1.stream_seq = "a1";
  EXPECT_EQ(append(seq1), AppendOutcome::Kind::appended);
  clock_.set_ms(kT0 + 2);
  auto seq2 = post("/s/plain", "!");
  seq2.stream_seq = "a2";
  EXPECT_EQ(append(seq2), AppendOutcome::Kind::appended);

  const auto json = create(stream("/s/json", R"([{"a":1},{"b":2}])", "application/json"));
  EXPECT_EQ(append(post("/s/json", "[3,4]", "application/json")), AppendOutcome::Kind::appended);
  EXPECT_EQ(append(post("/s/json", R"("five")", "application/json")),
            AppendOutcome::Kind::appended);

  create(stream("/s/producers"));
  clock_.set_ms(kT0 + 10);
  EXPECT_EQ(append(produce("/s/producers", "x", {"p1", 0, 0})), AppendOutcome::Kind::appended);
  EXPECT_EQ(append(produce("/s/producers", "y", {"p1", 0, 1})), AppendOutcome::Kind::appended);
  clock_.set_ms(kT0 + 11);
  EXPECT_EQ(append(produce("/s/producers", "z", {"p1", 1, 0})), AppendOutcome::Kind::appended);
  EXPECT_EQ(append(produce("/s/producers", "z", {"p1", 1, 0})), AppendOutcome::Kind::duplicate);
  clock_.set_ms(kT0 + 12);
  EXPECT_EQ(append(produce("/s/producers", "w", {"p2", 3, 0})), AppendOutcome::Kind::appended);

  create(stream("/s/closed"));
  auto closing = produce("/s/closed", "last", {"closer", 2, 0});
  closing.close = true;
  EXPECT_EQ(append(closing), AppendOutcome::Kind::appended);

  // A fork inside " world" (at offset 5, 3 bytes in): it owns " wo".
  auto sub = fork("/s/fork", "/s/plain");
  sub.fork_offset = Offset{0, 5};
  sub.fork_sub_offset = 3;
  create(sub);
  EXPECT_EQ(append(post("/s/fork", "RK")), AppendOutcome::Kind::appended);
  create(fork("/s/fork2", "/s/fork"));
  EXPECT_EQ(append(post("/s/fork2", "2")), AppendOutcome::Kind::appended);

  create(stream("/s/source", "source-data"));
  create(fork("/s/source-fork", "/s/source"));
  EXPECT_EQ(append(post("/s/source-fork", "own")), AppendOutcome::Kind::appended);
  const StreamMeta source_before = head("/s/source");
  remove("/s/source");  // soft-deleted: its fork reads through it

  auto ttl = stream("/s/ttl", "t");
  ttl.config.ttl_seconds = 3600;
  create(ttl);
  auto expires = stream("/s/expires", "e");
  expires.config.expires_at_ms = kT0 + 86'400'000;
  expires.config.expires_at_text = "2023-11-15T22:13:20Z";
  create(expires);
  create(stream("/s/empty"));

  // Hard-deleted, and the newest id: next_id must come from the 'N' key.
  const auto gone = create(stream("/s/gone", "bye"));
  EXPECT_EQ(append(produce("/s/gone", "!", {"pg", 0, 0})), AppendOutcome::Kind::appended);
  remove("/s/gone");

  // What the engine holds, before any read (a read renews access times).
  const std::vector<std::string> live = {"/s/plain",   "/s/json",  "/s/producers",   "/s/closed",
                                         "/s/fork",    "/s/fork2", "/s/source-fork", "/s/ttl",
                                         "/s/expires", "/s/empty"};
  std::map<std::string, StreamMeta> expected;
  for (const auto& p : live) expected[p] = head(p);
  expected["/s/source"] = source_before;
  expected["/s/source"].soft_deleted = true;
  std::map<std::string, std::vector<std::string>> served;
  for (const auto& p : live) served[p] = own_records(expected[p]);
  close();

  const Listing before = list_files(db_);
  std::vector<ImportedStream> got;
  auto summary = import(got);
  ASSERT_TRUE(summary.ok()) << summary.error().message;

  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(summary->streams, got.size());
  EXPECT_EQ(summary->next_id, gone.id + 1);
  std::map<std::string, const ImportedStream*> by_path;
  uint64_t records = 0, bytes = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(got[i - 1].meta.id, got[i].meta.id) << "ids not ascending at " << i;
    }
    by_path[got[i].meta.path] = &got[i];
    records += got[i].records.size();
    uint64_t own = 0;
    for (const auto& r : got[i].records) own += r.size();
    bytes += own;
    const auto& m = got[i].meta;
    EXPECT_EQ(own, m.tail.lo - (m.fork ? m.fork->offset.lo : 0)) << m.path;
  }
  EXPECT_EQ(summary->records, records);
  EXPECT_EQ(summary->bytes, bytes);

  for (const auto& [path, meta] : expected) {
    ASSERT_TRUE(by_path.count(path)) << path << " not imported";
    expect_same(by_path[path]->meta, meta);
  }
  for (const auto& [path, recs] : served) EXPECT_EQ(by_path[path]->records, recs) << path;

  // The same, spelled out, so a wrong oracle cannot hide a wrong import.
  using V = std::vector<std::string>;
  const auto& p = *by_path["/s/plain"];
  EXPECT_EQ(p.records, (V{"hello", " world", "!"}));
  EXPECT_EQ(p.meta.last_stream_seq, "a2");
  EXPECT_EQ(p.meta.ref_count, 1u);
  EXPECT_EQ(p.meta.created_ms, kT0);
  EXPECT_EQ(p.meta.last_access_ms, kT0 + 2);
  EXPECT_TRUE(p.producers.empty());

  const auto& j = *by_path["/s/json"];
  EXPECT_EQ(j.meta.id, json.id);
  EXPECT_EQ(j.meta.config.content_type, "application/json");
  ASSERT_EQ(j.records.size(), 3u);
  EXPECT_NE(j.records[0].find(R"({"a":1})"), std::string::npos) << j.records[0];
  EXPECT_NE(j.records[1].find("3"), std::string::npos) << j.records[1];
  EXPECT_NE(j.records[2].find(R"("five")"), std::string::npos) << j.records[2];

  const auto& pr = *by_path["/s/producers"];
  EXPECT_EQ(pr.records, (V{"x", "y", "z", "w"}));
  ASSERT_EQ(pr.producers.size(), 2u);
  EXPECT_EQ(pr.producers.at("p1").epoch, 1u);
  EXPECT_EQ(pr.producers.at("p1").last_seq, 0u);
  EXPECT_EQ(pr.producers.at("p1").updated_ms, kT0 + 11);
  EXPECT_EQ(pr.producers.at("p2").epoch, 3u);
  EXPECT_EQ(pr.producers.at("p2").last_seq, 0u);
  EXPECT_EQ(pr.producers.at("p2").updated_ms, kT0 + 12);

  const auto& c = *by_path["/s/closed"];
  EXPECT_EQ(c.records, (V{"last"}));
  EXPECT_TRUE(c.meta.closed);
  EXPECT_EQ(c.meta.closed_by, (ProducerTriple{"closer", 2, 0}));
  ASSERT_EQ(c.producers.size(), 1u);
  EXPECT_EQ(c.producers.at("closer").epoch, 2u);

  const auto& f = *by_path["/s/fork"];
  EXPECT_EQ(f.records, (V{" wo", "RK"}));
  ASSERT_TRUE(f.meta.fork);
  EXPECT_EQ(f.meta.fork->source_path, "/s/plain");
  EXPECT_EQ(f.meta.fork->source_id, plain.id);
  EXPECT_EQ(f.meta.fork->offset, (Offset{0, 5}));
  EXPECT_EQ(f.meta.fork->sub_offset, 3u);
  EXPECT_EQ(f.meta.fork_depth, 1u);
  EXPECT_EQ(f.meta.tail, (Offset{0, 10}));
  EXPECT_EQ(f.meta.ref_count, 1u);

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
  EXPECT_LT(s.meta.id, sf.meta.id);

  EXPECT_EQ(by_path["/s/ttl"]->meta.config.ttl_seconds, 3600u);
  EXPECT_EQ(by_path["/s/ttl"]->records, (V{"t"}));
  EXPECT_EQ(by_path["/s/expires"]->meta.config.expires_at_ms, kT0 + 86'400'000);
  EXPECT_EQ(by_path["/s/expires"]->meta.config.expires_at_text, "2023-11-15T22:13:20Z");
  EXPECT_TRUE(by_path["/s/empty"]->records.empty());
  EXPECT_EQ(by_path["/s/empty"]->meta.tail, (Offset{}));

  // Read-only: the directory is as it was, the lock was released (a second
  // import and the engine itself open it again), and nothing is lost.
  std::vector<ImportedStream> again;
  auto second = import(again);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->streams, summary->streams);
  EXPECT_EQ(second->bytes, summary->bytes);
  EXPECT_EQ(list_files(db_), before);
  open();
  EXPECT_EQ(own_records(head("/s/plain")), (V{"hello", " world", "!"}));
}

TEST_F(RocksdbImport, ADatabaseInUseIsRefusedAtOnce) {
  open();
  create(stream("/s/a", "a"));
  // The store stays open. Run the import on its own thread so that a hang
  // fails the test instead of blocking it.
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

  // The running engine is unaffected; once it is closed the import succeeds.
  EXPECT_EQ(append(post("/s/a", "b")), AppendOutcome::Kind::appended);
  close();
  std::vector<ImportedStream> got;
  auto ok = import(got);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].records, (std::vector<std::string>{"a", "b"}));
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

  open();
  close();
  EXPECT_TRUE(is_rocksdb_dir(db_));
}

TEST_F(RocksdbImport, AnErrorFromOnStreamStopsTheImportAndIsReturned) {
  open();
  for (const char* p : {"/s/1", "/s/2", "/s/3"}) create(stream(p, "x"));
  close();
  std::vector<std::string> seen;
  auto r = import_rocksdb(db_, [&](ImportedStream&& s) -> Status {
    seen.push_back(s.meta.path);
    if (seen.size() == 2) return Error(errc::unavailable, "target is full");
    return Unit{};
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_EQ(r.error().message, "target is full");
  EXPECT_EQ(seen, (std::vector<std::string>{"/s/1", "/s/2"}));
}

TEST_F(RocksdbImport, StreamsComeInIdOrderNotPathOrder) {
  open();
  // Paths sort the other way round from ids (RocksDB returns metadata in
  // path order), and the fork's path sorts before its source's.
  create(stream("/z/source", "s"));
  create(stream("/y/other", "o"));
  create(fork("/a/fork", "/z/source"));
  close();
  std::vector<ImportedStream> got;
  ASSERT_TRUE(import(got).ok());
  std::vector<std::string> order;
  for (const auto& s : got) order.push_back(s.meta.path);
  EXPECT_EQ(order, (std::vector<std::string>{"/z/source", "/y/other", "/a/fork"}));
}

TEST_F(RocksdbImport, LegacyForkDepthsAreDerivedAndOrphanKeysSkipped) {
  write_raw(db_, [](rocksdb::WriteBatch& b) {
    StreamMeta root = raw_meta(1, "/l/root", 4);
    root.ref_count = 1;
    StreamMeta f1 = raw_meta(2, "/l/f1", 4);
    f1.fork = ForkRef{"/l/root", 1, Offset{0, 4}, 0};
    f1.fork_depth = 1;  // what version 1 decodes to
    f1.ref_count = 1;
    StreamMeta f2 = raw_meta(3, "/l/f2", 6);
    f2.fork = ForkRef{"/l/f1", 2, Offset{0, 4}, 0};
    f2.fork_depth = 1;
    // A fork whose source is gone: a broken chain keeps its stored depth.
    StreamMeta broken = raw_meta(5, "/l/broken", 0);
    broken.fork = ForkRef{"/l/missing", 4, Offset{}, 0};
    broken.fork_depth = 1;
    for (const auto* m : {&root, &f1, &f2, &broken})
      b.Put(rocks::meta_key(m->path), encode_meta_v1(*m));
    b.Put(rocks::data_key(1, 0), "root");
    b.Put(rocks::data_key(3, 4), "f2");
    // Keys of hard-deleted streams 4 and 9, which have no metadata.
    b.Put(rocks::data_key(4, 0), "zombie");
    b.Put(rocks::producer_key(4, "ghost"), encode_producer(ProducerState{1, 1, 1}));
    b.Put(rocks::data_key(9, 0), "zombie");
    b.Put(rocks::producer_key(9, "ghost"), encode_producer(ProducerState{1, 1, 1}));
    // No 'N' key: the next id follows the largest stream id.
  });
  std::vector<ImportedStream> got;
  auto r = import(got);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].meta.fork_depth, 0u);
  EXPECT_EQ(got[1].meta.fork_depth, 1u);
  EXPECT_EQ(got[2].meta.fork_depth, 2u);
  EXPECT_EQ(got[3].meta.path, "/l/broken");
  EXPECT_EQ(got[3].meta.fork_depth, 1u);
  EXPECT_EQ(got[0].records, (std::vector<std::string>{"root"}));
  EXPECT_TRUE(got[1].records.empty());
  EXPECT_EQ(got[2].records, (std::vector<std::string>{"f2"}));
  for (const auto& s : got) EXPECT_TRUE(s.producers.empty()) << s.meta.path;
  EXPECT_EQ(r->records, 2u);
  EXPECT_EQ(r->bytes, 6u);
  EXPECT_EQ(r->next_id, 6u);
}

TEST_F(RocksdbImport, GapsAndUndecodableValuesAreStorageFailuresNamingTheStream) {
  struct Case {
    const char* name;
    std::function<void(rocksdb::WriteBatch&)> fill;
    std::string names;  // what the message must mention
  };
  auto put_meta = [](rocksdb::WriteBatch& b, const StreamMeta& m) {
    b.Put(rocks::meta_key(m.path), encode_meta(m));
  };
  const std::vector<Case> cases = {
      {"gap",
       [&](rocksdb::WriteBatch& b) {
         put_meta(b, raw_meta(1, "/c/gap", 8));
         b.Put(rocks::data_key(1, 0), "abc");
         b.Put(rocks::data_key(1, 5), "xyz");
       },
       "/c/gap has a gap at offset 3"},
      {"overlap",
       [&](rocksdb::WriteBatch& b) {
         put_meta(b, raw_meta(1, "/c/overlap", 9));
         b.Put(rocks::data_key(1, 0), "abcdef");
         b.Put(rocks::data_key(1, 3), "xyz");
       },
       "/c/overlap has overlapping records"},
      {"short of its tail",
       [&](rocksdb::WriteBatch& b) {
         put_meta(b, raw_meta(1, "/c/short", 10));
         b.Put(rocks::data_key(1, 0), "abc");
       },
       "/c/short ends at offset 3"},
      {"beyond its tail",
       [&](rocksdb::WriteBatch& b) {
         put_meta(b, raw_meta(1, "/c/long", 2));
         b.Put(rocks::data_key(1, 0), "abc");
       },
       "/c/long has records beyond its tail"},
      {"fork not starting at its fork offset",
       [&](rocksdb::WriteBatch& b) {
         put_meta(b, raw_meta(1, "/c/src", 4));
         b.Put(rocks::data_key(1, 0), "abcd");
         StreamMeta f = raw_meta(2, "/c/fork", 8);
         f.fork = ForkRef{"/c/src", 1, Offset{0, 4}, 0};
         f.fork_depth = 1;
         put_meta(b, f);
         b.Put(rocks::data_key(2, 0), "wxyz");
         b.Put(rocks::data_key(2, 4), "wxyz");
       },
       "/c/fork has overlapping records at offset 4"},
      {"undecodable metadata",
       [&](rocksdb::WriteBatch& b) { b.Put(rocks::meta_key("/c/meta"), "garbage"); },
       "metadata of stream /c/meta"},
      {"metadata under another path",
       [&](rocksdb::WriteBatch& b) {
         b.Put(rocks::meta_key("/c/here"), encode_meta(raw_meta(1, "/c/there", 0)));
       },
       "/c/here names /c/there"},
      {"two streams with one id",
       [&](rocksdb::WriteBatch& b) {
         put_meta(b, raw_meta(1, "/c/one", 0));
         put_meta(b, raw_meta(1, "/c/two", 0));
       },
       "/c/one and /c/two have the same id 1"},
      {"undecodable producer",
       [&](rocksdb::WriteBatch& b) {
         put_meta(b, raw_meta(1, "/c/producer", 0));
         b.Put(rocks::producer_key(1, "p1"), "\xff");
       },
       "producer p1 of stream /c/producer"},
      {"undecodable next id", [&](rocksdb::WriteBatch& b) { b.Put(rocks::kNextIdKey, "short"); },
       "next stream id"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const std::string db = dir_ + "/case" + std::to_string(i);
    write_raw(db, cases[i].fill);
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
  open();
  create(stream("/s/a", "a"));
  close();
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
