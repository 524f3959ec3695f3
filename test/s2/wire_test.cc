// S2 wire format without a server: base64, JSON bodies, error mapping, SSE
// framing, command records.

#include "s2/wire.h"

#include <gtest/gtest.h>

#include "s2/s2_api.h"
#include "s2/sse_parser.h"

namespace ds::s2 {
namespace {

using wire::base64_decode;
using wire::base64_encode;

TEST(S2Wire, Base64RoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 37) {
    auto text = base64_encode(all.substr(0, n));
    EXPECT_EQ(text.size() % 4, 0u);
    auto back = base64_decode(text);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, all.substr(0, n));
  }
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("fence"), "ZmVuY2U=");
  EXPECT_EQ(base64_encode("trim"), "dHJpbQ==");
}

TEST(S2Wire, Base64DecodeIsStrict) {
  EXPECT_FALSE(base64_decode("ZmVuY2U").has_value());   // unpadded
  EXPECT_FALSE(base64_decode("Zm-uY2U=").has_value());  // URL-safe alphabet
  EXPECT_FALSE(base64_decode("ZmVuY2V=").has_value());  // non-zero padding bits
  EXPECT_FALSE(base64_decode("Zm Vu").has_value());
  EXPECT_EQ(base64_decode("AAAAAAAAAGQ="), std::string("\0\0\0\0\0\0\0\x64", 8));
}

TEST(S2Wire, CommandRecords) {
  auto fence = fence_record("writer-2");
  ASSERT_EQ(fence.headers.size(), 1u);
  EXPECT_EQ(fence.headers[0].name, "");
  EXPECT_EQ(fence.headers[0].value, "fence");
  EXPECT_EQ(fence.body, "writer-2");
  EXPECT_EQ(metered_bytes(fence), 8u + 2 + 5 + 8);
  auto trim = trim_record(100);
  EXPECT_EQ(trim.headers[0].value, "trim");
  EXPECT_EQ(base64_encode(trim.body), "AAAAAAAAAGQ=");  // s2-api.md 6.1
  EXPECT_EQ(metered_bytes(trim), 22u);
  EXPECT_EQ(trim_record(UINT64_MAX).body, std::string(8, '\xff'));
}

TEST(S2Wire, AppendBodyIsBase64AndConditional) {
  AppendInput in;
  in.records.push_back(AppendRecord{{{"k", "v"}}, "world"});
  in.records.push_back(fence_record("w\"1"));
  in.match_seq_num = 7;
  in.fencing_token = "a\"b\\c\n";
  EXPECT_EQ(wire::append_body(in),
            R"({"records":[{"headers":[["aw==","dg=="]],"body":"d29ybGQ="},)"
            R"({"headers":[["","ZmVuY2U="]],"body":"dyIx"}],"match_seq_num":7,)"
            R"("fencing_token":"a\"b\\c\n"})");
  AppendInput plain;
  plain.records.push_back(AppendRecord{{}, ""});
  EXPECT_EQ(wire::append_body(plain), R"({"records":[{"headers":[],"body":""}]})");
}

TEST(S2Wire, CreateBodyEscapesTheName) {
  EXPECT_EQ(wire::create_stream_body("a/b \"c\"\x01"),
            R"({"stream":"a/b \"c\"\u0001","config":{"retention_policy":{"infinite":{}}}})");
}

TEST(S2Wire, PathSegmentEncoding) {
  EXPECT_EQ(wire::encode_path_segment("a/b c"), "a%2Fb%20c");
  EXPECT_EQ(wire::encode_path_segment("x-y_z.~1"), "x-y_z.~1");
  EXPECT_EQ(wire::encode_path_segment("ü?#%"), "%C3%BC%3F%23%25");
}

