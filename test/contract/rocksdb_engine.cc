// The embedded RocksDB engine under the storage-engine contract: one instance
// on a temporary directory with the default Env, one on an in-memory Env.
//
// Fault injection: a rocksdb::EnvWrapper over the base Env whose WAL files
// (*.log) fail Append/Sync/Fsync/RangeSync on demand. RocksDB 7.8 adapts a
// custom Env's file methods into its FileSystem (LegacyFileSystemWrapper), so
// the WAL's writes and syncs do reach these overrides; the tests also assert
// FaultControl::injected() > 0 so a seam that stopped being reached fails
// loudly instead of passing vacuously.

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>

#include "store/meta_codec.h"
#include "store/rocksdb/codec.h"
#include "store/rocksdb/rocksdb_store.h"
#include "store_contract.h"

namespace ds::contract {
namespace {

bool is_wal(const std::string& fname) {
  return fname.size() > 4 && fname.compare(fname.size() - 4, 4, ".log") == 0;
}

struct FaultFlags {
  std::atomic<bool> fail_syncs{false};
  std::atomic<bool> fail_appends{false};
  std::atomic<uint64_t> injected{0};

  std::mutex pause_mu;
  std::condition_variable pause_cv;
  bool paused = false;  // guarded by pause_mu
  int blocked = 0;      // syncs waiting in gate(), guarded by pause_mu

  /// Holds a sync while paused.
  void gate() {
    std::unique_lock lock(pause_mu);
    if (!paused) return;
    ++blocked;
    pause_cv.notify_all();
    pause_cv.wait(lock, [&] { return !paused; });
    --blocked;
  }

  rocksdb::Status maybe_fail(const std::atomic<bool>& flag, const char* what) {
    if (&flag == &fail_syncs) gate();
    if (!flag.load()) return rocksdb::Status::OK();
    ++injected;
    return rocksdb::Status::IOError(std::string("injected fault: ") + what);
  }
};

class FaultWalFile final : public rocksdb::WritableFileWrapper {
 public:
  FaultWalFile(std::unique_ptr<rocksdb::WritableFile> file, std::shared_ptr<FaultFlags> flags)
      : WritableFileWrapper(file.get()), owned_(std::move(file)), flags_(std::move(flags)) {}

  rocksdb::Status Append(const rocksdb::Slice& data) override {
    auto s = flags_->maybe_fail(flags_->fail_appends, "WAL append");
    return s.ok() ? WritableFileWrapper::Append(data) : s;
  }
  rocksdb::Status Append(const rocksdb::Slice& data,
                         const rocksdb::DataVerificationInfo& v) override {
    auto s = flags_->maybe_fail(flags_->fail_appends, "WAL append");
    return s.ok() ? WritableFileWrapper::Append(data, v) : s;
  }
  rocksdb::Status PositionedAppend(const rocksdb::Slice& data, uint64_t offset) override {
    auto s = flags_->maybe_fail(flags_->fail_appends, "WAL append");
    return s.ok() ? WritableFileWrapper::PositionedAppend(data, offset) : s;
  }
  rocksdb::Status PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                   const rocksdb::DataVerificationInfo& v) override {
    auto s = flags_->maybe_fail(flags_->fail_appends, "WAL append");
    return s.ok() ? WritableFileWrapper::PositionedAppend(data, offset, v) : s;
  }
  rocksdb::Status Sync() override {
    auto s = flags_->maybe_fail(flags_->fail_syncs, "WAL sync");
    return s.ok() ? WritableFileWrapper::Sync() : s;
  }
  rocksdb::Status Fsync() override {
    auto s = flags_->maybe_fail(flags_->fail_syncs, "WAL fsync");
    return s.ok() ? WritableFileWrapper::Fsync() : s;
  }
  rocksdb::Status RangeSync(uint64_t offset, uint64_t nbytes) override {
    auto s = flags_->maybe_fail(flags_->fail_syncs, "WAL range sync");
    return s.ok() ? WritableFileWrapper::RangeSync(offset, nbytes) : s;
  }

