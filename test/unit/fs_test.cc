// The disk seam (store/log/fs.h): one contract suite run over posix_fs() and
// FaultFs, so the in-memory double the crash tests rely on behaves like the
// real thing; then what only FaultFs does (crashes, injected faults) and the
// POSIX-only details (O_CLOEXEC, ENOSPC).

#include "store/log/fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/fault_fs.h"

namespace {

using ds::errc;
using ds::Status;
using ds::logstore::File;
using ds::logstore::FileSystem;
using ds::logstore::OpenMode;
using ds::logstore::testing::FaultFs;
using namespace std::chrono_literals;

#define ASSERT_OK(expr)                                         \
  do {                                                          \
    auto&& ok_result_ = (expr);                                 \
    ASSERT_TRUE(ok_result_.ok()) << ok_result_.error().message; \
  } while (0)

std::unique_ptr<File> open_or_fail(FileSystem& fs, const std::string& path, OpenMode mode) {
  auto r = fs.open(path, mode);
  if (!r.ok()) {
    ADD_FAILURE() << "open " << path << ": " << r.error().message;
    return nullptr;
  }
  return std::move(r).value();
}

// The whole file through read_at, as a reader of the engine would see it.
std::string read_all(const File& f) {
  auto size = f.size();
  if (!size.ok()) return "<size failed: " + size.error().message + ">";
  std::string out;
  Status s = f.read_at(0, *size, out);
  if (!s.ok()) return "<read failed: " + s.error().message + ">";
  return out;
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

// ---- The contract, for both implementations. ------------------------------

struct PosixEnv {
  static constexpr const char* kName = "Posix";
  PosixEnv() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/ds-fs-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << tmpl;
    root = tmpl;
  }
  ~PosixEnv() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
  FileSystem& fs() { return ds::logstore::posix_fs(); }
  std::string root;
};

struct FaultEnv {
  static constexpr const char* kName = "FaultFs";
  FaultEnv() {
    if (!faults.make_dirs(root).ok()) ADD_FAILURE() << "make_dirs " << root;
  }
  FileSystem& fs() { return faults; }
  FaultFs faults;
  std::string root = "/faultfs/root";
};

template <class Env>
class FsContractTest : public ::testing::Test {
 protected:
  FileSystem& fs() { return env_.fs(); }
  std::string path(const std::string& name) const { return env_.root + "/" + name; }
  const std::string& root() const { return env_.root; }

  // Creates `name` with `bytes` through the FileSystem under test.
  void write_file(const std::string& name, const std::string& bytes) {
    auto f = open_or_fail(fs(), path(name), OpenMode::create_new);
    ASSERT_NE(f, nullptr);
    ASSERT_OK(f->write_at(0, bytes));
  }

  Env env_;
};

struct EnvNames {
  template <class Env>
  static std::string GetName(int) {
    return Env::kName;
  }
};

using Envs = ::testing::Types<PosixEnv, FaultEnv>;
TYPED_TEST_SUITE(FsContractTest, Envs, EnvNames);

TYPED_TEST(FsContractTest, WritesReadBackAtTheirOffsets) {
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(0, "hello"));
  ASSERT_OK(f->write_at(5, " world"));
  ASSERT_OK(f->write_at(0, "J"));  // overwrite in place
  EXPECT_EQ(read_all(*f), "Jello world");
  std::string out;
  ASSERT_OK(f->read_at(6, 3, out));
  EXPECT_EQ(out, "wor");
}

TYPED_TEST(FsContractTest, WritePastTheEndZeroFillsTheGap) {
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(4, "xy"));
  auto size = f->size();
  ASSERT_OK(size);
  EXPECT_EQ(*size, 6u);
  EXPECT_EQ(read_all(*f), std::string("\0\0\0\0xy", 6));
}

TYPED_TEST(FsContractTest, ReadsAreShortOnlyAtTheEnd) {
  this->write_file("a", "0123456789");
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::read);
  ASSERT_NE(f, nullptr);
  std::string out = "junk";
  ASSERT_OK(f->read_at(7, 100, out));
  EXPECT_EQ(out, "789");
  ASSERT_OK(f->read_at(10, 5, out));
  EXPECT_EQ(out, "");
  ASSERT_OK(f->read_at(50, 5, out));
  EXPECT_EQ(out, "");
}

