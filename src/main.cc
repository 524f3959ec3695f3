// dstreamd: a Durable Streams server.

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <chrono>
#include <future>
#include <iostream>
#include <iterator>
#include <memory>

#include "auth/policy.h"
#include "common/clock.h"
#include "common/log.h"
#include "hub/live_hub.h"
#include "metrics/metrics.h"
#include "s2/basin_probe.h"
#include "s2/config_check.h"
#include "s2/http_s2_api.h"
#include "server/server.h"
#include "store/log/log_store.h"
#include "store/s2/s2_store.h"
#include "subs/manager.h"

namespace po = boost::program_options;

namespace {

/// `500ms`, `30s`, `2m`, `12h`, `7d`, or a bare number of seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i > 12) return std::nullopt;
  long long n = std::stoll(s.substr(0, i));
  std::string unit = s.substr(i);
  if (unit == "ms") return std::chrono::milliseconds(n);
  if (unit == "s" || unit.empty()) return std::chrono::milliseconds(n * 1000);
  if (unit == "m") return std::chrono::milliseconds(n * 60'000);
  if (unit == "h") return std::chrono::milliseconds(n * 3'600'000);
  if (unit == "d") return std::chrono::milliseconds(n * 86'400'000);
  return std::nullopt;
}

/// DSTREAMD_LONG_POLL_TIMEOUT -> long-poll-timeout; other variables (even
/// DSTREAMD_-prefixed ones that name no option, like DSTREAMD_BIN) are ignored.
std::string env_to_option(const po::options_description& desc, const std::string& env) {
  const std::string prefix = "DSTREAMD_";
  if (env.rfind(prefix, 0) != 0) return "";
  std::string name = env.substr(prefix.size());
  for (auto& c : name)
    c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (name == "help" || !desc.find_nothrow(name, false)) return "";
  return name;
}

// ---- JWT auth flags (auth/): off unless a key is configured.
struct AuthFlags {
  std::string secret, public_key, jwks, issuer, audience, skew = "30s";
  bool allow_query_token = false;
};

void add_auth_options(po::options_description& desc, AuthFlags& f) {
  po::options_description g("Authentication (off unless a key is given; never logged)");
  g.add_options()("jwt-secret", po::value(&f.secret),
                  "HS256 secret (>= 32 bytes); prefer DSTREAMD_JWT_SECRET over the command line")(
      "jwt-public-key", po::value(&f.public_key),
      "PEM public key file: RSA (RS256) or P-256 (ES256)")(
      "jwks-file", po::value(&f.jwks), "JWK Set file of RSA / EC P-256 keys, chosen by kid")(
      "jwt-issuer", po::value(&f.issuer), "require this iss claim")(
      "jwt-audience", po::value(&f.audience), "require this aud claim")(
      "jwt-clock-skew", po::value(&f.skew)->default_value(f.skew), "allowance for exp and nbf")(
      "allow-query-token", po::bool_switch(&f.allow_query_token),
      "also accept the token as ?token= (for EventSource, which cannot set headers)");
  desc.add(g);
}

/// Fills options.auth when a key is configured; false (after a message) on bad flags.
bool configure_auth(const AuthFlags& f, const po::variables_map& vm, ds::ServerOptions& options) {
  ds::auth::AuthConfig config;
  auto fail = [](const std::string& msg) {
    std::cerr << "dstreamd: " << msg << "\n";
    return false;
  };
  if (vm.count("jwt-secret")) {
    auto key = ds::auth::Key::hmac(f.secret);
    if (!key) return fail("--jwt-secret: " + key.error().message);
    config.keys.add(std::move(*key));
  }
  if (vm.count("jwt-public-key")) {
    auto key = ds::auth::load_pem_file(f.public_key);
    if (!key) return fail("--jwt-public-key: " + key.error().message);
    config.keys.add(std::move(*key));
  }
  if (vm.count("jwks-file")) {
    auto keys = ds::auth::load_jwks_file(f.jwks);
    if (!keys) return fail("--jwks-file: " + keys.error().message);
    for (auto& k : *keys) config.keys.add(std::move(k));
  }
  auto skew = parse_duration(f.skew);
  if (!skew) return fail("--jwt-clock-skew: durations look like 500ms, 30s or 2m");
  const bool other = vm.count("jwt-issuer") || vm.count("jwt-audience") || f.allow_query_token;
  if (config.keys.empty()) {
    if (other) return fail("--jwt-issuer, --jwt-audience and --allow-query-token need a JWT key");
    return true;
  }
  if (vm.count("jwt-issuer")) config.issuer = f.issuer;
  if (vm.count("jwt-audience")) config.audience = f.audience;
  config.clock_skew_ms = skew->count();
  config.allow_query_token = f.allow_query_token;
  std::cout << "dstreamd: bearer JWT required on streams (" << config.keys.size() << " key(s)"
            << (f.allow_query_token ? ", ?token= accepted" : "") << ")" << std::endl;
  options.auth =
      std::make_shared<ds::auth::Authenticator>(std::move(config), ds::SystemClock::instance());
  return true;
}

// ---- Production surface: CORS, compression, shutdown, logs.
struct OpsFlags {
  std::string cors_origins = "*";
  size_t gzip_min_bytes = 1024;
  std::string shutdown_timeout = "10s";
  size_t max_pending_output_bytes = 4u << 20;
  std::string log_format = "text";
  std::string log_level = "info";
  std::string write_timeout = "30s";
  size_t max_connections = 0;
  size_t max_response_buffer_bytes = 256u << 20;
  std::string request_head_timeout = "10s";
  std::string request_body_timeout = "60s";
  size_t max_header_bytes = 64u << 10;
  size_t max_header_count = 100;
  size_t max_readers_per_stream = 10'000;
  size_t max_parked_readers = 100'000;
  bool ui = true;
};

void add_ops_options(po::options_description& desc, OpsFlags& f) {
  po::options_description g("Operations");
  g.add_options()("cors-origins", po::value(&f.cors_origins)->default_value(f.cors_origins),
                  "allowed CORS origins: * (any) or a comma-separated list (echoed with "
                  "credentials allowed)")(
      "gzip-min-bytes", po::value(&f.gzip_min_bytes)->default_value(f.gzip_min_bytes),
      "gzip catch-up responses of at least this many bytes (0: never)")(
      "max-pending-output-bytes",
      po::value(&f.max_pending_output_bytes)->default_value(f.max_pending_output_bytes),
      "SSE output that may queue for one slow client before it is disconnected (it resumes "
      "from its last offset)")(
      "write-timeout", po::value(&f.write_timeout)->default_value(f.write_timeout),
      "a client that takes no bytes of a response for this long is disconnected")(
      "max-response-buffer-bytes",
      po::value(&f.max_response_buffer_bytes)->default_value(f.max_response_buffer_bytes),
      "response bytes being written, server-wide, past which a write that makes no progress "
      "for 1 s is cut (instead of --write-timeout)")(
      "max-connections", po::value(&f.max_connections)->default_value(f.max_connections),
      "open connections past which new ones get 503 and are closed (0: the file-descriptor "
      "limit minus a reserve for the store and S2)")(
      "request-head-timeout",
      po::value(&f.request_head_timeout)->default_value(f.request_head_timeout),
      "once a request's first byte has arrived, its whole head must arrive within this (408 "
      "and close; connections may idle 75 s between requests)")(
      "request-body-timeout",
      po::value(&f.request_body_timeout)->default_value(f.request_body_timeout),
      "a request's whole body must arrive within this from the end of its head (408 and close)")(
      "max-header-bytes", po::value(&f.max_header_bytes)->default_value(f.max_header_bytes),
      "request line plus header fields, in bytes, past which a request gets 431 and is closed")(
      "max-header-count", po::value(&f.max_header_count)->default_value(f.max_header_count),
      "header fields past which a request gets 431 and is closed (0: no limit)")(
      "max-readers-per-stream",
      po::value(&f.max_readers_per_stream)->default_value(f.max_readers_per_stream),
      "live readers (waiting long-polls, SSE responses) of one stream past which a new one "
      "gets 503 with Retry-After (0: no limit)")(
      "max-parked-readers", po::value(&f.max_parked_readers)->default_value(f.max_parked_readers),
      "live readers (waiting long-polls, SSE responses) of the whole server past which a new "
      "one gets 503 with Retry-After (0: no limit)")(
      "shutdown-timeout", po::value(&f.shutdown_timeout)->default_value(f.shutdown_timeout),
      "on SIGTERM/SIGINT, how long in-flight requests may take before exiting anyway")(
      "log-format", po::value(&f.log_format)->default_value(f.log_format), "text or json")(
      "log-level", po::value(&f.log_level)->default_value(f.log_level),
      "debug, info (one access-log line per request), warn or error")(
      "ui", po::value(&f.ui)->default_value(f.ui)->implicit_value(true),
      "serve the inspector page at /ui/ (/ redirects to it); --ui=false: both 404");
  desc.add(g);
}

struct SubsFlags {
  bool enabled = true;
  std::string signing_key;  // PEM path; embedded default: <data-dir>/webhook-signing-key.pem
  bool allow_localhost = false;
  std::string public_url;
  unsigned max_deliveries = 64;
};

void add_subs_options(po::options_description& desc, SubsFlags& f) {
  po::options_description g("Subscriptions (PROTOCOL.md 6-7, under /v1/stream/__ds/)");
  g.add_options()("subscriptions", po::value(&f.enabled)->default_value(f.enabled),
                  "serve webhook and pull-wake subscriptions")(
      "webhook-signing-key", po::value(&f.signing_key),
      "PEM file of the Ed25519 key that signs webhooks and wake tokens; embedded store: "
      "default <data-dir>/webhook-signing-key.pem, made on first start; S2: required (the "
      "same file on every node) for subscriptions to be on")(
      "webhook-allow-localhost", po::value(&f.allow_localhost)->default_value(f.allow_localhost),
      "let webhooks go to http://localhost and http://127.0.0.x (development only)")(
      "public-url", po::value(&f.public_url),
      "base URL clients reach the stream root at, for callback and JWKS URLs (e.g. "
      "https://streams.example/v1/stream/); default: from each request's Host")(
      "webhook-max-concurrency", po::value(&f.max_deliveries)->default_value(f.max_deliveries),
      "webhook requests in flight at once (more wait their turn)");
  desc.add(g);
}

/// The subscription manager, or null when subscriptions are off. Prints why
/// and returns false on a configuration error.
bool make_subscriptions(const SubsFlags& f, const std::string& storage, const std::string& data_dir,
                        ds::StreamStore& store, ds::metrics::Registry& registry,
                        std::shared_ptr<ds::subs::Manager>* out) {
  if (!f.enabled) return true;
  std::string key_path = f.signing_key;
  if (key_path.empty()) {
    if (storage != "embedded") {
      ds::log::warn(
          "subscriptions off: --storage s2 needs --webhook-signing-key (the same key on every "
          "node)");
      return true;
    }
    key_path = data_dir + "/webhook-signing-key.pem";
  }
  auto key = ds::subs::SigningKey::load_or_create(key_path);
  if (!key) {
    std::cerr << "dstreamd: --webhook-signing-key: " << key.error().message << "\n";
    return false;
  }
  if (f.max_deliveries == 0) {
    std::cerr << "dstreamd: --webhook-max-concurrency must be at least 1\n";
    return false;
  }
  std::string public_url = f.public_url;
  if (!public_url.empty() && public_url.back() != '/') public_url.push_back('/');
  ds::subs::WebhookClientOptions client_options;
  client_options.allow_localhost = f.allow_localhost;
  std::string error;
  auto client = ds::subs::make_webhook_client(client_options, &error);
  if (!client) {
    std::cerr << "dstreamd: webhook client: " << error << "\n";
    return false;
  }
  ds::subs::ManagerOptions options;
  options.public_url = public_url;
  options.allow_localhost = f.allow_localhost;
  options.max_deliveries = f.max_deliveries;
  // Other nodes write the same basin: look for what they did once a second.
  if (storage == "s2") options.sweep_interval_ms = 1000;
  *out = std::make_shared<ds::subs::Manager>(options, store, ds::SystemClock::instance(),
                                             std::move(*key), std::move(client), registry);
  return true;
}

/// Raises the soft limit on open files to the hard limit (every connection is
/// one). Returns the soft limit before.
rlim_t raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  const rlim_t before = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    // An unlimited hard limit cannot be the soft one: the kernel caps it at
    // fs.nr_open (1 Mi by default).
    if (want.rlim_max == RLIM_INFINITY) want.rlim_max = 1 << 20;
    want.rlim_cur = want.rlim_max;
    setrlimit(RLIMIT_NOFILE, &want);
  }
  return before;
}

