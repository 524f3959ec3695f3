// The embedded log engine under the storage-engine contract, three ways:
//   LogDisk          the real file system in a temporary directory;
//   LogMem           the fault-injecting in-memory file system
//                    (test/support/fault_fs.h), which also backs
//                    FaultControl: failed syncs and writes, paused syncs;
//   LogMemCheckpoint the same, with a checkpoint after every group, tiny WAL
//                    segments and every stream in a file: every read goes
//                    through the files and every restart through a
//                    checkpoint, not only through the WAL.

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "store/log/fs.h"
#include "store/log/log_store.h"
#include "store_contract.h"
#include "support/fault_fs.h"

namespace ds::contract {
namespace {

using logstore::testing::FaultFs;

class FsFaults final : public FaultControl {
 public:
  explicit FsFaults(FaultFs& fs) : fs_(fs) {}
  void fail_syncs(bool on) override { fs_.fail_syncs(on); }
  void fail_appends(bool on) override { fs_.fail_writes(on); }
  uint64_t injected() const override { return fs_.injected(); }
  void pause_syncs(bool on) override { fs_.pause_syncs(on); }
  bool wait_until_paused(std::chrono::milliseconds bound) override {
    return fs_.wait_until_paused(bound);
  }

 private:
  FaultFs& fs_;
};

enum class Kind { disk, mem, mem_checkpoint };

class LogHarness final : public EngineHarness {
 public:
  explicit LogHarness(Kind kind) : kind_(kind) {
    if (kind_ == Kind::disk) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "ds-log-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
      dir_ = tmpl;
      path_ = dir_ + "/data";
    } else {
      mem_ = std::make_unique<FaultFs>();
      faults_ = std::make_unique<FsFaults>(*mem_);
      path_ = "/contract/data";
    }
  }
  ~LogHarness() override {
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  Result<std::unique_ptr<StreamStore>> open(const EngineOptions& options) override {
    LogStoreOptions o;
    o.path = path_;
    o.fs = mem_.get();
    o.clock = options.clock;
    o.maintenance_interval_ms = 1000;
    if (kind_ == Kind::mem_checkpoint) {
      o.checkpoint_wal_bytes = 1;
      o.segment_bytes = 256;
      o.inline_bytes = 1;
    }
    if (mem_) {
      // Faults are off until a test turns them on.
      mem_->fail_syncs(false);
      mem_->fail_writes(false);
    }
    return open_log_store(o);
  }

  FaultControl* faults() override { return faults_.get(); }

 private:
  Kind kind_;
  std::string dir_;
  std::string path_;
  std::unique_ptr<FaultFs> mem_;
  std::unique_ptr<FsFaults> faults_;
};

EngineFactory log_factory(const char* name, Kind kind) {
  return {name, [kind] { return std::make_unique<LogHarness>(kind); }};
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Log, StoreContract,
                         ::testing::Values(log_factory("LogDisk", Kind::disk),
                                           log_factory("LogMem", Kind::mem),
                                           log_factory("LogMemCheckpoint", Kind::mem_checkpoint)),
                         [](const ::testing::TestParamInfo<EngineFactory>& info) {
                           return info.param.name;
                         });

}  // namespace ds::contract
