#include "store/log/wal.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstdio>

#include "store/log/crc32c.h"
#include "store/log/endian.h"
#include "store/meta_codec.h"

// ---- WAL entry payloads ----------------------------------------------------
//
// Notation: varint = LEB128 (codec::put_varint); svarint = a signed value
// cast to u64, then varint (so negatives take 10 bytes); string = varint
// length + bytes (codec::put_string); meta = encode_meta() (versioned, see
// store/meta_codec.cc); producer = encode_producer(). A payload must be
// consumed exactly: a short field or trailing bytes make the entry malformed.
//
//   create (type 1):
//     string  meta          encode_meta(meta)
//     varint  record_count
//     string  record        x record_count, in order
//
//   append (type 2):
//     varint  id
//     svarint now_ms
//     varint  flags         bit 0 close, bit 1 producer, bit 2 producer_state,
//                           bit 3 stream_seq; any other bit set = malformed
//     [bit 1] string producer id, varint epoch, varint seq
//     [bit 2] string encode_producer(producer_state)
//     [bit 3] string stream_seq
//     string  bytes         last, so a reader finds the large field at the end
//
//   meta (type 3):
//     meta                  the whole payload is encode_meta(meta)
//
//   remove (type 4):
//     varint  id
//
// Framing of every entry (format.h): u32 LE payload length, u32 LE
// mask_crc(crc32c(type byte + payload)), u8 type, payload.

namespace ds::logstore {

namespace {

using codec::put_string;
using codec::put_varint;
using codec::Reader;
using format::EntryType;

enum AppendFlags : uint64_t {
  kClose = 1u << 0,
  kProducer = 1u << 1,
  kProducerState = 1u << 2,
  kStreamSeq = 1u << 3,
  kKnownFlags = kClose | kProducer | kProducerState | kStreamSeq,
};

/// Frames the payload `encode` appends to `out`. The header is reserved
/// first and filled in afterwards, so a large payload (an append's bytes) is
/// copied once, straight into the group buffer.
template <class Encode>
void put_framed(std::string& out, EntryType type, Encode&& encode) {
  const size_t start = out.size();
  out.append(format::kEntryHeaderSize, '\0');
  out[start + 8] = static_cast<char>(type);
  encode(out);
  const size_t len = out.size() - start - format::kEntryHeaderSize;
  // The engine bounds bodies well below this; a larger entry would be read
  // back as corruption, so catch the broken invariant in debug builds.
  assert(len <= format::kMaxEntryPayload);
  const uint32_t crc = crc32c(std::string_view(out).substr(start + 8, 1 + len));
  le::store32(&out[start], static_cast<uint32_t>(len));
  le::store32(&out[start + 4], format::mask_crc(crc));
}

bool is_known_type(uint8_t t) {
  return t >= static_cast<uint8_t>(EntryType::create) &&
         t <= static_cast<uint8_t>(EntryType::commit);
}

Error with_context(Error e, const std::string& what) {
  e.message = what + ": " + e.message;
  return e;
}

}  // namespace

// ---- Entries. ----------------------------------------------------------------

void put_create(std::string& out, const CreateEntry& e) {
  put_framed(out, EntryType::create, [&](std::string& o) {
    put_string(o, encode_meta(e.meta));
    put_varint(o, e.records.size());
    for (const auto& r : e.records) put_string(o, r);
  });
}

void put_append(std::string& out, const AppendEntry& e) {
  put_framed(out, EntryType::append, [&](std::string& o) {
    put_varint(o, e.id);
    put_varint(o, static_cast<uint64_t>(e.now_ms));
    uint64_t flags = 0;
    if (e.close) flags |= kClose;
    if (e.producer) flags |= kProducer;
    if (e.producer_state) flags |= kProducerState;
    if (e.stream_seq) flags |= kStreamSeq;
    put_varint(o, flags);
    if (e.producer) {
      put_string(o, e.producer->id);
      put_varint(o, e.producer->epoch);
      put_varint(o, e.producer->seq);
    }
    if (e.producer_state) put_string(o, encode_producer(*e.producer_state));
    if (e.stream_seq) put_string(o, *e.stream_seq);
    put_string(o, e.bytes);
  });
}

void put_meta(std::string& out, const MetaEntry& e) {
  put_framed(out, EntryType::meta, [&](std::string& o) { o += encode_meta(e.meta); });
}

void put_remove(std::string& out, const RemoveEntry& e) {
  put_framed(out, EntryType::remove, [&](std::string& o) { put_varint(o, e.id); });
}

void put_commit(std::string& out) {
  put_framed(out, EntryType::commit, [](std::string&) {});
}

std::optional<CreateEntry> decode_create(std::string_view payload) {
  Reader r(payload);
  CreateEntry e;
  const std::string meta = r.string();
  if (!r.ok()) return std::nullopt;
  auto m = decode_meta(meta);
  if (!m) return std::nullopt;
  e.meta = std::move(*m);
  const uint64_t count = r.varint();
  if (!r.ok()) return std::nullopt;
  // Every record takes at least its length byte: a count beyond the payload
  // size is garbage, and must not drive a huge reserve.
  if (count > payload.size()) return std::nullopt;
  e.records.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    e.records.push_back(r.string());
    if (!r.ok()) return std::nullopt;
  }
  if (!r.done()) return std::nullopt;
  return e;
}

