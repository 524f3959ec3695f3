#pragma once
// The inspector page (ui/, embedded): GET/HEAD /ui/<file>, and / and /ui
// redirecting to /ui/. Internal to server/.

#include <string_view>

#include "server/http.h"

namespace ds::http_server {

/// Whether `path` is the inspector's: "/", "/ui" or under "/ui/".
bool is_ui_path(std::string_view path);

/// The answer to a request for an inspector path: the file (with ETag,
/// Cache-Control: no-cache, a same-origin Content-Security-Policy; 304 on a
/// matching If-None-Match), a redirect to /ui/, 404 or 405.
Response ui_response(const Request& req, std::string_view path);

}  // namespace ds::http_server