 private:
  std::unique_ptr<rocksdb::WritableFile> owned_;
  std::shared_ptr<FaultFlags> flags_;
};

/// Wraps the base Env; only WAL files (*.log) get the fault wrapper.
class FaultEnv final : public rocksdb::EnvWrapper {
 public:
  FaultEnv(rocksdb::Env* base, std::shared_ptr<FaultFlags> flags)
      : EnvWrapper(base), flags_(std::move(flags)) {}

  const char* Name() const override { return "ContractFaultEnv"; }

  rocksdb::Status NewWritableFile(const std::string& f, std::unique_ptr<rocksdb::WritableFile>* r,
                                  const rocksdb::EnvOptions& o) override {
    return wrap(f, target()->NewWritableFile(f, r, o), r);
  }
  rocksdb::Status ReopenWritableFile(const std::string& f,
                                     std::unique_ptr<rocksdb::WritableFile>* r,
                                     const rocksdb::EnvOptions& o) override {
    return wrap(f, target()->ReopenWritableFile(f, r, o), r);
  }
  rocksdb::Status ReuseWritableFile(const std::string& f, const std::string& old,
                                    std::unique_ptr<rocksdb::WritableFile>* r,
                                    const rocksdb::EnvOptions& o) override {
    return wrap(f, target()->ReuseWritableFile(f, old, r, o), r);
  }

 private:
  rocksdb::Status wrap(const std::string& f, rocksdb::Status s,
                       std::unique_ptr<rocksdb::WritableFile>* r) {
    if (s.ok() && is_wal(f)) *r = std::make_unique<FaultWalFile>(std::move(*r), flags_);
    return s;
  }

  std::shared_ptr<FaultFlags> flags_;
};

class RocksFaults final : public FaultControl {
 public:
  explicit RocksFaults(std::shared_ptr<FaultFlags> flags) : flags_(std::move(flags)) {}
  void fail_syncs(bool on) override { flags_->fail_syncs = on; }
  void fail_appends(bool on) override { flags_->fail_appends = on; }
  uint64_t injected() const override { return flags_->injected.load(); }
  void pause_syncs(bool on) override {
    {
      std::lock_guard lock(flags_->pause_mu);
      flags_->paused = on;
    }
    flags_->pause_cv.notify_all();
  }
  bool wait_until_paused(std::chrono::milliseconds bound) override {
    std::unique_lock lock(flags_->pause_mu);
    return flags_->pause_cv.wait_for(lock, bound, [&] { return flags_->blocked > 0; });
  }

