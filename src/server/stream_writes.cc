// PUT (create, fork), POST (append, close) and DELETE of a stream.

#include <array>

#include "protocol/headers.h"
#include "server/stream_handlers.h"
#include "subs/manager.h"

namespace ds::http_server {

// --------------------------------------------------------------------- PUT

namespace {

/// Stream-Retention-Max-Age (seconds) and Stream-Retention-Max-Bytes of a
/// PUT into `config`, or the server's defaults for those not given
/// (docs/protocol-decisions.md, "Retention"). A fork gets only what it asks
/// for: its data is mostly its source's, whose retention applies to it. Not
/// a coroutine (GCC 12: no class temporaries across co_await).
std::optional<Error> parse_retention(const ServerOptions& options, const Request& req,
                                     StreamConfig& config) {
  const bool fork = has_header(req, "stream-forked-from");
  struct Field {
    const char* header;
    const char* name;
    std::optional<uint64_t>* value;
    std::optional<uint64_t> fallback;
  };
  const Field fields[] = {
      {"stream-retention-max-age", "Stream-Retention-Max-Age", &config.retention_max_age_s,
       options.retention_max_age_s},
      {"stream-retention-max-bytes", "Stream-Retention-Max-Bytes", &config.retention_max_bytes,
       options.retention_max_bytes},
  };
  for (const Field& f : fields) {
    if (!has_header(req, f.header)) {
      if (!fork) *f.value = f.fallback;
      continue;
    }
    auto v = parse_strict_uint(header(req, f.header));
    if (!v || *v == 0 || *v > kMaxSafeInteger) {
      return Error(errc::bad_request, std::string(f.name) +
                                          " must be a positive integer without sign or leading "
                                          "zeros, at most 2^53 - 1");
    }
    *f.value = *v;
  }
  return std::nullopt;
}

}  // namespace

asio::awaitable<bool> handle_put(Context& ctx, Stream& stream, Request& req,
                                 const std::string& name) {
  CreateRequest cr;
  cr.path = name;
  std::string_view ct = header(req, "content-type");
  if (valid_content_type(ct)) cr.config.content_type = std::string(trim(ct));

  bool has_ttl = has_header(req, "stream-ttl");
  bool has_expires = has_header(req, "stream-expires-at");
  if (has_ttl && has_expires) {
    {
      auto err_ = send_error(
          ctx, stream, req,
          Error(errc::bad_request, "Stream-TTL and Stream-Expires-At are mutually exclusive"));
      co_return co_await std::move(err_);
    }
  }
  if (has_ttl) {
    auto ttl = parse_ttl_seconds(header(req, "stream-ttl"));
    if (!ttl) {
      auto err_ = send_error(
          ctx, stream, req,
          Error(errc::bad_request,
                "Stream-TTL must be a non-negative integer without sign or leading zeros, "
                "at most " +
                    std::to_string(kMaxTtlSeconds) + " (10 years)"));
      co_return co_await std::move(err_);
    }
    cr.config.ttl_seconds = *ttl;
  }
  if (has_expires) {
    auto text = header(req, "stream-expires-at");
    auto at = parse_expires_at_ms(text);
    if (!at) {
      auto err_ = send_error(ctx, stream, req,
                             Error(errc::bad_request,
                                   "Stream-Expires-At must be an RFC 3339 timestamp no later than "
                                   "9999-12-31T23:59:59.999Z"));
      co_return co_await std::move(err_);
    }
    cr.config.expires_at_ms = *at;
    cr.config.expires_at_text = std::string(text);
  }
  if (auto bad = parse_retention(ctx.options, req, cr.config)) {
    auto err_ = send_error(ctx, stream, req, std::move(*bad));
    co_return co_await std::move(err_);
  }
  cr.closed = is_true_flag(header(req, "stream-closed"));

  if (has_header(req, "stream-forked-from")) {
    auto source = percent_decode(header(req, "stream-forked-from"), false);
    std::string_view sv = source ? std::string_view(*source) : std::string_view();
    if (auto scheme = sv.find("://"); scheme != std::string_view::npos) {
      auto slash = sv.find('/', scheme + 3);
      sv = slash == std::string_view::npos ? std::string_view() : sv.substr(slash);
    }
    auto src = stream_name(sv);
    if (!src) {
      if (src.error().code == errc::not_found) {
        {
          auto err_ =
              send_error(ctx, stream, req, Error(errc::not_found, "fork source stream not found"));
          co_return co_await std::move(err_);
        }
      }
      {
        auto err_ = send_error(ctx, stream, req, src.error());
        co_return co_await std::move(err_);
      }
    }
    cr.forked_from = std::move(*src);
    if (has_header(req, "stream-fork-offset")) {
      auto off = parse_offset(header(req, "stream-fork-offset"));
      if (!off) {
        auto err_ =
            send_error(ctx, stream, req, Error(errc::bad_offset, "malformed Stream-Fork-Offset"));
        co_return co_await std::move(err_);
      }
      cr.fork_offset = *off;
    }
    if (has_header(req, "stream-fork-sub-offset")) {
      auto sub = parse_strict_uint(header(req, "stream-fork-sub-offset"));
      if (!sub || *sub > kMaxSafeInteger) {
        {
          auto err_ = send_error(
              ctx, stream, req,
              Error(errc::bad_request, "Stream-Fork-Sub-Offset must be a non-negative integer"));
          co_return co_await std::move(err_);
        }
      }
      cr.fork_sub_offset = *sub;
    }
  } else if (has_header(req, "stream-fork-offset") || has_header(req, "stream-fork-sub-offset")) {
    {
      auto err_ = send_error(
          ctx, stream, req,
          Error(errc::bad_request,
                "Stream-Fork-Offset and Stream-Fork-Sub-Offset require Stream-Forked-From"));
      co_return co_await std::move(err_);
    }
  }
  cr.body = std::move(req.body());

  auto result_op =
      async_call<Result<CreateOutcome>>(ctx.inbox, [&ctx, cr = std::move(cr)](auto cb) mutable {
        ctx.store.create(std::move(cr), std::move(cb));
      });
  auto result = co_await std::move(result_op);
  if (!result) {
    auto err_ = send_error(ctx, stream, req, result.error());
    co_return co_await std::move(err_);
  }

  const auto& meta = result->meta;
  if (ctx.subscriptions && result->created) ctx.subscriptions->stream_written(name);
  auto res = make_response(req, result->created ? http::status::created : http::status::ok);
  res.set(http::field::content_type, meta.config.content_type);
  res.set("Stream-Next-Offset", meta.tail.text().view());
  if (meta.closed) res.set("Stream-Closed", "true");
  if (result->created) {
    std::string host(header(req, "host"));
    if (host.empty()) host = "localhost";
    res.set(http::field::location,
            "http://" + host + std::string(req.target().substr(0, req.target().find('?'))));
  }
  res.set(http::field::cache_control, "no-store");
  co_return co_await send(ctx, stream, res);
}

// --------------------------------------------------------------------- POST

namespace {

/// Stream-Next-Offset and, the tail as an entity tag, ETag (for the next
/// conditional append, If-Match): the tail rendered once and quoted in
/// place. Not a coroutine: its buffers stay out of handle_post's frame.
void set_tail(Response& res, const Offset& tail) {
  std::array<char, Offset::kTextSize + 2> tag;
  tag[0] = '"';
  tail.to_chars(tag.data() + 1);
  tag[Offset::kTextSize + 1] = '"';
  res.set("Stream-Next-Offset", std::string_view(tag.data() + 1, Offset::kTextSize));
  res.set(http::field::etag, std::string_view(tag.data(), tag.size()));
}

/// The append a POST asks for, into `ar`, or the 400 its headers call for.
/// Not a coroutine: its locals stay out of handle_post's frame.
std::optional<Error> parse_append(const Request& req, const std::string& name, AppendRequest& ar) {
  ar.path = name;
  const bool has_id = has_header(req, "producer-id");
  const bool has_epoch = has_header(req, "producer-epoch");
  const bool has_seq = has_header(req, "producer-seq");
  if (has_id || has_epoch || has_seq) {
    if (!(has_id && has_epoch && has_seq)) {
      return Error(errc::bad_request,
                   "Producer-Id, Producer-Epoch and Producer-Seq must be sent together");
    }
    auto id = header(req, "producer-id");
    auto epoch = parse_safe_uint(header(req, "producer-epoch"));
    auto seq = parse_safe_uint(header(req, "producer-seq"));
    if (id.empty()) return Error(errc::bad_request, "Producer-Id must not be empty");
    if (!epoch || !seq) {
      return Error(errc::bad_request,
                   "Producer-Epoch and Producer-Seq must be integers from 0 to 2^53-1");
    }
    ar.producer = ProducerTriple{std::string(id), *epoch, *seq};
  }
  if (has_header(req, "stream-seq")) ar.stream_seq = std::string(header(req, "stream-seq"));
  if (has_header(req, "if-match")) {
    auto expected = parse_if_match(header(req, "if-match"));
    if (!expected) return expected.error();
    ar.if_match = std::move(*expected);
  }
  ar.close = is_true_flag(header(req, "stream-closed"));
  // The body is taken only once the headers are known good (an error answer
  // leaves the request as it came).
  if (req.body().empty() && !ar.close) {
    return Error(errc::empty_body, "empty body: an append needs data (or Stream-Closed: true)");
  }
  if (!req.body().empty()) {
    std::string_view ct = header(req, "content-type");
    if (!valid_content_type(ct)) {
      return Error(errc::bad_request, "an append with a body needs a Content-Type");
    }
    ar.content_type = std::string(ct);
  }
  return std::nullopt;
}

/// The answer to an append the store has taken. Not a coroutine.
Response post_answer(const Request& req, const AppendOutcome& out, bool with_producer,
                     bool has_body) {
  http::status status = http::status::no_content;
  if (out.kind == AppendOutcome::Kind::appended && with_producer && has_body)
    status = http::status::ok;
  auto res = make_response(req, status);
  set_tail(res, out.tail);
  if (out.closed) res.set("Stream-Closed", "true");
  if (out.producer_epoch) res.set("Producer-Epoch", std::to_string(*out.producer_epoch));
  if (out.producer_seq) res.set("Producer-Seq", std::to_string(*out.producer_seq));
  res.set(http::field::cache_control, "no-store");
  return res;
}

}  // namespace

// Its frame holds the AppendRequest and the store's Result, and nothing that
// only one branch needs: parsing and the answer's Response live elsewhere
// (parse_append, post_answer, send_owned), so that the frame stays below the
// 1020 bytes Asio's frame cache recycles. The store call's start lambda
// refers to `ar` here (alive until the call returns) rather than holding it,
// which keeps async_initiate's own frame small too.
asio::awaitable<bool> handle_post(Context& ctx, Stream& stream, Request& req,
                                  const std::string& name) {
  AppendRequest ar;
  if (auto bad = parse_append(req, name, ar)) {
    auto err_ = send_error(ctx, stream, req, std::move(*bad));
    co_return co_await std::move(err_);
  }
  ar.body = std::move(req.body());
  const bool has_body = !ar.body.empty();
  const bool with_producer = ar.producer.has_value();

  auto result_op = async_call<Result<AppendOutcome>>(
      ctx.inbox, [&ctx, p = &ar](auto cb) { ctx.store.append(std::move(*p), std::move(cb)); });
  auto result = co_await std::move(result_op);
  if (!result) {
    auto err_ = send_error(ctx, stream, req, result.error());
    co_return co_await std::move(err_);
  }
  if (ctx.subscriptions && result->kind == AppendOutcome::Kind::appended && has_body)
    ctx.subscriptions->stream_written(name);
  auto answer_ = send_owned(ctx, stream, post_answer(req, *result, with_producer, has_body));
  co_return co_await std::move(answer_);
}

asio::awaitable<bool> handle_delete(Context& ctx, Stream& stream, Request& req,
                                    const std::string& name) {
  auto result_op = async_call<Result<Unit>>(
      ctx.inbox, [&ctx, name](auto cb) { ctx.store.remove(name, std::move(cb)); });
  auto result = co_await std::move(result_op);
  if (!result) {
    auto err_ = send_error(ctx, stream, req, result.error());
    co_return co_await std::move(err_);
  }
  if (ctx.subscriptions) ctx.subscriptions->stream_deleted(name);
  auto res = make_response(req, http::status::no_content);
  co_return co_await send(ctx, stream, res);
}

}  // namespace ds::http_server