TYPED_TEST(FsContractTest, WritesAreVisibleToOtherHandlesBeforeAnySync) {
  auto w = open_or_fail(this->fs(), this->path("a"), OpenMode::create_new);
  auto r = open_or_fail(this->fs(), this->path("a"), OpenMode::read);
  ASSERT_NE(w, nullptr);
  ASSERT_NE(r, nullptr);
  ASSERT_OK(w->write_at(0, "seen"));
  EXPECT_EQ(read_all(*r), "seen");
}

TYPED_TEST(FsContractTest, OpenForReadOfAMissingFileIsNotFound) {
  auto r = this->fs().open(this->path("missing"), OpenMode::read);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::not_found);
  EXPECT_NE(r.error().message.find(this->path("missing")), std::string::npos) << r.error().message;
}

TYPED_TEST(FsContractTest, OpenInAMissingDirectoryIsAStorageFailure) {
  for (OpenMode mode : {OpenMode::write, OpenMode::create_new}) {
    auto r = this->fs().open(this->path("nodir/a"), mode);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, errc::storage_failure);
    EXPECT_NE(r.error().message.find("open " + this->path("nodir/a")), std::string::npos)
        << r.error().message;
  }
}

TYPED_TEST(FsContractTest, OpenWriteKeepsContentsAndCreateNewTruncates) {
  this->write_file("a", "keep me");
  {
    auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::write);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(read_all(*f), "keep me");
  }
  {
    auto f = open_or_fail(this->fs(), this->path("b"), OpenMode::write);  // creates
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(read_all(*f), "");
  }
  EXPECT_TRUE(this->fs().exists(this->path("b")));
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(read_all(*f), "");
}

TYPED_TEST(FsContractTest, TruncateShrinksAndZeroExtends) {
  this->write_file("a", "abcdef");
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::write);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->truncate(3));
  EXPECT_EQ(read_all(*f), "abc");
  ASSERT_OK(f->truncate(5));
  EXPECT_EQ(read_all(*f), std::string("abc\0\0", 5));
}

TYPED_TEST(FsContractTest, ReadOnlyFilesRefuseChanges) {
  this->write_file("a", "abc");
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::read);
  ASSERT_NE(f, nullptr);
  Status w = f->write_at(0, "x");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, errc::storage_failure);
  EXPECT_FALSE(f->truncate(0).ok());
  EXPECT_EQ(read_all(*f), "abc");
}

TYPED_TEST(FsContractTest, ListGivesSortedNamesOfFilesAndDirectories) {
  this->write_file("b", "");
  this->write_file("a", "");
  ASSERT_OK(this->fs().make_dirs(this->path("sub")));
  this->write_file("sub/c", "");
  auto names = this->fs().list(this->root());
  ASSERT_OK(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "sub"}));
  auto sub = this->fs().list(this->path("sub"));
  ASSERT_OK(sub);
  EXPECT_EQ(*sub, (std::vector<std::string>{"c"}));
}

TYPED_TEST(FsContractTest, ListOfAMissingDirectoryIsNotFound) {
  auto names = this->fs().list(this->path("nodir"));
  ASSERT_FALSE(names.ok());
  EXPECT_EQ(names.error().code, errc::not_found);
}

TYPED_TEST(FsContractTest, MakeDirsCreatesParentsAndAcceptsExistingOnes) {
  std::string deep = this->path("x/y/z");
  ASSERT_OK(this->fs().make_dirs(deep));
  ASSERT_OK(this->fs().make_dirs(deep));
  ASSERT_OK(this->fs().make_dirs(this->path("x/y")));
  ASSERT_OK(this->fs().make_dirs(deep + "/"));
  EXPECT_TRUE(this->fs().exists(this->path("x")));
  EXPECT_TRUE(this->fs().exists(deep));
  this->write_file("x/y/z/f", "in deep");
  auto names = this->fs().list(deep);
  ASSERT_OK(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"f"}));
}

