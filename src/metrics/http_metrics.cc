#include "metrics/http_metrics.h"

#include <string>

namespace ds::metrics {

HttpMetrics::HttpMetrics()
    : requests_(std::make_unique<std::atomic<uint64_t>[]>(size_t{kMethods} * kModes * kCodes)) {
  for (size_t i = 0; i < size_t{kMethods} * kModes * kCodes; ++i)
    requests_[i].store(0, std::memory_order_relaxed);
  for (auto& h : duration_) h = std::make_unique<Histogram>(latency_buckets());
}

void HttpMetrics::record(Method method, Mode mode, unsigned status, double seconds) {
  if (status < 100 || status > 599) status = 599;
  const auto m = static_cast<size_t>(method);
  const auto d = static_cast<size_t>(mode);
  requests_[(m * kModes + d) * kCodes + (status - 100)].fetch_add(1, std::memory_order_relaxed);
  if (mode == Mode::none || mode == Mode::catchup) duration_[m]->observe(seconds);
}

std::string_view HttpMetrics::method_name(Method m) {
  switch (m) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::del:
      return "DELETE";
    case Method::options:
      return "OPTIONS";
    default:
      return "other";
  }
}

std::string_view HttpMetrics::mode_name(Mode m) {
  switch (m) {
    case Mode::catchup:
      return "catchup";
    case Mode::long_poll:
      return "long_poll";
    case Mode::sse:
      return "sse";
    default:
      return "none";
  }
}

std::string_view HttpMetrics::limit_name(Limit l) {
  switch (l) {
    case Limit::request_head_timeout:
      return "request_head_timeout";
    case Limit::request_body_timeout:
      return "request_body_timeout";
    case Limit::max_header_bytes:
      return "max_header_bytes";
    case Limit::max_header_count:
      return "max_header_count";
    case Limit::max_readers_per_stream:
      return "max_readers_per_stream";
    case Limit::max_parked_readers:
      return "max_parked_readers";
    case Limit::kCount:
      break;
  }
  return "other";
}

HttpMetrics::Method HttpMetrics::method_from(std::string_view verb) {
  if (verb == "GET") return Method::get;
  if (verb == "HEAD") return Method::head;
  if (verb == "POST") return Method::post;
  if (verb == "PUT") return Method::put;
  if (verb == "DELETE") return Method::del;
  if (verb == "OPTIONS") return Method::options;
  return Method::other;
}

void HttpMetrics::collect(Exposition& e) const {
  e.family("dstreamd_http_requests_total",
           "HTTP requests answered, by method, read mode and status code",
           Exposition::Type::counter);
  for (int m = 0; m < kMethods; ++m) {
    for (int d = 0; d < kModes; ++d) {
      for (int c = 0; c < kCodes; ++c) {
        uint64_t v =
            requests_[(size_t(m) * kModes + d) * kCodes + c].load(std::memory_order_relaxed);
        if (v == 0) continue;
        std::string code = std::to_string(c + 100);
        e.sample("dstreamd_http_requests_total",
                 {{"method", method_name(Method(m))}, {"mode", mode_name(Mode(d))}, {"code", code}},
                 v);
      }
    }
  }
  e.family("dstreamd_http_request_duration_seconds",
           "Time from a request's complete head to its complete response, for non-live requests "
           "(everything but long-poll and SSE)",
           Exposition::Type::histogram);
  for (int m = 0; m < kMethods; ++m) {
    if (duration_[m]->snapshot().count == 0) continue;
    e.histogram("dstreamd_http_request_duration_seconds", {{"method", method_name(Method(m))}},
                *duration_[m]);
  }
  e.counter("dstreamd_http_received_bytes_total", "Request body bytes received",
            received_bytes.value());
  e.counter("dstreamd_http_sent_bytes_total", "Response bytes sent (heads and bodies)",
            sent_bytes.value());
  e.gauge("dstreamd_http_open_sse_connections", "SSE responses being streamed", open_sse.value());
  e.gauge("dstreamd_http_parked_long_polls", "Long-poll requests waiting for data",
          parked_long_polls.value());
  e.counter("dstreamd_sse_slow_consumer_disconnects_total",
            "SSE readers disconnected because their pending output passed "
            "--max-pending-output-bytes",
            slow_consumer_disconnects.value());
  e.counter("dstreamd_http_write_timeouts_total",
            "Response writes cut off because the client took no bytes within --write-timeout "
            "(or an SSE response past --sse-max-duration that its client was not reading)",
            write_timeouts.value());
  e.counter("dstreamd_accept_fd_exhausted_total",
            "Accepts that failed for want of file descriptors (EMFILE/ENFILE); the accept loop "
            "pauses after each",
            accept_fd_exhausted.value());
  e.counter("dstreamd_http_connections_rejected_total",
            "Connections answered 503 and closed because --max-connections were open",
            connections_rejected.value());
  e.family("dstreamd_http_limit_rejections_total",
           "Requests refused by a limit, by the flag that set it: request_head_timeout and "
           "request_body_timeout (408), max_header_bytes and max_header_count (431), "
           "max_readers_per_stream and max_parked_readers (503)",
           Exposition::Type::counter);
  for (size_t i = 0; i < limit_rejections_.size(); ++i)
    e.sample("dstreamd_http_limit_rejections_total", {{"reason", limit_name(Limit(i))}},
             limit_rejections_[i].value());
  e.gauge("dstreamd_http_response_buffer_bytes",
          "Bytes that the responses being written hold (a large record shared by several "
          "responses counts once); see --max-response-buffer-bytes",
          response_buffer_bytes.value());
  e.family("dstreamd_live_reads_total",
           "Reads of long-poll and SSE responses, by where they were answered: the stream's live "
           "hub buffer, or storage",
           Exposition::Type::counter);
  e.sample("dstreamd_live_reads_total", {{"source", "hub"}}, live_reads_hub.value());
  e.sample("dstreamd_live_reads_total", {{"source", "storage"}}, live_reads_storage.value());
}

}  // namespace ds::metrics
