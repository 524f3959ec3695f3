#pragma once
// A small, hand-written metrics registry with Prometheus text exposition
// (format 0.0.4). No Asio and no global lock on the hot path: counters,
// gauges and histogram buckets are atomics; the registry's mutex is taken only
// to add a collector (at start-up) and to render /metrics.

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"

namespace ds::metrics {

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void inc(int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  void dec(int64_t n = 1) { v_.fetch_sub(n, std::memory_order_relaxed); }
  void set(int64_t n) { v_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

/// Fixed upper bounds (ascending); observations above the last one land in +Inf.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  Histogram(std::initializer_list<double> bounds) : Histogram(std::vector<double>(bounds)) {}

  void observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  ///< one per bound, then +Inf (== count)
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

/// Bucket bounds for request latencies in seconds (0.5 ms .. 10 s).
std::vector<double> latency_buckets();
/// Powers of two from 1 to `max`.
std::vector<double> exponential_buckets(double start, double factor, int count);

using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

/// Builds one exposition. Each family is announced once with family(), then
/// its samples follow.
class Exposition {
 public:
  enum class Type { counter, gauge, histogram };
  void family(std::string_view name, std::string_view help, Type type);
  void sample(std::string_view name, const Labels& labels, double value);
  void sample(std::string_view name, const Labels& labels, uint64_t value);
  void sample(std::string_view name, const Labels& labels, int64_t value);
  /// `name`_bucket / _sum / _count samples of one (labelled) histogram.
  void histogram(std::string_view name, const Labels& labels, const Histogram& h);

  /// Shorthands for a family with one unlabelled sample.
  void counter(std::string_view name, std::string_view help, uint64_t value);
  void gauge(std::string_view name, std::string_view help, int64_t value);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void labels(const Labels& labels, std::string_view extra_name = {},
              std::string_view extra_value = {});
  std::string out_;
};

/// Prometheus number formatting: integers without exponent, +Inf/-Inf/NaN.
std::string format_value(double v);
/// Escapes `\`, `"` and newline in a label value.
std::string escape_label_value(std::string_view v);
/// Escapes `\` and newline in HELP text.
std::string escape_help(std::string_view v);

class Registry {
 public:
  using Collector = std::function<void(Exposition&)>;
  /// Collectors run in the order added, on the thread that renders.
  void add(Collector c);
  std::string render() const;

 private:
  mutable Mutex mu_;
  std::vector<Collector> collectors_ DS_GUARDED_BY(mu_);
};

}  // namespace ds::metrics
