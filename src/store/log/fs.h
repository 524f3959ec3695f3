#pragma once
// The disk seam of the embedded engine. Every byte the log engine reads or
// writes goes through a FileSystem, so tests can wrap it: fail a sync, run
// out of space, or "crash" by dropping every write no completed sync covers
// (test/support/fault_fs.h, in the spirit of leveldb's fault-injection Env).
//
// The contract is POSIX's, reduced to what the engine uses:
//   - File::write_at / append change the file's contents at once for readers
//     of the same FileSystem, but are durable only after File::sync();
//   - a file's existence and name (create, rename, remove) are durable only
//     after sync_dir() of its directory;
//   - sync_all() makes every write and directory change durable (syncfs).
// All paths are absolute or relative to the process's working directory.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/errc.h"

namespace ds::logstore {

class File {
 public:
  virtual ~File() = default;
  /// Writes all of `data` at `offset` (extending the file if needed).
  virtual Status write_at(uint64_t offset, std::string_view data) = 0;
  /// Reads up to `n` bytes at `offset` into `out` (resized to what was read;
  /// shorter only at the end of the file).
  virtual Status read_at(uint64_t offset, size_t n, std::string& out) const = 0;
  /// fdatasync: every write before it is durable once it returns success.
  virtual Status sync() = 0;
  virtual Result<uint64_t> size() const = 0;
  virtual Status truncate(uint64_t size) = 0;
  /// A kernel file descriptor for sendfile(2), or -1 when the file has none
  /// (an in-memory file system): callers then fall back to read_at.
  virtual int native_handle() const { return -1; }
};

enum class OpenMode {
  read,        ///< existing file, read only
  write,       ///< existing file or a new one, read and write
  create_new,  ///< a new, empty file (truncates one that exists)
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  virtual Result<std::unique_ptr<File>> open(const std::string& path, OpenMode mode) = 0;
  virtual bool exists(const std::string& path) = 0;
  /// Names (not paths) of the entries of a directory; errc::not_found if
  /// the directory does not exist.
  virtual Result<std::vector<std::string>> list(const std::string& dir) = 0;
  /// Creates a directory and its parents; success if it exists.
  virtual Status make_dirs(const std::string& dir) = 0;
  /// Atomically replaces `to` with `from`.
  virtual Status rename(const std::string& from, const std::string& to) = 0;
  /// Removes a file; success if it does not exist.
  virtual Status remove(const std::string& path) = 0;
  /// Makes the directory's entries (creates, renames, removes) durable.
  virtual Status sync_dir(const std::string& dir) = 0;
  /// Makes everything written through this FileSystem durable (syncfs(2)).
  virtual Status sync_all(const std::string& any_path) = 0;
};

/// The real file system.
FileSystem& posix_fs();

}  // namespace ds::logstore
