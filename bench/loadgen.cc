// ds-loadgen: a load generator for Durable Streams servers (docs/benchmarks.md).
//
//   ds-loadgen --url http://127.0.0.1:4437 --scenario append --writers 64 --streams 100
//
// One scenario per run; results go to stdout (one JSON line with --json).
// Protocol errors (unexpected statuses, malformed responses) exit with 2.
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "common.h"

namespace {

constexpr std::string_view kUsage = R"(usage: ds-loadgen --scenario NAME [options]

scenarios:
  append           --writers C --streams S --body-bytes B [--rate R] [--verify] [--warmup SECS]
                   [--appends N] (stop after N appends instead of after --duration)
  sse-fanout       --readers N --rate R --body-bytes B
  longpoll-fanout  --readers N --rate R --body-bytes B
  roundtrip        --mode sse|long-poll [--count K]
  catchup          --size-mb M --readers K [--append-bytes B (default 65536)]
                   [--fill-concurrency C (default 1: in order)]
  idle             --connections N --mode sse|long-poll --streams S
  many-streams     --streams N --body-bytes B [--concurrency C]

common options:
  --url URL[,URL...] server base URL, http://IP:PORT (default http://127.0.0.1:4437); several
                     (comma-separated or repeated): append spreads its writers over them
                     round-robin (writer i on URL i mod N); setup, reads and the others use the first
  --duration SECS    measured phase (default 10; idle: how long to hold after parking)
  --server-pid PID[,PID...]  sample the servers' CPU time and RSS from /proc (summed)
  --emulator-pid PID report the S2 emulator's CPU time separately
  --s2-metrics       report deltas of the dstreamd_s2_* counters of every URL's /metrics
  --verify           append: every body carries a unique id; after the run read every stream
                     back (from every URL) and count lost / duplicated appends; only 2xx answers
                     count as acknowledged, and 5xx/429 answers are counted, not fatal
  --store-metrics    report dstreamd_store_* of /metrics over the measured phase (counters as
                     deltas, gauges at the end); append also polls it every 250 ms and lists
                     every checkpoint's duration it saw (checkpoint_ms_seen)
  --s2-stats URL     the S2 emulator's /_emu/stats: report request-counter deltas
  --prefix STR       stream-name prefix (default bench-<pid>-<time>-)
  --label STR        copied into the result (the server's name)
  --grace SECS       fan-out: wait this long for the last message (default 10)
  --json             print one JSON object line instead of text
)";

[[noreturn]] void usage_error(std::string_view msg) {
  std::cerr << "ds-loadgen: " << msg << "\n\n" << kUsage;
  std::exit(64);
}

template <typename T>
T number(std::string_view flag, std::string_view v) {
  T out{};
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || ptr != v.data() + v.size()) {
    usage_error(std::string(flag) + ": not a number: " + std::string(v));
  }
  return out;
}

std::vector<std::string_view> split_commas(std::string_view v) {
  std::vector<std::string_view> out;
  while (!v.empty()) {
    auto c = v.find(',');
    auto part = v.substr(0, c);
    if (!part.empty()) out.push_back(part);
    if (c == std::string_view::npos) break;
    v.remove_prefix(c + 1);
  }
  return out;
}

void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a == "--verify") {
      o.verify = true;
      continue;
    }
    if (a == "--store-metrics") {
      o.store_metrics = true;
      continue;
    }
    if (a == "--s2-metrics") {
      o.s2_metrics = true;
      continue;
    }
    if (!a.starts_with("--")) usage_error("unexpected argument: " + std::string(a));
    if (i + 1 >= argc) usage_error(std::string(a) + " needs a value");
    std::string_view v = argv[++i];
    if (a == "--url") {
      for (auto part : split_commas(v)) o.urls.emplace_back(part);
      continue;
    }
    if (a == "--server-pid") {
      for (auto part : split_commas(v)) o.server_pids.push_back(number<int>(a, part));
      continue;
    }
    if (a == "--emulator-pid")
      o.emulator_pid = number<int>(a, v);
    else if (a == "--scenario")
      o.scenario = v;
    else if (a == "--label")
      o.label = v;
    else if (a == "--prefix")
      o.prefix = v;
    else if (a == "--duration")
      o.duration_s = number<double>(a, v);
    else if (a == "--warmup")
      o.warmup_s = number<double>(a, v);
    else if (a == "--s2-stats")
      o.s2_stats_url = v;
    else if (a == "--writers")
      o.writers = number<int>(a, v);
    else if (a == "--streams")
      o.streams = number<int>(a, v);
    else if (a == "--body-bytes")
      o.body_bytes = number<int>(a, v);
    else if (a == "--rate")
      o.rate = number<double>(a, v);
    else if (a == "--readers")
      o.readers = number<int>(a, v);
    else if (a == "--mode")
      o.mode = v;
    else if (a == "--count")
      o.count = number<int>(a, v);
    else if (a == "--size-mb")
      o.size_mb = number<double>(a, v);
    else if (a == "--append-bytes")
      o.append_bytes = number<int>(a, v);
    else if (a == "--fill-concurrency")
      o.fill_concurrency = number<int>(a, v);
    else if (a == "--appends")
      o.max_appends = number<uint64_t>(a, v);
    else if (a == "--connections")
      o.connections = number<int>(a, v);
    else if (a == "--concurrency")
      o.concurrency = number<int>(a, v);
    else if (a == "--grace")
      o.grace_s = number<double>(a, v);
    else
      usage_error("unknown option: " + std::string(a));
  }
  if (o.scenario.empty()) usage_error("--scenario is required");
  if (o.prefix.empty()) {
    o.prefix = "bench-" + std::to_string(getpid()) + "-" + std::to_string(time(nullptr)) + "-";
  }
  raise_fd_limit();
  bench::parse_base_url(o);

  const std::string& s = o.scenario;
  if (s == "append") return bench::run_append(o);
  if (s == "sse-fanout") return bench::run_fanout(o, true);
  if (s == "longpoll-fanout") return bench::run_fanout(o, false);
  if (s == "roundtrip") return bench::run_roundtrip(o);
  if (s == "catchup") return bench::run_catchup(o);
  if (s == "idle") return bench::run_idle(o);
  if (s == "many-streams") return bench::run_many_streams(o);
  usage_error("unknown scenario: " + s);
}
