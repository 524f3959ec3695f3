// The S2 client's JSON response parsers (append acks, read batches, tails,
// error bodies) and its base64 and path encodings (s2/wire.h). Properties:
// a parsed read batch written back as S2's JSON parses to the same records;
// the request bodies the client builds from parsed values are valid UTF-8
// JSON; base64 decoding is strict (only canonical text decodes, and it
// encodes back to itself); path segments percent-decode back to themselves.

#include <simdjson.h>

#include <string>

#include "fuzz_check.h"
#include "protocol/target.h"
#include "s2/wire.h"

namespace {

namespace wire = ds::s2::wire;

bool valid_json(const std::string& text) {
  if (!simdjson::validate_utf8(text.data(), text.size())) return false;
  simdjson::dom::parser parser;
  const simdjson::padded_string padded(text);
  simdjson::dom::element root;
  return !parser.parse(padded).get(root);
}

/// A ReadBatch as S2 sends it (s2-api.md): base64 header names, values and bodies.
std::string render(const ds::s2::ReadBatch& batch) {
  std::string out = "{\"records\":[";
  for (size_t i = 0; i < batch.records.size(); ++i) {
    const auto& r = batch.records[i];
    if (i) out += ',';
    out += "{\"seq_num\":" + std::to_string(r.seq_num) +
           ",\"timestamp\":" + std::to_string(r.timestamp) + ",\"headers\":[";
    for (size_t j = 0; j < r.headers.size(); ++j) {
      if (j) out += ',';
      out += "[\"" + wire::base64_encode(r.headers[j].name) + "\",\"" +
             wire::base64_encode(r.headers[j].value) + "\"]";
    }
    out += "],\"body\":\"" + wire::base64_encode(r.body) + "\"}";
  }
  out += "]";
  if (batch.tail) out += ",\"tail\":{\"seq_num\":" + std::to_string(*batch.tail) + "}";
  out += "}";
  return out;
}

void check_read_batch(std::string_view in) {
  ds::s2::ReadBatch batch;
  std::string error;
  if (!wire::parse_read_batch(in, &batch, &error)) {
    FUZZ_CHECK(!error.empty());
    return;
  }
  ds::s2::ReadBatch again;
  FUZZ_CHECK(wire::parse_read_batch(render(batch), &again, &error));
  FUZZ_CHECK(again.tail == batch.tail);
  FUZZ_CHECK(again.records.size() == batch.records.size());
  ds::s2::AppendInput input;
  for (size_t i = 0; i < batch.records.size(); ++i) {
    const auto& a = batch.records[i];
    const auto& b = again.records[i];
    FUZZ_CHECK(a.seq_num == b.seq_num && a.timestamp == b.timestamp);
    FUZZ_CHECK(a.headers == b.headers && a.body == b.body);
    input.records.push_back({a.headers, a.body});
  }
  // Re-appending what was read (as a fork copy does) builds valid JSON.
  if (!batch.records.empty()) input.fencing_token = batch.records[0].body;
  FUZZ_CHECK(valid_json(wire::append_body(input)));
}

void check_other_bodies(std::string_view in) {
  ds::s2::AppendAck ack;
  std::string error;
  if (wire::parse_append_ack(in, &ack, &error)) {
    FUZZ_CHECK(error.empty());
  }
  std::optional<uint64_t> tail;
  wire::parse_tail(in, &tail, &error);
  for (int status : {0, 400, 404, 409, 412, 416, 503}) {
    const ds::s2::S2Error e = wire::error_from_response(status, in);
    FUZZ_CHECK(e.http_status == status);
    FUZZ_CHECK(!e.message.empty());
    wire::is_retryable(status, e.code);
  }
}

void check_encodings(std::string_view in) {
  const std::string encoded = wire::base64_encode(in);
  auto decoded = wire::base64_decode(encoded);
  FUZZ_CHECK(decoded && *decoded == in);
  if (auto raw = wire::base64_decode(in)) FUZZ_CHECK(wire::base64_encode(*raw) == in);

  const std::string segment = wire::encode_path_segment(in);
  FUZZ_CHECK(segment.find_first_of("/?#&+ ") == std::string::npos);
  auto back = ds::percent_decode(segment, false);
  FUZZ_CHECK(back && *back == in);

  FUZZ_CHECK(valid_json(wire::json_string(in)));
  FUZZ_CHECK(valid_json(wire::create_stream_body(in)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = ds::fuzz::as_text(data, size);
  check_read_batch(in);
  check_other_bodies(in);
  check_encodings(in);
  return 0;
}
