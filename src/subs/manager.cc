#include "subs/manager.h"

#include <simdjson.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>

#include "common/json_string.h"
#include "common/log.h"
#include "common/thread_annotations.h"
#include "common/timer_queue.h"
#include "subs/glob.h"
#include "subs/subscription.h"
#include "subs/tokens.h"
#include "subs/webhook_url.h"

namespace ds::subs {
namespace {

constexpr std::string_view kStatePrefix = "__ds/subscriptions/";
constexpr std::string_view kJson = "application/json";
/// Attempts at one operation when other writers keep winning the race.
constexpr int kMaxConflicts = 8;

std::string error_json(const Problem& p) {
  std::string out = "{\"error\":{";
  out += "\"code\":";
  append_json_string(out, p.code);
  out += ",\"message\":";
  append_json_string(out, p.message);
  if (!p.extra.empty()) out += "," + p.extra;
  out += "}}";
  return out;
}

Reply problem_reply(const Problem& p) { return Reply{p.status, error_json(p)}; }
Reply problem_reply(int status, std::string code, std::string message) {
  return problem_reply(Problem{status, std::move(code), std::move(message), ""});
}
Reply not_found() { return problem_reply(404, "SUBSCRIPTION_NOT_FOUND", "no such subscription"); }
Reply storage_problem(const Error& e) {
  return problem_reply(e.code == errc::insufficient_storage ? 507 : 503, "UNAVAILABLE",
                       "subscription state could not be stored: " + e.message);
}

std::string stream_seq(uint64_t version) {
  std::string digits = std::to_string(version);
  return std::string(20 - std::min<size_t>(20, digits.size()), '0') + digits;
}

std::string new_wake_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "w_";
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) id.push_back(kHex[(a >> (i * 4)) & 15]);
  for (int i = 0; i < 8; ++i) id.push_back(kHex[(b >> (i * 4)) & 15]);
  return id;
}

double jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(-1.0, 1.0)(rng);
}

/// The last message of a JSON stream's bytes (messages joined by ',').
std::optional<std::string> last_message(const std::string& joined) {
  simdjson::dom::parser parser;
  std::string wrapped = "[" + joined + "]";
  simdjson::dom::array arr;
  if (parser.parse(wrapped).get_array().get(arr)) return std::nullopt;
  std::optional<std::string> last;
  for (auto e : arr) last = simdjson::to_string(e);
  return last;
}

std::string url_encode_segment(std::string_view s) {
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

}  // namespace

std::string state_stream(std::string_view id) {
  return std::string(kStatePrefix) + std::string(id);
}

bool valid_subscription_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (unsigned char c : id)
    if (c < 0x20 || c == 0x7f || c == '/') return false;
  return true;
}

