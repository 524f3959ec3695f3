// The reserved control API under /v1/stream/__ds/ (PROTOCOL.md 6-7): routed
// before stream paths, so no application stream is ever named `__ds/...`.
// Decisions and state are subs::Manager's; this file maps HTTP onto it.
//
//   GET    __ds/jwks.json
//   PUT    __ds/subscriptions/:id        GET, DELETE too
//   POST   __ds/subscriptions/:id/streams
//   DELETE __ds/subscriptions/:id/streams/:path
//   POST   __ds/subscriptions/:id/{callback,claim,ack,release}

#include "auth/policy.h"
#include "protocol/target.h"
#include "server/stream_handlers.h"
#include "subs/glob.h"
#include "subs/manager.h"
#include "subs/subscription.h"

namespace ds::http_server {
namespace {

constexpr std::string_view kControl = "/v1/stream/__ds";
constexpr std::string_view kSubscriptions = "/v1/stream/__ds/subscriptions/";

Response json_reply(const Request& req, const subs::Reply& r) {
  auto res = make_response(req, static_cast<http::status>(r.status));
  if (!r.body.empty()) {
    res.set(http::field::content_type, r.content_type);
    res.body() = r.body;
  }
  res.set(http::field::cache_control, r.cacheable ? "public, max-age=300" : "no-store");
  res.prepare_payload();
  return res;
}

subs::Reply problem(int status, std::string_view code, std::string_view message) {
  subs::Reply r;
  r.status = status;
  r.body = "{\"error\":{\"code\":\"" + std::string(code) + "\",\"message\":\"" +
           std::string(message) + "\"}}";
  return r;
}

/// The stream root as the request reached us: what callback and JWKS URLs
/// are built on unless --public-url says otherwise.
std::string base_url_of(const Request& req) {
  std::string host(header(req, "host"));
  if (host.empty()) host = "localhost";
  return "http://" + host + "/v1/stream/";
}

std::string_view bearer(const Request& req) {
  auto v = header(req, "authorization");
  if (v.size() > 7 && (v.substr(0, 7) == "Bearer " || v.substr(0, 7) == "bearer "))
    return v.substr(7);
  return {};
}

auto manager_call(Context& ctx, std::function<void(subs::Manager::Done)> start) {
  return async_call<subs::Reply>(ctx.inbox, [start = std::move(start)](auto cb) mutable {
    start(subs::Manager::Done(std::move(cb)));
  });
}

/// With auth on: the management operations need a token with `manage`
/// (claim: `write`, as a worker appending to streams would have), and when
/// the token has a `streams` claim, every stream the request names must be
/// within it. A pattern counts by its literal part: `jobs/*` needs a grant
/// that covers everything under `jobs/`. The wake operations (callback, ack,
/// release) are not checked here: they carry the subscription's own tokens.
std::optional<Response> check_access(Context& ctx, const Request& req, auth::Method method,
                                     const std::vector<std::string>& streams) {
  if (!ctx.auth) return std::nullopt;
  auth::AccessRequest ar;
  ar.method = method;
  for (const auto& s : streams) ar.streams.emplace_back(s);
  auto d = ctx.auth->authorize(auth::bearer_token(header(req, "authorization")), ar);
  if (d.allowed()) return std::nullopt;
  errc code = d.outcome == auth::Decision::Outcome::forbidden     ? errc::forbidden
              : d.outcome == auth::Decision::Outcome::bad_request ? errc::bad_request
                                                                  : errc::unauthorized;
  Response res = error_response(req, Error(code, d.message));
  if (auto www = d.www_authenticate(); !www.empty()) res.set(http::field::www_authenticate, www);
  return res;
}

/// The streams a PUT's configuration names (pattern by its literal part,
/// explicit streams, the wake stream); none if it does not parse (the
/// manager then answers 400).
std::vector<std::string> streams_of_config(std::string_view body) {
  std::vector<std::string> out;
  auto parsed = subs::parse_config(body);
  if (auto* c = std::get_if<subs::Config>(&parsed)) {
    if (c->pattern) out.push_back(subs::glob_literal_prefix(*c->pattern));
    out.insert(out.end(), c->streams.begin(), c->streams.end());
    if (!c->wake_stream.empty()) out.push_back(c->wake_stream);
  }
  return out;
}

std::vector<std::string> streams_of_list(std::string_view body) {
  auto parsed = subs::parse_stream_list(body);
  if (auto* v = std::get_if<std::vector<std::string>>(&parsed)) return *v;
  return {};
}

}  // namespace

asio::awaitable<bool> handle_control_request(Context& ctx, Stream& stream, Request& req) {
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  const auto method = req.method();
  subs::Reply reply;
  std::optional<Response> denied;

  subs::Manager* m = ctx.subscriptions;
  if (!m) {
    reply = problem(404, "SUBSCRIPTION_NOT_FOUND", "subscriptions are not enabled on this server");
  } else if (path == std::string(kControl) + "/jwks.json") {
    if (method == http::verb::get || method == http::verb::head) {
      reply = m->jwks();
    } else {
      reply = problem(405, "METHOD_NOT_ALLOWED", "use GET");
    }
  } else if (!path.starts_with(kSubscriptions)) {
    reply = problem(404, "SUBSCRIPTION_NOT_FOUND", "no such control route");
  } else {
    std::string_view rest = path.substr(kSubscriptions.size());
    std::string_view raw_id = rest.substr(0, rest.find('/'));
    std::string_view action =
        raw_id.size() < rest.size() ? rest.substr(raw_id.size() + 1) : std::string_view();
    auto decoded = percent_decode(raw_id, false);
    std::string id = decoded ? *decoded : std::string();
    std::string body = std::move(req.body());
    if (!decoded || !subs::valid_subscription_id(id)) {
      reply = problem(400, "INVALID_REQUEST", "invalid subscription id");
    } else if (action.empty()) {
      denied = check_access(
          ctx, req, auth::Method::put,
          method == http::verb::put ? streams_of_config(body) : std::vector<std::string>{});
      if (!denied) {
        if (method == http::verb::put) {
          std::string base = base_url_of(req);
          auto op = manager_call(ctx, [m, id, body = std::move(body), base](auto done) mutable {
            m->put(id, std::move(body), base, std::move(done));
          });
          reply = co_await std::move(op);
        } else if (method == http::verb::get) {
          std::string base = base_url_of(req);
          auto op = manager_call(ctx, [m, id, base](auto done) { m->get(id, base, done); });
          reply = co_await std::move(op);
        } else if (method == http::verb::delete_) {
          auto op = manager_call(ctx, [m, id](auto done) { m->remove(id, done); });
          reply = co_await std::move(op);
        } else {
          reply = problem(405, "METHOD_NOT_ALLOWED", "use PUT, GET or DELETE");
        }
      }
    } else if (action == "streams" || action.starts_with("streams/")) {
      denied =
          check_access(ctx, req, auth::Method::put,
                       action == "streams" ? streams_of_list(body) : std::vector<std::string>{});
      if (!denied) {
        if (action == "streams" && method == http::verb::post) {
          auto op = manager_call(ctx, [m, id, body = std::move(body)](auto done) mutable {
            m->add_streams(id, std::move(body), done);
          });
          reply = co_await std::move(op);
        } else if (action != "streams" && method == http::verb::delete_) {
          auto stream_path = percent_decode(action.substr(8), false);
          if (!stream_path) {
            reply = problem(400, "INVALID_REQUEST", "malformed stream path");
          } else {
            auto op = manager_call(
                ctx, [m, id, p = *stream_path](auto done) { m->remove_stream(id, p, done); });
            reply = co_await std::move(op);
          }
        } else {
          reply = problem(405, "METHOD_NOT_ALLOWED",
                          "use POST .../streams or DELETE .../streams/:path");
        }
      }
    } else if (action == "claim") {
      denied = check_access(ctx, req, auth::Method::post, {});
      if (!denied && method != http::verb::post) {
        reply = problem(405, "METHOD_NOT_ALLOWED", "use POST");
      } else if (!denied) {
        auto op = manager_call(ctx, [m, id, body = std::move(body)](auto done) mutable {
          m->claim(id, std::move(body), done);
        });
        reply = co_await std::move(op);
      }
    } else if (action == "callback" || action == "ack" || action == "release") {
      std::string token(bearer(req));
      if (method != http::verb::post) {
        reply = problem(405, "METHOD_NOT_ALLOWED", "use POST");
      } else if (token.empty()) {
        reply = problem(401, "TOKEN_INVALID", "missing or malformed Authorization header");
      } else {
        auto op = manager_call(
            ctx, [m, a = std::string(action), id, token, body = std::move(body)](
                     auto done) mutable { m->wake_action(a, id, token, std::move(body), done); });
        reply = co_await std::move(op);
      }
    } else {
      reply = problem(404, "SUBSCRIPTION_NOT_FOUND", "no such control route");
    }
  }
  if (denied) co_return co_await send(ctx, stream, *denied);
  auto res = json_reply(req, reply);
  if (method == http::verb::head) {
    res.body().clear();
  }
  co_return co_await send(ctx, stream, res);
}

}  // namespace ds::http_server
