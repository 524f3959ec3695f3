#include "store/s2/fold.h"

#include <algorithm>

#include "protocol/headers.h"
#include "store/meta_codec.h"

namespace ds::s2fold {
namespace {

using s2::AppendRecord;
using s2::Header;
using s2::SequencedRecord;

constexpr uint8_t kCheckpointVersion = 1;

uint64_t metered(const SequencedRecord& r) {
  uint64_t n = 8 + 2 * r.headers.size() + r.body.size();
  for (const auto& h : r.headers) n += h.name.size() + h.value.size();
  return n;
}

using codec::put_string;
using codec::put_varint;

std::optional<ProducerTriple> producer_of(const SequencedRecord& r) {
  const std::string* id = find_header(r, kProducerId);
  const std::string* e = find_header(r, kProducerEpoch);
  const std::string* s = find_header(r, kProducerSeq);
  if (!id || !e || !s) return std::nullopt;
  auto ev = parse_safe_uint(*e);
  auto sv = parse_safe_uint(*s);
  if (!ev || !sv) return std::nullopt;
  return ProducerTriple{*id, *ev, *sv};
}

/// Forgets the retained records below `seq`.
void drop_retained(FoldState& st, uint64_t seq) {
  while (!st.retained.empty() && st.retained.front().seq < seq) {
    st.retained_bytes -= st.retained.front().size;
    st.retained.pop_front();
  }
  st.retained_from = std::max(st.retained_from, seq);
}

void clear_retained(FoldState& st, uint64_t from) {
  st.retained.clear();
  st.retained_bytes = 0;
  st.retained_from = from;
}

void mark_checkpoint(FoldState& st, uint64_t seq) {
  st.checkpoint_seq = seq;
  st.has_checkpoint = true;
  st.records_since_checkpoint = 0;
  st.bytes_since_checkpoint = 0;
}

}  // namespace

std::optional<uint64_t> trim_point(const SequencedRecord& r) {
  if (!r.is_command() || r.headers[0].value != "trim" || r.body.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (unsigned char ch : r.body) v = (v << 8) | ch;
  return v;
}

const std::string* find_header(const SequencedRecord& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

FoldResult fold(FoldState& st, const std::vector<SequencedRecord>& records,
                std::unordered_map<std::string, uint64_t>* write_ids) {
  FoldResult out;
  CommitEvent& event = out.event;
  for (const auto& r : records) {
    if (r.seq_num < st.next_seq) continue;
    if (r.seq_num > st.next_seq && st.exists) {
      out.hole = true;
      break;
    }
    st.next_seq = r.seq_num + 1;
    if (r.is_command()) {
      // A trim inside the live incarnation is retention's: the data before
      // its point is gone (S2 deletes it later; reads stop at the earliest
      // offset at once). S2 lets a trim remove at most up to itself.
      auto point = trim_point(r);
      if (!point || !st.exists) continue;
      const uint64_t p = std::min({*point, r.seq_num + 1, st.meta.tail.lo});
      const Offset at{st.meta.id, p};
      if (p > st.start_seq && st.meta.earliest < at) {
        st.meta.earliest = at;
        drop_retained(st, p);
      }
      continue;
    }
    const std::string* kind = find_header(r, kKind);
    if (!kind) continue;
    if (write_ids && !write_ids->empty()) {
      if (const std::string* w = find_header(r, kWriteId)) {
        auto it = write_ids->find(*w);
        if (it != write_ids->end()) it->second = r.seq_num;
      }
    }
    if (*kind == kCheckpoint) {
      mark_checkpoint(st, r.seq_num);
      continue;
    }
    ++st.records_since_checkpoint;
    st.bytes_since_checkpoint += metered(r);
    auto ts = static_cast<int64_t>(r.timestamp);
    if (*kind == kMeta) {
      auto m = decode_meta(r.body);
      if (!m) continue;
      st.meta = std::move(*m);
      st.producers.clear();
      st.exists = true;
      st.ever_existed = true;
      st.start_seq = r.seq_num;
      st.last_hi = std::max(st.last_hi, st.meta.id);
      st.last_access_ms = ts;
      st.meta.created_ms = ts;
      st.meta.tail = Offset{st.meta.id, r.seq_num + 1};
      clear_retained(st, r.seq_num + 1);
      mark_checkpoint(st, r.seq_num);  // an incarnation's state starts here
      out.changed = true;
      continue;
    }
    if (*kind == kGone) {
      if (const std::string* h = find_header(r, "h")) {
        if (auto v = parse_safe_uint(*h)) {
          st.last_hi = std::max(st.last_hi, *v);
          st.ever_existed = true;
        }
      }
    }
    if (!st.exists) continue;
    if (*kind == kData || *kind == kClose) {
      auto p = producer_of(r);
      if (p) st.producers[p->id] = ProducerState{p->epoch, p->seq, ts};
      if (const std::string* ss = find_header(r, kStreamSeq)) st.meta.last_stream_seq = *ss;
      if (*kind == kData) {
        auto rec = std::make_shared<Record>();
        rec->begin = Offset{st.meta.id, r.seq_num};
        rec->end = Offset{st.meta.id, r.seq_num + 1};
        rec->bytes = r.body;
        event.records.push_back(std::move(rec));
        if (st.meta.config.has_retention()) {
          st.retained.push_back(RetainedRecord{r.seq_num, ts, r.body.size()});
          st.retained_bytes += r.body.size();
        }
      }
      if (*kind == kClose || find_header(r, kCloses)) {
        st.meta.closed = true;
        st.meta.closed_by = p;
      }
      st.last_access_ms = ts;
      st.meta.tail = Offset{st.meta.id, r.seq_num + 1};
      out.changed = true;
    } else if (*kind == kGone) {
      const std::string* g = find_header(r, "g");
      if (g && *g == "soft") {
        st.meta.soft_deleted = true;
      } else {
        st.exists = false;
        st.producers.clear();
        clear_retained(st, r.seq_num + 1);
      }
      event.gone = true;
      out.changed = true;
    } else if (*kind == kRef) {
      const std::string* d = find_header(r, "r");
      if (d && *d == "+1") ++st.meta.ref_count;
      if (d && *d == "-1" && st.meta.ref_count > 0) --st.meta.ref_count;
    } else if (*kind == kTouch) {
      st.last_access_ms = std::max(st.last_access_ms, ts);
    }
  }
  // The tail is the end of the last record that holds data or closure:
  // control records after it (TTL touches, fork references, checkpoints) and
  // foreign records do not move a stream's offsets, so a closed stream's
  // final offset stays final.
  st.meta.last_access_ms = st.last_access_ms;
  event.tail = st.meta.tail;
  event.closed = st.meta.closed;
  if (!st.exists || st.meta.soft_deleted) event.gone = true;
  return out;
}

std::string encode_checkpoint(const FoldState& st, std::optional<Offset> earliest) {
  std::string out;
  out.push_back(static_cast<char>(kCheckpointVersion));
  put_varint(out, st.exists);
  put_varint(out, st.start_seq);
  put_varint(out, st.last_hi);
  put_varint(out, st.ever_existed);
  put_varint(out, static_cast<uint64_t>(st.last_access_ms));
  if (earliest) {
    StreamMeta m = st.meta;
    m.earliest = *earliest;
    put_string(out, encode_meta(m));
  } else {
    put_string(out, encode_meta(st.meta));
  }
  put_varint(out, st.producers.size());
  for (const auto& [id, p] : st.producers) {
    put_string(out, id);
    put_string(out, encode_producer(p));
  }
  return out;
}

bool start_from_checkpoint(FoldState& st, uint64_t seq, std::string_view body) {
  if (body.empty() || static_cast<uint8_t>(body[0]) != kCheckpointVersion) return false;
  codec::Reader r(body.substr(1));
  FoldState s;
  s.exists = r.flag();
  s.start_seq = r.varint();
  s.last_hi = r.varint();
  s.ever_existed = r.flag();
  s.last_access_ms = r.svarint();
  auto meta = decode_meta(r.string());
  uint64_t n = r.varint();
  if (!r.ok() || !meta) return false;
  s.meta = std::move(*meta);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string id = r.string();
    auto p = decode_producer(r.string());
    if (!p) return false;
    s.producers.emplace(std::move(id), *p);
  }
  if (!r.ok() || !r.done()) return false;
  s.meta.last_access_ms = s.last_access_ms;
  s.next_seq = seq + 1;
  s.retained_from = seq + 1;  // the retention pass reads what lies before
  mark_checkpoint(s, seq);
  st = std::move(s);
  return true;
}

bool expired(const FoldState& st, int64_t now) {
  if (!st.exists || st.meta.soft_deleted) return false;
  const auto& cfg = st.meta.config;
  if (cfg.expires_at_ms) return now >= *cfg.expires_at_ms;
  if (cfg.ttl_seconds)
    return now >= st.last_access_ms + static_cast<int64_t>(*cfg.ttl_seconds) * 1000;
  return false;
}

AppendRecord control_record(std::string_view kind) {
  return AppendRecord{{Header{std::string(kKind), std::string(kind)}}, {}};
}

AppendRecord append_record(const AppendRequest& req, AppendAccepted& acc) {
  AppendRecord rec;
  rec.headers.push_back(
      Header{std::string(kKind), std::string(acc.record.empty() ? kClose : kData)});
  if (req.producer) {
    rec.headers.push_back(Header{std::string(kProducerId), req.producer->id});
    rec.headers.push_back(Header{std::string(kProducerEpoch), std::to_string(req.producer->epoch)});
    rec.headers.push_back(Header{std::string(kProducerSeq), std::to_string(req.producer->seq)});
  }
  if (req.stream_seq) rec.headers.push_back(Header{std::string(kStreamSeq), *req.stream_seq});
  if (acc.close && !acc.record.empty()) rec.headers.push_back(Header{std::string(kCloses), "1"});
  rec.body = std::move(acc.record);
  return rec;
}

AppendRecord checkpoint_record(const FoldState& st, std::optional<Offset> earliest) {
  AppendRecord rec = control_record(kCheckpoint);
  rec.body = encode_checkpoint(st, earliest);
  return rec;
}

void stamp(std::vector<AppendRecord>& records, const std::string& write_id,
           uint64_t checkpoint_seq) {
  // A command record (a retention trim) must keep its one header.
  auto is_command = [](const AppendRecord& r) {
    return r.headers.size() == 1 && r.headers[0].name.empty();
  };
  std::string k = std::to_string(checkpoint_seq);
  bool first = true;
  for (auto& r : records) {
    if (is_command(r)) continue;
    if (first) r.headers.push_back(Header{std::string(kWriteId), write_id});
    first = false;
    r.headers.push_back(Header{std::string(kCheckpointAt), k});
  }
}

}  // namespace ds::s2fold
