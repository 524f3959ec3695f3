#include "common.h"

#include <sys/resource.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <vector>

namespace bench {

void die(std::string_view msg) {
  std::cerr << "ds-loadgen: " << msg << std::endl;
  std::exit(2);
}

void die_status(std::string_view what, int status) {
  die(std::string(what) + ": unexpected HTTP status " + std::to_string(status));
}

std::string stream_path(const Options& o, std::string_view name) {
  std::string p = "/v1/stream/";
  p.append(o.prefix);
  p.append(name);
  return p;
}

void build_request(std::string& out, const Options& o, std::string_view method,
                   std::string_view target, std::string_view content_type, std::string_view body) {
  build_request_to(out, o.host, method, target, content_type, body);
}

void build_request_to(std::string& out, std::string_view host, std::string_view method,
                      std::string_view target, std::string_view content_type,
                      std::string_view body) {
  out.append(method);
  out.push_back(' ');
  out.append(target);
  out.append(" HTTP/1.1\r\nHost: ");
  out.append(host);
  out.append("\r\n");
  if (!content_type.empty()) {
    out.append("Content-Type: ");
    out.append(content_type);
    out.append("\r\n");
  }
  if (!body.empty() || method == "POST" || method == "PUT") {
    char len[32];
    auto [end, ec] = std::to_chars(len, len + sizeof len, body.size());
    out.append("Content-Length: ");
    out.append(len, end);
    out.append("\r\n");
  }
  out.append("\r\n");
  out.append(body);
}

void build_message(std::string& out, uint64_t seq, int64_t send_ns, int bytes) {
  size_t start = out.size();
  char buf[48];
  int n = std::snprintf(buf, sizeof buf, "%llu %lld ", static_cast<unsigned long long>(seq),
                        static_cast<long long>(send_ns));
  out.append(buf, static_cast<size_t>(n));
  size_t want = bytes > 1 ? static_cast<size_t>(bytes) - 1 : 0;
  if (out.size() - start < want) out.append(want - (out.size() - start), 'x');
  out.push_back('\n');
}

bool parse_message(std::string_view line, uint64_t& seq, int64_t& send_ns) {
  const char* p = line.data();
  const char* end = p + line.size();
  auto r1 = std::from_chars(p, end, seq);
  if (r1.ec != std::errc() || r1.ptr == end || *r1.ptr != ' ') return false;
  auto r2 = std::from_chars(r1.ptr + 1, end, send_ns);
  return r2.ec == std::errc();
}

namespace {

class PoolConn final : public HttpConn {
 public:
  PoolConn(asio::io_context& io, const Options& o, const RequestJob& job, uint64_t& next,
           uint64_t& completed)
      : HttpConn(io, o.endpoint, 65536), job_(job), next_(next), completed_(completed) {}

  void start() { issue(); }

 private:
  void issue() {
    if (next_ >= job_.total) return;
    current_ = next_++;
    if (!open()) {
      connect();
      return;
    }
    write_current();
  }
  void write_current() {
    out().clear();
    job_.make(current_, out());
    body_.clear();
    in_flight_ = true;
    send();
  }
  void on_connected(const boost::system::error_code& ec) override {
    if (ec) die("connect: " + ec.message());
    write_current();
  }
  void on_written(const boost::system::error_code& ec) override {
    if (ec) die("write: " + ec.message());
  }
  void on_body(std::string_view b) override {
    if (job_.keep_body) body_.append(b);
  }
  void on_message_end() override {
    in_flight_ = false;
    if (job_.done) job_.done(current_, head(), body_);
    ++completed_;
    if (head().close) close();
    if (completed_ == job_.total) {
      io().stop();
      return;
    }
    issue();
  }
  void on_closed(const boost::system::error_code& ec) override {
    if (in_flight_) die("connection lost during a request: " + ec.message());
  }

