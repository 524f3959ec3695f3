// JSON mode: frame_json (validation and one-level array flattening of an
// append body), json_prefix (the first messages of a stored record), and
// append_json_string (the JSON string literals the server writes around
// client bytes). Properties: whatever simdjson accepts frame_json accepts;
// the stored record re-framed as an array gives back the same messages;
// every prefix of it is found and no more; a written string literal is valid
// UTF-8 JSON and carries valid UTF-8 input unchanged.

#include <simdjson.h>

#include <string>

#include "common/json_string.h"
#include "fuzz_check.h"
#include "protocol/json.h"

namespace {

void check_frame(std::string_view in) {
  auto batch = ds::frame_json(in);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  const simdjson::padded_string padded(in);
  if (!parser.parse(padded).get(root)) FUZZ_CHECK(batch.ok());
  if (!batch) {
    FUZZ_CHECK(batch.error().code == ds::errc::bad_json);
    return;
  }
  FUZZ_CHECK(simdjson::validate_utf8(batch->joined.data(), batch->joined.size()));
  // What a read returns for this record: `[` + record + `]`, a valid array of
  // the same messages.
  auto again = ds::frame_json("[" + batch->joined + "]");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->messages == batch->messages);
  FUZZ_CHECK(again->joined == batch->joined);
  // Fork sub-offsets: every prefix of the record's messages, and no more.
  auto all = ds::json_prefix(batch->joined, batch->messages);
  FUZZ_CHECK(all.ok() && *all == batch->joined);
  auto none = ds::json_prefix(batch->joined, 0);
  FUZZ_CHECK(none.ok() && none->empty());
  if (batch->messages > 1) {
    auto some = ds::json_prefix(batch->joined, batch->messages - 1);
    FUZZ_CHECK(some.ok());
    FUZZ_CHECK(batch->joined.starts_with(*some) && batch->joined[some->size()] == ',');
  }
  FUZZ_CHECK(!ds::json_prefix(batch->joined, uint64_t{batch->messages} + 1).ok());
}

void check_string_literal(std::string_view in) {
  std::string out;
  ds::append_json_string(out, in);
  FUZZ_CHECK(simdjson::validate_utf8(out.data(), out.size()));
  simdjson::dom::parser parser;
  std::string_view decoded;
  const simdjson::padded_string padded(out);
  FUZZ_CHECK(!parser.parse(padded).get_string().get(decoded));
  if (simdjson::validate_utf8(in.data(), in.size())) FUZZ_CHECK(decoded == in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = ds::fuzz::as_text(data, size);
  check_frame(in);
  check_string_literal(in);
  return 0;
}
