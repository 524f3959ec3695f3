#include "s2/wire.h"

#include <simdjson.h>

#include <array>

#include "common/json_string.h"

namespace ds::s2::wire {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_decode_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr auto kDecode = make_decode_table();

void append_b64_string(std::string& out, std::string_view bytes) {
  out.push_back('"');
  out += base64_encode(bytes);
  out.push_back('"');
}

/// Parses `body` into *root using a per-thread parser (the element is valid
/// until the next parse on this thread).
bool parse_root(std::string_view body, simdjson::dom::element* root, std::string* error) {
  thread_local simdjson::dom::parser parser;
  simdjson::padded_string text(body);
  if (auto err = parser.parse(text).get(*root)) {
    *error = std::string("invalid JSON from S2: ") + simdjson::error_message(err);
    return false;
  }
  return true;
}

bool get_u64(simdjson::dom::element obj, std::string_view key, uint64_t* out) {
  return !obj[key].get_uint64().get(*out);
}

bool decode_field(simdjson::dom::element e, std::string* out) {
  std::string_view text;
  if (e.get_string().get(text)) return false;
  auto decoded = base64_decode(text);
  if (!decoded) return false;
  *out = std::move(*decoded);
  return true;
}

bool parse_record(simdjson::dom::element e, SequencedRecord* r, std::string* error) {
  if (!get_u64(e, "seq_num", &r->seq_num)) {
    *error = "record without a valid seq_num";
    return false;
  }
  get_u64(e, "timestamp", &r->timestamp);
  simdjson::dom::array headers;
  if (!e["headers"].get_array().get(headers)) {
    for (auto pair : headers) {
      simdjson::dom::array nv;
      Header h;
      if (pair.get_array().get(nv) || nv.size() != 2 ||
          !decode_field(nv.at(0).value_unsafe(), &h.name) ||
          !decode_field(nv.at(1).value_unsafe(), &h.value)) {
        *error = "record with a malformed header";
        return false;
      }
      r->headers.push_back(std::move(h));
    }
  }
  simdjson::dom::element body;
  if (!e["body"].get(body) && !body.is_null() && !decode_field(body, &r->body)) {
    *error = "record with a malformed body";
    return false;
  }
  return true;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = b(i) << 16 | b(i + 1) << 8 | b(i + 2);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = b(i) << 16 | (rest == 2 ? b(i + 1) << 8 : 0);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      if (k >= 4 - pad) {
        v <<= 6;
        continue;
      }
      int8_t d = kDecode[static_cast<unsigned char>(text[i + k])];
      if (d < 0) return std::nullopt;
      v = v << 6 | static_cast<uint32_t>(d);
    }
    // Canonical padding: the bits dropped by padding must be zero.
    if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))) return std::nullopt;
    out.push_back(static_cast<char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

std::string json_string(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

std::string encode_path_segment(std::string_view segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : segment) {
    auto u = static_cast<unsigned char>(c);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

std::string create_stream_body(std::string_view stream) {
  std::string out = "{\"stream\":";
  append_json_string(out, stream);
  out += ",\"config\":{\"retention_policy\":{\"infinite\":{}}}}";
  return out;
}

std::string append_body(const AppendInput& input) {
  std::string out;
  size_t estimate = 64;
  for (const auto& r : input.records) estimate += metered_bytes(r) * 4 / 3 + 32;
  out.reserve(estimate);
  out += "{\"records\":[";
  bool first = true;
  for (const auto& r : input.records) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"headers\":[";
    bool first_header = true;
    for (const auto& h : r.headers) {
      if (!first_header) out.push_back(',');
      first_header = false;
      out.push_back('[');
      append_b64_string(out, h.name);
      out.push_back(',');
      append_b64_string(out, h.value);
      out.push_back(']');
    }
    out += "],\"body\":";
    append_b64_string(out, r.body);
    out.push_back('}');
  }
  out += "]";
  if (input.match_seq_num) out += ",\"match_seq_num\":" + std::to_string(*input.match_seq_num);
  if (input.fencing_token) {
    out += ",\"fencing_token\":";
    append_json_string(out, *input.fencing_token);
  }
  out += "}";
  return out;
}

bool parse_append_ack(std::string_view body, AppendAck* ack, std::string* error) {
  simdjson::dom::element root;
  if (!parse_root(body, &root, error)) return false;
  simdjson::dom::element start, end, tail;
  if (root["start"].get(start) || root["end"].get(end) || root["tail"].get(tail) ||
      !get_u64(start, "seq_num", &ack->start_seq) || !get_u64(end, "seq_num", &ack->end_seq) ||
      !get_u64(tail, "seq_num", &ack->tail_seq)) {
    *error = "malformed append ack from S2";
    return false;
  }
  return true;
}

bool parse_read_batch(std::string_view body, ReadBatch* batch, std::string* error) {
  simdjson::dom::element root;
  if (!parse_root(body, &root, error)) return false;
  simdjson::dom::array records;
  if (root["records"].get_array().get(records)) {
    *error = "read batch without records";
    return false;
  }
  batch->records.reserve(records.size());
  for (auto e : records) {
    SequencedRecord r;
    if (!parse_record(e, &r, error)) return false;
    batch->records.push_back(std::move(r));
  }
  simdjson::dom::element tail;
  uint64_t tail_seq = 0;
  if (!root["tail"].get(tail) && !tail.is_null()) {
    if (!get_u64(tail, "seq_num", &tail_seq)) {
      *error = "read batch with a malformed tail";
      return false;
    }
    batch->tail = tail_seq;
  }
  return true;
}

bool parse_tail(std::string_view body, std::optional<uint64_t>* tail, std::string* error) {
  simdjson::dom::element root;
  if (!parse_root(body, &root, error)) return false;
  simdjson::dom::element t;
  *tail = std::nullopt;
  if (root["tail"].get(t) || t.is_null()) return true;
  uint64_t seq = 0;
  if (!get_u64(t, "seq_num", &seq)) {
    *error = "malformed tail from S2";
    return false;
  }
  *tail = seq;
  return true;
}

bool parse_stream_page(std::string_view body, StreamPage* page, std::string* error) {
  simdjson::dom::element root;
  if (!parse_root(body, &root, error)) return false;
  simdjson::dom::array streams;
  if (root["streams"].get_array().get(streams) || root["has_more"].get_bool().get(page->has_more)) {
    *error = "malformed stream list from S2";
    return false;
  }
  page->names.reserve(streams.size());
  for (auto info : streams) {
    std::string_view name;
    if (info["name"].get_string().get(name)) {
      *error = "stream list entry without a name";
      return false;
    }
    page->last = name;
    simdjson::dom::element deleted_at;
    if (!info["deleted_at"].get(deleted_at) && !deleted_at.is_null()) continue;
    page->names.emplace_back(name);
  }
  return true;
}

std::string list_streams_query(std::string_view prefix, std::string_view start_after,
                               uint64_t limit) {
  return "prefix=" + encode_path_segment(prefix) +
         "&start_after=" + encode_path_segment(start_after) + "&limit=" + std::to_string(limit);
}

S2Error error_from_response(int status, std::string_view body) {
  S2Error e;
  e.kind = S2Error::Kind::rejected;
  e.http_status = status;
  simdjson::dom::element root;
  std::string parse_error;
  bool json = !body.empty() && parse_root(body, &root, &parse_error) && root.is_object();
  if (json) {
    std::string_view text;
    if (!root["code"].get_string().get(text)) e.code = std::string(text);
    if (!root["message"].get_string().get(text)) e.message = std::string(text);
  }
  if (status == 412 && json) {
    uint64_t next = 0;
    std::string_view token;
    if (!root["seq_num_mismatch"].get_uint64().get(next)) {
      e.kind = S2Error::Kind::seq_num_mismatch;
      e.tail = next;
      e.message = "match_seq_num failed: the tail is " + std::to_string(next);
      return e;
    }
    if (!root["fencing_token_mismatch"].get_string().get(token)) {
      e.kind = S2Error::Kind::fencing_token_mismatch;
      e.token = std::string(token);
      e.message = "fencing token mismatch";
      return e;
    }
    // A 412 that names neither condition is mapped like any other error
    // below, so it still gets a message.
  }
  if (status == 416) {
    e.kind = S2Error::Kind::range_not_satisfiable;
    std::optional<uint64_t> tail;
    if (json && parse_tail(body, &tail, &parse_error) && tail) e.tail = *tail;
    e.message = "read start at or past the tail " + std::to_string(e.tail);
    return e;
  }
  if (e.code == "stream_not_found" || e.code == "basin_not_found" ||
      (status == 404 && e.code.empty())) {
    e.kind = S2Error::Kind::not_found;
  } else if (e.code == "resource_already_exists") {
    e.kind = S2Error::Kind::already_exists;
  } else if (e.code == "stream_deletion_pending" || e.code == "basin_deletion_pending") {
    e.kind = S2Error::Kind::deletion_pending;
  }
  if (e.message.empty()) {
    e.message = "S2 answered HTTP " + std::to_string(status);
    if (!json && !body.empty()) e.message += ": " + std::string(body.substr(0, 200));
  }
  return e;
}

bool is_retryable(int status, std::string_view code) {
  switch (status) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return true;
    case 409:
      return code == "transaction_conflict";
    default:
      return false;
  }
}

bool is_retryable_code(std::string_view code) {
  return code == "request_timeout" || code == "rate_limited" || code == "other" ||
         code == "storage" || code == "hot_server" || code == "server_draining" ||
         code == "unavailable" || code == "upstream_timeout" || code == "transaction_conflict" ||
         code == "reconnect_advised";
}

bool has_no_side_effects(std::string_view code) {
  // s2:api/src/v1/error.rs: of the retryable codes, these guarantee the
  // operation did not happen. `unavailable`, `other`, `storage`,
  // `request_timeout`, `upstream_timeout` do not (s2-api.md section 2.2).
  return code == "rate_limited" || code == "hot_server" || code == "server_draining" ||
         code == "transaction_conflict";
}

}  // namespace ds::s2::wire
