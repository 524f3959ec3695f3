#pragma once
// A subscription's state and every rule of PROTOCOL.md 6-7 as pure functions:
// configuration parsing and normalisation, stream links, pending work, wakes
// and generations, leases, fencing, acks and the webhook retry schedule. No
// I/O and no clock: the manager (subs/manager.h) passes the time and the
// tails of the linked streams in, persists the state that comes out, and
// carries out what changed (a delivery, a wake event).
//
// The state is persisted whole, as one JSON document per change
// (to_record/from_record), so that the last record of a subscription's log
// is its state. Thread safety: values; no shared state.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/offset.h"

namespace ds::subs {

inline constexpr int64_t kDefaultLeaseMs = 30'000;
inline constexpr int64_t kMinLeaseMs = 1'000;
inline constexpr int64_t kMaxLeaseMs = 600'000;
inline constexpr int64_t kRetryBaseMs = 1'000;
inline constexpr int64_t kRetryMaxMs = 60'000;

/// An answer that is not a success: the HTTP status, the protocol's error
/// code (INVALID_REQUEST, FENCED, ...) and extra members of the error object
/// (a JSON fragment such as `"current_holder":"w1","generation":3`, or "").
struct Problem {
  int status = 400;
  std::string code;
  std::string message;
  std::string extra;
};

template <class T>
using Checked = std::variant<T, Problem>;

enum class Type { webhook, pull_wake };

struct Config {
  Type type = Type::webhook;
  std::optional<std::string> pattern;
  std::vector<std::string> streams;  ///< normalised, sorted, unique
  std::string webhook_url;           ///< webhook only
  std::string wake_stream;           ///< pull-wake only, normalised
  int64_t lease_ttl_ms = kDefaultLeaseMs;
  std::optional<std::string> description;