TYPED_TEST(FsContractTest, MakeDirsOverAFileFails) {
  this->write_file("f", "");
  Status s = this->fs().make_dirs(this->path("f/sub"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::storage_failure);
}

TYPED_TEST(FsContractTest, RenameReplacesTheTarget) {
  this->write_file("from", "new");
  this->write_file("to", "old contents");
  ASSERT_OK(this->fs().rename(this->path("from"), this->path("to")));
  EXPECT_FALSE(this->fs().exists(this->path("from")));
  auto f = open_or_fail(this->fs(), this->path("to"), OpenMode::read);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(read_all(*f), "new");
}

TYPED_TEST(FsContractTest, RenameOfAMissingFileFailsNamingIt) {
  Status s = this->fs().rename(this->path("missing"), this->path("to"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::storage_failure);
  EXPECT_NE(s.error().message.find("rename " + this->path("missing")), std::string::npos)
      << s.error().message;
  EXPECT_FALSE(this->fs().exists(this->path("to")));
}

TYPED_TEST(FsContractTest, RemoveDeletesAndAcceptsMissingFiles) {
  this->write_file("a", "x");
  ASSERT_OK(this->fs().remove(this->path("a")));
  EXPECT_FALSE(this->fs().exists(this->path("a")));
  ASSERT_OK(this->fs().remove(this->path("a")));
}

TYPED_TEST(FsContractTest, OpenFilesOutliveRemoveAndRename) {
  this->write_file("a", "still here");
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::write);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(this->fs().rename(this->path("a"), this->path("b")));
  ASSERT_OK(f->write_at(10, "!"));
  auto b = open_or_fail(this->fs(), this->path("b"), OpenMode::read);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(read_all(*b), "still here!");
  ASSERT_OK(this->fs().remove(this->path("b")));
  EXPECT_EQ(read_all(*f), "still here!");
}

TYPED_TEST(FsContractTest, SyncsSucceed) {
  auto f = open_or_fail(this->fs(), this->path("a"), OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(0, "durable"));
  ASSERT_OK(f->sync());
  ASSERT_OK(this->fs().sync_dir(this->root()));
  ASSERT_OK(this->fs().sync_all(this->root()));
  ASSERT_OK(this->fs().sync_all(this->path("a")));
  EXPECT_EQ(read_all(*f), "durable");
}

TYPED_TEST(FsContractTest, SyncOfAMissingDirectoryFails) {
  Status s = this->fs().sync_dir(this->path("nodir"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::storage_failure);
  EXPECT_NE(s.error().message.find(this->path("nodir")), std::string::npos) << s.error().message;
}

// ---- POSIX only. -----------------------------------------------------------

TEST(PosixFsTest, FilesHaveACloseOnExecDescriptor) {
  PosixEnv env;
  auto f = open_or_fail(env.fs(), env.root + "/a", OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  int fd = f->native_handle();
  ASSERT_GE(fd, 0);
  int flags = ::fcntl(fd, F_GETFD);
  ASSERT_NE(flags, -1);
  EXPECT_NE(flags & FD_CLOEXEC, 0);
}

TEST(PosixFsTest, NoSpaceHasItsOwnMessage) {
  // /dev/full fails every write with ENOSPC: the one disk-full condition a
  // test can cause without filling a disk.
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full";
  auto f = open_or_fail(ds::logstore::posix_fs(), "/dev/full", OpenMode::write);
  ASSERT_NE(f, nullptr);
  Status s = f->write_at(0, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::insufficient_storage);
  EXPECT_TRUE(starts_with(s.error().message, "no space left on device")) << s.error().message;
  EXPECT_NE(s.error().message.find("/dev/full"), std::string::npos) << s.error().message;
}

TEST(PosixFsTest, ErrorsNameTheOperationAndTheErrno) {
  PosixEnv env;
  Status s = env.fs().make_dirs("/proc/ds-fs-test/x");  // /proc refuses mkdir
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::storage_failure);
  EXPECT_TRUE(starts_with(s.error().message, "mkdir /proc/ds-fs-test")) << s.error().message;
  EXPECT_NE(s.error().message.find(": "), std::string::npos) << s.error().message;
}

// ---- FaultFs only: crashes. --------------------------------------------------

class FaultFsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(fs_.make_dirs(dir_)); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // A file whose entry and `bytes` are durable, left open for more writes.
  std::unique_ptr<File> durable_file(const std::string& name, const std::string& bytes) {
    auto f = open_or_fail(fs_, path(name), OpenMode::create_new);
    if (f == nullptr) return nullptr;
    expect_ok(f->write_at(0, bytes));
    expect_ok(f->sync());
    expect_ok(fs_.sync_dir(dir_));
    return f;
  }

  static void expect_ok(const Status& s) { EXPECT_TRUE(s.ok()) << s.error().message; }

  FaultFs fs_;
  std::string dir_ = "/data/log";
};

TEST_F(FaultFsTest, NativeHandleIsNone) {
  auto f = durable_file("a", "x");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->native_handle(), -1);
}

