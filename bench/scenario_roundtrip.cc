// Scenario "roundtrip": one reader parked at the tail (SSE or long-poll) and
// one writer. Each iteration waits until the reader is parked (plus 1 ms for
// the server to register it), posts one small message, and measures from just
// before the POST's write to the reader receiving the message.
#include <boost/asio/steady_timer.hpp>

#include "common.h"
#include "live_reader.h"

namespace bench {

namespace {

class Roundtrip final : public LiveSink, public HttpConn {
 public:
  Roundtrip(asio::io_context& io, const Options& o)
      : HttpConn(io, o.endpoint, 4096), o_(o), timer_(io) {}

  int run(asio::io_context& io);

 private:
  // The reader side.
  void on_parked(LiveReader&) override {
    parked_ = true;
    maybe_next();
  }
  void on_line(LiveReader&, std::string_view line, int64_t recv_ns) override {
    uint64_t seq = 0;
    int64_t sent = 0;
    if (!parse_message(line, seq, sent)) die("roundtrip: malformed message line");
    if (seq != iteration_) die("roundtrip: unexpected sequence number");
    latency_.record(recv_ns - send_ns_);
    received_ = true;
    maybe_next();
  }
  void on_reconnect(LiveReader&) override { ++reconnects_; }

  // The writer side (this connection).
  void on_connected(const boost::system::error_code& ec) override {
    if (ec) die("writer connect: " + ec.message());
    writer_ready_ = true;
    maybe_next();
  }
  void on_message_end() override {
    if (head().status != 204 && head().status != 200) die_status("POST (roundtrip)", head().status);
    acked_ = true;
    if (head().close) {
      writer_ready_ = false;
      acked_ = false;
      connect();
      return;
    }
    maybe_next();
  }
  void on_closed(const boost::system::error_code& ec) override {
    die("writer connection closed: " + ec.message());
  }

  void maybe_next() {
    if (!writer_ready_ || !parked_ || waiting_timer_) return;
    if (posted_ && !(received_ && acked_)) return;
    if (posted_) {
      ++iteration_;
      posted_ = false;
    }
    if (iteration_ >= static_cast<uint64_t>(o_.count)) {
      end_ns_ = now_ns();
      reader_->stop();
      close();
      io().stop();
      return;
    }
    // Give the server a moment to register the parked reader.
    waiting_timer_ = true;
    timer_.expires_after(std::chrono::milliseconds(1));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      waiting_timer_ = false;
      if (!ec) post();
    });
  }
  void post() {
    parked_ = false;
    received_ = false;
    acked_ = false;
    posted_ = true;
    body_.clear();
    build_message(body_, iteration_, now_ns(), 64);
    out().clear();
    build_request(out(), o_, "POST", path_, "text/plain", body_);
    send_ns_ = now_ns();
    send();
  }

  const Options& o_;
  asio::steady_timer timer_;
  std::string path_;
  std::string body_;
  LiveReader* reader_ = nullptr;
  uint64_t iteration_ = 0;
  bool writer_ready_ = false;
  bool parked_ = false;
  bool received_ = false;
  bool acked_ = false;
  bool posted_ = false;
  bool waiting_timer_ = false;
  int64_t send_ns_ = 0;
  int64_t end_ns_ = 0;
  uint64_t reconnects_ = 0;
  Histogram latency_;
};

int Roundtrip::run(asio::io_context& io) {
  bool sse = o_.mode == "sse";
  if (!sse && o_.mode != "long-poll") die("--mode must be sse or long-poll");
  path_ = stream_path(o_, sse ? "rt-sse" : "rt-lp");
  std::string offset = create_stream(o_, path_);
  if (offset.empty()) offset = "now";
  LiveReader reader(io, o_, *this, path_, offset, sse);
  reader_ = &reader;
  ServerProbe probe(o_);
  probe.start();
  int64_t start = now_ns();
  reader.start();
  connect();
  io.run();
  probe.end();
  reader_ = nullptr;

  Report r;
  r.str("scenario", "roundtrip");
  r.str("label", o_.label);
  r.str("mode", o_.mode);
  r.integer("iterations", static_cast<int64_t>(iteration_));
  r.num("elapsed_s", static_cast<double>(end_ns_ - start) / 1e9);
  r.integer("reconnects", static_cast<int64_t>(reconnects_));
  r.latency_us("roundtrip", latency_);
  probe.report(r, static_cast<double>(iteration_), "server_cpu_us_per_roundtrip");
  emit(o_, r);
  return 0;
}

}  // namespace

int run_roundtrip(const Options& o) {
  asio::io_context io;
  Roundtrip rt(io, o);
  return rt.run(io);
}

}  // namespace bench
