#pragma once
// The HTTP front end's metrics: plain atomics, recorded once per request by
// the connection loop, rendered by /metrics. No Asio here.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "metrics/metrics.h"

namespace ds::metrics {

class HttpMetrics {
 public:
  enum class Method { get, head, post, put, del, options, other, kCount };
  /// The read mode of a request: GET without live (catchup), long-poll, SSE,
  /// or none (every other request).
  enum class Mode { none, catchup, long_poll, sse, kCount };

  HttpMetrics();

  /// One finished request. `seconds` feeds the latency histogram for
  /// non-live requests (mode none or catchup).
  void record(Method method, Mode mode, unsigned status, double seconds);

  Counter received_bytes;  ///< request body bytes
  Counter sent_bytes;      ///< response bytes written (head and body)
  Gauge open_sse;          ///< SSE responses being streamed
  Gauge parked_long_polls;
  Counter slow_consumer_disconnects;  ///< SSE readers cut off past the output cap
  /// Response writes cut off: no progress within --write-timeout, or an SSE
  /// response past its session's end that its client was not reading.
  Counter write_timeouts;
  /// Accepts that failed for want of file descriptors (EMFILE, ENFILE, ...):
  /// each is followed by a pause of the accept loop.
  Counter accept_fd_exhausted;
  /// Connections answered 503 and closed at --max-connections.
  Counter connections_rejected;
  /// Requests refused by a limit, one counter per limit
  /// (dstreamd_http_limit_rejections_total{reason=...}).
  enum class Limit {
    request_head_timeout,    ///< 408: head not complete in time (slowloris)
    request_body_timeout,    ///< 408: body not complete in time
    max_header_bytes,        ///< 431
    max_header_count,        ///< 431
    max_readers_per_stream,  ///< 503: live readers of one stream
    max_parked_readers,      ///< 503: live readers of the server
    kCount
  };
  void limit_hit(Limit l) { limit_rejections_[static_cast<size_t>(l)].inc(); }
  uint64_t limit_hits(Limit l) const { return limit_rejections_[static_cast<size_t>(l)].value(); }
  static std::string_view limit_name(Limit l);
  /// Bytes of the responses being written (see --max-response-buffer-bytes).
  Gauge response_buffer_bytes;
  /// Long-poll and SSE reads answered from the live hub's buffer, and those
  /// that had to read storage.
  Counter live_reads_hub;
  Counter live_reads_storage;

  /// Renders every family above.
  void collect(Exposition& e) const;

  static std::string_view method_name(Method m);
  static std::string_view mode_name(Mode m);
  static Method method_from(std::string_view verb);

 private:
  static constexpr int kMethods = static_cast<int>(Method::kCount);
  static constexpr int kModes = static_cast<int>(Mode::kCount);
  static constexpr int kCodes = 500;                   // 100 .. 599
  std::unique_ptr<std::atomic<uint64_t>[]> requests_;  // [method][mode][code - 100]
  std::array<std::unique_ptr<Histogram>, kMethods> duration_;
  std::array<Counter, static_cast<size_t>(Limit::kCount)> limit_rejections_;
};

}  // namespace ds::metrics