TEST_F(FaultFsTest, UnsyncedWritesVanishAtCrash) {
  auto f = durable_file("a", "synced");
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(6, " and not"));
  EXPECT_EQ(fs_.contents(path("a")), "synced and not");
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "synced");
}

TEST_F(FaultFsTest, SyncedWritesSurviveCrash) {
  auto f = durable_file("a", "one");
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(3, " two"));
  ASSERT_OK(f->sync());
  ASSERT_OK(f->truncate(2));  // not synced: the crash undoes it
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "one two");
  EXPECT_EQ(fs_.sync_count(), 2u);
}

TEST_F(FaultFsTest, SyncedFileInAnUnsyncedDirectoryVanishesAtCrash) {
  auto f = open_or_fail(fs_, path("a"), OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(0, "data"));
  ASSERT_OK(f->sync());
  fs_.crash();
  EXPECT_FALSE(fs_.exists(path("a")));
  auto names = fs_.list(dir_);
  ASSERT_OK(names);
  EXPECT_TRUE(names->empty());
}

TEST_F(FaultFsTest, DurableEntryWithoutSyncedDataIsEmptyAfterCrash) {
  auto f = open_or_fail(fs_, path("a"), OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(0, "data"));
  ASSERT_OK(fs_.sync_dir(dir_));
  fs_.crash();
  EXPECT_TRUE(fs_.exists(path("a")));
  EXPECT_EQ(fs_.contents(path("a")), "");
}

TEST_F(FaultFsTest, RenameIsDurableOnlyAfterSyncDir) {
  ASSERT_NE(durable_file("tmp", "new"), nullptr);
  ASSERT_NE(durable_file("cur", "old"), nullptr);
  ASSERT_OK(fs_.rename(path("tmp"), path("cur")));
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("tmp")), "new");
  EXPECT_EQ(fs_.contents(path("cur")), "old");

  ASSERT_OK(fs_.rename(path("tmp"), path("cur")));
  ASSERT_OK(fs_.sync_dir(dir_));
  fs_.crash();
  EXPECT_FALSE(fs_.exists(path("tmp")));
  EXPECT_EQ(fs_.contents(path("cur")), "new");
}

TEST_F(FaultFsTest, SyncDirCoversOnlyItsOwnDirectory) {
  ASSERT_OK(fs_.make_dirs("/data/other"));
  auto f = open_or_fail(fs_, "/data/other/b", OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->sync());
  ASSERT_OK(fs_.sync_dir(dir_));
  fs_.crash();
  EXPECT_FALSE(fs_.exists("/data/other/b"));
}

TEST_F(FaultFsTest, RemoveIsDurableOnlyAfterSyncDir) {
  ASSERT_NE(durable_file("a", "back"), nullptr);
  ASSERT_OK(fs_.remove(path("a")));
  EXPECT_FALSE(fs_.exists(path("a")));
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "back");
  ASSERT_OK(fs_.remove(path("a")));
  ASSERT_OK(fs_.sync_dir(dir_));
  fs_.crash();
  EXPECT_FALSE(fs_.exists(path("a")));
}

