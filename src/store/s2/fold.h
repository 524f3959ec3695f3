#pragma once
// The S2 engine's record vocabulary and the fold: how the records of one S2
// stream become the state of one Durable Stream. Pure functions, no I/O; every
// node folds the same records in the same order and so reaches the same state
// (docs/s2-mapping.md is the contract).
//
// A checkpoint record carries the whole folded state as of its own seq_num,
// so a node that has never seen a stream starts folding there instead of at
// the incarnation's beginning. Every record dstreamd writes names the latest
// checkpoint in its `k` header, so the last record of a stream leads to it.

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/rules.h"
#include "protocol/stream_state.h"
#include "s2/s2_api.h"
#include "store/stream_store.h"

namespace ds::s2fold {

// Record headers. Every record dstreamd writes carries `ds` = its kind.
inline constexpr std::string_view kKind = "ds";
inline constexpr std::string_view kMeta = "meta";        // an incarnation begins; body = StreamMeta
inline constexpr std::string_view kData = "data";        // body = the append's bytes
inline constexpr std::string_view kClose = "close";      // close without data
inline constexpr std::string_view kGone = "gone";        // deletion; `g` = soft | hard, `h` = hi
inline constexpr std::string_view kRef = "ref";          // fork reference change; `r` = +1 | -1
inline constexpr std::string_view kTouch = "touch";      // sliding-TTL renewal by a read
inline constexpr std::string_view kCheckpoint = "ckpt";  // body = the folded state before it
inline constexpr std::string_view kProducerId = "p";
inline constexpr std::string_view kProducerEpoch = "pe";
inline constexpr std::string_view kProducerSeq = "ps";
inline constexpr std::string_view kStreamSeq = "ss";
inline constexpr std::string_view kCloses = "c";
inline constexpr std::string_view kWriteId = "w";
inline constexpr std::string_view kCheckpointAt = "k";  // seq_num of the latest checkpoint

/// Body bytes S2 accepts in one record after our headers (1 MiB metered per batch).
inline constexpr size_t kMaxRecordBody = size_t{1000} * 1024;
/// The largest record dstreamd writes, metered (body, headers, S2's 8 bytes):
/// bodies are capped above, headers by the HTTP layer's header limit, and
/// checkpoints larger than kMaxRecordBody are not written.
inline constexpr size_t kMaxRecordMetered = kMaxRecordBody + size_t{16} * 1024;

const std::string* find_header(const s2::SequencedRecord& r, std::string_view name);

/// A data record of a stream with retention, as the retention pass needs it.
struct RetainedRecord {
  uint64_t seq = 0;
  int64_t ts = 0;     ///< S2 arrival timestamp (ms)
  uint64_t size = 0;  ///< body bytes
};

/// One stream as a node knows it: the fold of its S2 records below next_seq.
struct FoldState {
  uint64_t next_seq = 0;   ///< S2 seq after the last folded record
  bool exists = false;     ///< a live (or soft-deleted) incarnation
  uint64_t start_seq = 0;  ///< seq of the incarnation's meta record
  uint64_t last_hi = 0;    ///< hi of the latest incarnation ever seen
  bool ever_existed = false;
  StreamMeta meta;  ///< meta.id = hi; meta.tail = (hi, seq after the last data/close)
  ProducerMap producers;
  int64_t last_access_ms = 0;
  // Where the latest checkpoint (or meta record) is, and what came after it.
  uint64_t checkpoint_seq = 0;
  bool has_checkpoint = false;
  uint64_t records_since_checkpoint = 0;
  uint64_t bytes_since_checkpoint = 0;
  // Retention (streams whose config has it): the incarnation's data records
  // at or past meta.earliest, in seq order, complete from `retained_from` on
  // (a fold that started at a checkpoint does not know the ones before it;
  // the retention pass reads them from S2).
  std::deque<RetainedRecord> retained;
  uint64_t retained_from = 0;
  uint64_t retained_bytes = 0;  ///< sum of retained[].size
};

/// The trim point of an S2 `trim` command record, if `r` is one.
std::optional<uint64_t> trim_point(const s2::SequencedRecord& r);

/// What one fold step did, for the live readers and for writers settling an
/// append whose outcome was ambiguous.
struct FoldResult {
  bool changed = false;  ///< data, closure, creation or deletion
  CommitEvent event;     ///< records appended and the state after them
  /// The records skip seqs after next_seq in a live incarnation: S2 trimmed
  /// them (retention) before this fold read them, and they may have changed
  /// its state. Folding stopped before the hole (next_seq did not pass it):
  /// the state must be loaded again from a checkpoint past it.
  bool hole = false;
};

/// Folds records (in seq order) into `state`. Records below next_seq were
/// folded already; a jump forward is a trimmed range, which ends the fold
/// (FoldResult::hole) when the state is a live incarnation's. When `write_ids` is
/// non-empty, the seq_num of every record carrying one of those ids is
/// stored in it.
FoldResult fold(FoldState& state, const std::vector<s2::SequencedRecord>& records,
                std::unordered_map<std::string, uint64_t>* write_ids = nullptr);

/// Starts `state` from a checkpoint record at `seq` (its body).
bool start_from_checkpoint(FoldState& state, uint64_t seq, std::string_view body);

/// `earliest`, when given, replaces meta.earliest in the encoded state.
std::string encode_checkpoint(const FoldState& state, std::optional<Offset> earliest = {});

/// Whether the stream has expired at `now` (Expires-At or sliding TTL).
bool expired(const FoldState& state, int64_t now_ms);

// ---- building records ----

s2::AppendRecord control_record(std::string_view kind);
/// The record of one accepted append (data, or close when it has no body).
s2::AppendRecord append_record(const AppendRequest& req, AppendAccepted& accepted);
s2::AppendRecord checkpoint_record(const FoldState& state, std::optional<Offset> earliest = {});
/// Stamps the batch: `w` on its first record, `k` on every record (command
/// records, which carry exactly one header, excepted).
void stamp(std::vector<s2::AppendRecord>& records, const std::string& write_id,
           uint64_t checkpoint_seq);

}  // namespace ds::s2fold