  /// The normalised configuration as canonical JSON (fixed member order,
  /// absent members omitted): equal configurations give equal bytes.
  std::string canonical() const;
};

/// Parses a PUT body: INVALID_REQUEST (400) for anything malformed. The
/// webhook URL's safety is the caller's check (it depends on server flags).
Checked<Config> parse_config(std::string_view json);

/// Paths of a `{"streams":[...]}` body (POST .../streams), normalised.
Checked<std::vector<std::string>> parse_stream_list(std::string_view json);

struct Link {
  bool by_glob = false;
  bool explicit_link = false;
  /// Last processed offset, inclusive; nullopt: before the first byte (a
  /// stream discovered by an append or created after the link).
  std::optional<Offset> acked;
};

struct Wake {
  std::string id;
  std::map<std::string, Offset> snapshot;  ///< tails when the wake was issued
  std::string holder;                      ///< pull-wake: the worker that claimed it
  int64_t lease_until_ms = 0;              ///< 0: no lease running
  /// Webhook: the delivery has been answered with a 2xx.
  bool delivered = false;
  /// Webhook: failed attempts so far, and when the next attempt is due (the
  /// attempt in flight's deadline, then the backoff's). A node that finds
  /// the time passed makes the attempt: delivery survives a restart.
  uint32_t attempts = 0;
  int64_t next_attempt_ms = 0;
};

struct State {
  std::string id;
  Config config;
  std::string base_url;  ///< e.g. `http://host:4437/v1/stream/`: for callback and JWKS URLs
  int64_t created_ms = 0;
  std::map<std::string, Link> links;
  uint64_t generation = 0;
  std::optional<Wake> wake;
  uint64_t version = 0;  ///< records persisted (1 = created)
};

/// Tails of linked streams; a stream that does not exist has no entry.
using Tails = std::map<std::string, Offset>;

struct StreamInfo {
  std::string path;
  bool explicit_link = false;
  std::optional<Offset> acked;
  Offset tail;
  bool pending = false;
};

std::vector<StreamInfo> stream_infos(const State& s, const Tails& tails);
bool has_pending(const State& s, const Tails& tails);

/// A new subscription: explicit streams and existing matches of the
/// pattern (`existing`, already filtered by the caller or not) linked at
/// their current tails.
State create_state(std::string id, Config config, std::string base_url, int64_t now_ms,
                   const std::vector<std::string>& existing, const Tails& tails);

/// `path` was written (created with data or appended to): links it if the
/// pattern matches and it is not linked yet (before its first byte, so the
/// write counts as pending). Returns whether the subscription covers it.
bool note_write(State& s, const std::string& path);

void add_explicit(State& s, const std::vector<std::string>& paths, const Tails& tails);
void remove_explicit(State& s, const std::string& path);

/// Issues a wake when there is pending work and no wake is in flight:
/// generation + 1, a new id (`wake_id`), the tails as its snapshot; a
/// webhook wake's first attempt is due now. Returns whether it did.
bool maybe_wake(State& s, const Tails& tails, std::string wake_id, int64_t now_ms);

/// The fencing checks of 7.3 for a request that carries a valid token for
/// generation `token_generation`: nullopt if it may proceed, else 409 FENCED.
std::optional<Problem> fence(const State& s, uint64_t token_generation,
                             std::optional<uint64_t> generation, std::string_view wake_id);

struct AckRequest {
  std::optional<uint64_t> generation;
  std::string wake_id;
  std::vector<std::pair<std::string, std::string>> acks;  ///< stream, offset as sent
  bool done = false;
};
Checked<AckRequest> parse_ack(std::string_view json);

/// Applies acks (all or none): 409 INVALID_OFFSET for an unknown stream, a
/// malformed offset, `-1`, a regression or an offset past the tail. Then
/// extends the lease, or with `done` ends the wake.
std::optional<Problem> apply_ack(State& s, const AckRequest& req, const Tails& tails,
                                 int64_t now_ms);

/// Webhook answered 2xx: with `done` the snapshot is acked and the wake
/// ends; otherwise the lease starts.
void delivery_succeeded(State& s, bool done, int64_t now_ms);
/// Webhook attempt failed: the next one after exponential backoff from 1 s
/// to 60 s with +-20 % jitter (`jitter` in [-1, 1]).
void delivery_failed(State& s, int64_t now_ms, double jitter);
/// An attempt starts: it must conclude by `deadline_ms`, else another one is
/// due then. Its body reports `tails`, which become the wake's snapshot: a
/// `{"done":true}` answer acks what the receiver was shown.
void attempt_started(State& s, int64_t deadline_ms, const Tails& tails);

/// Pull-wake claim: 409 ALREADY_CLAIMED with the holder, 409
/// NO_PENDING_WORK, or the wake (issued now if none is in flight) held by
/// `worker` with its lease running.
std::optional<Problem> claim(State& s, const std::string& worker, const Tails& tails,
                             std::string wake_id, int64_t now_ms);
/// Pull-wake release: ends the wake without acking.
void release(State& s);
/// Ends the wake if its lease ran out. Returns whether it did.
bool expire_lease(State& s, int64_t now_ms);

/// When this subscription next needs attention without a request (a lease
/// ending, a delivery attempt due); 0: never.
int64_t next_deadline_ms(const State& s);

/// The wake event a pull-wake subscription appends to its wake stream.
std::string wake_event_json(const State& s, const std::string& stream, int64_t now_ms);

/// GET's body (and PUT's), PROTOCOL.md 6.3. `signing`: the webhook.signing
/// object's JSON, or "" for none.
std::string to_api_json(const State& s, const Tails& tails, std::string_view signing);
/// The `streams` array of a webhook body or a claim answer.
std::string streams_json(const State& s, const Tails& tails);

/// The persisted form (a whole State), and back.
std::string to_record(const State& s);
std::optional<State> from_record(std::string_view json);

std::string iso8601_ms(int64_t unix_ms);

}  // namespace ds::subs
