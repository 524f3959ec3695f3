// The manager's core (subs/manager_impl.h): one operation at a time per
// subscription, its state read from and written to the store.

#include "common/log.h"
#include "subs/glob.h"
#include "subs/manager_impl.h"

namespace ds::subs {

using namespace detail;

Manager::Impl::EntryPtr Manager::Impl::entry(const std::string& id) {
  MutexLock lock(mu);
  auto& e = entries[id];
  if (!e) {
    e = std::make_shared<Entry>();
    e->id = id;
  }
  return e;
}

void Manager::Impl::run(const EntryPtr& e, std::function<void()> op) {
  {
    MutexLock lock(mu);
    if (stopped) return;  // shutting down: nothing new starts
    if (e->busy) {
      e->queue.push_back(std::move(op));
      return;
    }
    e->busy = true;
    ++busy_entries;
  }
  op();
}

void Manager::Impl::finish(const EntryPtr& e) {
  std::function<void()> next;
  {
    MutexLock lock(mu);
    e->snapshot = e->state ? std::make_shared<const State>(*e->state) : nullptr;
    if (stopped) e->queue.clear();
    if (e->queue.empty()) {
      e->busy = false;
      --busy_entries;
      return;
    }
    next = std::move(e->queue.front());
    e->queue.pop_front();
  }
  next();
}

void Manager::Impl::refresh(const EntryPtr& e, std::function<void(Status)> done) {
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

void Manager::Impl::tails_of(std::vector<std::string> paths, std::function<void(Tails)> done) {
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

void Manager::Impl::transact(const std::string& id, std::vector<std::string> extra, Decide decide,
                             std::function<void(Reply)> done, TailScope scope) {
  auto e = entry(id);
  auto self = shared_from_this();
  run(e, [self, e, extra = std::move(extra), decide = std::move(decide), done = std::move(done),
          scope]() mutable {
    self->attempt(e, std::move(extra), std::move(decide), std::move(done), 0, scope);
  });
}

void Manager::Impl::attempt(const EntryPtr& e, std::vector<std::string> extra, Decide decide,
                            std::function<void(Reply)> done, int tries, TailScope scope) {
  auto self = shared_from_this();
  refresh(e, [self, e, extra = std::move(extra), decide = std::move(decide), done = std::move(done),
              tries, scope](Status st) mutable {
    if (!st) {
      done(storage_problem(st.error()));
      self->finish(e);
      return;
    }
    std::vector<std::string> paths = extra;
    if (e->state && scope == TailScope::links_and_extra)
      for (const auto& [p, link] : e->state->links) paths.push_back(p);
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
    self->tails_of(std::move(paths), [self, e, extra = std::move(extra), decide = std::move(decide),
                                      done = std::move(done), tries, scope](Tails tails) mutable {
      Plan plan = decide(e->state, tails, self->clock.now_ms());
      self->commit(e, std::move(plan), std::move(extra), std::move(decide), std::move(done), tries,
                   scope);
    });
  });
}

void Manager::Impl::commit(const EntryPtr& e, Plan plan, std::vector<std::string> extra,
                           Decide decide, std::function<void(Reply)> done, int tries,
                           TailScope scope) {
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
  auto conflict = [self, e, extra = std::move(extra), decide = std::move(decide), done, tries,
                   scope]() mutable {
    self->conflicts.inc();
    if (tries + 1 >= kMaxConflicts) {
      done(problem_reply(503, "UNAVAILABLE", "too much contention on this subscription"));
      self->finish(e);
      return;
    }
    self->attempt(e, std::move(extra), std::move(decide), std::move(done), tries + 1, scope);
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
    store.create(std::move(cr),
                 [e, next = std::move(next), finished, conflict](Result<CreateOutcome> r) mutable {
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

void Manager::Impl::list_all(std::string prefix,
                             std::function<void(Result<std::vector<std::string>>)> done) {
  auto walk = std::make_shared<ListWalk>();
  walk->prefix = std::move(prefix);
  walk->done = std::move(done);
  list_page(walk, "");
}

void Manager::Impl::list_page(const std::shared_ptr<ListWalk>& walk, std::string after) {
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

}  // namespace ds::subs
