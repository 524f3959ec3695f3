#pragma once
// The S2 seam: every exchange dstreamd has with S2 goes through S2Api, so
// tests can wrap it (inject 503s, slow responses, racing writers) or replace
// it. The HTTP implementation is http_s2_api.h; nothing else talks to S2.
//
// The interface follows S2's REST API (../shared/s2-api.md): records are
// (headers, body); appends are atomic batches with optional match_seq_num and
// fencing_token; reads are unary (bounded) or sessions (SSE, following live).
// Calls are asynchronous; callbacks run on the implementation's threads and
// must not block.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ds::s2 {

struct Header {
  std::string name;
  std::string value;
  friend bool operator==(const Header&, const Header&) = default;
};

struct AppendRecord {
  std::vector<Header> headers;
  std::string body;
};

/// A command record (fence, trim) is a record with one header whose name is
/// empty and whose value is the command; its body is the argument.
AppendRecord fence_record(std::string token);
AppendRecord trim_record(uint64_t seq_num);

struct AppendInput {
  std::vector<AppendRecord> records;         ///< 1..1000, at most 1 MiB metered
  std::optional<uint64_t> match_seq_num;     ///< fail unless the tail is exactly this
  std::optional<std::string> fencing_token;  ///< fail unless the stream's token is this
};

struct AppendAck {
  uint64_t start_seq = 0;  ///< seq_num of the first record appended
  uint64_t end_seq = 0;    ///< one past the last record appended
  uint64_t tail_seq = 0;   ///< the stream's tail after the append
};

struct SequencedRecord {
  uint64_t seq_num = 0;
  uint64_t timestamp = 0;
  std::vector<Header> headers;
  std::string body;
  /// A command record (fence, trim): S2 returns them to readers too.
  bool is_command() const { return headers.size() == 1 && headers[0].name.empty(); }
};

struct ReadBatch {
  std::vector<SequencedRecord> records;
  std::optional<uint64_t> tail;  ///< the tail, when S2 reported it
};

struct ReadLimits {
  std::optional<uint64_t> count;   ///< records (unary reads cap at 1000)
  std::optional<uint64_t> bytes;   ///< metered bytes (unary reads cap at 1 MiB)
  std::optional<uint32_t> wait_s;  ///< long-poll at the tail (unary: at most 60)
};

/// One page of a basin's stream names (list_streams).
struct StreamPage {
  /// Ascending byte order. Streams S2 is deleting (`deleted_at` set) are left
  /// out.
  std::vector<std::string> names;
  /// The last name S2 returned, deleted or not: the start_after of the next
  /// page (a page of only deleted streams has no names but still moves on).
  std::string last;
  bool has_more = false;  ///< S2 has names after `last`
};

/// What went wrong, in S2's terms.
struct S2Error {
  enum class Kind {
    not_found,               ///< stream (or basin) does not exist
    already_exists,          ///< create of an existing stream
    seq_num_mismatch,        ///< match_seq_num failed; `tail` = the actual tail
    fencing_token_mismatch,  ///< fencing_token failed; `token` = the current token
    range_not_satisfiable,   ///< read start past the tail; `tail` = the tail
    deletion_pending,        ///< the stream is being deleted
    unavailable,             ///< retryable failures exhausted the retry budget
    ambiguous,               ///< an append may or may not have happened (timeout, 5xx after send)
    rejected,                ///< any other 4xx: a bug or misconfiguration
  };
  Kind kind = Kind::rejected;
  int http_status = 0;
  std::string code;  ///< S2's error code, when it sent one
  std::string message;
  uint64_t tail = 0;
  std::string token;
};

template <class T>
struct S2Result {
  std::optional<T> value;
  std::optional<S2Error> error;
  bool ok() const { return value.has_value(); }
  static S2Result success(T v) { return {std::move(v), std::nullopt}; }
  static S2Result failure(S2Error e) { return {std::nullopt, std::move(e)}; }
};

struct Empty {};

/// A live read session (SSE). Destroying the handle ends it; no callback runs
/// after the destructor returns.
class ReadSession {
 public:
  virtual ~ReadSession() = default;
};

struct SessionHandlers {
  /// Records in order, and/or a new known tail (pings carry only a tail).
  std::function<void(ReadBatch)> on_batch;
  /// The session ended (S2 error, cut connection, or stall). The owner
  /// reopens from the next seq_num it needs; `error` says why.
  std::function<void(S2Error error)> on_end;
};

class S2Api {
 public:
  template <class T>
  using Callback = std::function<void(S2Result<T>)>;

  virtual ~S2Api() = default;

  /// Creates the stream with infinite retention. Already existing is an error
  /// (kind already_exists) the caller may treat as success.
  virtual void create_stream(const std::string& stream, Callback<Empty> done) = 0;
  virtual void delete_stream(const std::string& stream, Callback<Empty> done) = 0;
  /// Never retried blindly: a failure after the request may have reached S2
  /// is reported as `ambiguous`, and the caller re-reads the stream to learn
  /// whether it landed.
  virtual void append(const std::string& stream, AppendInput input, Callback<AppendAck> done) = 0;
  virtual void read(const std::string& stream, uint64_t seq_num, ReadLimits limits,
                    Callback<ReadBatch> done) = 0;
  /// Reads from `tail_offset` records before the tail (saturating at 0): the
  /// newest records of a stream in one request. At the tail (tail_offset 0,
  /// or an empty stream) S2 answers 416 with the tail.
  virtual void read_from_tail(const std::string& stream, uint64_t tail_offset, ReadLimits limits,
                              Callback<ReadBatch> done) = 0;
  virtual void check_tail(const std::string& stream, Callback<uint64_t> done) = 0;
  /// Names in the basin that start with `prefix` and sort after
  /// `start_after` (byte order), at most `limit` (REQUIRES: 1..1000) per page.
  virtual void list_streams(const std::string& prefix, const std::string& start_after,
                            uint64_t limit, Callback<StreamPage> done) = 0;
  /// Follows the stream from seq_num on, live, until the handle is destroyed.
  virtual std::unique_ptr<ReadSession> open_session(const std::string& stream, uint64_t seq_num,
                                                    SessionHandlers handlers) = 0;
};

/// Metered size of a record as S2 counts it toward the 1 MiB batch limit.
inline uint64_t metered_bytes(const AppendRecord& r) {
  uint64_t n = 8 + 2 * r.headers.size() + r.body.size();
  for (const auto& h : r.headers) n += h.name.size() + h.value.size();
  return n;
}

inline constexpr uint64_t kMaxBatchRecords = 1000;
inline constexpr uint64_t kMaxBatchBytes = 1 << 20;
inline constexpr uint64_t kMaxListLimit = 1000;

}  // namespace ds::s2
