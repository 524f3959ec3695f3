#pragma once
// The storage engine boundary. Every engine (embedded log, S2) implements
// StreamStore; nothing above this header knows which one it talks to.
//
// The interface is asynchronous and Asio-free: each call takes a completion
// callback that the engine invokes exactly once, on one of its own threads.
// Callers must not block in callbacks; the HTTP layer posts them back to the
// connection's executor.
//
// Thread safety: all methods may be called from any thread concurrently.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/errc.h"
#include "protocol/rules.h"
#include "protocol/stream_state.h"

namespace ds {

/// Where a record's bytes lie in a file, so a response can send them with
/// sendfile(2) instead of copying them through user space. `fd` stays open
/// while `owner` lives.
struct FileSlice {
  int fd = -1;
  uint64_t position = 0;  ///< of the record's first byte in the file
  std::shared_ptr<const void> owner;
};

/// One stored append (or the readable part of one): bytes in [begin, end).
/// For JSON streams the bytes are the messages joined by ','.
///
/// The bytes are either in memory (`bytes`) or, only for reads that asked
/// for it (ReadRequest::file_slices), in a file (`file`, with `bytes`
/// empty). size() is right for both.
struct Record {
  Offset begin;
  Offset end;
  std::string bytes;
  FileSlice file;

  bool in_file() const { return file.fd >= 0; }
  size_t size() const { return in_file() ? static_cast<size_t>(end.lo - begin.lo) : bytes.size(); }
};
using RecordPtr = std::shared_ptr<const Record>;

struct CreateOutcome {
  bool created = false;  ///< false: an identical stream already existed
  StreamMeta meta;
};

struct AppendOutcome {
  enum class Kind { appended, duplicate, already_closed };
  Kind kind = Kind::appended;
  Offset tail;
  bool closed = false;
  std::optional<uint64_t> producer_epoch;
  std::optional<uint64_t> producer_seq;
};

struct ReadRequest {
  std::string path;
  OffsetSpec from;
  size_t max_bytes = 1 << 20;  ///< soft cap: at least one record is returned
  /// A long-poll or SSE read, which waits for what it does not find. An
  /// engine may then trust state its live watch of the stream keeps current
  /// instead of confirming the tail upstream (S2: no check_tail per reader).
  bool live = false;
  /// The caller can send records that are file slices (Record::in_file):
  /// an engine whose data is in files may then return them instead of
  /// reading the bytes into memory. Only for responses written straight to
  /// a socket (a catch-up GET), never for SSE or the live hub. A file slice
  /// of a byte stream may then span several whole appends (records are
  /// otherwise one append each, or the part of one a read began inside).
  bool file_slices = false;
};

struct ReadOutcome {
  StreamMeta meta;                 ///< the stream as of this read (tail, closed)
  Offset start;                    ///< the resolved start offset
  std::vector<RecordPtr> records;  ///< contiguous, starting at `start`
  Offset next;                     ///< offset after the last record returned
  bool up_to_date = false;         ///< next == meta.tail
};

/// A page of stream paths (StreamStore::list).
struct ListRequest {
  std::string prefix;       ///< only paths that start with this (byte-wise). Default: all
  std::string start_after;  ///< only paths greater than this (byte order); "" = from the start
  size_t limit = 1000;      ///< at most this many; REQUIRES: 1..kMaxListLimit
};
inline constexpr size_t kMaxListLimit = 1000;

struct ListOutcome {
  /// Ascending byte order; existing streams only (no deleted, expired or
  /// soft-deleted ones).
  std::vector<std::string> paths;
  /// Another page may follow: ask again with start_after = paths.back().
  /// Never set with `paths` empty. False means the listing is complete.
  bool more = false;
};

/// Whether `path` belongs in a listing for `req` (prefix and start_after;
/// existence is the engine's to check).
inline bool list_wants(const ListRequest& req, std::string_view path) {
  return path.starts_with(req.prefix) && path > std::string_view(req.start_after);
}

/// The error list() answers for a request outside its REQUIRES, if any.
inline std::optional<Error> list_request_error(const ListRequest& req) {
  if (req.limit >= 1 && req.limit <= kMaxListLimit) return std::nullopt;
  return Error(errc::bad_request, "list limit must be 1.." + std::to_string(kMaxListLimit));
}

/// A change to one stream, delivered to watchers in commit order.
struct CommitEvent {
  std::vector<RecordPtr> records;  ///< appended records (empty for the initial event)
  Offset tail;                     ///< tail after this commit
  bool closed = false;
  bool gone = false;  ///< stream deleted, expired or never existed: no more events
};

/// Unregisters its watch when destroyed.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
};

class StreamStore {
 public:
  template <class T>
  using Callback = std::function<void(Result<T>)>;

  virtual ~StreamStore() = default;

  virtual void create(CreateRequest req, Callback<CreateOutcome> done) = 0;
  virtual void append(AppendRequest req, Callback<AppendOutcome> done) = 0;
  /// Reads and renews the stream's sliding TTL.
  virtual void read(ReadRequest req, Callback<ReadOutcome> done) = 0;
  /// Metadata only; does not renew the TTL.
  virtual void head(std::string path, Callback<StreamMeta> done) = 0;
  virtual void remove(std::string path, Callback<Unit> done) = 0;
  /// Lists the paths of existing streams in byte order, a page at a time.
  /// Does not renew any TTL. A limit outside 1..kMaxListLimit is bad_request.
  ///
  /// Concurrency: pages are stable by key. Each page is the engine's view of
  /// the streams at some moment during the call (the embedded engine: one
  /// snapshot of its table; S2: each stream's state as it is checked), so a
  /// stream created or deleted while a caller pages through may or may not
  /// appear, but no stream that exists throughout is skipped or repeated.
  /// Cost: the embedded engine scans its whole table per page; S2 reads each
  /// candidate's state (deleted Durable Streams keep their S2 stream, so a
  /// page may have to look past many of them).
  virtual void list(ListRequest req, Callback<ListOutcome> done) = 0;
  /// A reader used the stream: renew its sliding TTL, as read() does. For live
  /// reads answered without a storage read (from the live hub's buffer).
  /// Fire-and-forget: never blocks and reports nothing; rate-limited by the
  /// engine to at most once per stream per interval (at most min(1 s, TTL/4),
  /// which LiveHubs::read_buffered allows for). Does nothing for a stream that
  /// does not exist or has already expired.
  virtual void touch(const std::string& path) = 0;

  /// Watches one stream's own commits (a fork's watch never fires for its
  /// source's appends). The first event describes the current state with no
  /// records; every later event follows a commit, in order, with nothing
  /// missed in between. `on_event` runs on an engine thread and must not block
  /// or call back into the store.
  virtual std::unique_ptr<WatchHandle> watch(const std::string& path,
                                             std::function<void(const CommitEvent&)> on_event) = 0;

  /// Whether the engine can serve requests now (for /ready).
  virtual Status health() = 0;
};

}  // namespace ds