/// --max-connections 0: the open file limit minus a reserve for the embedded
/// store's files, the S2 client's connections and the listener (an eighth,
/// at least 64, at most half); 0 (no limit) if the limit is unknown.
size_t default_max_connections() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
  const size_t limit = rl.rlim_cur;
  const size_t reserve = std::min(limit / 2, std::max<size_t>(64, limit / 8));
  return std::max<size_t>(1, limit - reserve);
}

/// The soft open-file limit before raise_fd_limit(), logged once the server
/// is bound (a start that fails on its configuration prints only why).
rlim_t g_fd_limit_before = 0;

void log_fd_limit(size_t max_connections) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  auto num = [](rlim_t v) { return v == RLIM_INFINITY ? uint64_t{0} : uint64_t{v}; };
  ds::log::info("open file limit", {{"soft", num(rl.rlim_cur)},
                                    {"hard", num(rl.rlim_max)},
                                    {"soft_before", num(g_fd_limit_before)},
                                    {"max_connections", uint64_t{max_connections}}});
}

/// Applies the flags; false (after a message) on bad values.
bool configure_ops(const OpsFlags& f, ds::ServerOptions& options) {
  auto level = ds::log::parse_level(f.log_level);
  auto format = ds::log::parse_format(f.log_format);
  if (!level || !format) {
    std::cerr << "dstreamd: --log-level must be debug, info, warn or error; --log-format text or "
                 "json\n";
    return false;
  }
  ds::log::configure(*format, *level);
  const rlim_t fd_limit_before = raise_fd_limit();
  auto timeout = parse_duration(f.shutdown_timeout);
  if (!timeout) {
    std::cerr << "dstreamd: --shutdown-timeout: durations look like 500ms, 30s or 2m\n";
    return false;
  }
  options.shutdown_timeout = *timeout;
  auto write_timeout = parse_duration(f.write_timeout);
  if (!write_timeout || write_timeout->count() == 0) {
    std::cerr << "dstreamd: --write-timeout: a positive duration like 500ms, 30s or 2m\n";
    return false;
  }
  options.write_timeout = *write_timeout;
  if (f.max_response_buffer_bytes == 0) {
    std::cerr << "dstreamd: --max-response-buffer-bytes must be positive\n";
    return false;
  }
  options.max_response_buffer_bytes = f.max_response_buffer_bytes;
  auto head_timeout = parse_duration(f.request_head_timeout);
  auto body_timeout = parse_duration(f.request_body_timeout);
  if (!head_timeout || head_timeout->count() == 0 || !body_timeout || body_timeout->count() == 0) {
    std::cerr << "dstreamd: --request-head-timeout and --request-body-timeout: a positive "
                 "duration like 500ms, 30s or 2m\n";
    return false;
  }
  options.request_head_timeout = *head_timeout;
  options.request_body_timeout = *body_timeout;
  if (f.max_header_bytes < 256 || f.max_header_bytes > (1u << 30)) {
    std::cerr << "dstreamd: --max-header-bytes must be between 256 and 1073741824\n";
    return false;
  }
  options.max_header_bytes = f.max_header_bytes;
  options.max_header_count = f.max_header_count;
  options.max_readers_per_stream = f.max_readers_per_stream;
  options.max_parked_readers = f.max_parked_readers;
  options.max_connections = f.max_connections ? f.max_connections : default_max_connections();
  g_fd_limit_before = fd_limit_before;
  options.gzip_min_bytes = f.gzip_min_bytes;
  options.ui = f.ui;
  if (f.max_pending_output_bytes == 0) {
    std::cerr << "dstreamd: --max-pending-output-bytes must be positive\n";
    return false;
  }
  options.max_pending_output_bytes = f.max_pending_output_bytes;
  options.cors_origins.clear();
  std::string_view rest = f.cors_origins;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    auto item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front())))
      item.remove_prefix(1);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back())))
      item.remove_suffix(1);
    while (!item.empty() && item.back() == '/') item.remove_suffix(1);  // origins have no path
    if (!item.empty()) options.cors_origins.emplace_back(item);
  }
  return true;
}

