#include "support/fault_fs.h"

#include <algorithm>
#include <utility>

namespace ds::logstore::testing {

namespace {
Error power_is_off(const char* op, const std::string& path) {
  return Error(errc::storage_failure, std::string(op) + " " + path + ": the power is off");
}
}  // namespace

namespace {

// Resizing a std::string to a wild offset would throw (or eat the machine);
// no test needs files this large.
constexpr uint64_t kMaxFileSize = uint64_t{1} << 30;

std::string strip_trailing_slashes(std::string dir) {
  while (!dir.empty() && dir.back() == '/') dir.pop_back();
  return dir;
}

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// One unsynced change of a file's contents, kept so that a crash can replay
// any prefix of them over the durable contents.
struct Op {
  bool truncate = false;
  uint64_t offset = 0;  ///< where a write starts, or the size a truncate sets
  std::string bytes;    ///< a write's data

  void apply(std::string& s) const { apply_prefix(s, bytes.size()); }
  /// Applies the op with only the first `n` bytes of a write (a torn write).
  void apply_prefix(std::string& s, size_t n) const {
    if (truncate) {
      s.resize(offset);
      return;
    }
    if (n == 0) return;  // like pwrite(2), an empty write does not extend
    if (offset + n > s.size()) s.resize(offset + n);  // zero-fills a gap
    s.replace(offset, n, bytes, 0, n);
  }
};

}  // namespace

struct FaultFs::Node {
  std::string current;
  std::string durable;
  std::vector<Op> unsynced;  ///< since the last sync; durable + these == current

  void change(Op op) {
    op.apply(current);
    unsynced.push_back(std::move(op));
  }
  void make_durable() {
    durable = current;
    unsynced.clear();
  }
};

// A handle on a node. It names the node, not the path, so that it keeps
// working after a rename or remove, as a POSIX descriptor does.
class FaultFile final : public File {
 public:
  FaultFile(FaultFs* fs, FaultFs::NodePtr node, std::string path, bool writable, uint64_t gen)
      : fs_(fs), node_(std::move(node)), path_(std::move(path)), writable_(writable), gen_(gen) {}

  Status write_at(uint64_t offset, std::string_view data) override {
    std::lock_guard lk(fs_->mu_);
    if (Status s = check_locked("write", true); !s.ok()) return s;
    if (fs_->fail_writes_) return fs_->inject_locked("injected fault: write " + path_);
    if (fs_->no_space_) {
      ++fs_->injected_;
      return Error(errc::insufficient_storage, "no space left on device: write " + path_);
    }
    if (offset > kMaxFileSize || data.size() > kMaxFileSize - offset) {
      return Error(errc::storage_failure, "write " + path_ + ": past FaultFs's size limit");
    }
    node_->change(Op{false, offset, std::string(data)});
    return Unit{};
  }

  Status read_at(uint64_t offset, size_t n, std::string& out) const override {
    std::lock_guard lk(fs_->mu_);
    out.clear();
    if (Status s = check_locked("read", false); !s.ok()) return s;
    const std::string& c = node_->current;
    if (offset < c.size()) out.assign(c, offset, n);
    return Unit{};
  }

  Status sync() override {
    std::unique_lock lk(fs_->mu_);
    if (fs_->paused_) {
      ++fs_->blocked_syncs_;
      fs_->paused_cv_.notify_all();
      fs_->paused_cv_.wait(lk, [&] { return !fs_->paused_; });
      --fs_->blocked_syncs_;
    }
    // Checked after the pause: a test may crash or fail syncs while one is
    // blocked and expect it to see that.
    if (Status s = check_locked("sync", false); !s.ok()) return s;
    if (fs_->fail_syncs_) return fs_->inject_locked("injected fault: sync " + path_);
    node_->make_durable();
    ++fs_->sync_count_;
    return Unit{};
  }

  Result<uint64_t> size() const override {
    std::lock_guard lk(fs_->mu_);
    if (Status s = check_locked("size", false); !s.ok()) return s.error();
    return static_cast<uint64_t>(node_->current.size());
  }

  Status truncate(uint64_t size) override {
    std::lock_guard lk(fs_->mu_);
    if (Status s = check_locked("truncate", true); !s.ok()) return s;
    if (size > kMaxFileSize) {
      return Error(errc::storage_failure, "truncate " + path_ + ": past FaultFs's size limit");
    }
    node_->change(Op{true, size, {}});
    return Unit{};
  }

 private:
  Status check_locked(const char* op, bool writes) const {
    if (fs_->down_) return power_is_off(op, path_);
    if (gen_ != fs_->generation_) {
      return Error(errc::storage_failure,
                   std::string(op) + " " + path_ + ": file was open before a crash");
    }
    if (writes && !writable_) {
      return Error(errc::storage_failure, std::string(op) + " " + path_ + ": opened read only");
    }
    return Unit{};
  }

