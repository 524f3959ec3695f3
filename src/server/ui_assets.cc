#include "server/ui_assets.h"

#include "protocol/headers.h"
#include "server/ui_files.h"

namespace ds::http_server {

namespace {

/// Everything the page loads comes from this server: no inline script or
/// style, no other origin, no framing.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

Response redirect_to_ui(const Request& req) {
  Response res{http::status::found, req.version()};
  decorate(res);
  res.set(http::field::location, "/ui/");
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

/// Whether If-None-Match lists `etag` (or is "*").
bool etag_matches(const Request& req, std::string_view etag) {
  auto it = req.find(http::field::if_none_match);
  if (it == req.end()) return false;
  std::string_view v(it->value().data(), it->value().size());
  if (trim(v) == "*") return true;
  while (!v.empty()) {
    auto comma = v.find(',');
    auto item = trim(v.substr(0, comma));
    if (item.starts_with("W/")) item.remove_prefix(2);
    if (item == etag) return true;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool is_ui_path(std::string_view path) {
  return path == "/" || path == "/ui" || path.starts_with("/ui/");
}

Response ui_response(const Request& req, std::string_view path) {
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    auto res = error_response(req, Error(errc::method_not_allowed, "use GET or HEAD"));
    res.set(http::field::allow, "GET, HEAD, OPTIONS");
    return res;
  }
  if (path == "/" || path == "/ui") return redirect_to_ui(req);
  std::string_view name = path.substr(4);  // after "/ui/"
  if (name.empty()) name = "index.html";
  const ui::Asset* asset = ui::find_asset(name);
  if (!asset) return error_response(req, Error(errc::not_found, "no such inspector file"));

  const bool not_modified = etag_matches(req, asset->etag);
  Response res{not_modified ? http::status::not_modified : http::status::ok, req.version()};
  decorate(res);
  res.set(http::field::content_type, asset->content_type);
  res.set(http::field::etag, asset->etag);
  // Revalidated on every load (a 304 is cheap), so a new dstreamd's page is
  // never mixed with an old one's script.
  res.set(http::field::cache_control, "no-cache");
  res.set("Content-Security-Policy", kContentSecurityPolicy);
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  res.keep_alive(req.keep_alive());
  if (not_modified) return res;  // no body, no Content-Length
  res.body().assign(asset->body.data(), asset->body.size());
  res.prepare_payload();
  if (req.method() == http::verb::head) res.body().clear();  // Content-Length stays the GET's
  return res;
}

}  // namespace ds::http_server
