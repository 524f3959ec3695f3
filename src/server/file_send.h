#pragma once
// Sends a read's records as a response body when some of them are file
// slices (Record::in_file): runs of in-memory records as gathered writes,
// file slices with sendfile(2), so a catch-up read of data in files never
// copies it through user space.
//
// Header-only, with no dependency on the rest of the server (no Context,
// no StreamStore): write_response (http_session.cc) calls it after Beast has
// written the response head, and the unit tests drive it on a bare socket.
//
// It works on the socket's non-blocking mode directly: each write or
// sendfile is tried at once, and only when the socket is full does the
// coroutine wait (async_wait) for it to take more, each such wait bounded by
// a deadline, as the Beast write path bounds each write_some.

#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/beast/core/error.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "store/stream_store.h"

namespace ds::http_server {

/// How a send_records call ended.
struct SendOutcome {
  /// Empty: every byte was written. beast::error::timeout: the peer took no
  /// bytes within a wait's limit (the socket is then closed). Anything else:
  /// the socket's error, or io_error if a file ended before its slice did.
  /// Either way the response is cut short: the connection must end.
  boost::system::error_code ec;
  uint64_t sent = 0;   ///< bytes written to the socket
  uint64_t waits = 0;  ///< times the socket was full and was waited for
};

/// Whether any record is a file slice (the response then goes by
/// send_records).
inline bool has_file_slices(const std::vector<RecordPtr>& records) {
  return std::any_of(records.begin(), records.end(),
                     [](const RecordPtr& r) { return r->in_file(); });
}

namespace file_send_detail {

/// One contiguous piece of the body: bytes in memory, or a range of a file.
struct Piece {
  const char* data = nullptr;  ///< in memory (null: in the file)
  int fd = -1;
  uint64_t position = 0;  ///< in the file
  uint64_t size = 0;
};

/// The body as pieces, in order. Adjacent slices of one file that follow
/// each other there become one piece: a read of many small appends costs
/// one sendfile, not one per record. JSON punctuation is in memory. A
/// non-empty `head` (the response's head, rendered) comes first.
inline std::vector<Piece> pieces_of(const std::vector<RecordPtr>& records, bool json,
                                    std::string_view head = {}) {
  static constexpr std::string_view kOpen = "[", kComma = ",", kClose = "]";
  std::vector<Piece> out;
  out.reserve(records.size() + 3);
  auto memory = [&](std::string_view s) { out.push_back(Piece{s.data(), -1, 0, s.size()}); };
  if (!head.empty()) memory(head);
  if (json) memory(kOpen);
  bool first = true;
  for (const auto& r : records) {
    const uint64_t n = r->size();
    if (n == 0) continue;
    if (json && !first) memory(kComma);
    first = false;
    if (!r->in_file()) {
      memory(r->bytes);
      continue;
    }
    if (!out.empty() && !out.back().data && out.back().fd == r->file.fd &&
        out.back().position + out.back().size == r->file.position) {
      out.back().size += n;
    } else {
      out.push_back(Piece{nullptr, r->file.fd, r->file.position, n});
    }
  }
  if (json) memory(kClose);
  return out;
}

/// sendfile(2) raises SIGPIPE on a connection the peer has reset (it takes
/// no MSG_NOSIGNAL, unlike the sends Asio makes), and the default action
/// kills the process. Ignore it, unless the program has chosen a disposition
/// of its own.
inline void ignore_sigpipe_once() {
  static const bool done = [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      ::sigemptyset(&ignore.sa_mask);
      ::sigaction(SIGPIPE, &ignore, nullptr);
    }
    return true;
  }();
  (void)done;
}

/// At most this many buffers per gathered write.
constexpr size_t kMaxGather = 64;
/// At most this many bytes per sendfile call (Linux caps one at 0x7ffff000).
constexpr uint64_t kMaxSendfile = 1u << 30;

}  // namespace file_send_detail

