#include "metrics.h"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

namespace bench {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Values below 2^(kSubBits+1) have a bucket each; above, each power of two
// [2^k, 2^(k+1)) is split into 2^kSubBits equal buckets.
size_t Histogram::index(uint64_t v) {
  if (v < (uint64_t{1} << (kSubBits + 1))) return static_cast<size_t>(v);
  int k = 63 - std::countl_zero(v);
  int shift = k - kSubBits;
  return static_cast<size_t>(shift) * (size_t{1} << kSubBits) + static_cast<size_t>(v >> shift);
}

uint64_t Histogram::upper(size_t i) {
  if (i < (size_t{1} << (kSubBits + 1))) return i;
  size_t shift = i / (size_t{1} << kSubBits) - 1;
  uint64_t mantissa = i % (size_t{1} << kSubBits) + (uint64_t{1} << kSubBits);
  return ((mantissa + 1) << shift) - 1;
}

void Histogram::record(int64_t v) {
  if (v < 0) v = 0;
  size_t i = index(static_cast<uint64_t>(v));
  if (i >= kBuckets) i = kBuckets - 1;
  ++buckets_[i];
  ++count_;
  if (v > max_) max_ = v;
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  if (other.max_ > max_) max_ = other.max_;
}

int64_t Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      auto u = static_cast<int64_t>(upper(i));
      return u < max_ ? u : max_;
    }
  }
  return max_;
}

ProcSample sample_process(int pid) {
  ProcSample s;
  if (pid <= 0) return s;
  std::string base = "/proc/" + std::to_string(pid);
  std::ifstream stat(base + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return s;
  // Fields after the ")" that closes the command name: state is field 3,
  // utime and stime are fields 14 and 15.
  auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  long long utime = 0;
  long long stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  long ticks = sysconf(_SC_CLK_TCK);
  s.cpu_us = (utime + stime) * 1'000'000 / (ticks > 0 ? ticks : 100);
  std::ifstream status(base + "/status");
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) {
      s.rss_kb = std::stoll(line.substr(6));
      break;
    }
  }
  s.ok = true;
  return s;
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out.append(buf);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

void Report::num(std::string_view key, double v) {
  if (!std::isfinite(v)) {
    raw(key, "null");
    return;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  fields_.emplace_back(std::string(key), buf);
}

void Report::integer(std::string_view key, int64_t v) {
  fields_.emplace_back(std::string(key), std::to_string(v));
}

void Report::str(std::string_view key, std::string_view v) {
  std::string j;
  append_json_string(j, v);
  fields_.emplace_back(std::string(key), std::move(j));
}

void Report::raw(std::string_view key, std::string_view json) {
  fields_.emplace_back(std::string(key), std::string(json));
}

void Report::latency_us(std::string_view prefix, const Histogram& h) {
  std::string p(prefix);
  auto us = [](int64_t ns) { return static_cast<double>(ns) / 1000.0; };
  num(p + "_p50_us", us(h.quantile(0.50)));
  num(p + "_p90_us", us(h.quantile(0.90)));
  num(p + "_p99_us", us(h.quantile(0.99)));
  num(p + "_max_us", us(h.max()));
  integer(p + "_samples", static_cast<int64_t>(h.count()));
}

std::string Report::json() const {
  std::string out = "{";
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, fields_[i].first);
    out.push_back(':');
    out.append(fields_[i].second);
  }
  out.push_back('}');
  return out;
}

std::string Report::text() const {
  std::string out;
  for (const auto& [k, v] : fields_) {
    out.append(k);
    out.append(": ");
    out.append(v);
    out.push_back('\n');
  }
  return out;
}

}  // namespace bench