std::optional<AppendEntry> decode_append(std::string_view payload) {
  Reader r(payload);
  AppendEntry e;
  e.id = r.varint();
  e.now_ms = r.svarint();
  const uint64_t flags = r.varint();
  if (!r.ok() || (flags & ~static_cast<uint64_t>(kKnownFlags)) != 0) return std::nullopt;
  e.close = (flags & kClose) != 0;
  if (flags & kProducer) {
    ProducerTriple p;
    p.id = r.string();
    p.epoch = r.varint();
    p.seq = r.varint();
    e.producer = std::move(p);
  }
  if (flags & kProducerState) {
    const std::string ps = r.string();
    if (!r.ok()) return std::nullopt;
    auto state = decode_producer(ps);
    if (!state) return std::nullopt;
    e.producer_state = *state;
  }
  if (flags & kStreamSeq) e.stream_seq = r.string();
  e.bytes = r.string();
  if (!r.ok() || !r.done()) return std::nullopt;
  return e;
}

std::optional<MetaEntry> decode_meta_entry(std::string_view payload) {
  auto m = decode_meta(payload);
  if (!m) return std::nullopt;
  return MetaEntry{std::move(*m)};
}

std::optional<RemoveEntry> decode_remove(std::string_view payload) {
  Reader r(payload);
  RemoveEntry e;
  e.id = r.varint();
  if (!r.ok() || !r.done()) return std::nullopt;
  return e;
}

// ---- Segments. ---------------------------------------------------------------

std::string segment_path(const std::string& dir, uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llu.wal", static_cast<unsigned long long>(seq));
  return dir + "/" + name;
}

Result<std::vector<uint64_t>> list_segments(FileSystem& fs, const std::string& dir) {
  auto names = fs.list(dir);
  if (!names) {
    // No WAL directory yet is a fresh data directory, not a failure.
    if (names.error().code == errc::not_found) return std::vector<uint64_t>{};
    return std::move(names).error();
  }
  constexpr size_t kDigits = 16;
  constexpr std::string_view kSuffix = ".wal";
  std::vector<uint64_t> seqs;
  for (const auto& n : *names) {
    if (n.size() != kDigits + kSuffix.size() || !n.ends_with(kSuffix)) continue;
    const char* first = n.data();
    const char* last = n.data() + kDigits;
    if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) continue;
    uint64_t seq = 0;
    // 16 decimal digits always fit in a u64.
    std::from_chars(first, last, seq);
    seqs.push_back(seq);
  }
  std::sort(seqs.begin(), seqs.end());
  return seqs;
}