TEST(S2Wire, ParsesAckBatchAndTail) {
  AppendAck ack;
  std::string err;
  ASSERT_TRUE(wire::parse_append_ack(
      R"({"start":{"seq_num":0,"timestamp":1},"end":{"seq_num":2,"timestamp":1},"tail":{"seq_num":5,"timestamp":1}})",
      &ack, &err));
  EXPECT_EQ(ack.start_seq, 0u);
  EXPECT_EQ(ack.end_seq, 2u);
  EXPECT_EQ(ack.tail_seq, 5u);

  ReadBatch batch;
  ASSERT_TRUE(wire::parse_read_batch(
      R"({"records":[{"seq_num":18446744073709551615,"timestamp":3},)"
      R"({"seq_num":1,"timestamp":4,"headers":[["","ZmVuY2U="]],"body":"AA=="}],)"
      R"("tail":{"seq_num":9,"timestamp":4}})",
      &batch, &err))
      << err;
  ASSERT_EQ(batch.records.size(), 2u);
  EXPECT_EQ(batch.records[0].seq_num, UINT64_MAX);  // u64, not double
  EXPECT_EQ(batch.records[0].body, "");             // left out when empty
  EXPECT_TRUE(batch.records[0].headers.empty());
  EXPECT_TRUE(batch.records[1].is_command());
  EXPECT_EQ(batch.records[1].body, std::string(1, '\0'));
  EXPECT_EQ(batch.tail, 9u);

  ReadBatch bad;
  EXPECT_FALSE(wire::parse_read_batch(R"({"records":[{"seq_num":1,"body":"!!"}]})", &bad, &err));
  EXPECT_FALSE(wire::parse_read_batch("not json", &bad, &err));

  std::optional<uint64_t> tail;
  ASSERT_TRUE(
      wire::parse_tail(R"({"timestamp":5,"tail":{"seq_num":3,"timestamp":1}})", &tail, &err));
  EXPECT_EQ(tail, 3u);
  ASSERT_TRUE(wire::parse_tail(R"({"timestamp":5})", &tail, &err));  // old-style ping
  EXPECT_FALSE(tail.has_value());
}

TEST(S2Wire, ParsesStreamPagesLeavingOutDeletedStreams) {
  StreamPage page;
  std::string err;
  ASSERT_TRUE(wire::parse_stream_page(
      R"({"streams":[{"name":"a\/\u00fc","created_at":"2026-01-01T00:00:00Z","deleted_at":null},)"
      R"({"name":"b","created_at":"2026-01-01T00:00:00Z","deleted_at":"2026-01-02T00:00:00Z"}],)"
      R"("has_more":true})",
      &page, &err))
      << err;
  EXPECT_EQ(page.names, std::vector<std::string>{"a/\xc3\xbc"});
  EXPECT_EQ(page.last, "b") << "a deleted stream still moves the cursor";
  EXPECT_TRUE(page.has_more);

  StreamPage empty;
  ASSERT_TRUE(wire::parse_stream_page(R"({"streams":[],"has_more":false})", &empty, &err));
  EXPECT_TRUE(empty.names.empty());
  EXPECT_EQ(empty.last, "");
  EXPECT_FALSE(empty.has_more);

  StreamPage bad;
  EXPECT_FALSE(
      wire::parse_stream_page(R"({"streams":[{"created_at":"x"}],"has_more":false})", &bad, &err));
  EXPECT_FALSE(wire::parse_stream_page(R"({"streams":[]})", &bad, &err));
  EXPECT_FALSE(wire::parse_stream_page("not json", &bad, &err));

  EXPECT_EQ(wire::list_streams_query("a/b c", "", 2), "prefix=a%2Fb%20c&start_after=&limit=2");
}

TEST(S2Wire, ErrorMapping) {
  auto e = wire::error_from_response(412, R"({"seq_num_mismatch":42})");
  EXPECT_EQ(e.kind, S2Error::Kind::seq_num_mismatch);
  EXPECT_EQ(e.tail, 42u);
  e = wire::error_from_response(412, R"({"fencing_token_mismatch":"w-1"})");
  EXPECT_EQ(e.kind, S2Error::Kind::fencing_token_mismatch);
  EXPECT_EQ(e.token, "w-1");
  e = wire::error_from_response(416, R"({"tail":{"seq_num":7,"timestamp":0}})");
  EXPECT_EQ(e.kind, S2Error::Kind::range_not_satisfiable);
  EXPECT_EQ(e.tail, 7u);
  e = wire::error_from_response(404, R"({"code":"stream_not_found","message":"nope"})");
  EXPECT_EQ(e.kind, S2Error::Kind::not_found);
  EXPECT_EQ(e.message, "nope");
  EXPECT_EQ(wire::error_from_response(404, "").kind, S2Error::Kind::not_found);
  EXPECT_EQ(wire::error_from_response(409, R"({"code":"resource_already_exists"})").kind,
            S2Error::Kind::already_exists);
  EXPECT_EQ(wire::error_from_response(409, R"({"code":"stream_deletion_pending"})").kind,
            S2Error::Kind::deletion_pending);
  e = wire::error_from_response(503, "<html>bad gateway</html>");
  EXPECT_EQ(e.kind, S2Error::Kind::rejected);
  EXPECT_EQ(e.http_status, 503);
  EXPECT_TRUE(e.code.empty());
}

