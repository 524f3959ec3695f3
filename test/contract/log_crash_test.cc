// Crash safety of the log engine, on the fault-injecting file system.
//
// Each round keeps appends in flight on several streams (idempotent
// producers, pipelined seqs), then "loses power": every write that no
// completed sync covers is dropped, except a random prefix of them (a torn
// write). The engine is then restarted on what is left and must hold:
//   - every acknowledged append, exactly once and in order;
//   - nothing that was never sent, and no torn record;
//   - producer retries of what survived are answered as duplicates, and
//     retries of what was lost are appended, once;
//   - the next restart (without a crash) sees the same data: recovery does
//     not depend on its own luck.
// Rounds alternate between a checkpoint every few groups (crashes land in
// the middle of checkpoints too) and none.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "store/log/format.h"
#include "store/log/fs.h"
#include "store/log/log_store.h"
#include "store/log/wal.h"
#include "support/fault_fs.h"

namespace ds {
namespace {

using logstore::testing::FaultFs;

constexpr std::chrono::seconds kTimeout{20};
constexpr const char* kDir = "/crash/data";

template <class T>
Result<T> wait_for(std::future<Result<T>>& f) {
  if (f.wait_for(kTimeout) != std::future_status::ready)
    return Error(errc::unavailable, "no answer within 20 s");
  return f.get();
}

template <class T, class Start>
Result<T> call(Start&& start) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto f = p->get_future();
  start([p](Result<T> r) { p->set_value(std::move(r)); });
  return wait_for(f);
}

std::string stream_path(int i) { return "/v1/stream/crash/" + std::to_string(i); }
std::string record(int stream, uint64_t seq) {
  return "<" + std::to_string(stream) + ":" + std::to_string(seq) + ">";
}

class LogCrash : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr int kStreams = 4;

  LogStoreOptions options(LogStoreStats* stats) {
    LogStoreOptions o;
    o.path = kDir;
    o.fs = &fs_;
    o.clock = &clock_;
    o.stats = stats;
    if (GetParam()) {  // checkpoints all the time
      o.checkpoint_wal_bytes = 2048;
      o.segment_bytes = 1024;
      o.inline_bytes = 64;
    }
    return o;
  }

  std::unique_ptr<StreamStore> open(LogStoreStats* stats = nullptr) {
    auto s = open_log_store(options(stats));
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(*s) : nullptr;
  }

  static Result<AppendOutcome> append(StreamStore& store, int stream, uint64_t seq) {
    return call<AppendOutcome>([&](auto cb) { store.append(request(stream, seq), cb); });
  }
  static AppendRequest request(int stream, uint64_t seq) {
    AppendRequest r;
    r.path = stream_path(stream);
    r.content_type = "text/plain";
    r.body = record(stream, seq);
    r.producer = ProducerTriple{"p" + std::to_string(stream), 0, seq};
    return r;
  }
  static std::string read_all(StreamStore& store, int stream) {
    std::string all;
    OffsetSpec from = OffsetSpec::start();
    for (int guard = 0; guard < 100000; ++guard) {
      auto r = call<ReadOutcome>([&](auto cb) {
        ReadRequest req{stream_path(stream), from};
        req.max_bytes = 97;  // several reads, some ending inside a record
        store.read(req, cb);
      });
      EXPECT_TRUE(r.ok()) << r.error().message;
      if (!r.ok()) return all;
      for (const auto& rec : r->records) all += rec->bytes;
      if (r->up_to_date) return all;
      from = OffsetSpec::position(r->next);
    }
    ADD_FAILURE() << "read_all did not end";
    return all;
  }
  /// The seqs in a stream's bytes, asserting they are whole records of it.
  static std::vector<uint64_t> seqs_in(const std::string& bytes, int stream) {
    std::vector<uint64_t> out;
    size_t at = 0;
    while (at < bytes.size()) {
      const size_t end = bytes.find('>', at);
      EXPECT_NE(end, std::string::npos) << "a torn record was served: " << bytes.substr(at);
      if (end == std::string::npos) break;
      const std::string rec = bytes.substr(at, end + 1 - at);
      const std::string prefix = "<" + std::to_string(stream) + ":";
      EXPECT_EQ(rec.rfind(prefix, 0), 0u) << "not a record of stream " << stream << ": " << rec;
      out.push_back(std::stoull(rec.substr(prefix.size())));
      at = end + 1;
    }
    return out;
  }

  FaultFs fs_;
  ManualClock clock_;
};

