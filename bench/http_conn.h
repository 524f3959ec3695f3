// A minimal HTTP/1.1 client connection for the load generator.
//
// HttpConn owns one TCP socket, sends one request at a time and parses
// responses incrementally (Content-Length, chunked or until-close bodies).
// Subclasses react through the virtual hooks; body bytes arrive as views into
// the connection's read buffer, so nothing is copied or allocated per message
// once the buffers have grown to their working size.
//
// Thread safety: none. An HttpConn is used from the one thread running its
// io_context. Lifetime: it must outlive its pending operations or the
// io_context must never run again after it is destroyed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

/// The parts of a response head the load generator looks at.
struct ResponseHead {
  int status = 0;
  bool chunked = false;
  bool close = false;
  int64_t content_length = -1;
  bool up_to_date = false;
  std::string next_offset;  // Stream-Next-Offset
  std::string cursor;       // Stream-Cursor
};

class HttpConn {
 public:
  /// read_buffer_bytes: size of the receive buffer (small for idle readers).
  HttpConn(asio::io_context& io, tcp::endpoint ep, size_t read_buffer_bytes = 16384);
  virtual ~HttpConn() = default;
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  /// Opens a fresh connection (closing any previous one); on_connected follows.
  void connect();
  /// The request buffer: fill it, then call send(). Keeps its capacity.
  std::string& out() { return out_; }
  /// Writes out() (one request). on_written follows the write.
  void send();
  /// Closes the socket; with abortive=true the close is a RST (no TIME_WAIT).
  void close(bool abortive = false);
  bool open() const { return socket_.is_open(); }
  bool writing() const { return writing_; }
  const ResponseHead& head() const { return head_; }
  asio::io_context& io() { return io_; }

 protected:
  virtual void on_connected(const boost::system::error_code& ec) = 0;
  virtual void on_written(const boost::system::error_code&) {}
  virtual void on_head(const ResponseHead&) {}
  virtual void on_body(std::string_view) {}
  /// The response is complete; the connection may carry the next request.
  virtual void on_message_end() = 0;
  /// The connection ended (EOF or error) outside a response that ends with it.
  virtual void on_closed(const boost::system::error_code& ec) = 0;
  /// The monotonic time (ns) at which the current read completed.
  int64_t read_time_ns() const { return read_time_ns_; }

 private:
  enum class State { head, body_length, chunk_size, chunk_data, chunk_crlf, trailer, until_close };

  void read();
  void on_read(const boost::system::error_code& ec, size_t n, uint64_t gen);
  /// Consumes bytes; returns false on a malformed response.
  bool feed(const char* p, size_t n);
  bool parse_head();
  void message_end();

  asio::io_context& io_;
  tcp::endpoint ep_;
  tcp::socket socket_;
  uint64_t gen_ = 0;  // bumped by connect/close: completions of older sockets are ignored
  bool reading_ = false;
  bool writing_ = false;
  std::unique_ptr<char[]> in_;
  size_t in_size_;
  std::string out_;
  std::string line_;  // head bytes or a chunk-size line being assembled
  ResponseHead head_;
  State state_ = State::head;
  uint64_t remaining_ = 0;
  int64_t read_time_ns_ = 0;
};

}  // namespace bench
