// Scenarios "sse-fanout" and "longpoll-fanout": N live readers on one stream,
// one writer posting R numbered, timestamped messages per second. Every reader
// accounts missing, duplicate and out-of-order sequence numbers; delivery
// latency is receipt time minus the send timestamp carried in the message.
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <vector>

#include "common.h"
#include "live_reader.h"

namespace bench {

namespace {

struct ReaderState {
  std::vector<uint64_t> seen;  // bitmap of received sequence numbers
  uint64_t distinct = 0;
  int64_t max_seq = -1;
  uint64_t duplicates = 0;
  uint64_t out_of_order = 0;
  bool done = false;
};

class Fanout final : public LiveSink {
 public:
  Fanout(const Options& o, bool sse) : o_(o), sse_(sse), timer_(io_) {}

  int run();

 private:
  class Writer;

  void on_parked(LiveReader& r) override {
    if (counted_parked_[r.tag]) return;
    counted_parked_[r.tag] = true;
    ++parked_;
    if (started_ < readers_.size()) readers_[started_++]->start();
    if (parked_ == readers_.size()) all_parked();
  }
  void on_reconnect(LiveReader&) override { ++reconnects_; }
  void on_line(LiveReader& r, std::string_view line, int64_t recv_ns) override;

  void all_parked();
  void writer_done(uint64_t sent);
  void check_finished();
  void finish();

  const Options& o_;
  bool sse_;
  asio::io_context io_;
  std::string path_;
  std::vector<std::unique_ptr<LiveReader>> readers_;
  std::vector<ReaderState> state_;
  std::vector<bool> counted_parked_;
  std::unique_ptr<Writer> writer_;
  asio::steady_timer timer_;
  asio::steady_timer hard_deadline_{io_};
  ServerProbe probe_{o_};
  size_t started_ = 0;
  size_t parked_ = 0;
  size_t done_readers_ = 0;
  uint64_t deliveries_ = 0;
  uint64_t bad_lines_ = 0;
  uint64_t reconnects_ = 0;
  int64_t last_seq_ = -1;  // set when the writer has stopped
  bool writer_finished_ = false;
  bool finished_ = false;
  bool timed_out_ = false;
  int64_t send_start_ns_ = 0;
  int64_t send_end_ns_ = 0;
  int64_t finish_ns_ = 0;
  uint64_t sent_ = 0;
  Histogram latency_;
};

// Posts message i at start + i/rate (late messages go out as soon as the
// previous append is acknowledged: one request in flight).
class Fanout::Writer final : public HttpConn {
 public:
  explicit Writer(Fanout& f) : HttpConn(f.io_, f.o_.endpoint, 4096), f_(f), timer_(f.io_) {}
  void start() { connect(); }
  /// Stops posting (the hard deadline); returns how many appends were acknowledged.
  uint64_t stop() {
    timer_.cancel();
    close();
    return seq_;
  }

 private:
  void on_connected(const boost::system::error_code& ec) override {
    if (ec) die("writer connect: " + ec.message());
    if (start_ns_ == 0) {  // not a reconnect
      start_ns_ = now_ns();
      f_.send_start_ns_ = start_ns_;
      end_ns_ = start_ns_ + static_cast<int64_t>(f_.o_.duration_s * 1e9);
    }
    next();
  }
  void next() {
    int64_t due = start_ns_ + static_cast<int64_t>(static_cast<double>(seq_) / f_.o_.rate * 1e9);
    if (due >= end_ns_) {
      f_.send_end_ns_ = now_ns();
      f_.writer_done(seq_);
      return;
    }
    int64_t wait = due - now_ns();
    if (wait > 0) {
      timer_.expires_after(std::chrono::nanoseconds(wait));
      timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) post();
      });
      return;
    }
    post();
  }
  void post() {
    body_.clear();
    build_message(body_, seq_, now_ns(), f_.o_.body_bytes);
    out().clear();
    build_request(out(), f_.o_, "POST", f_.path_, "text/plain", body_);
    send();
  }
  void on_written(const boost::system::error_code& ec) override {
    if (ec) die("writer write: " + ec.message());
  }
  void on_message_end() override {
    if (head().status != 204 && head().status != 200) die_status("POST (writer)", head().status);
    ++seq_;
    if (head().close) {
      connect();  // continues with next() once connected
      return;
    }
    next();
  }
  void on_closed(const boost::system::error_code& ec) override {
    die("writer connection closed: " + ec.message());
  }

  Fanout& f_;
  asio::steady_timer timer_;
  std::string body_;
  uint64_t seq_ = 0;
  int64_t start_ns_ = 0;
  int64_t end_ns_ = 0;
};

void Fanout::on_line(LiveReader& r, std::string_view line, int64_t recv_ns) {
  uint64_t seq = 0;
  int64_t sent = 0;
  if (!parse_message(line, seq, sent)) {
    ++bad_lines_;
    return;
  }
  ReaderState& s = state_[r.tag];
  size_t word = seq / 64;
  if (word >= s.seen.size()) s.seen.resize(word + 1 + s.seen.size() / 2, 0);
  uint64_t bit = uint64_t{1} << (seq % 64);
  if (s.seen[word] & bit) {
    ++s.duplicates;
    return;
  }
  s.seen[word] |= bit;
  ++s.distinct;
  if (static_cast<int64_t>(seq) < s.max_seq) ++s.out_of_order;
  if (static_cast<int64_t>(seq) > s.max_seq) s.max_seq = static_cast<int64_t>(seq);
  ++deliveries_;
  latency_.record(recv_ns - sent);
  if (writer_finished_ && !s.done && s.max_seq >= last_seq_) {
    s.done = true;
    ++done_readers_;
    check_finished();
  }
}

void Fanout::all_parked() {
  timer_.cancel();  // the setup deadline
  probe_.start();
  writer_ = std::make_unique<Writer>(*this);
  writer_->start();
  // A server too slow to take the writer's appends or to deliver them would otherwise
  // stretch the case without bound: stop at duration + grace + 30 s and report what arrived.
  hard_deadline_.expires_after(
      std::chrono::nanoseconds(static_cast<int64_t>((o_.duration_s + o_.grace_s + 30) * 1e9)));
  hard_deadline_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || finished_) return;
    timed_out_ = true;
    if (!writer_finished_) {
      send_end_ns_ = now_ns();
      sent_ = writer_->stop();
      last_seq_ = static_cast<int64_t>(sent_) - 1;
      writer_finished_ = true;
    }
    finish();
  });
}

void Fanout::writer_done(uint64_t sent) {
  sent_ = sent;
  last_seq_ = static_cast<int64_t>(sent) - 1;
  writer_finished_ = true;
  for (auto& s : state_) {
    if (!s.done && s.max_seq >= last_seq_) {
      s.done = true;
      ++done_readers_;
    }
  }
  timer_.expires_after(std::chrono::nanoseconds(static_cast<int64_t>(o_.grace_s * 1e9)));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) finish();
  });
  check_finished();
}

void Fanout::check_finished() {
  if (writer_finished_ && done_readers_ == readers_.size()) finish();
}

void Fanout::finish() {
  if (finished_) return;
  finished_ = true;
  hard_deadline_.cancel();
  timer_.cancel();
  finish_ns_ = now_ns();
  probe_.end();
  for (auto& r : readers_) r->stop();
  io_.stop();
}

int Fanout::run() {
  path_ = stream_path(o_, sse_ ? "sse-fanout" : "lp-fanout");
  std::string offset = create_stream(o_, path_);
  if (offset.empty()) offset = "now";
  auto n = static_cast<size_t>(o_.readers);
  uint64_t expected = static_cast<uint64_t>(o_.rate * o_.duration_s) + 64;
  state_.resize(n);
  counted_parked_.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    state_[i].seen.assign(expected / 64 + 1, 0);
    readers_.push_back(std::make_unique<LiveReader>(io_, o_, *this, path_, offset, sse_));
    readers_.back()->tag = i;
  }
  // Connect at most 256 readers at a time; each parked reader starts the next.
  size_t first = std::min<size_t>(n, 256);
  for (; started_ < first; ++started_) readers_[started_]->start();
  int64_t setup_start = now_ns();
  // A server that cannot park every reader in a minute fails the case rather than
  // hanging it (run.sh's per-case timeout would lose the message).
  timer_.expires_after(std::chrono::seconds(60));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && parked_ < readers_.size()) {
      die("fan-out setup: only " + std::to_string(parked_) + " of " +
          std::to_string(readers_.size()) + " readers parked within 60 s");
    }
  });
  io_.run();
  if (!finished_) die("fan-out ended early");

  uint64_t missing = 0;
  uint64_t duplicates = 0;
  uint64_t out_of_order = 0;
  uint64_t incomplete = 0;
  // Cut short by the hard deadline, the writer may have had one append in flight that
  // the server applied and delivered: it counts as sent.
  for (const auto& s : state_) {
    if (s.max_seq >= 0 && static_cast<uint64_t>(s.max_seq) + 1 > sent_)
      sent_ = static_cast<uint64_t>(s.max_seq) + 1;
  }
  for (const auto& s : state_) {
    missing += sent_ - s.distinct;
    duplicates += s.duplicates;
    out_of_order += s.out_of_order;
    if (!s.done && s.max_seq < last_seq_) ++incomplete;
  }
  double send_s = static_cast<double>(send_end_ns_ - send_start_ns_) / 1e9;
  double deliver_s = static_cast<double>(finish_ns_ - send_start_ns_) / 1e9;
  Report r;
  r.str("scenario", sse_ ? "sse-fanout" : "longpoll-fanout");
  r.str("label", o_.label);
  r.integer("readers", o_.readers);
  r.num("rate", o_.rate);
  r.integer("body_bytes", o_.body_bytes);
  r.num("setup_s", static_cast<double>(send_start_ns_ - setup_start) / 1e9);
  r.integer("messages_sent", static_cast<int64_t>(sent_));
  r.num("send_rate", send_s > 0 ? static_cast<double>(sent_) / send_s : 0);
  r.integer("deliveries", static_cast<int64_t>(deliveries_));
  r.num("deliveries_per_s", deliver_s > 0 ? static_cast<double>(deliveries_) / deliver_s : 0);
  r.integer("missing", static_cast<int64_t>(missing));
  r.integer("duplicates", static_cast<int64_t>(duplicates));
  r.integer("out_of_order", static_cast<int64_t>(out_of_order));
  r.integer("readers_incomplete", static_cast<int64_t>(incomplete));
  r.str("timed_out", timed_out_ ? "yes: stopped at duration + grace + 30 s" : "no");
  r.integer("bad_lines", static_cast<int64_t>(bad_lines_));
  r.integer("reconnects", static_cast<int64_t>(reconnects_));
  r.latency_us("latency", latency_);
  probe_.report(r, static_cast<double>(deliveries_), "server_cpu_us_per_delivery");
  emit(o_, r);
  return 0;
}

}  // namespace

int run_fanout(const Options& o, bool sse) {
  if (o.rate <= 0) die("--rate must be positive for fan-out scenarios");
  Fanout f(o, sse);
  return f.run();
}

}  // namespace bench
