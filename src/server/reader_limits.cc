#include "server/reader_limits.h"

namespace ds::live {

void ReaderLimits::Slot::reset() {
  if (limits_) limits_->release(entry_);
  limits_ = nullptr;
  entry_ = nullptr;
}

ReaderLimits::Slot ReaderLimits::try_acquire(const std::string& stream, Refusal& why) {
  MutexLock lock(mu_);
  // The server cap first: a reader refused for both is refused for the
  // server's sake (the one an operator is more likely to raise).
  if (total_ && count_ >= total_) {
    why = Refusal::server;
    return Slot();
  }
  auto [it, inserted] = by_stream_.try_emplace(stream, 0);
  if (per_stream_ && it->second >= per_stream_) {
    why = Refusal::per_stream;
    return Slot();
  }
  ++it->second;
  ++count_;
  why = Refusal::none;
  // Node addresses of an unordered_map stay valid across rehashing.
  return Slot(this, &*it);
}

void ReaderLimits::release(Slot::Entry* entry) {
  MutexLock lock(mu_);
  --count_;
  if (--entry->second == 0) by_stream_.erase(by_stream_.find(entry->first));
}

size_t ReaderLimits::total() const {
  MutexLock lock(mu_);
  return count_;
}

size_t ReaderLimits::on_stream(const std::string& stream) const {
  MutexLock lock(mu_);
  auto it = by_stream_.find(stream);
  return it == by_stream_.end() ? 0 : it->second;
}

size_t ReaderLimits::streams() const {
  MutexLock lock(mu_);
  return by_stream_.size();
}

}  // namespace ds::live