TEST_P(LogCrash, AcknowledgedAppendsSurviveRandomPowerLossOnceAndInOrder) {
  std::mt19937_64 rng(0x5eed ^ (GetParam() ? 1 : 0));
  {
    auto store = open();
    ASSERT_TRUE(store);
    for (int i = 0; i < kStreams; ++i) {
      CreateRequest c;
      c.path = stream_path(i);
      c.config.content_type = "text/plain";
      ASSERT_TRUE(call<CreateOutcome>([&](auto cb) { store->create(c, cb); }).ok());
    }
  }
  std::vector<uint64_t> sent(kStreams, 0);  // next seq to send, per stream
  uint64_t cuts_seen = 0;
  for (int round = 0; round < 30; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    LogStoreStats stats;
    auto store = open(&stats);
    ASSERT_TRUE(store);

    // What survived the last crash: whole records, contiguous seqs from 0.
    std::vector<uint64_t> have(kStreams, 0);
    for (int i = 0; i < kStreams; ++i) {
      auto seqs = seqs_in(read_all(*store, i), i);
      for (size_t k = 0; k < seqs.size(); ++k) ASSERT_EQ(seqs[k], k) << "stream " << i;
      have[i] = seqs.size();
    }
    // Resend what was lost (and one that survived, which is a duplicate):
    // the producer's retries after a crash.
    for (int i = 0; i < kStreams; ++i) {
      if (have[i] > 0) {
        auto dup = append(*store, i, have[i] - 1);
        ASSERT_TRUE(dup.ok()) << dup.error().message;
        EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
      }
      for (uint64_t s = have[i]; s < sent[i]; ++s) {
        auto r = append(*store, i, s);
        ASSERT_TRUE(r.ok()) << r.error().message;
        EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
      }
      have[i] = sent[i];
    }

    // Appends in flight, then the power goes.
    std::mutex mu;
    std::vector<uint64_t> acked(kStreams, 0);  // every seq below it is acknowledged
    std::vector<std::future<Result<AppendOutcome>>> pending;
    std::vector<std::pair<int, uint64_t>> what;
    // Every other round the power goes while the writer waits in fdatasync
    // for a group it has written: the crash then lands exactly between the
    // write and its sync (where torn tails come from), not only wherever the
    // scheduler happened to be.
    const bool mid_sync = round % 2 == 0;
    if (mid_sync) fs_.pause_syncs(true);
    const int n = 20 + static_cast<int>(rng() % 200);
    for (int k = 0; k < n; ++k) {
      const int i = static_cast<int>(rng() % kStreams);
      auto p = std::make_shared<std::promise<Result<AppendOutcome>>>();
      pending.push_back(p->get_future());
      what.emplace_back(i, sent[i]);
      const uint64_t seq = sent[i]++;
      store->append(request(i, seq), [p, &mu, &acked, i, seq](Result<AppendOutcome> r) {
        if (r.ok()) {
          std::lock_guard lock(mu);
          acked[i] = std::max(acked[i], seq + 1);
        }
        p->set_value(std::move(r));
      });
      if (k == n / 2 && rng() % 2 == 0) std::this_thread::yield();
    }
    // Wait for a random number of answers, so the crash lands at a random
    // point of the writer's work (before, between or inside group writes).
    const size_t before_crash = mid_sync ? 0 : rng() % (pending.size() + 1);
    for (size_t k = 0; k < before_crash; ++k) (void)wait_for(pending[k]);
    if (mid_sync) {
      ASSERT_TRUE(fs_.wait_until_paused(kTimeout));
    }
    fs_.power_off(rng);
    if (mid_sync) fs_.pause_syncs(false);
    for (size_t k = before_crash; k < pending.size(); ++k) (void)wait_for(pending[k]);
    std::vector<uint64_t> acked_at_crash;
    {
      std::lock_guard lock(mu);
      acked_at_crash = acked;
    }
    store.reset();
    fs_.power_on();

    // Restart: every acknowledged append is there, once, in order.
    LogStoreStats recovered;
    auto again = open(&recovered);
    ASSERT_TRUE(again);
    cuts_seen += recovered.recovery_tail_cuts.load();
    for (int i = 0; i < kStreams; ++i) {
      auto seqs = seqs_in(read_all(*again, i), i);
      for (size_t k = 0; k < seqs.size(); ++k) ASSERT_EQ(seqs[k], k) << "stream " << i;
      EXPECT_GE(seqs.size(), acked_at_crash[i]) << "stream " << i << " lost acknowledged appends";
      EXPECT_LE(seqs.size(), sent[i]) << "stream " << i << " has appends nobody sent";
    }
  }
  // Restart once more without a crash: the same data.
  auto last = open();
  ASSERT_TRUE(last);
  for (int i = 0; i < kStreams; ++i) {
    auto seqs = seqs_in(read_all(*last, i), i);
    for (size_t k = 0; k < seqs.size(); ++k) ASSERT_EQ(seqs[k], k);
  }
  // Torn tails happened and were cut (otherwise this test proved little).
  EXPECT_GT(cuts_seen, 0u) << "no crash ever tore a WAL tail";
}

