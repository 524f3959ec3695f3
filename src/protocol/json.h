#pragma once
// JSON mode (PROTOCOL.md section 9.1): validation and one-level array
// flattening of appended bodies.
//
// A stored JSON record is its messages' exact bytes joined by `,`, so that a
// read of any run of records is `[` + records joined by `,` + `]` with no
// re-encoding, and each message keeps the bytes the writer sent.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/errc.h"

namespace ds {

struct JsonBatch {
  std::string joined;     ///< messages joined by ','
  uint32_t messages = 0;  ///< how many messages
};

/// Validates `body` as one JSON value. A top-level array contributes each of
/// its elements as a message; anything else is one message. `[]` yields zero
/// messages (the caller decides whether that is allowed).
Result<JsonBatch> frame_json(std::string_view body);

/// The first `count` messages of a stored record, joined by ','. Fails if the
/// record holds fewer than `count` messages.
Result<std::string> json_prefix(std::string_view record, uint64_t count);

}  // namespace ds
