// The metrics registry and its Prometheus text exposition (format 0.0.4).

#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cctype>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "metrics/http_metrics.h"

namespace ds::metrics {
namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines(text))
    if (l == line) return true;
  return false;
}

TEST(MetricsFormat, Values) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(42), "42");
  EXPECT_EQ(format_value(-3), "-3");
  EXPECT_EQ(format_value(0.5), "0.5");
  EXPECT_EQ(format_value(0.0005), "0.0005");
  EXPECT_EQ(format_value(2.5), "2.5");
  EXPECT_EQ(format_value(1e-9), "1e-09");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsFormat, Escaping) {
  EXPECT_EQ(escape_label_value(R"(a"b\c)"
                               "\n"),
            R"(a\"b\\c\n)");
  EXPECT_EQ(escape_help("x\\y\nz\""), "x\\\\y\\nz\"");  // quotes stay in HELP
}

TEST(MetricsExposition, CounterAndGauge) {
  Counter c;
  c.inc();
  c.inc(4);
  Gauge g;
  g.inc(3);
  g.dec();
  Exposition e;
  e.counter("dstreamd_things_total", "Things done", c.value());
  e.gauge("dstreamd_open_things", "Things open", g.value());
  EXPECT_EQ(e.text(),
            "# HELP dstreamd_things_total Things done\n"
            "# TYPE dstreamd_things_total counter\n"
            "dstreamd_things_total 5\n"
            "# HELP dstreamd_open_things Things open\n"
            "# TYPE dstreamd_open_things gauge\n"
            "dstreamd_open_things 2\n");
}

TEST(MetricsExposition, LabelledSamples) {
  Exposition e;
  e.family("dstreamd_x_total", "X", Exposition::Type::counter);
  e.sample("dstreamd_x_total", {{"method", "GET"}, {"path", "a\"b"}}, uint64_t{7});
  e.sample("dstreamd_x_total", {}, 1.25);
  EXPECT_EQ(e.text(),
            "# HELP dstreamd_x_total X\n"
            "# TYPE dstreamd_x_total counter\n"
            "dstreamd_x_total{method=\"GET\",path=\"a\\\"b\"} 7\n"
            "dstreamd_x_total 1.25\n");
}

TEST(MetricsExposition, HistogramBucketsAreCumulative) {
  Histogram h{0.25, 1, 0.5};  // sorted on construction
  ASSERT_EQ(h.bounds(), (std::vector<double>{0.25, 0.5, 1}));
  h.observe(0.125);
  h.observe(0.25);  // le: a value equal to a bound is in that bucket
  h.observe(0.75);
  h.observe(30);
  Exposition e;
  e.family("dstreamd_d_seconds", "D", Exposition::Type::histogram);
  e.histogram("dstreamd_d_seconds", {{"method", "GET"}}, h);
  EXPECT_EQ(e.text(),
            "# HELP dstreamd_d_seconds D\n"
            "# TYPE dstreamd_d_seconds histogram\n"
            "dstreamd_d_seconds_bucket{method=\"GET\",le=\"0.25\"} 2\n"
            "dstreamd_d_seconds_bucket{method=\"GET\",le=\"0.5\"} 2\n"
            "dstreamd_d_seconds_bucket{method=\"GET\",le=\"1\"} 3\n"
            "dstreamd_d_seconds_bucket{method=\"GET\",le=\"+Inf\"} 4\n"
            "dstreamd_d_seconds_sum{method=\"GET\"} 31.125\n"
            "dstreamd_d_seconds_count{method=\"GET\"} 4\n");
  auto snap = h.snapshot();
  EXPECT_EQ(snap.count, 4u);
  EXPECT_EQ(snap.cumulative, (std::vector<uint64_t>{2, 2, 3, 4}));
}

TEST(MetricsExposition, ExponentialBuckets) {
  EXPECT_EQ(exponential_buckets(1, 2, 5), (std::vector<double>{1, 2, 4, 8, 16}));
}

TEST(MetricsRegistry, RendersCollectorsInOrder) {
  Registry r;
  Counter c;
  r.add([&c](Exposition& e) { e.counter("dstreamd_a_total", "A", c.value()); });
  r.add([](Exposition& e) { e.gauge("dstreamd_b", "B", -2); });
  c.inc(3);
  auto text = r.render();
  EXPECT_EQ(text,
            "# HELP dstreamd_a_total A\n# TYPE dstreamd_a_total counter\ndstreamd_a_total 3\n"
            "# HELP dstreamd_b B\n# TYPE dstreamd_b gauge\ndstreamd_b -2\n");
}

