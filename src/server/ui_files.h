#pragma once
// The inspector's static files (ui/), embedded at build time by
// src/server/embed_ui.cmake. Asio-free.

#include <string_view>
#include <vector>

namespace ds::ui {

struct Asset {
  std::string_view name;          ///< file name under /ui/, e.g. "app.js"
  std::string_view content_type;  ///< with charset for text
  std::string_view etag;          ///< strong, quoted: a prefix of the SHA-256
  std::string_view body;
};

/// Every embedded file (defined in the generated ui_files_data.cc).
const std::vector<Asset>& assets();

/// The file named `name`, or null.
inline const Asset* find_asset(std::string_view name) {
  for (const auto& a : assets())
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace ds::ui
