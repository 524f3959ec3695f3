// A live reader of one stream: SSE (one long response, reconnecting from the
// last control event's offset when the server ends it) or long-poll (a loop of
// GET live=long-poll requests on a keep-alive connection, carrying the cursor).
// It splits the received text into lines and hands each message line to a
// LiveSink; it never copies a line that arrived whole in one read.
//
// Thread safety: none (one io_context thread). Lifetime: the sink must outlive
// the reader.
#pragma once

#include <string>
#include <string_view>

#include "common.h"

namespace bench {

class LiveReader;

class LiveSink {
 public:
  virtual ~LiveSink() = default;
  /// The reader is waiting at the tail: SSE after a control event with
  /// upToDate, long-poll once its request is written.
  virtual void on_parked(LiveReader&) {}
  /// One non-empty line of message text, received at recv_ns.
  virtual void on_line(LiveReader&, std::string_view line, int64_t recv_ns) = 0;
  /// The reader reconnected (its previous SSE response or connection ended).
  virtual void on_reconnect(LiveReader&) {}
};

class LiveReader final : public HttpConn {
 public:
  LiveReader(asio::io_context& io, const Options& o, LiveSink& sink, std::string path,
             std::string offset, bool sse, size_t read_buffer_bytes = 4096);

  /// Connects and sends the first request.
  void start();
  /// Stops for good (abortive close: no TIME_WAIT at high connection counts).
  void stop();
  bool stopped() const { return stopped_; }
  bool parked_once() const { return parked_once_; }
  const std::string& next_offset() const { return offset_; }
  /// Free for the sink's per-reader state (an index, say).
  size_t tag = 0;

 private:
  void on_connected(const boost::system::error_code& ec) override;
  void on_written(const boost::system::error_code& ec) override;
  void on_head(const ResponseHead& h) override;
  void on_body(std::string_view b) override;
  void on_message_end() override;
  void on_closed(const boost::system::error_code& ec) override;
  void request();
  void reconnect();
  void line(std::string_view l);
  void parked();

  const Options& o_;
  LiveSink& sink_;
  std::string path_;
  std::string offset_;
  std::string cursor_;
  bool sse_;
  bool stopped_ = false;
  bool in_flight_ = false;
  bool parked_once_ = false;
  bool got_head_ = false;
  enum class Event { none, data, control } event_ = Event::none;
  std::string partial_;  // an incomplete line carried over between reads
};

}  // namespace bench
