#include "server/live_read.h"

#include <charconv>

#include "common/json_string.h"
#include "protocol/cursor.h"
#include "protocol/sse.h"

namespace ds::live {

std::string_view chunk_size_line(size_t n, ChunkSizeBuf& buf) {
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + 20, n, 16);
  (void)ec;  // 20 hex digits always fit a size_t
  *end++ = '\r';
  *end++ = '\n';
  return {buf.data(), static_cast<size_t>(end - buf.data())};
}

void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  ChunkSizeBuf buf;
  out.append(chunk_size_line(data.size(), buf));
  out.append(data);
  out.append(kCrlf);
}

namespace {

/// A data event's payload: the records' bytes, or a JSON array of them.
std::string sse_payload(const std::vector<RecordPtr>& records, bool json) {
  size_t total = json ? 2 : 0;
  for (const auto& r : records) total += r->bytes.size() + 1;
  std::string body;
  body.reserve(total);
  if (json) body.push_back('[');
  bool first = true;
  for (const auto& r : records) {
    if (r->bytes.empty()) continue;
    if (json && !first) body.push_back(',');
    body.append(r->bytes);
    first = false;
  }
  if (json) body.push_back(']');
  return body;
}

/// Appends a control event for `next` (moving st.cursor on unless closed).
void sse_control(SseRead& st, const Clock& clock, std::string& out, Offset next, bool up_to_date,
                 bool closed) {
  SseControl c;
  c.next = next;
  c.up_to_date = up_to_date;
  c.closed = closed;
  if (!closed) {
    c.cursor = next_cursor(clock.now_ms(), st.cursor);
    st.cursor = c.cursor;  // later cursors keep moving forward
  }
  append_sse_control(out, c);
}

/// Where the last `hold` bytes of `payload` (st.held, then the records'
/// bytes) begin, as an offset a client can resume from. Offsets are the
/// engine's: only where a record's offsets count its bytes (the embedded
/// engine) may one point inside it. Elsewhere (S2: one sequence number per
/// record) the hold grows to the start of the record it begins in. A hold
/// that reaches into the bytes held before takes all of them: they begin at
/// st.held_from. Returns the (possibly larger) hold.
size_t locate_hold(const SseRead& st, const std::vector<RecordPtr>& records, size_t payload_size,
                   size_t hold, Offset& from) {
  size_t left = hold;
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    const Record& r = **it;
    const size_t n = r.bytes.size();
    if (left >= n) {
      left -= n;
      from = r.begin;
      if (left == 0) return hold;
      continue;
    }
    const bool byte_offsets = r.begin.hi == r.end.hi && r.end.lo - r.begin.lo == n;
    if (byte_offsets) {
      from = Offset{r.end.hi, r.end.lo - left};
      return hold;
    }
    from = r.begin;
    return hold + (n - left);
  }
  from = st.held_from;
  return payload_size;
}

/// Appends the data event of `records` (a text stream holds back a split
/// UTF-8 character, and reports the offset before it) and its control event.
void sse_emit(SseRead& st, const Clock& clock, std::string& out,
              const std::vector<RecordPtr>& records, Offset next, bool up_to_date, bool closed) {
  if (!records.empty() || (closed && !st.held.empty())) {
    std::string payload;
    if (st.json) {
      payload = sse_payload(records, true);
    } else {
      payload = std::move(st.held);
      st.held.clear();
      for (const auto& r : records) payload.append(r->bytes);
      if (!st.base64 && !closed) {
        size_t keep = utf8_complete_prefix(payload);
        if (keep < payload.size()) {
          Offset from;
          keep = payload.size() -
                 locate_hold(st, records, payload.size(), payload.size() - keep, from);
          st.held = payload.substr(keep);
          st.held_from = from;
          payload.resize(keep);
          next = from;
          up_to_date = false;
        }
      }
    }
    if (!payload.empty() || st.json) append_sse_data(out, payload, st.base64);
  }
  sse_control(st, clock, out, next, up_to_date, closed);
}

}  // namespace

SseNext sse_next(const SseRead& st) {
  if (st.ended) return SseNext::end;
  return st.up_to_date ? SseNext::wait : SseNext::read;
}

