#include "subs/subscription.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <ctime>

#include "common/json_string.h"
#include "common/log.h"
#include "protocol/offset.h"
#include "subs/glob.h"

namespace ds::subs {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

Problem invalid(std::string message) {
  return Problem{400, "INVALID_REQUEST", std::move(message), ""};
}

Problem invalid_offset(std::string message) {
  return Problem{409, "INVALID_OFFSET", std::move(message), ""};
}

bool parse_object(simdjson::dom::parser& parser, std::string_view json, object* out) {
  element root;
  if (parser.parse(json.data(), json.size()).get(root)) return false;
  return !root.get_object().get(*out);
}

void put_string(std::string& out, std::string_view key, std::string_view value) {
  append_json_string(out, key);
  out.push_back(':');
  append_json_string(out, value);
}

void put_offset(std::string& out, std::string_view key, const std::optional<Offset>& o) {
  put_string(out, key, o ? o->str() : std::string("-1"));
}

Offset tail_of(const Tails& tails, const std::string& path) {
  auto it = tails.find(path);
  return it == tails.end() ? Offset{} : it->second;
}

/// Pending: the tail is past the acked offset. A link before the first byte
/// has pending work as soon as the stream has any.
bool pending(const Link& link, const Offset& tail) {
  return link.acked ? tail > *link.acked : tail > Offset{};
}

void end_wake(State& s) { s.wake.reset(); }

std::optional<std::string> optional_string(object o, std::string_view key, bool* bad) {
  element e;
  if (o[key].get(e)) return std::nullopt;
  if (e.is_null()) return std::nullopt;
  std::string_view v;
  if (e.get_string().get(v)) {
    *bad = true;
    return std::nullopt;
  }
  return std::string(v);
}

}  // namespace

std::string iso8601_ms(int64_t unix_ms) {
  std::string out;
  log::append_utc_timestamp(out, unix_ms);
  return out;
}

std::string Config::canonical() const {
  std::string out = "{";
  put_string(out, "type", type == Type::webhook ? "webhook" : "pull-wake");
  if (pattern) {
    out.push_back(',');
    put_string(out, "pattern", *pattern);
  }
  out += ",\"streams\":[";
  for (size_t i = 0; i < streams.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, streams[i]);
  }
  out += "]";
  if (type == Type::webhook) {
    out += ",\"webhook\":{";
    put_string(out, "url", webhook_url);
    out += "}";
  } else {
    out.push_back(',');
    put_string(out, "wake_stream", wake_stream);
  }
  out += ",\"lease_ttl_ms\":" + std::to_string(lease_ttl_ms);
  if (description) {
    out.push_back(',');
    put_string(out, "description", *description);
  }
  out += "}";
  return out;
}

