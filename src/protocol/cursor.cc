#include "protocol/cursor.h"

#include "protocol/headers.h"

namespace ds {

uint64_t cursor_interval(int64_t now_ms) {
  if (now_ms <= kCursorEpochMs) return 0;
  return static_cast<uint64_t>((now_ms - kCursorEpochMs) / kCursorIntervalMs);
}

std::string next_cursor(int64_t now_ms, std::string_view client_cursor) {
  uint64_t current = cursor_interval(now_ms);
  auto client = parse_safe_uint(client_cursor);
  if (client && *client >= current) return std::to_string(*client + 1);
  return std::to_string(current);
}

}  // namespace ds
