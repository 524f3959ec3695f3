#pragma once
// S2's REST wire format (../shared/s2-api.md), with no I/O: the JSON bodies
// the client sends and parses, base64 for `s2-format: base64`, path encoding,
// and how an error response maps to S2Error and to the retry rules.
//
// Pure functions; safe from any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "s2/s2_api.h"

namespace ds::s2::wire {

/// Standard base64 with padding (what `s2-format: base64` uses).
std::string base64_encode(std::string_view bytes);
/// Strict: standard alphabet, padded, no whitespace. nullopt on bad input.
std::optional<std::string> base64_decode(std::string_view text);

/// A JSON string literal (with quotes) for UTF-8 text.
std::string json_string(std::string_view text);

/// Percent-encodes one path segment: everything but [A-Za-z0-9-._~].
std::string encode_path_segment(std::string_view segment);

/// `{"stream":NAME,"config":{"retention_policy":{"infinite":{}}}}`
std::string create_stream_body(std::string_view stream);
/// AppendInput JSON with every header name/value and body in base64.
std::string append_body(const AppendInput& input);

/// Parsers for 2xx bodies. On failure they return false and set *error.
bool parse_append_ack(std::string_view body, AppendAck* ack, std::string* error);
/// A ReadBatch (unary read response, or an SSE `batch` event's data).
bool parse_read_batch(std::string_view body, ReadBatch* batch, std::string* error);
/// `{"tail":{"seq_num":N,...}}`: check tail, 416 bodies and SSE pings. A body
/// without `tail` (an old-style ping) sets *tail to nullopt and succeeds.
bool parse_tail(std::string_view body, std::optional<uint64_t>* tail, std::string* error);

/// `{"streams":[{"name":..,"deleted_at":..},...],"has_more":bool}` (list
/// streams). Names whose `deleted_at` is set go to `last` but not `names`.
bool parse_stream_page(std::string_view body, StreamPage* page, std::string* error);
/// The query string (without `?`) of a list streams request.
std::string list_streams_query(std::string_view prefix, std::string_view start_after,
                               uint64_t limit);

/// The S2Error for a non-2xx response, kind chosen from the status and code
/// as if no retry applies (retryable codes come back as `rejected`; the
/// caller decides between retry, unavailable and ambiguous).
S2Error error_from_response(int status, std::string_view body);

/// S2's `is_retryable`: 408, 429, 500, 502, 503, 504 and 409
/// transaction_conflict. `code` may be empty (a proxy's answer).
bool is_retryable(int status, std::string_view code);

/// The same by code alone (for SSE `error` events, which have no status);
/// includes the cloud's `reconnect_advised`.
bool is_retryable_code(std::string_view code);

/// S2's `has_no_side_effects` for the retryable codes, as of s2-lite 0.42.7:
/// only these prove that an append did not happen.
bool has_no_side_effects(std::string_view code);

}  // namespace ds::s2::wire
