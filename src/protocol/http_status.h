#pragma once
// The one place where error values become HTTP status codes.

#include "common/errc.h"

namespace ds {

constexpr int http_status(errc e) {
  switch (e) {
    case errc::ok:
      return 200;
    case errc::bad_request:
      return 400;
    case errc::bad_offset:
      return 400;
    case errc::bad_json:
      return 400;
    case errc::empty_body:
      return 400;
    case errc::empty_json_array:
      return 400;
    case errc::producer_bad_epoch_start:
      return 400;
    case errc::fork_offset_beyond_tail:
      return 400;
    case errc::unauthorized:
      return 401;
    case errc::producer_stale_epoch:
      return 403;
    case errc::forbidden:
      return 403;
    case errc::not_found:
      return 404;
    case errc::method_not_allowed:
      return 405;
    case errc::config_mismatch:
      return 409;
    case errc::stream_closed:
      return 409;
    case errc::content_type_mismatch:
      return 409;
    case errc::stream_seq_regression:
      return 409;
    case errc::producer_seq_gap:
      return 409;
    case errc::fork_source_deleted:
      return 409;
    case errc::gone:
      return 410;
    case errc::retention_trimmed:
      return 410;
    case errc::precondition_failed:
      return 412;
    case errc::request_timeout:
      return 408;
    case errc::payload_too_large:
      return 413;
    case errc::uri_too_long:
      return 414;
    case errc::header_fields_too_large:
      return 431;
    case errc::storage_failure:
      return 500;
    case errc::not_implemented:
      return 501;
    case errc::insufficient_storage:
      return 507;
    case errc::unavailable:
      return 503;
    case errc::shutting_down:
      return 503;
    case errc::too_many_readers:
      return 503;  // a server capacity limit, not the client's rate: see docs/operations.md
  }
  return 500;
}

}  // namespace ds