// ====================================================================== Impl

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
  using Decide =
      std::function<Plan(const std::optional<State>& current, const Tails& tails, int64_t now)>;

  ManagerOptions options;
  StreamStore& store;
  const Clock& clock;
  SigningKey key;
  std::unique_ptr<WebhookClient> client;
  TimerQueue timers;
  std::atomic<bool> stopped{false};

  Mutex mu;
  std::map<std::string, EntryPtr> entries DS_GUARDED_BY(mu);
  unsigned deliveries_in_flight DS_GUARDED_BY(mu) = 0;
  std::deque<std::function<void()>> waiting_deliveries DS_GUARDED_BY(mu);

  metrics::Counter delivered_ok, delivered_done, delivery_failures, lease_expiries, wakes_issued,
      conflicts;
  metrics::Gauge retry_queue;

  Impl(ManagerOptions o, StreamStore& s, const Clock& c, SigningKey k,
       std::unique_ptr<WebhookClient> wc)
      : options(std::move(o)), store(s), clock(c), key(std::move(k)), client(std::move(wc)) {}

  EntryPtr entry(const std::string& id) {
    MutexLock lock(mu);
    auto& e = entries[id];
    if (!e) {
      e = std::make_shared<Entry>();
      e->id = id;
    }
    return e;
  }

  // ----------------------------------------------------------- serial queue

  /// Runs `op` once every earlier operation on `e` has finished; `op` must
  /// call finish(e) exactly once when it is done.
  void run(const EntryPtr& e, std::function<void()> op) {
    {
      MutexLock lock(mu);
      if (e->busy) {
        e->queue.push_back(std::move(op));
        return;
      }
      e->busy = true;
    }
    op();
  }

  void finish(const EntryPtr& e) {
    std::function<void()> next;
    {
      MutexLock lock(mu);
      e->snapshot = e->state ? std::make_shared<const State>(*e->state) : nullptr;
      if (e->queue.empty()) {
        e->busy = false;
        return;
      }
      next = std::move(e->queue.front());
      e->queue.pop_front();
    }
    next();
  }

  // ---------------------------------------------------------- reading state

  /// Reads what was appended to e's state stream since it was last read.
  void refresh(const EntryPtr& e, std::function<void(Status)> done) {
    ReadRequest rr;
    rr.path = state_stream(e->id);
    rr.from = e->read_to == Offset{} ? OffsetSpec::start() : OffsetSpec::position(e->read_to);
    auto self = shared_from_this();
    store.read(std::move(rr), [self, e, done = std::move(done)](Result<ReadOutcome> r) mutable {
      if (!r) {
        if (r.error().code == errc::not_found || r.error().code == errc::gone) {
          e->state.reset();
          e->read_to = Offset{};
          done(Unit{});
          return;
        }
        done(r.error());
        return;
      }
      std::string joined;
      for (const auto& rec : r->records) {
        if (rec->bytes.empty()) continue;
        if (!joined.empty()) joined.push_back(',');
        joined += rec->bytes;
      }
      if (!joined.empty()) {
        auto msg = last_message(joined);
        auto parsed = msg ? from_record(*msg) : std::nullopt;
        if (!parsed) {
          done(Error(errc::storage_failure, "unreadable state of subscription " + e->id));
          return;
        }
        e->state = std::move(parsed);
      }
      e->read_to = r->next;
      if (!r->up_to_date) {
        self->refresh(e, std::move(done));
        return;
      }
      done(Unit{});
    });
  }

  /// Tails of `paths` (streams that do not exist are left out).
  void tails_of(std::vector<std::string> paths, std::function<void(Tails)> done) {
    if (paths.empty()) {
      done({});
      return;
    }
    struct Gather {
      Mutex mu;
      Tails tails DS_GUARDED_BY(mu);
      size_t left DS_GUARDED_BY(mu) = 0;
      std::function<void(Tails)> done;
    };
    auto g = std::make_shared<Gather>();
    g->done = std::move(done);
    {
      MutexLock lock(g->mu);
      g->left = paths.size();
    }
    for (auto& p : paths) {
      store.head(p, [g, p](Result<StreamMeta> m) {
        bool last = false;
        {
          MutexLock lock(g->mu);
          if (m) g->tails[p] = m->tail;
          last = --g->left == 0;
        }
        if (!last) return;
        Tails t;
        {
          MutexLock lock(g->mu);
          t = std::move(g->tails);
        }
        g->done(std::move(t));
      });
    }
  }

  // ------------------------------------------------------------ transaction

  /// Reads the state, gathers tails (of its links and `extra`), decides,
  /// persists the decision (deciding again when another writer won the
  /// race), then answers and carries out what changed. `extra` may list
  /// more streams whose tails the decision needs.
  void transact(const std::string& id, std::vector<std::string> extra, Decide decide,
                std::function<void(Reply)> done) {
    auto e = entry(id);
    auto self = shared_from_this();
    run(e, [self, e, extra = std::move(extra), decide = std::move(decide),
            done = std::move(done)]() mutable {
      self->attempt(e, std::move(extra), std::move(decide), std::move(done), 0);
    });
  }

  void attempt(const EntryPtr& e, std::vector<std::string> extra, Decide decide,
               std::function<void(Reply)> done, int tries) {
    auto self = shared_from_this();
    refresh(e, [self, e, extra = std::move(extra), decide = std::move(decide),
                done = std::move(done), tries](Status st) mutable {
      if (!st) {
        done(storage_problem(st.error()));
        self->finish(e);
        return;
      }
      std::vector<std::string> paths = extra;
      if (e->state)
        for (const auto& [p, link] : e->state->links) paths.push_back(p);
      std::sort(paths.begin(), paths.end());
      paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
      self->tails_of(std::move(paths),
                     [self, e, extra = std::move(extra), decide = std::move(decide),
                      done = std::move(done), tries](Tails tails) mutable {
                       Plan plan = decide(e->state, tails, self->clock.now_ms());
                       self->commit(e, std::move(plan), std::move(extra), std::move(decide),
                                    std::move(done), tries);
                     });
    });
  }

  void commit(const EntryPtr& e, Plan plan, std::vector<std::string> extra, Decide decide,
              std::function<void(Reply)> done, int tries) {
    auto self = shared_from_this();
    std::optional<State> before = e->state;
    auto finished = [self, e, before, reply = plan.reply, done](Status st) mutable {
      if (!st) {
        done(storage_problem(st.error()));
      } else {
        done(reply(e->state));
        self->after_change(e, before);
      }
      self->finish(e);
    };
    auto conflict = [self, e, extra = std::move(extra), decide = std::move(decide), done,
                     tries]() mutable {
      self->conflicts.inc();
      if (tries + 1 >= kMaxConflicts) {
        done(problem_reply(503, "UNAVAILABLE", "too much contention on this subscription"));
        self->finish(e);
        return;
      }
      self->attempt(e, std::move(extra), std::move(decide), std::move(done), tries + 1);
    };
    if (plan.erase) {
      store.remove(state_stream(e->id), [e, finished](Result<Unit> r) mutable {
        if (!r && r.error().code != errc::not_found) {
          finished(r.error());
          return;
        }
        e->state.reset();
        e->read_to = Offset{};
        finished(Unit{});
      });
      return;
    }
    if (!plan.write) {
      finished(Unit{});
      return;
    }
    State next = std::move(*plan.write);
    next.version = (e->state ? e->state->version : 0) + 1;
    std::string record = to_record(next);
    if (next.version == 1) {
      CreateRequest cr;
      cr.path = state_stream(e->id);
      cr.config.content_type = std::string(kJson);
      cr.body = record;
      store.create(std::move(cr), [e, next = std::move(next), finished,
                                   conflict](Result<CreateOutcome> r) mutable {
        if (!r) {
          finished(r.error());
        } else if (!r->created) {
          conflict();  // created elsewhere in the meantime
        } else {
          e->state = std::move(next);
          e->read_to = r->meta.tail;
          finished(Unit{});
        }
      });
      return;
    }
    AppendRequest ar;
    ar.path = state_stream(e->id);
    ar.content_type = std::string(kJson);
    ar.body = std::move(record);
    ar.stream_seq = stream_seq(next.version);
    store.append(std::move(ar),
                 [e, next = std::move(next), finished, conflict](Result<AppendOutcome> r) mutable {
                   if (!r) {
                     if (r.error().code == errc::stream_seq_regression ||
                         r.error().code == errc::not_found || r.error().code == errc::gone) {
                       conflict();  // another writer won, or the subscription was deleted
                       return;
                     }
                     finished(r.error());
                     return;
                   }
                   e->state = std::move(next);
                   e->read_to = r->tail;
                   finished(Unit{});
                 });
  }

  // --------------------------------------------------------- after a change

  /// Carries out what changed between `before` and e's state: a new wake is
  /// delivered (webhook) or announced on the wake stream (pull-wake), and the
  /// timer follows the new deadline.
  void after_change(const EntryPtr& e, const std::optional<State>& before) {
    if (!e->state) return;
    const State& s = *e->state;
    const bool new_wake = s.wake && (!before || !before->wake || before->wake->id != s.wake->id);
    if (new_wake) {
      wakes_issued.inc();
      if (s.config.type == Type::webhook) {
        deliver(s.id, s.wake->id);
      } else {
        std::string first;
        for (const auto& [path, tail] : s.wake->snapshot) {
          auto it = s.links.find(path);
          bool pending = it != s.links.end() &&
                         (it->second.acked ? tail > *it->second.acked : tail > Offset{});
          if (pending) {
            first = path;
            break;
          }
        }
        AppendRequest ar;
        ar.path = s.config.wake_stream;
        ar.content_type = std::string(kJson);
        ar.body = wake_event_json(s, first, clock.now_ms());
        std::string wake_stream = s.config.wake_stream;
        store.append(std::move(ar), [wake_stream](Result<AppendOutcome> r) {
          if (!r)
            log::warn("subscriptions: wake event not written",
                      {{"wake_stream", wake_stream}, {"reason", r.error().message}});
        });
      }
    }
    arm(e);
  }

  /// Sets a timer for e's next deadline (a lease ending, an attempt due).
  void arm(const EntryPtr& e) {
    if (!e->state || stopped) return;
    int64_t deadline = next_deadline_ms(*e->state);
    if (deadline == 0) return;
    {
      MutexLock lock(mu);
      if (e->armed_ms != 0 && e->armed_ms <= deadline) return;  // an earlier timer will re-arm
      e->armed_ms = deadline;
    }
    int64_t delay = std::max<int64_t>(0, deadline - clock.now_ms());
    std::weak_ptr<Impl> weak = shared_from_this();
    std::string id = e->id;
    timers.after(std::chrono::milliseconds(delay), [weak, id] {
      if (auto self = weak.lock()) self->tick(id);
    });
  }

  /// A deadline passed: end an expired lease (and wake again if work is
  /// pending), or make a webhook attempt that is due.
  void tick(const std::string& id) {
    if (stopped) return;
    auto e = entry(id);
    {
      MutexLock lock(mu);
      e->armed_ms = 0;
    }
    auto self = shared_from_this();
    auto due = std::make_shared<std::string>();  // a webhook attempt due: its wake id
    transact(
        id, {},
        [self, due](const std::optional<State>& cur, const Tails& tails, int64_t now) {
          Plan plan;
          plan.reply = [](const std::optional<State>&) { return Reply{}; };
          if (!cur || !cur->wake) return plan;
          State s = *cur;
          if (expire_lease(s, now)) {
            self->lease_expiries.inc();
            maybe_wake(s, tails, new_wake_id(), now);
            plan.write = std::move(s);
          } else if (s.config.type == Type::webhook && !s.wake->delivered &&
                     s.wake->next_attempt_ms <= now) {
            // Due after a failure, or after the node making the attempt died.
            *due = s.wake->id;
          }
          return plan;
        },
        [self, e, id, due](Reply) {
          if (!due->empty()) {
            self->deliver(id, *due);
          } else {
            self->arm(e);
          }
        });
  }

  // ----------------------------------------------------------------- writes

  /// Links written paths the pattern covers and, when the subscription is
  /// idle and one of them has pending work, issues a wake. Decides on the
  /// written paths' tails only; the wake itself (whose snapshot needs every
  /// link's tail) is a second operation. Never skips on the strength of this
  /// node's view: on a shared store another node may have ended the wake.
  void evaluate_writes(const EntryPtr& e) {
    auto self = shared_from_this();
    auto paths = std::make_shared<std::vector<std::string>>();
    auto wake = std::make_shared<bool>(false);
    run(e, [self, e, paths, wake]() mutable {
      {
        MutexLock lock(self->mu);
        paths->assign(e->written.begin(), e->written.end());
        e->written.clear();
        e->eval_queued = false;
      }
      self->refresh(e, [self, e, paths, wake](Status st) {
        if (!st || !e->state || e->state->wake) {
          self->finish(e);
          return;
        }
        self->tails_of(*paths, [self, e, paths, wake](Tails tails) {
          State s = *e->state;
          bool linked = false;
          for (const auto& p : *paths)
            if (!s.links.count(p) && note_write(s, p)) linked = true;
          *wake = has_pending(s, tails);
          Plan plan;
          plan.reply = [](const std::optional<State>&) { return Reply{}; };
          if (linked) plan.write = std::move(s);
          self->commit(
              e, std::move(plan), {}, nullptr,
              [self, e, wake](Reply) {
                if (*wake) self->wake_if_pending(e->id);
              },
              kMaxConflicts);
        });
      });
    });
  }

  // ------------------------------------------------------------------ sweep

  /// On a store other nodes write too: finds subscriptions made elsewhere,
  /// links streams their patterns match that were written through other
  /// nodes, wakes idle ones with pending work and re-arms every timer from
  /// the current state (a node that died mid-retry leaves its attempt due).
  void sweep() {
    if (stopped) return;
    auto self = shared_from_this();
    list_all(std::string(kStatePrefix), [self](Result<std::vector<std::string>> r) {
      if (r) {
        for (const auto& p : *r) self->reconcile(p.substr(kStatePrefix.size()));
      }
      self->schedule_sweep();
    });
  }

  void schedule_sweep() {
    if (stopped || options.sweep_interval_ms <= 0) return;
    std::weak_ptr<Impl> weak = shared_from_this();
    timers.after(std::chrono::milliseconds(options.sweep_interval_ms), [weak] {
      if (auto self = weak.lock()) self->sweep();
    });
  }

  void reconcile(const std::string& id) {
    auto e = entry(id);
    std::optional<std::string> pattern;
    {
      MutexLock lock(mu);
      if (e->snapshot && e->snapshot->config.pattern) pattern = e->snapshot->config.pattern;
    }
    auto self = shared_from_this();
    auto settle = [self, id](std::vector<std::string> matches) {
      self->transact(
          id, matches,
          [matches](const std::optional<State>& cur, const Tails& tails, int64_t now) {
            Plan plan;
            plan.reply = [](const std::optional<State>&) { return Reply{}; };
            if (!cur) return plan;
            State s = *cur;
            bool changed = false;
            for (const auto& p : matches)
              if (!s.links.count(p) && note_write(s, p)) changed = true;
            if (!s.wake) changed = maybe_wake(s, tails, new_wake_id(), now) || changed;
            if (changed) plan.write = std::move(s);
            return plan;
          },
          [self, id](Reply) {
            auto e = self->entry(id);
            self->arm(e);
          });
    };
    if (!pattern) {
      settle({});
      return;
    }
    std::string glob = *pattern;
    list_all(glob_literal_prefix(glob), [settle, glob](Result<std::vector<std::string>> r) {
      std::vector<std::string> matches;
      if (r)
        for (auto& p : *r)
          if (!p.starts_with("__ds/") && glob_match(glob, p)) matches.push_back(std::move(p));
      settle(std::move(matches));
    });
  }

  /// Every path under `prefix`, page by page.
  struct ListWalk {
    std::string prefix;
    std::vector<std::string> paths;
    std::function<void(Result<std::vector<std::string>>)> done;
  };

  void list_all(std::string prefix, std::function<void(Result<std::vector<std::string>>)> done) {
    auto walk = std::make_shared<ListWalk>();
    walk->prefix = std::move(prefix);
    walk->done = std::move(done);
    list_page(walk, "");
  }

  void list_page(const std::shared_ptr<ListWalk>& walk, std::string after) {
    ListRequest lr;
    lr.prefix = walk->prefix;
    lr.start_after = std::move(after);
    auto self = shared_from_this();
    store.list(std::move(lr), [self, walk](Result<ListOutcome> r) {
      if (!r) {
        walk->done(r.error());
        return;
      }
      const bool more = r->more && !r->paths.empty();
      for (auto& p : r->paths) walk->paths.push_back(std::move(p));
      if (more) {
        self->list_page(walk, walk->paths.back());
        return;
      }
      walk->done(std::move(walk->paths));
    });
  }

  // ---------------------------------------------------------------- webhook

  /// Makes one delivery attempt of wake `wake_id`, if it is still current,
  /// undelivered and due: records the attempt (so that no other node makes
  /// it at the same time, and another one makes it if this node dies), then
  /// posts, then records the outcome.
  void deliver(const std::string& id, const std::string& wake_id) {
    {
      MutexLock lock(mu);
      if (deliveries_in_flight >= options.max_deliveries) {
        std::weak_ptr<Impl> weak = shared_from_this();
        waiting_deliveries.push_back([weak, id, wake_id] {
          if (auto self = weak.lock()) self->deliver(id, wake_id);
        });
        retry_queue.set(static_cast<int64_t>(waiting_deliveries.size()));
        return;
      }
      ++deliveries_in_flight;
    }
    auto self = shared_from_this();
    auto body = std::make_shared<std::string>();
    auto url = std::make_shared<std::string>();
    auto attempt = std::make_shared<bool>(false);
    transact(
        id, {},
        [self, wake_id, body, url, attempt](const std::optional<State>& cur, const Tails& tails,
                                            int64_t now) {
          Plan plan;
          plan.reply = [](const std::optional<State>&) { return Reply{}; };
          if (!cur || !cur->wake || cur->wake->id != wake_id || cur->wake->delivered ||
              cur->wake->next_attempt_ms > now)
            return plan;
          State s = *cur;
          attempt_started(s, now + self->options.attempt_timeout_ms + kRetryBaseMs);
          *body = self->webhook_body(s, tails, now);
          *url = s.config.webhook_url;
          *attempt = true;
          plan.write = std::move(s);
          return plan;
        },
        [self, id, wake_id, body, url, attempt](Reply) {
          if (!*attempt || self->stopped) {
            self->delivery_done();
            return;
          }
          self->post(id, wake_id, *url, std::move(*body));
        });
  }

  std::string base_url(const State& s) const {
    return options.public_url.empty() ? s.base_url : options.public_url;
  }

  std::string webhook_body(const State& s, const Tails& tails, int64_t now) const {
    WakeToken t;
    t.subscription = s.id;
    t.generation = s.generation;
    t.wake_id = s.wake->id;
    t.expires_unix_ms = now + options.token_ttl_ms;
    std::string out = "{\"subscription_id\":";
    append_json_string(out, s.id);
    out += ",\"wake_id\":";
    append_json_string(out, s.wake->id);
    out += ",\"generation\":" + std::to_string(s.generation);
    out += ",\"streams\":" + streams_json(s, tails);
    out += ",\"callback_url\":";
    append_json_string(
        out, base_url(s) + "__ds/subscriptions/" + url_encode_segment(s.id) + "/callback");
    out += ",\"callback_token\":";
    append_json_string(out, issue_wake_token(key, t));
    out += "}";
    return out;
  }

  void post(const std::string& id, const std::string& wake_id, const std::string& url_text,
            std::string body) {
    auto self = shared_from_this();
    auto url = parse_webhook_url(url_text, options.allow_localhost);
    auto record = [self, id, wake_id](bool ok, bool done) {
      self->delivery_done();
      self->transact(
          id, {},
          [self, wake_id, ok, done](const std::optional<State>& cur, const Tails&, int64_t now) {
            Plan plan;
            plan.reply = [](const std::optional<State>&) { return Reply{}; };
            if (!cur || !cur->wake || cur->wake->id != wake_id || cur->wake->delivered)
              return plan;  // acked by a callback meanwhile, or superseded
            State s = *cur;
            if (ok) {
              delivery_succeeded(s, done, now);
            } else {
              delivery_failed(s, now, jitter());
            }
            plan.write = std::move(s);
            return plan;
          },
          [self, id](Reply) {
            // After an auto-ack, pending work wakes again.
            self->wake_if_pending(id);
          });
    };
    if (!url) {
      log::warn("subscriptions: webhook URL rejected",
                {{"subscription", id}, {"reason", url.error().message}});
      delivery_failures.inc();
      record(false, false);
      return;
    }
    std::vector<std::pair<std::string, std::string>> headers;
    headers.emplace_back("Webhook-Signature",
                         webhook_signature_header(key, clock.now_ms() / 1000, body));
    client->post(
        *url, std::move(headers), std::move(body),
        [self, record](Result<WebhookResponse> r) mutable {
          if (self->stopped) return;
          if (!r || r->status < 200 || r->status > 299) {
            self->delivery_failures.inc();
            record(false, false);
            return;
          }
          bool done = false;
          simdjson::dom::parser parser;
          simdjson::dom::object o;
          bool flag = false;
          if (!parser.parse(r->body).get_object().get(o) && !o["done"].get_bool().get(flag))
            done = flag;
          (done ? self->delivered_done : self->delivered_ok).inc();
          record(true, done);
        });
  }

  void delivery_done() {
    std::function<void()> next;
    {
      MutexLock lock(mu);
      --deliveries_in_flight;
      if (!waiting_deliveries.empty()) {
        next = std::move(waiting_deliveries.front());
        waiting_deliveries.pop_front();
      }
      retry_queue.set(static_cast<int64_t>(waiting_deliveries.size()));
    }
    if (next) next();
  }

  /// Issues a wake if `id` is idle with pending work.
  void wake_if_pending(const std::string& id) {
    transact(
        id, {},
        [](const std::optional<State>& cur, const Tails& tails, int64_t now) {
          Plan plan;
          plan.reply = [](const std::optional<State>&) { return Reply{}; };
          if (!cur || cur->wake) return plan;
          State s = *cur;
          if (maybe_wake(s, tails, new_wake_id(), now)) plan.write = std::move(s);
          return plan;
        },
        [](Reply) {});
  }

  std::string signing_json(const State& s) const {
    std::string out = "{\"alg\":\"ed25519\",\"kid\":";
    append_json_string(out, key.kid());
    out += ",\"jwks_url\":";
    append_json_string(out, base_url(s) + "__ds/jwks.json");
    out += "}";
    return out;
  }

  Reply api_reply(const State& s, int status, const Tails& tails) const {
    return Reply{status,
                 to_api_json(s, tails, s.config.type == Type::webhook ? signing_json(s) : "")};
  }
};