INSTANTIATE_TEST_SUITE_P(Log, LogCrash, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "WithCheckpoints" : "WalOnly";
                         });

// ---- The single-scenario tests below share one small fixture: a log
// engine on FaultFs with a manual clock, and one text stream.
class LogEngine : public ::testing::Test {
 protected:
  LogEngine() {
    options_.path = kDir;
    options_.fs = &fs_;
    options_.clock = &clock_;
    options_.stats = &stats_;
  }
  /// Opens the engine; a failed open fails the test (and returns null).
  std::unique_ptr<StreamStore> open() {
    auto s = open_log_store(options_);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(*s) : nullptr;
  }
  static void create_stream(StreamStore& s, const std::string& body = "") {
    CreateRequest c;
    c.path = stream_path(0);
    c.config.content_type = "text/plain";
    c.body = body;
    auto r = call<CreateOutcome>([&](auto cb) { s.create(c, cb); });
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  static Result<AppendOutcome> append(StreamStore& s, const std::string& body,
                                      std::optional<ProducerTriple> producer = std::nullopt) {
    AppendRequest a;
    a.path = stream_path(0);
    a.content_type = "text/plain";
    a.body = body;
    a.producer = std::move(producer);
    return call<AppendOutcome>([&](auto cb) { s.append(a, cb); });
  }
  static std::string read_all(StreamStore& s) {
    auto r = call<ReadOutcome>([&](auto cb) {
      s.read(ReadRequest{stream_path(0), OffsetSpec::start()}, cb);
    });
    EXPECT_TRUE(r.ok()) << r.error().message;
    std::string all;
    if (r.ok())
      for (const auto& rec : r->records) all += rec->bytes;
    return all;
  }

  FaultFs fs_;
  ManualClock clock_;
  LogStoreStats stats_;
  LogStoreOptions options_;
};

// ---- Corruption: a flipped byte inside the WAL cuts the log at the last
// whole group before it, with a log line and a metric; nothing after the
// cut is served, and the engine starts (it never crash-loops on its own
// data directory).
TEST_F(LogEngine, AFlippedByteCutsTheWalAtTheLastWholeGroup) {
  std::string expected;
  {
    auto store = open();
    ASSERT_TRUE(store);
    create_stream(*store);
    for (int k = 0; k < 10; ++k) {
      const std::string rec = "record-" + std::to_string(k) + ";";
      ASSERT_TRUE(append(*store, rec).ok());
      if (k < 9) expected += rec;
    }
  }
  // The first segment holds the groups; flip a byte inside the last
  // append's bytes.
  const std::string seg = std::string(kDir) + "/wal/0000000000000001.wal";
  const size_t at = fs_.contents(seg).rfind("record-9;");
  ASSERT_NE(at, std::string::npos);
  fs_.corrupt(seg, at + 3, 0x20);

  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(stats_.recovery_tail_cuts.load(), 1u);
  EXPECT_GT(stats_.recovery_cut_bytes.load(), 0u);
  EXPECT_EQ(read_all(*store), expected);
  // And the log goes on from there.
  ASSERT_TRUE(append(*store, "after;").ok());
  store.reset();
  auto again = open();
  ASSERT_TRUE(again);
  EXPECT_EQ(read_all(*again), expected + "after;");
}

// ---- The WAL is zero-filled ahead of its end (so that a group's fdatasync
// commits no new file size); recovery reads the zeros as the segment's clean
// end, and a group cut short inside them as a torn tail.
TEST_F(LogEngine, PreallocatedWalZerosAreNoCutAndATornGroupInThemIs) {
  options_.wal_preallocate_bytes = 64 << 10;
  const std::string seg = std::string(kDir) + "/wal/0000000000000001.wal";
  std::string expected;
  {
    auto store = open();
    ASSERT_TRUE(store);
    create_stream(*store);
    EXPECT_EQ(fs_.contents(seg).size(), logstore::format::kWalHeaderSize + (64u << 10));
    for (int k = 0; k < 10; ++k) {
      const std::string rec = "record-" + std::to_string(k) + ";";
      ASSERT_TRUE(append(*store, rec).ok());
      expected += rec;
    }
    // Ten groups of ~60 bytes: still inside the first zeros.
    EXPECT_EQ(fs_.contents(seg).size(), logstore::format::kWalHeaderSize + (64u << 10));
  }
  {
    auto store = open();
    ASSERT_TRUE(store);
    EXPECT_EQ(stats_.recovery_tail_cuts.load(), 0u);
    EXPECT_EQ(read_all(*store), expected);
  }
  // Now a group that a crash cut short inside the zeros: its append entry
  // reached the disk, its commit marker did not.
  std::string bytes = fs_.contents(seg);
  // The last group ends with a commit marker, whose last byte (its type) is
  // not zero.
  const size_t commit_end = bytes.find_last_not_of('\0') + 1;
  std::string group;
  logstore::AppendEntry torn;
  torn.id = 1;
  torn.bytes = "never-acknowledged;";
  logstore::put_append(group, torn);
  ASSERT_LT(commit_end + group.size(), bytes.size());
  ASSERT_TRUE(std::all_of(bytes.begin() + static_cast<std::ptrdiff_t>(commit_end), bytes.end(),
                          [](char c) { return c == 0; }));
  bytes.replace(commit_end, group.size(), group);
  fs_.set_contents(seg, bytes);
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(stats_.recovery_tail_cuts.load(), 1u);
  EXPECT_EQ(stats_.recovery_cut_bytes.load(), group.size());
  EXPECT_EQ(read_all(*store), expected);
  ASSERT_TRUE(append(*store, "after;").ok());
  store.reset();
  auto again = open();
  ASSERT_TRUE(again);
  EXPECT_EQ(read_all(*again), expected + "after;");
}

// ---- A corrupt checkpoint is refused with a message, not half-loaded.
TEST_F(LogEngine, ACorruptCheckpointIsRefusedWithAMessage) {
  options_.checkpoint_wal_bytes = 1;  // a checkpoint after the first group
  {
    auto store = open();
    ASSERT_TRUE(store);
    create_stream(*store, "x");
  }  // the writer takes the checkpoint right after the group, before it stops
  const std::string cp = std::string(kDir) + "/checkpoint";
  ASSERT_FALSE(fs_.contents(cp).empty());
  fs_.corrupt(cp, fs_.contents(cp).size() / 2, 0x01);
  auto store = open_log_store(options_);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("checkpoint"), std::string::npos) << store.error().message;
}

