#pragma once
// FaultFs: an in-memory FileSystem (store/log/fs.h) that knows what a crash
// would keep, and injects faults. The idea follows leveldb's
// FaultInjectionTestEnv: track what has been made durable, and on a
// "crash" throw away everything else.
//
// What it models:
//   - Each file (an inode: several names may share one) has `current`
//     contents, which every reader sees at once, and `durable` contents, what
//     a crash keeps. The writes and truncations since the last File::sync()
//     are kept in order as a list of operations; durable + that list ==
//     current. File::sync() makes current durable.
//   - The namespace (which name refers to which file) has a current and a
//     durable version too. Creating, renaming and removing a file change the
//     current one; sync_dir(d) copies the current entries of directory d
//     (and only those) into the durable one. sync_all() makes every file and
//     every entry durable.
//   - crash() reverts everything to the durable state: files whose creation
//     no sync_dir covered disappear, unsynced renames and removes are undone,
//     contents fall back to the durable ones. Every File opened before the
//     crash fails from then on (errc::storage_failure), as the process that
//     held it is gone.
//   - crash_keeping_random_prefix() is a crash in the middle of writeback:
//     each surviving file keeps its durable contents plus a random prefix of
//     its unsynced operations, the last kept write itself cut at a random
//     length (a torn write).
//
// What it does not model: directories are durable as soon as make_dirs()
// creates them (the engine makes its data directory once, and its tests do
// not own the parent to sync); the namespace never tears (an unsynced
// directory change is either all lost, on crash, or all kept, after
// sync_dir); writeback in another order than the writes were issued.
//
// Paths are plain strings, not normalised: a path's directory is what comes
// before its last '/' (trailing slashes of directory arguments are ignored).
// "" (a path without '/', or a child of "/") is a root that always exists.
//
// Thread-safe: one mutex guards the state, so the engine may use it from
// several threads. A FaultFs must outlive the Files it opened.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "store/log/fs.h"

namespace ds::logstore::testing {

class FaultFile;

class FaultFs final : public FileSystem {
 public:
  FaultFs();
  ~FaultFs() override;
  FaultFs(const FaultFs&) = delete;
  FaultFs& operator=(const FaultFs&) = delete;

  // ---- FileSystem. --------------------------------------------------------
  Result<std::unique_ptr<File>> open(const std::string& path, OpenMode mode) override;
  bool exists(const std::string& path) override;
  Result<std::vector<std::string>> list(const std::string& dir) override;
  Status make_dirs(const std::string& dir) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status remove(const std::string& path) override;
  Status sync_dir(const std::string& dir) override;
  Status sync_all(const std::string& any_path) override;

  // ---- Crashes. -----------------------------------------------------------
  /// Reverts to the durable state and invalidates every open File.
  void crash();
  /// Like crash(), but each file keeps a random prefix of its unsynced
  /// operations, the last kept write cut at a random length.
  void crash_keeping_random_prefix(std::mt19937_64& rng);
  /// A crash after which the machine stays down: like crash_keeping_random_
  /// prefix(), and every operation (opening new files too) then fails until
  /// power_on(). What a crashed process can no longer do, a test's engine
  /// that still runs must not do either.
  void power_off(std::mt19937_64& rng);
  void power_on();

  // ---- Faults. Each may be switched from any thread at any time. ---------
  /// File::sync, sync_dir and sync_all fail ("injected fault: sync ...")
  /// and make nothing durable.
  void fail_syncs(bool on);
  /// File::write_at fails ("injected fault: write ...") and changes nothing.
  void fail_writes(bool on);
  /// File::write_at fails as posix_fs() does on ENOSPC ("no space left on
  /// device: write ...") and changes nothing.
  void no_space(bool on);
  /// File::sync blocks (before deciding whether it fails) until
  /// pause_syncs(false). Other operations go on meanwhile.
  void pause_syncs(bool on);
  /// True as soon as a File::sync is blocked by pause_syncs, false if none
  /// is within `timeout`.
  bool wait_until_paused(std::chrono::milliseconds timeout);
  /// Operations that failed because of a fault knob.
  uint64_t injected() const { return injected_.load(); }
  /// File::sync calls that succeeded.
  uint64_t sync_count() const { return sync_count_.load(); }

  // ---- Test helpers. ------------------------------------------------------
  /// The current contents of a file; "" if there is none.
  std::string contents(const std::string& path) const;
  /// XORs the byte at `offset` with `mask` in both the current and the
  /// durable contents, as a medium error would; nothing past the end.
  void corrupt(const std::string& path, uint64_t offset, uint8_t mask);
  /// Makes `path` a file with `bytes`, durably (contents and entry); creates
  /// its directories.
  void set_contents(const std::string& path, std::string_view bytes);

 private:
  friend class FaultFile;
  struct Node;
  using NodePtr = std::shared_ptr<Node>;

  void crash_locked(std::mt19937_64* rng);
  Status inject_locked(std::string message);
  bool dir_exists_locked(const std::string& dir) const;

  mutable std::mutex mu_;
  std::condition_variable paused_cv_;     ///< signals pause_syncs(false) and a sync blocking
  std::map<std::string, NodePtr> files_;  ///< current namespace
  std::map<std::string, NodePtr> durable_files_;  ///< what a crash keeps
  std::set<std::string> dirs_;                    ///< every directory (always durable)
  uint64_t generation_ = 0;  ///< bumped by a crash; Files of an older one are dead
  bool paused_ = false;
  int blocked_syncs_ = 0;
  bool down_ = false;  ///< power_off() until power_on()

  std::atomic<bool> fail_syncs_{false};
  std::atomic<bool> fail_writes_{false};
  std::atomic<bool> no_space_{false};
  std::atomic<uint64_t> injected_{0};
  std::atomic<uint64_t> sync_count_{0};
};

}  // namespace ds::logstore::testing