// ==================================================================== Manager

Manager::Manager(ManagerOptions options, StreamStore& store, const Clock& clock, SigningKey key,
                 std::unique_ptr<WebhookClient> client, metrics::Registry& registry)
    : impl_(std::make_shared<Impl>(std::move(options), store, clock, std::move(key),
                                   std::move(client))) {
  std::weak_ptr<Impl> weak = impl_;
  registry.add([weak](metrics::Exposition& x) {
    auto i = weak.lock();
    if (!i) return;
    x.family("dstreamd_subscription_deliveries_total",
             "Webhook delivery attempts, by outcome (ok: 2xx; done: 2xx with {\"done\":true}; "
             "failed: error, timeout or non-2xx)",
             metrics::Exposition::Type::counter);
    x.sample("dstreamd_subscription_deliveries_total", {{"outcome", "ok"}},
             i->delivered_ok.value());
    x.sample("dstreamd_subscription_deliveries_total", {{"outcome", "done"}},
             i->delivered_done.value());
    x.sample("dstreamd_subscription_deliveries_total", {{"outcome", "failed"}},
             i->delivery_failures.value());
    x.counter("dstreamd_subscription_wakes_total", "Wakes issued (new generations)",
              i->wakes_issued.value());
    x.counter("dstreamd_subscription_lease_expiries_total",
              "Leases that ran out without a done ack", i->lease_expiries.value());
    x.counter("dstreamd_subscription_write_conflicts_total",
              "Subscription state writes lost to a concurrent writer (decided again)",
              i->conflicts.value());
    x.gauge("dstreamd_subscription_delivery_queue", "Webhook attempts waiting for a delivery slot",
            i->retry_queue.value());
  });
}

