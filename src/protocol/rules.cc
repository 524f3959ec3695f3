#include "protocol/rules.h"

#include "protocol/headers.h"
#include "protocol/json.h"
#include "protocol/offset.h"

namespace ds {
namespace {

std::string effective_type(const std::string& ct) {
  auto m = media_type(ct);
  return m.empty() ? "application/octet-stream" : m;
}

Result<std::string> frame_body(const std::string& stream_type, const std::string& body,
                               bool allow_empty_array) {
  if (!is_json_media_type(media_type(stream_type))) return body;
  auto batch = frame_json(body);
  if (!batch) return std::move(batch).error();
  if (batch->messages == 0 && !allow_empty_array) {
    return Error(errc::empty_json_array, "empty JSON array: nothing to append");
  }
  return std::move(batch->joined);
}

bool is_etagc(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return c == 0x21 || (c >= 0x23 && c != 0x7F);
}

/// What an opaque tag (the text between the quotes) names, if it is one of
/// the forms the server issues: `<offset>` or `<id>:<start>:<end>[:c]`.
std::optional<TailTag> tail_tag(std::string_view opaque) {
  if (auto off = parse_offset(opaque)) return TailTag{*off, std::nullopt};
  if (opaque.ends_with(":c")) opaque.remove_suffix(2);
  auto first = opaque.find(':');
  if (first == std::string_view::npos) return std::nullopt;
  auto second = opaque.find(':', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  auto id = parse_strict_uint(opaque.substr(0, first));
  auto start = parse_offset(opaque.substr(first + 1, second - first - 1));
  auto end = parse_offset(opaque.substr(second + 1));
  if (!id || !start || !end) return std::nullopt;
  return TailTag{*end, *id};
}

Error precondition_failed(const StreamMeta& meta) {
  Error e(errc::precondition_failed,
          "If-Match does not match the stream's tail " + meta.tail.str());
  e.tail = meta.tail;
  e.closed = meta.closed;
  return e;
}

}  // namespace

Result<TailExpectation> parse_if_match(std::string_view value) {
  const Error malformed(errc::bad_request,
                        "If-Match must be * or a list of entity tags (\"<offset>\" or an ETag)");
  auto ows = [](char c) { return c == ' ' || c == '\t'; };
  TailExpectation out;
  if (trim(value) == "*") {
    out.any = true;
    return out;
  }
  size_t i = 0;
  size_t elements = 0;
  while (i < value.size()) {
    while (i < value.size() && (ows(value[i]) || value[i] == ',')) ++i;
    if (i == value.size()) break;
    bool weak = false;
    if (value.substr(i, 2) == "W/") {
      weak = true;
      i += 2;
    }
    std::optional<TailTag> tag;
    if (i < value.size() && value[i] == '"') {
      size_t close = i + 1;
      while (close < value.size() && is_etagc(value[close])) ++close;
      if (close == value.size() || value[close] != '"') return malformed;
      tag = tail_tag(value.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      // Not an entity tag, but what Stream-Next-Offset says, sent as is.
      size_t end = i;
      while (end < value.size() && value[end] != ',' && !ows(value[end])) ++end;
      auto off = weak ? std::nullopt : parse_offset(value.substr(i, end - i));
      if (!off) return malformed;
      tag = TailTag{*off, std::nullopt};
      i = end;
    }
    ++elements;
    // If-Match compares strongly (RFC 9110 13.1.1): a weak tag never matches.
    if (tag && !weak) out.tags.push_back(*tag);
    while (i < value.size() && ows(value[i])) ++i;
    if (i < value.size() && value[i] != ',') return malformed;
  }
  if (elements == 0) return malformed;
  return out;
}

bool tail_matches(const StreamMeta& meta, const TailExpectation& expected) {
  if (expected.any) return true;
  for (const auto& tag : expected.tags) {
    if (tag.tail == meta.tail && (!tag.stream_id || *tag.stream_id == meta.id)) return true;
  }
  return false;
}

bool create_matches(const StreamMeta& existing, const CreateRequest& req) {
  std::string requested_type = req.config.content_type;
  if (req.forked_from && media_type(requested_type).empty())
    requested_type = existing.config.content_type;
  if (effective_type(requested_type) != effective_type(existing.config.content_type)) return false;
  if (!req.forked_from) {
    if (req.config.ttl_seconds != existing.config.ttl_seconds) return false;
    if (req.config.expires_at_ms != existing.config.expires_at_ms) return false;
  } else {
    // A fork's stored TTL may be inherited; only compare what was asked for.
    if (req.config.ttl_seconds && req.config.ttl_seconds != existing.config.ttl_seconds)
      return false;
    if (req.config.expires_at_ms && req.config.expires_at_ms != existing.config.expires_at_ms)
      return false;
  }
  if (req.config.retention_max_age_s != existing.config.retention_max_age_s) return false;
  if (req.config.retention_max_bytes != existing.config.retention_max_bytes) return false;
  if (req.closed != existing.closed) return false;
  const bool existing_fork = existing.fork.has_value();
  if (req.forked_from.has_value() != existing_fork) return false;
  if (existing_fork) {
    if (*req.forked_from != existing.fork->source_path) return false;
    if (req.fork_offset && *req.fork_offset != existing.fork->offset) return false;
    if (req.fork_sub_offset != existing.fork->sub_offset) return false;
  }
  return true;
}

Result<CreateExisting> decide_create_existing(const StreamMeta& existing, const CreateRequest& req,
                                              int64_t now_ms) {
  if (existing.soft_deleted) {
    return Error(errc::config_mismatch,
                 "a deleted stream at this path is still referenced by forks");
  }
  if (!create_matches(existing, req)) {
    return Error(errc::config_mismatch, "stream exists with a different configuration");
  }
  CreateExisting out{existing, existing.config.ttl_seconds.has_value()};
  if (out.renew_ttl) out.meta.last_access_ms = now_ms;
  return out;
}

Result<NewStream> decide_create_new(const CreateRequest& req, const StreamMeta* source,
                                    int64_t now_ms) {
  NewStream out;
  StreamMeta& meta = out.meta;
  meta.path = req.path;
  meta.created_ms = now_ms;
  meta.last_access_ms = now_ms;
  meta.closed = req.closed;
  if (req.forked_from) {
    if (!source) return Error(errc::not_found, "fork source stream not found");
    if (source->soft_deleted)
      return Error(errc::fork_source_deleted, "fork source stream has been deleted");
    if (!media_type(req.config.content_type).empty() &&
        media_type(req.config.content_type) != media_type(source->config.content_type)) {
      return Error(errc::content_type_mismatch, "Content-Type differs from the fork source's");
    }
    Offset at = req.fork_offset.value_or(source->tail);
    if (at > source->tail)
      return Error(errc::fork_offset_beyond_tail, "Stream-Fork-Offset is beyond the source's tail");
    if (source->fork_depth >= kMaxForkDepth) {
      return Error(errc::bad_request, "fork chain too deep: a fork may be at most " +
                                          std::to_string(kMaxForkDepth) +
                                          " forks away from the root stream of its chain");
    }
    meta.fork_depth = source->fork_depth + 1;
    meta.config = resolve_fork_config(req.config, source->config);
    meta.fork = ForkRef{*req.forked_from, source->id, at, req.fork_sub_offset};
    meta.tail = at;
  } else {
    meta.config = req.config;
    if (media_type(meta.config.content_type).empty())
      meta.config.content_type = "application/octet-stream";
  }
  auto initial = frame_initial_body(meta.config.content_type, req.body);
  if (!initial) return std::move(initial).error();
  out.initial = std::move(*initial);
  return out;
}

Result<std::string> fork_prefix(const std::string& content_type, const std::string& anchor,
                                uint64_t sub_offset) {
  if (is_json_media_type(media_type(content_type))) return json_prefix(anchor, sub_offset);
  if (sub_offset > anchor.size()) {
    return Error(errc::bad_request,
                 "Stream-Fork-Sub-Offset overshoots the append at the fork offset");
  }
  return anchor.substr(0, sub_offset);
}

ProducerVerdict check_producer(const ProducerState* state, const ProducerTriple& p) {
  if (state == nullptr) return p.seq == 0 ? ProducerVerdict::accept : ProducerVerdict::seq_gap;
  if (p.epoch < state->epoch) return ProducerVerdict::stale_epoch;
  if (p.epoch > state->epoch)
    return p.seq == 0 ? ProducerVerdict::accept : ProducerVerdict::bad_epoch_start;
  if (p.seq <= state->last_seq) return ProducerVerdict::duplicate;
  if (p.seq == state->last_seq + 1) return ProducerVerdict::accept;
  return ProducerVerdict::seq_gap;
}

namespace {

/// `take_body`: req.body itself, which a byte stream's record may be moved
/// from; null: copy it.
Result<AppendDecision> decide(const StreamMeta& meta, const ProducerState* producer,
                              const AppendRequest& req, int64_t now_ms, std::string* take_body) {
  const bool has_body = !req.body.empty();

  // 1. Closure comes first so clients always see Stream-Closed: true.
  if (meta.closed) {
    if (req.producer && meta.closed_by && *meta.closed_by == *req.producer) {
      return AppendDecision{AppendDuplicate{req.producer->epoch, req.producer->seq, true}};
    }
    // Close-only is idempotent, unless a producer claims it: then only the
    // producer tuple that closed the stream may repeat it (handled above).
    // A conditional one only if its expectation holds.
    if (!has_body && req.close && !req.producer) {
      if (req.if_match && !tail_matches(meta, *req.if_match)) return precondition_failed(meta);
      return AppendDecision{AlreadyClosed{}};
    }
    Error e(errc::stream_closed, "stream is closed");
    e.closed = true;
    e.tail = meta.tail;
    return e;
  }

  // 2. Content type, only when there is a body to type.
  if (has_body && effective_type(req.content_type) != effective_type(meta.config.content_type)) {
    return Error(errc::content_type_mismatch, "Content-Type '" + req.content_type +
                                                  "' does not match the stream's '" +
                                                  meta.config.content_type + "'");
  }

  // 3. Idempotent producer.
  std::optional<ProducerState> next_producer;
  if (req.producer) {
    const auto& p = *req.producer;
    switch (check_producer(producer, p)) {
      case ProducerVerdict::accept:
        next_producer = ProducerState{p.epoch, p.seq, now_ms};
        break;
      case ProducerVerdict::duplicate:
        return AppendDecision{AppendDuplicate{p.epoch, producer->last_seq, false}};
      case ProducerVerdict::stale_epoch: {
        Error e(errc::producer_stale_epoch, "producer epoch is stale");
        e.producer_epoch = producer->epoch;
        return e;
      }
      case ProducerVerdict::bad_epoch_start:
        return Error(errc::producer_bad_epoch_start,
                     "a new producer epoch must start at Producer-Seq 0");
      case ProducerVerdict::seq_gap: {
        Error e(errc::producer_seq_gap, "producer sequence gap");
        e.expected_seq = producer ? producer->last_seq + 1 : 0;
        e.received_seq = p.seq;
        return e;
      }
    }
  }

  // 4. If-Match: after the producer, so that a retried producer append whose
  // expectation was the tail before its own first attempt is still answered
  // as the duplicate it is; before Stream-Seq, as upstream's proposal has it.
  if (req.if_match && !tail_matches(meta, *req.if_match)) return precondition_failed(meta);

  // 5. Writer sequence (lexicographic, per stream).
  if (req.stream_seq && meta.last_stream_seq && *req.stream_seq <= *meta.last_stream_seq) {
    return Error(
        errc::stream_seq_regression,
        "Stream-Seq '" + *req.stream_seq + "' is not greater than '" + *meta.last_stream_seq + "'");
  }

  // 6. The body itself.
  AppendAccepted accepted;
  accepted.close = req.close;
  accepted.producer = next_producer;
  if (has_body && take_body && !is_json_media_type(media_type(meta.config.content_type))) {
    accepted.record = std::move(*take_body);
    take_body->clear();
  } else if (has_body) {
    auto record = frame_body(meta.config.content_type, req.body, /*allow_empty_array=*/false);
    if (!record) return std::move(record).error();
    accepted.record = std::move(*record);
  }
  return AppendDecision{std::move(accepted)};
}

}  // namespace

Result<AppendDecision> decide_append(const StreamMeta& meta, const ProducerState* producer,
                                     const AppendRequest& req, int64_t now_ms) {
  return decide(meta, producer, req, now_ms, nullptr);
}

Result<AppendDecision> decide_append_taking_body(const StreamMeta& meta,
                                                 const ProducerState* producer, AppendRequest& req,
                                                 int64_t now_ms) {
  return decide(meta, producer, req, now_ms, &req.body);
}

Result<std::string> frame_initial_body(const std::string& content_type, const std::string& body) {
  if (body.empty()) return std::string();
  return frame_body(content_type, body, /*allow_empty_array=*/true);
}

StreamConfig resolve_fork_config(const StreamConfig& requested, const StreamConfig& source) {
  StreamConfig out;
  // Retention is the fork's own, as asked for: it never inherits its
  // source's (the source's retention applies to the source's own data).
  out.retention_max_age_s = requested.retention_max_age_s;
  out.retention_max_bytes = requested.retention_max_bytes;
  out.content_type =
      media_type(requested.content_type).empty() ? source.content_type : requested.content_type;
  if (requested.ttl_seconds) {
    out.ttl_seconds = requested.ttl_seconds;
  } else if (requested.expires_at_ms) {
    out.expires_at_ms = requested.expires_at_ms;
    out.expires_at_text = requested.expires_at_text;
  } else if (source.ttl_seconds) {
    out.ttl_seconds = source.ttl_seconds;
  } else if (source.expires_at_ms) {
    out.expires_at_ms = source.expires_at_ms;
    out.expires_at_text = source.expires_at_text;
  }
  return out;
}

}  // namespace ds
