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
// Thread safety: all methods may be called from any thread. Wake callbacks
// run on engine threads (or inline in wait()) and must only hand the result
// over to the reader's own executor.

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

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
class Waiter {
 public:
  Waiter(Offset from, std::function<void(Wake)> fn) : from_(from), fn_(std::move(fn)) {}
  /// Returns false if the wake already fired (it is then on its way).
  bool cancel();

 private:
  friend class Hub;
  bool fire(Wake w);

  Offset from_;
  std::function<void(Wake)> fn_;
  std::mutex mu_;
  bool done_ = false;  // guarded by mu_
  std::weak_ptr<Hub> hub_;
};

class LiveHubs {
 public:
  struct Options {
    size_t buffer_bytes = 4 << 20;  ///< recent data each hub keeps
    std::chrono::milliseconds idle_grace{30'000};
  };
  LiveHubs(StreamStore& store, Options options);
  explicit LiveHubs(StreamStore& store) : LiveHubs(store, Options{}) {}
  ~LiveHubs();

  /// Waits until the stream has data at `from`, is closed at `from`, or goes
  /// away. May call `wake` before returning.
  std::shared_ptr<Waiter> wait(const std::string& path, Offset from,
                               std::function<void(Wake)> wake);

  /// Drops hubs that have had no waiter for the idle grace period. Call
  /// periodically from a non-engine thread.
  void reap();

  size_t hub_count() const;

  /// Whether the stream's hub has seen new records within `window` (false
  /// when there is no hub). Readers use it to guess whether a wait will be
  /// short.
  bool recently_active(const std::string& path, std::chrono::milliseconds window) const;

 private:
  std::shared_ptr<Hub> hub_for(const std::string& path);

  StreamStore& store_;
  Options options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Hub>> hubs_;  // guarded by mu_
};

}  // namespace ds