Manager::~Manager() { stop(); }

void Manager::stop() { impl_->stopped = true; }

void Manager::start(std::function<void(Status)> done) {
  auto impl = impl_;
  impl_->list_all(std::string(kStatePrefix), [impl, done = std::move(done)](
                                                 Result<std::vector<std::string>> r) {
    if (!r) {
      done(r.error());
      return;
    }
    // Load each one; its timers arm as it loads.
    for (const auto& p : *r) impl->reconcile(p.substr(kStatePrefix.size()));
    log::info("subscriptions loaded", {{"count", static_cast<uint64_t>(r->size())}});
    impl->schedule_sweep();
    done(Unit{});
  });
}

void Manager::put(std::string id, std::string body, std::string base_url, Done done) {
  if (!valid_subscription_id(id)) {
    done(problem_reply(400, "INVALID_REQUEST", "invalid subscription id"));
    return;
  }
  auto parsed = parse_config(body);
  if (auto* p = std::get_if<Problem>(&parsed)) {
    done(problem_reply(*p));
    return;
  }
  auto config = std::get<Config>(std::move(parsed));
  if (config.type == Type::webhook) {
    auto url = parse_webhook_url(config.webhook_url, impl_->options.allow_localhost);
    if (!url) {
      done(problem_reply(400, "WEBHOOK_URL_REJECTED", url.error().message));
      return;
    }
  }
  auto impl = impl_;
  // The streams to link at their tails: explicit ones and, for a pattern,
  // the existing matches (listed first, outside the subscription's queue).
  auto link_and_create = [impl, id, config, base_url,
                          done](std::vector<std::string> existing) mutable {
    std::vector<std::string> extra = config.streams;
    extra.insert(extra.end(), existing.begin(), existing.end());
    impl->transact(
        id, std::move(extra),
        [impl, id, config, base_url, existing](const std::optional<State>& cur, const Tails& tails,
                                               int64_t now) {
          Impl::Plan plan;
          if (cur) {
            const bool same = cur->config.canonical() == config.canonical();
            plan.reply = [impl, same, tails](const std::optional<State>& s) {
              if (!same)
                return problem_reply(409, "SUBSCRIPTION_ALREADY_EXISTS",
                                     "a subscription with this id exists with another "
                                     "configuration");
              return impl->api_reply(*s, 200, tails);
            };
            return plan;
          }
          plan.write = create_state(id, config, base_url, now, existing, tails);
          plan.reply = [impl, tails](const std::optional<State>& s) {
            return impl->api_reply(*s, 201, tails);
          };
          return plan;
        },
        std::move(done));
  };
  if (!config.pattern) {
    link_and_create({});
    return;
  }
  std::string glob = *config.pattern;
  impl->list_all(glob_literal_prefix(glob),
                 [glob, link_and_create, done](Result<std::vector<std::string>> r) mutable {
                   if (!r) {
                     done(storage_problem(r.error()));
                     return;
                   }
                   std::vector<std::string> matches;
                   for (auto& p : *r)
                     if (!p.starts_with("__ds/") && glob_match(glob, p))
                       matches.push_back(std::move(p));
                   link_and_create(std::move(matches));
                 });
}