/// The embedded engine's group commits, observed by the store's writer thread.
struct StoreMetrics {
  ds::metrics::Histogram batch_requests{ds::metrics::exponential_buckets(1, 2, 11)};
  ds::metrics::Histogram write_seconds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1};
  ds::metrics::Counter written_bytes;
  ds::LogStoreStats log;

  static void seconds(ds::metrics::Exposition& e, std::string_view name, std::string_view help,
                      int64_t ms) {
    e.family(name, help, ds::metrics::Exposition::Type::gauge);
    e.sample(name, {}, static_cast<double>(ms) / 1000.0);
  }

  void collect(ds::metrics::Exposition& e) const {
    using T = ds::metrics::Exposition::Type;
    e.family("dstreamd_store_group_commit_requests",
             "Requests (creates, appends, deletes) per synced write of the embedded store",
             T::histogram);
    e.histogram("dstreamd_store_group_commit_requests", {}, batch_requests);
    e.family("dstreamd_store_write_duration_seconds",
             "Time of one synced write (WAL append and fsync) of the embedded store", T::histogram);
    e.histogram("dstreamd_store_write_duration_seconds", {}, write_seconds);
    e.counter("dstreamd_store_written_bytes_total", "Bytes written by group commits",
              written_bytes.value());
    e.counter("dstreamd_store_checkpoints_total", "Checkpoints written by the embedded store",
              log.checkpoints.load());
    e.gauge("dstreamd_store_checkpoint_bytes", "Size of the last checkpoint file",
            static_cast<int64_t>(log.checkpoint_bytes.load()));
    seconds(e, "dstreamd_store_checkpoint_duration_seconds", "Duration of the last checkpoint",
            log.checkpoint_last_ms.load());
    e.gauge("dstreamd_store_wal_bytes", "WAL bytes written since the last checkpoint",
            static_cast<int64_t>(log.wal_bytes.load()));
    e.gauge("dstreamd_store_memory_bytes",
            "Record bytes the embedded store holds in memory (not yet in stream files)",
            static_cast<int64_t>(log.memory_bytes.load()));
    e.gauge("dstreamd_store_record_index_entries",
            "Append boundaries the embedded store indexes in memory (8 bytes each)",
            static_cast<int64_t>(log.record_index_entries.load()));
    e.counter("dstreamd_store_recovery_tail_cuts_total",
              "Torn or corrupt WAL tails cut at start (since this start: 0 or 1 per segment)",
              log.recovery_tail_cuts.load());
    e.counter("dstreamd_store_recovery_cut_bytes_total", "WAL bytes dropped by those cuts",
              log.recovery_cut_bytes.load());
    seconds(e, "dstreamd_store_recovery_duration_seconds", "Duration of this start's recovery",
            log.recovery_ms.load());
    e.gauge("dstreamd_store_producers", "Producer-Id states the embedded store holds",
            static_cast<int64_t>(log.producers.load()));
    e.counter("dstreamd_store_producers_forgotten_total",
              "Producer-Ids forgotten after --producer-idle-timeout without an append",
              log.producers_forgotten.load());
    e.counter("dstreamd_store_no_space_rejections_total",
              "Groups of writes refused with 507 because the disk was full (the store goes on)",
              log.no_space_rejections.load());
    e.counter("dstreamd_store_checkpoint_failures_total",
              "Checkpoints that failed (retried after another interval; the WAL keeps everything)",
              log.checkpoint_failures.load());
    e.counter("dstreamd_store_write_failures_total",
              "Failed WAL writes or syncs (the store then refuses writes until restarted)",
              log.write_failures.load());
    e.counter("dstreamd_store_sendfile_bytes_total",
              "Catch-up bytes served from stream files by sendfile", log.catchup_file_bytes.load());
    e.counter("dstreamd_store_retention_trimmed_bytes_total",
              "Bytes retention removed from streams (made unreadable; disk space given back later)",
              log.retention_trimmed_bytes.load());
  }
};

