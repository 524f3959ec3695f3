// Compile Asio and Beast as the server does: their compiled parts come from
// ds_asio (server/asio_impl.cc), which this binary links through ds_s2.
#ifndef BOOST_ASIO_SEPARATE_COMPILATION
#define BOOST_ASIO_SEPARATE_COMPILATION
#endif
#ifndef BOOST_BEAST_SEPARATE_COMPILATION
#define BOOST_BEAST_SEPARATE_COMPILATION
#endif
#ifndef BOOST_ASIO_NO_DEPRECATED
#define BOOST_ASIO_NO_DEPRECATED
#endif

#include "server/file_send.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <string>
#include <vector>

#include "server/records_body.h"

namespace ds::http_server {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Ms = std::chrono::milliseconds;

/// A temporary file with known contents, unlinked at once (the descriptor
/// keeps it); closed when the last record referring to it goes.
struct TempFile {
  int fd = -1;
  std::string contents;
  std::shared_ptr<const void> owner;

  explicit TempFile(size_t size) {
    std::string path = ::testing::TempDir() + "file_send_XXXXXX";
    fd = ::mkstemp(path.data());
    EXPECT_GE(fd, 0);
    ::unlink(path.c_str());
    // Bytes that differ from their neighbours and from offset to offset, so
    // a slice sent from the wrong place or out of order shows.
    contents.resize(size);
    for (size_t i = 0; i < size; ++i) contents[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd, contents.data() + done, size - done);
      EXPECT_GT(n, 0);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    const int owned = fd;
    owner = std::shared_ptr<const void>(nullptr, [owned](const void*) { ::close(owned); });
  }

  /// A record of `size` bytes at `position` in this file (with offsets
  /// whose difference is its size, as Record::size() reads it).
  RecordPtr slice(uint64_t position, uint64_t size) const {
    auto r = std::make_shared<Record>();
    r->begin = Offset{0, position};
    r->end = Offset{0, position + size};
    r->file = FileSlice{fd, position, owner};
    return r;
  }

  std::string bytes(uint64_t position, uint64_t size) const {
    return contents.substr(position, size);
  }
};

RecordPtr memory(std::string bytes) {
  auto r = std::make_shared<Record>();
  r->end = Offset{0, bytes.size()};
  r->bytes = std::move(bytes);
  return r;
}

/// A connected loopback pair with small buffers: the sender's socket fills
/// after a few kilobytes, so sending megabytes waits for the receiver many
/// times (the would-block path is taken, not just the happy one).
struct Pair {
  asio::io_context ioc;
  tcp::socket sender{ioc};
  tcp::socket receiver{ioc};

