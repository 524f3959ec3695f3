#include "store/log/rocksdb_import.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "store/meta_codec.h"

namespace ds::logstore {
namespace {

// The RocksDB engine's key layout (store/rocksdb/codec.h), spelled out here
// rather than linked: this reader has to keep working once the RocksDB engine
// and its sources are gone (they are). The tests write their databases
// with test/support/legacy_rocksdb.h, which documents the same layout.
//   'M' path                   -> StreamMeta
//   'P' id(8, BE) producer_id  -> ProducerState
//   'D' id(8, BE) begin(8, BE) -> record bytes
//   'N'                        -> next stream id
constexpr std::string_view kMetaPrefix = "M";
constexpr std::string_view kNextIdKey = "N";
constexpr size_t kIdKeySize = 1 + 8;        // 'P' or 'D' and the id
constexpr size_t kDataKeySize = 1 + 8 + 8;  // ... and the record's begin

std::string id_prefix(char tag, uint64_t id) { return std::string(1, tag) + encode_u64(id); }

// Advice shared by every failure: the directory is only ever read, so saying
// so tells the operator that nothing was lost by the failed attempt.
constexpr const char* kUntouched = " The directory was not changed.";

Error in_use(const std::string& dir, const std::string& why) {
  return Error(errc::storage_failure,
               "cannot migrate the RocksDB data directory " + dir +
                   ": it is in use by another process (" + why +
                   "). Stop the dstreamd running on it, then start this one again." + kUntouched);
}

Error unopenable(const std::string& dir, const std::string& why) {
  return Error(errc::storage_failure,
               "cannot migrate the RocksDB data directory " + dir + ": cannot open it (" + why +
                   "). If it is damaged, start the previous dstreamd release on it once (it "
                   "recovers its database) or restore it from a backup, then start this one "
                   "again." +
                   kUntouched);
}

Error corrupt(const std::string& dir, const std::string& what) {
  return Error(errc::storage_failure,
               "cannot migrate the RocksDB data directory " + dir + ": " + what +
                   ". Restore the directory from a backup, or run the previous dstreamd release "
                   "on it to copy its streams out." +
                   kUntouched);
}

/// Holds the database's LOCK file. RocksDB documents read-only opening of a
/// database another instance has open for writing as undefined behaviour,
/// and takes no lock itself when opening read-only; taking the lock the
/// writer takes turns that case into a clear error. The Env's lock is a
/// non-blocking fcntl lock plus an in-process registry, so a dstreamd in
/// another process and a store open in this one are both detected at once.
class DbLock {
 public:
  DbLock() = default;
  DbLock(const DbLock&) = delete;
  DbLock& operator=(const DbLock&) = delete;
  ~DbLock() {
    if (lock_) env_->UnlockFile(lock_).PermitUncheckedError();
  }

  rocksdb::Status acquire(const std::string& dir) {
    const std::string file = dir + "/LOCK";
    // RocksDB creates LOCK whenever it opens a database for writing, so a
    // database without one is not open anywhere; locking would create it.
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return rocksdb::Status::OK();
    return env_->LockFile(file, &lock_);
  }

