#pragma once
// A response's head (status line and header fields) rendered into one
// contiguous buffer that the connection reuses, instead of Beast's
// serializer walking the fields as one buffer each: the head then goes out
// in the same gathered write as the body, usually the only syscall of the
// response, and no per-response serializer state is built.
//
// Pure: no sockets. Unit-tested against Beast's own serializer
// (test/unit/response_head_test.cc), which it must match byte for byte.

#include <boost/beast/http/message.hpp>
#include <string>
#include <string_view>

namespace ds::http_server {

/// Appends `head` to `out` as HTTP/1.x puts it on the wire: the status line,
/// each field as `Name: value`, each line ended by CRLF, then the empty line.
template <class Fields>
void render_head(const boost::beast::http::header<false, Fields>& head, std::string& out) {
  const unsigned code = head.result_int();
  const char status[] = {' ', static_cast<char>('0' + code / 100 % 10),
                         static_cast<char>('0' + code / 10 % 10),
                         static_cast<char>('0' + code % 10), ' '};
  out.append(head.version() == 10 ? "HTTP/1.0" : "HTTP/1.1");
  out.append(status, sizeof status);
  const auto reason = head.reason();
  out.append(reason.data(), reason.size());
  out.append("\r\n");
  for (const auto& field : head) {
    const auto name = field.name_string();
    const auto value = field.value();
    out.append(name.data(), name.size());
    out.append(": ");
    out.append(value.data(), value.size());
    out.append("\r\n");
  }
  out.append("\r\n");
}

}  // namespace ds::http_server
