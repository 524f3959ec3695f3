#pragma once
// Runs the S2 emulator (scripts/s2emu, see s2emu/README.md) as a child
// process for the S2 client tests, and talks to its control endpoints with a
// tiny blocking HTTP/1.0 client (no Asio in the tests).

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace ds::s2::test {

struct HttpAnswer {
  int status = 0;
  std::string body;
};

/// One blocking HTTP/1.0 exchange with 127.0.0.1:port (bounded by 10 s).
std::optional<HttpAnswer> http_exchange(int port, const std::string& method,
                                        const std::string& path, const std::string& body = "",
                                        const std::vector<std::string>& headers = {});

class Emulator {
 public:
  Emulator() = default;
  ~Emulator() { stop(); }
  Emulator(const Emulator&) = delete;
  Emulator& operator=(const Emulator&) = delete;

  /// Starts scripts/s2emu with `args` (after `--port 0`) and waits, bounded,
  /// for its S2EMU_URL line. False with *why on failure.
  bool start(const std::vector<std::string>& args, std::string* why);
  /// Starts any program that prints `<marker>=<url>` on stdout once ready.
  bool start_command(const std::vector<std::string>& argv, const std::string& marker,
                     std::string* why);
  /// SIGTERM, then SIGKILL if it has not exited within 5 s.
  void stop();

  const std::string& url() const { return url_; }
  int port() const { return port_; }

  /// POST /_emu/faults with a partial JSON object; true on 200.
  bool set_faults(const std::string& json);
  bool reset_faults();
  /// GET /_emu/stats: the raw JSON.
  std::string stats();

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string url_;
};

/// The whole of `json` parsed for one unsigned value at a path of object
/// keys, e.g. {"requests","append"}. nullopt if absent.
std::optional<uint64_t> json_u64(const std::string& json, const std::vector<std::string>& path);

}  // namespace ds::s2::test