  const RequestJob& job_;
  uint64_t& next_;
  uint64_t& completed_;
  uint64_t current_ = 0;
  bool in_flight_ = false;
  std::string body_;
};

}  // namespace

void run_requests(const Options& o, const RequestJob& job) {
  if (job.total == 0) return;
  // Declared before the connections: they are destroyed first, and the
  // io_context then drops their pending handlers without running them.
  asio::io_context io;
  uint64_t next = 0;
  uint64_t completed = 0;
  std::vector<std::unique_ptr<PoolConn>> conns;
  int n = job.concurrency < 1 ? 1 : job.concurrency;
  if (static_cast<uint64_t>(n) > job.total) n = static_cast<int>(job.total);
  for (int i = 0; i < n; ++i)
    conns.push_back(std::make_unique<PoolConn>(io, o, job, next, completed));
  for (auto& c : conns) c->start();
  io.run();
  if (completed != job.total) die("setup requests did not complete");
}

SimpleResponse simple_request(tcp::endpoint ep, const std::string& request) {
  Options o;
  o.endpoint = ep;
  SimpleResponse res;
  RequestJob job;
  job.total = 1;
  job.concurrency = 1;
  job.keep_body = true;
  job.make = [&](uint64_t, std::string& out) { out.append(request); };
  job.done = [&](uint64_t, const ResponseHead& h, const std::string& body) {
    res.head = h;
    res.body = body;
  };
  run_requests(o, job);
  return res;
}

std::string create_stream(const Options& o, const std::string& path) {
  std::string req;
  build_request(req, o, "PUT", path, "text/plain");
  auto res = simple_request(o.endpoint, req);
  if (res.head.status != 201 && res.head.status != 200) die_status("PUT " + path, res.head.status);
  return res.head.next_offset;
}

namespace {

// Splits "http://host:port/path" (no TLS); dies on anything else.
void split_url(const std::string& url, tcp::endpoint& ep, std::string& host, std::string& path) {
  std::string_view u(url);
  if (!u.starts_with("http://")) die("only http:// URLs are supported: " + url);
  u.remove_prefix(7);
  auto slash = u.find('/');
  std::string_view authority = u.substr(0, slash);
  path = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  host = std::string(authority);
  auto colon = authority.rfind(':');
  std::string h(authority.substr(0, colon));
  unsigned short port = 80;
  if (colon != std::string_view::npos) {
    auto ps = authority.substr(colon + 1);
    auto r = std::from_chars(ps.data(), ps.data() + ps.size(), port);
    if (r.ec != std::errc()) die("bad port in " + url);
  }
  if (h == "localhost") h = "127.0.0.1";
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(h, ec);
  if (ec) die("the host must be an IP address (or localhost): " + url);
  ep = tcp::endpoint(addr, port);
}

// The "requests" object of the emulator's stats: {"append": 3, ...}.
std::map<std::string, int64_t> parse_requests(std::string_view json) {
  std::map<std::string, int64_t> out;
  auto at = json.find("\"requests\"");
  if (at == std::string_view::npos) return out;
  auto open = json.find('{', at);
  auto close = json.find('}', open);
  if (open == std::string_view::npos || close == std::string_view::npos) return out;
  std::string_view body = json.substr(open + 1, close - open - 1);
  while (!body.empty()) {
    auto q1 = body.find('"');
    if (q1 == std::string_view::npos) break;
    auto q2 = body.find('"', q1 + 1);
    auto colon = body.find(':', q2);
    if (q2 == std::string_view::npos || colon == std::string_view::npos) break;
    std::string key(body.substr(q1 + 1, q2 - q1 - 1));
    std::string_view rest = body.substr(colon + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    int64_t v = 0;
    auto r = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    out[key] = v;
    body = rest.substr(static_cast<size_t>(r.ptr - rest.data()));
  }
  return out;
}

}  // namespace

void parse_base_url(Options& o) {
  if (o.urls.empty()) o.urls.push_back(o.url);
  o.endpoints.clear();
  o.hosts.clear();
  for (const auto& u : o.urls) {
    std::string path;
    tcp::endpoint ep;
    std::string host;
    split_url(u, ep, host, path);
    o.endpoints.push_back(ep);
    o.hosts.push_back(host);
  }
  o.url = o.urls.front();
  o.endpoint = o.endpoints.front();
  o.host = o.hosts.front();
  if (o.server_pids.empty() && o.server_pid > 0) o.server_pids.push_back(o.server_pid);
  if (!o.server_pids.empty()) o.server_pid = o.server_pids.front();
}

// Sums the dstreamd_s2_* counter samples of every target's /metrics, keyed by the sample
// name with its labels (e.g. dstreamd_s2_requests_total{method="append"}).
std::map<std::string, int64_t> ServerProbe::client_counters() const {
  std::map<std::string, int64_t> out;
  if (!o_.s2_metrics) return out;
  for (size_t i = 0; i < o_.endpoints.size(); ++i) {
    std::string req = "GET /metrics HTTP/1.1\r\nHost: " + o_.hosts[i] + "\r\n\r\n";
    auto res = simple_request(o_.endpoints[i], req);
    if (res.head.status != 200) die_status("GET /metrics", res.head.status);
    std::string_view body(res.body);
    while (!body.empty()) {
      auto nl = body.find('\n');
      std::string_view line = body.substr(0, nl);
      body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
      if (!line.starts_with("dstreamd_s2_")) continue;
      auto sp = line.rfind(' ');
      if (sp == std::string_view::npos) continue;
      std::string_view v = line.substr(sp + 1);
      double d = 0;
      auto r = std::from_chars(v.data(), v.data() + v.size(), d);
      if (r.ec != std::errc()) continue;
      out[std::string(line.substr(0, sp))] += static_cast<int64_t>(d);
    }
  }
  return out;
}

std::map<std::string, double> fetch_metrics(const Options& o, std::string_view prefix) {
  std::map<std::string, double> out;
  std::string req = "GET /metrics HTTP/1.1\r\nHost: " + o.host + "\r\n\r\n";
  auto res = simple_request(o.endpoint, req);
  if (res.head.status != 200) return out;  // not dstreamd (the reference has no /metrics)
  std::string_view body(res.body);
  while (!body.empty()) {
    auto nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
    if (!line.starts_with(prefix)) continue;
    auto sp = line.rfind(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view name = line.substr(0, sp);
    auto base = name.substr(0, name.find('{'));
    if (base.ends_with("_bucket") || base.ends_with("_sum") || base.ends_with("_count")) continue;
    std::string_view v = line.substr(sp + 1);
    double d = 0;
    auto r = std::from_chars(v.data(), v.data() + v.size(), d);
    if (r.ec != std::errc()) continue;
    out[std::string(name)] = d;
  }
  return out;
}

struct CheckpointWatch::Impl {
  const Options& o;
  asio::steady_timer timer;
  bool running = false;
  double last_count = -1;
  std::vector<double> ms;
  Impl(const Options& opts, asio::io_context& io) : o(opts), timer(io) {}
  void poll() {
    auto m = fetch_metrics(o, "dstreamd_store_checkpoint");
    auto c = m.find("dstreamd_store_checkpoints_total");
    auto d = m.find("dstreamd_store_checkpoint_duration_seconds");
    if (c != m.end()) {
      if (last_count >= 0 && c->second > last_count && d != m.end()) ms.push_back(d->second * 1000);
      last_count = c->second;
    }
  }
  void arm() {
    timer.expires_after(std::chrono::milliseconds(250));
    timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec || !running) return;
      poll();
      arm();
    });
  }
};