/// Writes `pieces` to `socket`, in order. Each write is tried at once; only
/// when the socket is full does the coroutine wait for it to take more, for
/// at most `wait_limit()` each time (read at every wait, so it may change
/// while the pieces are sent). The pieces' memory and files must outlive the
/// call. On a timeout the socket is closed, as Beast's stream does.
///
/// Not a coroutine lambda, and `wait_limit` is taken by reference: g++ 12
/// mishandles lambda temporaries passed to coroutines (docs/architecture.md).
inline boost::asio::awaitable<SendOutcome> send_pieces(
    boost::asio::ip::tcp::socket& socket, std::vector<file_send_detail::Piece> pieces,
    const std::function<std::chrono::milliseconds()>& wait_limit) {
  namespace asio = boost::asio;
  using file_send_detail::Piece;
  using tcp = asio::ip::tcp;

  file_send_detail::ignore_sigpipe_once();
  SendOutcome result;
  // Asio puts the descriptor in non-blocking mode for its own async sends,
  // but not for async_wait alone; the user-level flag makes write_some and
  // sendfile return at once (would_block) instead of blocking this thread.
  if (!socket.non_blocking()) socket.non_blocking(true, result.ec);
  if (result.ec) co_return result;

  const int out_fd = socket.native_handle();
  std::optional<asio::steady_timer> timer;  // made at the first wait: most sends need none
  size_t next = 0;                          // the first piece not wholly written
  uint64_t done = 0;                        // bytes of pieces[next] already written
  std::array<asio::const_buffer, file_send_detail::kMaxGather> gather;

  while (next < pieces.size()) {
    const Piece& piece = pieces[next];
    boost::system::error_code ec;
    uint64_t wrote = 0;
    if (piece.data) {
      // A run of in-memory pieces, in one gathered write.
      size_t count = 0;
      gather[count++] = asio::const_buffer(piece.data + done, piece.size - done);
      for (size_t i = next + 1;
           i < pieces.size() && pieces[i].data && count < file_send_detail::kMaxGather; ++i)
        gather[count++] = asio::const_buffer(pieces[i].data, pieces[i].size);
      wrote = socket.write_some(std::span<const asio::const_buffer>(gather.data(), count), ec);
    } else {
      off_t pos = static_cast<off_t>(piece.position + done);
      const size_t count = std::min(piece.size - done, file_send_detail::kMaxSendfile);
      const ssize_t n = ::sendfile(out_fd, piece.fd, &pos, count);
      if (n > 0) {
        wrote = static_cast<uint64_t>(n);
      } else if (n == 0) {
        // The file ends before the slice does (truncated under us): the
        // Content-Length already promised cannot be kept.
        ec = boost::system::errc::make_error_code(boost::system::errc::io_error);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        ec = asio::error::would_block;
      } else if (errno == EINTR) {
        continue;
      } else {
        ec.assign(errno, boost::system::system_category());
      }
    }
    result.sent += wrote;
    // Step over what was written: the rest of this piece, maybe whole pieces
    // after it (a gathered write), maybe part of the last one.
    while (wrote > 0) {
      const uint64_t left = pieces[next].size - done;
      if (wrote < left) {
        done += wrote;
        break;
      }
      wrote -= left;
      done = 0;
      ++next;
    }
    if (!ec) continue;
    if (ec != asio::error::would_block && ec != asio::error::try_again) {
      result.ec = ec;
      co_return result;
    }
    // The socket is full: wait until it takes more, or the limit passes.
    ++result.waits;
    if (!timer) timer.emplace(socket.get_executor());
    timer->expires_after(wait_limit());
    auto ready = asio::experimental::make_parallel_group(
                     socket.async_wait(tcp::socket::wait_write, asio::deferred),
                     timer->async_wait(asio::deferred))
                     .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    auto [order, wait_ec, timer_ec] = co_await std::move(ready);
    if (order[0] == 1 && !timer_ec) {
      boost::system::error_code ignored;
      socket.close(ignored);
      result.ec = boost::beast::error::timeout;
      co_return result;
    }
    if (wait_ec) {
      result.ec = wait_ec;
      co_return result;
    }
  }
  co_return result;
}

/// Writes `records` (the body of a response whose head is already written)
/// to `socket`: the bytes concatenated, or for `json` a JSON array of them,
/// exactly RecordsBody::size() bytes when it succeeds, as send_pieces does.
/// `records` (and the files their slices refer to) must outlive the call.
inline boost::asio::awaitable<SendOutcome> send_records(
    boost::asio::ip::tcp::socket& socket, const std::vector<RecordPtr>& records, bool json,
    const std::function<std::chrono::milliseconds()>& wait_limit) {
  return send_pieces(socket, file_send_detail::pieces_of(records, json), wait_limit);
}

}  // namespace ds::http_server