void Manager::get(std::string id, std::string base_url, Done done) {
  (void)base_url;
  auto impl = impl_;
  impl_->transact(
      id, {},
      [impl](const std::optional<State>&, const Tails& tails, int64_t) {
        Impl::Plan plan;
        plan.reply = [impl, tails](const std::optional<State>& s) {
          return s ? impl->api_reply(*s, 200, tails) : not_found();
        };
        return plan;
      },
      std::move(done));
}

void Manager::remove(std::string id, Done done) {
  impl_->transact(
      id, {},
      [](const std::optional<State>& cur, const Tails&, int64_t) {
        Impl::Plan plan;
        plan.erase = cur.has_value();
        plan.reply = [](const std::optional<State>&) { return Reply{204, ""}; };
        return plan;
      },
      std::move(done));
}

void Manager::add_streams(std::string id, std::string body, Done done) {
  auto parsed = parse_stream_list(body);
  if (auto* p = std::get_if<Problem>(&parsed)) {
    done(problem_reply(*p));
    return;
  }
  auto paths = std::get<0>(std::move(parsed));
  impl_->transact(
      id, paths,
      [paths](const std::optional<State>& cur, const Tails& tails, int64_t) {
        Impl::Plan plan;
        plan.reply = [](const std::optional<State>& s) { return s ? Reply{204, ""} : not_found(); };
        if (!cur) return plan;
        State s = *cur;
        add_explicit(s, paths, tails);
        plan.write = std::move(s);
        return plan;
      },
      std::move(done));
}

