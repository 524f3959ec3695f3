#include "common/errc.h"

namespace ds {

const char* errc_name(errc e) noexcept {
  switch (e) {
    case errc::ok:
      return "ok";
    case errc::bad_request:
      return "bad_request";
    case errc::bad_offset:
      return "bad_offset";
    case errc::bad_json:
      return "bad_json";
    case errc::empty_body:
      return "empty_body";
    case errc::empty_json_array:
      return "empty_json_array";
    case errc::not_found:
      return "not_found";
    case errc::gone:
      return "gone";
    case errc::method_not_allowed:
      return "method_not_allowed";
    case errc::config_mismatch:
      return "config_mismatch";
    case errc::stream_closed:
      return "stream_closed";
    case errc::content_type_mismatch:
      return "content_type_mismatch";
    case errc::stream_seq_regression:
      return "stream_seq_regression";
    case errc::producer_stale_epoch:
      return "producer_stale_epoch";
    case errc::producer_seq_gap:
      return "producer_seq_gap";
    case errc::producer_bad_epoch_start:
      return "producer_bad_epoch_start";
    case errc::payload_too_large:
      return "payload_too_large";
    case errc::uri_too_long:
      return "uri_too_long";
    case errc::fork_offset_beyond_tail:
      return "fork_offset_beyond_tail";
    case errc::fork_source_deleted:
      return "fork_source_deleted";
    case errc::unavailable:
      return "unavailable";
    case errc::storage_failure:
      return "storage_failure";
    case errc::shutting_down:
      return "shutting_down";
    case errc::unauthorized:
      return "unauthorized";
    case errc::forbidden:
      return "forbidden";
    case errc::not_implemented:
      return "not_implemented";
    case errc::insufficient_storage:
      return "insufficient_storage";
    case errc::request_timeout:
      return "request_timeout";
    case errc::header_fields_too_large:
      return "header_fields_too_large";
    case errc::too_many_readers:
      return "too_many_readers";
    case errc::precondition_failed:
      return "precondition_failed";
    case errc::retention_trimmed:
      return "retention_trimmed";
  }
  return "unknown";
}

namespace {
class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dstreamd"; }
  std::string message(int v) const override { return errc_name(static_cast<errc>(v)); }
};
}  // namespace

const std::error_category& ds_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), ds_category()}; }

}  // namespace ds
