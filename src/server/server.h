#pragma once
// The HTTP front end: Boost.Beast on Asio, C++20 coroutines, one strand per
// connection. This header is Asio-free so main and tests stay cheap to build.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "hub/live_hub.h"
#include "metrics/metrics.h"
#include "store/stream_store.h"

namespace ds {

namespace auth {
class Authenticator;
}
namespace subs {
class Manager;
}

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 4437;
  std::chrono::milliseconds long_poll_timeout{30'000};
  std::chrono::milliseconds sse_max_duration{
      60'000};  ///< SSE responses end after this, for CDN collapsing
  std::chrono::milliseconds sse_keepalive{15'000};  ///< comment line while idle
  size_t max_body_bytes = 64ull << 20;
  /// Retention of streams created without Stream-Retention-Max-Age /
  /// -Max-Bytes (--retention-max-age, --retention-max-bytes); unset: kept.
  std::optional<uint64_t> retention_max_age_s;
  std::optional<uint64_t> retention_max_bytes;
  size_t read_chunk_bytes = 1 << 20;  ///< soft cap of one catch-up response body
  /// SSE output that may wait behind a connection's write in flight; a live
  /// reader that lets more pile up is disconnected (it resumes from its last
  /// offset). Catch-up reads are paced and never count against it.
  size_t max_pending_output_bytes = 4u << 20;
  unsigned threads = 0;  ///< 0: one per core
  /// Every response write must make progress within this: a client that
  /// takes no bytes for this long is disconnected (counted in
  /// dstreamd_http_write_timeouts_total). An SSE response past
  /// sse_max_duration is cut within min(this, 1 s) whatever its client reads.
  std::chrono::milliseconds write_timeout{30'000};
  /// Bytes that responses being written hold, server-wide (a large record
  /// shared by several responses counts once), past which a write gets
  /// min(write_timeout, 1 s) to make progress instead of write_timeout: the
  /// memory that stalled responses may pin for long stays about this.
  size_t max_response_buffer_bytes = 256u << 20;
  /// Open connections (parked live readers included) past which a new one is
  /// answered 503 + Retry-After and closed; 0: no limit.
  size_t max_connections = 0;
  /// Once a request's first byte has arrived, the rest of its head must
  /// arrive within this (408, closed). Between requests a connection may
  /// idle for 75 s.
  std::chrono::milliseconds request_head_timeout{10'000};
  /// A request's whole body (100 Continue included) must arrive within this
  /// from the end of its head (408, closed).
  std::chrono::milliseconds request_body_timeout{60'000};
  /// Request line plus header fields, in bytes (431, closed).
  size_t max_header_bytes = 64u << 10;
  /// Header fields of a request (431, closed).
  size_t max_header_count = 100;
  /// Live readers (long-polls waiting for data, SSE responses) per stream and
  /// per server past which a new one gets 503 + Retry-After; 0: no limit.
  size_t max_readers_per_stream = 10'000;
  size_t max_parked_readers = 100'000;
  /// Bearer-JWT checks on stream requests; null: no authentication.
  std::shared_ptr<const auth::Authenticator> auth;
  /// Origins allowed by CORS; empty or containing "*": any origin (`*`).
  /// Otherwise a listed Origin is echoed with credentials allowed.
  std::vector<std::string> cors_origins;
  /// Catch-up bodies of at least this many bytes are gzipped for clients that
  /// accept it; 0: never.
  size_t gzip_min_bytes = 1024;
  /// After SIGTERM/SIGINT: how long in-flight requests may take before the
  /// server stops anyway.
  std::chrono::milliseconds shutdown_timeout{10'000};
  /// /metrics renders this registry; the server adds its HTTP families to it.
  /// Null: the server makes its own.
  std::shared_ptr<metrics::Registry> metrics;
  /// Extra readiness condition for /ready, asked before the store's
  /// health(): an error keeps /ready at 503 with its message (e.g. the S2
  /// basin not reached yet). Called on HTTP threads; must be quick and
  /// thread-safe. Empty: only the store decides.
  std::function<Status()> readiness;
  /// The store's offsets are byte positions from 0 (the embedded engine), so
  /// the stream catalog (GET /v1/streams) can report each stream's size.
  bool offsets_count_bytes = false;
  /// Subscriptions (PROTOCOL.md 6-7) under /v1/stream/__ds/; null: off (the
  /// prefix stays reserved and answers 404).
  std::shared_ptr<subs::Manager> subscriptions;
  /// The inspector page at /ui/ (and / redirecting to it); false: both 404.
  bool ui = true;
};

class Server {
 public:
  Server(ServerOptions options, StreamStore& store, LiveHubs& hubs, const Clock& clock);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds the listening socket; returns the bound port (useful with port 0).
  Result<uint16_t> bind();
  /// Serves until stop() or SIGINT/SIGTERM, then shuts down gracefully:
  /// stops accepting, lets in-flight requests finish, ends live responses
  /// (SSE with a final control event, long-polls with 204), closes idle
  /// connections, and returns when all connections are gone or after
  /// shutdown_timeout. A second signal stops at once.
  void run();
  /// Starts the graceful shutdown. Thread-safe.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds
