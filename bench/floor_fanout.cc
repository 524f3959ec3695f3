// ds-floor-fanout: what this machine itself costs for SSE fan-out's essential work, so
// docs/benchmarks.md can report dstreamd's CPU per delivery as a multiple of it.
//
//   ds-floor-fanout --readers 1000 --rate 50 --body-bytes 100 --duration 10 [--json]
//
// Opens N TCP loopback connections (127.0.0.1, like the load generator's readers). A writer
// thread, at `rate` events per second, does one non-blocking write() of body-bytes to each
// of the N server-side sockets per event: no HTTP, no framing, no buffering of a reader that
// is behind (a write that would block is counted and dropped). A reader thread drains the
// client sides with epoll, as ds-loadgen's readers would. The floor is the writer thread's CPU
// time (CLOCK_THREAD_CPUTIME_ID, which includes the loopback receive path that the kernel runs
// in the sender's context) divided by the deliveries; the reader's CPU is reported apart, and
// so is the delivery latency (receipt minus the event's send time, carried in each message).
// Exit status: 0, or 2 on a setup error (socket, connect, epoll).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "metrics.h"

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "ds-floor-fanout: " << what << ": " << std::strerror(errno) << std::endl;
  std::exit(2);
}

int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

template <typename T>
T number(std::string_view flag, std::string_view v) {
  T out{};
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || ptr != v.data() + v.size()) {
    std::cerr << "ds-floor-fanout: " << flag << ": not a number: " << v << std::endl;
    std::exit(64);
  }
  return out;
}

void set_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) fail("fcntl");
}

struct Conn {
  int client = -1;       // the reader's end (drained by the reader thread)
  int server = -1;       // the writer's end
  uint32_t partial = 0;  // bytes of the current message already read
  char head[8]{};        // the current message's first 8 bytes (its send time)
};

}  // namespace

