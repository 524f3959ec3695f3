#pragma once
// Process-wide structured logging to stderr: one line per event, text
// (`2025-01-02T03:04:05.678Z info access id=... status=200`) or JSON
// (`{"ts":...,"level":"info","msg":"access","id":...}`). Each line is one
// write(2) under a mutex; no fsync. Never pass secrets (Authorization headers,
// token query values) as fields.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace ds::log {

enum class Level { debug, info, warn, error };
enum class Format { text, json };

void configure(Format format, Level level);
bool enabled(Level level);

std::optional<Level> parse_level(std::string_view s);
std::optional<Format> parse_format(std::string_view s);

/// One key/value of a log line. Strings are quoted in JSON (and in text when
/// they need it); numbers and booleans are written bare. A field refers to
/// its string (no copy: it lives for the call that logs it) and renders a
/// number in place, so building a line's fields allocates nothing.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), text_(v), quoted(true) {}
  Field(std::string_view k, const std::string& v) : key(k), text_(v), quoted(true) {}
  Field(std::string_view k, const char* v) : key(k), text_(v), quoted(true) {}
  Field(std::string_view k, int64_t v);
  Field(std::string_view k, uint64_t v);
  Field(std::string_view k, int v) : Field(k, static_cast<int64_t>(v)) {}
  Field(std::string_view k, unsigned v) : Field(k, static_cast<uint64_t>(v)) {}
  Field(std::string_view k, double v);
  Field(std::string_view k, bool v) : key(k), text_(v ? "true" : "false"), quoted(false) {}
  // The value may be in the field itself: a copy would point into the original.
  Field(const Field&) = delete;
  Field& operator=(const Field&) = delete;

  /// The value as written (a number's digits are in the field itself).
  std::string_view value() const {
    return number_len_ ? std::string_view(number_, number_len_) : text_;
  }

  std::string_view key;

 private:
  std::string_view text_;
  char number_[32];
  unsigned char number_len_ = 0;

 public:
  bool quoted;
};

/// The line, without its trailing newline (exposed for tests).
std::string format_line(Format format, Level level, std::string_view msg,
                        std::initializer_list<Field> fields, int64_t unix_ms);
/// The same, appended to `out` (write() reuses one buffer per thread).
void append_line(std::string& out, Format format, Level level, std::string_view msg,
                 std::initializer_list<Field> fields, int64_t unix_ms);

void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});
inline void debug(std::string_view msg, std::initializer_list<Field> f = {}) {
  write(Level::debug, msg, f);
}
inline void info(std::string_view msg, std::initializer_list<Field> f = {}) {
  write(Level::info, msg, f);
}
inline void warn(std::string_view msg, std::initializer_list<Field> f = {}) {
  write(Level::warn, msg, f);
}
inline void error(std::string_view msg, std::initializer_list<Field> f = {}) {
  write(Level::error, msg, f);
}

/// Appends `unix_ms` as RFC 3339 UTC with milliseconds: 2026-05-09T10:56:50.123Z.
void append_utc_timestamp(std::string& out, int64_t unix_ms);

/// An incoming X-Request-Id is used when it is 1..64 characters of [A-Za-z0-9._-].
bool sane_request_id(std::string_view id);
/// 16 random lower-case hex digits.
std::string new_request_id();
/// The same, into `out` (replacing what it held; its capacity is reused).
void new_request_id(std::string& out);

}  // namespace ds::log
