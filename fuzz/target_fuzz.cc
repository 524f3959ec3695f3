// The request target: absolute-form reduction (origin_form), percent-decoding
// of the path and query (parse_target) and the stream name under /v1/stream/
// (stream_name). Properties: decoding agrees with percent_decode, re-encoding
// the decoded target and parsing it again gives the same path and query, and
// an accepted stream name obeys every rule stream_name promises.

#include <string>

#include "fuzz_check.h"
#include "protocol/target.h"

namespace {

/// Percent-encodes every byte but [A-Za-z0-9-._~] (and `/` when keep_slash).
std::string encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

void check_stream_name(std::string_view path) {
  auto name = ds::stream_name(path);
  if (!name) return;
  FUZZ_CHECK(path.starts_with(ds::kStreamPrefix));
  FUZZ_CHECK(*name == path.substr(ds::kStreamPrefix.size()));
  FUZZ_CHECK(!name->empty() && name->size() <= ds::kMaxStreamNameBytes);
  FUZZ_CHECK(name->find('\0') == std::string::npos);
  std::string_view rest = *name;
  for (;;) {
    const size_t slash = rest.find('/');
    const std::string_view seg = rest.substr(0, slash);
    FUZZ_CHECK(seg != "." && seg != "..");
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = ds::fuzz::as_text(data, size);

  auto origin = ds::origin_form(in);
  if (origin && origin->authority) {
    FUZZ_CHECK(!origin->target.empty() && origin->target[0] == '/');
    FUZZ_CHECK(origin->authority->find('@') == std::string::npos);
    // The reduced form is not itself absolute-form, so reducing it again changes nothing.
    auto again = ds::origin_form(origin->target);
    FUZZ_CHECK(again && !again->authority && again->target == origin->target);
  } else if (origin) {
    FUZZ_CHECK(origin->target == in);
  }

  const size_t q = in.find('?');
  auto path = ds::percent_decode(in.substr(0, q), false);
  auto target = ds::parse_target(in);
  if (!path) FUZZ_CHECK(!target);
  if (target) {
    FUZZ_CHECK(path && *path == target->path);
    std::string reencoded = encode(target->path, true);
    if (q != std::string_view::npos) {
      reencoded += '?';
      bool first = true;
      for (const auto& [k, v] : target->query) {
        if (!first) reencoded += '&';
        first = false;
        reencoded += encode(k, false) + "=" + encode(v, false);
      }
    }
    auto again = ds::parse_target(reencoded);
    FUZZ_CHECK(again);
    FUZZ_CHECK(again->path == target->path);
    FUZZ_CHECK(again->query == target->query);
    check_stream_name(target->path);
  }
  check_stream_name(in);
  return 0;
}
