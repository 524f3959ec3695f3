#include "protocol/json.h"

#include <simdjson.h>

#include "protocol/headers.h"

namespace ds {
namespace {

std::string_view trim_json_ws(std::string_view s) {
  auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// Splits an already validated top-level array into its elements' raw bytes.
// simdjson 3.0 (Debian 12) offers raw bytes only for scalars, so the split is
// a scan for depth-1 commas outside strings; validity was proven by the DOM
// parser first, which is what makes such a small scan sufficient.
template <class Fn>
void for_each_element(std::string_view array_text, Fn&& fn) {
  std::string_view s = trim_json_ws(array_text);
  if (s.size() < 2 || s.front() != '[') return;
  int depth = 0;
  bool in_string = false;
  size_t start = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        ++depth;
        break;
      case ']':
      case '}':
        if (--depth == 0) {
          auto last = trim_json_ws(s.substr(start, i - start));
          if (!last.empty()) fn(last);
          return;
        }
        break;
      case ',':
        if (depth == 1) {
          fn(trim_json_ws(s.substr(start, i - start)));
          start = i + 1;
        }
        break;
      default:
        break;
    }
  }
}

}  // namespace

Result<JsonBatch> frame_json(std::string_view body) {
  simdjson::padded_string text(body);
  simdjson::dom::parser dom;
  simdjson::dom::element root;
  if (auto err = dom.parse(text).get(root)) {
    return Error(errc::bad_json, std::string("invalid JSON: ") + simdjson::error_message(err));
  }
  JsonBatch batch;
  if (!root.is_array()) {
    batch.joined = std::string(trim_json_ws(body));
    batch.messages = 1;
    return batch;
  }
  batch.joined.reserve(body.size());
  for_each_element(body, [&](std::string_view raw) {
    if (batch.messages++ > 0) batch.joined.push_back(',');
    batch.joined.append(raw);
  });
  return batch;
}

Result<std::string> json_prefix(std::string_view record, uint64_t count) {
  std::string wrapped;
  wrapped.reserve(record.size() + 2);
  wrapped.push_back('[');
  wrapped.append(record);
  wrapped.push_back(']');
  std::string out;
  uint64_t taken = 0;
  for_each_element(wrapped, [&](std::string_view raw) {
    if (taken == count) return;
    if (taken++ > 0) out.push_back(',');
    out.append(raw);
  });
  if (taken < count)
    return Error(errc::bad_request,
                 "Stream-Fork-Sub-Offset overshoots the append at the fork offset");
  return out;
}

}  // namespace ds