int main(int argc, char** argv) {
  int readers = 1000;
  double rate = 50;
  int body_bytes = 100;
  double duration_s = 10;
  double grace_s = 2;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--json") {
      json = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::cout << "usage: ds-floor-fanout --readers N --rate R --body-bytes B --duration S "
                   "[--grace S] [--json]\n";
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "ds-floor-fanout: " << a << " needs a value" << std::endl;
      return 64;
    }
    std::string_view v = argv[++i];
    if (a == "--readers")
      readers = number<int>(a, v);
    else if (a == "--rate")
      rate = number<double>(a, v);
    else if (a == "--body-bytes")
      body_bytes = number<int>(a, v);
    else if (a == "--duration")
      duration_s = number<double>(a, v);
    else if (a == "--grace")
      grace_s = number<double>(a, v);
    else {
      std::cerr << "ds-floor-fanout: unknown option " << a << std::endl;
      return 64;
    }
  }
  if (readers <= 0 || rate <= 0 || body_bytes < 8 || duration_s <= 0) {
    std::cerr << "ds-floor-fanout: needs --readers > 0, --rate > 0, --body-bytes >= 8" << std::endl;
    return 64;
  }
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  // Listen, connect N clients, accept N server sides.
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0) fail("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof addr;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) fail("bind");
  if (listen(lfd, 4096) < 0) fail("listen");
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen) < 0) fail("getsockname");
  std::vector<Conn> conns(static_cast<size_t>(readers));
  const int one = 1;
  for (size_t i = 0; i < conns.size();) {
    size_t batch_end = std::min(conns.size(), i + 1024);  // stay within the listen backlog
    for (size_t j = i; j < batch_end; ++j) {
      int c = socket(AF_INET, SOCK_STREAM, 0);
      if (c < 0) fail("socket (reader " + std::to_string(j) + ")");
      if (connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) fail("connect");
      conns[j].client = c;
    }
    for (size_t j = i; j < batch_end; ++j) {
      int s = accept(lfd, nullptr, nullptr);
      if (s < 0) fail("accept");
      // As a server would: Nagle off, so each event's write goes out at once.
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      set_nonblocking(s);
      set_nonblocking(conns[j].client);
      conns[j].server = s;
    }
    i = batch_end;
  }
  close(lfd);

  int ep = epoll_create1(0);
  if (ep < 0) fail("epoll_create1");
  for (size_t i = 0; i < conns.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].client, &ev) < 0) fail("epoll_ctl");
  }

  const auto body = static_cast<size_t>(body_bytes);
  std::atomic<bool> stop_reader{false};
  bench::Histogram latency;
  std::atomic<uint64_t> received{0};  // whole messages
  int64_t reader_cpu_ns = 0;
  std::thread reader([&] {
    int64_t cpu0 = thread_cpu_ns();
    std::vector<epoll_event> events(1024);
    std::vector<char> buf(64 * 1024);
    while (!stop_reader.load(std::memory_order_relaxed)) {
      int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
      int64_t now = bench::now_ns();
      for (int e = 0; e < n; ++e) {
        Conn& c = conns[events[static_cast<size_t>(e)].data.u64];
        for (;;) {
          ssize_t got = read(c.client, buf.data(), buf.size());
          if (got <= 0) break;
          // Split the bytes into fixed-size messages; each starts with its send time.
          for (size_t p = 0; p < static_cast<size_t>(got);) {
            size_t take = std::min(body - c.partial, static_cast<size_t>(got) - p);
            if (c.partial < 8) {
              size_t h = std::min<size_t>(8 - c.partial, take);
              std::memcpy(c.head + c.partial, buf.data() + p, h);
            }
            c.partial += static_cast<uint32_t>(take);
            p += take;
            if (c.partial == body) {
              int64_t sent = 0;
              std::memcpy(&sent, c.head, 8);
              latency.record(now - sent);
              received.fetch_add(1, std::memory_order_relaxed);
              c.partial = 0;
            }
          }
          if (static_cast<size_t>(got) < buf.size()) break;
        }
      }
    }
    reader_cpu_ns = thread_cpu_ns() - cpu0;
  });

  // The writer (this thread): event k is due at start + k / rate.
  std::string msg(body, 'x');
  msg.back() = '\n';
  uint64_t writes = 0;
  uint64_t would_block = 0;
  uint64_t short_writes = 0;
  uint64_t events_sent = 0;
  int64_t cpu0 = thread_cpu_ns();
  int64_t start = bench::now_ns();
  int64_t end = start + static_cast<int64_t>(duration_s * 1e9);
  for (;;) {
    int64_t due = start + static_cast<int64_t>(static_cast<double>(events_sent) / rate * 1e9);
    if (due >= end) break;
    int64_t wait = due - bench::now_ns();
    if (wait > 0) {
      timespec ts{static_cast<time_t>(wait / 1'000'000'000), static_cast<long>(wait % 1'000'000'000)};
      nanosleep(&ts, nullptr);
    }
    int64_t t = bench::now_ns();
    std::memcpy(msg.data(), &t, 8);
    for (const Conn& c : conns) {
      ssize_t n = write(c.server, msg.data(), msg.size());
      if (n == static_cast<ssize_t>(msg.size())) {
        ++writes;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ++would_block;
      } else {
        ++short_writes;  // a reader's stream is now misaligned; counted, never expected
      }
    }
    ++events_sent;
  }
  int64_t writer_cpu_ns = thread_cpu_ns() - cpu0;
  int64_t send_end = bench::now_ns();
  // Let the reader drain what is in flight.
  int64_t grace_end = send_end + static_cast<int64_t>(grace_s * 1e9);
  uint64_t expected = writes;
  while (bench::now_ns() < grace_end) {
    if (received.load(std::memory_order_relaxed) >= expected) break;
    timespec ts{0, 10'000'000};
    nanosleep(&ts, nullptr);
  }
  stop_reader = true;
  reader.join();
  for (const Conn& c : conns) {
    close(c.client);
    close(c.server);
  }
  close(ep);

  double send_s = static_cast<double>(send_end - start) / 1e9;
  bench::Report r;
  r.str("scenario", "fanout-floor");
  r.integer("readers", readers);
  r.num("rate", rate);
  r.integer("body_bytes", body_bytes);
  r.num("duration_s", duration_s);
  r.integer("events", static_cast<int64_t>(events_sent));
  r.num("send_rate", send_s > 0 ? static_cast<double>(events_sent) / send_s : 0);
  r.integer("writes", static_cast<int64_t>(writes));
  r.integer("would_block", static_cast<int64_t>(would_block));
  r.integer("short_writes", static_cast<int64_t>(short_writes));
  r.integer("deliveries", static_cast<int64_t>(received.load()));
  r.num("writer_cpu_us", static_cast<double>(writer_cpu_ns) / 1e3);
  r.num("cpu_us_per_write", writes > 0 ? static_cast<double>(writer_cpu_ns) / 1e3 / static_cast<double>(writes) : 0);
  r.num("writer_cpu_pct", send_s > 0 ? static_cast<double>(writer_cpu_ns) / 1e7 / send_s : 0);
  r.num("reader_cpu_pct", send_s > 0 ? static_cast<double>(reader_cpu_ns) / 1e7 / send_s : 0);
  r.latency_us("latency", latency);
  std::string out = json ? r.json() : r.text();
  std::cout << out << std::flush;
  if (!out.empty() && out.back() != '\n') std::cout << std::endl;
  return 0;
}
