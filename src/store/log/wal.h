#pragma once
// Write-ahead log: entries framed with a CRC32C, in numbered segment files.
//
// The writer appends whole groups (many framed entries in one write) and
// syncs once per group. The reader replays a segment entry by entry and
// stops at the first entry that is short or fails its checksum: a torn
// tail (a crash in the middle of a group write) or corruption. What it
// reports lets recovery cut the segment there.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/errc.h"
#include "protocol/stream_state.h"
#include "store/log/format.h"
#include "store/log/fs.h"

namespace ds::logstore {

// ---- Entries (payload codecs). ------------------------------------------

struct CreateEntry {
  StreamMeta meta;                   ///< as created; tail is after `records`
  std::vector<std::string> records;  ///< initial records (fork prefix, body), in order
};

struct AppendEntry {
  uint64_t id = 0;  ///< the stream's incarnation
  int64_t now_ms = 0;
  std::string bytes;  ///< the record (may be empty: a close-only append)
  bool close = false;
  /// The producer of the append; with `close`, it becomes meta.closed_by.
  std::optional<ProducerTriple> producer;
  /// The producer's new state, when the append changed it.
  std::optional<ProducerState> producer_state;
  std::optional<std::string> stream_seq;
};

struct MetaEntry {
  StreamMeta meta;  ///< replaces the metadata of stream meta.id
};

struct RemoveEntry {
  uint64_t id = 0;
};

/// Appends one framed entry (header + payload) to `out`.
void put_create(std::string& out, const CreateEntry& e);
void put_append(std::string& out, const AppendEntry& e);
void put_meta(std::string& out, const MetaEntry& e);
void put_remove(std::string& out, const RemoveEntry& e);
/// The commit marker that ends a group (an empty payload).
void put_commit(std::string& out);

std::optional<CreateEntry> decode_create(std::string_view payload);
std::optional<AppendEntry> decode_append(std::string_view payload);
std::optional<MetaEntry> decode_meta_entry(std::string_view payload);
std::optional<RemoveEntry> decode_remove(std::string_view payload);

// ---- Segments. -----------------------------------------------------------

/// "<dir>/<seq:016>.wal"
std::string segment_path(const std::string& dir, uint64_t seq);
/// Sequence numbers of the segments in `dir`, ascending (other names ignored).
Result<std::vector<uint64_t>> list_segments(FileSystem& fs, const std::string& dir);

class WalWriter {
 public:
  /// Starts segment `seq` in `dir`: a new file with its header, synced, and
  /// its directory entry synced. With `preallocate`, the file is zero-filled
  /// up to that size before the sync (see preallocate()).
  static Result<std::unique_ptr<WalWriter>> create(FileSystem& fs, const std::string& dir,
                                                   uint64_t seq, uint64_t preallocate = 0);
  /// Continues segment `seq` at `end` (what recovery found valid; anything
  /// after it is truncated first).
  static Result<std::unique_ptr<WalWriter>> reopen(FileSystem& fs, const std::string& dir,
                                                   uint64_t seq, uint64_t end);

  /// Writes framed entries at the end of the segment (not yet durable).
  Status write(std::string_view framed);
  /// Makes everything written durable (fdatasync).
  Status sync();
  /// Writes zeros from the end of what the file holds up to `upto` bytes and
  /// syncs them. Groups written over zeros that are already on disk do not
  /// change the file's size, so their fdatasync flushes data only, without a
  /// journal commit for the new size (a third less time and CPU on ext4 here:
  /// docs/storage-format.md). Recovery reads a tail of zeros as the clean end
  /// of a segment. Nothing depends on it for correctness: a group beyond the
  /// zeros extends the file as before.
  Status preallocate(uint64_t upto);
  /// Cuts the segment back to the end of the last successful write (after
  /// a write failed part way, e.g. for want of space), so nothing of the
  /// failed write is left for a later sync to make durable.
  Status rewind();
  uint64_t seq() const { return seq_; }
  uint64_t size() const { return end_; }
  /// The file's size: size() plus the zeros preallocated beyond it.
  uint64_t allocated() const { return allocated_; }

 private:
  WalWriter(std::unique_ptr<File> file, uint64_t seq, uint64_t end)
      : file_(std::move(file)), seq_(seq), end_(end), allocated_(end) {}
  std::unique_ptr<File> file_;
  uint64_t seq_;
  uint64_t end_;
  uint64_t allocated_;

  Status fill_zeros(uint64_t upto);
};

struct SegmentScan {
  uint64_t valid_end = 0;  ///< end of the last whole, valid entry
  uint64_t file_size = 0;
  /// Where the file's data ends: file_size, or the start of a tail of zeros
  /// (preallocated space, WalWriter::preallocate) right after the last valid
  /// entry. Such a tail is not a stop: it was never written.
  uint64_t data_end = 0;
  uint64_t entries = 0;
  /// Why the scan stopped before data_end (empty when it did not): a short
  /// entry, a checksum mismatch, a bad length or type.
  std::string stopped_because;
  bool clean() const { return valid_end == data_end; }
};

/// Reads segment `seq` from `dir`, calling `on_entry` for every valid entry
/// in order; stops at the first invalid one (see SegmentScan). An error from
/// `on_entry` stops the scan and is returned. A missing or short header is
/// reported as a scan with valid_end 0 and a reason, not as an error.
Result<SegmentScan> scan_segment(
    FileSystem& fs, const std::string& dir, uint64_t seq,
    const std::function<Status(format::EntryType, std::string_view payload)>& on_entry);

}  // namespace ds::logstore