void Manager::remove_stream(std::string id, std::string path, Done done) {
  path = normalize_path(path);
  impl_->transact(
      id, {},
      [path](const std::optional<State>& cur, const Tails&, int64_t) {
        Impl::Plan plan;
        plan.reply = [](const std::optional<State>& s) { return s ? Reply{204, ""} : not_found(); };
        if (!cur) return plan;
        auto it = cur->links.find(path);
        if (it == cur->links.end() || !it->second.explicit_link) return plan;
        State s = *cur;
        remove_explicit(s, path);
        plan.write = std::move(s);
        return plan;
      },
      std::move(done));
}

void Manager::wake_action(std::string action, std::string id, std::string token, std::string body,
                          Done done) {
  auto checked = check_wake_token(impl_->key, token, id, impl_->clock.now_ms());
  if (auto* problem = std::get_if<TokenProblem>(&checked)) {
    const bool expired = *problem == TokenProblem::expired;
    done(problem_reply(401, expired ? "TOKEN_EXPIRED" : "TOKEN_INVALID",
                       expired ? "the token has expired" : "the token is not valid"));
    return;
  }
  WakeToken claims = std::get<WakeToken>(std::move(checked));
  auto parsed = parse_ack(body);
  if (auto* p = std::get_if<Problem>(&parsed)) {
    done(problem_reply(*p));
    return;
  }
  AckRequest req = std::get<AckRequest>(std::move(parsed));
  if (action == "release") req.acks.clear();
  auto impl = impl_;
  impl_->transact(
      id, {},
      [action, claims, req](const std::optional<State>& cur, const Tails& tails, int64_t now) {
        Impl::Plan plan;
        if (!cur) {
          plan.reply = [](const std::optional<State>&) { return not_found(); };
          return plan;
        }
        if (action != "callback" && cur->config.type != Type::pull_wake) {
          plan.reply = [](const std::optional<State>&) {
            return problem_reply(400, "INVALID_REQUEST", "the subscription is not pull-wake");
          };
          return plan;
        }
        std::optional<Problem> problem;
        if (claims.wake_id != req.wake_id)
          problem = Problem{409, "FENCED", "the token belongs to another wake", ""};
        if (!problem) problem = fence(*cur, claims.generation, req.generation, req.wake_id);
        State s = *cur;
        if (!problem && action == "release") {
          release(s);
        } else if (!problem) {
          problem = apply_ack(s, req, tails, now);
        }
        if (problem) {
          plan.reply = [p = *problem](const std::optional<State>&) { return problem_reply(p); };
          return plan;
        }
        bool next_wake = false;
        if (!s.wake) next_wake = maybe_wake(s, tails, new_wake_id(), now);
        plan.write = std::move(s);
        const bool is_release = action == "release";
        plan.reply = [next_wake, is_release](const std::optional<State>&) {
          if (is_release) return Reply{204, ""};
          return Reply{200, next_wake ? "{\"ok\":true,\"next_wake\":true}"
                                      : "{\"ok\":true,\"next_wake\":false}"};
        };
        return plan;
      },
      std::move(done));
}

