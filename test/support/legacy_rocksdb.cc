#include "support/legacy_rocksdb.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <stdexcept>
#include <utility>

#include "store/meta_codec.h"
#include "store/rocksdb/codec.h"

namespace ds::legacy {

std::string encode_meta_v2(const StreamMeta& m) {
  // Version 3 is version 2 with the retention settings and the earliest
  // offset appended; that engine had no retention: six zero bytes.
  std::string v = encode_meta(m);
  v.resize(v.size() - 6);
  v[0] = '\x02';
  return v;
}

std::string encode_meta_v1(const StreamMeta& m) {
  // Version 2 is version 1 with the fork depth, a varint, inserted after the
  // fork reference, i.e. just before the four trailing varints.
  std::string v = encode_meta_v2(m);
  v[0] = '\x01';
  if (!m.fork) return v;
  std::string depth, trailer;
  codec::put_varint(depth, m.fork_depth);
  codec::put_varint(trailer, m.ref_count);
  codec::put_varint(trailer, m.soft_deleted);
  codec::put_varint(trailer, static_cast<uint64_t>(m.created_ms));
  codec::put_varint(trailer, static_cast<uint64_t>(m.last_access_ms));
  v.erase(v.size() - trailer.size() - depth.size(), depth.size());
  return v;
}

std::string json_record(std::initializer_list<std::string_view> messages) {
  std::string out;
  bool first = true;
  for (auto m : messages) {
    if (!first) out += ',';
    out.append(m);
    first = false;
  }
  return out;
}

StreamMeta stream_meta(uint64_t id, std::string path, std::string content_type, int64_t now_ms) {
  StreamMeta m;
  m.id = id;
  m.path = std::move(path);
  m.config.content_type = std::move(content_type);
  m.created_ms = now_ms;
  m.last_access_ms = now_ms;
  return m;
}

StreamMeta fork_meta(uint64_t id, std::string path, const StreamMeta& source, Offset at,
                     uint64_t sub_offset, int64_t now_ms) {
  StreamMeta m = stream_meta(id, std::move(path), source.config.content_type, now_ms);
  m.config = source.config;
  m.fork = ForkRef{source.path, source.id, at, sub_offset};
  m.fork_depth = source.fork_depth + 1;
  m.tail = at;
  return m;
}

LegacyRocksDir::LegacyRocksDir(const std::string& path) : path_(path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(options, path, &raw);
  if (!s.ok()) throw std::runtime_error("cannot open RocksDB at " + path + ": " + s.ToString());
  db_.reset(raw);
}

LegacyRocksDir::~LegacyRocksDir() = default;

void LegacyRocksDir::write(rocksdb::WriteBatch& batch) {
  // Not synced (the engine synced every group): a test closes the database
  // before anything reads the directory, and 50,000 fsyncs would be slow.
  auto s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) throw std::runtime_error("cannot write RocksDB at " + path_ + ": " + s.ToString());
}

StreamMeta LegacyRocksDir::put_stream(StreamMeta meta, const std::vector<std::string>& records,
                                      MetaVersion version) {
  rocksdb::WriteBatch batch;
  meta.tail = meta.fork ? meta.fork->offset : Offset{};
  for (const auto& r : records) {
    batch.Put(rocks::data_key(meta.id, meta.tail.lo), r);
    meta.tail.lo += r.size();
  }
  batch.Put(rocks::meta_key(meta.path),
            version == MetaVersion::v1 ? encode_meta_v1(meta) : encode_meta_v2(meta));
  write(batch);
  return meta;
}

void LegacyRocksDir::put_producer(uint64_t id, std::string_view producer_id,
                                  const ProducerState& state) {
  put_raw(rocks::producer_key(id, producer_id), encode_producer(state));
}

void LegacyRocksDir::put_next_id(uint64_t next) { put_raw(rocks::kNextIdKey, encode_u64(next)); }

void LegacyRocksDir::delete_stream(const StreamMeta& meta) {
  rocksdb::WriteBatch batch;
  batch.Delete(rocks::meta_key(meta.path));
  batch.DeleteRange(rocks::data_prefix(meta.id), rocks::data_prefix(meta.id + 1));
  batch.DeleteRange(rocks::producer_prefix(meta.id), rocks::producer_prefix(meta.id + 1));
  write(batch);
}

void LegacyRocksDir::put_meta(const StreamMeta& meta, MetaVersion version) {
  put_raw(rocks::meta_key(meta.path),
          version == MetaVersion::v1 ? encode_meta_v1(meta) : encode_meta_v2(meta));
}

void LegacyRocksDir::put_record(uint64_t id, uint64_t position, std::string_view bytes) {
  put_raw(rocks::data_key(id, position), bytes);
}

void LegacyRocksDir::put_raw(std::string_view key, std::string_view value) {
  rocksdb::WriteBatch batch;
  batch.Put(rocksdb::Slice(key.data(), key.size()), rocksdb::Slice(value.data(), value.size()));
  write(batch);
}

}  // namespace ds::legacy
