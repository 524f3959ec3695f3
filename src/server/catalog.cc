// The stream catalog (docs/operations.md, "Stream catalog"):
//
//   GET /v1/streams?prefix=P&cursor=C&limit=N
//
// A page of the store's listing (StreamStore::list, in byte order; on S2
// from S2's own listing, so every node answers alike), each stream with its
// metadata (StreamStore::head) and this node's live readers of it. Internal
// streams (`__ds/...`) are never listed. With auth on, the token needs
// `manage`, and a `streams` claim narrows the listing to the streams it
// covers.
//
// Paging is by the store's order only: the cursor is the last path looked at
// (listed, filtered out, or gone by the time of its head), so a page may be
// short, even empty, while another follows; no stream that exists
// throughout is skipped or repeated, whatever is created or deleted meanwhile.

#include <atomic>
#include <charconv>
#include <cstdio>
#include <ctime>

#include "auth/jwt.h"
#include "auth/policy.h"
#include "common/json_string.h"
#include "common/log.h"
#include "protocol/target.h"
#include "server/stream_handlers.h"

namespace ds::http_server {
namespace {

constexpr size_t kDefaultLimit = 100;
/// Store paths looked at per request at most, so that a request whose
/// filters pass few streams still ends soon.
constexpr size_t kMaxScanned = kMaxListLimit;
/// Heads in flight per request.
constexpr size_t kHeadConcurrency = 16;
constexpr std::string_view kInternalPrefix = "__ds/";

struct CatalogParams {
  std::string prefix;
  std::string start_after;  ///< the decoded cursor
  size_t limit = kDefaultLimit;
};

Result<CatalogParams> parse_params(std::string_view raw_target) {
  auto target = parse_target(raw_target);
  if (!target) return Error(errc::bad_request, "malformed request target");
  CatalogParams p;
  bool seen_prefix = false, seen_cursor = false, seen_limit = false;
  for (const auto& [key, value] : target->query) {
    // clang 14 does not implement capturing a structured binding (C++20).
    const std::string& name = key;
    auto once = [&name](bool& seen) -> std::optional<Error> {
      if (seen) return Error(errc::bad_request, "query parameter " + name + " given twice");
      seen = true;
      return std::nullopt;
    };
    std::optional<Error> dup;
    if (key == "prefix") {
      if ((dup = once(seen_prefix))) return std::move(*dup);
      p.prefix = value;
    } else if (key == "cursor") {
      if ((dup = once(seen_cursor))) return std::move(*dup);
      auto decoded = auth::base64url_decode(value);
      if (!decoded || decoded->empty() || decoded->size() > kMaxStreamNameBytes)
        return Error(errc::bad_request, "malformed cursor (pass next_cursor back as it came)");
      p.start_after = std::move(*decoded);
    } else if (key == "limit") {
      if ((dup = once(seen_limit))) return std::move(*dup);
      size_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() || n < 1 ||
          n > kMaxListLimit)
        return Error(errc::bad_request, "limit must be 1.." + std::to_string(kMaxListLimit));
      p.limit = n;
    } else if (key != "token") {
      return Error(errc::bad_request,
                   "unknown query parameter " + key + " (prefix, cursor and limit are known)");
    }
  }
  return p;
}

/// With auth on: a token with `manage` (one Authorization header, or, with
/// --allow-query-token, one `token` parameter). nullopt: go on, with the
/// token's claims in `claims`; otherwise the 400/401/403 to send.
std::optional<Response> check_catalog_access(const auth::Authenticator& authn, const Request& req,
                                             auth::Claims& claims) {
  auth::AccessRequest ar;
  ar.method = auth::Method::put;  // `manage`; names no stream
  return authorize_request(authn, req, ar, &claims);
}

/// RFC 3339 in UTC with milliseconds: 2024-05-01T12:00:00.000Z.
std::string rfc3339_ms(int64_t unix_ms) {
  std::string out;
  log::append_utc_timestamp(out, unix_ms);
  return out;
}

void append_entry(std::string& out, const StreamMeta& m, size_t live_readers,
                  bool offsets_count_bytes) {
  out += "{\"path\":";
  append_json_string(out, m.path);
  out += ",\"content_type\":";
  append_json_string(out, m.config.content_type);
  out += ",\"tail_offset\":\"" + m.tail.str() + "\"";
  out += m.closed ? ",\"closed\":true" : ",\"closed\":false";
  // The embedded engine's offsets are byte positions from 0 (a fork's
  // include the bytes it inherits); S2's are sequence numbers.
  if (offsets_count_bytes) out += ",\"size_bytes\":" + std::to_string(m.tail.lo);
  if (m.config.ttl_seconds) out += ",\"ttl_seconds\":" + std::to_string(*m.config.ttl_seconds);
  if (auto e = m.expiry_ms()) out += ",\"expires_at\":\"" + rfc3339_ms(*e) + "\"";
  out += ",\"created_at\":";
  out += m.created_ms > 0 ? "\"" + rfc3339_ms(m.created_ms) + "\"" : std::string("null");
  out += ",\"live_readers\":" + std::to_string(live_readers) + "}";
}

auto list_op(Context& ctx, ListRequest lr) {
  return async_call<Result<ListOutcome>>(ctx.inbox,
                                         [&store = ctx.store, lr = std::move(lr)](auto cb) mutable {
                                           store.list(std::move(lr), std::move(cb));
                                         });
}

/// Each path's head, in order (one per path; nullopt never survives).
using Heads = std::vector<std::optional<Result<StreamMeta>>>;

/// Heads of `paths`, all at once (the caller bounds how many).
auto heads_op(Context& ctx, std::vector<std::string> paths) {
  return async_call<Heads>(ctx.inbox,
                           [&store = ctx.store, paths = std::move(paths)](auto cb) mutable {
                             struct Gather {
                               Heads out;
                               std::atomic<size_t> left;
                               std::function<void(Heads)> done;
                             };
                             auto g = std::make_shared<Gather>();
                             g->out.resize(paths.size());
                             g->left.store(paths.size());
                             g->done = std::move(cb);
                             if (paths.empty()) {
                               g->done(Heads{});
                               return;
                             }
                             for (size_t i = 0; i < paths.size(); ++i) {
                               store.head(std::move(paths[i]), [g, i](Result<StreamMeta> r) {
                                 g->out[i].emplace(std::move(r));
                                 // The last head hands all of them over (acq_rel: it sees every
                                 // slot).
                                 if (g->left.fetch_sub(1, std::memory_order_acq_rel) == 1)
                                   g->done(std::move(g->out));
                               });
                             }
                           });
}

Response json_ok(const Request& req, std::string body) {
  auto res = make_response(req, http::status::ok);
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  return res;
}

}  // namespace

