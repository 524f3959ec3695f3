// The manager's public operations (subs/manager.h); its machinery is in
// manager_state.cc and manager_wakes.cc.

#include "subs/manager.h"

#include <chrono>
#include <thread>

#include "common/log.h"
#include "subs/glob.h"
#include "subs/manager_impl.h"
#include "subs/tokens.h"
#include "subs/webhook_url.h"

namespace ds::subs {

using namespace detail;

std::string state_stream(std::string_view id) {
  return std::string(kStatePrefix) + std::string(id);
}

bool valid_subscription_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (unsigned char c : id)
    if (c < 0x20 || c == 0x7f || c == '/') return false;
  return true;
}

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
    int64_t known = 0, retrying = 0;
    {
      MutexLock lock(i->mu);
      for (const auto& [id, e] : i->entries) {
        if (!e->snapshot) continue;
        ++known;
        const auto& w = e->snapshot->wake;
        if (w && !w->delivered && w->attempts > 0) ++retrying;
      }
    }
    x.gauge("dstreamd_subscriptions", "Subscriptions this node knows", known);
    x.gauge("dstreamd_subscription_retrying",
            "Subscriptions whose webhook failed and that wait for their next attempt (the retry "
            "queue)",
            retrying);
  });
}

Manager::~Manager() { stop(); }

void Manager::stop() {
  Impl& i = *impl_;
  {
    MutexLock lock(i.mu);
    if (i.stopped) return;
    i.stopped = true;  // from here on no operation starts
  }
  // Operations already running end on their own (within store round trips;
  // none waits for a webhook): they use the store, which outlives this call.
  // A bounded drain, polled: this runs once, at shutdown.
  bool drained = false;
  for (int waited_ms = 0; waited_ms <= 5000 && !drained; waited_ms += 10) {
    {
      MutexLock lock(i.mu);
      drained = i.busy_entries == 0;
    }
    if (!drained) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  i.timers.stop();
  // Webhook calls in flight then never call back, and no thread of the
  // client's is left holding the manager.
  if (drained) i.client.reset();
}

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
