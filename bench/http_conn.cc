#include "http_conn.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <cstring>

#include "metrics.h"

namespace bench {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool contains_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

HttpConn::HttpConn(asio::io_context& io, tcp::endpoint ep, size_t read_buffer_bytes)
    : io_(io),
      ep_(ep),
      socket_(io),
      in_(new char[read_buffer_bytes]),
      in_size_(read_buffer_bytes) {}

void HttpConn::connect() {
  close();
  socket_.open(ep_.protocol());
  socket_.set_option(tcp::no_delay(true));
  uint64_t gen = gen_;
  socket_.async_connect(ep_, [this, gen](const boost::system::error_code& ec) {
    if (gen != gen_) return;
    if (!ec) read();
    on_connected(ec);
  });
}

void HttpConn::close(bool abortive) {
  ++gen_;
  reading_ = false;
  writing_ = false;
  state_ = State::head;
  line_.clear();
  if (!socket_.is_open()) return;
  boost::system::error_code ignored;
  if (abortive) socket_.set_option(asio::socket_base::linger(true, 0), ignored);
  socket_.close(ignored);
}

void HttpConn::send() {
  writing_ = true;
  uint64_t gen = gen_;
  asio::async_write(socket_, asio::buffer(out_),
                    [this, gen](const boost::system::error_code& ec, size_t) {
                      if (gen != gen_) return;
                      writing_ = false;
                      on_written(ec);
                    });
}

void HttpConn::read() {
  if (reading_) return;
  reading_ = true;
  uint64_t gen = gen_;
  socket_.async_read_some(
      asio::buffer(in_.get(), in_size_),
      [this, gen](const boost::system::error_code& ec, size_t n) { on_read(ec, n, gen); });
}

void HttpConn::on_read(const boost::system::error_code& ec, size_t n, uint64_t gen) {
  if (gen != gen_) return;
  reading_ = false;
  read_time_ns_ = now_ns();
  if (ec) {
    if (state_ == State::until_close && ec == asio::error::eof) {
      state_ = State::head;
      on_message_end();
      if (gen != gen_) return;
    }
    close();
    on_closed(ec);
    return;
  }
  if (!feed(in_.get(), n)) {
    close();
    on_closed(asio::error::invalid_argument);
    return;
  }
  if (gen != gen_) return;  // a hook closed or reconnected
  read();
}

bool HttpConn::feed(const char* p, size_t n) {
  const uint64_t gen = gen_;
  while (n > 0) {
    switch (state_) {
      case State::head: {
        size_t before = line_.size();
        line_.append(p, n);
        size_t from = before >= 3 ? before - 3 : 0;
        auto end = line_.find("\r\n\r\n", from);
        if (end == std::string::npos) {
          if (line_.size() > 65536) return false;
          return true;
        }
        size_t used = end + 4 - before;
        p += used;
        n -= used;
        line_.resize(end + 2);
        if (!parse_head()) return false;
        line_.clear();
        on_head(head_);
        if (gen != gen_) return true;
        bool no_body = head_.status == 204 || head_.status == 304 || head_.status < 200;
        if (no_body || (!head_.chunked && head_.content_length == 0)) {
          message_end();
          if (gen != gen_) return true;
        } else if (head_.chunked) {
          state_ = State::chunk_size;
        } else if (head_.content_length > 0) {
          state_ = State::body_length;
          remaining_ = static_cast<uint64_t>(head_.content_length);
        } else {
          state_ = State::until_close;
        }
        break;
      }
      case State::body_length:
      case State::chunk_data: {
        size_t take = n < remaining_ ? n : static_cast<size_t>(remaining_);
        on_body(std::string_view(p, take));
        if (gen != gen_) return true;
        p += take;
        n -= take;
        remaining_ -= take;
        if (remaining_ == 0) {
          if (state_ == State::chunk_data) {
            state_ = State::chunk_crlf;
            remaining_ = 2;
          } else {
            message_end();
            if (gen != gen_) return true;
          }
        }
        break;
      }
      case State::chunk_crlf: {
        size_t take = n < remaining_ ? n : static_cast<size_t>(remaining_);
        p += take;
        n -= take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::chunk_size;
        break;
      }
      case State::chunk_size:
      case State::trailer: {
        const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
        size_t take = nl ? static_cast<size_t>(nl - p) + 1 : n;
        line_.append(p, take);
        p += take;
        n -= take;
        if (!nl) {
          if (line_.size() > 4096) return false;
          break;
        }
        std::string_view line = trim(std::string_view(line_).substr(0, line_.size() - 1));
        if (state_ == State::trailer) {
          bool last = line.empty();
          line_.clear();
          if (last) {
            message_end();
            if (gen != gen_) return true;
          }
          break;
        }
        auto semi = line.find(';');
        if (semi != std::string_view::npos) line = line.substr(0, semi);
        uint64_t size = 0;
        auto [ptr, err] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
        if (err != std::errc() || line.empty()) return false;
        line_.clear();
        if (size == 0) {
          state_ = State::trailer;
        } else {
          state_ = State::chunk_data;
          remaining_ = size;
        }
        break;
      }
      case State::until_close:
        on_body(std::string_view(p, n));
        return true;
    }
  }
  return true;
}

void HttpConn::message_end() {
  state_ = State::head;
  on_message_end();
}

bool HttpConn::parse_head() {
  std::string_view all(line_);
  auto eol = all.find("\r\n");
  std::string_view status_line = all.substr(0, eol);
  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.")) return false;
  int status = 0;
  auto [ptr, err] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
  if (err != std::errc()) return false;
  head_.status = status;
  head_.chunked = false;
  head_.close = status_line[7] == '0';
  head_.content_length = -1;
  head_.up_to_date = false;
  head_.next_offset.clear();
  head_.cursor.clear();
  all.remove_prefix(eol + 2);
  while (!all.empty()) {
    eol = all.find("\r\n");
    std::string_view line = all.substr(0, eol);
    all.remove_prefix(eol == std::string_view::npos ? all.size() : eol + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      int64_t len = 0;
      auto r = std::from_chars(value.data(), value.data() + value.size(), len);
      if (r.ec != std::errc()) return false;
      head_.content_length = len;
    } else if (iequals(name, "transfer-encoding")) {
      head_.chunked = contains_token(value, "chunked");
    } else if (iequals(name, "connection")) {
      if (contains_token(value, "close")) head_.close = true;
    } else if (iequals(name, "stream-next-offset")) {
      head_.next_offset.assign(value);
    } else if (iequals(name, "stream-cursor")) {
      head_.cursor.assign(value);
    } else if (iequals(name, "stream-up-to-date")) {
      head_.up_to_date = iequals(value, "true");
    }
  }
  return true;
}

}  // namespace bench
