#include "live_reader.h"

#include <cstring>

namespace bench {

namespace {

// The string value of "key":"..." in a small JSON object, or "" if absent.
std::string_view json_string_field(std::string_view json, std::string_view quoted_key) {
  auto at = json.find(quoted_key);
  if (at == std::string_view::npos) return {};
  auto colon = json.find(':', at + quoted_key.size());
  if (colon == std::string_view::npos) return {};
  auto q1 = json.find('"', colon);
  if (q1 == std::string_view::npos) return {};
  auto q2 = json.find('"', q1 + 1);
  if (q2 == std::string_view::npos) return {};
  return json.substr(q1 + 1, q2 - q1 - 1);
}

}  // namespace

LiveReader::LiveReader(asio::io_context& io, const Options& o, LiveSink& sink, std::string path,
                       std::string offset, bool sse, size_t read_buffer_bytes)
    : HttpConn(io, o.endpoint, read_buffer_bytes),
      o_(o),
      sink_(sink),
      path_(std::move(path)),
      offset_(std::move(offset)),
      sse_(sse) {}

void LiveReader::start() { connect(); }

void LiveReader::stop() {
  stopped_ = true;
  close(true);
}

void LiveReader::on_connected(const boost::system::error_code& ec) {
  if (ec) die("live reader connect: " + ec.message());
  request();
}

void LiveReader::request() {
  std::string& out = this->out();
  out.clear();
  out.append("GET ");
  out.append(path_);
  out.append("?offset=");
  out.append(offset_);
  out.append(sse_ ? "&live=sse" : "&live=long-poll");
  if (!cursor_.empty()) {
    out.append("&cursor=");
    out.append(cursor_);
  }
  out.append(" HTTP/1.1\r\nHost: ");
  out.append(o_.host);
  out.append("\r\n\r\n");
  in_flight_ = true;
  got_head_ = false;
  event_ = Event::none;
  partial_.clear();
  send();
}

void LiveReader::on_written(const boost::system::error_code& ec) {
  if (ec) {
    if (!stopped_) reconnect();
    return;
  }
  if (!sse_) parked();
}

void LiveReader::parked() {
  parked_once_ = true;
  sink_.on_parked(*this);
}

void LiveReader::on_head(const ResponseHead& h) {
  got_head_ = true;
  if (sse_) {
    if (h.status != 200) die_status("GET live=sse", h.status);
  } else if (h.status != 200 && h.status != 204) {
    die_status("GET live=long-poll", h.status);
  }
}

void LiveReader::on_body(std::string_view b) {
  while (!b.empty()) {
    const char* nl = static_cast<const char*>(std::memchr(b.data(), '\n', b.size()));
    if (!nl) {
      partial_.append(b);
      return;
    }
    size_t len = static_cast<size_t>(nl - b.data());
    if (partial_.empty()) {
      line(b.substr(0, len));
    } else {
      partial_.append(b.substr(0, len));
      line(partial_);
      partial_.clear();
    }
    if (stopped_) return;
    b.remove_prefix(len + 1);
  }
}

void LiveReader::line(std::string_view l) {
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  if (!sse_) {
    if (!l.empty()) sink_.on_line(*this, l, read_time_ns());
    return;
  }
  if (l.empty()) {
    event_ = Event::none;
    return;
  }
  if (l.starts_with("event:")) {
    std::string_view name = l.substr(6);
    if (name.starts_with(' ')) name.remove_prefix(1);
    event_ = name == "data" ? Event::data : name == "control" ? Event::control : Event::none;
    return;
  }
  if (!l.starts_with("data:")) return;  // comments (": keep-alive") and other fields
  std::string_view data = l.substr(5);
  if (data.starts_with(' ')) data.remove_prefix(1);
  if (event_ == Event::data) {
    if (!data.empty()) sink_.on_line(*this, data, read_time_ns());
  } else if (event_ == Event::control) {
    auto next = json_string_field(data, "\"streamNextOffset\"");
    if (!next.empty()) offset_.assign(next);
    auto cur = json_string_field(data, "\"streamCursor\"");
    if (!cur.empty()) cursor_.assign(cur);
    if (data.find("\"upToDate\":true") != std::string_view::npos) parked();
  }
}

void LiveReader::on_message_end() {
  in_flight_ = false;
  if (stopped_) return;
  if (sse_) {  // the server ended the SSE response (its maximum duration)
    reconnect();
    return;
  }
  if (!head().next_offset.empty()) offset_ = head().next_offset;
  if (!head().cursor.empty()) cursor_ = head().cursor;
  if (!partial_.empty()) {  // a body without a final newline
    sink_.on_line(*this, partial_, read_time_ns());
    partial_.clear();
  }
  if (head().close) {
    connect();
    return;
  }
  request();
}

void LiveReader::on_closed(const boost::system::error_code&) {
  if (stopped_) return;
  if (!sse_ && !in_flight_) {  // an idle keep-alive connection closed by the server
    connect();
    return;
  }
  reconnect();
}

void LiveReader::reconnect() {
  sink_.on_reconnect(*this);
  connect();
}

}  // namespace bench
