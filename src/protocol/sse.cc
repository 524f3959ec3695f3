#include "protocol/sse.h"

namespace ds {

std::string base64_encode(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (size_t rest = in.size() - i) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

void append_sse_data(std::string& out, std::string_view payload, bool base64) {
  out.append("event: data\n");
  if (base64) {
    out.append("data:");
    out.append(base64_encode(payload));
    out.append("\n\n");
    return;
  }
  size_t start = 0;
  for (;;) {
    size_t end = payload.find_first_of("\r\n", start);
    std::string_view line =
        payload.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    out.append(line.starts_with(' ') ? "data: " : "data:");
    out.append(line);
    out.push_back('\n');
    if (end == std::string_view::npos) break;
    start = end + 1;
    if (payload[end] == '\r' && start < payload.size() && payload[start] == '\n') ++start;
  }
  out.push_back('\n');
}

void append_sse_control(std::string& out, const SseControl& c) {
  out.append("event: control\ndata:{\"streamNextOffset\":\"");
  out.append(c.next.text().view());
  out.push_back('"');
  if (!c.closed && !c.cursor.empty()) {
    out.append(",\"streamCursor\":\"");
    out.append(c.cursor);
    out.push_back('"');
  }
  if (c.up_to_date || c.closed) out.append(",\"upToDate\":true");
  if (c.closed) out.append(",\"streamClosed\":true");
  out.append("}\n\n");
}

size_t utf8_complete_prefix(std::string_view s) {
  // Look back at most 3 bytes for the start of the last sequence.
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    auto c = static_cast<uint8_t>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 1;
    return back < len ? n - back : n;
  }
  return n;
}

}  // namespace ds