Checked<std::vector<std::string>> parse_stream_list(std::string_view json) {
  simdjson::dom::parser parser;
  object o;
  if (!parse_object(parser, json, &o)) return invalid("the body must be a JSON object");
  simdjson::dom::array arr;
  if (o["streams"].get_array().get(arr)) return invalid("streams must be an array of stream paths");
  std::vector<std::string> out;
  for (element e : arr) {
    std::string_view v;
    if (e.get_string().get(v)) return invalid("streams must be an array of stream paths");
    auto p = normalize_path(v);
    if (p.empty()) return invalid("a stream path must not be empty");
    out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Checked<Config> parse_config(std::string_view json) {
  simdjson::dom::parser parser;
  object o;
  if (!parse_object(parser, json, &o)) return invalid("the body must be a JSON object");
  Config c;
  std::string_view type;
  if (o["type"].get_string().get(type)) return invalid("type is required: webhook or pull-wake");
  if (type == "webhook") {
    c.type = Type::webhook;
  } else if (type == "pull-wake") {
    c.type = Type::pull_wake;
  } else {
    return invalid("type must be webhook or pull-wake");
  }
  bool bad = false;
  c.pattern = optional_string(o, "pattern", &bad);
  if (bad || (c.pattern && normalize_path(*c.pattern).empty()))
    return invalid("pattern must be a non-empty string");
  if (c.pattern) c.pattern = normalize_path(*c.pattern);
  element streams;
  if (!o["streams"].get(streams) && !streams.is_null()) {
    std::string wrapped = "{\"streams\":" + simdjson::to_string(streams) + "}";
    auto list = parse_stream_list(wrapped);
    if (auto* p = std::get_if<Problem>(&list)) return *p;
    c.streams = std::get<0>(std::move(list));
  }
  if (!c.pattern && c.streams.empty()) return invalid("give a pattern, streams, or both");
  if (c.type == Type::webhook) {
    object hook;
    std::string_view url;
    if (o["webhook"].get_object().get(hook) || hook["url"].get_string().get(url) || url.empty())
      return invalid("webhook subscriptions require webhook.url");
    c.webhook_url = std::string(url);
  } else {
    auto wake = optional_string(o, "wake_stream", &bad);
    if (bad || !wake || normalize_path(*wake).empty())
      return invalid("pull-wake subscriptions require wake_stream");
    c.wake_stream = normalize_path(*wake);
  }
  element ttl;
  if (!o["lease_ttl_ms"].get(ttl) && !ttl.is_null()) {
    double v = 0;
    if (ttl.get_double().get(v) || v != std::floor(v) || v < kMinLeaseMs || v > kMaxLeaseMs)
      return invalid("lease_ttl_ms must be an integer from 1000 to 600000");
    c.lease_ttl_ms = static_cast<int64_t>(v);
  }
  c.description = optional_string(o, "description", &bad);
  if (bad) return invalid("description must be a string");
  return c;
}

std::vector<StreamInfo> stream_infos(const State& s, const Tails& tails) {
  std::vector<StreamInfo> out;
  out.reserve(s.links.size());
  for (const auto& [path, link] : s.links) {
    StreamInfo info;
    info.path = path;
    info.explicit_link = link.explicit_link;
    info.acked = link.acked;
    info.tail = tail_of(tails, path);
    info.pending = pending(link, info.tail);
    out.push_back(std::move(info));
  }
  return out;
}

bool has_pending(const State& s, const Tails& tails) {
  for (const auto& [path, link] : s.links)
    if (pending(link, tail_of(tails, path))) return true;
  return false;
}

State create_state(std::string id, Config config, std::string base_url, int64_t now_ms,
                   const std::vector<std::string>& existing, const Tails& tails) {
  State s;
  s.id = std::move(id);
  s.base_url = std::move(base_url);
  s.created_ms = now_ms;
  for (const auto& p : config.streams) {
    Link& l = s.links[p];
    l.explicit_link = true;
    if (auto it = tails.find(p); it != tails.end()) l.acked = it->second;
  }
  if (config.pattern) {
    for (const auto& p : existing) {
      auto path = normalize_path(p);
      if (path.starts_with("__ds/") || !glob_match(*config.pattern, path)) continue;
      Link& l = s.links[path];
      l.by_glob = true;
      if (!l.acked)
        if (auto it = tails.find(path); it != tails.end()) l.acked = it->second;
    }
  }
  s.config = std::move(config);
  return s;
}

bool note_write(State& s, const std::string& path) {
  auto it = s.links.find(path);
  if (it != s.links.end()) return true;
  if (!s.config.pattern || !glob_match(*s.config.pattern, path)) return false;
  s.links[path].by_glob = true;  // before its first byte
  return true;
}

void add_explicit(State& s, const std::vector<std::string>& paths, const Tails& tails) {
  for (const auto& p : paths) {
    auto [it, inserted] = s.links.try_emplace(p);
    it->second.explicit_link = true;
    if (inserted)
      if (auto t = tails.find(p); t != tails.end()) it->second.acked = t->second;
  }
}

void remove_explicit(State& s, const std::string& path) {
  auto it = s.links.find(path);
  if (it == s.links.end()) return;
  it->second.explicit_link = false;
  if (!it->second.by_glob) s.links.erase(it);
}

bool maybe_wake(State& s, const Tails& tails, std::string wake_id, int64_t now_ms) {
  if (s.wake || !has_pending(s, tails)) return false;
  Wake w;
  w.id = std::move(wake_id);
  for (const auto& [path, link] : s.links) w.snapshot[path] = tail_of(tails, path);
  if (s.config.type == Type::webhook) w.next_attempt_ms = now_ms;
  ++s.generation;
  s.wake = std::move(w);
  return true;
}

std::optional<Problem> fence(const State& s, uint64_t token_generation,
                             std::optional<uint64_t> generation, std::string_view wake_id) {
  if (!s.wake || token_generation != s.generation || generation != s.generation ||
      wake_id != s.wake->id)
    return Problem{409, "FENCED", "the wake's generation or id is stale", ""};
  return std::nullopt;
}

Checked<AckRequest> parse_ack(std::string_view json) {
  simdjson::dom::parser parser;
  object o;
  if (!parse_object(parser, json, &o)) return invalid("the body must be a JSON object");
  AckRequest r;
  std::string_view wake;
  if (!o["wake_id"].get_string().get(wake)) r.wake_id = std::string(wake);
  element g;
  if (!o["generation"].get(g)) {
    uint64_t v = 0;
    if (g.get_uint64().get(v)) return invalid("generation must be a non-negative integer");
    r.generation = v;
  }
  element acks;
  if (!o["acks"].get(acks) && !acks.is_null()) {
    simdjson::dom::array arr;
    if (acks.get_array().get(arr)) return invalid("acks must be an array");
    for (element a : arr) {
      object ao;
      if (a.get_object().get(ao)) return invalid("each ack must be an object");
      std::string_view stream, offset;
      if (ao["stream"].get_string().get(stream) && ao["path"].get_string().get(stream))
        return invalid("each ack needs a stream");
      if (ao["offset"].get_string().get(offset)) return invalid("each ack needs an offset");
      r.acks.emplace_back(normalize_path(stream), std::string(offset));
    }
  }
  element done;
  if (!o["done"].get(done) && !done.is_null()) {
    bool v = false;
    if (done.get_bool().get(v)) return invalid("done must be a boolean");
    r.done = v;
  }
  return r;
}

std::optional<Problem> apply_ack(State& s, const AckRequest& req, const Tails& tails,
                                 int64_t now_ms) {
  std::vector<std::pair<std::string, Offset>> parsed;
  for (const auto& [stream, text] : req.acks) {
    auto link = s.links.find(stream);
    if (stream.empty() || link == s.links.end())
      return invalid_offset("the ack names a stream the subscription does not link: " + stream);
    if (text == "-1") return invalid_offset("an ack offset must not be -1");
    auto offset = parse_offset(text);
    if (!offset) return invalid_offset("malformed ack offset: " + text);
    if (link->second.acked && *offset < *link->second.acked)
      return invalid_offset("the ack moves the cursor of " + stream + " backwards");
    if (*offset > tail_of(tails, stream))
      return invalid_offset("the ack offset is beyond the tail of " + stream);
    parsed.emplace_back(stream, *offset);
  }
  for (auto& [stream, offset] : parsed) s.links[stream].acked = offset;
  if (req.done) {
    end_wake(s);
  } else {
    s.wake->lease_until_ms = now_ms + s.config.lease_ttl_ms;
  }
  return std::nullopt;
}

void delivery_succeeded(State& s, bool done, int64_t now_ms) {
  if (!s.wake) return;
  if (done) {
    for (const auto& [path, tail] : s.wake->snapshot) {
      auto it = s.links.find(path);
      if (it != s.links.end() && (!it->second.acked || *it->second.acked < tail))
        it->second.acked = tail;
    }
    end_wake(s);
    return;
  }
  s.wake->delivered = true;
  s.wake->next_attempt_ms = 0;
  s.wake->lease_until_ms = now_ms + s.config.lease_ttl_ms;
}

void delivery_failed(State& s, int64_t now_ms, double jitter) {
  if (!s.wake) return;
  ++s.wake->attempts;
  double base = static_cast<double>(kRetryBaseMs);
  for (uint32_t i = 1; i < s.wake->attempts && base < kRetryMaxMs; ++i) base *= 2;
  base = std::min(base, static_cast<double>(kRetryMaxMs));
  double delay = base * (1.0 + 0.2 * std::clamp(jitter, -1.0, 1.0));
  s.wake->next_attempt_ms = now_ms + static_cast<int64_t>(delay);
}

void attempt_started(State& s, int64_t deadline_ms, const Tails& tails) {
  if (!s.wake) return;
  s.wake->next_attempt_ms = deadline_ms;
  s.wake->snapshot.clear();
  for (const auto& [path, link] : s.links) s.wake->snapshot[path] = tail_of(tails, path);
}

std::optional<Problem> claim(State& s, const std::string& worker, const Tails& tails,
                             std::string wake_id, int64_t now_ms) {
  if (s.wake && !s.wake->holder.empty()) {
    std::string extra;
    put_string(extra, "current_holder", s.wake->holder);
    extra += ",\"generation\":" + std::to_string(s.generation);
    return Problem{409, "ALREADY_CLAIMED", "another worker holds the lease", extra};
  }
  if (!has_pending(s, tails))
    return Problem{409, "NO_PENDING_WORK", "the subscription has no pending work", ""};
  if (!s.wake) maybe_wake(s, tails, std::move(wake_id), now_ms);
  s.wake->holder = worker;
  s.wake->lease_until_ms = now_ms + s.config.lease_ttl_ms;
  return std::nullopt;
}

void release(State& s) { end_wake(s); }

bool expire_lease(State& s, int64_t now_ms) {
  if (!s.wake || s.wake->lease_until_ms == 0 || now_ms < s.wake->lease_until_ms) return false;
  end_wake(s);
  return true;
}

int64_t next_deadline_ms(const State& s) {
  if (!s.wake) return 0;
  if (s.wake->lease_until_ms) return s.wake->lease_until_ms;
  if (s.config.type == Type::webhook && !s.wake->delivered) return s.wake->next_attempt_ms;
  return 0;
}

std::string wake_event_json(const State& s, const std::string& stream, int64_t now_ms) {
  std::string out = "{\"type\":\"wake\",";
  put_string(out, "subscription_id", s.id);
  out.push_back(',');
  put_string(out, "stream", stream);
  out += ",\"generation\":" + std::to_string(s.generation);
  out += ",\"ts\":" + std::to_string(now_ms) + "}";
  return out;
}

namespace {

/// The links as a JSON array; `with_tails` adds tail_offset and has_pending
/// (a wake's view) to the cursor fields (the subscription's view).
void put_links(std::string& out, const State& s, const Tails& tails, bool with_tails) {
  out.push_back('[');
  bool first = true;
  for (const auto& info : stream_infos(s, tails)) {
    if (!first) out.push_back(',');
    first = false;
    out.push_back('{');
    put_string(out, "path", info.path);
    out.push_back(',');
    put_string(out, "link_type", info.explicit_link ? "explicit" : "glob");
    out.push_back(',');
    put_offset(out, "acked_offset", info.acked);
    if (with_tails) {
      out.push_back(',');
      put_string(out, "tail_offset", info.tail.str());
      out += info.pending ? ",\"has_pending\":true" : ",\"has_pending\":false";
    }
    out.push_back('}');
  }
  out.push_back(']');
}

}  // namespace

std::string streams_json(const State& s, const Tails& tails) {
  std::string out;
  put_links(out, s, tails, true);
  return out;
}

std::string to_api_json(const State& s, const Tails& tails, std::string_view signing) {
  std::string out = "{";
  put_string(out, "id", s.id);
  out.push_back(',');
  put_string(out, "subscription_id", s.id);
  out.push_back(',');
  put_string(out, "type", s.config.type == Type::webhook ? "webhook" : "pull-wake");
  out += ",\"pattern\":";
  if (s.config.pattern) {
    append_json_string(out, *s.config.pattern);
  } else {
    out += "null";
  }
  out += ",\"streams\":";
  put_links(out, s, tails, false);
  out += ",\"webhook\":";
  if (s.config.type == Type::webhook) {
    out.push_back('{');
    put_string(out, "url", s.config.webhook_url);
    if (!signing.empty()) {
      out += ",\"signing\":";
      out += signing;
    }
    out += "},\"wake_stream\":null";
  } else {
    out += "null,";
    put_string(out, "wake_stream", s.config.wake_stream);
  }
  out += ",\"lease_ttl_ms\":" + std::to_string(s.config.lease_ttl_ms);
  out.push_back(',');
  put_string(out, "created_at", iso8601_ms(s.created_ms));
  const bool failed = s.wake && !s.wake->delivered && s.wake->attempts > 0;
  out.push_back(',');
  put_string(out, "status", failed ? "failed" : "active");
  out += ",\"generation\":" + std::to_string(s.generation);
  if (s.config.description) {
    out.push_back(',');
    put_string(out, "description", *s.config.description);
  }
  out += "}";
  return out;
}

// ------------------------------------------------------------------ records

std::string to_record(const State& s) {
  std::string out = "{\"v\":1,";
  put_string(out, "id", s.id);
  out += ",\"config\":" + s.config.canonical() + ",";
  put_string(out, "base_url", s.base_url);
  out += ",\"created_ms\":" + std::to_string(s.created_ms);
  out += ",\"generation\":" + std::to_string(s.generation);
  out += ",\"version\":" + std::to_string(s.version);
  out += ",\"links\":[";
  bool first = true;
  for (const auto& [path, link] : s.links) {
    if (!first) out.push_back(',');
    first = false;
    out.push_back('{');
    put_string(out, "path", path);
    out += link.by_glob ? ",\"glob\":true" : ",\"glob\":false";
    out += link.explicit_link ? ",\"explicit\":true," : ",\"explicit\":false,";
    put_offset(out, "acked", link.acked);
    out.push_back('}');
  }
  out += "],\"wake\":";
  if (!s.wake) {
    out += "null}";
    return out;
  }
  const Wake& w = *s.wake;
  out.push_back('{');
  put_string(out, "id", w.id);
  out.push_back(',');
  put_string(out, "holder", w.holder);
  out += ",\"lease_until_ms\":" + std::to_string(w.lease_until_ms);
  out += w.delivered ? ",\"delivered\":true" : ",\"delivered\":false";
  out += ",\"attempts\":" + std::to_string(w.attempts);
  out += ",\"next_attempt_ms\":" + std::to_string(w.next_attempt_ms);
  out += ",\"snapshot\":[";
  first = true;
  for (const auto& [path, tail] : w.snapshot) {
    if (!first) out.push_back(',');
    first = false;
    out.push_back('[');
    append_json_string(out, path);
    out.push_back(',');
    append_json_string(out, tail.str());
    out.push_back(']');
  }
  out += "]}}";
  return out;
}

std::optional<State> from_record(std::string_view json) {
  simdjson::dom::parser parser;
  object o;
  if (!parse_object(parser, json, &o)) return std::nullopt;
  State s;
  std::string_view sv;
  int64_t i = 0;
  uint64_t u = 0;
  if (o["id"].get_string().get(sv)) return std::nullopt;
  s.id = std::string(sv);
  element config;
  if (o["config"].get(config)) return std::nullopt;
  auto parsed = parse_config(simdjson::to_string(config));
  if (!std::holds_alternative<Config>(parsed)) return std::nullopt;
  s.config = std::get<Config>(std::move(parsed));
  if (!o["base_url"].get_string().get(sv)) s.base_url = std::string(sv);
  if (!o["created_ms"].get_int64().get(i)) s.created_ms = i;
  if (!o["generation"].get_uint64().get(u)) s.generation = u;
  if (!o["version"].get_uint64().get(u)) s.version = u;
  simdjson::dom::array links;
  if (o["links"].get_array().get(links)) return std::nullopt;
  for (element e : links) {
    object lo;
    if (e.get_object().get(lo) || lo["path"].get_string().get(sv)) return std::nullopt;
    Link& l = s.links[std::string(sv)];
    bool b = false;
    if (!lo["glob"].get_bool().get(b)) l.by_glob = b;
    if (!lo["explicit"].get_bool().get(b)) l.explicit_link = b;
    if (!lo["acked"].get_string().get(sv) && sv != "-1") l.acked = parse_offset(sv);
  }
  object w;
  if (!o["wake"].get_object().get(w)) {
    Wake wake;
    if (w["id"].get_string().get(sv)) return std::nullopt;
    wake.id = std::string(sv);
    if (!w["holder"].get_string().get(sv)) wake.holder = std::string(sv);
    if (!w["lease_until_ms"].get_int64().get(i)) wake.lease_until_ms = i;
    bool b = false;
    if (!w["delivered"].get_bool().get(b)) wake.delivered = b;
    if (!w["attempts"].get_uint64().get(u)) wake.attempts = static_cast<uint32_t>(u);
    if (!w["next_attempt_ms"].get_int64().get(i)) wake.next_attempt_ms = i;
    simdjson::dom::array snap;
    if (!w["snapshot"].get_array().get(snap)) {
      for (element pair : snap) {
        simdjson::dom::array pa;
        std::string_view path, tail;
        if (pair.get_array().get(pa) || pa.at(0).get_string().get(path) ||
            pa.at(1).get_string().get(tail))
          return std::nullopt;
        if (auto t = parse_offset(tail)) wake.snapshot[std::string(path)] = *t;
      }
    }
    s.wake = std::move(wake);
  }
  return s;
}

}  // namespace ds::subs
