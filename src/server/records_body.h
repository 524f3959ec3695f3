#pragma once
// A Beast body that writes a read's records straight from the records
// themselves: the bytes concatenated, or (JSON streams) a JSON array of the
// messages. No copy of the data is made, so every response built from the
// same records (the long-polls a hub wakes with one append, for example)
// shares one immutable buffer: Record is a shared_ptr<const Record>.

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/stream_store.h"

namespace ds::http_server {

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
      if (r->bytes.empty()) continue;
      n += r->bytes.size();
      ++messages;
    }
    if (v.json) n += 2 + (messages ? messages - 1 : 0);
    return n;
  }

  /// The body as one string (for gzip).
  static std::string render(const value_type& v) {
    std::string body;
    body.reserve(size(v));
    if (v.json) body.push_back('[');
    bool first = true;
    for (const auto& r : v.records) {
      if (r->bytes.empty()) continue;
      if (v.json && !first) body.push_back(',');
      body.append(r->bytes);
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
    /// The buffers stay valid until the next call (Beast's BodyWriter rule).
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
        const std::string& bytes = records[next_]->bytes;
        if (bytes.empty()) {
          ++next_;
          continue;
        }
        const std::string_view sep = v_.json && wrote_one_ ? "," : "";
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
    static constexpr size_t kSmall = 16 * 1024;
    static constexpr size_t kScratch = 64 * 1024;
    const value_type& v_;
    std::string scratch_;
    size_t next_ = 0;
    bool opened_ = false;
    bool wrote_one_ = false;
    bool closed_ = false;
  };
};

}  // namespace ds::http_server
