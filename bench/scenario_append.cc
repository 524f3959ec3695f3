// Scenario "append": C writers, each with one POST in flight on a keep-alive
// connection, spread over S text/plain streams; as fast as possible or at a
// fixed total rate. Measures appends/s, latency (write start to response end)
// and server CPU per append.
//
// With several --url targets, writer i keeps its connection on target i mod N. With --verify,
// every body is "<writer>.<k> " padded to --body-bytes and ended by "\n", only 2xx answers count
// as acknowledged (5xx and 429 are counted and the writer goes on after 10 ms), and after the
// measured phase every stream is read back from every target: an acknowledged id missing from
// the first target's copy is lost, an id present more than once is duplicated, and the other
// targets' copies must be byte-identical to the first's.
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <vector>

#include "common.h"

namespace bench {

namespace {

size_t stream_of(const Options& o, size_t writer, uint64_t k, size_t streams) {
  return static_cast<size_t>((writer + k * static_cast<uint64_t>(o.writers)) % streams);
}

struct AppendRun {
  const Options* o = nullptr;
  std::vector<std::string> paths;
  std::string body;
  Histogram latency;
  uint64_t completed = 0;
  uint64_t issued = 0;                      // --appends: requests sent (all phases)
  std::vector<uint64_t> per_target;         // acknowledged appends by target (measured phase)
  uint64_t rejected = 0;                    // --verify: 5xx / 429 answers
  std::map<int, uint64_t> reject_statuses;  // status -> count
  std::string reject_example;               // the first refusal's status and body (truncated)
  bool stopping = false;
  bool measuring = true;  // false during --warmup: answers are not counted
  int active = 0;
  int64_t start_ns = 0;    // the writers' start (the --rate schedule's origin)
  int64_t measure_ns = 0;  // the measured phase's start
  int64_t last_ns = 0;
};

class Writer final : public HttpConn {
 public:
  Writer(asio::io_context& io, AppendRun& run, int index)
      : HttpConn(io, run.o->endpoints[static_cast<size_t>(index) % run.o->endpoints.size()], 4096),
        run_(run),
        index_(index),
        host_(run.o->hosts[static_cast<size_t>(index) % run.o->hosts.size()]),
        timer_(io) {}

  /// --verify: state of append k of this writer: 0 sent and unanswered, 1 acknowledged, 2 refused.
  const std::vector<uint8_t>& states() const { return states_; }

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
    if (run_.o->max_appends > 0 && run_.issued >= run_.o->max_appends) {
      run_.stopping = true;
      next();
      return;
    }
    ++run_.issued;
    // Append k of writer i goes to stream (i + k * writers) mod S: the writers together walk the
    // streams in order, so every stream is used even when S exceeds the appends per writer.
    const std::string& path = run_.paths[stream_of(*run_.o, index_, k_, run_.paths.size())];
    out().clear();
    if (run_.o->verify) {
      body_.clear();
      char id[48];
      int n = std::snprintf(id, sizeof id, "%d.%llu ", index_, static_cast<unsigned long long>(k_));
      body_.append(id, static_cast<size_t>(n));
      size_t want = static_cast<size_t>(run_.o->body_bytes) - 1;
      if (body_.size() < want) body_.append(want - body_.size(), 'x');
      body_.push_back('\n');
      states_.push_back(0);
      build_request_to(out(), host_, "POST", path, "text/plain", body_);
    } else {
      build_request_to(out(), host_, "POST", path, "text/plain", run_.body);
    }
    ++k_;
    sent_ns_ = now_ns();
    send();
  }
  void on_written(const boost::system::error_code& ec) override {
    if (ec) die("write: " + ec.message());
  }
  void on_body(std::string_view b) override {
    if (head().status >= 300 && err_body_.size() < 300) err_body_.append(b.substr(0, 300));
  }
  void on_message_end() override {
    int status = head().status;
    if (status != 204 && status != 200) {
      if (!run_.o->verify || !(status >= 500 || status == 429)) {
        die("POST (append): unexpected HTTP status " + std::to_string(status) + ": " + err_body_);
      }
      if (run_.reject_example.empty()) {
        run_.reject_example = std::to_string(status) + " " + err_body_;
      }
      err_body_.clear();
      states_.back() = 2;
      ++run_.rejected;
      ++run_.reject_statuses[status];
      if (head().close) close();
      timer_.expires_after(std::chrono::milliseconds(10));
      timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        if (!open() && !run_.stopping) {
          connect();
          return;
        }
        next();
      });
      return;
    }
    if (run_.o->verify) states_.back() = 1;
    int64_t now = read_time_ns();
    if (run_.measuring) {
      run_.latency.record(now - sent_ns_);
      ++run_.completed;
      ++run_.per_target[static_cast<size_t>(index_) % run_.per_target.size()];
      run_.last_ns = now;
    }
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
  const std::string& host_;
  asio::steady_timer timer_;
  std::string body_;
  std::string err_body_;  // the body of a non-2xx answer (truncated)
  std::vector<uint8_t> states_;
  uint64_t k_ = 0;
  int64_t sent_ns_ = 0;
};

