// The connection's field arena (server/request_arena.h): allocations come
// from its buffer, it resets once everything was given back, what does not
// fit goes to the heap, and Beast's fields and parser work over it.

#include "server/request_arena.h"

#include <gtest/gtest.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <string>
#include <vector>

namespace ds::http_server {
namespace {

namespace http = boost::beast::http;
using ArenaFields = http::basic_fields<ArenaAllocator<char>>;

bool inside(const RequestArena& arena, const std::byte* base, const void* p) {
  auto* b = static_cast<const std::byte*>(p);
  return b >= base && b < base + arena.capacity();
}

TEST(RequestArena, BumpsAlignsAndResetsWhenAllGivenBack) {
  InlineRequestArena<256> arena;
  void* a = arena.allocate(3, 1);
  void* b = arena.allocate(8, 8);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 8, 0u);
  EXPECT_EQ(static_cast<std::byte*>(b) - static_cast<std::byte*>(a), 8);
  EXPECT_EQ(arena.live(), 2u);
  EXPECT_EQ(arena.used(), 16u);
  arena.deallocate(a, 3, 1);
  EXPECT_EQ(arena.used(), 16u) << "not reused while b lives";
  void* c = arena.allocate(1, 1);
  EXPECT_NE(c, a);
  arena.deallocate(b, 8, 8);
  EXPECT_EQ(arena.used(), 17u);
  arena.deallocate(c, 1, 1);
  EXPECT_EQ(arena.live(), 0u);
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_EQ(arena.allocate(4, 4), a) << "starts over from the beginning";
  EXPECT_EQ(arena.heap_allocations(), 0u);
}

TEST(RequestArena, WhatDoesNotFitComesFromTheHeap) {
  InlineRequestArena<64> arena;
  void* a = arena.allocate(48, 8);
  void* big = arena.allocate(100, 8);  // larger than what is left
  EXPECT_EQ(arena.heap_allocations(), 1u);
  EXPECT_EQ(arena.live(), 1u);
  std::memset(big, 0xab, 100);
  arena.deallocate(big, 100, 8);  // to the heap, not counted against the buffer
  EXPECT_EQ(arena.live(), 1u);
  void* over_aligned = arena.allocate(8, 2 * alignof(std::max_align_t));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(over_aligned) % (2 * alignof(std::max_align_t)), 0u);
  EXPECT_EQ(arena.heap_allocations(), 2u);
  arena.deallocate(over_aligned, 8, 2 * alignof(std::max_align_t));
  arena.deallocate(a, 48, 8);
  EXPECT_EQ(arena.used(), 0u);
}

TEST(ArenaAllocator, DefaultAndCopiedContainersUseTheHeap) {
  InlineRequestArena<1024> arena;
  const std::byte* base = reinterpret_cast<const std::byte*>(arena.allocate(1, 1));
  arena.deallocate(const_cast<std::byte*>(base), 1, 1);

  std::vector<int, ArenaAllocator<int>> in_arena{ArenaAllocator<int>(&arena)};
  in_arena.assign({1, 2, 3});
  EXPECT_TRUE(inside(arena, base, in_arena.data()));

  std::vector<int, ArenaAllocator<int>> copy(in_arena);
  EXPECT_EQ(copy.get_allocator().arena(), nullptr);
  EXPECT_FALSE(inside(arena, base, copy.data()));
  EXPECT_EQ(copy, in_arena);

  std::vector<int, ArenaAllocator<int>> heap;
  heap.assign({4, 5});
  EXPECT_FALSE(inside(arena, base, heap.data()));

  auto moved = std::move(in_arena);
  EXPECT_EQ(moved.get_allocator().arena(), &arena) << "a move carries the arena";
  EXPECT_EQ(ArenaAllocator<char>(&arena), ArenaAllocator<int>(&arena));
  EXPECT_NE(ArenaAllocator<char>(&arena), ArenaAllocator<char>());
}

