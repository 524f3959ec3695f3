// Converting a data directory of the previous release (the RocksDB engine)
// to the log engine on first start.
//
// The RocksDB engine is no longer in dstreamd; these tests write directories
// in its format with test/support/legacy_rocksdb.h.

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>

#include "common/clock.h"
#include "store/log/log_store.h"
#include "store_contract.h"
#include "support/legacy_rocksdb.h"

namespace ds::contract {

// ---- Issue 13.1 on data written before kMaxForkDepth existed, converted: a fork chain
// deeper than the limit, stored as a dstreamd of that time stored it
// (version-1 metadata, without a fork depth). Its ancestors are soft-deleted,
// so deleting or expiring the deepest fork cascades down the whole chain.
// The engine once recursed there and crashed on its writer thread, and
// again at every start when the cascade came from the TTL sweep.

namespace {

constexpr uint64_t kLegacyDepth = 50'000;

template <class T>
errc code_of(const Result<T>& r) {
  return r.ok() ? errc::ok : r.error().code;
}

/// Calls `start` with a completion callback and waits for its result.
template <class T, class Start>
Result<T> wait(Start&& start) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto f = p->get_future();
  start([p](Result<T> r) { p->set_value(std::move(r)); });
  if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
    return Error(errc::unavailable, "no answer within 60 s");
  return f.get();
}

std::string legacy_path(uint64_t i) { return "/v1/stream/legacy/" + std::to_string(i); }

class LegacyForkChain : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ds-legacy-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    clock_.set_ms(1'000'000);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  /// Writes the root ("root" as its data) and kLegacyDepth forks, every
  /// stream but the deepest soft-deleted; the deepest expires at
  /// `expires_at_ms` if given.
  void write_chain(std::optional<int64_t> expires_at_ms) {
    legacy::LegacyRocksDir d(dir_ + "/db");
    StreamMeta prev;
    for (uint64_t i = 0; i <= kLegacyDepth; ++i) {
      StreamMeta m = i == 0 ? legacy::stream_meta(1, legacy_path(0))
                            : legacy::fork_meta(i + 1, legacy_path(i), prev, Offset{0, 4});
      const bool deepest = i == kLegacyDepth;
      m.ref_count = deepest ? 0 : 1;
      m.soft_deleted = !deepest;
      if (deepest && expires_at_ms) m.config.expires_at_ms = expires_at_ms;
      prev = d.put_stream(m, i == 0 ? std::vector<std::string>{"root"} : std::vector<std::string>{},
                          legacy::MetaVersion::v1);
    }
    d.put_next_id(kLegacyDepth + 2);
  }

  /// Opens the directory with the log engine: the first time converts it.
  void open() {
    store_.reset();
    LogStoreOptions o;
    o.path = dir_ + "/db";
    o.clock = &clock_;
    o.maintenance_interval_ms = 1000;
    auto s = open_log_store(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(*s);
  }

  Result<StreamMeta> head(const std::string& path) {
    return wait<StreamMeta>([&](auto cb) { store_->head(path, cb); });
  }
  Result<ReadOutcome> read(const std::string& path) {
    return wait<ReadOutcome>([&](auto cb) {
      store_->read(ReadRequest{path, OffsetSpec::start()}, cb);
    });
  }
  Result<CreateOutcome> create(CreateRequest req) {
    return wait<CreateOutcome>([&](auto cb) { store_->create(std::move(req), cb); });
  }
  Status remove(const std::string& path) {
    return wait<Unit>([&](auto cb) { store_->remove(path, cb); });
  }
  static CreateRequest plain(const std::string& path) {
    CreateRequest r;
    r.path = path;
    r.config.content_type = "text/plain";
    return r;
  }

  std::string dir_;
  ManualClock clock_;
  std::unique_ptr<StreamStore> store_;
};

}  // namespace

TEST_F(LegacyForkChain, DeeperThanTheLimitReadsRefusesDeeperForksAndCascadesOnDelete) {
  write_chain(std::nullopt);
  open();
  const std::string deepest = legacy_path(kLegacyDepth);
  auto r = read(deepest);
  ASSERT_TRUE(r.ok()) << r.error().message;  // was "fork chain is broken" beyond 10,000
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0]->bytes, "root");
  // Its depth is derived from the chain when the engine loads it.
  auto meta = head(deepest);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->fork_depth, kLegacyDepth);
  CreateRequest fork;
  fork.path = "/v1/stream/deeper";
  fork.forked_from = deepest;
  EXPECT_EQ(code_of(create(fork)), errc::bad_request);

  ASSERT_TRUE(remove(deepest).ok());  // crashed the writer thread (recursion)
  for (uint64_t i : {uint64_t{0}, kLegacyDepth / 2, kLegacyDepth})
    EXPECT_EQ(code_of(head(legacy_path(i))), errc::not_found) << i;
  auto again = create(plain(legacy_path(0)));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->created);
  open();  // and the data directory opens again
  EXPECT_EQ(code_of(head(legacy_path(1))), errc::not_found);
  EXPECT_TRUE(head(legacy_path(0)).ok());
}

