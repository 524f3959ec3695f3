#include "store/log/checkpoint.h"

#include <algorithm>

#include "store/log/crc32c.h"
#include "store/log/endian.h"
#include "store/log/format.h"
#include "store/meta_codec.h"

// ---- Checkpoint file -------------------------------------------------------
//
// Notation as in wal.cc (varint = LEB128, string = varint length + bytes).
//
//   8 bytes  magic "DSCKP001"
//   u32 LE   version (1)
//   varint   wal_segment
//   varint   next_id
//   varint   stream_count
//   per stream:
//     string   encode_meta(meta)
//     varint   producer_count
//     per producer: string id, string encode_producer(state)
//     varint   file_end
//     varint   record_count
//     varint   delta  x record_count: record_ends[i] - record_ends[i-1], where
//                     record_ends[-1] is the stream's first own offset (lo):
//                     meta.fork->offset.lo for a fork, 0 otherwise
//     string   tail: the own bytes after file_end (a stream too small for a
//              file of its own keeps them here)
//   u32 LE   mask_crc(crc32c(every byte before it))
//
// Deltas keep a stream of many small records at a byte or two per record.
// They are computed modulo 2^64, so even ends that are not ascending round
// trip exactly (they just take more bytes).

namespace ds::logstore {

namespace {

using codec::put_string;
using codec::put_varint;
using codec::Reader;

constexpr size_t kHeaderSize = 8 + 4;  // magic + version
constexpr size_t kTrailerSize = 4;     // crc

uint64_t first_own_offset(const StreamMeta& m) { return m.fork ? m.fork->offset.lo : 0; }

std::string checkpoint_path(const std::string& dir) { return dir + "/checkpoint"; }

Error corrupt(const std::string& path, const std::string& what) {
  return Error(errc::storage_failure, "checkpoint " + path + " is corrupt: " + what);
}

Error with_context(Error e, const std::string& what) {
  e.message = what + ": " + e.message;
  return e;
}

/// An upper-ish estimate of the encoded size, so the buffer is allocated
/// once even for a million streams.
size_t estimate_size(const Checkpoint& cp) {
  size_t n = kHeaderSize + kTrailerSize + size_t{3} * 10;
  for (const auto& s : cp.streams) {
    n += 96 + s.meta.path.size() + s.meta.config.content_type.size() +
         s.meta.config.expires_at_text.size();
    if (s.meta.fork) n += 48 + s.meta.fork->source_path.size();
    for (const auto& [id, _] : s.producers) n += 32 + id.size();
    n += 3 * s.record_ends.size() + 10 + s.tail.size() + 30 * s.marks.size();
  }
  return n;
}

}  // namespace

Status write_checkpoint(FileSystem& fs, const std::string& dir, const Checkpoint& cp) {
  std::string out;
  out.reserve(estimate_size(cp));
  out += format::kCheckpointMagic;
  le::put32(out, format::kCheckpointVersion);
  put_varint(out, cp.wal_segment);
  put_varint(out, cp.next_id);
  put_varint(out, cp.streams.size());
  for (const auto& s : cp.streams) {
    put_string(out, encode_meta(s.meta));
    put_varint(out, s.producers.size());
    for (const auto& [id, state] : s.producers) {
      put_string(out, id);
      put_string(out, encode_producer(state));
    }
    put_varint(out, s.file_end);
    put_varint(out, s.record_ends.size());
    uint64_t prev = first_own_offset(s.meta);
    for (uint64_t end : s.record_ends) {
      put_varint(out, end - prev);  // unsigned: wraps, and wraps back on read
      prev = end;
    }
    put_string(out, s.tail);
    put_varint(out, s.marks.size());
    for (const AgeMark& m : s.marks) {
      put_varint(out, static_cast<uint64_t>(m.first_ms));
      put_varint(out, static_cast<uint64_t>(m.last_ms));
      put_varint(out, m.end);
    }
  }
  le::put32(out, format::mask_crc(crc32c(out)));

  const std::string tmp = dir + "/checkpoint.tmp";
  const std::string final_path = checkpoint_path(dir);
  {
    auto file = fs.open(tmp, OpenMode::create_new);
    if (!file) return with_context(std::move(file).error(), "creating " + tmp);
    Status s = (*file)->write_at(0, out);
    if (s) s = (*file)->sync();
    if (!s) {
      // Best effort: a leftover tmp is harmless (the next write replaces it)
      // but wastes the space of a whole checkpoint.
      file->reset();
      (void)fs.remove(tmp);
      return with_context(std::move(s).error(), tmp);
    }
  }
  // Only a fully durable tmp is renamed over the old checkpoint, so a crash
  // at any point leaves one whole checkpoint or the other.
  if (auto s = fs.rename(tmp, final_path); !s)
    return with_context(std::move(s).error(), "renaming " + tmp);
  if (auto s = fs.sync_dir(dir); !s) return with_context(std::move(s).error(), dir);
  return Unit{};
}

Result<std::optional<Checkpoint>> read_checkpoint(FileSystem& fs, const std::string& dir) {
  const std::string path = checkpoint_path(dir);
  if (!fs.exists(path)) return std::optional<Checkpoint>{};
  auto file = fs.open(path, OpenMode::read);
  if (!file) {
    if (file.error().code == errc::not_found) return std::optional<Checkpoint>{};
    return with_context(std::move(file).error(), "opening " + path);
  }

  std::string buf;
  {
    constexpr size_t kChunk = 8u << 20;
    if (auto size = (*file)->size(); size) buf.reserve(*size);
    std::string chunk;
    for (;;) {
      if (auto s = (*file)->read_at(buf.size(), kChunk, chunk); !s)
        return with_context(std::move(s).error(), "reading " + path);
      buf += chunk;
      if (chunk.size() < kChunk) break;
    }
  }
  const std::string_view data(buf);

  if (data.size() < kHeaderSize + kTrailerSize)
    return corrupt(path, "truncated (" + std::to_string(data.size()) + " bytes)");
  if (data.substr(0, format::kCheckpointMagic.size()) != format::kCheckpointMagic)
    return corrupt(path, "bad magic");
  const uint32_t version = le::load32(data.data() + format::kCheckpointMagic.size());
  if (const uint32_t v = version;
      v != format::kCheckpointVersion && v != format::kCheckpointVersionNoMarks)
    return Error(errc::storage_failure, "checkpoint " + path + " has unsupported version " +
                                            std::to_string(v) + " (expected " +
                                            std::to_string(format::kCheckpointVersion) + ")");
  const size_t crc_at = data.size() - kTrailerSize;
  if (format::unmask_crc(le::load32(data.data() + crc_at)) != crc32c(data.substr(0, crc_at)))
    return corrupt(path, "checksum mismatch (truncated or damaged; " + std::to_string(data.size()) +
                             " bytes)");

  // The checksum matched, so a malformed body means a bug in the writer, not
  // bit rot; refuse it all the same rather than start on a partial state.
  const std::string_view body = data.substr(kHeaderSize, crc_at - kHeaderSize);
  Reader r(body);
  Checkpoint cp;
  cp.wal_segment = r.varint();
  cp.next_id = r.varint();
  const uint64_t count = r.varint();
  if (!r.ok()) return corrupt(path, "malformed header fields");
  // Each stream, producer and record takes at least one byte: bound every
  // reserve by the body size so a bad count cannot allocate wildly.
  cp.streams.reserve(std::min<uint64_t>(count, body.size()));
  for (uint64_t i = 0; i < count; ++i) {
    CheckpointStream s;
    const std::string meta = r.string();
    if (!r.ok()) return corrupt(path, "stream " + std::to_string(i) + ": truncated metadata");
    auto m = decode_meta(meta);
    if (!m) return corrupt(path, "stream " + std::to_string(i) + ": malformed metadata");
    s.meta = std::move(*m);
    const uint64_t producers = r.varint();
    if (!r.ok() || producers > body.size())
      return corrupt(path, "stream " + std::to_string(i) + ": bad producer count");
    s.producers.reserve(producers);
    for (uint64_t p = 0; p < producers; ++p) {
      std::string id = r.string();
      const std::string state = r.string();
      if (!r.ok()) return corrupt(path, "stream " + std::to_string(i) + ": truncated producer");
      auto ps = decode_producer(state);
      if (!ps) return corrupt(path, "stream " + std::to_string(i) + ": malformed producer");
      s.producers.emplace_back(std::move(id), *ps);
    }
    s.file_end = r.varint();
    const uint64_t records = r.varint();
    if (!r.ok() || records > body.size())
      return corrupt(path, "stream " + std::to_string(i) + ": bad record count");
    s.record_ends.reserve(records);
    uint64_t prev = first_own_offset(s.meta);
    for (uint64_t k = 0; k < records; ++k) {
      prev += r.varint();
      s.record_ends.push_back(prev);
    }
    s.tail = r.string();
    if (!r.ok()) return corrupt(path, "stream " + std::to_string(i) + ": truncated record ends");
    if (version >= format::kCheckpointVersion) {
      const uint64_t marks = r.varint();
      if (!r.ok() || marks > body.size())
        return corrupt(path, "stream " + std::to_string(i) + ": bad age mark count");
      s.marks.resize(marks);
      for (AgeMark& m : s.marks) {
        m.first_ms = r.svarint();
        m.last_ms = r.svarint();
        m.end = r.varint();
      }
      if (!r.ok()) return corrupt(path, "stream " + std::to_string(i) + ": truncated age marks");
    }
    cp.streams.push_back(std::move(s));
  }
  if (!r.done()) return corrupt(path, "trailing bytes after the last stream");
  return std::optional<Checkpoint>(std::move(cp));
}

}  // namespace ds::logstore