TEST_F(FaultFsTest, SyncAllMakesEverythingDurable) {
  auto f = open_or_fail(fs_, path("a"), OpenMode::create_new);
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(0, "all"));
  ASSERT_NE(durable_file("b", "gone"), nullptr);
  ASSERT_OK(fs_.remove(path("b")));
  ASSERT_OK(fs_.sync_all(dir_));
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "all");
  EXPECT_FALSE(fs_.exists(path("b")));
}

TEST_F(FaultFsTest, PowerOffFailsEverythingUntilPowerOn) {
  auto f = durable_file("a", "synced");
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(6, "-lost"));
  std::mt19937_64 rng(1);
  fs_.power_off(rng);
  // A crashed process cannot go on: not with old files, not with new ones.
  EXPECT_FALSE(fs_.open(path("b"), OpenMode::create_new).ok());
  EXPECT_FALSE(fs_.open(path("a"), OpenMode::read).ok());
  EXPECT_FALSE(f->write_at(0, "x").ok());
  EXPECT_FALSE(fs_.sync_all(dir_).ok());
  EXPECT_FALSE(fs_.list(dir_).ok());
  EXPECT_FALSE(fs_.exists(path("a")));
  fs_.power_on();
  const std::string kept = fs_.contents(path("a"));
  EXPECT_EQ(kept.rfind("synced", 0), 0u) << kept;
  EXPECT_LE(kept.size(), std::string("synced-lost").size());
  EXPECT_TRUE(fs_.open(path("b"), OpenMode::create_new).ok());
}

TEST_F(FaultFsTest, CrashInvalidatesOpenFiles) {
  auto f = durable_file("a", "x");
  ASSERT_NE(f, nullptr);
  fs_.crash();
  std::string out;
  for (Status s : {f->write_at(0, "y"), f->read_at(0, 1, out), f->sync(), f->truncate(0)}) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, errc::storage_failure);
    EXPECT_NE(s.error().message.find("crash"), std::string::npos) << s.error().message;
  }
  EXPECT_FALSE(f->size().ok());
  // The file itself is fine: a new handle works.
  auto g = open_or_fail(fs_, path("a"), OpenMode::write);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(read_all(*g), "x");
}

// Applies ops with the same meaning as FaultFs's unsynced list, to compute
// every state a torn crash may legally leave.
struct TestOp {
  bool truncate;
  uint64_t offset;
  std::string bytes;
};

void apply_test_op(std::string& s, const TestOp& op, size_t n) {
  if (op.truncate) {
    s.resize(op.offset);
  } else if (n > 0) {
    if (s.size() < op.offset + n) s.resize(op.offset + n);
    s.replace(op.offset, n, op.bytes.substr(0, n));
  }
}