TEST_F(LegacyForkChain, ExpiryOfTheDeepestForkIsSweptAtStartWithoutCrashing) {
  write_chain(/*expires_at_ms=*/500'000);  // already past at start
  open();
  // The first write group runs the TTL sweep (which crashed at every start).
  ASSERT_TRUE(create(plain("/v1/stream/other")).ok());
  for (uint64_t i : {uint64_t{0}, kLegacyDepth / 2, kLegacyDepth})
    EXPECT_EQ(code_of(head(legacy_path(i))), errc::not_found) << i;
  open();
  EXPECT_EQ(code_of(head(legacy_path(0))), errc::not_found);
  EXPECT_TRUE(head("/v1/stream/other").ok());
}

// ---- A directory as the previous release left it: every
// stream reads the same after the conversion, producers and Stream-Seq keep
// their state, the RocksDB files are set aside, and a second start is a
// plain start.

namespace {

class Conversion : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ds-convert-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/data";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static std::string read_all(StreamStore& s, const std::string& path) {
    std::string all;
    auto r = wait<ReadOutcome>([&](auto cb) {
      s.read(ReadRequest{path, OffsetSpec::start()}, cb);
    });
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) return all;
    EXPECT_TRUE(r->up_to_date);
    for (const auto& rec : r->records) all += rec->bytes;
    return all;
  }
  static AppendRequest producer_append(const std::string& path, const std::string& body,
                                       uint64_t seq) {
    AppendRequest a;
    a.path = path;
    a.content_type = "text/plain";
    a.body = body;
    a.producer = ProducerTriple{"p", 0, seq};
    return a;
  }

  /// Writes what the previous release's engine left after: PUT text "hello ",
  /// three producer appends with Stream-Seq, PUT a 100 kB byte stream, PUT a
  /// JSON stream, a fork of the text at offset 6, and a close of the JSON.
  void write_with_rocksdb() {
    legacy::LegacyRocksDir d(path_);
    const int64_t now = clock_.now_ms();
    auto text = legacy::stream_meta(1, "/v1/stream/text", "text/plain", now);
    text.last_stream_seq = "002";
    text.ref_count = 1;
    text = d.put_stream(text, {"hello ", "w0 ", "w1 ", "w2 "});
    d.put_producer(text.id, "p", ProducerState{0, 2, now});
    // Large enough for a stream file of its own.
    d.put_stream(legacy::stream_meta(2, "/v1/stream/big", "application/octet-stream", now),
                 {std::string(100'000, 'b')});
    auto json = legacy::stream_meta(3, "/v1/stream/json", "application/json", now);
    json.closed = true;
    d.put_stream(json, {legacy::json_record({R"({"a":1})", R"({"b":2})"})});
    d.put_stream(legacy::fork_meta(4, "/v1/stream/fork", text, Offset{0, 6}, 0, now), {});
    d.put_next_id(5);
  }

  std::string dir_;
  std::string path_;
  ManualClock clock_;
};

}  // namespace

TEST_F(Conversion, EveryStreamReadsTheSameAndKeepsItsWriterState) {
  write_with_rocksdb();
  if (HasFatalFailure()) return;
  LogStoreOptions o;
  o.path = path_;
  o.clock = &clock_;
  {
    auto opened = open_log_store(o);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    auto& s = **opened;
    EXPECT_EQ(read_all(s, "/v1/stream/text"), "hello w0 w1 w2 ");
    EXPECT_EQ(read_all(s, "/v1/stream/big"), std::string(100'000, 'b'));
    EXPECT_EQ(read_all(s, "/v1/stream/json"), R"({"a":1},{"b":2})");
    EXPECT_EQ(read_all(s, "/v1/stream/fork"), "hello ");
    auto json = wait<StreamMeta>([&](auto cb) { s.head("/v1/stream/json", cb); });
    ASSERT_TRUE(json.ok());
    EXPECT_TRUE(json->closed);
    auto text = wait<StreamMeta>([&](auto cb) { s.head("/v1/stream/text", cb); });
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(text->ref_count, 1u);
    EXPECT_EQ(text->last_stream_seq, std::optional<std::string>("002"));
    // The producer's state came along: a retry is a duplicate, the next
    // seq is appended.
    auto dup = wait<AppendOutcome>(
        [&](auto cb) { s.append(producer_append("/v1/stream/text", "w2 ", 2), cb); });
    ASSERT_TRUE(dup.ok()) << dup.error().message;
    EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
    auto next = wait<AppendOutcome>(
        [&](auto cb) { s.append(producer_append("/v1/stream/text", "w3 ", 3), cb); });
    ASSERT_TRUE(next.ok()) << next.error().message;
    EXPECT_EQ(next->kind, AppendOutcome::Kind::appended);
  }
  EXPECT_TRUE(std::filesystem::exists(path_ + "/rocksdb-migrated/CURRENT"));
  EXPECT_FALSE(std::filesystem::exists(path_ + "/CURRENT"));
  // A second start is a plain start of the log engine.
  auto again = open_log_store(o);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(read_all(**again, "/v1/stream/text"), "hello w0 w1 w2 w3 ");
}

TEST_F(Conversion, RefusedWhenDisabledWithAMessageAndTheDirectoryUntouched) {
  write_with_rocksdb();
  if (HasFatalFailure()) return;
  LogStoreOptions o;
  o.path = path_;
  o.clock = &clock_;
  o.migrate_rocksdb = false;
  auto opened = open_log_store(o);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message.find("RocksDB"), std::string::npos) << opened.error().message;
  EXPECT_TRUE(std::filesystem::exists(path_ + "/CURRENT"));
  EXPECT_FALSE(std::filesystem::exists(path_ + "/checkpoint"));
}

}  // namespace ds::contract