/// Every line is a comment or `name{labels} value`, and every sample's family
/// was announced by # TYPE before it, exactly once.
void expect_well_formed(const std::string& text) {
  std::vector<std::string> typed;
  for (const auto& l : lines(text)) {
    ASSERT_FALSE(l.empty());
    if (l.starts_with("# HELP ")) continue;
    if (l.starts_with("# TYPE ")) {
      auto name = l.substr(7, l.find(' ', 7) - 7);
      for (const auto& t : typed) EXPECT_NE(t, name) << "family typed twice: " << name;
      typed.push_back(name);
      continue;
    }
    auto end = l.find_first_of("{ ");
    ASSERT_NE(end, std::string::npos) << l;
    auto name = l.substr(0, end);
    for (char ch : name)
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') << l;
    bool known = false;
    for (const auto& t : typed)
      if (name == t || name == t + "_bucket" || name == t + "_sum" || name == t + "_count")
        known = true;
    EXPECT_TRUE(known) << "sample before its # TYPE: " << l;
    auto value = l.substr(l.rfind(' ') + 1);
    EXPECT_FALSE(value.empty()) << l;
  }
  EXPECT_TRUE(text.empty() || text.back() == '\n');
}

TEST(HttpMetrics, Families) {
  HttpMetrics m;
  m.record(HttpMetrics::Method::get, HttpMetrics::Mode::catchup, 200, 0.002);
  m.record(HttpMetrics::Method::get, HttpMetrics::Mode::catchup, 200, 0.003);
  m.record(HttpMetrics::Method::post, HttpMetrics::Mode::none, 204, 0.004);
  m.record(HttpMetrics::Method::get, HttpMetrics::Mode::sse, 200, 61.0);  // live: no latency
  m.record(HttpMetrics::Method::other, HttpMetrics::Mode::none, 405, 0.001);
  m.received_bytes.inc(10);
  m.sent_bytes.inc(20);
  m.open_sse.inc();
  m.parked_long_polls.inc(2);
  Exposition e;
  m.collect(e);
  const auto& t = e.text();
  expect_well_formed(t);
  EXPECT_TRUE(has_line(t, "# TYPE dstreamd_http_requests_total counter"));
  EXPECT_TRUE(
      has_line(t, R"(dstreamd_http_requests_total{method="GET",mode="catchup",code="200"} 2)"));
  EXPECT_TRUE(
      has_line(t, R"(dstreamd_http_requests_total{method="POST",mode="none",code="204"} 1)"));
  EXPECT_TRUE(has_line(t, R"(dstreamd_http_requests_total{method="GET",mode="sse",code="200"} 1)"));
  EXPECT_TRUE(
      has_line(t, R"(dstreamd_http_requests_total{method="other",mode="none",code="405"} 1)"));
  EXPECT_TRUE(has_line(t, "# TYPE dstreamd_http_request_duration_seconds histogram"));
  EXPECT_TRUE(has_line(t, R"(dstreamd_http_request_duration_seconds_count{method="GET"} 2)"));
  EXPECT_TRUE(
      has_line(t, R"(dstreamd_http_request_duration_seconds_bucket{method="GET",le="0.0025"} 1)"));
  EXPECT_TRUE(
      has_line(t, R"(dstreamd_http_request_duration_seconds_bucket{method="POST",le="+Inf"} 1)"));
  EXPECT_TRUE(has_line(t, "dstreamd_http_received_bytes_total 10"));
  EXPECT_TRUE(has_line(t, "dstreamd_http_sent_bytes_total 20"));
  EXPECT_TRUE(has_line(t, "dstreamd_http_open_sse_connections 1"));
  EXPECT_TRUE(has_line(t, "dstreamd_http_parked_long_polls 2"));
  EXPECT_EQ(HttpMetrics::method_from("DELETE"), HttpMetrics::Method::del);
  EXPECT_EQ(HttpMetrics::method_from("PATCH"), HttpMetrics::Method::other);
}

}  // namespace
}  // namespace ds::metrics
