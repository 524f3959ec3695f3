#include "s2/sse_parser.h"

namespace ds::s2 {

bool SseParser::feed(std::string_view bytes, const std::function<bool(SseEvent&&)>& on_event) {
  size_t i = 0;
  while (i < bytes.size()) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (bytes[i] == '\n') {
        ++i;
        continue;
      }
    }
    size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      partial_.append(bytes.substr(i));
      return event_bytes_ + partial_.size() <= max_event_bytes_;
    }
    skip_lf_ = bytes[end] == '\r';
    bool ok;
    if (partial_.empty()) {
      ok = line(bytes.substr(i, end - i), on_event);
    } else {
      partial_.append(bytes.substr(i, end - i));
      std::string whole = std::move(partial_);
      partial_.clear();
      ok = line(whole, on_event);
    }
    if (!ok) return false;
    i = end + 1;
  }
  return true;
}

bool SseParser::line(std::string_view text, const std::function<bool(SseEvent&&)>& on_event) {
  if (text.empty()) {
    bool ok = true;
    if (has_data_) ok = on_event(std::move(event_));
    event_ = SseEvent{};
    has_data_ = false;
    event_bytes_ = 0;
    return ok;
  }
  event_bytes_ += text.size();
  if (event_bytes_ > max_event_bytes_) return false;
  if (text[0] == ':') return true;
  size_t colon = text.find(':');
  std::string_view name = text.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = text.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (name == "event") {
    event_.type = std::string(value);
  } else if (name == "data") {
    if (has_data_) event_.data.push_back('\n');
    event_.data.append(value);
    has_data_ = true;
  } else if (name == "id") {
    event_.id = std::string(value);
  }
  return true;
}

}  // namespace ds::s2
