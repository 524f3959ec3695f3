#include "protocol/framing.h"

#include <string>
#include <vector>

#include "protocol/headers.h"

namespace ds {
namespace {

bool is_tchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

/// A coding for an error message: short, and only printable ASCII.
std::string quoted(std::string_view coding) {
  std::string out = "'";
  for (char c : coding.substr(0, 40)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (coding.size() > 40) out += "...";
  out += "'";
  return out;
}

}  // namespace

std::optional<Error> check_body_framing(unsigned version,
                                        std::span<const std::string_view> transfer_encoding,
                                        std::span<const std::string_view> content_length) {
  if (content_length.size() > 1)
    return Error(errc::bad_request, "more than one Content-Length field");
  for (std::string_view v : content_length) {
    v = trim(v);
    if (v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos)
      return Error(errc::bad_request, "Content-Length must be one non-negative decimal integer");
  }
  if (transfer_encoding.empty()) return std::nullopt;
  if (version < 11)
    return Error(errc::bad_request, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
  if (!content_length.empty())
    return Error(errc::bad_request,
                 "a request must not have both Content-Length and Transfer-Encoding");

  // The codings of every field, in order: 1#transfer-coding, where empty
  // list elements are allowed (RFC 9110 5.6.1) and a coding may carry
  // parameters after ';'.
  std::vector<std::string_view> codings;
  std::vector<bool> has_params;
  for (std::string_view field : transfer_encoding) {
    size_t start = 0;
    for (;;) {
      const size_t comma = field.find(',', start);
      std::string_view element = trim(field.substr(
          start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
      if (!element.empty()) {
        const size_t semi = element.find(';');
        const std::string_view name = trim(element.substr(0, semi));
        if (!is_token(name))
          return Error(errc::bad_request, "malformed Transfer-Encoding " + quoted(element));
        codings.push_back(name);
        has_params.push_back(semi != std::string_view::npos);
      }
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
  }
  if (codings.empty()) return Error(errc::bad_request, "empty Transfer-Encoding");
  if (!iequals(codings.back(), "chunked"))
    return Error(errc::bad_request,
                 "the final transfer coding must be chunked, not " + quoted(codings.back()));
  if (has_params.back())
    return Error(errc::bad_request, "the chunked transfer coding takes no parameters");
  for (size_t i = 0; i + 1 < codings.size(); ++i) {
    if (iequals(codings[i], "chunked"))
      return Error(errc::bad_request, "the chunked transfer coding is applied more than once");
  }
  if (codings.size() > 1)
    return Error(errc::not_implemented,
                 "transfer coding " + quoted(codings.front()) + " is not supported (only chunked)");
  return std::nullopt;
}

}  // namespace ds