Result<std::unique_ptr<WalWriter>> WalWriter::create(FileSystem& fs, const std::string& dir,
                                                     uint64_t seq, uint64_t preallocate) {
  const std::string path = segment_path(dir, seq);
  auto file = fs.open(path, OpenMode::create_new);
  if (!file) return with_context(std::move(file).error(), "creating " + path);
  std::string header(format::kWalMagic);
  le::put64(header, seq);
  if (auto s = (*file)->write_at(0, header); !s) return with_context(std::move(s).error(), path);
  std::unique_ptr<WalWriter> w(new WalWriter(std::move(*file), seq, format::kWalHeaderSize));
  // Zeros ahead are only an optimisation: a disk too full for them is no
  // reason not to begin the segment (its groups extend the file instead).
  if (preallocate > w->end_) (void)w->fill_zeros(preallocate);
  // The header and the directory entry are made durable now, so that a
  // segment recovery finds always has a readable header; entries after it
  // are made durable group by group.
  if (auto s = w->file_->sync(); !s) return with_context(std::move(s).error(), path);
  if (auto s = fs.sync_dir(dir); !s) return with_context(std::move(s).error(), dir);
  return w;
}

Result<std::unique_ptr<WalWriter>> WalWriter::reopen(FileSystem& fs, const std::string& dir,
                                                     uint64_t seq, uint64_t end) {
  const std::string path = segment_path(dir, seq);
  if (end < format::kWalHeaderSize)
    return Error(errc::storage_failure,
                 path + ": cannot continue a segment without a valid header (end " +
                     std::to_string(end) + ")");
  auto file = fs.open(path, OpenMode::write);
  if (!file) return with_context(std::move(file).error(), "opening " + path);
  auto size = (*file)->size();
  if (!size) return with_context(std::move(size).error(), path);
  if (*size < end)
    return Error(errc::storage_failure, path + ": shorter (" + std::to_string(*size) +
                                            " bytes) than its valid end " + std::to_string(end));
  if (*size > end) {
    // Cut the torn or corrupt tail, durably: new entries must never be
    // followed by old garbage that a later scan could mistake for entries.
    if (auto s = (*file)->truncate(end); !s) return with_context(std::move(s).error(), path);
    if (auto s = (*file)->sync(); !s) return with_context(std::move(s).error(), path);
  }
  return std::unique_ptr<WalWriter>(new WalWriter(std::move(*file), seq, end));
}

Status WalWriter::write(std::string_view framed) {
  auto s = file_->write_at(end_, framed);
  // On failure end_ stays put: the next write overwrites whatever part of
  // this one reached the file.
  if (s) {
    end_ += framed.size();
    allocated_ = std::max(allocated_, end_);
  }
  return s;
}

Status WalWriter::sync() { return file_->sync(); }

Status WalWriter::fill_zeros(uint64_t upto) {
  static constexpr size_t kPiece = 64 << 10;
  static const std::string zeros(kPiece, '\0');
  while (allocated_ < upto) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(kPiece, upto - allocated_));
    // A failure part way leaves zeros the next write overwrites; allocated_
    // counts only what was written whole.
    if (auto s = file_->write_at(allocated_, std::string_view(zeros).substr(0, n)); !s) return s;
    allocated_ += n;
  }
  return Unit{};
}

Status WalWriter::preallocate(uint64_t upto) {
  if (upto <= allocated_) return Unit{};
  if (auto s = fill_zeros(upto); !s) return s;
  return file_->sync();
}

Status WalWriter::rewind() {
  auto s = file_->truncate(end_);
  if (s) allocated_ = end_;
  return s;
}

