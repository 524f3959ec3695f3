#pragma once
// A Beast body that writes a read's records straight from the records
// themselves: the bytes concatenated, or (JSON streams) a JSON array of the
// messages. No copy of the data is made, so every response built from the
// same records (the long-polls a hub wakes with one append, for example)
// shares one immutable buffer: Record is a shared_ptr<const Record>.
//
// Records that are file slices (Record::in_file) are normally not written
// through this body at all: write_response sends them with sendfile
// (server/file_send.h). The body still reads them with pread, so that any
// other use (gzip, a response that cannot take the sendfile path) sends the
// right bytes instead of none.

#include <unistd.h>

#include <algorithm>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>
#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/stream_store.h"

namespace ds::http_server {

/// Copies `n` bytes of a file-slice record, from `offset` within the record,
/// to `out`. A file that ends before the record does is an error (io_error):
/// the response has promised the record's size.
inline bool read_file_bytes(const Record& r, uint64_t offset, char* out, size_t n,
                            boost::system::error_code& ec) {
  uint64_t pos = r.file.position + offset;
  while (n > 0) {
    const ssize_t got = ::pread(r.file.fd, out, n, static_cast<off_t>(pos));
    if (got < 0) {
      if (errno == EINTR) continue;
      ec.assign(errno, boost::system::system_category());
      return false;
    }
    if (got == 0) {
      ec = boost::system::errc::make_error_code(boost::system::errc::io_error);
      return false;
    }
    out += got;
    n -= static_cast<size_t>(got);
    pos += static_cast<uint64_t>(got);
  }
  return true;
}

struct RecordsBody {
  struct value_type {
    std::vector<RecordPtr> records;
    bool json = false;
  };

  /// The body's length: as render() would produce it.
  static std::uint64_t size(const value_type& v) {
    std::uint64_t n = 0;
    std::uint64_t messages = 0;
    for (const auto& r : v.records) {
      const size_t bytes = r->size();  // not bytes.size(): a file slice's bytes are empty
      if (bytes == 0) continue;
      n += bytes;
      ++messages;
    }
    if (v.json) n += 2 + (messages ? messages - 1 : 0);
    return n;
  }

  /// The body as one string (for gzip); nullopt if a file slice could not
  /// be read.
  static std::optional<std::string> render(const value_type& v) {
    std::string body;
    body.reserve(size(v));
    if (v.json) body.push_back('[');
    bool first = true;
    for (const auto& r : v.records) {
      const size_t n = r->size();
      if (n == 0) continue;
      if (v.json && !first) body.push_back(',');
      if (r->in_file()) {
        const size_t at = body.size();
        body.resize(at + n);
        boost::system::error_code ec;
        if (!read_file_bytes(*r, 0, body.data() + at, n, ec)) return std::nullopt;
      } else {
        body.append(r->bytes);
      }
      first = false;
    }
    if (v.json) body.push_back(']');
    return body;
  }

  class writer {
   public:
    using const_buffers_type = std::vector<boost::asio::const_buffer>;

    template <bool isRequest, class Fields>
    writer(const boost::beast::http::header<isRequest, Fields>&, const value_type& v) : v_(v) {}

    void init(boost::beast::error_code& ec) { ec = {}; }

    /// The next pieces of the body, for one gathered write: large records
    /// are referred to where they are (never copied); runs of small ones
    /// and the JSON punctuation are copied into a scratch buffer of at most
    /// kScratch bytes, so that many small records do not cost a write each.
    /// File slices are read (pread) into the scratch buffer, a scratch's
    /// worth per call. The buffers stay valid until the next call (Beast's
    /// BodyWriter rule).
    boost::optional<std::pair<const_buffers_type, bool>> get(boost::beast::error_code& ec) {
      ec = {};
      const_buffers_type out;
      scratch_.clear();
      if (scratch_.capacity() < kScratch) scratch_.reserve(kScratch);  // never reallocated below
      size_t run = 0;  // where the scratch run not yet in `out` starts
      auto flush = [&] {
        if (scratch_.size() > run) out.emplace_back(scratch_.data() + run, scratch_.size() - run);
        run = scratch_.size();
      };
      auto copy = [&](std::string_view piece) {
        if (scratch_.size() + piece.size() > kScratch) return false;
        scratch_.append(piece);
        return true;
      };
      if (v_.json && !opened_) opened_ = copy("[");
      const auto& records = v_.records;
      while (next_ < records.size() && out.size() + 2 < kPieces) {
        const Record& record = *records[next_];
        if (record.size() == 0) {
          ++next_;
          continue;
        }
        // A file slice part-read in an earlier call has had its separator.
        const std::string_view sep = v_.json && wrote_one_ && file_done_ == 0 ? "," : "";
        if (record.in_file()) {
          if (scratch_.size() + sep.size() >= kScratch) break;  // no room for a byte of it
          copy(sep);
          const size_t at = scratch_.size();
          const size_t n = std::min<uint64_t>(record.size() - file_done_, kScratch - at);
          scratch_.resize(at + n);  // within the reserved capacity: no reallocation
          if (!read_file_bytes(record, file_done_, scratch_.data() + at, n, ec)) return boost::none;
          wrote_one_ = true;
          file_done_ += n;
          if (file_done_ < record.size()) break;  // the scratch is full
          file_done_ = 0;
          ++next_;
          continue;
        }
        const std::string& bytes = record.bytes;
        if (bytes.size() <= kSmall) {
          if (scratch_.size() + sep.size() + bytes.size() > kScratch) break;
          copy(sep);
          copy(bytes);
        } else {
          if (!copy(sep)) break;
          flush();
          out.emplace_back(bytes.data(), bytes.size());
        }
        wrote_one_ = true;
        ++next_;
      }
      if (next_ == records.size() && v_.json && !closed_) closed_ = copy("]");
      flush();
      const bool more = next_ < records.size() || (v_.json && !closed_);
      if (out.empty()) return boost::none;
      return std::make_pair(std::move(out), more);
    }

   private:
    static constexpr size_t kPieces = 64;
    static constexpr size_t kSmall = size_t{16} * 1024;
    static constexpr size_t kScratch = size_t{64} * 1024;
    const value_type& v_;
    std::string scratch_;
    size_t next_ = 0;
    uint64_t file_done_ = 0;  ///< bytes of records[next_] (a file slice) already given out
    bool opened_ = false;
    bool wrote_one_ = false;
    bool closed_ = false;
  };
};

}  // namespace ds::http_server
