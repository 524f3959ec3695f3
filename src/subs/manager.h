#pragma once
// Subscriptions at run time (PROTOCOL.md 6-7): the API's operations, wakes
// on writes, webhook delivery with retries, pull-wake events, leases.
//
// State lives in the store, not in this object: each subscription is an
// internal JSON stream `__ds/subscriptions/<id>` whose last message is its
// whole state (subs/subscription.h). Every change is an append carrying
// Stream-Seq = the state's new version, so two writers racing on one
// subscription (two requests, two nodes over one S2 basin) cannot both win:
// the loser reads the winner's state and decides again. Every operation
// starts by reading what was appended since this node last looked, so any
// node answers any request; the cache only saves re-reading.
//
// Operations on one subscription run one at a time, in arrival order; on
// different subscriptions, concurrently. Completions run on store, timer or
// webhook-client threads and must not block. Thread safety: all public
// methods may be called from any thread. Lifetime: the store and clock must
// outlive this; stop() before destroying it.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/errc.h"
#include "metrics/metrics.h"
#include "store/stream_store.h"
#include "subs/signing.h"
#include "subs/webhook_client.h"

namespace ds::subs {

struct ManagerOptions {
  /// Base URL of the stream root for callback and JWKS URLs, e.g.
  /// `https://streams.example/v1/stream/`. Default "": from the request's Host.
  std::string public_url;
  /// Lets webhooks go to http://localhost and http://127.0.0.x (development,
  /// the conformance run). Default: off.
  bool allow_localhost = false;
  /// Webhook requests in flight at once; more wait their turn. REQUIRES: >= 1.
  unsigned max_deliveries = 64;
  /// Lifetime of callback and claim tokens.
  int64_t token_ttl_ms = int64_t{24} * 3600 * 1000;
  /// A webhook attempt's whole budget (connect + request + answer).
  int64_t attempt_timeout_ms = 15'000;
  /// How often to look for what other nodes did on a shared store (S2):
  /// subscriptions made elsewhere, streams written through other nodes,
  /// deadlines another node left behind. 0: never (the embedded store, where
  /// every write goes through this node).
  int64_t sweep_interval_ms = 0;
};

/// An HTTP answer: status and JSON body (empty body: none, e.g. 204).
struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  bool cacheable = false;  ///< Cache-Control: public, max-age=300 (the JWKS)
};

class Manager {
 public:
  using Done = std::function<void(Reply)>;

  Manager(ManagerOptions options, StreamStore& store, const Clock& clock, SigningKey key,
          std::unique_ptr<WebhookClient> client, metrics::Registry& registry);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  /// Loads the subscriptions the store holds and arms their timers.
  void start(std::function<void(Status)> done);
  /// Stops: no operation starts any more, the running ones are waited for
  /// (at most 5 s), timers stop and webhook calls in flight are dropped.
  /// Call before destroying the store. Idempotent; not from a completion.
  void stop();

  /// `base_url`: what the request's Host implies (`http://host/v1/stream/`),
  /// used unless ManagerOptions::public_url is set.
  void put(std::string id, std::string body, std::string base_url, Done done);
  void get(std::string id, std::string base_url, Done done);
  void remove(std::string id, Done done);
  void add_streams(std::string id, std::string body, Done done);
  void remove_stream(std::string id, std::string path, Done done);
  /// `action`: callback, ack or release; `token`: the bearer token.
  void wake_action(std::string action, std::string id, std::string token, std::string body,
                   Done done);
  void claim(std::string id, std::string body, Done done);
  Reply jwks() const;

  /// A stream was created with data or appended to (after its commit).
  void stream_written(const std::string& path);
  /// A stream was deleted: links to it go.
  void stream_deleted(const std::string& path);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

/// The stream that holds subscription `id`'s state.
std::string state_stream(std::string_view id);
/// Whether `id` is a usable subscription id (1-200 bytes, no `/`, no
/// control characters).
bool valid_subscription_id(std::string_view id);

}  // namespace ds::subs
