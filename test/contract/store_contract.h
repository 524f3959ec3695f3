#pragma once
// The storage-engine contract: one value-parameterized GoogleTest suite that
// every StreamStore implementation must pass. The tests are written only
// against store/stream_store.h; an engine joins by providing an
// EngineFactory and one INSTANTIATE_TEST_SUITE_P line (see log_engine.cc).
//
// Offsets are compared only by order and only ones the engine returned (plus
// Offset{}, the protocol's "beginning of the stream"), so engines may encode
// positions however they like.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/errc.h"
#include "store/stream_store.h"

namespace ds::contract {

/// How long a synchronous helper waits for an engine callback before the
/// test fails (instead of hanging).
inline constexpr std::chrono::seconds kCallTimeout{10};

struct EngineOptions {
  const Clock* clock = nullptr;
  /// Open the engine through the harness's fault-injection seam (see
  /// FaultControl). Faults are off until a test turns them on.
  bool fault_injection = false;
};

/// Makes the engine's durable writes fail on demand. Engine-neutral: for the
/// embedded engine it wraps the WAL's file system; an S2 engine could drive
/// its emulator's fault API.
class FaultControl {
 public:
  virtual ~FaultControl() = default;
  /// The durability barrier (fsync of the log) fails.
  virtual void fail_syncs(bool on) = 0;
  /// Writing to the log fails.
  virtual void fail_appends(bool on) = 0;
  /// How many faults have actually been injected, so a test can tell a fault
  /// that fired from one that never reached the engine.
  virtual uint64_t injected() const = 0;
  /// While on, the durability barrier blocks (the engine's commit stalls) so
  /// a test can queue several requests behind it and have them committed as
  /// one group.
  virtual void pause_syncs(bool on) = 0;
  /// Waits until a commit is blocked by pause_syncs(true); false on timeout.
  virtual bool wait_until_paused(std::chrono::milliseconds bound) = 0;
};

/// One test's storage. open() may be called again after the previous store
/// was destroyed, and must then see the same data (a restart).
class EngineHarness {
 public:
  virtual ~EngineHarness() = default;
  virtual Result<std::unique_ptr<StreamStore>> open(const EngineOptions& options) = 0;
  /// The fault seam of the most recent open(fault_injection = true), if the
  /// engine has one.
  virtual FaultControl* faults() { return nullptr; }
};

/// What an engine promises beyond store/stream_store.h. A test that needs
/// more than its engine declares skips and says why (DS_REQUIRE_TRAIT).
struct EngineTraits {
  /// Every time the engine compares with a TTL or Expires-At comes from
  /// EngineOptions::clock. False when the storage stamps records with its own
  /// wall clock (S2's arrival timestamps): the fixture's ManualClock then
  /// starts at the real current time, and advance_ms() makes what the engine
  /// already holds look older; but after a restart the engine re-derives
  /// access times from the storage's real timestamps, which no test can move.
  bool manual_time = true;
  /// Records are dense: each begins where the previous one ended, a read
  /// from the start begins at Offset{}, and an empty stream's tail is
  /// Offset{}. False for engines whose control records take offsets too (S2):
  /// records are then ordered and non-overlapping with gaps between them,
  /// which the protocol allows.
  bool dense_offsets = true;
  /// FaultControl::pause_syncs() works: requests queued behind a paused
  /// commit are committed together, in submission order.
  bool group_commit = true;
  /// Enforces StreamConfig::retention_max_age_s / retention_max_bytes
  /// (advances StreamMeta::earliest; reads before it are retention_trimmed).
  bool retention = true;
};

struct EngineFactory {
  std::string name;  ///< test-name suffix: [A-Za-z0-9_]
  std::function<std::unique_ptr<EngineHarness>()> make;
  EngineTraits traits{};
};

inline void PrintTo(const EngineFactory& f, std::ostream* os) { *os << f.name; }

/// Collects a watch's events; waits for them with a bound.
class EventLog {
 public:
  std::function<void(const CommitEvent&)> sink();
  /// Waits until at least `n` events arrived; false on timeout.
  bool wait_for(size_t n, std::chrono::milliseconds bound = kCallTimeout);
  std::vector<CommitEvent> events() const;
  size_t size() const;

