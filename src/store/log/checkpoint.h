#pragma once
// The checkpoint: the whole engine state as of the start of a WAL segment,
// so that a start reads this file and replays only the segments after it.
//
// Written to <data>/checkpoint.tmp, synced, renamed over <data>/checkpoint
// and the directory synced: a crash leaves the old checkpoint or the new
// one, never half of one. The file is a header (magic, version), the body,
// and a CRC32C of everything before it; a checkpoint that fails its checksum
// is refused (the engine never starts on half a state).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/errc.h"
#include "protocol/stream_state.h"
#include "store/log/fs.h"

namespace ds::logstore {

/// Retention by age: the records up to `end` (offset lo) were all appended
/// at or before `last_ms`, and after the previous mark's `last_ms`.
struct AgeMark {
  int64_t first_ms = 0;  ///< the first append this mark covers
  int64_t last_ms = 0;   ///< the last one
  uint64_t end = 0;
  friend bool operator==(const AgeMark&, const AgeMark&) = default;
};

struct CheckpointStream {
  StreamMeta meta;
  std::vector<std::pair<std::string, ProducerState>> producers;
  /// The stream's own bytes in its .dat file: offsets [first own offset,
  /// file_end) (as offset lo values).
  uint64_t file_end = 0;
  /// End offset (lo) of every own record, ascending.
  std::vector<uint64_t> record_ends;
  /// The own bytes after file_end (records still in memory), for streams
  /// too small to have a file yet.
  std::string tail;
  /// Streams with a retention max age: when their records were appended.
  std::vector<AgeMark> marks;
};

struct Checkpoint {
  uint64_t wal_segment = 1;  ///< replay WAL segments from this one on
  uint64_t next_id = 1;      ///< the next stream incarnation id
  std::vector<CheckpointStream> streams;
};

/// Writes `cp` durably as <dir>/checkpoint (via checkpoint.tmp + rename +
/// sync_dir).
Status write_checkpoint(FileSystem& fs, const std::string& dir, const Checkpoint& cp);
/// Reads <dir>/checkpoint; nullopt inside the Result when there is none.
/// errc::storage_failure when it is corrupt (bad magic, version, checksum).
Result<std::optional<Checkpoint>> read_checkpoint(FileSystem& fs, const std::string& dir);

}  // namespace ds::logstore
