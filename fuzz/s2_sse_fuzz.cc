// The S2 client's text/event-stream parser (s2::SseParser) and what a read
// session does with each event (a `batch` is a ReadBatch, a `ping` a tail,
// an `error` an S2 error). Properties: the events do not depend on how the
// body is split into reads (S2's bytes arrive in arbitrary TCP segments); no
// event field holds a line end it should have ended at; an event over the
// size bound stops the parser.
//
// The same input is also a payload the server sends in SSE (protocol/sse.h):
// parsed back, its `data` event holds exactly the payload (line ends
// normalized to LF; base64 for binary streams) and its `control` event
// follows, so no payload can end an event early or forge one.

#include <fuzzer/FuzzedDataProvider.h>
#include <simdjson.h>

#include <string>
#include <vector>

#include "fuzz_check.h"
#include "protocol/sse.h"
#include "s2/sse_parser.h"
#include "s2/wire.h"

namespace {

struct Outcome {
  std::vector<ds::s2::SseEvent> events;
  bool ok = true;
};

bool same(const ds::s2::SseEvent& a, const ds::s2::SseEvent& b) {
  return a.type == b.type && a.data == b.data && a.id == b.id;
}

/// Feeds `body` in pieces of the given sizes (the rest in one piece).
Outcome run(std::string_view body, size_t max_event_bytes, const std::vector<size_t>& pieces) {
  ds::s2::SseParser parser(max_event_bytes);
  Outcome out;
  auto on_event = [&out](ds::s2::SseEvent&& ev) {
    out.events.push_back(std::move(ev));
    return true;
  };
  size_t k = 0;
  while (!body.empty()) {
    const size_t n = k < pieces.size() ? std::min(pieces[k++], body.size()) : body.size();
    if (!parser.feed(body.substr(0, n), on_event)) {
      out.ok = false;
      break;
    }
    body.remove_prefix(n);
  }
  return out;
}

/// What HttpS2Api's read session does with an event (s2/http_s2_api.cc).
void deliver(const ds::s2::SseEvent& ev) {
  std::string error;
  if (ev.type == "batch") {
    ds::s2::ReadBatch batch;
    if (!ds::s2::wire::parse_read_batch(ev.data, &batch, &error)) FUZZ_CHECK(!error.empty());
  } else if (ev.type == "ping") {
    std::optional<uint64_t> tail;
    ds::s2::wire::parse_tail(ev.data, &tail, &error);
  } else if (ev.type == "error") {
    const ds::s2::S2Error e = ds::s2::wire::error_from_response(0, ev.data);
    ds::s2::wire::is_retryable_code(e.code);
  }
}

/// The payload with CRLF and CR turned into LF, as an SSE client sees it.
std::string lf_lines(std::string_view payload) {
  std::string out;
  for (size_t i = 0; i < payload.size(); ++i) {
    if (payload[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < payload.size() && payload[i + 1] == '\n') ++i;
    } else {
      out.push_back(payload[i]);
    }
  }
  return out;
}

void check_server_framing(std::string_view payload) {
  for (bool base64 : {false, true}) {
    std::string wire;
    ds::append_sse_data(wire, payload, base64);
    ds::append_sse_control(wire, ds::SseControl{{1, 2}, "42", true, false});
    const Outcome parsed = run(wire, wire.size() + 1, {});
    FUZZ_CHECK(parsed.ok);
    FUZZ_CHECK(parsed.events.size() == 2);
    FUZZ_CHECK(parsed.events[0].type == "data" && parsed.events[1].type == "control");
    if (base64) {
      auto decoded = ds::s2::wire::base64_decode(parsed.events[0].data);
      FUZZ_CHECK(decoded && *decoded == payload);
    } else {
      FUZZ_CHECK(parsed.events[0].data == lf_lines(payload));
    }
  }
  // A text payload is cut only after a complete UTF-8 sequence.
  const size_t complete = ds::utf8_complete_prefix(payload);
  FUZZ_CHECK(complete <= payload.size() && payload.size() - complete <= 3);
  if (simdjson::validate_utf8(payload.data(), payload.size()))
    FUZZ_CHECK(complete == payload.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  const size_t max_event_bytes = fdp.ConsumeIntegralInRange<size_t>(1, 1024);
  std::vector<size_t> pieces(fdp.ConsumeIntegralInRange<size_t>(0, 8));
  for (auto& p : pieces) p = fdp.ConsumeIntegralInRange<size_t>(1, 64);
  const std::string body = fdp.ConsumeRemainingBytesAsString();

  const Outcome whole = run(body, max_event_bytes, {});
  const Outcome split = run(body, max_event_bytes, pieces);
  std::vector<size_t> bytewise(body.size(), 1);
  const Outcome single = run(body, max_event_bytes, bytewise);
  for (const Outcome* o : {&split, &single}) {
    FUZZ_CHECK(o->ok == whole.ok);
    FUZZ_CHECK(o->events.size() == whole.events.size());
    for (size_t i = 0; i < whole.events.size(); ++i)
      FUZZ_CHECK(same(o->events[i], whole.events[i]));
  }
  for (const auto& ev : whole.events) {
    FUZZ_CHECK(ev.data.find('\r') == std::string::npos);
    FUZZ_CHECK(ev.type.find_first_of("\r\n") == std::string::npos);
    FUZZ_CHECK(ev.id.find_first_of("\r\n") == std::string::npos);
    FUZZ_CHECK(ev.data.size() <= max_event_bytes);
    deliver(ev);
  }
  check_server_framing(body);
  return 0;
}
