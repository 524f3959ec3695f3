#include "emulator.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>

#ifndef DS_SOURCE_DIR
#error "DS_SOURCE_DIR must be defined"
#endif

namespace ds::s2::test {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace

std::optional<HttpAnswer> http_exchange(int port, const std::string& method,
                                        const std::string& path, const std::string& body,
                                        const std::vector<std::string>& headers) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return std::nullopt;
  }
  std::string req = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  if (!body.empty()) {
    req += "Content-Type: application/json\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  for (size_t sent = 0; sent < req.size();) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return std::nullopt;
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[8192];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) {
      ::close(fd);
      return std::nullopt;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t head_end = response.find("\r\n\r\n");
  if (response.compare(0, 5, "HTTP/") != 0 || head_end == std::string::npos) return std::nullopt;
  HttpAnswer answer;
  answer.status = std::atoi(response.c_str() + response.find(' ') + 1);
  answer.body = response.substr(head_end + 4);
  return answer;
}

bool Emulator::start(const std::vector<std::string>& args, std::string* why) {
  std::vector<std::string> argv = {std::string(DS_SOURCE_DIR) + "/scripts/s2emu", "--port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  return start_command(argv, "S2EMU_URL", why);
}

bool Emulator::start_command(const std::vector<std::string>& argv_in, const std::string& marker,
                             std::string* why) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    *why = "pipe failed";
    return false;
  }
  std::vector<std::string> argv_s = argv_in;
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) {
    *why = "fork failed";
    return false;
  }
  if (pid_ == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  auto deadline = Clock::now() + std::chrono::seconds(15);
  std::string text;
  char buf[512];
  bool found = false;
  while (!found) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) break;
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    size_t at = text.find(marker + "=");
    if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
      size_t from = at + marker.size() + 1;
      url_ = text.substr(from, text.find('\n', at) - from);
      found = true;
    }
  }
  ::close(out[0]);
  if (!found) {
    *why = argv_in[0] + " printed no " + marker + "= line within 15 s; output: " + text;
    stop();
    return false;
  }
  port_ = std::atoi(url_.c_str() + url_.rfind(':') + 1);
  return true;
}

void Emulator::stop() {
  if (pid_ <= 0) return;
  int pid = pid_;
  pid_ = -1;
  ::kill(pid, SIGTERM);
  // Reap on a helper thread so the wait is bounded without polling.
  auto reaped = std::async(std::launch::async, [pid] {
    int status = 0;
    ::waitpid(pid, &status, 0);
  });
  if (reaped.wait_for(std::chrono::seconds(5)) != std::future_status::ready) ::kill(pid, SIGKILL);
  reaped.wait();
}

bool Emulator::set_faults(const std::string& json) {
  auto a = http_exchange(port_, "POST", "/_emu/faults", json);
  return a && a->status == 200;
}

bool Emulator::reset_faults() {
  auto a = http_exchange(port_, "POST", "/_emu/faults/reset");
  auto b = http_exchange(port_, "POST", "/_emu/reset-stats");
  return a && a->status == 200 && b && b->status == 200;
}

std::string Emulator::stats() {
  auto a = http_exchange(port_, "GET", "/_emu/stats");
  return a ? a->body : "";
}

std::optional<uint64_t> json_u64(const std::string& json, const std::vector<std::string>& path) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::element e;
  if (parser.parse(text).get(e)) return std::nullopt;
  for (const auto& key : path) {
    if (e[key].get(e)) return std::nullopt;
  }
  uint64_t v = 0;
  if (e.get_uint64().get(v)) return std::nullopt;
  return v;
}

}  // namespace ds::s2::test
