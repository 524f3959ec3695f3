// Retention: contract tests added beside the shared ones in
// store_contract_test.cc (soft-deleted sources, whole messages across
// restarts), and tests of the embedded engine's own retention machinery:
// the record index below the earliest offset is dropped, so it stays the
// size of what a stream keeps, and a trim refused for want of disk space
// changes nothing.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "store/log/fs.h"
#include "store/log/log_store.h"
#include "store_contract.h"
#include "support/fault_fs.h"

namespace ds {
namespace contract {
namespace {

const std::string kSource = "/v1/stream/ret/source";
const std::string kFork = "/v1/stream/ret/fork";

CreateRequest retained(const std::string& path, const std::string& content_type,
                       std::optional<uint64_t> max_age_s, std::optional<uint64_t> max_bytes) {
  CreateRequest r;
  r.path = path;
  r.config.content_type = content_type;
  r.config.retention_max_age_s = max_age_s;
  r.config.retention_max_bytes = max_bytes;
  return r;
}

// Retention runs in the background: waits (bounded) until the stream's
// earliest offset reaches `at`.
bool earliest_reaches(StreamStore& store, const std::string& path, Offset at) {
  for (int i = 0; i < 100; ++i) {
    std::promise<Result<StreamMeta>> p;
    auto f = p.get_future();
    store.head(path, [&p](Result<StreamMeta> r) { p.set_value(std::move(r)); });
    auto r = f.get();
    if (r && r->earliest >= at) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace

// A source deleted while a fork still reads it is kept for the fork, and so
// is its retention: its data goes on ageing out (and being trimmed to its
// max bytes), and the fork's reads of what is gone get 410. When the last
// fork goes, the source goes with it.
TEST_P(StoreContract, RetentionOfASoftDeletedSourceGoesOn) {
  DS_REQUIRE_TRAIT(retention, "retention is not enforced by this engine");
  DS_ASSERT_OK(create(retained(kSource, "text/plain", 10, std::nullopt)));
  put(kSource, "old1");
  const Offset old_end = put(kSource, "old2");
  clock_.advance_ms(5'000);
  const Offset fork_at = put(kSource, "new");
  DS_ASSERT_OK(create(fork_req(kFork, kSource, fork_at)));
  put(kFork, "own");
  DS_ASSERT_OK(remove(kSource));  // soft: the fork reads it
  DS_EXPECT_ERR(head(kSource), errc::gone);
  EXPECT_EQ(read_all(kFork), "old1old2newown");

  clock_.advance_ms(6'000);  // old1/old2 are 11 s old, new 6 s
  ASSERT_TRUE(earliest_reaches(store(), kFork, old_end));
  EXPECT_EQ(head(kFork)->earliest, old_end);
  EXPECT_EQ(read_all(kFork), "newown");
  auto gone = read(kFork, OffsetSpec::position(Offset{}));
  DS_ASSERT_ERR(gone, errc::retention_trimmed);
  EXPECT_EQ(gone.error().earliest, std::optional<Offset>(old_end));

  // Durable, and it goes on after a restart.
  reopen();
  EXPECT_EQ(head(kFork)->earliest, old_end);
  EXPECT_EQ(read_all(kFork), "newown");
  clock_.advance_ms(5'000);  // new is 11 s old: all of the source is gone
  ASSERT_TRUE(earliest_reaches(store(), kFork, fork_at));
  EXPECT_EQ(read_all(kFork), "own");
  DS_EXPECT_ERR(read(kFork, OffsetSpec::position(old_end)), errc::retention_trimmed);

  // The last fork goes, and the source with it.
  DS_ASSERT_OK(remove(kFork));
  DS_EXPECT_ERR(head(kFork), errc::not_found);
  DS_EXPECT_ERR(head(kSource), errc::not_found);
  clock_.advance_ms(1'000);  // a maintenance pass over what is left
  reopen();
  DS_EXPECT_ERR(head(kSource), errc::not_found);
  DS_ASSERT_OK(create(create_req(kSource)));  // the path is free again
  EXPECT_EQ(read_all(kSource), "");
}

// The same with max bytes: a source deleted before the pass trimmed it is
// trimmed all the same.
TEST_P(StoreContract, RetentionMaxBytesOfASoftDeletedSourceGoesOn) {
  DS_REQUIRE_TRAIT(retention, "retention is not enforced by this engine");
  DS_ASSERT_OK(create(retained(kSource, "text/plain", std::nullopt, 6)));
  put(kSource, "aaaaaa");
  const Offset second = put(kSource, "bbbbbb");
  const Offset fork_at = put(kSource, "cccccc");
  DS_ASSERT_OK(create(fork_req(kFork, kSource, fork_at)));
  DS_ASSERT_OK(remove(kSource));
  clock_.advance_ms(1'000);
  ASSERT_TRUE(earliest_reaches(store(), kFork, second));
  EXPECT_EQ(head(kFork)->earliest, second);
  EXPECT_EQ(read_all(kFork), "cccccc");
  DS_EXPECT_ERR(read(kFork, OffsetSpec::position(Offset{})), errc::retention_trimmed);
  DS_ASSERT_OK(remove(kFork));
  DS_EXPECT_ERR(head(kSource), errc::not_found);
}

// A JSON stream is read in whole messages: after several rounds of
// trimming (the engine may drop what it knows of the appends before the
// earliest offset) and restarts, reads from the earliest offset and from
// every later append boundary still return whole appends, and a fork can
// still begin at a boundary after the earliest offset.
TEST_P(StoreContract, RetentionKeepsWholeJsonMessagesAcrossRoundsAndRestarts) {
  DS_REQUIRE_TRAIT(retention, "retention is not enforced by this engine");
  const std::string json = "application/json";
  DS_ASSERT_OK(create(retained(kSource, json, std::nullopt, 40)));
  std::vector<Offset> tails;
  auto message = [](int i) { return R"({"n":)" + std::to_string(100 + i) + "}"; };  // 9 bytes
  int n = 0;
  for (int round = 0; round < 4; ++round) {
    for (int k = 0; k < 10; ++k, ++n) tails.push_back(put(kSource, message(n), json));
    clock_.advance_ms(1'000);
    // 40 bytes behind the tail: the last four messages stay.
    ASSERT_TRUE(earliest_reaches(store(), kSource, tails[tails.size() - 5]));
    if (round % 2 == 1) reopen();
  }
  EXPECT_EQ(head(kSource)->earliest, tails[tails.size() - 5]);
  auto r = read(kSource);
  DS_ASSERT_OK(r);
  ASSERT_EQ(r->records.size(), 4u);
  for (size_t k = 0; k < 4; ++k) EXPECT_EQ(r->records[k]->bytes, message(n - 4 + int(k)));
  for (size_t k = tails.size() - 5; k + 1 < tails.size(); ++k) {
    auto at = read(kSource, OffsetSpec::position(tails[k]));
    DS_ASSERT_OK(at);
    ASSERT_FALSE(at->records.empty());
    EXPECT_EQ(at->records.front()->bytes, message(int(k) + 1));
  }
  DS_EXPECT_ERR(read(kSource, OffsetSpec::position(tails[tails.size() - 6])),
                errc::retention_trimmed);
  DS_ASSERT_OK(create(fork_req(kFork, kSource, tails[tails.size() - 3])));
  auto f = read(kFork);
  DS_ASSERT_OK(f);
  // The fork reads the source up to its fork offset: from the earliest on.
  ASSERT_EQ(f->records.size(), 2u);
  EXPECT_EQ(f->records[0]->bytes, message(n - 4));
  EXPECT_EQ(f->records[1]->bytes, message(n - 3));
  DS_EXPECT_ERR(read(kFork, OffsetSpec::position(Offset{})), errc::retention_trimmed);
}

}  // namespace contract

// ---------------------------------------------------------------------------
// The embedded engine's own retention machinery, on the fault-injecting file
// system with a manual clock.

namespace {

using logstore::testing::FaultFs;

constexpr std::chrono::seconds kTimeout{20};
constexpr const char* kDir = "/retention/data";
const std::string kStream = "/v1/stream/retained";

template <class T, class Start>
Result<T> call(Start&& start) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto f = p->get_future();
  start([p](Result<T> r) { p->set_value(std::move(r)); });
  if (f.wait_for(kTimeout) != std::future_status::ready)
    return Error(errc::unavailable, "no answer within 20 s");
  return f.get();
}

class LogRetention : public ::testing::Test {
 protected:
  LogRetention() {
    options_.path = kDir;
    options_.fs = &fs_;
    options_.clock = &clock_;
    options_.stats = &stats_;
    options_.sync = false;  // FaultFs keeps everything anyway; no crash here
  }
  std::unique_ptr<StreamStore> open() {
    // A restart starts the counters again, as a new process would.
    stats_.record_index_entries = 0;
    stats_.memory_bytes = 0;
    auto s = open_log_store(options_);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(*s) : nullptr;
  }
  static Status create(StreamStore& s, CreateRequest c) {
    auto r = call<CreateOutcome>([&](auto cb) { s.create(c, cb); });
    if (!r) return std::move(r).error();
    return Unit{};
  }
  static Result<AppendOutcome> append(StreamStore& s, const std::string& body) {
    AppendRequest a;
    a.path = kStream;
    a.content_type = "text/plain";
    a.body = body;
    return call<AppendOutcome>([&](auto cb) { s.append(a, cb); });
  }
  static Result<StreamMeta> head(StreamStore& s) {
    return call<StreamMeta>([&](auto cb) { s.head(kStream, cb); });
  }
  static Result<ReadOutcome> read(StreamStore& s, OffsetSpec from) {
    return call<ReadOutcome>([&](auto cb) { s.read(ReadRequest{kStream, from}, cb); });
  }
  /// Waits (bounded, for the writer's maintenance pass) until `done`.
  template <class F>
  static bool eventually(F&& done) {
    for (int i = 0; i < 200; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }

  FaultFs fs_;
  ManualClock clock_;
  LogStoreStats stats_;
  LogStoreOptions options_;
};

// A long-lived stream with max-bytes retention: the record index (one
// boundary per append) follows what the stream keeps, not everything it
// was ever sent. DS_RETENTION_APPENDS sets how many appends (default
// 200000; the measurement in docs/benchmarks.md used 1000000).
TEST_F(LogRetention, TheRecordIndexStaysBoundedUnderMaxBytes) {
  uint64_t appends = 200'000;
  if (const char* n = std::getenv("DS_RETENTION_APPENDS")) appends = std::strtoull(n, nullptr, 10);
  constexpr uint64_t kBody = 16;
  constexpr uint64_t kMaxBytes = 64 * 1024;  // 4096 appends kept
  options_.checkpoint_wal_bytes = 1ull << 20;
  options_.segment_bytes = 1ull << 20;
  options_.maintenance_interval_ms = 1000;
  auto store = open();
  ASSERT_TRUE(store);
  CreateRequest c;
  c.path = kStream;
  c.config.content_type = "text/plain";
  c.config.retention_max_bytes = kMaxBytes;
  ASSERT_TRUE(create(*store, c).ok());

  const std::string body(kBody, 'x');
  uint64_t peak = 0;
  const auto started = std::chrono::steady_clock::now();
  constexpr uint64_t kBatch = 2000;
  for (uint64_t done = 0; done < appends; done += kBatch) {
    // A batch in flight at once (group commit), then a maintenance pass.
    std::vector<std::future<Result<AppendOutcome>>> batch;
    batch.reserve(kBatch);
    for (uint64_t k = 0; k < kBatch; ++k) {
      auto p = std::make_shared<std::promise<Result<AppendOutcome>>>();
      batch.push_back(p->get_future());
      AppendRequest a;
      a.path = kStream;
      a.content_type = "text/plain";
      a.body = body;
      store->append(a, [p](Result<AppendOutcome> r) { p->set_value(std::move(r)); });
    }
    for (auto& f : batch) {
      ASSERT_EQ(f.wait_for(kTimeout), std::future_status::ready);
      auto r = f.get();
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    clock_.advance_ms(1'000);
    peak = std::max(peak, stats_.record_index_entries.load());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // The stream's earliest offset follows its tail...
  auto h = head(*store);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(eventually([&] {
    clock_.advance_ms(1'000);
    auto now = head(*store);
    return now.ok() && now->tail.lo - now->earliest.lo <= kMaxBytes;
  }));
  // ...and its index holds what it keeps plus what came since the last
  // checkpoint (boundaries of records still in memory are kept until the
  // checkpoint writes them to the file), never all it was sent.
  const uint64_t wal_entries_per_checkpoint = options_.checkpoint_wal_bytes / kBody;
  EXPECT_LT(peak, kMaxBytes / kBody + wal_entries_per_checkpoint + 2 * kBatch);
  EXPECT_LT(peak, appends / 2) << "the index grew with every append";
  std::cout << "[ measure ] " << appends << " appends of " << kBody << " B, max bytes " << kMaxBytes
            << ": index peak " << peak << " entries, now " << stats_.record_index_entries.load()
            << ", " << static_cast<uint64_t>(appends / seconds) << " appends/s" << std::endl;

  // A restart (through the checkpoint and the WAL after it) gives the same
  // earliest offset, the same bytes, and an index as small.
  h = head(*store);
  ASSERT_TRUE(h.ok());
  auto before = read(*store, OffsetSpec::start());
  ASSERT_TRUE(before.ok());
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  auto again = head(*store);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->earliest, h->earliest);
  EXPECT_EQ(again->tail, h->tail);
  EXPECT_LT(stats_.record_index_entries.load(), kMaxBytes / kBody + wal_entries_per_checkpoint);
  auto after = read(*store, OffsetSpec::start());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->start, before->start);
  std::string a, b;
  for (const auto& r : before->records) a += r->bytes;
  for (const auto& r : after->records) b += r->bytes;
  EXPECT_EQ(a, b);
  auto trimmed = read(*store, OffsetSpec::position(Offset{h->earliest.hi, h->earliest.lo - 1}));
  ASSERT_FALSE(trimmed.ok());
  EXPECT_EQ(trimmed.error().code, errc::retention_trimmed);
  // Every append boundary from the earliest offset on is still one.
  for (uint64_t at = h->earliest.lo; at < h->tail.lo; at += kBody * 512) {
    auto r = read(*store, OffsetSpec::position(Offset{h->earliest.hi, at}));
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_FALSE(r->records.empty());
    EXPECT_EQ(r->records.front()->begin.lo, at);
  }
}

// A maintenance pass whose group is refused for want of disk space trims
// nothing: the earliest offset stays, the data stays readable (nothing is
// punched), the metric counts nothing, and once there is space the trim is
// made as it would have been (the age marks were kept).
TEST_F(LogRetention, ATrimRefusedForWantOfSpaceChangesNothing) {
  options_.retention_reclaim_delay_ms = 0;
  auto store = open();
  ASSERT_TRUE(store);
  CreateRequest c;
  c.path = kStream;
  c.config.content_type = "text/plain";
  c.config.retention_max_age_s = 10;
  ASSERT_TRUE(create(*store, c).ok());
  ASSERT_TRUE(append(*store, "old1").ok());
  auto old_end = append(*store, "old2");
  ASSERT_TRUE(old_end.ok());
  clock_.advance_ms(5'000);
  ASSERT_TRUE(append(*store, "new").ok());

  fs_.no_space(true);
  clock_.advance_ms(6'000);  // old1/old2 are 11 s old: the next pass trims them
  ASSERT_TRUE(eventually([&] { return stats_.no_space_rejections.load() >= 1; }));
  auto h = head(*store);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->earliest, Offset{});
  EXPECT_EQ(stats_.retention_trimmed_bytes.load(), 0u);
  auto r = read(*store, OffsetSpec::start());
  ASSERT_TRUE(r.ok());

  fs_.no_space(false);
  clock_.advance_ms(1'000);
  ASSERT_TRUE(eventually([&] {
    auto now = head(*store);
    return now.ok() && now->earliest == old_end->tail;
  }));
  EXPECT_EQ(stats_.retention_trimmed_bytes.load(), 8u);
  auto left = read(*store, OffsetSpec::start());
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->records.size(), 1u);
  EXPECT_EQ(left->records[0]->bytes, "new");
}

// Readers during trims and index prunes (a pass and a checkpoint every
// group): every read of a JSON stream returns whole messages from a message
// boundary, or 410 with an earliest offset; never a record spanning several
// appends, nor a 400. (The narrow window scan() guards, a prune between a
// read's look at the metadata and its scan, is seldom hit here: this checks
// the reads around it, and gives TSan something to look at.)
TEST_F(LogRetention, ReadsDuringTrimsAndPrunesGetWholeMessagesOr410) {
  options_.clock = &SystemClock::instance();
  options_.maintenance_interval_ms = 1;  // a pass (and a prune) every group
  options_.checkpoint_wal_bytes = 1;     // records go to the file at once
  options_.inline_bytes = 1;
  auto store = open();
  ASSERT_TRUE(store);
  CreateRequest c;
  c.path = kStream;
  c.config.content_type = "application/json";
  c.config.retention_max_bytes = 200;
  ASSERT_TRUE(create(*store, c).ok());
  auto message = [](uint64_t i) { return R"({"n":)" + std::to_string(100000 + i) + "}"; };
  const auto made = head(*store);
  ASSERT_TRUE(made.ok());
  const uint64_t hi = made->tail.hi;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, gone{0};
  std::atomic<uint64_t> last_tail{0};
  auto reader = [&](bool from_start) {
    while (!stop) {
      // From the earliest offset, or from a message boundary (12 bytes
      // each) a little behind what the pass keeps.
      const uint64_t t = last_tail.load();
      const uint64_t behind = t > 240 ? (t - 240) / 12 * 12 : 0;
      OffsetSpec from = from_start ? OffsetSpec::start() : OffsetSpec::position(Offset{hi, behind});
      ReadRequest req{kStream, from};
      req.max_bytes = 60;
      auto r = call<ReadOutcome>([&](auto cb) { store->read(req, cb); });
      if (!r) {
        EXPECT_EQ(r.error().code, errc::retention_trimmed) << r.error().message;
        EXPECT_TRUE(r.error().earliest.has_value());
        ++gone;
        continue;
      }
      for (const auto& rec : r->records) {
        const std::string bytes(rec->bytes);
        ASSERT_EQ(bytes.size(), 12u) << "not one message: " << bytes;
        ASSERT_EQ(bytes, message((rec->end.lo / 12) - 1));
      }
      ++reads;
    }
  };
  std::thread a(reader, true), b(reader, false);
  for (uint64_t i = 0; i < 3000; ++i) {
    AppendRequest req;
    req.path = kStream;
    req.content_type = "application/json";
    req.body = message(i);
    auto r = call<AppendOutcome>([&](auto cb) { store->append(req, cb); });
    ASSERT_TRUE(r.ok()) << r.error().message;
    last_tail = r->tail.lo;
  }
  stop = true;
  a.join();
  b.join();
  EXPECT_GT(reads.load(), 0u);
  std::cout << "[ measure ] " << reads.load() << " reads, " << gone.load() << " 410s" << std::endl;
}

// On the real file system: the disk space of what retention removed is
// given back (the .dat file's range punched out) once the delay has passed,
// and a trim made before a restart is still given back after it (what is
// due is not persisted; the start makes it due again).
TEST(LogRetentionDisk, TrimmedBytesArePunchedOutAlsoAfterARestart) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ds-retention-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{tmpl};
  {
    // A file system without hole punching keeps the bytes (the engine
    // only logs it): nothing to check there.
    const std::string probe = tmpl + "/probe";
    const int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    const std::string page(8192, 'x');
    const bool punches =
        ::pwrite(fd, page.data(), page.size(), 0) == static_cast<ssize_t>(page.size()) &&
        ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
    ::close(fd);
    if (!punches) GTEST_SKIP() << "this file system cannot punch holes";
  }
  ManualClock clock;
  LogStoreOptions o;
  o.path = tmpl + "/data";
  o.clock = &clock;
  o.sync = false;
  o.checkpoint_wal_bytes = 1;  // every group's records go to the file
  o.inline_bytes = 1;
  o.retention_reclaim_delay_ms = 3'600'000;  // not in this run
  auto allocated = [&] {
    uint64_t bytes = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(o.path + "/streams")) {
      struct stat st {};
      if (e.path().extension() == ".dat" && ::stat(e.path().c_str(), &st) == 0)
        bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    }
    return bytes;
  };
  constexpr uint64_t kAppend = 4096;
  Offset tail;
  {
    auto store = open_log_store(o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    CreateRequest c;
    c.path = kStream;
    c.config.content_type = "application/octet-stream";
    c.config.retention_max_bytes = kAppend;
    ASSERT_TRUE(call<CreateOutcome>([&](auto cb) { (*store)->create(c, cb); }).ok());
    for (int k = 0; k < 16; ++k) {
      AppendRequest a;
      a.path = kStream;
      a.content_type = "application/octet-stream";
      a.body = std::string(kAppend, static_cast<char>('a' + k));
      auto r = call<AppendOutcome>([&](auto cb) { (*store)->append(a, cb); });
      ASSERT_TRUE(r.ok()) << r.error().message;
      tail = r->tail;
    }
    clock.advance_ms(1'000);
    ASSERT_TRUE(contract::earliest_reaches(**store, kStream, Offset{tail.hi, tail.lo - kAppend}));
    EXPECT_GE(allocated(), 16 * kAppend);  // trimmed, not yet given back
  }
  o.retention_reclaim_delay_ms = 0;
  auto store = open_log_store(o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  clock.advance_ms(1'000);
  for (int i = 0; i < 200 && allocated() > 2 * kAppend; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  EXPECT_LE(allocated(), 2 * kAppend) << "the trimmed range was not punched out";
  auto r = call<ReadOutcome>([&](auto cb) {
    (*store)->read(ReadRequest{kStream, OffsetSpec::start()}, cb);
  });
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::string all;
  for (const auto& rec : r->records) all += rec->bytes;
  EXPECT_EQ(all, std::string(kAppend, 'p'));
}

}  // namespace
}  // namespace ds
