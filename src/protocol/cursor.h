#pragma once
// Stream-Cursor values (PROTOCOL.md section 10.1).
//
// A cursor is the number of 20-second intervals since 2024-10-09T00:00:00Z.
// When a client echoes a cursor that is not behind the current interval, the
// answer must be strictly greater. The reference server adds random jitter;
// dstreamd answers `client + 1` instead, so every client that echoes the same
// cursor gets the same next cursor and a CDN can keep collapsing them.

#include <cstdint>
#include <string>
#include <string_view>

namespace ds {

inline constexpr int64_t kCursorEpochMs = 1'728'432'000'000;  // 2024-10-09T00:00:00Z
inline constexpr int64_t kCursorIntervalMs = 20'000;

uint64_t cursor_interval(int64_t now_ms);

/// The cursor to send given the client's `cursor` query value (may be empty).
std::string next_cursor(int64_t now_ms, std::string_view client_cursor);

}  // namespace ds
