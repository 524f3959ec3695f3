// server/response_head.h renders what Beast's serializer would put on the
// wire, byte for byte.

#include "server/response_head.h"

#include <gtest/gtest.h>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>

namespace ds::http_server {
namespace {

namespace http = boost::beast::http;

/// The head as Beast's serializer writes it.
std::string beast_head(http::response<http::string_body>& res) {
  http::response_serializer<http::string_body> sr{res};
  sr.split(true);
  std::string out;
  boost::beast::error_code ec;
  while (!sr.is_header_done()) {
    sr.next(ec, [&](boost::beast::error_code&, const auto& buffers) {
      out += boost::beast::buffers_to_string(buffers);
      sr.consume(boost::asio::buffer_size(buffers));
    });
    EXPECT_FALSE(ec);
  }
  return out;
}

std::string ours(const http::response<http::string_body>& res) {
  std::string out = "left alone:";
  render_head(res.base(), out);
  return out.substr(std::string("left alone:").size());
}

TEST(ResponseHead, MatchesBeastForATypicalAppendAnswer) {
  http::response<http::string_body> res{http::status::no_content, 11};
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Stream-Next-Offset", "0000000000000000_0000000000000005");
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(true);
  res.prepare_payload();
  EXPECT_EQ(ours(res), beast_head(res));
  EXPECT_TRUE(ours(res).starts_with("HTTP/1.1 204 No Content\r\n"));
  EXPECT_TRUE(ours(res).ends_with("\r\n\r\n"));
}

TEST(ResponseHead, MatchesBeastForHttp10CustomReasonsAndUnknownCodes) {
  http::response<http::string_body> a{http::status::ok, 10};
  a.keep_alive(true);  // HTTP/1.0 says so with a Connection field
  a.body() = "hello";
  a.prepare_payload();
  EXPECT_EQ(ours(a), beast_head(a));
  EXPECT_TRUE(ours(a).starts_with("HTTP/1.0 200 OK\r\n"));

  http::response<http::string_body> b{http::status::not_found, 11};
  b.reason("Nothing Here");
  b.keep_alive(false);
  b.prepare_payload();
  EXPECT_EQ(ours(b), beast_head(b));

  http::response<http::string_body> c{static_cast<http::status>(599), 11};
  c.set("X-Odd", "");
  EXPECT_EQ(ours(c), beast_head(c));
}

TEST(ResponseHead, KeepsRepeatedFieldsInBeastsOrder) {
  // Beast keeps the fields of one name together, in insertion order.
  http::response<http::string_body> res{http::status::ok, 11};
  res.insert("Vary", "Accept-Encoding");
  res.insert("X-A", "1");
  res.insert("Vary", "Origin");
  EXPECT_EQ(ours(res),
            "HTTP/1.1 200 OK\r\nVary: Accept-Encoding\r\nVary: Origin\r\nX-A: 1\r\n\r\n");
  EXPECT_EQ(ours(res), beast_head(res));
}

}  // namespace
}  // namespace ds::http_server