 private:
  rocksdb::Env* env_ = rocksdb::Env::Default();
  rocksdb::FileLock* lock_ = nullptr;
};

/// Fork depths as the RocksDB engine derives them when it loads (version-1
/// metadata decodes every fork as depth 1). `metas` is in ascending id order,
/// and a fork's source always has a smaller id, so each source's depth is
/// known before its forks are reached: one pass, no recursion however deep
/// a chain written before the depth limit is.
void derive_fork_depths(std::vector<StreamMeta>& metas) {
  std::unordered_map<std::string_view, uint64_t> id_by_path;
  std::unordered_map<uint64_t, uint64_t> depth_by_id;
  for (const auto& m : metas) id_by_path.emplace(m.path, m.id);
  for (auto& m : metas) {
    if (!m.fork) {
      m.fork_depth = 0;
    } else if (auto src = id_by_path.find(m.fork->source_path); src != id_by_path.end() &&
                                                                src->second == m.fork->source_id &&
                                                                m.fork->source_id < m.id) {
      m.fork_depth = depth_by_id.at(src->second) + 1;
    }
    // Otherwise a broken chain: keep what was stored, as the engine does.
    depth_by_id.emplace(m.id, m.fork_depth);
  }
}

rocksdb::ReadOptions scan_options() {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // every block is read once
  ro.verify_checksums = true;
  return ro;
}

}  // namespace

bool is_rocksdb_dir(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(std::filesystem::path(dir) / "CURRENT", ec);
}

Result<ImportSummary> import_rocksdb(const std::string& dir,
                                     const std::function<Status(ImportedStream&&)>& on_stream) {
  if (!is_rocksdb_dir(dir)) return unopenable(dir, "it holds no RocksDB database: no CURRENT file");

  DbLock lock;
  if (auto s = lock.acquire(dir); !s.ok()) return in_use(dir, s.ToString());

  rocksdb::Options options;
  options.create_if_missing = false;
  rocksdb::DB* raw = nullptr;
  if (auto s = rocksdb::DB::OpenForReadOnly(options, dir, &raw); !s.ok())
    return unopenable(dir, s.ToString());
  const std::unique_ptr<rocksdb::DB> db(raw);

  // Metadata first (small: one value per stream), so that streams can be
  // delivered in id order; their records are read one stream at a time.
  ImportSummary summary;
  std::vector<StreamMeta> metas;
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(scan_options()));
    for (it->Seek(rocksdb::Slice(kMetaPrefix.data(), kMetaPrefix.size()));
         it->Valid() && it->key().starts_with(rocksdb::Slice(kMetaPrefix.data(), 1)); it->Next()) {
      const auto key = it->key().ToStringView();
      const auto path = key.substr(1);
      auto meta = decode_meta(it->value().ToStringView());
      if (!meta) return corrupt(dir, "undecodable metadata of stream " + std::string(path));
      // The engine indexes streams by the path in the value; a value under
      // another stream's key would make two streams out of one.
      if (meta->path != path)
        return corrupt(dir, "the metadata of stream " + std::string(path) + " names " + meta->path);
      summary.next_id = std::max(summary.next_id, meta->id + 1);
      metas.push_back(std::move(*meta));
    }
    if (!it->status().ok()) return corrupt(dir, "cannot read metadata: " + it->status().ToString());
  }
  // Stable: duplicate ids (corruption, refused below) are reported in key order.
  std::stable_sort(metas.begin(), metas.end(),
                   [](const StreamMeta& a, const StreamMeta& b) { return a.id < b.id; });
  for (size_t i = 1; i < metas.size(); ++i) {
    // Records and producer state are keyed by id: two streams with one id
    // could not be told apart.
    if (metas[i].id == metas[i - 1].id)
      return corrupt(dir, "streams " + metas[i - 1].path + " and " + metas[i].path +
                              " have the same id " + std::to_string(metas[i].id));
  }
  derive_fork_depths(metas);

  {
    std::string next;
    auto s = db->Get(scan_options(), rocksdb::Slice(kNextIdKey.data(), kNextIdKey.size()), &next);
    if (s.ok()) {
      auto v = decode_u64(next);
      if (!v) return corrupt(dir, "undecodable next stream id");
      summary.next_id = std::max(summary.next_id, *v);
    } else if (!s.IsNotFound()) {
      return corrupt(dir, "cannot read the next stream id: " + s.ToString());
    }
  }

  // Producer and data keys are read per stream, in its own key range: keys
  // of a stream that no longer has metadata (hard deleted) are never reached,
  // as the engine's load() skips them.
  for (auto& meta : metas) {
    ImportedStream stream;
    const std::string& path = meta.path;

    const std::string pprefix = id_prefix('P', meta.id);
    const std::string pend = id_prefix('P', meta.id + 1);
    {
      auto ro = scan_options();
      const rocksdb::Slice upper(pend);
      ro.iterate_upper_bound = &upper;
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
      for (it->Seek(pprefix); it->Valid(); it->Next()) {
        const auto key = it->key().ToStringView();
        auto p = decode_producer(it->value().ToStringView());
        // The engine's load() drops an undecodable producer; dropping it here
        // would lose the producer's deduplication for good, so refuse.
        if (!p) {
          return corrupt(dir, "undecodable state of producer " +
                                  std::string(key.substr(kIdKeySize)) + " of stream " + path);
        }
        stream.producers.emplace(std::string(key.substr(kIdKeySize)), *p);
      }
      if (!it->status().ok())
        return corrupt(dir, "cannot read stream " + path + ": " + it->status().ToString());
    }

    const std::string dprefix = id_prefix('D', meta.id);
    const std::string dend = id_prefix('D', meta.id + 1);
    const uint64_t first = meta.fork ? meta.fork->offset.lo : 0;
    uint64_t at = first;
    {
      auto ro = scan_options();
      const rocksdb::Slice upper(dend);
      ro.iterate_upper_bound = &upper;
      ro.readahead_size = 2 << 20;  // a stream's records are one sequential key range
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
      for (it->Seek(dprefix); it->Valid(); it->Next()) {
        const auto key = it->key().ToStringView();
        if (key.size() != kDataKeySize)
          return corrupt(dir, "a malformed record key in stream " + path);
        const uint64_t begin = decode_u64(key.substr(kIdKeySize)).value_or(0);
        const auto value = it->value().ToStringView();
        // Offsets are byte positions, so the records must tile
        // [first, tail) exactly: anything else would serve other bytes at
        // an offset than the previous release did.
        if (begin != at) {
          return corrupt(dir, "stream " + path + " has " +
                                  (begin > at ? "a gap" : "overlapping records") + " at offset " +
                                  std::to_string(at) + " (next record at " + std::to_string(begin) +
                                  ")");
        }
        at += value.size();
        if (at > meta.tail.lo) {
          return corrupt(dir, "stream " + path + " has records beyond its tail " +
                                  std::to_string(meta.tail.lo));
        }
        summary.bytes += value.size();
        stream.records.emplace_back(value);
      }
      if (!it->status().ok())
        return corrupt(dir, "cannot read stream " + path + ": " + it->status().ToString());
    }
    if (at != meta.tail.lo) {
      return corrupt(dir, "stream " + path + " ends at offset " + std::to_string(at) +
                              " but its tail is " + std::to_string(meta.tail.lo));
    }

    summary.records += stream.records.size();
    ++summary.streams;
    stream.meta = std::move(meta);
    if (auto st = on_stream(std::move(stream)); !st) return std::move(st).error();
  }
  return summary;
}

}  // namespace ds::logstore