SseNext sse_on_read(SseRead& st, const Clock& clock, const ReadOutcome& r, std::string& out) {
  const bool closed = r.up_to_date && r.meta.closed;
  sse_emit(st, clock, out, r.records, r.next, r.up_to_date, closed);
  st.at = r.next;
  st.up_to_date = r.up_to_date;
  st.ended = st.ended || closed;
  return sse_next(st);
}

SseNext sse_on_wake(SseRead& st, const Clock& clock, const Wake& w, std::string& out) {
  switch (w.kind) {
    case Wake::Kind::data: {
      const Offset next = w.records.empty() ? st.at : w.records.back()->end;
      const bool caught_up = next >= w.tail;
      const bool closed = caught_up && w.closed;
      sse_emit(st, clock, out, w.records, next, caught_up, closed);
      st.at = next;
      st.up_to_date = caught_up;
      st.ended = st.ended || closed;
      break;
    }
    case Wake::Kind::closed:
      sse_emit(st, clock, out, {}, w.tail, true, true);
      st.ended = true;
      break;
    case Wake::Kind::gone:
      st.ended = true;  // nothing more will come: end the response
      break;
    case Wake::Kind::catch_up:
      st.up_to_date = false;
      break;
  }
  return sse_next(st);
}

SseNext sse_on_trimmed(SseRead& st, const Error& e, std::string& out) {
  out += "event: error\ndata: {\"code\":\"";
  out += errc_name(e.code);
  out += "\",\"message\":";
  append_json_string(out, e.message);
  if (e.earliest) {
    out += ",\"earliest_offset\":";
    append_json_string(out, e.earliest->text().view());
  }
  out += "}\n\n";
  st.ended = true;
  return sse_next(st);
}

void sse_on_stop(SseRead& st, const Clock& clock, std::string& out) {
  if (st.ended) return;
  const bool holding = !st.held.empty();
  sse_control(st, clock, out, holding ? st.held_from : st.at, st.up_to_date && !holding, false);
}

bool sse_broadcast(const Wake& w, Offset at, bool json, bool base64, SseBroadcast& out) {
  out.next = w.records.empty() ? at : w.records.back()->end;
  out.caught_up = out.next >= w.tail;
  out.closed = out.caught_up && w.closed;
  out.data.clear();
  if (w.records.empty()) return true;
  std::string payload = sse_payload(w.records, json);
  if (!json && !base64 && !out.closed && utf8_complete_prefix(payload) < payload.size())
    return false;
  if (!payload.empty() || json) append_sse_data(out.data, payload, base64);
  return true;
}

SseNext sse_on_broadcast(SseRead& st, const Clock& clock, const SseBroadcast& b,
                         std::string& control) {
  sse_control(st, clock, control, b.next, b.caught_up, b.closed);
  st.at = b.next;
  st.up_to_date = b.caught_up;
  st.ended = st.ended || b.closed;
  return sse_next(st);
}

SseNext sse_share_broadcast(SseRead& st, const SseRead& first, const SseBroadcast& b) {
  st.cursor = first.cursor;
  st.at = b.next;
  st.up_to_date = b.caught_up;
  st.ended = st.ended || b.closed;
  return sse_next(st);
}

// ------------------------------------------------------------------ long-poll

PollStep poll_on_first_read(Offset& at, const ReadOutcome& r) {
  at = r.next;
  if (r.records.empty()) return {PollStep::Kind::wait, r.next, false, false};
  return {PollStep::Kind::data, r.next, r.up_to_date, r.meta.closed};
}

PollStep poll_on_wake(Offset& at, const Wake& w) {
  switch (w.kind) {
    case Wake::Kind::data: {
      const Offset next = w.records.empty() ? at : w.records.back()->end;
      return {PollStep::Kind::data, next, next >= w.tail, w.closed};
    }
    case Wake::Kind::closed:
      return {PollStep::Kind::closed, w.tail, true, true};
    case Wake::Kind::gone:
      return {PollStep::Kind::gone, at, false, false};
    case Wake::Kind::catch_up:
      break;
  }
  return {PollStep::Kind::read, at, false, false};
}

PollStep poll_on_read(Offset& at, const ReadOutcome& r) {
  if (!r.records.empty() || r.meta.closed)
    return {PollStep::Kind::data, r.next, r.up_to_date, r.meta.closed};
  at = r.next;
  return {PollStep::Kind::wait, r.next, false, false};
}

}  // namespace ds::live
