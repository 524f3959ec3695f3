#pragma once
// Server-Sent Events framing for live reads (PROTOCOL.md 5.8).
//
// Every `data` event is followed by a `control` event, and both go out in one
// write. Text payloads are split on CR, LF and CRLF into `data:` lines, so no
// payload byte can end an event or forge one; a line that starts with a space
// gets one extra space, which every SSE parser strips, so the text arrives
// unchanged. Binary streams are sent as standard padded base64.

#include <string>
#include <string_view>

#include "protocol/offset.h"

namespace ds {

struct SseControl {
  Offset next;
  std::string cursor;  ///< omitted when closed
  bool up_to_date = false;
  bool closed = false;
};

void append_sse_data(std::string& out, std::string_view payload, bool base64);
void append_sse_control(std::string& out, const SseControl& c);

std::string base64_encode(std::string_view in);

/// Length of the longest prefix of `s` that does not end inside a UTF-8
/// sequence (an incomplete trailing sequence is held back for the next event).
size_t utf8_complete_prefix(std::string_view s);

}  // namespace ds
