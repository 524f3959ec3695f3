// The embedded RocksDB engine under the storage-engine contract: one instance
// on a temporary directory with the default Env, one on an in-memory Env.
//
// Fault injection: a rocksdb::EnvWrapper over the base Env whose WAL files
// (*.log) fail Append/Sync/Fsync/RangeSync on demand. RocksDB 7.8 adapts a
// custom Env's file methods into its FileSystem (LegacyFileSystemWrapper), so
// the WAL's writes and syncs do reach these overrides; the tests also assert
// FaultControl::injected() > 0 so a seam that stopped being reached fails
// loudly instead of passing vacuously.

#include <rocksdb/env.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

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

}  // namespace ds::contract