 private:
  std::shared_ptr<FaultFlags> flags_;
};

class RocksHarness final : public EngineHarness {
 public:
  explicit RocksHarness(bool in_memory) : in_memory_(in_memory) {
    if (in_memory_) {
      mem_env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
      path_ = "/contract/db";
    } else {
      std::string tmpl = (std::filesystem::temp_directory_path() / "ds-contract-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
      dir_ = tmpl;
      path_ = dir_ + "/db";
    }
  }

  ~RocksHarness() override {
    // Every store opened on this harness has been destroyed by now (the
    // fixture closes it first), so the Envs are no longer in use.
    fault_env_.reset();
    mem_env_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  Result<std::unique_ptr<StreamStore>> open(const EngineOptions& options) override {
    rocksdb::Env* base = in_memory_ ? mem_env_.get() : rocksdb::Env::Default();
    RocksStoreOptions o;
    o.path = path_;
    o.env = in_memory_ ? base : nullptr;
    o.sync = true;
    o.clock = options.clock;
    o.maintenance_interval_ms = 1000;
    if (options.fault_injection) {
      auto flags = std::make_shared<FaultFlags>();
      // The previous store is closed before open() is called again, so the
      // previous fault Env is no longer in use.
      fault_env_ = std::make_unique<FaultEnv>(base, flags);
      faults_ = std::make_unique<RocksFaults>(flags);
      o.env = fault_env_.get();
    }
    return open_rocksdb_store(o);
  }

  FaultControl* faults() override { return faults_.get(); }

 private:
  bool in_memory_;
  std::string dir_;
  std::string path_;
  std::unique_ptr<rocksdb::Env> mem_env_;
  std::unique_ptr<rocksdb::Env> fault_env_;
  std::unique_ptr<RocksFaults> faults_;
};

EngineFactory rocksdb_disk() {
  return {"RocksDbDisk", [] { return std::make_unique<RocksHarness>(false); }};
}
EngineFactory rocksdb_mem() {
  return {"RocksDbMemEnv", [] { return std::make_unique<RocksHarness>(true); }};
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(RocksDb, StoreContract, ::testing::Values(rocksdb_disk(), rocksdb_mem()),
                         [](const ::testing::TestParamInfo<EngineFactory>& info) {
                           return info.param.name;
                         });

// ---- Issue 13.1 on data written before kMaxForkDepth existed: a fork chain
// deeper than the limit, stored as a dstreamd of that time stored it
// (version-1 metadata, without a fork depth). Its ancestors are soft-deleted,
// so deleting or expiring the deepest fork cascades down the whole chain.
// The engine once recursed there and crashed on its writer thread, and
// again at every start when the cascade came from the TTL sweep.

namespace {

constexpr uint64_t kLegacyDepth = 50'000;

/// encode_meta as version 1 wrote it: no fork depth. Needs the last four
/// fields (ref_count, soft_deleted, created_ms, last_access_ms) to be one
/// byte each, as they are here.
std::string encode_meta_v1(const StreamMeta& m) {
  std::string v2 = encode_meta(m);
  if (v2[0] == '\x01') return v2;  // a dstreamd that still writes version 1
  if (!m.fork) {
    v2[0] = '\x01';
    return v2;
  }
  EXPECT_EQ(m.fork_depth, 1u);
  // ... fork_depth (1 byte), then the four one-byte fields.
  return "\x01" + v2.substr(1, v2.size() - 6) + v2.substr(v2.size() - 4);
}

template <class T>
errc code_of(const Result<T>& r) {
  return r.ok() ? errc::ok : r.error().code;
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
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_ + "/db", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteBatch batch;
    for (uint64_t i = 0; i <= kLegacyDepth; ++i) {
      StreamMeta m;
      m.id = i + 1;
      m.path = legacy_path(i);
      m.config.content_type = "text/plain";
      m.tail = Offset{0, 4};
      if (i > 0) {
        m.fork = ForkRef{legacy_path(i - 1), i, Offset{0, 4}, 0};
        m.fork_depth = 1;  // what a version-1 record decodes to
      }
      const bool deepest = i == kLegacyDepth;
      m.ref_count = deepest ? 0 : 1;
      m.soft_deleted = !deepest;
      if (deepest && expires_at_ms) m.config.expires_at_ms = expires_at_ms;
      batch.Put(rocks::meta_key(m.path), encode_meta_v1(m));
    }
    batch.Put(rocks::data_key(1, 0), "root");
    batch.Put(rocks::kNextIdKey, rocks::encode_u64(kLegacyDepth + 2));
    ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());
  }

  void open() {
    store_.reset();
    RocksStoreOptions o;
    o.path = dir_ + "/db";
    o.clock = &clock_;
    o.maintenance_interval_ms = 1000;
    auto s = open_rocksdb_store(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(*s);
  }

  template <class T, class Start>
  static Result<T> wait(Start&& start) {
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto f = p->get_future();
    start([p](Result<T> r) { p->set_value(std::move(r)); });
    if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
      return Error(errc::unavailable, "no answer within 60 s");
    return f.get();
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

}  // namespace ds::contract
