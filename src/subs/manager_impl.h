#pragma once
// Internal to subs/: the manager's implementation, shared by its three
// files. manager_state.cc: the per-subscription queue, reading and writing
// state in the store (refresh, transact, commit), listing. manager_wakes.cc:
// what happens without a request (wakes after writes, timers, the sweep,
// webhook delivery). manager.cc: the public operations.
//
// Locking: `mu` guards the entry table, each Entry's queue fields (busy,
// queue, armed_ms, snapshot, written, eval_queued) and the delivery slots.
// An Entry's `state` and `read_to` belong to the operation running on it
// (one at a time, by its queue), so they need no lock.

#include <simdjson.h>

#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/json_string.h"
#include "common/thread_annotations.h"
#include "common/timer_queue.h"
#include "subs/manager.h"
#include "subs/subscription.h"

namespace ds::subs {
namespace detail {
inline constexpr std::string_view kStatePrefix = "__ds/subscriptions/";
inline constexpr std::string_view kJson = "application/json";
/// Attempts at one operation when other writers keep winning the race.
inline constexpr int kMaxConflicts = 8;

inline std::string error_json(const Problem& p) {
  std::string out = "{\"error\":{";
  out += "\"code\":";
  append_json_string(out, p.code);
  out += ",\"message\":";
  append_json_string(out, p.message);
  if (!p.extra.empty()) out += "," + p.extra;
  out += "}}";
  return out;
}

inline Reply problem_reply(const Problem& p) { return Reply{p.status, error_json(p)}; }
inline Reply problem_reply(int status, std::string code, std::string message) {
  return problem_reply(Problem{status, std::move(code), std::move(message), ""});
}
inline Reply not_found() {
  return problem_reply(404, "SUBSCRIPTION_NOT_FOUND", "no such subscription");
}
inline Reply storage_problem(const Error& e) {
  return problem_reply(e.code == errc::insufficient_storage ? 507 : 503, "UNAVAILABLE",
                       "subscription state could not be stored: " + e.message);
}

inline std::string stream_seq(uint64_t version) {
  std::string digits = std::to_string(version);
  return std::string(20 - std::min<size_t>(20, digits.size()), '0') + digits;
}

inline std::string new_wake_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "w_";
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) id.push_back(kHex[(a >> (i * 4)) & 15]);
  for (int i = 0; i < 8; ++i) id.push_back(kHex[(b >> (i * 4)) & 15]);
  return id;
}

inline double jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(-1.0, 1.0)(rng);
}

/// The last message of a JSON stream's bytes (messages joined by ',').
inline std::optional<std::string> last_message(const std::string& joined) {
  simdjson::dom::parser parser;
  std::string wrapped = "[" + joined + "]";
  simdjson::dom::array arr;
  if (parser.parse(wrapped).get_array().get(arr)) return std::nullopt;
  std::optional<std::string> last;
  for (auto e : arr) last = simdjson::to_string(e);
  return last;
}

inline std::string url_encode_segment(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}
}  // namespace detail

struct Manager::Impl : std::enable_shared_from_this<Manager::Impl> {
  /// One subscription as this node knows it. Operations on it queue here.
  struct Entry {
    std::string id;
    std::optional<State> state;  ///< nullopt: none (never created, or deleted)
    Offset read_to;              ///< how far its state stream has been read
    bool busy = false;
    std::deque<std::function<void()>> queue;
    int64_t armed_ms = 0;  ///< deadline a timer is set for (0: none)
    /// `state` as of the last finished operation, for readers outside the
    /// queue (stream_written); guarded by Impl::mu.
    std::shared_ptr<const State> snapshot;
    /// Paths written since the queued evaluation took them (Impl::mu).
    std::set<std::string> written;
    bool eval_queued = false;
  };
  using EntryPtr = std::shared_ptr<Entry>;

  /// What an operation decides, given the current state and tails.
  struct Plan {
    std::optional<State> write;                               ///< the new state to persist, if any
    bool erase = false;                                       ///< delete the subscription
    std::function<Reply(const std::optional<State>&)> reply;  ///< after the write
  };
  /// Whose tails an operation reads before deciding: its links' and the
  /// extra paths', or (for the write path, which must stay cheap with many
  /// links) only the extra paths'.
  enum class TailScope { links_and_extra, extra_only };

  using Decide =
      std::function<Plan(const std::optional<State>& current, const Tails& tails, int64_t now)>;

  ManagerOptions options;
  StreamStore& store;
  const Clock& clock;
  SigningKey key;
  std::unique_ptr<WebhookClient> client;  ///< reset by Manager::stop(), after the queues drained
  TimerQueue timers;
  std::atomic<bool> stopped{false};

