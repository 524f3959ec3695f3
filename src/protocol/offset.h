#pragma once
// Stream offsets: two 16-digit zero-padded decimal numbers joined by `_`.
//
// The wire form sorts lexicographically in the same order as (hi, lo), so a
// client may compare offsets as strings. What hi and lo mean is the storage
// engine's business (the embedded engine uses hi = 0 and lo = byte position);
// the protocol layer only parses, formats and compares them.

#include <optional>
#include <string_view>

#include "common/offset.h"

namespace ds {

/// What a client put in `offset=`: a position, or one of the sentinels.
struct OffsetSpec {
  enum class Kind { start, now, at };
  Kind kind = Kind::start;
  Offset at;

  static OffsetSpec start() { return {}; }
  static OffsetSpec now() { return {Kind::now, {}}; }
  static OffsetSpec position(Offset o) { return {Kind::at, o}; }
};

/// Parses the 33-character wire form; nullopt if malformed.
std::optional<Offset> parse_offset(std::string_view s);

/// Parses a query `offset` value: `-1`, `now` or a wire offset.
std::optional<OffsetSpec> parse_offset_spec(std::string_view s);

}  // namespace ds
