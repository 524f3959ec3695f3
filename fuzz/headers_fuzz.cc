// Every request header grammar: the integers (Stream-TTL, Producer-Epoch,
// Producer-Seq, Stream-Fork-Sub-Offset, cursors), RFC 3339 times
// (Stream-Expires-At), Stream-Closed, Content-Type, Accept-Encoding, the
// gzip ETag and gzip itself, and the body framing of Transfer-Encoding and
// Content-Length fields. Properties: accepted integers print back as the
// input; an accepted time printed in canonical form parses to the same
// instant; media_type is idempotent; gzip inflates back to its input; the
// framing check accepts exactly the unambiguous framings and its messages
// are printable ASCII.

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "protocol/content_encoding.h"
#include "protocol/framing.h"
#include "protocol/headers.h"

namespace {

using ds::fuzz::as_text;

void check_integers(std::string_view in) {
  auto strict = ds::parse_strict_uint(in);
  if (strict) FUZZ_CHECK(std::to_string(*strict) == in);
  auto safe = ds::parse_safe_uint(in);
  if (safe) {
    FUZZ_CHECK(*safe <= ds::kMaxSafeInteger);
    // Leading zeros are the only difference from the strict grammar.
    const size_t nonzero = std::min(in.find_first_not_of('0'), in.size() - 1);
    FUZZ_CHECK(std::to_string(*safe) == in.substr(nonzero));
  }
  if (strict && *strict <= ds::kMaxSafeInteger) FUZZ_CHECK(safe && *safe == *strict);
  auto ttl = ds::parse_ttl_seconds(in);
  FUZZ_CHECK(ttl.has_value() == (strict && *strict <= ds::kMaxTtlSeconds));
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, for instants in years 0000..9999.
std::optional<std::string> rfc3339(int64_t ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds{ms}};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const int year = static_cast<int>(ymd.year());
  if (year < 0 || year > 9999) return std::nullopt;
  const hh_mm_ss<milliseconds> hms{t - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02lld.%03lldZ", year,
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<long long>(hms.seconds().count()),
                static_cast<long long>(hms.subseconds().count()));
  return std::string(buf);
}

void check_times(std::string_view in) {
  auto ms = ds::parse_rfc3339_ms(in);
  auto expires = ds::parse_expires_at_ms(in);
  FUZZ_CHECK(expires.has_value() == (ms && *ms <= ds::kMaxExpiresAtMs));
  if (!ms) return;
  if (auto canonical = rfc3339(*ms)) {
    auto again = ds::parse_rfc3339_ms(*canonical);
    FUZZ_CHECK(again && *again == *ms);
  }
}

void check_media_type(std::string_view in) {
  const std::string media = ds::media_type(in);
  FUZZ_CHECK(media.find(';') == std::string::npos);
  FUZZ_CHECK(ds::trim(media) == media);
  FUZZ_CHECK(std::none_of(media.begin(), media.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
  FUZZ_CHECK(ds::media_type(media) == media);
  FUZZ_CHECK(ds::is_true_flag(in) == ds::iequals(ds::trim(in), "true"));
  if (ds::is_json_media_type(media)) FUZZ_CHECK(ds::is_text_media_type(media));
}

std::string inflate_gzip(const std::string& gz) {
  z_stream zs{};
  FUZZ_CHECK(inflateInit2(&zs, 15 + 16) == Z_OK);
  std::string out;
  char buf[4096];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(gz.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
  }
  inflateEnd(&zs);
  FUZZ_CHECK(rc == Z_STREAM_END);
  return out;
}

void check_encoding(std::string_view in) {
  // Case does not matter anywhere in Accept-Encoding, q-values included.
  std::string upper(in);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; });
  FUZZ_CHECK(ds::accepts_gzip(in) == ds::accepts_gzip(upper));
  const std::string etag = ds::gzip_etag(in);
  FUZZ_CHECK(etag.size() == in.size() + 3);
  auto gz = ds::gzip_compress(in);
  FUZZ_CHECK(gz.has_value());
  FUZZ_CHECK(inflate_gzip(*gz) == in);
}

/// The framing rules restated: Content-Length alone (at most one field of
/// digits), or Transfer-Encoding alone in HTTP/1.1 whose codings are exactly
/// one `chunked` without parameters.
bool framing_ok(unsigned version, const std::vector<std::string_view>& te,
                const std::vector<std::string_view>& cl) {
  if (cl.size() > 1) return false;
  for (std::string_view v : cl) {
    v = ds::trim(v);
    if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
  }
  if (te.empty()) return true;
  if (version < 11 || !cl.empty()) return false;
  std::vector<std::string> codings;
  for (std::string_view field : te) {
    while (true) {
      const size_t comma = field.find(',');
      std::string_view element = ds::trim(field.substr(0, comma));
      if (!element.empty()) codings.emplace_back(element);
      if (comma == std::string_view::npos) break;
      field.remove_prefix(comma + 1);
    }
  }
  return codings.size() == 1 && ds::iequals(codings[0], "chunked");
}

void check_framing(std::string_view in) {
  if (in.empty()) return;
  // First byte: HTTP version (bit 7) and how many fields are Transfer-Encoding
  // (low bits); then the fields, one a line.
  const auto control = static_cast<unsigned char>(in[0]);
  const unsigned version = control & 0x80 ? 10 : 11;
  const size_t te_fields = control & 0x7;
  std::vector<std::string_view> te, cl;
  std::string_view rest = in.substr(1);
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    (te.size() < te_fields ? te : cl).push_back(rest.substr(0, nl));
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  }
  auto err = ds::check_body_framing(version, te, cl);
  FUZZ_CHECK(err.has_value() != framing_ok(version, te, cl));
  if (err) {
    FUZZ_CHECK(err->code == ds::errc::bad_request || err->code == ds::errc::not_implemented);
    FUZZ_CHECK(std::all_of(err->message.begin(), err->message.end(),
                           [](char c) { return c >= 0x20 && c < 0x7f; }));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = as_text(data, size);
  check_integers(in);
  check_times(in);
  check_media_type(in);
  check_encoding(in);
  check_framing(in);
  return 0;
}
