#pragma once
// How a request's body is delimited (RFC 9112 section 6), checked on the
// request head before any of the body is read. Pure functions, safe from any
// thread.
//
// HTTP request smuggling lives in the gaps between what two parsers think a
// body is, so dstreamd accepts exactly one unambiguous framing and refuses
// everything else with the connection closed (the bytes after such a head
// cannot be trusted to start the next request):
//
// - no Transfer-Encoding: the body is Content-Length bytes (none without
//   one). Content-Length must be one field with one decimal value: repeated
//   fields and lists, even of equal values, are 400.
// - Transfer-Encoding: the codings (all fields, in order) must end in one
//   `chunked`, the only coding dstreamd decodes. A final coding other than
//   `chunked` is 400 (RFC 9112 6.3 item 4), as is `chunked` applied twice; any
//   other coding before the final `chunked` (e.g. `gzip, chunked`) is 501.
// - Transfer-Encoding together with Content-Length is 400: RFC 9112 6.1
//   lets a server either reject it or use the Transfer-Encoding, and close the
//   connection either way; rejecting is the safe choice, as an intermediary in
//   front of us may have used the Content-Length.
// - Transfer-Encoding in an HTTP/1.0 request is 400: RFC 9112 6.1 says to
//   treat the framing as faulty (a 1.0 sender may not mean chunked).

#include <optional>
#include <span>
#include <string_view>

#include "common/errc.h"

namespace ds {

/// The error for a request head whose body framing is refused, or nullopt.
/// `version` is 10 or 11; `transfer_encoding` and `content_length` hold every
/// field value of that name, in the order received.
std::optional<Error> check_body_framing(unsigned version,
                                        std::span<const std::string_view> transfer_encoding,
                                        std::span<const std::string_view> content_length);

}  // namespace ds
