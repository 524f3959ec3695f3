// ds-floor-fanout: what this machine itself costs for SSE fan-out's essential work, so
// docs/benchmarks.md can report dstreamd's CPU per delivery as a multiple of it.
//
//   ds-floor-fanout --readers 1000 --rate 50 --body-bytes 100 --duration 10 [--json]
//
// Opens N TCP loopback connections (127.0.0.1, like the load generator's readers) from a
// reader process to this one. Its writer thread, at `rate` events per second, does one
// non-blocking write() of body-bytes to each of the N accepted sockets per event: no HTTP, no
// framing, no buffering of a reader that is behind (a write that would block is counted and
// dropped). The reader process drains the other ends with epoll, as ds-loadgen's readers would.
// The floor is the writer thread's CPU time (CLOCK_THREAD_CPUTIME_ID, which includes the
// loopback receive path that the kernel runs in the sender's context) divided by the writes;
// the reader's CPU is reported apart, and so is the delivery latency (receipt minus the event's
// send time, carried in the first 8 bytes of each message; CLOCK_MONOTONIC).
// Exit status: 0, or 2 on a setup error (socket, connect, epoll).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>
#include <string_view>
#include <type_traits>
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
  int client = -1;       // the reader's end
  uint32_t partial = 0;  // bytes of the current message already read
  char head[8]{};        // the current message's first 8 bytes (its send time)
};

int64_t process_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct ReaderResult {
  uint64_t received = 0;  // whole messages
  int64_t cpu_ns = 0;     // the reader process's CPU while the writer wrote
  bench::Histogram latency;
};
static_assert(std::is_trivially_copyable_v<ReaderResult>);

// The reader process: connects n clients to addr, signals ready on `out`, drains them with
// epoll until the writer (on `in`) says how many messages it wrote and they have all come or
// grace_s has passed, then sends a ReaderResult on `out`.
void run_reader(const sockaddr_in& addr, size_t n, size_t body, double grace_s, int in, int out) {
  std::vector<Conn> conns(n);
  int ep = epoll_create1(0);
  if (ep < 0) fail("epoll_create1");
  for (size_t i = 0; i < n; ++i) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0) fail("socket (reader " + std::to_string(i) + ")");
    if (connect(c, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) fail("connect");
    set_nonblocking(c);
    conns[i].client = c;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0) fail("epoll_ctl");
  }
  epoll_event pev{};
  pev.events = EPOLLIN;
  pev.data.u64 = UINT64_MAX;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, in, &pev) < 0) fail("epoll_ctl");
  ReaderResult rr{};
  int64_t cpu0 = process_cpu_ns();
  if (write(out, "r", 1) != 1) fail("write to the writer");
  std::vector<epoll_event> events(1024);
  std::vector<char> buf(64 * 1024);
  uint64_t target = UINT64_MAX;
  int64_t deadline = INT64_MAX;
  while (rr.received < target && bench::now_ns() < deadline) {
    int k = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
    int64_t now = bench::now_ns();
    for (int e = 0; e < k; ++e) {
      uint64_t idx = events[static_cast<size_t>(e)].data.u64;
      if (idx == UINT64_MAX) {
        if (read(in, &target, sizeof target) != sizeof target) fail("read from the writer");
        deadline = now + static_cast<int64_t>(grace_s * 1e9);
        continue;
      }
      Conn& c = conns[idx];
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
            rr.latency.record(now - sent);
            ++rr.received;
            c.partial = 0;
          }
        }
        if (static_cast<size_t>(got) < buf.size()) break;
      }
    }
  }
  rr.cpu_ns = process_cpu_ns() - cpu0;
  const auto* p = reinterpret_cast<const char*>(&rr);
  for (size_t sent = 0; sent < sizeof rr;) {
    ssize_t w = write(out, p + sent, sizeof rr - sent);
    if (w <= 0) fail("write to the writer");
    sent += static_cast<size_t>(w);
  }
}

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

  // A reader process connects N clients to this process and drains them; this process
  // accepts the N server sides and writes. Two processes, like a server and its clients, each
  // with N descriptors (one process with 2N would pass a 20k descriptor limit at 10k readers).
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0) fail("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof addr;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) fail("bind");
  if (listen(lfd, 4096) < 0) fail("listen");
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen) < 0) fail("getsockname");
  int to_reader[2];
  int from_reader[2];
  if (pipe(to_reader) < 0 || pipe(from_reader) < 0) fail("pipe");
  const auto body = static_cast<size_t>(body_bytes);
  pid_t child = fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    close(lfd);
    close(to_reader[1]);
    close(from_reader[0]);
    run_reader(addr, static_cast<size_t>(readers), body, grace_s, to_reader[0], from_reader[1]);
    _exit(0);
  }
  close(to_reader[0]);
  close(from_reader[1]);
  std::vector<int> socks;
  socks.reserve(static_cast<size_t>(readers));
  const int one = 1;
  for (int i = 0; i < readers; ++i) {
    int s = accept(lfd, nullptr, nullptr);
    if (s < 0) fail("accept");
    // As a server would: Nagle off, so each event's write goes out at once.
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nonblocking(s);
    socks.push_back(s);
  }
  close(lfd);
  char ready = 0;
  if (read(from_reader[0], &ready, 1) != 1) fail("the reader process did not start");

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
      timespec ts{static_cast<time_t>(wait / 1'000'000'000),
                  static_cast<long>(wait % 1'000'000'000)};
      nanosleep(&ts, nullptr);
    }
    int64_t t = bench::now_ns();
    std::memcpy(msg.data(), &t, 8);
    for (int s : socks) {
      ssize_t n = write(s, msg.data(), msg.size());
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
  // Tell the reader how many to expect; it drains them (or gives up after the grace period)
  // and sends back what it saw.
  if (write(to_reader[1], &writes, sizeof writes) != sizeof writes) fail("write to the reader");
  ReaderResult rr{};
  auto* p = reinterpret_cast<char*>(&rr);
  for (size_t got = 0; got < sizeof rr;) {
    ssize_t n = read(from_reader[0], p + got, sizeof rr - got);
    if (n <= 0) fail("read from the reader");
    got += static_cast<size_t>(n);
  }
  waitpid(child, nullptr, 0);
  for (int s : socks) close(s);
  uint64_t received = rr.received;
  int64_t reader_cpu_ns = rr.cpu_ns;
  const bench::Histogram& latency = rr.latency;

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
  r.integer("deliveries", static_cast<int64_t>(received));
  r.num("writer_cpu_us", static_cast<double>(writer_cpu_ns) / 1e3);
  r.num("cpu_us_per_write",
        writes > 0 ? static_cast<double>(writer_cpu_ns) / 1e3 / static_cast<double>(writes) : 0);
  r.num("writer_cpu_pct", send_s > 0 ? static_cast<double>(writer_cpu_ns) / 1e7 / send_s : 0);
  r.num("reader_cpu_pct", send_s > 0 ? static_cast<double>(reader_cpu_ns) / 1e7 / send_s : 0);
  r.latency_us("latency", latency);
  std::string out = json ? r.json() : r.text();
  std::cout << out << std::flush;
  if (!out.empty() && out.back() != '\n') std::cout << std::endl;
  return 0;
}
