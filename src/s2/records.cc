// Command records (s2-api.md section 6.1): one header with an empty name whose
// value names the command; the body is the argument.

#include "s2/s2_api.h"

namespace ds::s2 {

AppendRecord fence_record(std::string token) {
  AppendRecord r;
  r.headers.push_back(Header{"", "fence"});
  r.body = std::move(token);  // 0..36 bytes; empty resets the token to ""
  return r;
}

AppendRecord trim_record(uint64_t seq_num) {
  AppendRecord r;
  r.headers.push_back(Header{"", "trim"});
  r.body.resize(8);  // the trim point, 8 bytes big-endian
  for (int i = 7; i >= 0; --i) {
    r.body[i] = static_cast<char>(seq_num & 0xff);
    seq_num >>= 8;
  }
  return r;
}

}  // namespace ds::s2
