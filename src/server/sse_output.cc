#include "server/sse_output.h"

#include "server/live_read.h"

namespace ds::http_server {

SseOutput::SseOutput(Context& ctx, Stream& stream, size_t cap,
                     std::chrono::steady_clock::time_point hard_end)
    : ctx_(ctx),
      stream_(stream),
      cap_(cap),
      hard_end_(hard_end),
      progress_(stream.get_executor()) {}

bool SseOutput::push(std::string_view data) {
  if (failed_) return false;
  if (writing_ && !waiting_.empty() && waiting_.size() + data.size() > cap_) {
    overflowed_ = true;
    abort();
    return false;
  }
  queue(data);
  return true;
}

bool SseOutput::push_paced(std::string_view data) {
  if (failed_) return false;
  queue(data);
  return true;
}

void SseOutput::push_framed(std::string_view framed) {
  if (failed_ || framed.empty()) return;
  waiting_.append(framed);
  if (!writing_) start_write();
}

void SseOutput::finish() {
  if (failed_) return;
  waiting_.append(live::kLastChunk);
  if (!writing_) start_write();
}

void SseOutput::queue(std::string_view data) {
  if (data.empty()) return;  // a zero-length chunk would end the body
  live::append_chunk(waiting_, data);
  if (!writing_) start_write();
}

void SseOutput::start_write() {
  inflight_.clear();
  inflight_.swap(waiting_);
  written_ = 0;
  writing_ = true;
  pinned_.emplace(ctx_, inflight_.size());
  write_some();
}

// One write_some at a time, each with its own deadline: a client that reads,
// however slowly, keeps its connection; one that takes nothing for
// --write-timeout (or is still behind at hard_end_) has it closed by the
// stream's timer, and the write ends with beast::error::timeout.
void SseOutput::write_some() {
  const auto now = std::chrono::steady_clock::now();
  auto deadline = hard_end_;
  const auto timeout = pinned_->write_timeout();
  if (hard_end_ - now > timeout) deadline = now + timeout;
  stream_.expires_at(deadline);
  stream_.async_write_some(asio::buffer(inflight_.data() + written_, inflight_.size() - written_),
                           [self = shared_from_this()](beast::error_code ec, size_t n) {
                             count_sent(self->ctx_, n);
                             self->written_ += n;
                             if (!ec && self->written_ < self->inflight_.size()) {
                               self->write_some();
                               return;
                             }
                             self->writing_ = false;
                             self->pinned_.reset();
                             if (ec) {
                               if (ec == beast::error::timeout && !self->timed_out_) {
                                 self->timed_out_ = true;
                                 self->ctx_.metrics.write_timeouts.inc();
                               }
                               self->failed_ = true;
                               self->waiting_.clear();
                             } else {
                               self->stream_.expires_never();
                               if (!self->waiting_.empty()) self->start_write();
                             }
                             self->notify();
                             if (!self->writing_ && self->on_idle) self->on_idle();
                           });
}

void SseOutput::notify() { progress_.cancel(); }

asio::awaitable<void> SseOutput::wait_for_room() {
  while (!failed_ && writing_ && !waiting_.empty()) {
    progress_.expires_at(asio::steady_timer::time_point::max());
    co_await progress_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<void> SseOutput::drain() {
  // After a failure the queue is empty, but a write may still be in flight
  // (e.g. aborted and not yet completed): wait for it too.
  while (writing_) {
    progress_.expires_at(asio::steady_timer::time_point::max());
    co_await progress_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void SseOutput::abort() {
  failed_ = true;
  waiting_.clear();
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
}

}  // namespace ds::http_server