CheckpointWatch::CheckpointWatch(const Options& o, asio::io_context& io)
    : impl_(o.store_metrics ? std::make_unique<Impl>(o, io) : nullptr) {}
CheckpointWatch::~CheckpointWatch() = default;
void CheckpointWatch::start() {
  if (!impl_) return;
  impl_->running = true;
  impl_->poll();
  impl_->arm();
}
void CheckpointWatch::stop() {
  if (!impl_ || !impl_->running) return;
  impl_->running = false;
  impl_->timer.cancel();
  impl_->poll();
}
void CheckpointWatch::report(Report& r) const {
  if (!impl_) return;
  std::string j = "[";
  for (double v : impl_->ms) {
    if (j.size() > 1) j.push_back(',');
    char b[32];
    int n = std::snprintf(b, sizeof b, "%.0f", v);
    j.append(b, static_cast<size_t>(n));
  }
  j.push_back(']');
  r.raw("checkpoint_ms_seen", j);
}

ProcSample ServerProbe::sample_servers() const {
  ProcSample sum;
  if (o_.server_pids.empty()) return sum;
  sum.ok = true;
  for (int pid : o_.server_pids) {
    ProcSample s = sample_process(pid);
    sum.ok = sum.ok && s.ok;
    sum.cpu_us += s.cpu_us;
    sum.rss_kb += s.rss_kb;
  }
  return sum;
}

std::map<std::string, int64_t> ServerProbe::s2_counters() const {
  if (o_.s2_stats_url.empty()) return {};
  tcp::endpoint ep;
  std::string host;
  std::string path;
  split_url(o_.s2_stats_url, ep, host, path);
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  auto res = simple_request(ep, req);
  if (res.head.status != 200) die_status("GET " + o_.s2_stats_url, res.head.status);
  return parse_requests(res.body);
}

namespace {

int64_t self_cpu_us() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto us = [](const timeval& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000 + t.tv_usec; };
  return us(u.ru_utime) + us(u.ru_stime);
}

}  // namespace

