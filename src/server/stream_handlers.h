#pragma once
// What the stream handlers share (server-internal): request and response
// helpers, the read parameters of a GET, and the reads and hub waits of live
// reads. The handlers live one concern a file:
//   stream_handlers.cc  routing of a stream URL, error responses, these helpers
//   stream_writes.cc    PUT, POST, DELETE
//   stream_catch_up.cc  HEAD and catch-up GET
//   stream_long_poll.cc long-poll GET (and answering a parked one)
//   stream_sse.cc       SSE GET (and resuming a parked one)
// What a live read does on a hub wake is the live-read machine's
// (server/live_read.h); long-poll and SSE only drive it.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/target.h"
#include "server/http.h"

namespace ds::http_server {

class SseOutput;

using Clock_ = std::chrono::steady_clock;

std::string_view header(const Request& req, std::string_view name);
bool has_header(const Request& req, std::string_view name);
Response make_response(const Request& req, http::status status);
/// A Content-Type value shaped like `type/subtype`; anything else counts as absent.
bool valid_content_type(std::string_view ct);
/// An entity tag rendered in place (etag_for): no heap.
struct EtagText {
  char data[2 * Offset::kTextSize + 32];
  size_t size = 0;
  std::string_view view() const { return {data, size}; }
};
EtagText etag_for(uint64_t stream_id, const Offset& start, const Offset& end, bool closed);
bool etag_matches(std::string_view if_none_match, std::string_view etag);
void set_stream_headers(Response& res, const StreamMeta& m);

asio::awaitable<bool> send(Context& ctx, Stream& stream, Response& res);
asio::awaitable<bool> send(Context& ctx, Stream& stream, RecordsResponse& res);
/// error_response(req, e), sent. Its own coroutine, so that the handlers'
/// frames do not hold a Response for each of their error branches (g++ 12
/// gives every local of every scope its own slot in the frame, and Asio
/// recycles frames only up to 1020 bytes).
asio::awaitable<bool> send_error(Context& ctx, Stream& stream, const Request& req, Error e);
/// `res`, sent (prepare_payload included). Its own coroutine for the same
/// reason: the caller's frame holds no Response.
asio::awaitable<bool> send_owned(Context& ctx, Stream& stream, Response res);

/// Keeps a gauge up while it lives.
class GaugeUp {
 public:
  explicit GaugeUp(metrics::Gauge& g) : g_(g) { g_.inc(); }
  ~GaugeUp() { g_.dec(); }
  GaugeUp(const GaugeUp&) = delete;
  GaugeUp& operator=(const GaugeUp&) = delete;

 private:
  metrics::Gauge& g_;
};

inline auto store_read(Context& ctx, ReadRequest rr) {
  return async_call<Result<ReadOutcome>>(ctx.inbox, [&ctx, rr = std::move(rr)](auto cb) mutable {
    ctx.store.read(std::move(rr), std::move(cb));
  });
}

/// A read for a long-poll or SSE response: from the stream's hub buffer when
/// it holds the records from `from` on (no storage read; the sliding TTL is
/// renewed with a touch), else from storage, whose metadata the hub then
/// remembers so that it can answer the next ones. `live`: the storage read's
/// ReadRequest::live.
asio::awaitable<Result<ReadOutcome>> live_read(Context& ctx, const std::string& name,
                                               const OffsetSpec& from, bool live);

/// Parks on the stream's hub until it has something for `from` or the deadline
/// passes (nullopt). An SSE response passes its output: the wait also ends
/// once the output has gone idle (it can park then).
asio::awaitable<std::optional<Wake>> wait_live(Context& ctx, const std::string& path, Offset from,
                                               Clock_::time_point deadline,
                                               SseOutput* output = nullptr);

// --------------------------------------------------------------------- GET

enum class Live { none, long_poll, sse };

struct ReadParams {
  OffsetSpec from;
  bool offset_given = false;
  Live live = Live::none;
  std::string cursor;
};

Result<ReadParams> parse_read_params(const Target& t);
bool is_json_stream(const StreamMeta& m);

/// A 200 carrying records (catch-up or long-poll). The body refers to the
/// records (no copy): every answer built from the same records shares them.
RecordsResponse data_response(Context& ctx, const Request& req, const StreamMeta& meta,
                              const Offset& start, const std::vector<RecordPtr>& records,
                              const Offset& next, bool up_to_date, bool closed, bool now_read,
                              const std::string* cursor);
/// A 204 of a long-poll that has nothing (yet): at the tail, or closed.
Response no_content_live(const Request& req, const Offset& next, bool closed,
                         const std::string& cursor);

/// Counts a live reader of `name` in `slot` against --max-readers-per-stream
/// and --max-parked-readers. Over a cap: the 503 (Retry-After, JSON body) to
/// send instead, counted in dstreamd_http_limit_rejections_total.
std::optional<Response> admit_reader(Context& ctx, const Request& req, const std::string& name,
                                     live::ReaderLimits::Slot& slot);

// --------------------------------------------------------------------- the handlers

asio::awaitable<bool> handle_put(Context& ctx, Stream& stream, Request& req,
                                 const std::string& name);
asio::awaitable<bool> handle_post(Context& ctx, Stream& stream, Request& req,
                                  const std::string& name);
asio::awaitable<bool> handle_delete(Context& ctx, Stream& stream, Request& req,
                                    const std::string& name);
asio::awaitable<bool> handle_head(Context& ctx, Stream& stream, Request& req,
                                  const std::string& name);
asio::awaitable<bool> handle_catch_up(Context& ctx, Stream& stream, Request& req,
                                      const std::string& name, const ReadParams& p);
asio::awaitable<bool> handle_long_poll(Context& ctx, Stream& stream, Request& req,
                                       const std::string& name, const ReadParams& p);
asio::awaitable<bool> handle_sse(Context& ctx, Stream& stream, Request& req,
                                 const std::string& name, const ReadParams& p);

}  // namespace ds::http_server
