#pragma once
// Proves at start that the configured basin exists and the token is accepted,
// and keeps probing in the background while S2 cannot be reached, so /ready
// can say why the node does not serve yet. Asio-free: it talks to S2 only
// through S2Api, and runs one plain thread that sleeps between probes.
//
// The probe is one check-tail of kProbeStream (../shared/s2-api.md §9): S2
// answers 404 `basin_not_found` for a missing basin and 404
// `stream_not_found` (or a tail) when the basin exists, and 401/403 when the
// token is refused. List streams cannot tell: s2-lite answers an empty list
// for a basin that does not exist (§3.7).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "s2/s2_api.h"

namespace ds::s2 {

/// The S2 stream the probe checks. No Durable Stream can have this name (the
/// protocol layer refuses `.` path segments), so the probe never touches a
/// stream's data. A basin with `create_stream_on_read` creates it, empty,
/// once; that is harmless.
inline constexpr std::string_view kProbeStream = "./dstreamd-probe";

struct ProbeOutcome {
  enum class Verdict {
    ready,        ///< the basin exists and the token is accepted
    fatal,        ///< S2 answered and refused: missing basin, token refused, not S2
    unavailable,  ///< no answer, or a retryable failure: try again later
  };
  Verdict verdict = Verdict::unavailable;
  /// One line: what is wrong and what to do. Empty when ready.
  std::string message;
  bool ready() const { return verdict == Verdict::ready; }
};

/// Classifies the answer to check_tail(kProbeStream). `basin` and `endpoint`
/// only go into the message.
ProbeOutcome classify_probe(const S2Result<uint64_t>& answer, std::string_view basin,
                            std::string_view endpoint);

/// One probe, blocking until S2 answers or `timeout` passes (then
/// unavailable). The client's own timeouts and retries apply inside.
ProbeOutcome probe_basin(S2Api& api, std::string_view basin, std::string_view endpoint,
                         std::chrono::milliseconds timeout);

struct BasinWatchOptions {
  /// Pause after the first failed probe; doubles per failure up to
  /// max_backoff (each pause is jittered to [d/2, d]).
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{15000};
  /// Bound on one probe.
  std::chrono::milliseconds probe_timeout{15000};
  /// Called on the watch's thread whenever the outcome's verdict or message
  /// changes (for logs). May be empty.
  std::function<void(const ProbeOutcome&)> on_change;
};

/// The basin's reachability, for readiness. Constructed with the start-up
/// probe's outcome; unless that was ready, a background thread probes with
/// backoff until S2 answers that the basin is there, and then stops: once
/// reached, the node stays ready (S2 outages later surface as 503s on the
/// requests that hit them, not as every node leaving the load balancer at once).
///
/// Thread-safe. Destroy it before the S2Api (the destructor wakes and joins
/// the thread; an answer that arrives later is dropped).
class BasinWatch {
 public:
  BasinWatch(S2Api& api, std::string basin, std::string endpoint, ProbeOutcome first,
             BasinWatchOptions options = {});
  ~BasinWatch();
  BasinWatch(const BasinWatch&) = delete;
  BasinWatch& operator=(const BasinWatch&) = delete;

  /// nullopt when ready; otherwise why not (the latest probe's message).
  std::optional<std::string> not_ready_reason() const;
  bool ready() const { return !not_ready_reason(); }
  /// Probes made by the background thread so far.
  uint64_t probes() const;

 private:
  struct State;
  void run();

  S2Api& api_;
  const std::string basin_, endpoint_;
  const BasinWatchOptions options_;
  std::shared_ptr<State> state_;  ///< shared with probe callbacks that may outlive *this
  std::thread thread_;
};

}  // namespace ds::s2
