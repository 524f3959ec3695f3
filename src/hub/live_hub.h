#pragma once
// Per-stream live hubs: the fan-out point between a storage engine's commit
// notifications and every live reader (long-poll, SSE) of a stream on this
// node.
//
// A hub watches its stream once (one engine watch: for the S2 engine, one
// read session) and keeps the most recent records in a bounded buffer. A
// reader that is caught up parks on the hub and is woken with the new records
// straight from that buffer: N parked readers cost one upstream, and no
// storage read, per commit. A reader whose offset has already fallen out of
// the buffer is told to catch up from storage and come back.
//
// A live request that arrives behind the tail is answered from the buffer
// too (read_buffered), once the hub knows the stream's metadata from one
// storage read (remember): N readers re-polling behind the tail cost no
// storage read each.
//
// Thread safety: all methods may be called from any thread. Wake callbacks
// run on engine threads (or inline in wait()) and must only hand the result
// over to the reader's own executor.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/thread_annotations.h"
#include "store/stream_store.h"

namespace ds {

struct Wake {
  enum class Kind {
    data,      ///< records from the reader's offset on
    closed,    ///< the reader is at the tail of a closed stream
    gone,      ///< the stream was deleted or expired
    catch_up,  ///< the offset is older than the buffer: read storage, then wait again
  };
  Kind kind = Kind::data;
  std::vector<RecordPtr> records;
  Offset tail;
  bool closed = false;  ///< the stream is closed (possibly by the delivered records)
};

class Hub;

/// A parked reader. Wakes at most once; cancel() makes sure it never does.
/// Either calls a function with its wake, or (a subclass) handles the wake
/// itself in on_wake(): a reader that keeps its wait's state in one object
/// then costs no std::function and no second allocation.
class Waiter {
 public:
  Waiter(Offset from, std::function<void(Wake)> fn) : from_(from), fn_(std::move(fn)) {}
  virtual ~Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;
  /// Returns false if the wake already fired (it is then on its way).
  bool cancel();

 protected:
  explicit Waiter(Offset from) : from_(from) {}
  /// The wake, exactly once unless cancelled first; on an engine thread (or
  /// inline in LiveHubs::wait). Default: calls the function.
  virtual void on_wake(Wake w);

 private:
  friend class Hub;
  bool fire(Wake w);

  Offset from_;
  std::function<void(Wake)> fn_;
  Mutex mu_;
  bool done_ DS_GUARDED_BY(mu_) = false;
  std::weak_ptr<Hub> hub_;
};

/// What a record in a hub's buffer costs in memory, as counted against
/// Options::buffer_bytes: its bytes, and the Record itself with its shared
/// pointer's control block, the buffer's pointer to it and the allocator's
/// headers (about 160 bytes here, which dominate for small messages:
/// counting the bytes alone let a hub of 22-byte messages hold about nine
/// times its limit, bench/s2-soak.sh).
inline size_t buffered_cost(const Record& r) { return r.bytes.size() + sizeof(Record) + 64; }

class LiveHubs {
 public:
  struct Options {
    size_t buffer_bytes = 4 << 20;  ///< recent data each hub keeps (buffered_cost)
    std::chrono::milliseconds idle_grace{30'000};
    /// For Stream-Expires-At and the sliding TTL in read_buffered().
    const Clock* clock = &SystemClock::instance();
  };
  LiveHubs(StreamStore& store, Options options);
  explicit LiveHubs(StreamStore& store) : LiveHubs(store, Options{}) {}
  ~LiveHubs();

  /// Waits until the stream has data at `from`, is closed at `from`, or goes
  /// away. May call `wake` before returning.
  std::shared_ptr<Waiter> wait(const std::string& path, Offset from,
                               std::function<void(Wake)> wake);
  /// The same for a waiter the caller made (a Waiter subclass).
  void wait(const std::string& path, const std::shared_ptr<Waiter>& waiter);

  /// Drops hubs that have had no waiter for the idle grace period. Call
  /// periodically from a non-engine thread.
  void reap();

  size_t hub_count() const;

  /// The stream's current hub (0: none). Take it before a storage read whose
  /// metadata then goes to remember().
  uint64_t hub_id(const std::string& path) const;

  /// Lets the stream's hub answer live reads itself (read_buffered): `meta`
  /// comes from a storage read (which also renewed the sliding TTL) that
  /// started while hub `id` (hub_id() before the read) was the stream's hub.
  /// Ignored when that hub has been replaced, is gone (the path may hold a
  /// re-created stream by now) or describes another incarnation.
  void remember(const std::string& path, uint64_t id, const StreamMeta& meta);

  /// A live read at `from` answered from the stream's hub buffer, as a
  /// storage read would answer it (at most about `max_bytes`, at least one
  /// record; `meta` with the hub's tail and closure; at the hub's tail: no
  /// records, up to date, and the reader then waits on the hub), or nullopt
  /// when the hub cannot answer and storage must: no hub or no metadata yet;
  /// `from` ahead of the hub's tail (the hub knows nothing newer; on S2 an
  /// offset from another node's newer tail); `from` older than the
  /// buffer; a JSON stream's `from` inside a record (storage rejects it);
  /// the stream past its Expires-At, or near the end of its sliding TTL as
  /// far as the hub has seen it accessed (storage then decides and renews).
  /// A read answered here counts as an access: the caller renews the TTL
  /// with StreamStore::touch().
  std::optional<ReadOutcome> read_buffered(const std::string& path, Offset from, size_t max_bytes);

  /// Live reads read_buffered() has answered.
  uint64_t buffered_reads() const { return buffered_reads_.load(std::memory_order_relaxed); }

  /// Whether the stream's hub has seen new records within `window` (false
  /// when there is no hub). Readers use it to guess whether a wait will be
  /// short.
  bool recently_active(const std::string& path, std::chrono::milliseconds window) const;

 private:
  std::shared_ptr<Hub> hub_for(const std::string& path);
  /// The stream's hub, if it has one (none is made).
  std::shared_ptr<Hub> find(const std::string& path) const;

  StreamStore& store_;
  Options options_;
  mutable Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Hub>> hubs_ DS_GUARDED_BY(mu_);
  uint64_t next_hub_id_ DS_GUARDED_BY(mu_) = 1;
  std::atomic<uint64_t> buffered_reads_{0};
};

}  // namespace ds
