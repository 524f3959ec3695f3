#pragma once
// Caps on live readers (long-polls waiting for data, SSE responses): per
// stream (--max-readers-per-stream) and per server (--max-parked-readers).
// Pure bookkeeping, no Asio: a reader holds a Slot while it is counted, and
// the slot travels with it into the parking lot and back.
//
// Thread safety: every member may be called from any thread.

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/thread_annotations.h"

namespace ds::live {

class ReaderLimits {
 public:
  /// Which cap refused a reader.
  enum class Refusal { none, per_stream, server };

  /// `per_stream`, `total`: 0 means no limit.
  ReaderLimits(size_t per_stream, size_t total) : per_stream_(per_stream), total_(total) {}
  ReaderLimits(const ReaderLimits&) = delete;
  ReaderLimits& operator=(const ReaderLimits&) = delete;

  /// A counted reader; counted out when destroyed (or reset). Empty when
  /// default-constructed or moved from.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : limits_(o.limits_), entry_(o.entry_) {
      o.limits_ = nullptr;
      o.entry_ = nullptr;
    }
    Slot& operator=(Slot&& o) noexcept {
      if (this != &o) {
        reset();
        limits_ = o.limits_;
        entry_ = o.entry_;
        o.limits_ = nullptr;
        o.entry_ = nullptr;
      }
      return *this;
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { reset(); }

    void reset();
    explicit operator bool() const { return limits_ != nullptr; }

   private:
    friend class ReaderLimits;
    using Entry = std::pair<const std::string, size_t>;
    Slot(ReaderLimits* limits, Entry* entry) : limits_(limits), entry_(entry) {}
    ReaderLimits* limits_ = nullptr;
    Entry* entry_ = nullptr;  ///< the stream's count (a map node: stable while counted)
  };

  /// Counts a reader of `stream` in, unless a cap is reached: then returns an
  /// empty slot and says which cap in `why`.
  Slot try_acquire(const std::string& stream, Refusal& why);

  /// Readers counted now: all, and of one stream.
  size_t total() const;
  size_t on_stream(const std::string& stream) const;
  /// Streams with at least one reader counted.
  size_t streams() const;

  size_t per_stream_cap() const { return per_stream_; }
  size_t total_cap() const { return total_; }

 private:
  void release(Slot::Entry* entry);

  const size_t per_stream_;
  const size_t total_;
  mutable Mutex mu_;
  size_t count_ DS_GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, size_t> by_stream_ DS_GUARDED_BY(mu_);  // no zero counts
};

}  // namespace ds::live