/// The S2 client's counters (HttpS2Stats), read when /metrics is rendered.
void collect_s2(const ds::s2::HttpS2Stats& s, ds::metrics::Exposition& e) {
  using T = ds::metrics::Exposition::Type;
  static constexpr const char* kMethods[] = {"create_stream", "delete_stream", "append",
                                             "read",          "check_tail",    "open_session"};
  static constexpr const char* kKinds[] = {"not_found",
                                           "already_exists",
                                           "seq_num_mismatch",
                                           "fencing_token_mismatch",
                                           "range_not_satisfiable",
                                           "deletion_pending",
                                           "unavailable",
                                           "ambiguous",
                                           "rejected"};
  static_assert(std::size(kMethods) == ds::s2::HttpS2Stats::kMethods);
  static_assert(std::size(kKinds) == ds::s2::HttpS2Stats::kKinds);
  e.family("dstreamd_s2_requests_total", "S2 API calls, by method", T::counter);
  for (int i = 0; i < ds::s2::HttpS2Stats::kMethods; ++i)
    e.sample("dstreamd_s2_requests_total", {{"method", kMethods[i]}},
             static_cast<uint64_t>(s.requests[i].load()));
  e.counter("dstreamd_s2_attempts_total", "HTTP requests sent to S2, retries included",
            s.attempts.load());
  e.counter("dstreamd_s2_retries_total", "S2 HTTP attempts after the first", s.retries.load());
  e.family("dstreamd_s2_errors_total", "Failed S2 calls and ended read sessions, by kind",
           T::counter);
  for (int i = 0; i < ds::s2::HttpS2Stats::kKinds; ++i)
    e.sample("dstreamd_s2_errors_total", {{"kind", kKinds[i]}},
             static_cast<uint64_t>(s.errors[i].load()));
  e.counter("dstreamd_s2_connections_opened_total", "Connections opened to S2",
            s.connections_opened.load());
  e.gauge("dstreamd_s2_open_read_sessions", "S2 read sessions open (live hubs' watches)",
          static_cast<int64_t>(s.open_sessions.load()));
}

