#include "protocol/http_status.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "common/errc.h"

namespace ds {
namespace {

// The intended status of every error value. Adding an enumerator to errc
// without adding it here (and to http_status) fails EveryEnumeratorIsMapped.
const std::map<errc, int>& intended() {
  static const std::map<errc, int> table = {
      {errc::ok, 200},
      {errc::bad_request, 400},
      {errc::bad_offset, 400},
      {errc::bad_json, 400},
      {errc::empty_body, 400},
      {errc::empty_json_array, 400},
      {errc::not_found, 404},
      {errc::gone, 410},
      {errc::method_not_allowed, 405},
      {errc::config_mismatch, 409},
      {errc::stream_closed, 409},
      {errc::content_type_mismatch, 409},
      {errc::stream_seq_regression, 409},
      {errc::producer_stale_epoch, 403},
      {errc::producer_seq_gap, 409},
      {errc::producer_bad_epoch_start, 400},
      {errc::payload_too_large, 413},
      {errc::uri_too_long, 414},
      {errc::fork_offset_beyond_tail, 400},
      {errc::fork_source_deleted, 409},
      {errc::unavailable, 503},
      {errc::storage_failure, 500},
      {errc::shutting_down, 503},
      {errc::unauthorized, 401},
      {errc::forbidden, 403},
      {errc::not_implemented, 501},
      {errc::insufficient_storage, 507},
      {errc::request_timeout, 408},
      {errc::header_fields_too_large, 431},
      {errc::too_many_readers, 503},
      {errc::precondition_failed, 412},
      {errc::retention_trimmed, 410},
  };
  return table;
}

constexpr int kFirst = static_cast<int>(errc::ok);

// One past the last enumerator: errc_name() switches over every enumerator
// (-Wswitch makes that a build error otherwise) and answers "unknown" beyond.
int end_of_errc() {
  int v = kFirst;
  while (std::string(errc_name(static_cast<errc>(v))) != "unknown") ++v;
  return v;
}
const int kLast = end_of_errc() - 1;

TEST(HttpStatusTest, EnumeratorsAreContiguousFromOk) {
  EXPECT_EQ(kFirst, 0);
  EXPECT_GE(kLast, static_cast<int>(errc::shutting_down));
  EXPECT_GE(kLast, static_cast<int>(errc::forbidden));
}

TEST(HttpStatusTest, EveryEnumeratorIsMapped) {
  EXPECT_EQ(intended().size(), static_cast<size_t>(kLast - kFirst + 1))
      << "the table and the errc enumerators disagree";
  for (int v = kFirst; v <= kLast; ++v) {
    const auto e = static_cast<errc>(v);
    auto it = intended().find(e);
    ASSERT_NE(it, intended().end()) << "no intended status for " << errc_name(e);
    EXPECT_EQ(http_status(e), it->second) << errc_name(e);
  }
}

TEST(HttpStatusTest, EveryEnumeratorHasAUniqueName) {
  std::set<std::string> names;
  for (int v = kFirst; v <= kLast; ++v) {
    const auto e = static_cast<errc>(v);
    std::string name = errc_name(e);
    EXPECT_NE(name, "unknown") << v;
    EXPECT_TRUE(names.insert(name).second) << "duplicate name " << name;
  }
  EXPECT_EQ(std::string(errc_name(errc::stream_closed)), "stream_closed");
}

TEST(HttpStatusTest, UsableAtCompileTime) {
  static_assert(http_status(errc::ok) == 200);
  static_assert(http_status(errc::stream_closed) == 409);
  static_assert(http_status(errc::producer_stale_epoch) == 403);
  static_assert(http_status(errc::precondition_failed) == 412);
}

TEST(HttpStatusTest, UnknownValuesAreServerErrors) {
  EXPECT_EQ(http_status(static_cast<errc>(kLast + 1)), 500);
  EXPECT_STREQ(errc_name(static_cast<errc>(kLast + 1)), "unknown");
}

TEST(ErrorCodeTest, CategoryAndMessages) {
  std::error_code ec = errc::gone;  // is_error_code_enum
  EXPECT_EQ(ec.value(), static_cast<int>(errc::gone));
  EXPECT_STREQ(ec.category().name(), "dstreamd");
  EXPECT_EQ(ec.message(), "gone");
  EXPECT_EQ(&ec.category(), &ds_category());
  EXPECT_EQ(make_error_code(errc::ok).message(), "ok");
}

TEST(ResultTest, ValueAndError) {
  Result<int> v = 5;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 5);
  Result<int> e(errc::not_found, "nope");
  ASSERT_FALSE(e.ok());
  EXPECT_FALSE(static_cast<bool>(e));
  EXPECT_EQ(e.error().code, errc::not_found);
  EXPECT_EQ(e.error().message, "nope");
  EXPECT_FALSE(e.error().closed);
  EXPECT_FALSE(e.error().tail.has_value());
}

}  // namespace
}  // namespace ds