TEST_F(FaultFsTest, TornCrashKeepsAPrefixOfTheUnsyncedWrites) {
  const std::string durable = "AAAA";
  const std::vector<TestOp> ops = {
      {false, 4, "BBBB"}, {false, 2, "CC"}, {true, 6, ""}, {false, 8, "DDD"}};
  std::set<std::string> allowed = {durable};
  for (size_t k = 1; k <= ops.size(); ++k) {
    std::string base = durable;
    for (size_t i = 0; i + 1 < k; ++i) apply_test_op(base, ops[i], ops[i].bytes.size());
    for (size_t n = 0; n <= ops[k - 1].bytes.size(); ++n) {
      std::string s = base;
      apply_test_op(s, ops[k - 1], n);
      allowed.insert(s);
    }
  }
  std::string full = durable;
  for (const TestOp& op : ops) apply_test_op(full, op, op.bytes.size());
  const std::string torn("AACCBB\0\0D", 9);  // the last write cut after one byte

  std::mt19937_64 rng(42);
  std::set<std::string> seen;
  for (int trial = 0; trial < 300; ++trial) {
    FaultFs fs;
    ASSERT_OK(fs.make_dirs(dir_));
    fs.set_contents(path("a"), durable);
    auto f = open_or_fail(fs, path("a"), OpenMode::write);
    ASSERT_NE(f, nullptr);
    for (const TestOp& op : ops) {
      ASSERT_OK(op.truncate ? f->truncate(op.offset) : f->write_at(op.offset, op.bytes));
    }
    auto lost = open_or_fail(fs, path("lost"), OpenMode::create_new);  // entry never synced
    ASSERT_NE(lost, nullptr);
    ASSERT_OK(lost->write_at(0, "zzz"));
    ASSERT_EQ(fs.contents(path("a")), full);
    fs.crash_keeping_random_prefix(rng);
    std::string after = fs.contents(path("a"));
    ASSERT_TRUE(allowed.count(after) > 0)
        << "not a prefix state: " << ::testing::PrintToString(after);
    ASSERT_FALSE(fs.exists(path("lost")));
    seen.insert(after);
    // What the crash kept is now durable: a second crash changes nothing.
    fs.crash();
    ASSERT_EQ(fs.contents(path("a")), after);
  }
  // Without these the knob could be a plain crash (or keep everything).
  EXPECT_TRUE(seen.count(durable) > 0);
  EXPECT_TRUE(seen.count(full) > 0);
  EXPECT_TRUE(seen.count(torn) > 0);
  EXPECT_GE(seen.size(), allowed.size() / 2);
}

// ---- FaultFs only: injected faults. -------------------------------------------

TEST_F(FaultFsTest, FailSyncsInjectsCountsAndKeepsNothing) {
  auto f = durable_file("a", "kept");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fs_.sync_count(), 1u);
  auto g = open_or_fail(fs_, path("b"), OpenMode::create_new);
  ASSERT_NE(g, nullptr);
  ASSERT_OK(f->write_at(4, " lost"));

  fs_.fail_syncs(true);
  for (Status s : {f->sync(), fs_.sync_dir(dir_), fs_.sync_all(dir_)}) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, errc::storage_failure);
    EXPECT_TRUE(starts_with(s.error().message, "injected fault: sync")) << s.error().message;
  }
  EXPECT_EQ(fs_.injected(), 3u);
  EXPECT_EQ(fs_.sync_count(), 1u);
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "kept");
  EXPECT_FALSE(fs_.exists(path("b")));

  fs_.fail_syncs(false);
  auto h = open_or_fail(fs_, path("a"), OpenMode::write);
  ASSERT_NE(h, nullptr);
  ASSERT_OK(h->sync());
  EXPECT_EQ(fs_.injected(), 3u);
  EXPECT_EQ(fs_.sync_count(), 2u);
}

TEST_F(FaultFsTest, FailWritesChangesNothing) {
  auto f = durable_file("a", "abc");
  ASSERT_NE(f, nullptr);
  fs_.fail_writes(true);
  Status s = f->write_at(0, "xyz");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::storage_failure);
  EXPECT_TRUE(starts_with(s.error().message, "injected fault: write")) << s.error().message;
  EXPECT_EQ(fs_.contents(path("a")), "abc");
  EXPECT_EQ(fs_.injected(), 1u);
  fs_.fail_writes(false);
  ASSERT_OK(f->write_at(0, "xyz"));
  EXPECT_EQ(fs_.contents(path("a")), "xyz");
}

TEST_F(FaultFsTest, NoSpaceFailsWritesLikePosix) {
  auto f = durable_file("a", "abc");
  ASSERT_NE(f, nullptr);
  fs_.no_space(true);
  Status s = f->write_at(3, "def");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::insufficient_storage);
  EXPECT_TRUE(starts_with(s.error().message, "no space left on device")) << s.error().message;
  EXPECT_NE(s.error().message.find(path("a")), std::string::npos) << s.error().message;
  EXPECT_EQ(fs_.contents(path("a")), "abc");
  EXPECT_EQ(fs_.injected(), 1u);
  fs_.no_space(false);
  ASSERT_OK(f->write_at(3, "def"));
}

