// HEAD and catch-up GET: what storage has, at once (ETag, 304, gzip, sendfile).

#include "protocol/content_encoding.h"
#include "server/stream_handlers.h"

namespace ds::http_server {

asio::awaitable<bool> handle_head(Context& ctx, Stream& stream, Request& req,
                                  const std::string& name) {
  auto result_op = async_call<Result<StreamMeta>>(
      ctx.inbox, [&ctx, name](auto cb) { ctx.store.head(name, std::move(cb)); });
  auto result = co_await std::move(result_op);
  if (!result) {
    auto res = error_response(req, result.error());
    res.body().clear();
    co_return co_await send(ctx, stream, res);
  }
  auto res = make_response(req, http::status::ok);
  set_stream_headers(res, *result);
  res.set("Stream-Next-Offset", result->tail.text().view());
  if (result->closed) res.set("Stream-Closed", "true");
  res.set(http::field::cache_control, "no-store");
  res.set(http::field::etag, etag_for(result->id, Offset{}, result->tail, result->closed).view());
  res.prepare_payload();
  co_return co_await write_response(ctx, stream, res);
}

asio::awaitable<bool> handle_catch_up(Context& ctx, Stream& stream, Request& req,
                                      const std::string& name, const ReadParams& p) {
  const bool gzip_on = ctx.options.gzip_min_bytes > 0;
  const bool client_gzip = gzip_on && accepts_gzip(header(req, "accept-encoding"));
  ReadRequest rr{name, p.from, ctx.options.read_chunk_bytes};
  // The records may be file slices (sent with sendfile) unless the response
  // may be gzipped: the body then has to be in memory anyway, and a body too
  // small to be gzipped gains little from sendfile. (RecordsBody would still
  // pread slices for gzip; this keeps that path off the hot one.)
  rr.file_slices = !client_gzip;
  auto r_op = store_read(ctx, std::move(rr));
  auto r = co_await std::move(r_op);
  if (!r) {
    auto err_ = send_error(ctx, stream, req, r.error());
    co_return co_await std::move(err_);
  }
  const bool now_read = p.from.kind == OffsetSpec::Kind::now;
  auto res = data_response(ctx, req, r->meta, r->start, r->records, r->next, r->up_to_date,
                           r->meta.closed, now_read, nullptr);
  // gzip: a separate representation, with its own ETag, for clients that
  // accept it; caches keep both apart by Vary: Accept-Encoding.
  const bool gzip =
      client_gzip && gzip_eligible(RecordsBody::size(res.body()), ctx.options.gzip_min_bytes);
  if (gzip_on) add_vary(res, "Accept-Encoding");
  std::string identity_etag(res[http::field::etag]);
  if (gzip && !identity_etag.empty()) res.set(http::field::etag, gzip_etag(identity_etag));
  if (!now_read &&
      etag_matches(header(req, "if-none-match"), std::string_view(res[http::field::etag]))) {
    auto not_modified = make_response(req, http::status::not_modified);
    not_modified.set(http::field::etag, res[http::field::etag]);
    not_modified.set(http::field::cache_control, res[http::field::cache_control]);
    if (gzip_on) add_vary(not_modified, "Accept-Encoding");
    co_return co_await send(ctx, stream, not_modified);
  }
  if (gzip) {
    auto plain = RecordsBody::render(res.body());
    if (!plain) {
      // A file slice could not be read: sending the identity body would fail
      // the same way, after a 200 head.
      auto err_ = send_error(ctx, stream, req,
                             Error(errc::storage_failure, "cannot read the stream's data"));
      co_return co_await std::move(err_);
    }
    if (auto z = gzip_compress(*plain, 1)) {
      Response zipped{std::move(res.base())};
      zipped.body() = std::move(*z);
      zipped.set(http::field::content_encoding, "gzip");
      co_return co_await send(ctx, stream, zipped);
    }
    if (!identity_etag.empty()) res.set(http::field::etag, identity_etag);
  }
  co_return co_await send(ctx, stream, res);
}

}  // namespace ds::http_server
