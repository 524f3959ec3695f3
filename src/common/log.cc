#include "common/log.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>

#include "common/json_string.h"

namespace ds::log {
namespace {

std::atomic<Level> g_level{Level::info};
std::atomic<Format> g_format{Format::text};
std::mutex g_mu;
/// write()'s per-thread line buffer keeps at most this much between lines.
constexpr size_t kKeptLineBytes = 4096;

std::string_view level_name(Level l) {
  switch (l) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    default:
      return "error";
  }
}

bool needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '"' || c == '=' || c == '\\') return true;
  }
  return false;
}

}  // namespace

void append_utc_timestamp(std::string& out, int64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  out += buf;
}

Field::Field(std::string_view k, int64_t v) : key(k), quoted(false) {
  const auto [end, ec] = std::to_chars(number_, number_ + sizeof number_, v);
  number_len_ = static_cast<unsigned char>(end - number_);
}

Field::Field(std::string_view k, uint64_t v) : key(k), quoted(false) {
  const auto [end, ec] = std::to_chars(number_, number_ + sizeof number_, v);
  number_len_ = static_cast<unsigned char>(end - number_);
}

Field::Field(std::string_view k, double v) : key(k), quoted(false) {
  const int n = std::snprintf(number_, sizeof number_, "%.3f", v);
  number_len_ = static_cast<unsigned char>(std::clamp(n, 0, static_cast<int>(sizeof number_) - 1));
  if (number_len_ == 0) text_ = "0";  // snprintf failed: never an empty bare value
}

void configure(Format format, Level level) {
  g_format = format;
  g_level = level;
}

bool enabled(Level level) { return level >= g_level.load(std::memory_order_relaxed); }

std::optional<Level> parse_level(std::string_view s) {
  if (s == "debug") return Level::debug;
  if (s == "info") return Level::info;
  if (s == "warn" || s == "warning") return Level::warn;
  if (s == "error") return Level::error;
  return std::nullopt;
}

std::optional<Format> parse_format(std::string_view s) {
  if (s == "text") return Format::text;
  if (s == "json") return Format::json;
  return std::nullopt;
}

std::string format_line(Format format, Level level, std::string_view msg,
                        std::initializer_list<Field> fields, int64_t unix_ms) {
  std::string out;
  out.reserve(160);
  append_line(out, format, level, msg, fields, unix_ms);
  return out;
}

void append_line(std::string& out, Format format, Level level, std::string_view msg,
                 std::initializer_list<Field> fields, int64_t unix_ms) {
  if (format == Format::json) {
    out += "{\"ts\":\"";
    append_utc_timestamp(out, unix_ms);
    out += "\",\"level\":\"";
    out += level_name(level);
    out += "\",\"msg\":";
    append_json_string(out, msg);
    for (const auto& f : fields) {
      out.push_back(',');
      append_json_string(out, f.key);
      out.push_back(':');
      if (f.quoted) {
        append_json_string(out, f.value());
      } else {
        out += f.value();
      }
    }
    out.push_back('}');
  } else {
    append_utc_timestamp(out, unix_ms);
    out.push_back(' ');
    out += level_name(level);
    out.push_back(' ');
    out += msg;
    for (const auto& f : fields) {
      out.push_back(' ');
      out += f.key;
      out.push_back('=');
      if (f.quoted && needs_quotes(f.value())) {
        append_json_string(out, f.value());
      } else {
        out += f.value();
      }
    }
  }
}

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  // One buffer per thread, reused line after line: a line allocates only
  // while the buffer grows to the longest line the thread has written.
  thread_local std::string line;
  line.clear();
  append_line(line, g_format.load(std::memory_order_relaxed), level, msg, fields, now);
  line.push_back('\n');
  {
    std::lock_guard lock(g_mu);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  }
  // A rare very long line (an error's message) does not stay pinned.
  if (line.capacity() > kKeptLineBytes) std::string().swap(line);
}

bool sane_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void new_request_id(std::string& out) {
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   (static_cast<uint64_t>(std::random_device{}()) << 32)};
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t v = rng();
  out.assign(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kHex[v & 15];
}

std::string new_request_id() {
  std::string id;
  new_request_id(id);
  return id;
}

}  // namespace ds::log
