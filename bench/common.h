// What every load-generator scenario shares: the command-line options, request
// builders, a bounded-concurrency request runner for setup phases, server
// sampling (/proc and the S2 emulator's stats), and fatal-error reporting.
//
// Thread safety: none; the load generator runs one io_context on one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http_conn.h"
#include "metrics.h"

namespace bench {

struct Options {
  std::string url = "http://127.0.0.1:4437";
  std::string host;  // Host header value, from url
  tcp::endpoint endpoint;
  // --url may list several servers (comma-separated or repeated): the first is url/endpoint/host
  // (setup, stats, reads); the append scenario spreads its writers over all of them round-robin.
  std::vector<std::string> urls;
  std::vector<tcp::endpoint> endpoints;
  std::vector<std::string> hosts;
  std::string scenario;
  std::string label;   // copied into the result (which server this was)
  std::string prefix;  // stream-name prefix; default: "bench-<pid>-<time>"
  double duration_s = 10;
  double warmup_s = 0;           // append: unmeasured load before the measured phase
  int server_pid = 0;            // the first of server_pids
  std::vector<int> server_pids;  // --server-pid A,B,C: CPU and RSS are summed over all
  int emulator_pid = 0;          // --emulator-pid: its CPU is reported separately
  std::string s2_stats_url;
  bool s2_metrics = false;  // --s2-metrics: deltas of dstreamd_s2_* counters on /metrics
  bool verify = false;      // append: unique bodies, read back, count lost/duplicated
  bool json = false;
  int writers = 64;
  int streams = 100;
  int body_bytes = 100;
  double rate = 0;  // 0: as fast as possible
  int readers = 100;
  std::string mode = "sse";  // sse | long-poll
  int count = 2000;
  double size_mb = 64;
  int append_bytes = 65536;    // catchup: size of each fill append
  int fill_concurrency = 1;    // catchup: fill appends in flight (1: in order)
  uint64_t max_appends = 0;    // append: stop once this many appends were sent (0: --duration)
  bool store_metrics = false;  // report dstreamd_store_* from /metrics (deltas and end values)
  int connections = 1000;
  int concurrency = 64;
  double grace_s = 10;  // fan-out: how long to wait for the last message after the writer stops
};

/// Prints "ds-loadgen: <msg>" to stderr and exits with status 2.
[[noreturn]] void die(std::string_view msg);
/// Dies with a description of an unexpected response.
[[noreturn]] void die_status(std::string_view what, int status);

/// "/v1/stream/<prefix><name>"
std::string stream_path(const Options& o, std::string_view name);

/// Appends a request with optional Content-Type and body to out.
void build_request(std::string& out, const Options& o, std::string_view method,
                   std::string_view target, std::string_view content_type = {},
                   std::string_view body = {});

/// The same with an explicit Host header value (one of several target servers).
void build_request_to(std::string& out, std::string_view host, std::string_view method,
                      std::string_view target, std::string_view content_type = {},
                      std::string_view body = {});

/// A message body: "<seq> <send-ns> " padded with 'x' to bytes-1, then "\n".
void build_message(std::string& out, uint64_t seq, int64_t send_ns, int bytes);
/// Parses the "<seq> <send-ns>" start of a message line. False if malformed.
bool parse_message(std::string_view line, uint64_t& seq, int64_t& send_ns);

/// Runs `total` requests over `concurrency` keep-alive connections on a private
/// io_context until all are answered. make(i, out) appends request i to
/// out; done(i, head, body) sees its response (body only if keep_body).
struct RequestJob {
  uint64_t total = 0;
  int concurrency = 16;
  bool keep_body = false;
  std::function<void(uint64_t, std::string&)> make;
  std::function<void(uint64_t, const ResponseHead&, const std::string&)> done;
};
void run_requests(const Options& o, const RequestJob& job);

/// One request on a fresh connection (setup and stats); returns status and body.
struct SimpleResponse {
  ResponseHead head;
  std::string body;
};
SimpleResponse simple_request(tcp::endpoint ep, const std::string& request);

/// Creates a text/plain stream; returns its Stream-Next-Offset ("" if absent).
std::string create_stream(const Options& o, const std::string& path);

/// Server-side measurements around a scenario: CPU and RSS of --server-pid (summed over
/// several), CPU of --emulator-pid, request counters of --s2-stats, and with --s2-metrics the
/// dstreamd_s2_* counters of every target's /metrics (summed over the targets).
class ServerProbe {
 public:
  explicit ServerProbe(const Options& o) : o_(o) {}
  void start();  // at the start of the measured phase
  void after_setup() { setup_ = sample_servers(); }
  void end();  // at its end
  /// Adds server_cpu_us, server CPU per unit (if units > 0, as <unit_name>),
  /// RSS fields and the S2 request deltas.
  void report(Report& r, double units, std::string_view per_unit_key) const;
  int64_t rss_delta_kb() const { return end_.rss_kb - start_.rss_kb; }
  int64_t rss_setup_delta_kb() const { return setup_.rss_kb - start_.rss_kb; }
  int64_t cpu_us() const { return end_.cpu_us - start_.cpu_us; }
  bool ok() const { return start_.ok && end_.ok; }
  const ProcSample& start_sample() const { return start_; }
  const ProcSample& setup_sample() const { return setup_; }
  const ProcSample& end_sample() const { return end_; }

 private:
  std::map<std::string, int64_t> s2_counters() const;
  std::map<std::string, int64_t> client_counters() const;
  ProcSample sample_servers() const;
  const Options& o_;
  ProcSample emu_start_;
  ProcSample emu_end_;
  std::map<std::string, int64_t> client_start_;
  std::map<std::string, int64_t> client_end_;
  ProcSample start_;
  ProcSample setup_;
  int64_t self_cpu_start_us_ = 0;  // the load generator's own CPU time
  int64_t self_cpu_end_us_ = 0;
  int64_t start_ns_ = 0;
  int64_t end_ns_ = 0;
  ProcSample end_;
  std::map<std::string, int64_t> s2_start_;
  std::map<std::string, int64_t> s2_end_;
  std::map<std::string, double> store_start_;
  std::map<std::string, double> store_end_;
};

/// The numeric samples of the first target's /metrics whose names start with prefix, without
/// histogram series (_bucket, _sum, _count), keyed by sample name with labels.
std::map<std::string, double> fetch_metrics(const Options& o, std::string_view prefix);

/// --store-metrics: polls dstreamd_store_* every 250 ms on the caller's io_context while a
/// scenario runs, to see every checkpoint's duration (the gauge only holds the last one).
class CheckpointWatch {
 public:
  CheckpointWatch(const Options& o, asio::io_context& io);
  ~CheckpointWatch();
  void start();
  void stop();
  /// Adds checkpoint_ms_seen ([ms of each checkpoint seen during the run]).
  void report(Report& r) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Sets o.endpoint and o.host from o.url; dies if it is not http://IP:PORT.
void parse_base_url(Options& o);

/// Prints the report (JSON line or text) on stdout.
void emit(const Options& o, Report& r);

// Scenarios (one file each). Each returns the process exit status.
int run_append(const Options& o);
int run_fanout(const Options& o, bool sse);
int run_roundtrip(const Options& o);
int run_catchup(const Options& o);
int run_idle(const Options& o);
int run_many_streams(const Options& o);

}  // namespace bench
