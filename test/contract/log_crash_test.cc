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

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "store/log/fs.h"
#include "store/log/log_store.h"
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

// ---- Corruption: a flipped byte inside the WAL cuts the log at the last
// whole group before it, with a log line and a metric; nothing after the
// cut is served, and the engine starts (it never crash-loops on its own
// data directory).
TEST(LogCorruption, AFlippedByteCutsTheWalAtTheLastWholeGroup) {
  FaultFs fs;
  ManualClock clock;
  LogStoreOptions o;
  o.path = kDir;
  o.fs = &fs;
  o.clock = &clock;
  {
    auto store = open_log_store(o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    CreateRequest c;
    c.path = stream_path(0);
    c.config.content_type = "text/plain";
    ASSERT_TRUE(call<CreateOutcome>([&](auto cb) { (*store)->create(c, cb); }).ok());
    for (int k = 0; k < 10; ++k) {
      AppendRequest a;
      a.path = stream_path(0);
      a.content_type = "text/plain";
      a.body = "record-" + std::to_string(k) + ";";
      ASSERT_TRUE(call<AppendOutcome>([&](auto cb) { (*store)->append(a, cb); }).ok());
    }
  }
  // The first segment holds the groups; flip a byte near its end (inside
  // the last append's bytes).
  const std::string seg = std::string(kDir) + "/wal/0000000000000001.wal";
  const std::string before = fs.contents(seg);
  ASSERT_GT(before.size(), 40u);
  const size_t at = before.rfind("record-9;");
  ASSERT_NE(at, std::string::npos);
  fs.corrupt(seg, at + 3, 0x20);

  LogStoreStats stats;
  o.stats = &stats;
  auto store = open_log_store(o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(stats.recovery_tail_cuts.load(), 1u);
  EXPECT_GT(stats.recovery_cut_bytes.load(), 0u);
  auto r = call<ReadOutcome>([&](auto cb) {
    (*store)->read(ReadRequest{stream_path(0), OffsetSpec::start()}, cb);
  });
  ASSERT_TRUE(r.ok());
  std::string all;
  for (const auto& rec : r->records) all += rec->bytes;
  std::string expected;
  for (int k = 0; k < 9; ++k) expected += "record-" + std::to_string(k) + ";";
  EXPECT_EQ(all, expected);
  // And the log goes on from there.
  AppendRequest a;
  a.path = stream_path(0);
  a.content_type = "text/plain";
  a.body = "after;";
  ASSERT_TRUE(call<AppendOutcome>([&](auto cb) { (*store)->append(a, cb); }).ok());
  store->reset();
  auto again = open_log_store(o);
  ASSERT_TRUE(again.ok()) << again.error().message;
  auto r2 = call<ReadOutcome>([&](auto cb) {
    (*again)->read(ReadRequest{stream_path(0), OffsetSpec::start()}, cb);
  });
  ASSERT_TRUE(r2.ok());
  std::string all2;
  for (const auto& rec : r2->records) all2 += rec->bytes;
  EXPECT_EQ(all2, expected + "after;");
}

// ---- A corrupt checkpoint is refused with a message, not half-loaded.
TEST(LogCorruption, ACorruptCheckpointIsRefusedWithAMessage) {
  FaultFs fs;
  ManualClock clock;
  LogStoreOptions o;
  o.path = kDir;
  o.fs = &fs;
  o.clock = &clock;
  o.checkpoint_wal_bytes = 1;  // a checkpoint after the first group
  {
    auto store = open_log_store(o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    CreateRequest c;
    c.path = stream_path(0);
    c.config.content_type = "text/plain";
    c.body = "x";
    ASSERT_TRUE(call<CreateOutcome>([&](auto cb) { (*store)->create(c, cb); }).ok());
  }  // the writer takes the checkpoint right after the group, before it stops
  const std::string cp = std::string(kDir) + "/checkpoint";
  ASSERT_FALSE(fs.contents(cp).empty());
  fs.corrupt(cp, fs.contents(cp).size() / 2, 0x01);
  auto store = open_log_store(o);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("checkpoint"), std::string::npos) << store.error().message;
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

// ---- A full disk refuses the group that did not fit (507) and nothing
// else: the store stays writable, and once there is space again appends go
// on where they were; nothing of the refused group comes back at restart.
TEST(LogDiskFull, AFullDiskRefusesTheGroupAndTheStoreGoesOn) {
  FaultFs fs;
  ManualClock clock;
  LogStoreStats stats;
  LogStoreOptions o;
  o.path = kDir;
  o.fs = &fs;
  o.clock = &clock;
  o.stats = &stats;
  auto append = [](StreamStore& s, const std::string& body) {
    AppendRequest a;
    a.path = stream_path(0);
    a.content_type = "text/plain";
    a.body = body;
    return call<AppendOutcome>([&](auto cb) { s.append(a, cb); });
  };
  {
    auto store = open_log_store(o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    CreateRequest c;
    c.path = stream_path(0);
    c.config.content_type = "text/plain";
    ASSERT_TRUE(call<CreateOutcome>([&](auto cb) { (*store)->create(c, cb); }).ok());
    ASSERT_TRUE(append(**store, "before;").ok());
    fs.no_space(true);
    auto refused = append(**store, "refused;");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, errc::insufficient_storage) << refused.error().message;
    EXPECT_TRUE((*store)->health().ok()) << "a full disk is not a broken store";
    EXPECT_EQ(stats.no_space_rejections.load(), 1u);
    fs.no_space(false);
    ASSERT_TRUE(append(**store, "after;").ok());
  }
  auto store = open_log_store(o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto r = call<ReadOutcome>([&](auto cb) {
    (*store)->read(ReadRequest{stream_path(0), OffsetSpec::start()}, cb);
  });
  ASSERT_TRUE(r.ok());
  std::string all;
  for (const auto& rec : r->records) all += rec->bytes;
  EXPECT_EQ(all, "before;after;");
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

// ---- Idle producers are forgotten (issue 13.10): a stream's producer state
// must not grow forever. An idle one starts again from seq 0; an active one
// is kept, duplicates and all.
TEST(LogProducers, IdleProducersAreForgottenAndActiveOnesKept) {
  FaultFs fs;
  ManualClock clock;
  LogStoreStats stats;
  LogStoreOptions o;
  o.path = kDir;
  o.fs = &fs;
  o.clock = &clock;
  o.stats = &stats;
  o.producer_idle_ms = 10'000;
  auto store = open_log_store(o);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto& s = **store;
  CreateRequest c;
  c.path = stream_path(0);
  c.config.content_type = "text/plain";
  ASSERT_TRUE(call<CreateOutcome>([&](auto cb) { s.create(c, cb); }).ok());
  auto append = [&](const std::string& producer, uint64_t seq) {
    AppendRequest a;
    a.path = stream_path(0);
    a.content_type = "text/plain";
    a.body = producer + std::to_string(seq) + ";";
    a.producer = ProducerTriple{producer, 0, seq};
    return call<AppendOutcome>([&](auto cb) { s.append(a, cb); });
  };
  ASSERT_TRUE(append("p", 0).ok());
  ASSERT_TRUE(append("q", 0).ok());
  clock.advance_ms(55'000);
  ASSERT_TRUE(append("q", 1).ok());  // q stays active
  clock.advance_ms(6'000);           // p idle 61 s, q 6 s; a minute since the last sweep
  ASSERT_TRUE(append("q", 2).ok());  // a group, so the writer's maintenance runs
  EXPECT_EQ(stats.producers_forgotten.load(), 1u);
  EXPECT_EQ(stats.producers.load(), 1u);
  // p is forgotten: seq 1 is a gap now, and it starts again from 0.
  auto gap = append("p", 1);
  ASSERT_FALSE(gap.ok());
  EXPECT_EQ(gap.error().code, errc::producer_seq_gap);
  auto again = append("p", 0);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->kind, AppendOutcome::Kind::appended);
  // q is remembered: its last append retried is a duplicate.
  auto dup = append("q", 2);
  ASSERT_TRUE(dup.ok()) << dup.error().message;
  EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
}

}  // namespace
}  // namespace ds
