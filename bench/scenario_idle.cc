// Scenarios "idle" (N parked SSE or long-poll connections over S streams:
// server RSS per parked connection) and "many-streams" (N streams created and
// appended to once: streams/s and server RSS per stream).
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <vector>

#include "common.h"
#include "live_reader.h"

namespace bench {

namespace {

class Idle final : public LiveSink {
 public:
  explicit Idle(const Options& o) : o_(o), timer_(io_) {}
  int run();

 private:
  void on_parked(LiveReader& r) override {
    if (r.tag & kParkedBit) return;
    r.tag |= kParkedBit;
    ++parked_;
    if (started_ < readers_.size()) readers_[started_++]->start();
    if (parked_ == readers_.size()) all_parked();
  }
  void on_line(LiveReader&, std::string_view, int64_t) override { ++lines_; }
  void on_reconnect(LiveReader&) override { ++reconnects_; }
  void all_parked();

  static constexpr size_t kParkedBit = 1;
  const Options& o_;
  asio::io_context io_;
  asio::steady_timer timer_;
  std::vector<std::unique_ptr<LiveReader>> readers_;
  ServerProbe probe_{o_};
  size_t started_ = 0;
  size_t parked_ = 0;
  uint64_t lines_ = 0;
  uint64_t reconnects_ = 0;
  int64_t parked_ns_ = 0;
};

void Idle::all_parked() {
  parked_ns_ = now_ns();
  // Let the server settle (buffers, timers) before sampling.
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([this](const boost::system::error_code&) {
    probe_.after_setup();
    timer_.expires_after(std::chrono::nanoseconds(static_cast<int64_t>(o_.duration_s * 1e9)));
    timer_.async_wait([this](const boost::system::error_code&) {
      probe_.end();
      for (auto& r : readers_) r->stop();
      io_.stop();
    });
  });
}

int Idle::run() {
  bool sse = o_.mode == "sse";
  if (!sse && o_.mode != "long-poll") die("--mode must be sse or long-poll");
  int streams = o_.streams < 1 ? 1 : o_.streams;
  std::vector<std::string> paths;
  std::vector<std::string> offsets;
  for (int i = 0; i < streams; ++i) {
    paths.push_back(stream_path(o_, "idle" + std::to_string(i)));
    std::string off = create_stream(o_, paths.back());
    offsets.push_back(off.empty() ? "now" : off);
  }
  auto n = static_cast<size_t>(o_.connections);
  for (size_t i = 0; i < n; ++i) {
    size_t s = i % paths.size();
    readers_.push_back(
        std::make_unique<LiveReader>(io_, o_, *this, paths[s], offsets[s], sse, 1024));
  }
  probe_.start();
  int64_t start = now_ns();
  for (size_t first = std::min<size_t>(n, 256); started_ < first;) readers_[started_++]->start();
  io_.run();

  const auto& s0 = probe_.start_sample();
  const auto& s1 = probe_.setup_sample();
  const auto& s2 = probe_.end_sample();
  Report r;
  r.str("scenario", "idle");
  r.str("label", o_.label);
  r.str("mode", o_.mode);
  r.integer("connections", o_.connections);
  r.integer("streams", streams);
  r.num("connect_s", static_cast<double>(parked_ns_ - start) / 1e9);
  r.num("hold_s", o_.duration_s);
  r.integer("reconnects", static_cast<int64_t>(reconnects_));
  r.integer("unexpected_lines", static_cast<int64_t>(lines_));
  if (s0.ok && s1.ok && s2.ok) {
    r.integer("server_rss_before_kb", s0.rss_kb);
    r.integer("server_rss_parked_kb", s1.rss_kb);
    r.integer("server_rss_end_kb", s2.rss_kb);
    r.num("server_rss_bytes_per_conn",
          n ? static_cast<double>(s1.rss_kb - s0.rss_kb) * 1024.0 / static_cast<double>(n) : 0);
    r.integer("server_cpu_us_connect", s1.cpu_us - s0.cpu_us);
    r.integer("server_cpu_us_hold", s2.cpu_us - s1.cpu_us);
    r.num("server_cpu_pct_hold", o_.duration_s > 0 ? static_cast<double>(s2.cpu_us - s1.cpu_us) /
                                                         (o_.duration_s * 1e6) * 100.0
                                                   : 0);
  }
  probe_.report(r, 0, {});
  emit(o_, r);
  return 0;
}

}  // namespace

int run_idle(const Options& o) {
  Idle idle(o);
  return idle.run();
}

int run_many_streams(const Options& o) {
  auto n = static_cast<uint64_t>(o.streams);
  std::string body(static_cast<size_t>(o.body_bytes), 'm');
  auto path = [&](uint64_t i) { return stream_path(o, "ms" + std::to_string(i)); };
  ServerProbe probe(o);
  probe.start();
  int64_t start = now_ns();
  RequestJob create;
  create.total = n;
  create.concurrency = o.concurrency;
  create.make = [&](uint64_t i, std::string& out) {
    build_request(out, o, "PUT", path(i), "text/plain");
  };
  create.done = [](uint64_t, const ResponseHead& h, const std::string&) {
    if (h.status != 201 && h.status != 200) die_status("PUT (many-streams)", h.status);
  };
  run_requests(o, create);
  int64_t created = now_ns();
  RequestJob append;
  append.total = n;
  append.concurrency = o.concurrency;
  append.make = [&](uint64_t i, std::string& out) {
    build_request(out, o, "POST", path(i), "text/plain", body);
  };
  append.done = [](uint64_t, const ResponseHead& h, const std::string&) {
    if (h.status != 204 && h.status != 200) die_status("POST (many-streams)", h.status);
  };
  run_requests(o, append);
  int64_t end = now_ns();
  probe.after_setup();  // right after the last append
  {
    asio::io_context io;  // settle ~1 s before the final sample
    asio::steady_timer t(io, std::chrono::seconds(1));
    t.wait();
  }
  probe.end();

  double secs = static_cast<double>(end - start) / 1e9;
  Report r;
  r.str("scenario", "many-streams");
  r.str("label", o.label);
  r.integer("streams", o.streams);
  r.integer("body_bytes", o.body_bytes);
  r.integer("concurrency", o.concurrency);
  r.num("create_s", static_cast<double>(created - start) / 1e9);
  r.num("append_s", static_cast<double>(end - created) / 1e9);
  r.num("streams_per_s", secs > 0 ? static_cast<double>(n) / secs : 0);
  if (probe.ok()) {
    r.num("server_rss_bytes_per_stream",
          n ? static_cast<double>(probe.rss_delta_kb()) * 1024.0 / static_cast<double>(n) : 0);
    r.integer("server_rss_delta_kb", probe.rss_delta_kb());
  }
  probe.report(r, static_cast<double>(n), "server_cpu_us_per_stream");
  emit(o, r);
  return 0;
}

}  // namespace bench