TEST(ArenaAllocator, BeastParsesATypicalRequestWithoutTheHeap) {
  InlineRequestArena<4096> arena;
  const std::string wire =
      "POST /v1/stream/bench-12345-stream-7 HTTP/1.1\r\n"
      "Host: 127.0.0.1:4437\r\n"
      "Content-Type: application/octet-stream\r\n"
      "Content-Length: 5\r\n"
      "Producer-Id: writer-3\r\n"
      "Producer-Epoch: 0\r\n"
      "Producer-Seq: 41\r\n"
      "X-Request-Id: abc-123\r\n"
      "\r\nhello";
  {
    http::request_parser<http::string_body, ArenaAllocator<char>> parser{
        std::piecewise_construct, std::make_tuple(), std::make_tuple(ArenaAllocator<char>(&arena))};
    boost::beast::error_code ec;
    size_t at = 0;
    while (!ec && !parser.is_done() && at < wire.size())
      at += parser.put(boost::asio::buffer(wire.data() + at, wire.size() - at), ec);
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(parser.is_done());
    auto req = parser.release();
    EXPECT_EQ(req.target(), "/v1/stream/bench-12345-stream-7");
    EXPECT_EQ(req["producer-seq"], "41");
    EXPECT_EQ(req.body(), "hello");
    EXPECT_GT(arena.live(), 7u);

    // A response built with the request's allocator shares the arena.
    http::response<http::string_body, ArenaFields> res{std::piecewise_construct, std::make_tuple(),
                                                       std::make_tuple(req.get_allocator())};
    res.result(http::status::no_content);
    res.set("Stream-Next-Offset", "0000000000000001_0000000000000123");
    res.set(http::field::cache_control, "no-store");
    res.set(http::field::cache_control, "no-cache");  // replaced: the old node is given back
    EXPECT_EQ(res[http::field::cache_control], "no-cache");

    // A copy (as a parked reader would keep) owns heap memory only.
    http::request<http::string_body, ArenaFields> kept(req);
    EXPECT_EQ(kept.get_allocator().arena(), nullptr);
    EXPECT_EQ(kept["producer-id"], "writer-3");
    EXPECT_EQ(kept.target(), req.target());
  }
  EXPECT_EQ(arena.heap_allocations(), 0u);
  EXPECT_EQ(arena.live(), 0u);
  EXPECT_EQ(arena.used(), 0u) << "free again for the next request";
}

TEST(ArenaAllocator, AHeadLargerThanTheArenaSpillsToTheHeap) {
  InlineRequestArena<512> arena;
  std::string wire = "GET /v1/stream/x HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 40; ++i)
    wire += "X-Field-" + std::to_string(i) + ": " + std::string(20, 'v') + "\r\n";
  wire += "\r\n";
  {
    http::request_parser<http::empty_body, ArenaAllocator<char>> parser{
        std::piecewise_construct, std::make_tuple(), std::make_tuple(ArenaAllocator<char>(&arena))};
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(wire), ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(parser.get()["x-field-39"], std::string(20, 'v'));
    EXPECT_GT(arena.heap_allocations(), 0u);
  }
  EXPECT_EQ(arena.live(), 0u);
  EXPECT_EQ(arena.used(), 0u);
}

#if defined(__SANITIZE_ADDRESS__)
TEST(RequestArenaDeathTest, AddressSanitizerSeesAUseAfterFree) {
  EXPECT_DEATH(
      {
        InlineRequestArena<256> arena;
        void* keep = arena.allocate(16, 8);
        auto* p = static_cast<volatile char*>(arena.allocate(16, 8));
        p[0] = 'x';
        arena.deallocate(const_cast<char*>(p), 16, 8);
        (void)p[0];  // freed: poisoned
        arena.deallocate(keep, 16, 8);
      },
      "use-after-poison");
}
#endif

}  // namespace
}  // namespace ds::http_server