// Reads a text/plain stream from the start until Stream-Up-To-Date.
std::string read_stream(const Options& o, size_t target, const std::string& path) {
  std::string content;
  std::string offset = "-1";
  for (int i = 0; i < 1'000'000; ++i) {
    std::string req;
    build_request_to(req, o.hosts[target], "GET", path + "?offset=" + offset);
    auto res = simple_request(o.endpoints[target], req);
    if (res.head.status != 200) die_status("GET (verify read) " + path, res.head.status);
    content.append(res.body);
    if (res.head.up_to_date) return content;
    if (res.head.next_offset.empty() || (res.head.next_offset == offset && res.body.empty())) {
      die("verify read of " + path + ": no progress at offset " + offset);
    }
    offset = res.head.next_offset;
  }
  die("verify read of " + path + ": too many requests");
}

struct VerifyResult {
  uint64_t acked = 0;
  uint64_t refused = 0;
  uint64_t records = 0;          // lines read from the first target
  uint64_t lost = 0;             // acknowledged, absent
  uint64_t duplicated = 0;       // extra copies of an id
  uint64_t unacked_present = 0;  // refused (5xx) yet present: allowed, the answer was ambiguous
  uint64_t misplaced = 0;        // in a stream it was not sent to
  uint64_t malformed = 0;        // lines that are no id of this run
  uint64_t targets_differ = 0;   // (target, stream) copies that differ from the first target's
  bool ok() const {
    return lost == 0 && duplicated == 0 && misplaced == 0 && malformed == 0 && targets_differ == 0;
  }
};

VerifyResult verify(const Options& o, const AppendRun& run,
                    const std::vector<std::unique_ptr<Writer>>& writers) {
  VerifyResult v;
  std::vector<std::vector<uint32_t>> seen(writers.size());
  for (size_t w = 0; w < writers.size(); ++w) {
    for (uint8_t s : writers[w]->states()) {
      if (s == 1) ++v.acked;
      if (s == 2) ++v.refused;
    }
    seen[w].assign(writers[w]->states().size(), 0);
  }
  for (size_t p = 0; p < run.paths.size(); ++p) {
    std::string content = read_stream(o, 0, run.paths[p]);
    for (size_t t = 1; t < o.endpoints.size(); ++t) {
      if (read_stream(o, t, run.paths[p]) != content) ++v.targets_differ;
    }
    std::string_view rest(content);
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      ++v.records;
      size_t w = 0;
      uint64_t k = 0;
      auto r1 = std::from_chars(line.data(), line.data() + line.size(), w);
      if (r1.ec != std::errc() || r1.ptr == line.data() + line.size() || *r1.ptr != '.') {
        ++v.malformed;
        continue;
      }
      auto r2 = std::from_chars(r1.ptr + 1, line.data() + line.size(), k);
      if (r2.ec != std::errc() || w >= seen.size() || k >= seen[w].size() ||
          line.size() + 1 != static_cast<size_t>(o.body_bytes)) {
        ++v.malformed;
        continue;
      }
      if (stream_of(o, w, k, run.paths.size()) != p) ++v.misplaced;
      if (++seen[w][k] > 1) ++v.duplicated;
    }
  }
  for (size_t w = 0; w < writers.size(); ++w) {
    const auto& st = writers[w]->states();
    for (size_t k = 0; k < st.size(); ++k) {
      if (st[k] == 1 && seen[w][k] == 0) ++v.lost;
      if (st[k] != 1 && seen[w][k] > 0) ++v.unacked_present;
    }
  }
  return v;
}

}  // namespace

