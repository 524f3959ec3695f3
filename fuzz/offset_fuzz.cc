// Offsets and cursors: the wire offset (parse_offset, parse_offset_spec,
// Offset::str) and Stream-Cursor (next_cursor, cursor_interval). Properties:
// parse -> str gives back the input byte for byte; str -> parse gives back
// the (clamped) value; the wire form sorts like (hi, lo); a cursor answer is
// a plain decimal, and strictly greater than an echoed cursor that is not
// behind the clock.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <limits>
#include <string>

#include "fuzz_check.h"
#include "protocol/cursor.h"
#include "protocol/headers.h"
#include "protocol/offset.h"

namespace {

ds::Offset clamped(ds::Offset o) {
  return {std::min(o.hi, ds::Offset::kMaxPart), std::min(o.lo, ds::Offset::kMaxPart)};
}

int sign(std::strong_ordering o) { return o < 0 ? -1 : o > 0 ? 1 : 0; }
int sign(int c) { return c < 0 ? -1 : c > 0 ? 1 : 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = ds::fuzz::as_text(data, size);

  // The input as a wire offset and as an `offset=` value.
  auto offset = ds::parse_offset(in);
  if (offset) {
    FUZZ_CHECK(offset->hi <= ds::Offset::kMaxPart && offset->lo <= ds::Offset::kMaxPart);
    FUZZ_CHECK(offset->str() == in);
  }
  auto spec = ds::parse_offset_spec(in);
  if (in == "-1") {
    FUZZ_CHECK(spec && spec->kind == ds::OffsetSpec::Kind::start);
  } else if (in == "now") {
    FUZZ_CHECK(spec && spec->kind == ds::OffsetSpec::Kind::now);
  } else {
    FUZZ_CHECK(spec.has_value() == offset.has_value());
    if (spec) FUZZ_CHECK(spec->kind == ds::OffsetSpec::Kind::at && spec->at == *offset);
  }

  // The input as numbers: two offsets and a clock.
  FuzzedDataProvider fdp(data, size);
  const ds::Offset a{fdp.ConsumeIntegral<uint64_t>(), fdp.ConsumeIntegral<uint64_t>()};
  const ds::Offset b{fdp.ConsumeIntegral<uint64_t>(), fdp.ConsumeIntegral<uint64_t>()};
  const int64_t now_ms = fdp.ConsumeIntegral<int64_t>();
  const std::string sa = a.str(), sb = b.str();
  FUZZ_CHECK(sa.size() == 33 && sb.size() == 33);
  auto pa = ds::parse_offset(sa);
  auto pb = ds::parse_offset(sb);
  FUZZ_CHECK(pa && *pa == clamped(a));
  FUZZ_CHECK(pb && *pb == clamped(b));
  FUZZ_CHECK(sign(clamped(a) <=> clamped(b)) == sign(sa.compare(sb)));

  // Stream-Cursor: the rest of the input is the client's cursor.
  const std::string client = fdp.ConsumeRemainingBytesAsString();
  const uint64_t current = ds::cursor_interval(now_ms);
  const std::string next = ds::next_cursor(now_ms, client);
  auto next_value = ds::parse_strict_uint(next);
  FUZZ_CHECK(next_value.has_value());
  auto echoed = ds::parse_safe_uint(client);
  if (echoed && *echoed >= current) {
    FUZZ_CHECK(*next_value == *echoed + 1);
  } else {
    FUZZ_CHECK(*next_value == current);
  }
  if (now_ms <= std::numeric_limits<int64_t>::max() - ds::kCursorIntervalMs)
    FUZZ_CHECK(ds::cursor_interval(now_ms + ds::kCursorIntervalMs) >= current);
  // The answer echoed back moves on again.
  FUZZ_CHECK(ds::next_cursor(now_ms, next) == std::to_string(*next_value + 1) ||
             *next_value > ds::kMaxSafeInteger);
  return 0;
}