void Manager::claim(std::string id, std::string body, Done done) {
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  std::string_view worker;
  if (parser.parse(body).get_object().get(o) || o["worker"].get_string().get(worker) ||
      worker.empty()) {
    done(problem_reply(400, "INVALID_REQUEST", "worker must be a non-empty string"));
    return;
  }
  auto impl = impl_;
  std::string name(worker);
  impl_->transact(
      id, {},
      [impl, name](const std::optional<State>& cur, const Tails& tails, int64_t now) {
        Impl::Plan plan;
        if (!cur) {
          plan.reply = [](const std::optional<State>&) { return not_found(); };
          return plan;
        }
        if (cur->config.type != Type::pull_wake) {
          plan.reply = [](const std::optional<State>&) {
            return problem_reply(400, "INVALID_REQUEST", "the subscription is not pull-wake");
          };
          return plan;
        }
        State s = *cur;
        if (auto problem = subs::claim(s, name, tails, new_wake_id(), now)) {
          plan.reply = [p = *problem](const std::optional<State>&) { return problem_reply(p); };
          return plan;
        }
        WakeToken t;
        t.subscription = s.id;
        t.generation = s.generation;
        t.wake_id = s.wake->id;
        t.expires_unix_ms = now + impl->options.token_ttl_ms;
        std::string answer = "{\"wake_id\":";
        append_json_string(answer, s.wake->id);
        answer += ",\"generation\":" + std::to_string(s.generation) + ",\"token\":";
        append_json_string(answer, issue_wake_token(impl->key, t));
        answer += ",\"streams\":" + streams_json(s, tails);
        answer += ",\"lease_ttl_ms\":" + std::to_string(s.config.lease_ttl_ms) + "}";
        plan.write = std::move(s);
        plan.reply = [answer](const std::optional<State>&) { return Reply{200, answer}; };
        return plan;
      },
      std::move(done));
}

