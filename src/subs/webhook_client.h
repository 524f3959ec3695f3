#pragma once
// The outbound HTTP(S) client that POSTs webhook notifications
// (PROTOCOL.md 7.1), with the delivery-time half of the SSRF defence (12.8):
// the host is resolved, EVERY resolved address must pass address_allowed()
// (one bad address rejects the delivery), and the connection goes only to
// those checked addresses, never to a second resolution (DNS rebinding).
// One connection per request (Connection: close); redirects are never
// followed (a 3xx is returned like any other status).
//
// Threads: the client runs its own io_context on `threads` threads; every
// callback runs there, exactly once, and must not block. post() is
// thread-safe. Lifetime: destroy the client from a thread that is not one of
// its own (not from a callback). Calls still in flight when it is destroyed
// never call back. This header includes no Asio.
//
// Errors (Result values, no exceptions):
//   errc::bad_request  the request is refused by policy before any connection:
//                      an address that is not allowed, http:// without
//                      allow_localhost, a header the caller may not set.
//   errc::unavailable  everything else: resolution failure, connect/TLS
//                      failure (including certificate verification), timeout,
//                      cut connection, malformed or oversized response.
// A response of any status is a success here; the caller treats non-2xx as a
// failed delivery.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/errc.h"
#include "subs/webhook_url.h"

namespace ds::subs {

struct WebhookClientOptions {
  /// Resolve + connect + TLS handshake. Default: 5 s. REQUIRES: > 0.
  std::chrono::milliseconds connect_timeout{5000};
  /// Write the request + read the whole response, from the end of the
  /// handshake; a call takes at most connect_timeout + request_timeout.
  /// Default: 10 s. REQUIRES: > 0.
  std::chrono::milliseconds request_timeout{10000};
  /// A response body longer than this fails the call (errc::unavailable).
  /// Default: 64 KiB.
  size_t max_response_bytes = size_t{64} * 1024;
  /// Development: allow loopback addresses (and http:// URLs, which
  /// parse_webhook_url admits only for localhost and 127.0.0.x).
  /// Default: false.
  bool allow_localhost = false;
  /// PEM file of extra trusted CAs, in addition to the system store.
  /// Default: none.
  std::string ca_file;
  /// io_context threads. Default: 1. REQUIRES: >= 1.
  unsigned threads = 1;
  /// Test seam: resolves a host name to IP address strings, replacing the
  /// system resolver. Called on a client thread; must not block for long.
  /// Not called for IP-literal hosts. Default: empty (the system resolver).
  std::function<Result<std::vector<std::string>>(const std::string& host)> resolve;
};

struct WebhookResponse {
  unsigned status = 0;
  std::string body;
};

class WebhookClient {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  using Done = std::function<void(Result<WebhookResponse>)>;

  virtual ~WebhookClient();

  /// POSTs `body` to `url` (which should come from parse_webhook_url) with
  /// Host, Content-Type: application/json, Content-Length,
  /// User-Agent: dstreamd-webhook/1, Connection: close, then `headers`
  /// (e.g. Webhook-Signature). A header named Host, Content-Type,
  /// Content-Length, Transfer-Encoding, Connection or User-Agent, or one with
  /// CR, LF or NUL in it, fails the call with errc::bad_request.
  /// `done` runs exactly once on a client thread (unless the client is
  /// destroyed first, see above).
  virtual void post(const WebhookUrl& url, Headers headers, std::string body, Done done) = 0;
};

/// Validates the options, sets up TLS (system CAs + ca_file) and starts the
/// io threads. Returns null and sets *error (if given) on bad options.
std::unique_ptr<WebhookClient> make_webhook_client(WebhookClientOptions options,
                                                   std::string* error);

}  // namespace ds::subs
