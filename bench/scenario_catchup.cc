// Scenario "catchup": one stream filled with M MiB (--append-bytes appends, 64 KiB by default,
// --fill-concurrency in flight: 1 keeps them in order; the bytes are the same either way), then K
// readers repeatedly read it from offset=-1 to the tail, following
// Stream-Next-Offset, without Accept-Encoding (no gzip). Measures MB/s and
// server CPU per MB served.
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <vector>

#include "common.h"

namespace bench {

namespace {

struct CatchupRun {
  const Options* o = nullptr;
  std::string path;
  bool stopping = false;
  int active = 0;
  uint64_t bytes = 0;
  uint64_t responses = 0;
  uint64_t passes = 0;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
};

class CatchupReader final : public HttpConn {
 public:
  CatchupReader(asio::io_context& io, CatchupRun& run)
      : HttpConn(io, run.o->endpoint, size_t{256} * 1024), run_(run) {}
  void start() {
    ++run_.active;
    connect();
  }
  uint64_t bytes = 0;

 private:
  void on_connected(const boost::system::error_code& ec) override {
    if (ec) die("catch-up connect: " + ec.message());
    request();
  }
  void request() {
    if (run_.stopping) {
      if (--run_.active == 0) {
        run_.end_ns = now_ns();
        io().stop();
      }
      return;
    }
    out().clear();
    out().append("GET ");
    out().append(run_.path);
    out().append("?offset=");
    out().append(offset_);
    out().append(" HTTP/1.1\r\nHost: ");
    out().append(run_.o->host);
    out().append("\r\n\r\n");
    send();
  }
  void on_body(std::string_view b) override {
    bytes += b.size();
    run_.bytes += b.size();
  }
  void on_message_end() override {
    if (head().status != 200) die_status("GET (catch-up)", head().status);
    ++run_.responses;
    if (head().up_to_date || head().next_offset.empty()) {
      offset_ = "-1";
      ++run_.passes;
    } else {
      offset_ = head().next_offset;
    }
    if (head().close) {
      connect();
      return;
    }
    request();
  }
  void on_closed(const boost::system::error_code& ec) override {
    die("catch-up connection closed: " + ec.message());
  }

  CatchupRun& run_;
  std::string offset_ = "-1";
};

}  // namespace

int run_catchup(const Options& o) {
  CatchupRun run;
  run.o = &o;
  run.path = stream_path(o, "catchup");
  create_stream(o, run.path);
  if (o.append_bytes < 64) die("--append-bytes must be at least 64");
  const auto kChunk = static_cast<size_t>(o.append_bytes);
  auto total = static_cast<uint64_t>(o.size_mb * 1024 * 1024);
  uint64_t appends = (total + kChunk - 1) / kChunk;
  std::string body(kChunk, 'c');
  for (size_t i = 63; i < body.size(); i += 64) body[i] = '\n';
  RequestJob fill;
  fill.total = appends;
  fill.concurrency = o.fill_concurrency;  // 1: in order, one after another
  fill.make = [&](uint64_t, std::string& out) {
    build_request(out, o, "POST", run.path, "text/plain", body);
  };
  fill.done = [](uint64_t, const ResponseHead& h, const std::string&) {
    if (h.status != 204 && h.status != 200) die_status("POST (fill)", h.status);
  };
  int64_t fill_start = now_ns();
  run_requests(o, fill);
  double fill_s = static_cast<double>(now_ns() - fill_start) / 1e9;

  ServerProbe probe(o);
  asio::io_context io;
  std::vector<std::unique_ptr<CatchupReader>> readers;
  for (int i = 0; i < o.readers; ++i) readers.push_back(std::make_unique<CatchupReader>(io, run));
  asio::steady_timer deadline(io);
  probe.start();
  run.start_ns = now_ns();
  for (auto& r : readers) r->start();
  deadline.expires_after(std::chrono::nanoseconds(static_cast<int64_t>(o.duration_s * 1e9)));
  deadline.async_wait([&](const boost::system::error_code&) { run.stopping = true; });
  io.run();
  probe.end();

  double secs = static_cast<double>(run.end_ns - run.start_ns) / 1e9;
  double mb = static_cast<double>(run.bytes) / (1024.0 * 1024.0);
  Report r;
  r.str("scenario", "catchup");
  r.str("label", o.label);
  r.integer("readers", o.readers);
  r.num("size_mb", static_cast<double>(appends * kChunk) / (1024.0 * 1024.0));
  r.integer("append_bytes", static_cast<int64_t>(kChunk));
  r.integer("fill_appends", static_cast<int64_t>(appends));
  r.integer("fill_concurrency", o.fill_concurrency);
  r.num("fill_s", fill_s);
  r.num("fill_mb_per_s", fill_s > 0 ? o.size_mb / fill_s : 0);
  r.num("server_cpu_pct",
        secs > 0 && probe.ok() ? static_cast<double>(probe.cpu_us()) / (secs * 1e4) : 0);
  r.num("elapsed_s", secs);
  r.num("mb_read", mb);
  r.integer("responses", static_cast<int64_t>(run.responses));
  r.integer("passes", static_cast<int64_t>(run.passes));
  r.num("mb_per_s", secs > 0 ? mb / secs : 0);
  r.num("mb_per_s_per_reader", secs > 0 && o.readers > 0 ? mb / secs / o.readers : 0);
  probe.report(r, mb, "server_cpu_us_per_mb");
  emit(o, r);
  return 0;
}

}  // namespace bench