Reply Manager::jwks() const {
  Reply r{200, "{\"keys\":[" + impl_->key.public_jwk_json() + "]}", "application/jwk-set+json"};
  r.cacheable = true;
  return r;
}

void Manager::stream_written(const std::string& path) {
  if (path.starts_with("__ds/")) return;
  std::vector<Impl::EntryPtr> evaluate;
  {
    MutexLock lock(impl_->mu);
    for (auto& [id, e] : impl_->entries) {
      if (!e->snapshot) continue;
      const State& s = *e->snapshot;
      if (!s.links.count(path) && !(s.config.pattern && glob_match(*s.config.pattern, path)))
        continue;
      // Writes coalesce: one evaluation queued per subscription at a time
      // takes every path written until it runs.
      e->written.insert(path);
      if (e->eval_queued) continue;
      e->eval_queued = true;
      evaluate.push_back(e);
    }
  }
  for (const auto& e : evaluate) impl_->evaluate_writes(e);
}

void Manager::stream_deleted(const std::string& path) {
  if (path.starts_with("__ds/")) return;
  std::vector<std::string> ids;
  {
    MutexLock lock(impl_->mu);
    for (auto& [id, e] : impl_->entries)
      if (e->snapshot && e->snapshot->links.count(path)) ids.push_back(id);
  }
  for (const auto& id : ids) {
    impl_->transact(
        id, {},
        [path](const std::optional<State>& cur, const Tails&, int64_t) {
          Impl::Plan plan;
          plan.reply = [](const std::optional<State>&) { return Reply{}; };
          if (!cur || !cur->links.count(path)) return plan;
          State s = *cur;
          s.links.erase(path);
          plan.write = std::move(s);
          return plan;
        },
        [](Reply) {});
  }
}

}  // namespace ds::subs