asio::awaitable<bool> handle_catalog_request(Context& ctx, Stream& stream, Request& req) {
  const bool head_only = req.method() == http::verb::head;
  if (req.method() != http::verb::get && !head_only) {
    Response res = error_response(req, Error(errc::method_not_allowed, "use GET"));
    res.set(http::field::allow, "GET, HEAD");
    co_return co_await send(ctx, stream, res);
  }
  auth::Claims claims;
  if (ctx.auth) {
    auto denied = check_catalog_access(*ctx.auth, req, claims);
    if (denied) {
      if (head_only) denied->body().clear();
      co_return co_await send(ctx, stream, *denied);
    }
  }
  auto params = parse_params(std::string_view(req.target().data(), req.target().size()));
  if (!params) co_return co_await send_error(ctx, stream, req, params.error());

  const int64_t now_ms = ctx.clock.now_ms();
  std::string body = "{\"streams\":[";
  size_t listed = 0;
  size_t scanned = 0;
  size_t ask = params->limit;
  std::string start_after = params->start_after;
  // Nothing under the internal prefix is ever listed: don't look.
  bool more = !params->prefix.starts_with(kInternalPrefix);
  std::optional<Error> failure;
  while (more && listed < params->limit && scanned < kMaxScanned) {
    ListRequest lr;
    lr.prefix = params->prefix;
    lr.start_after = start_after;
    lr.limit = std::min(ask, kMaxListLimit);
    auto lop = list_op(ctx, std::move(lr));
    Result<ListOutcome> page = co_await std::move(lop);
    if (!page) {
      failure = std::move(page).error();
      break;
    }
    more = page->more;
    // The page's streams to show, up to what this response still needs;
    // `start_after` moves past every path looked at.
    const size_t need = params->limit - listed;
    std::vector<std::string> wanted;
    const auto& paths = page->paths;
    for (size_t i = 0; i < paths.size(); ++i) {
      ++scanned;
      start_after = paths[i];
      const bool visible =
          !paths[i].starts_with(kInternalPrefix) && auth::claims_grant_stream(claims, paths[i]);
      if (visible) wanted.push_back(paths[i]);
      if (wanted.size() == need) {
        if (i + 1 < paths.size()) more = true;
        break;
      }
    }
    for (size_t at = 0; at < wanted.size() && !failure; at += kHeadConcurrency) {
      const size_t end = std::min(wanted.size(), at + kHeadConcurrency);
      std::vector<std::string> wave(wanted.begin() + static_cast<ptrdiff_t>(at),
                                    wanted.begin() + static_cast<ptrdiff_t>(end));
      auto hop = heads_op(ctx, std::move(wave));
      Heads heads = co_await std::move(hop);
      for (auto& h : heads) {
        if (!*h) {
          const errc code = h->error().code;
          // Deleted (or soft-deleted) since the listing: skip it.
          if (code == errc::not_found || code == errc::gone) continue;
          failure = std::move(*h).error();
          break;
        }
        const StreamMeta& m = h->value();
        if (m.soft_deleted || m.expired(now_ms)) continue;
        if (listed > 0) body.push_back(',');
        append_entry(body, m, ctx.readers ? ctx.readers->on_stream(m.path) : 0,
                     ctx.options.offsets_count_bytes);
        ++listed;
      }
    }
    if (failure) break;
    // Heads that found nothing leave room: the next store page is larger,
    // for filters that pass few streams.
    ask = std::min(kMaxListLimit, std::max(params->limit - listed, ask * 2));
    if (scanned < kMaxScanned) ask = std::min(ask, kMaxScanned - scanned);
  }
  if (failure) co_return co_await send_error(ctx, stream, req, std::move(*failure));

  body += "],\"next_cursor\":";
  if (more) {
    body += "\"" + auth::base64url_encode(start_after) + "\"";
  } else {
    body += "null";
  }
  body += "}";
  Response res = json_ok(req, std::move(body));
  if (head_only) res.body().clear();
  co_return co_await send(ctx, stream, res);
}

}  // namespace ds::http_server