/// The S2 engine's counters (S2StoreStats), read when /metrics is rendered.
void collect_s2_store(const ds::S2StoreStats& s, ds::metrics::Exposition& e) {
  e.gauge("dstreamd_s2_inflight", "S2 calls the S2 engine has outstanding now",
          static_cast<int64_t>(s.inflight.load()));
  e.counter("dstreamd_s2_inflight_waits_total",
            "S2 calls that queued for a slot (--s2-max-inflight reached)", s.inflight_waits.load());
  e.counter("dstreamd_s2_append_batches_total", "Conditional S2 appends sent by stream writers",
            s.append_batches.load());
  e.counter("dstreamd_s2_batched_requests_total", "Durable Streams writes carried by those appends",
            s.batched_requests.load());
  e.counter("dstreamd_s2_conflicts_total",
            "Conditional appends refused with 412 because another node wrote first",
            s.conflicts.load());
  e.counter("dstreamd_s2_ambiguous_total", "Appends whose outcome had to be settled by reading",
            s.ambiguous.load());
  e.counter("dstreamd_s2_checkpoints_total", "Writer-state checkpoint records written",
            s.checkpoints.load());
  e.counter("dstreamd_s2_cold_loads_total", "Streams loaded from S2 (not in this node's cache)",
            s.cold_loads.load());
  e.counter("dstreamd_s2_retention_trims_total",
            "Retention trims this node wrote (an S2 trim and a checkpoint, one batch)",
            s.retention_trims.load());
  e.counter("dstreamd_store_retention_trimmed_bytes_total",
            "Bytes retention removed from streams (made unreadable; disk space given back later)",
            s.retention_trimmed_bytes.load());
}

