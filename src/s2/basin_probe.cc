#include "s2/basin_probe.h"

#include <algorithm>
#include <condition_variable>
#include <random>
#include <utility>

#include "common/thread_annotations.h"

namespace ds::s2 {

namespace {

using Verdict = ProbeOutcome::Verdict;
using Kind = S2Error::Kind;

ProbeOutcome outcome(Verdict v, std::string message) { return {v, std::move(message)}; }

std::string detail(const S2Error& e) {
  std::string d = e.http_status ? std::to_string(e.http_status) : std::string("no HTTP status");
  if (!e.code.empty()) d += " " + e.code;
  if (!e.message.empty()) d += ": " + e.message;
  return d;
}

/// One answer (or none yet) to one probe call; shared with the callback,
/// which may run after the waiter gave up.
struct Pending {
  Mutex mu;
  std::condition_variable cv;
  std::optional<S2Result<uint64_t>> answer DS_GUARDED_BY(mu);
};

}  // namespace

ProbeOutcome classify_probe(const S2Result<uint64_t>& answer, std::string_view basin_view,
                            std::string_view endpoint_view) {
  if (answer.ok()) return outcome(Verdict::ready, "");
  const std::string basin(basin_view), endpoint(endpoint_view);
  const S2Error e = answer.error.value_or(S2Error{});
  if (e.code == "stream_not_found" || e.code == "stream_deletion_pending")
    return outcome(Verdict::ready, "");  // the basin is there; the probe stream is not
  if (e.code == "basin_not_found")
    return outcome(Verdict::fatal, "S2 basin '" + basin + "' does not exist at " + endpoint +
                                       ": create it (e.g. `s2 create-basin " + basin +
                                       "`) or fix --s2-basin / --s2-endpoint");
  if (e.code == "basin_deletion_pending")
    return outcome(Verdict::fatal, "S2 basin '" + basin + "' at " + endpoint +
                                       " is being deleted: use another basin (--s2-basin)");
  if (e.http_status == 401 || e.code == "authn")
    return outcome(Verdict::fatal,
                   "S2 refused the access token (" + detail(e) +
                       "): set --s2-token or S2_ACCESS_TOKEN to a valid token for basin '" + basin +
                       "'");
  if (e.http_status == 403 || e.code == "permission_denied")
    return outcome(Verdict::fatal, "S2 denied access to basin '" + basin + "' (" + detail(e) +
                                       "): use a token whose scope includes this basin "
                                       "(--s2-token or S2_ACCESS_TOKEN)");
  if (e.kind == Kind::unavailable || e.kind == Kind::ambiguous)
    return outcome(Verdict::unavailable,
                   "S2 at " + endpoint + " is unreachable or failing (" + e.message + ")");
  if (e.kind == Kind::not_found)  // a 404 without an S2 error code: not an S2 route
    return outcome(Verdict::fatal, "S2 endpoint " + endpoint +
                                       " answered a check-tail with a bare 404: it does not "
                                       "look like an S2 basin endpoint; fix --s2-endpoint");
  return outcome(Verdict::fatal, "S2 at " + endpoint + " refused the start-up probe of basin '" +
                                     basin + "' (" + detail(e) +
                                     "); check --s2-endpoint and --s2-basin");
}

ProbeOutcome probe_basin(S2Api& api, std::string_view basin, std::string_view endpoint,
                         std::chrono::milliseconds timeout) {
  auto pending = std::make_shared<Pending>();
  api.check_tail(std::string(kProbeStream), [pending](S2Result<uint64_t> r) {
    MutexLock lock(pending->mu);
    pending->answer = std::move(r);
    pending->cv.notify_all();
  });
  MutexLock lock(pending->mu);
  // The predicate runs inside wait_for, under the lock (the analysis cannot tell).
  if (!pending->cv.wait_for(lock.native(), timeout, [&]() DS_NO_THREAD_SAFETY_ANALYSIS {
        return pending->answer.has_value();
      })) {
    return outcome(Verdict::unavailable, "S2 at " + std::string(endpoint) +
                                             " did not answer within " +
                                             std::to_string(timeout.count()) + " ms");
  }
  return classify_probe(*pending->answer, basin, endpoint);
}

struct BasinWatch::State {
  Mutex mu;
  std::condition_variable cv;
  ProbeOutcome current DS_GUARDED_BY(mu);
  uint64_t probes DS_GUARDED_BY(mu) = 0;
  bool stop DS_GUARDED_BY(mu) = false;
  std::optional<S2Result<uint64_t>> answer DS_GUARDED_BY(mu);  ///< of the probe in flight
  uint64_t generation DS_GUARDED_BY(mu) = 0;                   ///< of the probe in flight
};

BasinWatch::BasinWatch(S2Api& api, std::string basin, std::string endpoint, ProbeOutcome first,
                       BasinWatchOptions options)
    : api_(api),
      basin_(std::move(basin)),
      endpoint_(std::move(endpoint)),
      options_(std::move(options)),
      state_(std::make_shared<State>()) {
  state_->current = std::move(first);
  if (!state_->current.ready()) thread_ = std::thread([this] { run(); });
}

BasinWatch::~BasinWatch() {
  {
    MutexLock lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::string> BasinWatch::not_ready_reason() const {
  MutexLock lock(state_->mu);
  if (state_->current.ready()) return std::nullopt;
  return state_->current.message;
}

uint64_t BasinWatch::probes() const {
  MutexLock lock(state_->mu);
  return state_->probes;
}

void BasinWatch::run() {
  std::minstd_rand rng(std::random_device{}());
  auto backoff = std::max(options_.initial_backoff, std::chrono::milliseconds(1));
  MutexLock lock(state_->mu);
  for (;;) {
    // Pause (jittered to [d/2, d]) before the next probe; the destructor wakes it.
    std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
    auto pause = std::chrono::milliseconds(jitter(rng));
    // The predicates run inside wait_for, under the lock (the analysis cannot tell).
    if (state_->cv.wait_for(lock.native(), pause,
                            [&]() DS_NO_THREAD_SAFETY_ANALYSIS { return state_->stop; }))
      return;
    backoff = std::min(backoff * 2, std::max(options_.max_backoff, options_.initial_backoff));

    const uint64_t gen = ++state_->generation;
    state_->answer.reset();
    ++state_->probes;
    lock.unlock();
    api_.check_tail(std::string(kProbeStream), [state = state_, gen](S2Result<uint64_t> r) {
      MutexLock l(state->mu);
      if (state->generation != gen) return;  // given up on
      state->answer = std::move(r);
      state->cv.notify_all();
    });
    lock.lock();
    bool answered = state_->cv.wait_for(
        lock.native(), options_.probe_timeout,
        [&]() DS_NO_THREAD_SAFETY_ANALYSIS { return state_->stop || state_->answer.has_value(); });
    if (state_->stop) return;
    ProbeOutcome next = answered
                            ? classify_probe(*state_->answer, basin_, endpoint_)
                            : outcome(Verdict::unavailable,
                                      "S2 at " + endpoint_ + " did not answer within " +
                                          std::to_string(options_.probe_timeout.count()) + " ms");
    ++state_->generation;  // a late answer to this probe is dropped
    state_->answer.reset();
    const bool changed =
        next.verdict != state_->current.verdict || next.message != state_->current.message;
    state_->current = next;
    if (changed && options_.on_change) {
      lock.unlock();
      options_.on_change(next);
      lock.lock();
    }
    if (next.ready()) return;
  }
}

}  // namespace ds::s2