// ---- A full disk refuses the group that did not fit (507) and nothing
// else: the store stays writable, and once there is space again appends go
// on where they were; nothing of the refused group comes back at restart.
TEST_F(LogEngine, AFullDiskRefusesTheGroupAndTheStoreGoesOn) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    create_stream(*store);
    ASSERT_TRUE(append(*store, "before;").ok());
    fs_.no_space(true);
    auto refused = append(*store, "refused;");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, errc::insufficient_storage) << refused.error().message;
    EXPECT_TRUE(store->health().ok()) << "a full disk is not a broken store";
    EXPECT_EQ(stats_.no_space_rejections.load(), 1u);
    fs_.no_space(false);
    ASSERT_TRUE(append(*store, "after;").ok());
  }
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(read_all(*store), "before;after;");
}

// ---- Idle producers are forgotten (issue 13.10): a stream's producer state
// must not grow forever. An idle one starts again from seq 0; an active one
// is kept, duplicates and all.
TEST_F(LogEngine, IdleProducersAreForgottenAndActiveOnesKept) {
  options_.producer_idle_ms = 10'000;
  auto store = open();
  ASSERT_TRUE(store);
  create_stream(*store);
  auto by = [&](const std::string& producer, uint64_t seq) {
    return append(*store, producer + std::to_string(seq) + ";", ProducerTriple{producer, 0, seq});
  };
  ASSERT_TRUE(by("p", 0).ok());
  ASSERT_TRUE(by("q", 0).ok());
  clock_.advance_ms(55'000);
  ASSERT_TRUE(by("q", 1).ok());  // q stays active
  clock_.advance_ms(6'000);      // p idle 61 s, q 6 s; a minute since the last sweep
  ASSERT_TRUE(by("q", 2).ok());  // a group, so the writer's maintenance runs
  EXPECT_EQ(stats_.producers_forgotten.load(), 1u);
  EXPECT_EQ(stats_.producers.load(), 1u);
  // p is forgotten: seq 1 is a gap now, and it starts again from 0.
  auto gap = by("p", 1);
  ASSERT_FALSE(gap.ok());
  EXPECT_EQ(gap.error().code, errc::producer_seq_gap);
  auto again = by("p", 0);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->kind, AppendOutcome::Kind::appended);
  // q is remembered: its last append retried is a duplicate.
  auto dup = by("q", 2);
  ASSERT_TRUE(dup.ok()) << dup.error().message;
  EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
}

}  // namespace
}  // namespace ds
