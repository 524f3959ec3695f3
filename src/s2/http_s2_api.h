#pragma once
// S2Api over S2's REST API (HTTP/1.1 + JSON with `s2-format: base64`, SSE for
// read sessions), on Boost.Beast. See ../../shared/s2-api.md.
//
// Threads: the client runs its own io_context on `threads` threads; every
// callback runs there and must not block. All methods are thread-safe.
// Lifetime: destroy the client from a thread that is not one of its own (not
// from a callback). Calls still in flight when it is destroyed never call
// back; sessions end without on_end. This header includes no Asio.
//
// Retries: create, delete, read, check tail and session opens are retried on
// S2's retryable errors (408, 429, 500, 502, 503, 504, 409
// transaction_conflict) and on connection failures, with jittered
// exponential backoff, up to max_attempts; then the call fails with kind
// `unavailable`. An append is retried only when the failure proves it did
// not happen: a connection that failed before any byte of the request was
// written, or an error whose code S2 marks side-effect-free (rate_limited,
// hot_server, server_draining, transaction_conflict). Any other failure after
// the request may have reached S2 (timeout, cut connection, 500 other,
// 503 unavailable, ...) is reported as `ambiguous` without a retry.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "s2/s2_api.h"

namespace ds::s2 {

struct HttpS2Options {
  /// Basin endpoint URL: `https://{basin}.b.s2.dev` (cloud: the basin is in
  /// the host; a literal `{basin}` is replaced by the basin name), or a
  /// single host such as `http://127.0.0.1:8080` (s2-lite, the emulator),
  /// which gets the `s2-basin` header. With no path, `/v1` is used.
  /// REQUIRES: http:// or https://.
  std::string endpoint;
  /// REQUIRES: non-empty.
  std::string basin;
  /// Sent as `Authorization: Bearer <token>` when non-empty. Never logged.
  std::string token;
  /// PEM file of extra trusted CAs (a private CA), in addition to the
  /// system store. Default: none.
  std::string ca_file;
  /// Resolve + connect + TLS handshake, per attempt.
  std::chrono::milliseconds connect_timeout{5000};
  /// Write request + read response, per attempt (a read's `wait` is added).
  std::chrono::milliseconds request_timeout{10000};
  /// Attempts per call including the first. REQUIRES: >= 1.
  int max_attempts = 4;
  /// Backoff before retry n (n >= 1): uniform in [d/2, d] with
  /// d = min(backoff_max, backoff_base * 2^(n-1)).
  std::chrono::milliseconds backoff_base{50}, backoff_max{2000};
  /// Idle keep-alive connections kept per endpoint.
  unsigned max_idle_connections = 16;
  /// An idle pooled connection older than this is closed rather than reused
  /// (servers close idle connections; node's default is 5 s).
  std::chrono::milliseconds idle_connection_timeout{4000};
  /// A session with no event (batch or ping) for this long ends (on_end).
  std::chrono::milliseconds session_stall_timeout{30000};
  /// io_context threads. REQUIRES: >= 1.
  unsigned threads = 1;
};

/// Counters for metrics. Monotonic except open_sessions (a gauge).
struct HttpS2Stats {
  enum Method { create_stream, delete_stream, append, read, check_tail, open_session, kMethods };
  std::atomic<uint64_t> requests[kMethods] = {};  ///< calls made, by method
  std::atomic<uint64_t> attempts{0};              ///< HTTP requests sent, retries included
  std::atomic<uint64_t> retries{0};               ///< attempts after the first
  static constexpr int kKinds = 9;                ///< S2Error::Kind values
  std::atomic<uint64_t> errors[kKinds] = {};      ///< failed calls and ended sessions, by kind
  std::atomic<uint64_t> connections_opened{0};
  std::atomic<uint64_t> open_sessions{0};
};

class HttpS2Api : public S2Api {
 public:
  ~HttpS2Api() override = default;
  virtual const HttpS2Stats& stats() const = 0;
};

/// Validates the options, sets up TLS (system CAs + ca_file) and starts the
/// io threads. Returns null and sets *error (if given) on bad options.
std::unique_ptr<HttpS2Api> make_http_s2_api(HttpS2Options options, std::string* error);

}  // namespace ds::s2