int run_append(const Options& o) {
  if (o.verify && o.body_bytes < 32) die("--verify needs --body-bytes >= 32 (room for the id)");
  AppendRun run;
  run.o = &o;
  run.body.assign(static_cast<size_t>(o.body_bytes), 'a');
  run.per_target.assign(o.endpoints.size(), 0);
  for (int i = 0; i < o.streams; ++i) run.paths.push_back(stream_path(o, "a" + std::to_string(i)));
  RequestJob create;
  create.total = run.paths.size();
  create.concurrency = o.streams >= 10000 ? 64 : 16;
  create.make = [&](uint64_t i, std::string& out) {
    build_request(out, o, "PUT", run.paths[i], "text/plain");
  };
  create.done = [](uint64_t, const ResponseHead& h, const std::string&) {
    if (h.status != 201 && h.status != 200) die_status("PUT (create)", h.status);
  };
  int64_t create_ns = now_ns();
  run_requests(o, create);

  int64_t setup_ns = now_ns();
  ServerProbe probe(o);
  asio::io_context io;
  CheckpointWatch watch(o, io);
  std::vector<std::unique_ptr<Writer>> writers;
  for (int i = 0; i < o.writers; ++i) writers.push_back(std::make_unique<Writer>(io, run, i));
  asio::steady_timer deadline(io);
  asio::steady_timer warmup(io);
  auto begin_measuring = [&] {
    run.measuring = true;
    probe.start();
    watch.start();
    run.measure_ns = now_ns();
    run.last_ns = run.measure_ns;
    if (o.max_appends == 0) {
      deadline.expires_after(std::chrono::nanoseconds(static_cast<int64_t>(o.duration_s * 1e9)));
      deadline.async_wait([&](const boost::system::error_code&) { run.stopping = true; });
    }
  };
  run.measuring = o.warmup_s <= 0;
  if (run.measuring) begin_measuring();
  run.start_ns = now_ns();
  for (auto& w : writers) w->start();
  if (!run.measuring) {
    // Connections, the server's per-stream state and the S2 client's pool settle first.
    warmup.expires_after(std::chrono::nanoseconds(static_cast<int64_t>(o.warmup_s * 1e9)));
    warmup.async_wait([&](const boost::system::error_code&) { begin_measuring(); });
  }
  io.run();
  watch.stop();
  probe.end();

  double elapsed = static_cast<double>(run.last_ns - run.measure_ns) / 1e9;
  Report r;
  r.str("scenario", "append");
  r.str("label", o.label);
  r.integer("writers", o.writers);
  r.integer("streams", o.streams);
  r.integer("body_bytes", o.body_bytes);
  r.num("target_rate", o.rate);
  if (o.warmup_s > 0) r.num("warmup_s", o.warmup_s);
  r.num("create_s", static_cast<double>(setup_ns - create_ns) / 1e9);
  r.num("elapsed_s", elapsed);
  r.integer("appends", static_cast<int64_t>(run.completed));
  r.num("appends_per_s", elapsed > 0 ? static_cast<double>(run.completed) / elapsed : 0);
  r.latency_us("latency", run.latency);
  probe.report(r, static_cast<double>(run.completed), "server_cpu_us_per_append");
  watch.report(r);
  if (o.endpoints.size() > 1) {
    r.integer("targets", static_cast<int64_t>(o.endpoints.size()));
    std::string j = "[";
    for (uint64_t n : run.per_target) {
      if (j.size() > 1) j.push_back(',');
      j += std::to_string(n);
    }
    j.push_back(']');
    r.raw("appends_per_target", j);
  }
  int status = 0;
  if (o.verify) {
    r.integer("refused", static_cast<int64_t>(run.rejected));
    std::string j = "{";
    for (const auto& [st, n] : run.reject_statuses) {
      if (j.size() > 1) j.push_back(',');
      j += "\"" + std::to_string(st) + "\":" + std::to_string(n);
    }
    j.push_back('}');
    r.raw("refused_statuses", j);
    if (!run.reject_example.empty()) r.str("refused_example", run.reject_example);
    VerifyResult v = verify(o, run, writers);
    r.integer("verify_acked", static_cast<int64_t>(v.acked));
    r.integer("verify_records", static_cast<int64_t>(v.records));
    r.integer("lost", static_cast<int64_t>(v.lost));
    r.integer("duplicated", static_cast<int64_t>(v.duplicated));
    r.integer("unacked_present", static_cast<int64_t>(v.unacked_present));
    r.integer("misplaced", static_cast<int64_t>(v.misplaced));
    r.integer("malformed", static_cast<int64_t>(v.malformed));
    r.integer("targets_differ", static_cast<int64_t>(v.targets_differ));
    r.str("verify", v.ok() ? "ok" : "FAILED");
    if (!v.ok()) status = 3;
  }
  emit(o, r);
  if (status != 0)
    std::cerr << "ds-loadgen: verification failed (lost, duplicated, misplaced, malformed or "
                 "copies differ)"
              << std::endl;
  return status;
}

}  // namespace bench