// Found by fuzz/s2_wire_fuzz: a 412 whose JSON body names neither mismatch
// came back with an empty message, so the error logged and reported said nothing.
TEST(S2Wire, ErrorWithoutMismatchStillHasAMessage) {
  auto e = wire::error_from_response(412, R"({"tail":{"seq_num":99}})");
  EXPECT_EQ(e.kind, S2Error::Kind::rejected);
  EXPECT_EQ(e.http_status, 412);
  EXPECT_EQ(e.message, "S2 answered HTTP 412");
  e = wire::error_from_response(412, R"({"code":"precondition_failed","message":"why"})");
  EXPECT_EQ(e.code, "precondition_failed");
  EXPECT_EQ(e.message, "why");
}

TEST(S2Wire, RetryAndSideEffectRules) {
  for (int status : {408, 429, 500, 502, 503, 504}) EXPECT_TRUE(wire::is_retryable(status, ""));
  EXPECT_TRUE(wire::is_retryable(409, "transaction_conflict"));
  EXPECT_FALSE(wire::is_retryable(409, "resource_already_exists"));
  for (int status : {400, 401, 403, 404, 412, 416, 422, 499, 501}) {
    EXPECT_FALSE(wire::is_retryable(status, "")) << status;
  }
  for (auto code : {"rate_limited", "hot_server", "server_draining", "transaction_conflict"}) {
    EXPECT_TRUE(wire::has_no_side_effects(code)) << code;
  }
  for (auto code : {"unavailable", "other", "storage", "request_timeout", "upstream_timeout",
                    "client_hangup", ""}) {
    EXPECT_FALSE(wire::has_no_side_effects(code)) << code;
  }
}

std::vector<SseEvent> parse_all(const std::string& text, size_t chunk) {
  SseParser parser(1 << 20);
  std::vector<SseEvent> events;
  for (size_t i = 0; i < text.size(); i += chunk) {
    EXPECT_TRUE(parser.feed(text.substr(i, chunk), [&](SseEvent&& e) {
      events.push_back(std::move(e));
      return true;
    }));
  }
  return events;
}

TEST(S2Sse, ParsesLiteFramingInAnySplit) {
  std::string text =
      "event:batch\nid:1,2,30\ndata:{\"records\":[]}\n\n"
      "event: ping\r\ndata: {\"timestamp\":1}\r\n\r\n"
      ": comment\n\n"
      "data:[DONE]\r\r"
      "event:error\ndata:a\ndata:b\n\n";
  for (size_t chunk : {1u, 2u, 3u, 7u, 1000u}) {
    auto events = parse_all(text, chunk);
    ASSERT_EQ(events.size(), 4u) << chunk;
    EXPECT_EQ(events[0].type, "batch");
    EXPECT_EQ(events[0].id, "1,2,30");
    EXPECT_EQ(events[0].data, "{\"records\":[]}");
    EXPECT_EQ(events[1].type, "ping");
    EXPECT_EQ(events[1].data, "{\"timestamp\":1}");
    EXPECT_EQ(events[2].type, "");
    EXPECT_EQ(events[2].data, "[DONE]");
    EXPECT_EQ(events[3].type, "error");
    EXPECT_EQ(events[3].data, "a\nb");
  }
}

TEST(S2Sse, BoundsOneEvent) {
  SseParser parser(16);
  auto ignore = [](SseEvent&&) { return true; };
  EXPECT_TRUE(parser.feed("data:0123456789\n", ignore));
  EXPECT_FALSE(parser.feed("data:0123456789", ignore));
}

}  // namespace
}  // namespace ds::s2