  Pair() {
    tcp::acceptor acceptor(ioc);
    acceptor.open(tcp::v4());
    acceptor.set_option(asio::socket_base::receive_buffer_size(4096));  // inherited on accept
    acceptor.bind(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor.listen();
    sender.open(tcp::v4());
    sender.set_option(asio::socket_base::send_buffer_size(4096));
    sender.connect(acceptor.local_endpoint());
    acceptor.accept(receiver);
  }
};

asio::awaitable<void> send_then_shutdown(tcp::socket& socket, const std::vector<RecordPtr>& records,
                                         bool json, const std::function<Ms()>& limit,
                                         SendOutcome& out) {
  auto op = send_records(socket, records, json, limit);
  out = co_await std::move(op);
  boost::system::error_code ignored;
  if (socket.is_open()) socket.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> receive_all(tcp::socket& socket, std::string& into) {
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto [ec, n] =
        co_await socket.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    into.append(buf.data(), n);
    if (ec) break;
  }
}

struct Sent {
  SendOutcome outcome;
  std::string received;
};

Sent send_over_loopback(const std::vector<RecordPtr>& records, bool json,
                        Ms limit = std::chrono::seconds(10)) {
  Pair pair;
  Sent s;
  const std::function<Ms()> wait_limit = [limit] { return limit; };
  asio::co_spawn(pair.ioc, send_then_shutdown(pair.sender, records, json, wait_limit, s.outcome),
                 asio::detached);
  asio::co_spawn(pair.ioc, receive_all(pair.receiver, s.received), asio::detached);
  pair.ioc.run();
  return s;
}

/// What the Beast writer produces for the records (the path responses
/// without the sendfile route take).
std::string via_beast_writer(const RecordsBody::value_type& v) {
  boost::beast::http::response_header<> head;
  RecordsBody::writer w(head, v);
  boost::beast::error_code ec;
  w.init(ec);
  EXPECT_FALSE(ec);
  std::string out;
  for (int guard = 0; guard < 100000; ++guard) {
    auto got = w.get(ec);
    EXPECT_FALSE(ec) << ec.message();
    if (ec || !got) break;
    for (const auto& b : got->first) out.append(static_cast<const char*>(b.data()), b.size());
    if (!got->second) break;
  }
  return out;
}

TEST(FileSend, MixedRecordsArriveInOrderThroughAFullSocket) {
  TempFile file(8 << 20);
  std::vector<RecordPtr> records;
  std::string expected;
  auto add = [&](RecordPtr r, std::string bytes) {
    records.push_back(std::move(r));
    expected += bytes;
  };
  add(memory("head of the body;"), "head of the body;");
  add(file.slice(100, 3 << 20), file.bytes(100, 3 << 20));
  std::string big(100 * 1024, 'm');
  add(memory(big), big);
  // Continues the slice above in the file, but after an in-memory record:
  // it must not be merged with it.
  add(file.slice(100 + (3 << 20), 4096), file.bytes(100 + (3 << 20), 4096));
  add(file.slice(7, 1), file.bytes(7, 1));  // backwards in the file
  for (int i = 0; i < 200; ++i) {           // more in-memory records than one gathered write takes
    std::string small = "r" + std::to_string(i) + ";";
    add(memory(small), small);
  }
  add(file.slice(5 << 20, 0), "");  // empty records add nothing
  add(memory(""), "");
  add(file.slice(5 << 20, (3 << 20) - 1), file.bytes(5 << 20, (3 << 20) - 1));

  auto s = send_over_loopback(records, false);
  EXPECT_FALSE(s.outcome.ec) << s.outcome.ec.message();
  EXPECT_GT(s.outcome.waits, 0u) << "the socket never filled: the test proves less than it says";
  EXPECT_EQ(s.outcome.sent, expected.size());
  ASSERT_EQ(s.received.size(), expected.size());
  EXPECT_TRUE(s.received == expected) << "bytes differ";
  EXPECT_EQ(RecordsBody::size({records, false}), expected.size());
}

TEST(FileSend, JsonRecordsAreJoinedIntoAnArray) {
  TempFile file(4 << 20);
  // Two slices that follow each other in the file are still two messages.
  std::vector<RecordPtr> records{memory("{\"a\":1}"), file.slice(0, 2 << 20),
                                 file.slice(2 << 20, 10), memory("{\"b\":2}")};
  const std::string expected =
      "[{\"a\":1}," + file.bytes(0, 2 << 20) + "," + file.bytes(2 << 20, 10) + ",{\"b\":2}]";
  auto s = send_over_loopback(records, true);
  EXPECT_FALSE(s.outcome.ec) << s.outcome.ec.message();
  ASSERT_EQ(s.received.size(), expected.size());
  EXPECT_TRUE(s.received == expected) << "bytes differ";
  EXPECT_EQ(RecordsBody::size({records, true}), expected.size());
}

TEST(FileSend, AdjacentSlicesOfOneFileAreOneSendfile) {
  TempFile file(1 << 20);
  TempFile other(4096);
  std::vector<RecordPtr> records;
  for (uint64_t i = 0; i < 1000; ++i) records.push_back(file.slice(i * 1000, 1000));
  EXPECT_EQ(file_send_detail::pieces_of(records, false).size(), 1u);
  records.push_back(other.slice(1000 * 1000, 10));  // same position, another file
  EXPECT_EQ(file_send_detail::pieces_of(records, false).size(), 2u);
  std::string expected;
  for (uint64_t i = 0; i < 1000; ++i) expected += file.bytes(i * 1000, 1000);
  records.pop_back();
  auto s = send_over_loopback(records, false);
  EXPECT_FALSE(s.outcome.ec);
  EXPECT_TRUE(s.received == expected) << "bytes differ";
}

TEST(FileSend, AReceiverThatTakesNothingTimesOut) {
  TempFile file(8 << 20);
  std::vector<RecordPtr> records{memory("x"), file.slice(0, 8 << 20)};
  Pair pair;  // the receiver never reads
  SendOutcome out;
  const std::function<Ms()> wait_limit = [] { return Ms(50); };
  asio::co_spawn(pair.ioc, send_then_shutdown(pair.sender, records, false, wait_limit, out),
                 asio::detached);
  pair.ioc.run();
  EXPECT_EQ(out.ec, boost::beast::error::timeout) << out.ec.message();
  EXPECT_LT(out.sent, (8u << 20) + 1);
  EXPECT_FALSE(pair.sender.is_open()) << "a timed-out response's connection must be closed";
}

TEST(FileSend, AFileShorterThanItsSliceIsAnError) {
  TempFile file(100 * 1024);
  std::vector<RecordPtr> records{memory("abc"), file.slice(50 * 1024, 100 * 1024)};
  auto s = send_over_loopback(records, false);
  EXPECT_EQ(s.outcome.ec, boost::system::errc::io_error) << s.outcome.ec.message();
  EXPECT_EQ(s.outcome.sent, 3u + 50 * 1024);
  EXPECT_TRUE(s.received == "abc" + file.bytes(50 * 1024, 50 * 1024));
}

TEST(RecordsBodyFileSlices, RenderAndWriterReadSlicesWithPread) {
  TempFile file(300 * 1024);
  // Larger than the writer's scratch buffer, so it reads the slice in parts.
  std::vector<RecordPtr> records{memory("one"), file.slice(10, 200 * 1024), memory(""),
                                 file.slice(0, 5), memory(std::string(20 * 1024, 'z'))};
  const std::string plain =
      "one" + file.bytes(10, 200 * 1024) + file.bytes(0, 5) + std::string(20 * 1024, 'z');
  const std::string json = "[one," + file.bytes(10, 200 * 1024) + "," + file.bytes(0, 5) + "," +
                           std::string(20 * 1024, 'z') + "]";
  for (bool is_json : {false, true}) {
    const RecordsBody::value_type v{records, is_json};
    const std::string& expected = is_json ? json : plain;
    EXPECT_EQ(RecordsBody::size(v), expected.size());
    auto rendered = RecordsBody::render(v);
    ASSERT_TRUE(rendered);
    EXPECT_TRUE(*rendered == expected) << "render, json=" << is_json;
    EXPECT_TRUE(via_beast_writer(v) == expected) << "writer, json=" << is_json;
  }
}

TEST(RecordsBodyFileSlices, RenderFailsOnATruncatedFile) {
  TempFile file(1024);
  std::vector<RecordPtr> records{file.slice(512, 1024)};
  EXPECT_FALSE(RecordsBody::render({records, false}));
}

}  // namespace
}  // namespace ds::http_server