void ServerProbe::start() {
  if (o_.store_metrics) store_start_ = fetch_metrics(o_, "dstreamd_store_");
  s2_start_ = s2_counters();
  client_start_ = client_counters();
  emu_start_ = sample_process(o_.emulator_pid);
  start_ = sample_servers();
  setup_ = start_;
  self_cpu_start_us_ = self_cpu_us();
  start_ns_ = now_ns();
}

void ServerProbe::end() {
  end_ = sample_servers();
  emu_end_ = sample_process(o_.emulator_pid);
  self_cpu_end_us_ = self_cpu_us();
  end_ns_ = now_ns();
  s2_end_ = s2_counters();
  client_end_ = client_counters();
  if (o_.store_metrics) store_end_ = fetch_metrics(o_, "dstreamd_store_");
}

namespace {

// {"key": end - start, ...} for the keys whose value changed; returns the sum of the deltas.
int64_t delta_object(const std::map<std::string, int64_t>& start,
                     const std::map<std::string, int64_t>& end, std::string& j) {
  j = "{";
  int64_t total = 0;
  for (const auto& [k, v] : end) {
    auto it = start.find(k);
    int64_t d = v - (it == start.end() ? 0 : it->second);
    if (d == 0) continue;
    if (j.size() > 1) j.push_back(',');
    append_json_string(j, k);
    j.push_back(':');
    j.append(std::to_string(d));
    total += d;
  }
  j.push_back('}');
  return total;
}

}  // namespace

void ServerProbe::report(Report& r, double units, std::string_view per_unit_key) const {
  if (end_ns_ > start_ns_) {
    // How busy the load generator itself was: near 100 % means it may be the bottleneck.
    r.integer("loadgen_cpu_us", self_cpu_end_us_ - self_cpu_start_us_);
    r.num("loadgen_cpu_pct", static_cast<double>(self_cpu_end_us_ - self_cpu_start_us_) * 1e5 /
                                 static_cast<double>(end_ns_ - start_ns_));
  }
  if (ok()) {
    r.integer("server_cpu_us", cpu_us());
    if (units > 0 && !per_unit_key.empty()) {
      r.num(per_unit_key, static_cast<double>(cpu_us()) / units);
    }
    r.integer("server_rss_start_kb", start_.rss_kb);
    r.integer("server_rss_end_kb", end_.rss_kb);
  }
  if (o_.server_pids.size() > 1)
    r.integer("server_processes", static_cast<int64_t>(o_.server_pids.size()));
  if (emu_start_.ok && emu_end_.ok && end_ns_ > start_ns_) {
    int64_t us = emu_end_.cpu_us - emu_start_.cpu_us;
    r.integer("emulator_cpu_us", us);
    r.num("emulator_cpu_pct",
          static_cast<double>(us) * 1e5 / static_cast<double>(end_ns_ - start_ns_));
  }
  if (!o_.s2_stats_url.empty()) {
    std::string j;
    int64_t total = delta_object(s2_start_, s2_end_, j);
    r.raw("s2_requests", j);
    r.integer("s2_requests_total", total);
  }
  if (o_.s2_metrics) {
    std::string j;
    delta_object(client_start_, client_end_, j);
    r.raw("s2_client", j);
  }
  if (o_.store_metrics && !store_end_.empty()) {
    // Counters as deltas over the measured phase, gauges as their end values.
    std::string d = "{";
    std::string e = "{";
    for (const auto& [k, v] : store_end_) {
      char b[48];
      if (k.find("_total") != std::string::npos) {
        auto it = store_start_.find(k);
        double dv = v - (it == store_start_.end() ? 0 : it->second);
        if (d.size() > 1) d.push_back(',');
        append_json_string(d, k.substr(std::string("dstreamd_store_").size()));
        int n = std::snprintf(b, sizeof b, ":%.17g", dv);
        d.append(b, static_cast<size_t>(n));
      } else {
        if (e.size() > 1) e.push_back(',');
        append_json_string(e, k.substr(std::string("dstreamd_store_").size()));
        int n = std::snprintf(b, sizeof b, ":%.17g", v);
        e.append(b, static_cast<size_t>(n));
      }
    }
    d.push_back('}');
    e.push_back('}');
    r.raw("store_delta", d);
    r.raw("store_end", e);
  }
}

void emit(const Options& o, Report& r) {
  if (o.json) {
    std::cout << r.json() << std::endl;
  } else {
    std::cout << r.text() << std::flush;
  }
}

}  // namespace bench