// Joins a thread even when an assertion returns early, so a failing test
// reports instead of calling std::terminate.
struct Joiner {
  FaultFs& fs;
  std::thread& t;
  ~Joiner() {
    fs.pause_syncs(false);
    if (t.joinable()) t.join();
  }
};

TEST_F(FaultFsTest, PausedSyncBlocksUntilResumedWhileOtherOperationsGoOn) {
  auto f = durable_file("a", "abc");
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(3, "def"));
  EXPECT_FALSE(fs_.wait_until_paused(1ms));  // nothing is syncing

  fs_.pause_syncs(true);
  std::atomic<bool> returned{false};
  Status result = ds::Unit{};
  std::thread t([&] {
    result = f->sync();
    returned = true;
  });
  Joiner joiner{fs_, t};
  ASSERT_TRUE(fs_.wait_until_paused(10s));
  EXPECT_FALSE(returned.load());
  EXPECT_EQ(fs_.sync_count(), 1u);  // durable_file's sync only
  // A blocked sync must not hold the file system: other files still work.
  auto g = open_or_fail(fs_, path("b"), OpenMode::create_new);
  ASSERT_NE(g, nullptr);
  ASSERT_OK(g->write_at(0, "meanwhile"));
  EXPECT_EQ(fs_.contents(path("b")), "meanwhile");

  fs_.pause_syncs(false);
  t.join();
  EXPECT_TRUE(returned.load());
  ASSERT_OK(result);
  EXPECT_EQ(fs_.sync_count(), 2u);
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "abcdef");
}

TEST_F(FaultFsTest, FaultSetWhileASyncIsPausedApplies) {
  auto f = durable_file("a", "abc");
  ASSERT_NE(f, nullptr);
  fs_.pause_syncs(true);
  Status result = ds::Unit{};
  std::thread t([&] { result = f->sync(); });
  Joiner joiner{fs_, t};
  ASSERT_TRUE(fs_.wait_until_paused(10s));
  fs_.fail_syncs(true);
  fs_.pause_syncs(false);
  t.join();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(fs_.injected(), 1u);
}

TEST_F(FaultFsTest, ConcurrentWritersAndSyncs) {
  constexpr int kThreads = 4;
  constexpr int kWrites = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto r = fs_.open(path(std::to_string(i) + ".f"), OpenMode::create_new);
      if (!r.ok()) {
        ++failures;
        return;
      }
      File& f = **r;
      for (int w = 0; w < kWrites; ++w) {
        if (!f.write_at(static_cast<uint64_t>(w), "x").ok() || !f.sync().ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(fs_.sync_count(), uint64_t{kThreads * kWrites});
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(fs_.contents(path(std::to_string(i) + ".f")), std::string(kWrites, 'x'));
  }
}

// ---- FaultFs only: test helpers. ---------------------------------------------

TEST_F(FaultFsTest, SetContentsIsDurableAndCreatesDirectories) {
  fs_.set_contents("/elsewhere/deep/f", "preset");
  fs_.crash();
  EXPECT_EQ(fs_.contents("/elsewhere/deep/f"), "preset");
  auto names = fs_.list("/elsewhere/deep");
  ASSERT_OK(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"f"}));
}

TEST_F(FaultFsTest, CorruptFlipsTheByteDurably) {
  fs_.set_contents(path("a"), "abc");
  fs_.corrupt(path("a"), 1, 0x20);
  EXPECT_EQ(fs_.contents(path("a")), "aBc");
  fs_.corrupt(path("a"), 99, 0xff);  // past the end: nothing
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "aBc");
}

TEST_F(FaultFsTest, CorruptOfAnUnsyncedByteStaysConsistentAcrossACrash) {
  auto f = durable_file("a", "abc");
  ASSERT_NE(f, nullptr);
  ASSERT_OK(f->write_at(1, "xy"));
  fs_.corrupt(path("a"), 2, 0x20);
  EXPECT_EQ(fs_.contents(path("a")), "axY");
  ASSERT_OK(f->sync());
  fs_.crash();
  EXPECT_EQ(fs_.contents(path("a")), "axY");
}

}  // namespace
