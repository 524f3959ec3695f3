// What the manager does without a request (subs/manager_impl.h): wakes after
// writes, timers for leases and attempts, the sweep over a shared store, and
// webhook delivery.

#include "common/log.h"
#include "subs/glob.h"
#include "subs/manager_impl.h"
#include "subs/tokens.h"
#include "subs/webhook_url.h"

namespace ds::subs {

using namespace detail;

void Manager::Impl::after_change(const EntryPtr& e, const std::optional<State>& before) {
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
        bool pending =
            it != s.links.end() && (it->second.acked ? tail > *it->second.acked : tail > Offset{});
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

void Manager::Impl::arm(const EntryPtr& e) {
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

void Manager::Impl::tick(const std::string& id) {
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
        due->clear();  // decided again after losing a race: only the last decision counts
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

void Manager::Impl::evaluate_writes(const EntryPtr& e) {
  auto self = shared_from_this();
  run(e, [self, e] {
    // The paths written until now: later writes queue the next evaluation.
    std::vector<std::string> paths;
    {
      MutexLock lock(self->mu);
      paths.assign(e->written.begin(), e->written.end());
      e->written.clear();
      e->eval_queued = false;
    }
    auto wake = std::make_shared<bool>(false);
    Decide decide = [paths, wake](const std::optional<State>& cur, const Tails& tails, int64_t) {
      *wake = false;
      Plan plan;
      plan.reply = [](const std::optional<State>&) { return Reply{}; };
      if (!cur) return plan;
      State s = *cur;
      bool linked = false;
      for (const auto& p : paths)
        if (!s.links.count(p) && note_write(s, p)) linked = true;
      // New streams are linked even while a wake is in flight: its end reads
      // every link's tail, and an unlinked stream would be missed.
      *wake = !s.wake && has_pending(s, tails);
      if (linked) plan.write = std::move(s);
      return plan;
    };
    auto done = [self, id = e->id, wake](Reply) {
      if (*wake) self->wake_if_pending(id);
    };
    self->attempt(e, paths, std::move(decide), std::move(done), 0, TailScope::extra_only);
  });
}

void Manager::Impl::sweep() {
  if (stopped) return;
  auto self = shared_from_this();
  list_all(std::string(kStatePrefix), [self](Result<std::vector<std::string>> r) {
    if (r) {
      for (const auto& p : *r) self->reconcile(p.substr(kStatePrefix.size()));
    }
    self->schedule_sweep();
  });
}

void Manager::Impl::schedule_sweep() {
  if (stopped || options.sweep_interval_ms <= 0) return;
  std::weak_ptr<Impl> weak = shared_from_this();
  timers.after(std::chrono::milliseconds(options.sweep_interval_ms), [weak] {
    if (auto self = weak.lock()) self->sweep();
  });
}

void Manager::Impl::reconcile(const std::string& id) {
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

void Manager::Impl::deliver(const std::string& id, const std::string& wake_id) {
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
        // Decided again after losing a race: only the last decision counts.
        *attempt = false;
        Plan plan;
        plan.reply = [](const std::optional<State>&) { return Reply{}; };
        if (!cur || !cur->wake || cur->wake->id != wake_id || cur->wake->delivered ||
            cur->wake->next_attempt_ms > now)
          return plan;
        State s = *cur;
        attempt_started(s, now + self->options.attempt_timeout_ms + kRetryBaseMs, tails);
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

std::string Manager::Impl::base_url(const State& s) const {
  return options.public_url.empty() ? s.base_url : options.public_url;
}

std::string Manager::Impl::webhook_body(const State& s, const Tails& tails, int64_t now) const {
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
  append_json_string(out,
                     base_url(s) + "__ds/subscriptions/" + url_encode_segment(s.id) + "/callback");
  out += ",\"callback_token\":";
  append_json_string(out, issue_wake_token(key, t));
  out += "}";
  return out;
}

void Manager::Impl::post(const std::string& id, const std::string& wake_id,
                         const std::string& url_text, std::string body) {
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
  if (!client) return;  // stopped
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("Webhook-Signature",
                       webhook_signature_header(key, clock.now_ms() / 1000, body));
  client->post(*url, std::move(headers), std::move(body),
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

void Manager::Impl::delivery_done() {
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

void Manager::Impl::wake_if_pending(const std::string& id) {
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

std::string Manager::Impl::signing_json(const State& s) const {
  std::string out = "{\"alg\":\"ed25519\",\"kid\":";
  append_json_string(out, key.kid());
  out += ",\"jwks_url\":";
  append_json_string(out, base_url(s) + "__ds/jwks.json");
  out += "}";
  return out;
}

Reply Manager::Impl::api_reply(const State& s, int status, const Tails& tails) const {
  return Reply{status,
               to_api_json(s, tails, s.config.type == Type::webhook ? signing_json(s) : "")};
}

}  // namespace ds::subs
