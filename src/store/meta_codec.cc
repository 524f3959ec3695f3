#include "store/meta_codec.h"

namespace ds {

namespace codec {

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

uint64_t Reader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in_.empty()) return fail();
    auto b = static_cast<uint8_t>(in_.front());
    in_.remove_prefix(1);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  return fail();
}

std::string Reader::string() {
  uint64_t n = varint();
  if (!ok_ || n > in_.size()) {
    fail();
    return {};
  }
  std::string s(in_.substr(0, n));
  in_.remove_prefix(n);
  return s;
}

}  // namespace codec

namespace {

using codec::put_string;
using codec::put_varint;
using codec::Reader;

// Version 2 adds the fork depth after the fork reference. Version 1 records
// (written before the fork depth limit) still decode: a fork's depth is then
// unknown, and taken as 1 (the embedded engine recomputes it from the chain
// when it loads).
// Version 3 adds, last, the retention settings and the earliest offset
// (versions 1 and 2: no retention, earliest 0).
constexpr uint8_t kMetaVersion = 3;
constexpr uint8_t kMetaVersionNoRetention = 2;
constexpr uint8_t kMetaVersionNoDepth = 1;

void put_be64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

uint64_t get_be64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

void put_offset(std::string& out, const Offset& o) {
  put_varint(out, o.hi);
  put_varint(out, o.lo);
}

Offset get_offset(Reader& r) {
  Offset o;
  o.hi = r.varint();
  o.lo = r.varint();
  return o;
}

}  // namespace

std::string encode_u64(uint64_t v) {
  std::string s;
  put_be64(s, v);
  return s;
}

std::optional<uint64_t> decode_u64(std::string_view v) {
  if (v.size() != 8) return std::nullopt;
  return get_be64(v);
}

std::string encode_meta(const StreamMeta& m) {
  std::string out;
  out.push_back(static_cast<char>(kMetaVersion));
  put_varint(out, m.id);
  put_string(out, m.path);
  put_string(out, m.config.content_type);
  put_varint(out, m.config.ttl_seconds.has_value());
  put_varint(out, m.config.ttl_seconds.value_or(0));
  put_varint(out, m.config.expires_at_ms.has_value());
  put_varint(out, static_cast<uint64_t>(m.config.expires_at_ms.value_or(0)));
  put_string(out, m.config.expires_at_text);
  put_offset(out, m.tail);
  put_varint(out, m.closed);
  put_varint(out, m.closed_by.has_value());
  if (m.closed_by) {
    put_string(out, m.closed_by->id);
    put_varint(out, m.closed_by->epoch);
    put_varint(out, m.closed_by->seq);
  }
  put_varint(out, m.last_stream_seq.has_value());
  put_string(out, m.last_stream_seq.value_or(""));
  put_varint(out, m.fork.has_value());
  if (m.fork) {
    put_string(out, m.fork->source_path);
    put_varint(out, m.fork->source_id);
    put_offset(out, m.fork->offset);
    put_varint(out, m.fork->sub_offset);
    put_varint(out, m.fork_depth);
  }
  put_varint(out, m.ref_count);
  put_varint(out, m.soft_deleted);
  put_varint(out, static_cast<uint64_t>(m.created_ms));
  put_varint(out, static_cast<uint64_t>(m.last_access_ms));
  put_varint(out, m.config.retention_max_age_s.has_value());
  put_varint(out, m.config.retention_max_age_s.value_or(0));
  put_varint(out, m.config.retention_max_bytes.has_value());
  put_varint(out, m.config.retention_max_bytes.value_or(0));
  put_offset(out, m.earliest);
  return out;
}

std::optional<StreamMeta> decode_meta(std::string_view v) {
  if (v.empty()) return std::nullopt;
  const auto version = static_cast<uint8_t>(v[0]);
  if (version != kMetaVersion && version != kMetaVersionNoRetention &&
      version != kMetaVersionNoDepth)
    return std::nullopt;
  Reader r(v.substr(1));
  StreamMeta m;
  m.id = r.varint();
  m.path = r.string();
  m.config.content_type = r.string();
  bool has_ttl = r.flag();
  uint64_t ttl = r.varint();
  if (has_ttl) m.config.ttl_seconds = ttl;
  bool has_exp = r.flag();
  int64_t exp = r.svarint();
  if (has_exp) m.config.expires_at_ms = exp;
  m.config.expires_at_text = r.string();
  m.tail = get_offset(r);
  m.closed = r.flag();
  if (r.flag()) {
    ProducerTriple t;
    t.id = r.string();
    t.epoch = r.varint();
    t.seq = r.varint();
    m.closed_by = t;
  }
  bool has_seq = r.flag();
  std::string seq = r.string();
  if (has_seq) m.last_stream_seq = seq;
  if (r.flag()) {
    ForkRef f;
    f.source_path = r.string();
    f.source_id = r.varint();
    f.offset = get_offset(r);
    f.sub_offset = r.varint();
    m.fork = f;
    m.fork_depth = version == kMetaVersionNoDepth ? 1 : r.varint();
  }
  m.ref_count = r.varint();
  m.soft_deleted = r.flag();
  m.created_ms = r.svarint();
  m.last_access_ms = r.svarint();
  if (version >= kMetaVersion) {
    bool has_age = r.flag();
    uint64_t age = r.varint();
    if (has_age) m.config.retention_max_age_s = age;
    bool has_bytes = r.flag();
    uint64_t bytes = r.varint();
    if (has_bytes) m.config.retention_max_bytes = bytes;
    m.earliest = get_offset(r);
  }
  if (!r.ok() || !r.done()) return std::nullopt;
  return m;
}

std::string encode_producer(const ProducerState& p) {
  std::string out;
  put_varint(out, p.epoch);
  put_varint(out, p.last_seq);
  put_varint(out, static_cast<uint64_t>(p.updated_ms));
  return out;
}

std::optional<ProducerState> decode_producer(std::string_view v) {
  Reader r(v);
  ProducerState p;
  p.epoch = r.varint();
  p.last_seq = r.varint();
  p.updated_ms = r.svarint();
  if (!r.ok() || !r.done()) return std::nullopt;
  return p;
}

}  // namespace ds
