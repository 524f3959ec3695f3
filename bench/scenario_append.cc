// Scenario "append": C writers, each with one POST in flight on a keep-alive
// connection, spread over S text/plain streams; as fast as possible or at a
// fixed total rate. Measures appends/s, latency (write start to response end)
// and server CPU per append.
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <vector>

#include "common.h"

namespace bench {

namespace {

struct AppendRun {
  const Options* o = nullptr;
  std::vector<std::string> paths;
  std::string body;
  Histogram latency;
  uint64_t completed = 0;
  bool stopping = false;
  int active = 0;
  int64_t start_ns = 0;
  int64_t last_ns = 0;
};

class Writer final : public HttpConn {
 public:
  Writer(asio::io_context& io, AppendRun& run, int index)
      : HttpConn(io, run.o->endpoint, 4096), run_(run), index_(index), timer_(io) {}

  void start() {
    ++run_.active;
    connect();
  }

 private:
  void on_connected(const boost::system::error_code& ec) override {
    if (ec) die("connect: " + ec.message());
    next();
  }
  void next() {
    if (run_.stopping) {
      --run_.active;
      if (run_.active == 0) io().stop();
      return;
    }
    if (run_.o->rate > 0) {
      // Slot k of writer i is due at start + (k * writers + i) / rate.
      double slot = static_cast<double>(k_ * static_cast<uint64_t>(run_.o->writers) +
                                        static_cast<uint64_t>(index_)) /
                    run_.o->rate;
      int64_t due = run_.start_ns + static_cast<int64_t>(slot * 1e9);
      int64_t wait = due - now_ns();
      if (wait > 0) {
        timer_.expires_after(std::chrono::nanoseconds(wait));
        timer_.async_wait([this](const boost::system::error_code& ec) {
          if (!ec) issue();
        });
        return;
      }
    }
    issue();
  }
  void issue() {
    if (run_.stopping) {
      next();
      return;
    }
    const std::string& path = run_.paths[(static_cast<size_t>(index_) + k_) % run_.paths.size()];
    ++k_;
    out().clear();
    build_request(out(), *run_.o, "POST", path, "text/plain", run_.body);
    sent_ns_ = now_ns();
    send();
  }
  void on_written(const boost::system::error_code& ec) override {
    if (ec) die("write: " + ec.message());
  }
  void on_message_end() override {
    if (head().status != 204 && head().status != 200) die_status("POST (append)", head().status);
    int64_t now = read_time_ns();
    run_.latency.record(now - sent_ns_);
    ++run_.completed;
    run_.last_ns = now;
    if (head().close) {
      connect();
      return;
    }
    next();
  }
  void on_closed(const boost::system::error_code& ec) override {
    die("append connection closed: " + ec.message());
  }

  AppendRun& run_;
  int index_;
  asio::steady_timer timer_;
  uint64_t k_ = 0;
  int64_t sent_ns_ = 0;
};

}  // namespace

int run_append(const Options& o) {
  AppendRun run;
  run.o = &o;
  run.body.assign(static_cast<size_t>(o.body_bytes), 'a');
  for (int i = 0; i < o.streams; ++i) run.paths.push_back(stream_path(o, "a" + std::to_string(i)));
  RequestJob create;
  create.total = run.paths.size();
  create.concurrency = 16;
  create.make = [&](uint64_t i, std::string& out) {
    build_request(out, o, "PUT", run.paths[i], "text/plain");
  };
  create.done = [](uint64_t, const ResponseHead& h, const std::string&) {
    if (h.status != 201 && h.status != 200) die_status("PUT (create)", h.status);
  };
  run_requests(o, create);

  ServerProbe probe(o);
  asio::io_context io;
  std::vector<std::unique_ptr<Writer>> writers;
  for (int i = 0; i < o.writers; ++i) writers.push_back(std::make_unique<Writer>(io, run, i));
  asio::steady_timer deadline(io);
  probe.start();
  run.start_ns = now_ns();
  for (auto& w : writers) w->start();
  deadline.expires_after(std::chrono::nanoseconds(static_cast<int64_t>(o.duration_s * 1e9)));
  deadline.async_wait([&](const boost::system::error_code&) { run.stopping = true; });
  io.run();
  probe.end();

  double elapsed = static_cast<double>(run.last_ns - run.start_ns) / 1e9;
  Report r;
  r.str("scenario", "append");
  r.str("label", o.label);
  r.integer("writers", o.writers);
  r.integer("streams", o.streams);
  r.integer("body_bytes", o.body_bytes);
  r.num("target_rate", o.rate);
  r.num("elapsed_s", elapsed);
  r.integer("appends", static_cast<int64_t>(run.completed));
  r.num("appends_per_s", elapsed > 0 ? static_cast<double>(run.completed) / elapsed : 0);
  r.latency_us("latency", run.latency);
  probe.report(r, static_cast<double>(run.completed), "server_cpu_us_per_append");
  emit(o, r);
  return 0;
}

}  // namespace bench
