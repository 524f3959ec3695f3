#pragma once
// Error values shared by the protocol, storage and HTTP layers.
//
// Errors on hot paths are values (`Result<T>`), never exceptions. Every
// condition a client can cause has its own enumerator so that the HTTP layer
// can map it to a status code in one exhaustive switch (protocol/http_status.h).

#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

#include "common/offset.h"

namespace ds {

enum class errc : int {
  ok = 0,
  bad_request,               ///< malformed request: header syntax, parameters
  bad_offset,                ///< offset query parameter or header is malformed
  bad_json,                  ///< JSON body is not valid JSON
  empty_body,                ///< POST without body and without Stream-Closed
  empty_json_array,          ///< POST of `[]` to a JSON stream
  not_found,                 ///< no such stream
  gone,                      ///< stream is soft-deleted (forks still reference it)
  method_not_allowed,        ///< HTTP method the stream URL does not support
  config_mismatch,           ///< PUT of an existing stream with another config
  stream_closed,             ///< append to a closed stream
  content_type_mismatch,     ///< append with another Content-Type than the stream's
  stream_seq_regression,     ///< Stream-Seq not greater than the last one
  producer_stale_epoch,      ///< Producer-Epoch below the current one (fenced)
  producer_seq_gap,          ///< Producer-Seq skips ahead of the expected one
  producer_bad_epoch_start,  ///< new Producer-Epoch that does not start at seq 0
  payload_too_large,         ///< body over --max-body-bytes
  uri_too_long,              ///< stream path over 512 bytes
  fork_offset_beyond_tail,   ///< Stream-Fork-Offset past the source's tail
  fork_source_deleted,       ///< Stream-Forked-From names a soft-deleted stream
  unavailable,               ///< storage temporarily unavailable: retry later
  storage_failure,           ///< storage failed; the request had no effect
  shutting_down,             ///< server is draining
  unauthorized,              ///< missing, invalid or expired bearer token (auth/)
  forbidden,                 ///< valid token without the scope or stream path needed
  not_implemented,           ///< a request feature the server does not support (a transfer coding)
  insufficient_storage,  ///< the disk is full: the write had no effect, retry once there is space
  request_timeout,       ///< the request head or body did not arrive in time (--request-*-timeout)
  header_fields_too_large,  ///< request head over --max-header-bytes or --max-header-count
  too_many_readers,         ///< a live reader over --max-readers-per-stream or --max-parked-readers
  precondition_failed,      ///< an append's If-Match does not name the stream's tail
  retention_trimmed,        ///< a read before the stream's earliest offset: retention removed it
};

const std::error_category& ds_category() noexcept;
std::error_code make_error_code(errc e) noexcept;
const char* errc_name(errc e) noexcept;

/// An error with the protocol context some responses must carry (RFC-style
/// headers such as Stream-Next-Offset on a closed-stream conflict).
struct Error {
  errc code = errc::bad_request;
  std::string message;
  std::optional<Offset> tail;  ///< Stream-Next-Offset to report, when known
  bool closed = false;         ///< report Stream-Closed: true
  std::optional<uint64_t> producer_epoch;
  std::optional<uint64_t> expected_seq;
  std::optional<uint64_t> received_seq;
  std::optional<Offset> earliest;  ///< retention_trimmed: the earliest readable offset

  Error() = default;
  Error(errc c, std::string msg) : code(c), message(std::move(msg)) {}
};

/// Either a value or an Error. A deliberately small stand-in for
/// std::expected, which g++ 12 only offers in C++23 mode and clang 14 cannot
/// compile against libstdc++ 12.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  Result(errc code, std::string message) : v_(Error(code, std::move(message))) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;

}  // namespace ds

template <>
struct std::is_error_code_enum<ds::errc> : std::true_type {};