  FaultFs* fs_;
  FaultFs::NodePtr node_;
  std::string path_;
  bool writable_;
  uint64_t gen_;
};

FaultFs::FaultFs() = default;
FaultFs::~FaultFs() = default;

Status FaultFs::inject_locked(std::string message) {
  ++injected_;
  return Error(errc::storage_failure, std::move(message));
}

bool FaultFs::dir_exists_locked(const std::string& dir) const {
  return dir.empty() || dirs_.count(dir) > 0;
}

Result<std::unique_ptr<File>> FaultFs::open(const std::string& path, OpenMode mode) {
  std::lock_guard lk(mu_);
  if (down_) return power_is_off("open", path);
  if (dirs_.count(strip_trailing_slashes(path)) > 0) {
    return Error(errc::storage_failure, "open " + path + ": is a directory");
  }
  auto it = files_.find(path);
  NodePtr node;
  if (it != files_.end()) {
    node = it->second;
    // O_TRUNC keeps the inode; like any change of contents it is durable
    // only after a sync.
    if (mode == OpenMode::create_new && !node->current.empty()) node->change(Op{true, 0, {}});
  } else if (mode == OpenMode::read) {
    return Error(errc::not_found, "open " + path + ": no such file");
  } else if (!dir_exists_locked(parent_of(path))) {
    return Error(errc::storage_failure, "open " + path + ": no such directory");
  } else {
    node = std::make_shared<Node>();
    files_.emplace(path, node);
  }
  bool writable = mode != OpenMode::read;
  return std::unique_ptr<File>(
      std::make_unique<FaultFile>(this, node, path, writable, generation_));
}

bool FaultFs::exists(const std::string& path) {
  std::lock_guard lk(mu_);
  if (down_) return false;
  return files_.count(path) > 0 || dirs_.count(strip_trailing_slashes(path)) > 0;
}

Result<std::vector<std::string>> FaultFs::list(const std::string& dir_arg) {
  std::string dir = strip_trailing_slashes(dir_arg);
  std::lock_guard lk(mu_);
  if (down_) return power_is_off("list", dir_arg);
  if (!dir_exists_locked(dir)) {
    return Error(errc::not_found, "list " + dir_arg + ": no such directory");
  }
  std::vector<std::string> names;
  for (const auto& [path, node] : files_) {
    if (parent_of(path) == dir) names.push_back(name_of(path));
  }
  for (const std::string& d : dirs_) {
    if (parent_of(d) == dir) names.push_back(name_of(d));
  }
  std::sort(names.begin(), names.end());  // as posix_fs() returns them
  return names;
}

Status FaultFs::make_dirs(const std::string& dir_arg) {
  std::string dir = strip_trailing_slashes(dir_arg);
  std::lock_guard lk(mu_);
  if (down_) return power_is_off("mkdir", dir_arg);
  // Check every prefix first so that a failure creates nothing.
  std::vector<std::string> prefixes;
  for (size_t pos = dir.find('/', 1); pos != std::string::npos; pos = dir.find('/', pos + 1)) {
    prefixes.push_back(dir.substr(0, pos));
  }
  if (!dir.empty()) prefixes.push_back(dir);
  for (const std::string& p : prefixes) {
    if (files_.count(p) > 0)
      return Error(errc::storage_failure, "mkdir " + p + ": not a directory");
  }
  dirs_.insert(prefixes.begin(), prefixes.end());
  return Unit{};
}

Status FaultFs::rename(const std::string& from, const std::string& to) {
  std::lock_guard lk(mu_);
  if (down_) return power_is_off("rename", from);
  std::string what = "rename " + from + " to " + to;
  auto it = files_.find(from);
  if (it == files_.end()) return Error(errc::storage_failure, what + ": no such file");
  if (dirs_.count(strip_trailing_slashes(to)) > 0) {
    return Error(errc::storage_failure, what + ": target is a directory");
  }
  if (!dir_exists_locked(parent_of(to))) {
    return Error(errc::storage_failure, what + ": no such directory");
  }
  if (from == to) return Unit{};
  NodePtr node = it->second;
  files_.erase(it);
  files_[to] = std::move(node);
  return Unit{};
}

Status FaultFs::remove(const std::string& path) {
  std::lock_guard lk(mu_);
  if (down_) return power_is_off("remove", path);
  if (dirs_.count(strip_trailing_slashes(path)) > 0) {
    return Error(errc::storage_failure, "remove " + path + ": is a directory");
  }
  files_.erase(path);
  return Unit{};
}

Status FaultFs::sync_dir(const std::string& dir_arg) {
  std::string dir = strip_trailing_slashes(dir_arg);
  std::lock_guard lk(mu_);
  if (down_) return power_is_off("sync directory", dir_arg);
  if (!dir_exists_locked(dir)) {
    return Error(errc::storage_failure, "sync directory " + dir_arg + ": no such directory");
  }
  if (fail_syncs_) return inject_locked("injected fault: sync directory " + dir_arg);
  // The durable entries of this directory become exactly the current ones;
  // other directories' entries keep their durable state.
  std::erase_if(durable_files_, [&](const auto& e) { return parent_of(e.first) == dir; });
  for (const auto& [path, node] : files_) {
    if (parent_of(path) == dir) durable_files_[path] = node;
  }
  return Unit{};
}

Status FaultFs::sync_all(const std::string& any_path) {
  std::lock_guard lk(mu_);
  if (down_) return power_is_off("sync all", any_path);
  if (files_.count(any_path) == 0 && !dir_exists_locked(strip_trailing_slashes(any_path))) {
    return Error(errc::storage_failure, "sync all " + any_path + ": no such file");
  }
  if (fail_syncs_) return inject_locked("injected fault: sync all " + any_path);
  for (const auto& [path, node] : files_) node->make_durable();
  durable_files_ = files_;
  return Unit{};
}

void FaultFs::crash() {
  std::lock_guard lk(mu_);
  crash_locked(nullptr);
}

void FaultFs::crash_keeping_random_prefix(std::mt19937_64& rng) {
  std::lock_guard lk(mu_);
  crash_locked(&rng);
}

void FaultFs::power_off(std::mt19937_64& rng) {
  std::lock_guard lk(mu_);
  crash_locked(&rng);
  down_ = true;
}

void FaultFs::power_on() {
  std::lock_guard lk(mu_);
  down_ = false;
}

void FaultFs::crash_locked(std::mt19937_64* rng) {
  ++generation_;
  // A node may be durable under two names (a rename across directories of
  // which only the target's was synced): settle each node once.
  std::set<const Node*> done;
  for (const auto& [path, node] : durable_files_) {
    if (!done.insert(node.get()).second) continue;
    std::string kept = node->durable;
    if (rng != nullptr && !node->unsynced.empty()) {
      // Iterating the map in path order keeps the outcome a function of the seed.
      const auto& ops = node->unsynced;
      size_t n = std::uniform_int_distribution<size_t>(0, ops.size())(*rng);
      for (size_t i = 0; i < n; ++i) {
        size_t len = ops[i].bytes.size();
        if (i + 1 == n) len = std::uniform_int_distribution<size_t>(0, len)(*rng);
        ops[i].apply_prefix(kept, len);
      }
    }
    node->current = kept;
    node->durable = std::move(kept);
    node->unsynced.clear();
  }
  files_ = durable_files_;
}

void FaultFs::fail_syncs(bool on) { fail_syncs_ = on; }
void FaultFs::fail_writes(bool on) { fail_writes_ = on; }
void FaultFs::no_space(bool on) { no_space_ = on; }

void FaultFs::pause_syncs(bool on) {
  std::lock_guard lk(mu_);
  paused_ = on;
  paused_cv_.notify_all();
}

bool FaultFs::wait_until_paused(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  return paused_cv_.wait_for(lk, timeout, [&] { return blocked_syncs_ > 0; });
}

std::string FaultFs::contents(const std::string& path) const {
  std::lock_guard lk(mu_);
  auto it = files_.find(path);
  return it == files_.end() ? std::string() : it->second->current;
}

void FaultFs::corrupt(const std::string& path, uint64_t offset, uint8_t mask) {
  std::lock_guard lk(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return;
  Node& node = *it->second;
  auto flip = [&](std::string& s, uint64_t at) {
    if (at < s.size()) s[at] = static_cast<char>(static_cast<uint8_t>(s[at]) ^ mask);
  };
  flip(node.current, offset);
  flip(node.durable, offset);
  // Flip the byte in the pending writes that cover it too, so that replaying
  // them over the durable contents still gives the (corrupted) current ones.
  for (Op& op : node.unsynced) {
    if (!op.truncate && offset >= op.offset) flip(op.bytes, offset - op.offset);
  }
}

void FaultFs::set_contents(const std::string& path, std::string_view bytes) {
  std::string dir = parent_of(path);
  if (!dir.empty()) (void)make_dirs(dir);
  std::lock_guard lk(mu_);
  NodePtr& node = files_[path];
  // Rewrite an existing node in place so that Files open on it see the bytes.
  if (!node) node = std::make_shared<Node>();
  node->current = std::string(bytes);
  node->make_durable();
  durable_files_[path] = node;
}

}  // namespace ds::logstore::testing
