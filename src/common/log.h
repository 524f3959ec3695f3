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
/// they need it); numbers and booleans are written bare.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
  Field(std::string_view k, const char* v) : key(k), value(v), quoted(true) {}
  Field(std::string_view k, int64_t v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, uint64_t v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, int v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, unsigned v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, double v);
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  std::string_view key;
  std::string value;
  bool quoted;
};

/// The line, without its trailing newline (exposed for tests).
std::string format_line(Format format, Level level, std::string_view msg,
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

}  // namespace ds::log
