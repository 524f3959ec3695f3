// The real file system behind the log engine's disk seam (store/log/fs.h).
//
// Every error names the operation and the path, because the engine reports
// these messages as they are and an operator has to find the file. Running
// out of space gets its own message prefix so that the layers above (and
// FaultFs, which imitates it) can tell "the disk is full" from "the disk is
// broken" without another error code.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "store/log/fs.h"

namespace ds::logstore {
namespace {

Error os_error(int err, std::string_view op, std::string_view path) {
  std::string what = std::string(op) + " " + std::string(path);
  if (err == ENOSPC || err == EDQUOT) {
    return Error(errc::insufficient_storage, "no space left on device: " + what);
  }
  // system_category().message() is thread-safe, unlike strerror().
  return Error(errc::storage_failure, what + ": " + std::system_category().message(err));
}

// Retries a system call that failed with EINTR: a signal arriving during a
// blocking call is not an I/O error.
template <class F>
auto retry_eintr(F&& call) {
  for (;;) {
    auto r = call();
    if (r != -1 || errno != EINTR) return r;
  }
}

// Closes a descriptor this file opened only for one call (sync_dir,
// sync_all). A close error after a successful fsync loses nothing.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { ::close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  Status write_at(uint64_t offset, std::string_view data) override {
    if (!in_range(offset, data.size())) {
      return Error(errc::storage_failure, "write " + path_ + ": offset out of range");
    }
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n =
          ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return os_error(errno, "write", path_);
      }
      // pwrite(2) returns 0 for a non-empty buffer only when the device
      // accepts nothing; looping would spin forever.
      if (n == 0) return Error(errc::storage_failure, "write " + path_ + ": no progress");
      done += static_cast<size_t>(n);
    }
    return Unit{};
  }

  Status read_at(uint64_t offset, size_t n, std::string& out) const override {
    out.clear();
    if (!in_range(offset, n)) {
      return Error(errc::storage_failure, "read " + path_ + ": offset out of range");
    }
    out.resize(n);
    size_t done = 0;
    while (done < n) {
      ssize_t got = ::pread(fd_, out.data() + done, n - done, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        out.clear();
        return os_error(err, "read", path_);
      }
      if (got == 0) break;  // end of file
      done += static_cast<size_t>(got);
    }
    out.resize(done);
    return Unit{};
  }

  Status sync() override {
    // Only EINTR is retried: after an EIO, Linux may have marked the failed
    // pages clean, so a second fdatasync could "succeed" without the data.
    if (retry_eintr([&] { return ::fdatasync(fd_); }) != 0) {
      return os_error(errno, "fdatasync", path_);
    }
    return Unit{};
  }

  Result<uint64_t> size() const override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return os_error(errno, "fstat", path_);
    return static_cast<uint64_t>(st.st_size);
  }

  Status truncate(uint64_t size) override {
    if (size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
      return Error(errc::storage_failure, "truncate " + path_ + ": size out of range");
    }
    if (retry_eintr([&] { return ::ftruncate(fd_, static_cast<off_t>(size)); }) != 0) {
      return os_error(errno, "truncate", path_);
    }
    return Unit{};
  }

  int native_handle() const override { return fd_; }

 private:
  // off_t is signed: an offset past its range would wrap to a negative one.
  static bool in_range(uint64_t offset, size_t n) {
    const auto max = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
    return offset <= max && n <= max - offset;
  }

  int fd_;
  std::string path_;
};

class PosixFs final : public FileSystem {
 public:
  Result<std::unique_ptr<File>> open(const std::string& path, OpenMode mode) override {
    int flags = O_CLOEXEC;  // the server forks helpers; they must not inherit data files
    switch (mode) {
      case OpenMode::read:
        flags |= O_RDONLY;
        break;
      case OpenMode::write:
        flags |= O_RDWR | O_CREAT;
        break;
      case OpenMode::create_new:
        flags |= O_RDWR | O_CREAT | O_TRUNC;
        break;
    }
    int fd = retry_eintr([&] { return ::open(path.c_str(), flags, 0644); });
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT && mode == OpenMode::read) {
        return Error(errc::not_found, "open " + path + ": no such file");
      }
      return os_error(err, "open", path);
    }
    return std::unique_ptr<File>(std::make_unique<PosixFile>(fd, path));
  }

  bool exists(const std::string& path) override {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
  }

  Result<std::vector<std::string>> list(const std::string& dir) override {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) {
      int err = errno;
      if (err == ENOENT) return Error(errc::not_found, "list " + dir + ": no such directory");
      return os_error(err, "list", dir);
    }
    std::vector<std::string> names;
    for (;;) {
      // readdir signals an error only through errno, with the same null
      // return as the end of the directory.
      errno = 0;
      const dirent* e = ::readdir(d.get());
      if (e == nullptr) {
        if (errno != 0) return os_error(errno, "list", dir);
        break;
      }
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    // readdir's order depends on the file system; sorted names make
    // recovery (and its tests) deterministic.
    std::sort(names.begin(), names.end());
    return names;
  }

  Status make_dirs(const std::string& dir) override {
    if (dir.empty()) return Unit{};
    // Create each prefix in turn, like mkdir -p; one that exists is fine.
    for (size_t pos = dir.find('/', 1); pos != std::string::npos; pos = dir.find('/', pos + 1)) {
      if (Status s = mkdir_one(dir.substr(0, pos)); !s.ok()) return s;
    }
    if (Status s = mkdir_one(dir); !s.ok()) return s;
    // EEXIST also covers a regular file of that name, which is no directory.
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return os_error(errno, "mkdir", dir);
    if (!S_ISDIR(st.st_mode)) return os_error(ENOTDIR, "mkdir", dir);
    return Unit{};
  }

  Status rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      return os_error(errno, "rename", from + " to " + to);
    return Unit{};
  }

  Status remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return os_error(errno, "remove", path);
    return Unit{};
  }

  Status sync_dir(const std::string& dir) override {
    FdCloser fd{
        retry_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); })};
    if (fd.fd < 0) return os_error(errno, "open directory", dir);
    if (retry_eintr([&] { return ::fsync(fd.fd); }) != 0)
      return os_error(errno, "fsync directory", dir);
    return Unit{};
  }

  Status sync_all(const std::string& any_path) override {
    FdCloser fd{retry_eintr([&] { return ::open(any_path.c_str(), O_RDONLY | O_CLOEXEC); })};
    if (fd.fd < 0) return os_error(errno, "open", any_path);
    if (::syncfs(fd.fd) != 0) return os_error(errno, "syncfs", any_path);
    return Unit{};
  }

 private:
  static Status mkdir_one(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return os_error(errno, "mkdir", dir);
    return Unit{};
  }
};

}  // namespace

FileSystem& posix_fs() {
  // Stateless, so one instance serves every thread.
  static PosixFs fs;
  return fs;
}

}  // namespace ds::logstore