/// The S2 start-up checks' verdict as one log line.
void log_probe(const ds::s2::ProbeOutcome& o) {
  using V = ds::s2::ProbeOutcome::Verdict;
  if (o.verdict == V::ready)
    ds::log::info("S2 basin reached: ready");
  else if (o.verdict == V::fatal)
    ds::log::error("S2 refused the basin or token; not ready (fix the flags and restart)",
                   {{"reason", o.message}});
  else
    ds::log::warn("S2 not reachable; not ready, probing with backoff", {{"reason", o.message}});
}

}  // namespace

int main(int argc, char** argv) {
  // Catch-up responses build bodies of up to --read-chunk-bytes (1 MiB) on
  // several threads. glibc serves such sizes with mmap and returns them with
  // munmap, and every munmap in a multi-threaded process is a TLB shootdown
  // across cores: 4 concurrent catch-up readers ran at 2.7x the CPU per MB
  // of one (bench/ catchup). Keep buffers up to 4 MiB in the heap, and let up
  // to 64 MiB of free heap stay mapped before trimming.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);

  std::string listen = "127.0.0.1:4437";
  std::string data_dir = "./data";
  std::string long_poll = "30s";
  std::string sse_duration = "60s";
  size_t max_body = 64ull << 20;
  unsigned threads = 0;
  size_t hub_buffer = 4u << 20;
  bool fsync = true;
  bool migrate_rocksdb = true;
  uint64_t checkpoint_wal_bytes = 64ull << 20;
  uint64_t wal_preallocate = 1ull << 20;
  std::string producer_idle = "7d";
  std::string retention_age = "0";
  uint64_t retention_bytes = 0;
  std::string storage = "embedded";
  std::string s2_endpoint;
  std::string s2_basin;
  std::string s2_token;
  std::string s2_ca_file;
  unsigned s2_max_inflight = 256;

  po::options_description desc(
      "dstreamd: a Durable Streams server\n\n"
      "Every option can also be set with an environment variable DSTREAMD_<OPTION>, e.g.\n"
      "DSTREAMD_LONG_POLL_TIMEOUT=500ms. Command-line values win.\n\nOptions");
  desc.add_options()("help", "show this help and exit")(
      "listen", po::value(&listen)->default_value(listen), "HOST:PORT to serve HTTP on")(
      "data-dir", po::value(&data_dir)->default_value(data_dir), "directory of the embedded store")(
      "fsync", po::value(&fsync)->default_value(fsync),
      "embedded store: fsync each group commit before acknowledging it; false trades "
      "durability on power loss for latency (benchmarks, throwaway data)")(
      "checkpoint-wal-bytes", po::value(&checkpoint_wal_bytes)->default_value(checkpoint_wal_bytes),
      "embedded store: take a checkpoint after this much WAL (bounds restart time and the "
      "appended bytes held in memory; smaller costs more writes)")(
      "wal-preallocate", po::value(&wal_preallocate)->default_value(wal_preallocate),
      "embedded store: keep this many bytes of zeros written ahead of the WAL's end, so that a "
      "group's fsync flushes data without committing a new file size (0 turns it off)")(
      "producer-idle-timeout", po::value(&producer_idle)->default_value(producer_idle),
      "embedded store: forget a Producer-Id after this long without an append (e.g. 7d, 12h; "
      "0 keeps them forever); it then starts again at seq 0")(
      "migrate-rocksdb", po::value(&migrate_rocksdb)->default_value(migrate_rocksdb),
      "embedded store: convert a --data-dir written by an earlier dstreamd (RocksDB) on start; "
      "false refuses to start on one")("long-poll-timeout",
                                       po::value(&long_poll)->default_value(long_poll),
                                       "how long a long-poll waits (e.g. 500ms, 30s)")(
      "sse-max-duration", po::value(&sse_duration)->default_value(sse_duration),
      "SSE responses end after this, so CDNs can collapse reconnects")(
      "retention-max-age", po::value(&retention_age)->default_value(retention_age),
      "retention of streams created without Stream-Retention-Max-Age: data older than this "
      "(e.g. 7d, 12h) may be dropped while the stream goes on; 0: kept")(
      "retention-max-bytes", po::value(&retention_bytes)->default_value(retention_bytes),
      "retention of streams created without Stream-Retention-Max-Bytes: data more than this "
      "many bytes behind the tail may be dropped; 0: kept")(
      "max-body-bytes", po::value(&max_body)->default_value(max_body),
      "largest request body; larger ones get 413")(
      "threads", po::value(&threads)->default_value(threads),
      "HTTP threads (0: one per CPU this process may run on)")(
      "hub-buffer-bytes", po::value(&hub_buffer)->default_value(hub_buffer),
      "recent data each live hub keeps for caught-up readers")(
      "storage", po::value(&storage)->default_value(storage),
      "embedded (a log in --data-dir) or s2")(
      "s2-endpoint", po::value(&s2_endpoint),
      "S2 basin endpoint: https://{basin}.b.s2.dev, or one host (s2-lite, emulator)")(
      "s2-basin", po::value(&s2_basin), "S2 basin holding the streams")(
      "s2-token", po::value(&s2_token), "S2 access token (default: $S2_ACCESS_TOKEN)")(
      "s2-ca-file", po::value(&s2_ca_file), "PEM file of extra CAs to trust for S2 (private CA)")(
      "s2-max-inflight", po::value(&s2_max_inflight)->default_value(s2_max_inflight),
      "S2 calls this node keeps outstanding at once (more queue); also the S2 client's "
      "keep-alive pool size");
  AuthFlags auth_flags;
  add_auth_options(desc, auth_flags);
  OpsFlags ops_flags;
  add_ops_options(desc, ops_flags);
  SubsFlags subs_flags;
  add_subs_options(desc, subs_flags);

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::store(po::parse_environment(
                  desc, [&desc](const std::string& env) { return env_to_option(desc, env); }),
              vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "dstreamd: " << e.what() << "\n\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }

  ds::ServerOptions options;
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "dstreamd: --listen must be HOST:PORT\n";
    return 2;
  }
  options.host = listen.substr(0, colon);
  if (options.host.size() > 2 && options.host.front() == '[')
    options.host = options.host.substr(1, options.host.size() - 2);
  try {
    int port = std::stoi(listen.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    options.port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    std::cerr << "dstreamd: invalid port in --listen '" << listen << "'\n";
    return 2;
  }
  auto lp = parse_duration(long_poll);
  auto sse = parse_duration(sse_duration);
  if (!lp || !sse) {
    std::cerr << "dstreamd: durations look like 500ms, 30s or 2m\n";
    return 2;
  }
  options.long_poll_timeout = *lp;
  options.sse_max_duration = *sse;
  options.max_body_bytes = max_body;
  if (auto age = parse_duration(retention_age); !age || age->count() < 0) {
    std::cerr << "dstreamd: --retention-max-age looks like 7d, 12h or 0\n";
    return 2;
  } else if (age->count() > 0) {
    options.retention_max_age_s = static_cast<uint64_t>((age->count() + 999) / 1000);
  }
  if (retention_bytes > 0) options.retention_max_bytes = retention_bytes;
  options.threads = threads;
  if (!configure_ops(ops_flags, options)) return 2;
  if (!configure_auth(auth_flags, vm, options)) return 2;
  auto registry = std::make_shared<ds::metrics::Registry>();
  options.metrics = registry;

  // The S2 client and the metrics outlive the store that uses them (declared
  // first, destroyed last).
  std::unique_ptr<ds::s2::HttpS2Api> s2_api;
  auto s2_store_stats = std::make_unique<ds::S2StoreStats>();
  // The probe's own client (one attempt per probe, short timeouts), and the
  // basin watch that uses it; the watch is destroyed first.
  std::unique_ptr<ds::s2::HttpS2Api> s2_probe_api;
  std::unique_ptr<ds::s2::BasinWatch> s2_watch;
  auto store_metrics = std::make_shared<StoreMetrics>();
  std::unique_ptr<ds::StreamStore> store;
  std::string described;
  if (storage == "embedded") {
    options.offsets_count_bytes = true;  // byte positions: the catalog reports sizes
    ds::LogStoreOptions store_options;
    store_options.path = data_dir;
    store_options.sync = fsync;
    store_options.migrate_rocksdb = migrate_rocksdb;
    store_options.checkpoint_wal_bytes = std::max<uint64_t>(checkpoint_wal_bytes, 1);
    store_options.wal_preallocate_bytes = wal_preallocate;
    auto idle = parse_duration(producer_idle);
    if (!idle) {
      std::cerr << "dstreamd: --producer-idle-timeout looks like 7d, 12h, 30m or 0\n";
      return 2;
    }
    store_options.producer_idle_ms = idle->count();
    store_options.stats = &store_metrics->log;
    if (!fsync) ds::log::warn("--fsync=false: acknowledged writes can be lost on power failure");
    store_options.on_group_commit = [m = store_metrics.get()](const ds::GroupCommitStats& s) {
      m->batch_requests.observe(static_cast<double>(s.requests));
      m->write_seconds.observe(std::chrono::duration<double>(s.write_duration).count());
      m->written_bytes.inc(s.bytes);
    };
    registry->add([m = store_metrics.get()](ds::metrics::Exposition& e) { m->collect(e); });
    auto opened = ds::open_log_store(store_options);
    if (!opened) {
      std::cerr << "dstreamd: " << opened.error().message << "\n";
      return 1;
    }
    store = std::move(*opened);
    described = "embedded store in " + data_dir;
  } else if (storage == "s2") {
    if (s2_token.empty()) {
      if (const char* t = std::getenv("S2_ACCESS_TOKEN")) s2_token = t;
    }
    if (s2_endpoint.empty() || s2_basin.empty()) {
      std::cerr << "dstreamd: --storage s2 needs --s2-endpoint and --s2-basin\n";
      return 2;
    }
    // Configuration errors now, not as 500s on every request.
    if (auto why = ds::s2::basin_name_error(s2_basin)) {
      std::cerr << "dstreamd: --s2-basin: " << *why << "\n";
      return 2;
    }
    if (auto why = ds::s2::endpoint_error(s2_endpoint)) {
      std::cerr << "dstreamd: --s2-endpoint: " << *why << "\n";
      return 2;
    }
    if (s2_max_inflight == 0) {
      std::cerr << "dstreamd: --s2-max-inflight must be at least 1\n";
      return 2;
    }
    ds::s2::HttpS2Options s2_options;
    s2_options.endpoint = s2_endpoint;
    s2_options.basin = s2_basin;
    s2_options.token = s2_token;
    s2_options.ca_file = s2_ca_file;
    s2_options.threads = 2;
    // One keep-alive connection per call the engine may have outstanding.
    s2_options.max_idle_connections = s2_max_inflight;
    std::string error;
    s2_api = ds::s2::make_http_s2_api(s2_options, &error);
    if (!s2_api) {
      std::cerr << "dstreamd: " << error << "\n";
      return 2;
    }
    // Reach the basin before serving: a missing basin or a refused token ends
    // the start here; an S2 that does not answer yet leaves the node up but
    // not ready (/ready 503 with the reason) until the watch reaches it.
    ds::s2::HttpS2Options probe_options = s2_options;
    probe_options.threads = 1;
    probe_options.max_attempts = 1;  // the watch paces the retries
    probe_options.max_idle_connections = 1;
    probe_options.connect_timeout = std::chrono::milliseconds(3000);
    probe_options.request_timeout = std::chrono::milliseconds(5000);
    s2_probe_api = ds::s2::make_http_s2_api(probe_options, &error);
    if (!s2_probe_api) {
      std::cerr << "dstreamd: " << error << "\n";
      return 2;
    }
    auto first = ds::s2::probe_basin(*s2_probe_api, s2_basin, s2_endpoint,
                                     std::chrono::milliseconds(10'000));
    if (first.verdict == ds::s2::ProbeOutcome::Verdict::fatal) {
      std::cerr << "dstreamd: " << first.message << "\n";
      return 1;
    }
    if (!first.ready()) log_probe(first);
    ds::s2::BasinWatchOptions watch_options;
    watch_options.on_change = log_probe;
    s2_watch = std::make_unique<ds::s2::BasinWatch>(*s2_probe_api, s2_basin, s2_endpoint,
                                                    std::move(first), watch_options);
    options.readiness = [w = s2_watch.get()]() -> ds::Status {
      if (auto why = w->not_ready_reason()) return ds::Error(ds::errc::unavailable, *why);
      return ds::Unit{};
    };
    ds::S2StoreOptions store_options;
    store_options.api = s2_api.get();
    store_options.max_inflight = s2_max_inflight;
    store_options.stats = s2_store_stats.get();
    store = ds::make_s2_store(store_options);
    registry->add([api = s2_api.get(), st = s2_store_stats.get(),
                   w = s2_watch.get()](ds::metrics::Exposition& e) {
      collect_s2(api->stats(), e);
      collect_s2_store(*st, e);
      e.gauge("dstreamd_s2_basin_ready",
              "1 once the S2 basin has been reached (start-up probe), else 0",
              static_cast<int64_t>(w->ready() ? 1 : 0));
    });
    described = "S2 basin " + s2_basin + " at " + s2_endpoint;
  } else {
    std::cerr << "dstreamd: --storage must be embedded or s2\n";
    return 2;
  }
  std::shared_ptr<ds::subs::Manager> subscriptions;
  if (!make_subscriptions(subs_flags, storage, data_dir, *store, *registry, &subscriptions))
    return 2;
  if (subscriptions) {
    std::promise<ds::Status> loaded;
    subscriptions->start([&loaded](ds::Status st) { loaded.set_value(std::move(st)); });
    auto st = loaded.get_future().get();
    if (!st) {
      std::cerr << "dstreamd: subscriptions: " << st.error().message << "\n";
      return 1;
    }
    options.subscriptions = subscriptions;
  }
  ds::LiveHubs::Options hub_options;
  hub_options.buffer_bytes = hub_buffer;
  auto hubs = std::make_unique<ds::LiveHubs>(*store, hub_options);
  auto server = std::make_unique<ds::Server>(options, *store, *hubs, ds::SystemClock::instance());
  auto port = server->bind();
  if (!port) {
    std::cerr << "dstreamd: " << port.error().message << "\n";
    return 1;
  }
  log_fd_limit(options.max_connections);
  std::cout << "dstreamd listening on http://" << options.host << ":" << *port << " (" << described
            << ")" << std::endl;
  server->run();
  if (subscriptions) subscriptions->stop();
  // Teardown, in this order: the hubs drop their watches and parked readers;
  // the store's writer finishes what is queued (its callbacks post to the
  // stopped server, which discards them) and the store closes; then the
  // server, whose io_context frees what is left of its connections.
  hubs.reset();
  store.reset();
  server.reset();
  std::cout << "dstreamd stopped" << std::endl;
  return 0;
}
