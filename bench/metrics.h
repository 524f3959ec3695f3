// Measurement helpers for the load generator: a monotonic clock, a fixed-size
// log-linear latency histogram, /proc sampling of the server process, and the
// result record printed as one JSON line or as text.
//
// Thread safety: none; each object is used by one thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bench {

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes on one machine).
int64_t now_ns();

/// Log-linear histogram of non-negative integers (32 sub-buckets per power of
/// two: about 3 % resolution). Fixed memory, no allocation when recording.
class Histogram {
 public:
  void record(int64_t v);
  void merge(const Histogram& other);
  uint64_t count() const { return count_; }
  int64_t max() const { return max_; }
  /// The value at quantile q (0..1), as the upper edge of its bucket, capped at max().
  int64_t quantile(double q) const;

 private:
  static constexpr int kSubBits = 5;
  static constexpr size_t kBuckets = 2048;
  static size_t index(uint64_t v);
  static uint64_t upper(size_t index);
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  int64_t max_ = 0;
};

/// CPU time (utime+stime, µs) and resident set size of a process.
struct ProcSample {
  bool ok = false;
  int64_t cpu_us = 0;
  int64_t rss_kb = 0;
};
ProcSample sample_process(int pid);

/// An ordered set of result fields, printed as JSON or as "key: value" lines.
class Report {
 public:
  void num(std::string_view key, double v);
  void integer(std::string_view key, int64_t v);
  void str(std::string_view key, std::string_view v);
  /// A field whose value is already JSON text (an object, say).
  void raw(std::string_view key, std::string_view json);
  void latency_us(std::string_view prefix, const Histogram& h_ns);
  std::string json() const;
  std::string text() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;  // key, JSON value
};

/// Appends s as a JSON string literal.
void append_json_string(std::string& out, std::string_view s);

}  // namespace bench
