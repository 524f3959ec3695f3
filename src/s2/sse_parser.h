#pragma once
// Incremental text/event-stream parser (WHATWG EventSource framing): feed it
// body bytes as they arrive, in any split; it emits one event per blank line.
// Accepts `name:value` and `name: value`, LF, CRLF or CR line ends, ignores
// comments (`:...`) and unknown fields. Not thread-safe: one per session.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace ds::s2 {

struct SseEvent {
  std::string type;  ///< the `event` field; empty means "message"
  std::string data;  ///< `data` lines joined with '\n'
  std::string id;
};

class SseParser {
 public:
  /// max_event_bytes bounds the bytes buffered for one event.
  explicit SseParser(size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {}

  /// Feeds bytes; calls on_event for each complete event, in order. Returns
  /// false (and stops) if an event exceeds the size bound or on_event
  /// returns false.
  bool feed(std::string_view bytes, const std::function<bool(SseEvent&&)>& on_event);

 private:
  bool line(std::string_view text, const std::function<bool(SseEvent&&)>& on_event);

  size_t max_event_bytes_;
  std::string partial_;   ///< the current, unterminated line
  bool skip_lf_ = false;  ///< the last byte was CR: a following LF ends nothing
  SseEvent event_;
  bool has_data_ = false;
  size_t event_bytes_ = 0;
};

}  // namespace ds::s2