  Mutex mu;
  std::map<std::string, EntryPtr> entries DS_GUARDED_BY(mu);
  /// Entries with an operation running (their `busy`): stop() waits for 0.
  int busy_entries DS_GUARDED_BY(mu) = 0;
  unsigned deliveries_in_flight DS_GUARDED_BY(mu) = 0;
  std::deque<std::function<void()>> waiting_deliveries DS_GUARDED_BY(mu);

  metrics::Counter delivered_ok, delivered_done, delivery_failures, lease_expiries, wakes_issued,
      conflicts;
  metrics::Gauge retry_queue;

  Impl(ManagerOptions o, StreamStore& s, const Clock& c, SigningKey k,
       std::unique_ptr<WebhookClient> wc)
      : options(std::move(o)), store(s), clock(c), key(std::move(k)), client(std::move(wc)) {}

  EntryPtr entry(const std::string& id);

  // ----------------------------------------------------------- serial queue

  /// Runs `op` once every earlier operation on `e` has finished; `op` must
  /// call finish(e) exactly once when it is done.
  void run(const EntryPtr& e, std::function<void()> op);

  void finish(const EntryPtr& e);

  // ---------------------------------------------------------- reading state

  /// Reads what was appended to e's state stream since it was last read.
  void refresh(const EntryPtr& e, std::function<void(Status)> done);

  /// Tails of `paths` (streams that do not exist are left out).
  void tails_of(std::vector<std::string> paths, std::function<void(Tails)> done);

  // ------------------------------------------------------------ transaction

  /// Reads the state, gathers tails (of its links and `extra`), decides,
  /// persists the decision (deciding again when another writer won the
  /// race), then answers and carries out what changed. `extra` may list
  /// more streams whose tails the decision needs.
  void transact(const std::string& id, std::vector<std::string> extra, Decide decide,
                std::function<void(Reply)> done, TailScope scope = TailScope::links_and_extra);

  void attempt(const EntryPtr& e, std::vector<std::string> extra, Decide decide,
               std::function<void(Reply)> done, int tries, TailScope scope);

  void commit(const EntryPtr& e, Plan plan, std::vector<std::string> extra, Decide decide,
              std::function<void(Reply)> done, int tries, TailScope scope);

  // --------------------------------------------------------- after a change

  /// Carries out what changed between `before` and e's state: a new wake is
  /// delivered (webhook) or announced on the wake stream (pull-wake), and the
  /// timer follows the new deadline.
  void after_change(const EntryPtr& e, const std::optional<State>& before);

  /// Sets a timer for e's next deadline (a lease ending, an attempt due).
  void arm(const EntryPtr& e);

  /// A deadline passed: end an expired lease (and wake again if work is
  /// pending), or make a webhook attempt that is due.
  void tick(const std::string& id);

  // ----------------------------------------------------------------- writes

  /// Links written paths the pattern covers and, when the subscription is
  /// idle and one of them has pending work, issues a wake. Decides on the
  /// written paths' tails only; the wake itself (whose snapshot needs every
  /// link's tail) is a second operation. Never skips on the strength of this
  /// node's view: on a shared store another node may have ended the wake.
  void evaluate_writes(const EntryPtr& e);

  // ------------------------------------------------------------------ sweep

  /// On a store other nodes write too: finds subscriptions made elsewhere,
  /// links streams their patterns match that were written through other
  /// nodes, wakes idle ones with pending work and re-arms every timer from
  /// the current state (a node that died mid-retry leaves its attempt due).
  void sweep();

  void schedule_sweep();

  void reconcile(const std::string& id);

  /// Every path under `prefix`, page by page.
  struct ListWalk {
    std::string prefix;
    std::vector<std::string> paths;
    std::function<void(Result<std::vector<std::string>>)> done;
  };

  void list_all(std::string prefix, std::function<void(Result<std::vector<std::string>>)> done);

  void list_page(const std::shared_ptr<ListWalk>& walk, std::string after);

  // ---------------------------------------------------------------- webhook

  /// Makes one delivery attempt of wake `wake_id`, if it is still current,
  /// undelivered and due: records the attempt (so that no other node makes
  /// it at the same time, and another one makes it if this node dies), then
  /// posts, then records the outcome.
  void deliver(const std::string& id, const std::string& wake_id);

  std::string base_url(const State& s) const;

  std::string webhook_body(const State& s, const Tails& tails, int64_t now) const;

  void post(const std::string& id, const std::string& wake_id, const std::string& url_text,
            std::string body);

  void delivery_done();

  /// Issues a wake if `id` is idle with pending work.
  void wake_if_pending(const std::string& id);

  std::string signing_json(const State& s) const;

  Reply api_reply(const State& s, int status, const Tails& tails) const;
};

}  // namespace ds::subs