 private:
  struct Shared {
    mutable std::mutex mu;
    std::condition_variable cv;
    std::vector<CommitEvent> events;
  };
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

class StoreContract : public ::testing::TestWithParam<EngineFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Closes the engine and opens it again on the same storage.
  void reopen(bool fault_injection = false);
  void close_store() { store_.reset(); }
  StreamStore& store() { return *store_; }
  FaultControl* faults() { return harness_->faults(); }
  const EngineTraits& traits() const { return GetParam().traits; }

  // ---- Request builders.
  static CreateRequest create_req(const std::string& path,
                                  const std::string& content_type = "text/plain",
                                  const std::string& body = "");
  static CreateRequest fork_req(const std::string& path, const std::string& source,
                                std::optional<Offset> at = std::nullopt, uint64_t sub_offset = 0);
  static AppendRequest append_req(const std::string& path, const std::string& body,
                                  const std::string& content_type = "text/plain");
  static AppendRequest producer_req(const std::string& path, const std::string& body,
                                    const std::string& id, uint64_t epoch, uint64_t seq);
  static AppendRequest close_req(const std::string& path);

  // ---- Synchronous calls: fail the test (and return a timeout error) if the
  // engine does not complete within kCallTimeout.
  Result<CreateOutcome> create(CreateRequest req);
  Result<AppendOutcome> append(AppendRequest req);
  Result<ReadOutcome> read(const std::string& path, OffsetSpec from = OffsetSpec::start(),
                           size_t max_bytes = 1 << 20);
  Result<StreamMeta> head(const std::string& path);
  Status remove(const std::string& path);

  // ---- Conveniences that assert success.
  /// Creates a stream (asserting 201-equivalent) and returns its meta.
  StreamMeta make_stream(const std::string& path, const std::string& content_type = "text/plain",
                         const std::string& body = "");
  /// Appends (asserting success) and returns the new tail.
  Offset put(const std::string& path, const std::string& body,
             const std::string& content_type = "text/plain");
  /// All readable bytes from `from`, following `next` until up to date.
  std::string read_all(const std::string& path, OffsetSpec from = OffsetSpec::start(),
                       size_t max_bytes = 1 << 20);
  /// Records are contiguous from `start` and end at `next` (with
  /// EngineTraits::dense_offsets; otherwise ordered, non-overlapping, from
  /// `start` on and ending at or before `next`).
  ::testing::AssertionResult Contiguous(const ReadOutcome& r) const;
  /// Creates fork_chain_path(0) and `depth` forks, each of the one before at
  /// its tail (the deepest with `last_ttl_seconds`, if given); every 100th
  /// fork and the deepest append a record. Returns what the deepest reads.
  std::string build_fork_chain(uint64_t depth,
                               std::optional<uint64_t> last_ttl_seconds = std::nullopt);
  static std::string fork_chain_path(uint64_t i) { return "/v1/stream/chain/" + std::to_string(i); }

  ManualClock clock_;
  std::unique_ptr<EngineHarness> harness_;
  std::unique_ptr<StreamStore> store_;
};

// ---- Assertion helpers.

std::string describe(const Error& e);

template <class T>
::testing::AssertionResult IsOk(const Result<T>& r) {
  if (r.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected success, got " << describe(r.error());
}

template <class T>
::testing::AssertionResult IsErr(const Result<T>& r, errc code) {
  if (!r.ok() && r.error().code == code) return ::testing::AssertionSuccess();
  if (r.ok())
    return ::testing::AssertionFailure() << "expected " << errc_name(code) << ", got success";
  return ::testing::AssertionFailure()
         << "expected " << errc_name(code) << ", got " << describe(r.error());
}

}  // namespace ds::contract

#define DS_ASSERT_OK(expr) ASSERT_TRUE(::ds::contract::IsOk(expr))
#define DS_EXPECT_OK(expr) EXPECT_TRUE(::ds::contract::IsOk(expr))
#define DS_EXPECT_ERR(expr, code) EXPECT_TRUE(::ds::contract::IsErr((expr), (code)))
#define DS_ASSERT_ERR(expr, code) ASSERT_TRUE(::ds::contract::IsErr((expr), (code)))
/// Skips a test whose engine does not declare EngineTraits::trait.
#define DS_REQUIRE_TRAIT(trait, why) \
  if (!traits().trait) GTEST_SKIP() << GetParam().name << ": " << (why)