Result<SegmentScan> scan_segment(
    FileSystem& fs, const std::string& dir, uint64_t seq,
    const std::function<Status(format::EntryType, std::string_view payload)>& on_entry) {
  const std::string path = segment_path(dir, seq);
  SegmentScan scan;
  auto file = fs.open(path, OpenMode::read);
  if (!file) {
    // A segment whose directory entry was never made durable: nothing in it.
    if (file.error().code == errc::not_found) {
      scan.stopped_because = "missing segment file " + path;
      return scan;
    }
    return with_context(std::move(file).error(), "opening " + path);
  }

  // Segments are ~64 MiB: read the whole file, in chunks so no single read
  // is unbounded.
  constexpr size_t kChunk = 8u << 20;
  std::string buf;
  if (auto size = (*file)->size(); size) buf.reserve(*size);
  std::string chunk;
  for (;;) {
    if (auto s = (*file)->read_at(buf.size(), kChunk, chunk); !s)
      return with_context(std::move(s).error(), "reading " + path);
    buf += chunk;
    if (chunk.size() < kChunk) break;
  }
  scan.file_size = buf.size();
  scan.data_end = scan.file_size;
  const std::string_view data(buf);

  if (data.size() < format::kWalHeaderSize) {
    scan.stopped_because = "short segment header (" + std::to_string(data.size()) + " of " +
                           std::to_string(format::kWalHeaderSize) + " bytes)";
    return scan;
  }
  if (data.substr(0, format::kWalMagic.size()) != format::kWalMagic) {
    scan.stopped_because = "bad segment magic at byte 0";
    return scan;
  }
  if (const uint64_t hs = le::load64(data.data() + format::kWalMagic.size()); hs != seq) {
    scan.stopped_because =
        "segment header names sequence " + std::to_string(hs) + ", file is " + std::to_string(seq);
    return scan;
  }

  uint64_t pos = format::kWalHeaderSize;
  scan.valid_end = pos;
  while (pos < data.size()) {
    const uint64_t left = data.size() - pos;
    const auto at = [&] { return " at byte " + std::to_string(pos); };
    if (left < format::kEntryHeaderSize) {
      scan.stopped_because = "short entry header (" + std::to_string(left) + " of " +
                             std::to_string(format::kEntryHeaderSize) + " bytes)" + at();
      break;
    }
    const char* h = data.data() + pos;
    const uint32_t len = le::load32(h);
    if (len > format::kMaxEntryPayload) {
      scan.stopped_because = "entry length " + std::to_string(len) + " over the maximum" + at();
      break;
    }
    if (left - format::kEntryHeaderSize < len) {
      scan.stopped_because = "short entry payload (" +
                             std::to_string(left - format::kEntryHeaderSize) + " of " +
                             std::to_string(len) + " bytes)" + at();
      break;
    }
    const uint32_t stored = format::unmask_crc(le::load32(h + 4));
    const uint32_t actual = crc32c(data.substr(pos + 8, 1 + len));
    if (stored != actual) {
      scan.stopped_because = "entry checksum mismatch" + at();
      break;
    }
    const auto type = static_cast<uint8_t>(h[8]);
    if (!is_known_type(type)) {
      scan.stopped_because = "unknown entry type " + std::to_string(type) + at();
      break;
    }
    if (auto s = on_entry(static_cast<EntryType>(type),
                          data.substr(pos + format::kEntryHeaderSize, len));
        !s)
      return std::move(s).error();
    ++scan.entries;
    pos += format::kEntryHeaderSize + len;
    scan.valid_end = pos;
  }
  // A stop at zeros that run to the end of the file is preallocated space
  // (or a group none of whose bytes reached the disk): the segment's data
  // ends there, cleanly. No valid entry begins with zeros (its checksum
  // covers its type, and no type is 0), so nothing written is taken for it.
  if (!scan.stopped_because.empty()) {
    const std::string_view tail = data.substr(scan.valid_end);
    if (std::all_of(tail.begin(), tail.end(), [](char c) { return c == 0; })) {
      scan.data_end = scan.valid_end;
      scan.stopped_because.clear();
    }
  }
  return scan;
}

}  // namespace ds::logstore
