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

// The JSON number grammar (RFC 8259 section 6), for numbers too large for
// simdjson's DOM, which rejects what does not fit a double or 64-bit integer.
bool is_json_number(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

// Validates a whole document by visiting every value with simdjson's
// on-demand API (nothing skipped, so nothing unvalidated), checking numbers
// by grammar rather than by range.
simdjson::error_code walk(simdjson::ondemand::value v, int depth) {
  if (depth > 1024) return simdjson::DEPTH_ERROR;
  simdjson::ondemand::json_type type;
  if (auto err = v.type().get(type)) return err;
  switch (type) {
    case simdjson::ondemand::json_type::array: {
      simdjson::ondemand::array a;
      if (auto err = v.get_array().get(a)) return err;
      for (auto element : a) {
        simdjson::ondemand::value child;
        if (auto err = element.get(child)) return err;
        if (auto err = walk(child, depth + 1)) return err;
      }
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::object: {
      simdjson::ondemand::object o;
      if (auto err = v.get_object().get(o)) return err;
      for (auto field : o) {
        std::string_view key;
        if (auto err = field.unescaped_key().get(key)) return err;
        simdjson::ondemand::value child;
        if (auto err = field.value().get(child)) return err;
        if (auto err = walk(child, depth + 1)) return err;
      }
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::number:
      return is_json_number(trim_json_ws(v.raw_json_token())) ? simdjson::SUCCESS
                                                              : simdjson::NUMBER_ERROR;
    case simdjson::ondemand::json_type::string: {
      std::string_view str;
      return v.get_string().get(str);
    }
    case simdjson::ondemand::json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case simdjson::ondemand::json_type::null: {
      bool null;
      if (auto err = v.is_null().get(null)) return err;
      return null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::TAPE_ERROR;
}

simdjson::error_code validate_big_numbers(const simdjson::padded_string& text, bool& is_array) {
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  if (auto err = parser.iterate(text).get(doc)) return err;
  simdjson::ondemand::json_type type;
  if (auto err = doc.type().get(type)) return err;
  is_array = type == simdjson::ondemand::json_type::array;
  if (type != simdjson::ondemand::json_type::array &&
      type != simdjson::ondemand::json_type::object) {
    // A scalar document: its one token must be the whole (trimmed) text.
    std::string_view raw;
    if (auto err = doc.raw_json_token().get(raw)) return err;
    raw = trim_json_ws(raw);
    if (raw.size() != trim_json_ws(std::string_view(text.data(), text.size())).size())
      return simdjson::TRAILING_CONTENT;
    // Only a number can make the DOM parser fail with NUMBER_ERROR.
    return is_json_number(raw) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
  }
  simdjson::ondemand::value root;
  if (auto err = doc.get_value().get(root)) return err;
  if (auto err = walk(root, 0)) return err;
  const char* where = nullptr;
  // At the end of the document there is no current location: anything else is trailing content.
  return doc.current_location().get(where) ? simdjson::SUCCESS : simdjson::TRAILING_CONTENT;
}

Result<JsonBatch> frame_json(std::string_view body) {
  simdjson::padded_string text(body);
  simdjson::dom::parser dom;
  simdjson::dom::element root;
  bool is_array = false;
  if (auto err = dom.parse(text).get(root)) {
    // Valid JSON may hold numbers beyond double or 64-bit range; the DOM
    // parser refuses those, so check them by grammar instead.
    if (err == simdjson::NUMBER_ERROR) err = validate_big_numbers(text, is_array);
    if (err)
      return Error(errc::bad_json, std::string("invalid JSON: ") + simdjson::error_message(err));
  } else {
    is_array = root.is_array();
  }
  JsonBatch batch;
  if (!is_array) {
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
