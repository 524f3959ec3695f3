// HttpS2Api against the S2 emulator (scripts/s2emu): one emulator for the
// suite, faults reset before each test, a fresh stream name per test. Every
// wait is on a future or condition variable with a bound.

#include "s2/http_s2_api.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mutex>

#include "emulator.h"

namespace ds::s2 {
namespace {

using namespace std::chrono_literals;
using test::Emulator;
using Kind = S2Error::Kind;

constexpr auto kBound = 15s;
const char* const kBasin = "test-basin-1";
const char* const kStrictBasin = "strict-basin-1";  // no auto-create

bool node_available() { return std::system("node --version >/dev/null 2>&1") == 0; }

/// A callback and the future it completes.
template <class T>
struct Pending {
  std::shared_ptr<std::promise<S2Result<T>>> promise =
      std::make_shared<std::promise<S2Result<T>>>();
  std::future<S2Result<T>> future = promise->get_future();

  S2Api::Callback<T> callback() {
    return [p = promise](S2Result<T> r) { p->set_value(std::move(r)); };
  }
  S2Result<T> get() {
    if (future.wait_for(kBound) != std::future_status::ready) {
      ADD_FAILURE() << "no answer within the bound";
      S2Error e;
      e.message = "test timeout";
      return S2Result<T>::failure(e);
    }
    return future.get();
  }
};

/// Collects what a session delivers.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<SequencedRecord> records;
  std::vector<std::optional<uint64_t>> ping_tails;
  std::optional<uint64_t> last_tail;
  int ends = 0;
  std::optional<S2Error> end_error;

  SessionHandlers handlers() {
    return SessionHandlers{[this](ReadBatch b) {
                             std::lock_guard lock(mu);
                             if (b.records.empty()) ping_tails.push_back(b.tail);
                             if (b.tail) last_tail = b.tail;
                             for (auto& r : b.records) records.push_back(std::move(r));
                             cv.notify_all();
                           },
                           [this](S2Error e) {
                             std::lock_guard lock(mu);
                             ++ends;
                             end_error = std::move(e);
                             cv.notify_all();
                           }};
  }
  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds bound = kBound) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, bound, pred);
  }
};

AppendRecord text_record(std::string body) { return AppendRecord{{}, std::move(body)}; }

class HttpS2ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!node_available()) {
      skip_reason_ = "node is not installed: the S2 emulator cannot run";
      return;
    }
    emulator_ = new Emulator();
    std::string why;
    if (!emulator_->start({"--basin", kBasin, "--auto-create-streams"}, &why)) {
      start_error_ = why;
      return;
    }
    auto created = test::http_exchange(emulator_->port(), "POST", "/v1/basins",
                                       std::string("{\"basin\":\"") + kStrictBasin + "\"}");
    if (!created || created->status != 201) start_error_ = "could not create the strict basin";
  }
  static void TearDownTestSuite() {
    delete emulator_;
    emulator_ = nullptr;
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    ASSERT_TRUE(emulator_->reset_faults());
    api_ = make(kBasin);
    ASSERT_TRUE(api_);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    stream_ = std::string("s/") + info->name() + " " + std::to_string(++counter_);
  }

  std::unique_ptr<HttpS2Api> make(const std::string& basin,
                                  void (*tweak)(HttpS2Options&) = nullptr) {
    HttpS2Options o;
    o.endpoint = emulator_->url();
    o.basin = basin;
    o.token = "secret-token";
    o.backoff_base = 5ms;
    o.backoff_max = 40ms;
    o.request_timeout = 5s;
    if (tweak) tweak(o);
    std::string error;
    auto api = make_http_s2_api(o, &error);
    EXPECT_TRUE(api) << error;
    return api;
  }

  S2Result<Empty> create(const std::string& s, S2Api* api = nullptr) {
    Pending<Empty> p;
    (api ? api : api_.get())->create_stream(s, p.callback());
    return p.get();
  }
  S2Result<AppendAck> append(const std::string& s, AppendInput in, S2Api* api = nullptr) {
    Pending<AppendAck> p;
    (api ? api : api_.get())->append(s, std::move(in), p.callback());
    return p.get();
  }
  S2Result<AppendAck> append_texts(const std::string& s, std::vector<std::string> bodies) {
    AppendInput in;
    for (auto& b : bodies) in.records.push_back(text_record(std::move(b)));
    return append(s, std::move(in));
  }
  S2Result<ReadBatch> read(const std::string& s, uint64_t seq, ReadLimits limits = {},
                           S2Api* api = nullptr) {
    Pending<ReadBatch> p;
    (api ? api : api_.get())->read(s, seq, limits, p.callback());
    return p.get();
  }
  S2Result<uint64_t> tail(const std::string& s, S2Api* api = nullptr) {
    Pending<uint64_t> p;
    (api ? api : api_.get())->check_tail(s, p.callback());
    return p.get();
  }
  uint64_t emu_stat(const std::vector<std::string>& path) {
    return test::json_u64(emulator_->stats(), path).value_or(0);
  }

  static inline Emulator* emulator_ = nullptr;
  static inline std::string skip_reason_;
  static inline std::string start_error_;
  static inline int counter_ = 0;
  std::unique_ptr<HttpS2Api> api_;
  std::string stream_;
};

TEST_F(HttpS2ApiTest, CreateThenAlreadyExists) {
  auto strict = make(kStrictBasin);
  auto r = create(stream_, strict.get());
  ASSERT_TRUE(r.ok()) << r.error->message;
  r = create(stream_, strict.get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->kind, Kind::already_exists);
  EXPECT_EQ(r.error->http_status, 409);
  EXPECT_EQ(r.error->code, "resource_already_exists");
  auto t = tail(stream_, strict.get());
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t.value, 0u);
}

TEST_F(HttpS2ApiTest, NotFoundAndDelete) {
  auto strict = make(kStrictBasin);
  auto t = tail(stream_, strict.get());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error->kind, Kind::not_found);
  ASSERT_TRUE(create(stream_, strict.get()).ok());
  Pending<Empty> del;
  strict->delete_stream(stream_, del.callback());
  auto d = del.get();
  ASSERT_TRUE(d.ok()) << d.error->message;
  t = tail(stream_, strict.get());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error->kind, Kind::not_found);
  EXPECT_EQ(strict->stats().errors[static_cast<int>(Kind::not_found)], 2u);
}

TEST_F(HttpS2ApiTest, AppendWithMatchSeqNum) {
  AppendInput in;
  in.records = {text_record("a"), text_record("b")};
  in.match_seq_num = 0;
  auto ack = append(stream_, in);
  ASSERT_TRUE(ack.ok()) << ack.error->message;
  EXPECT_EQ(ack.value->start_seq, 0u);
  EXPECT_EQ(ack.value->end_seq, 2u);
  EXPECT_EQ(ack.value->tail_seq, 2u);

  ack = append(stream_, in);  // match_seq_num 0 again: the tail is 2
  ASSERT_FALSE(ack.ok());
  EXPECT_EQ(ack.error->kind, Kind::seq_num_mismatch);
  EXPECT_EQ(ack.error->http_status, 412);
  EXPECT_EQ(ack.error->tail, 2u);

  in.match_seq_num = 2;
  ack = append(stream_, in);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(ack.value->start_seq, 2u);
  EXPECT_EQ(ack.value->end_seq, 4u);
}

TEST_F(HttpS2ApiTest, FencingToken) {
  AppendInput fence;
  fence.records = {fence_record("writer-1")};
  ASSERT_TRUE(append(stream_, fence).ok());

  AppendInput in;
  in.records = {text_record("x")};
  in.fencing_token = "writer-2";
  auto ack = append(stream_, in);
  ASSERT_FALSE(ack.ok());
  EXPECT_EQ(ack.error->kind, Kind::fencing_token_mismatch);
  EXPECT_EQ(ack.error->token, "writer-1");

  in.fencing_token = "writer-1";
  ack = append(stream_, in);
  ASSERT_TRUE(ack.ok()) << ack.error->message;
  EXPECT_EQ(ack.value->start_seq, 1u);  // the fence took seq_num 0

  auto batch = read(stream_, 0);
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch.value->records.size(), 2u);
  EXPECT_TRUE(batch.value->records[0].is_command());
  EXPECT_EQ(batch.value->records[0].headers[0].value, "fence");
  EXPECT_EQ(batch.value->records[0].body, "writer-1");
}

TEST_F(HttpS2ApiTest, TrimRecordIsAccepted) {
  ASSERT_TRUE(append_texts(stream_, {"a", "b", "c"}).ok());
  AppendInput trim;
  trim.records = {trim_record(2)};
  ASSERT_TRUE(append(stream_, trim).ok());
  auto batch = read(stream_, 0);
  ASSERT_TRUE(batch.ok()) << batch.error->message;
  ASSERT_FALSE(batch.value->records.empty());
  EXPECT_EQ(batch.value->records.front().seq_num, 2u);  // the emulator trims at once
  EXPECT_TRUE(batch.value->records.back().is_command());
  EXPECT_EQ(batch.value->records.back().body, std::string("\0\0\0\0\0\0\0\x02", 8));
}

TEST_F(HttpS2ApiTest, UnaryReads) {
  ASSERT_TRUE(append_texts(stream_, {"r0", "r1", "r2", "r3", "r4"}).ok());
  ReadLimits two;
  two.count = 2;
  auto batch = read(stream_, 1, two);
  ASSERT_TRUE(batch.ok()) << batch.error->message;
  ASSERT_EQ(batch.value->records.size(), 2u);
  EXPECT_EQ(batch.value->records[0].seq_num, 1u);
  EXPECT_EQ(batch.value->records[0].body, "r1");
  EXPECT_EQ(batch.value->records[1].body, "r2");
  EXPECT_FALSE(batch.value->tail.has_value());  // catch-up reads carry no tail

  auto at_tail = read(stream_, 5);
  ASSERT_FALSE(at_tail.ok());
  EXPECT_EQ(at_tail.error->kind, Kind::range_not_satisfiable);
  EXPECT_EQ(at_tail.error->http_status, 416);
  EXPECT_EQ(at_tail.error->tail, 5u);

  auto past = read(stream_, 9);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error->kind, Kind::range_not_satisfiable);
  EXPECT_EQ(past.error->tail, 5u);
}

TEST_F(HttpS2ApiTest, UnaryReadWaitsForNewRecords) {
  ASSERT_TRUE(append_texts(stream_, {"r0"}).ok());
  ReadLimits wait;
  wait.wait_s = 10;
  Pending<ReadBatch> waiting;
  api_->read(stream_, 1, wait, waiting.callback());
  // Whether the append lands before or after the read arrives, the read
  // returns record 1; when it was parked, the live batch carries the tail.
  ASSERT_TRUE(append_texts(stream_, {"late"}).ok());
  auto batch = waiting.get();
  ASSERT_TRUE(batch.ok()) << batch.error->message;
  ASSERT_EQ(batch.value->records.size(), 1u);
  EXPECT_EQ(batch.value->records[0].seq_num, 1u);
  EXPECT_EQ(batch.value->records[0].body, "late");
}

TEST_F(HttpS2ApiTest, CheckTail) {
  auto t = tail(stream_);
  ASSERT_TRUE(t.ok()) << t.error->message;
  EXPECT_EQ(*t.value, 0u);
  ASSERT_TRUE(append_texts(stream_, {"a", "b", "c"}).ok());
  t = tail(stream_);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t.value, 3u);
}

TEST_F(HttpS2ApiTest, KeepAliveConnectionsAreReused) {
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(tail(stream_).ok());
  EXPECT_EQ(api_->stats().connections_opened, 1u);
  EXPECT_EQ(api_->stats().requests[HttpS2Stats::check_tail], 10u);
  EXPECT_EQ(api_->stats().attempts, 10u);
}

TEST_F(HttpS2ApiTest, SessionFollowsLiveAppends) {
  ASSERT_TRUE(append_texts(stream_, {"a", "b"}).ok());
  Collector c;
  auto session = api_->open_session(stream_, 0, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.records.size() == 2; }));
  ASSERT_TRUE(append_texts(stream_, {"c"}).ok());
  ASSERT_TRUE(append_texts(stream_, {"d", "e"}).ok());
  ASSERT_TRUE(c.wait([&] { return c.records.size() == 5; }));
  std::lock_guard lock(c.mu);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(c.records[i].seq_num, i);
  EXPECT_EQ(c.records[4].body, "e");
  EXPECT_EQ(c.last_tail, 5u);  // live batches carry the tail
  EXPECT_EQ(c.ends, 0);
  EXPECT_EQ(api_->stats().open_sessions, 1u);
}

TEST_F(HttpS2ApiTest, SessionReceivesPings) {
  ASSERT_TRUE(emulator_->set_faults(R"({"pingIntervalMs":50})"));
  ASSERT_TRUE(append_texts(stream_, {"a"}).ok());
  Collector c;
  auto session = api_->open_session(stream_, 1, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.ping_tails.size() >= 3; }));
  std::lock_guard lock(c.mu);
  for (auto& t : c.ping_tails) EXPECT_EQ(t, 1u);
  EXPECT_TRUE(c.records.empty());
}

TEST_F(HttpS2ApiTest, SessionOpenPastTheTailEndsWith416) {
  Collector c;
  auto session = api_->open_session(stream_, 7, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.ends == 1; }));
  std::lock_guard lock(c.mu);
  EXPECT_EQ(c.end_error->kind, Kind::range_not_satisfiable);
  EXPECT_EQ(c.end_error->tail, 0u);
}

TEST_F(HttpS2ApiTest, SessionStallEndsIt) {
  auto api = make(kBasin, [](HttpS2Options& o) { o.session_stall_timeout = 300ms; });
  ASSERT_TRUE(emulator_->set_faults(R"({"sseStallAfterEvents":1,"pingIntervalMs":50})"));
  Collector c;
  auto session = api->open_session(stream_, 0, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.ends == 1; }));
  std::lock_guard lock(c.mu);
  EXPECT_EQ(c.end_error->kind, Kind::unavailable);
  EXPECT_NE(c.end_error->message.find("stalled"), std::string::npos) << c.end_error->message;
}

class SessionCutTest : public HttpS2ApiTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(SessionCutTest, EndsOnceAndReopenedSessionHasNoGap) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(append_texts(stream_, {"r" + std::to_string(i)}).ok());
  ASSERT_TRUE(emulator_->set_faults(std::string(R"({"sseCutAfterEvents":2,"sseCutMode":")") +
                                    GetParam() + "\"}"));
  Collector c;
  auto session = api_->open_session(stream_, 0, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.ends > 0; }));
  session.reset();  // no callback after this
  uint64_t next;
  {
    std::lock_guard lock(c.mu);
    EXPECT_EQ(c.ends, 1);
    EXPECT_EQ(c.end_error->kind, Kind::unavailable) << c.end_error->message;
    next = c.records.empty() ? 0 : c.records.back().seq_num + 1;
  }
  ASSERT_TRUE(emulator_->reset_faults());
  ASSERT_TRUE(append_texts(stream_, {"r4", "r5"}).ok());
  Collector more;
  auto reopened = api_->open_session(stream_, next, more.handlers());
  ASSERT_TRUE(more.wait([&] { return more.records.size() == 6 - next; }));
  reopened.reset();
  std::lock_guard lock(c.mu);
  std::lock_guard lock2(more.mu);
  EXPECT_EQ(c.ends, 1);
  std::vector<uint64_t> seen;
  for (auto& r : c.records) seen.push_back(r.seq_num);
  for (auto& r : more.records) seen.push_back(r.seq_num);
  ASSERT_EQ(seen.size(), 6u);
  for (uint64_t i = 0; i < 6; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_EQ(more.ends, 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, SessionCutTest, ::testing::Values("destroy", "end", "error"));

TEST_F(HttpS2ApiTest, DestroyingTheHandleInsideACallbackStopsCallbacks) {
  ASSERT_TRUE(emulator_->set_faults(R"({"pingIntervalMs":20})"));
  Collector c;
  std::unique_ptr<ReadSession> session;
  std::mutex session_mu;
  int calls = 0;
  SessionHandlers h;
  h.on_batch = [&](ReadBatch) {
    std::lock_guard lock(session_mu);
    ++calls;
    session.reset();  // destroys its own handle from the callback
    c.cv.notify_all();
  };
  h.on_end = [&](S2Error) {
    std::lock_guard lock(session_mu);
    ++calls;
  };
  {
    std::lock_guard lock(session_mu);
    session = api_->open_session(stream_, 0, std::move(h));
  }
  ASSERT_TRUE(c.wait([&] {
    std::lock_guard lock(session_mu);
    return calls > 0;
  }));
  // The first session would have had more pings by the time a second
  // session has had three.
  Collector other;
  auto witness = api_->open_session(stream_, 0, other.handlers());
  ASSERT_TRUE(other.wait([&] { return other.ping_tails.size() >= 3; }));
  std::lock_guard lock(session_mu);
  EXPECT_EQ(calls, 1);
}

TEST_F(HttpS2ApiTest, ReadsRetryInjected503) {
  ASSERT_TRUE(append_texts(stream_, {"a"}).ok());
  ASSERT_TRUE(emulator_->set_faults(
      R"({"errorNext":2,"errorCodes":["unavailable"],"errorOps":["read","check_tail"]})"));
  auto batch = read(stream_, 0);
  ASSERT_TRUE(batch.ok()) << batch.error->message;
  EXPECT_EQ(batch.value->records.size(), 1u);
  EXPECT_EQ(api_->stats().retries, 2u);
  EXPECT_EQ(emu_stat({"requests", "read"}), 3u);
}

TEST_F(HttpS2ApiTest, ExhaustedRetriesAreUnavailable) {
  ASSERT_TRUE(emulator_->set_faults(
      R"({"errorNext":100,"errorCodes":["unavailable","other"],"errorOps":["check_tail"]})"));
  auto t = tail(stream_);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error->kind, Kind::unavailable);
  EXPECT_EQ(emu_stat({"requests", "check_tail"}), 4u);  // max_attempts
  EXPECT_EQ(api_->stats().errors[static_cast<int>(Kind::unavailable)], 1u);
}

TEST_F(HttpS2ApiTest, SessionOpenRetriesInjected503) {
  ASSERT_TRUE(append_texts(stream_, {"a"}).ok());
  ASSERT_TRUE(emulator_->set_faults(
      R"({"errorNext":2,"errorCodes":["unavailable"],"errorOps":["read_session"]})"));
  Collector c;
  auto session = api_->open_session(stream_, 0, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.records.size() == 1; }));
  EXPECT_EQ(emu_stat({"requests", "read_session"}), 3u);
}

TEST_F(HttpS2ApiTest, LostAppendAckIsAmbiguousAndNotRetried) {
  for (const char* code : {"unavailable", "other"}) {
    SCOPED_TRACE(code);
    ASSERT_TRUE(emulator_->reset_faults());
    ASSERT_TRUE(emulator_->set_faults(std::string(R"({"errorNext":1,"errorOps":["append"],)") +
                                      R"("errorApplyAppend":true,"errorCodes":[")" + code +
                                      "\"]}"));
    auto before = tail(stream_);
    ASSERT_TRUE(before.ok());
    auto ack = append_texts(stream_, {"once"});
    ASSERT_FALSE(ack.ok());
    EXPECT_EQ(ack.error->kind, Kind::ambiguous) << ack.error->message;
    EXPECT_EQ(ack.error->code, code);
    EXPECT_EQ(emu_stat({"requests", "append"}), 1u);  // never sent twice
    auto after = tail(stream_);
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(*after.value, *before.value + 1);  // it did land, exactly once
  }
  EXPECT_EQ(api_->stats().errors[static_cast<int>(Kind::ambiguous)], 2u);
}

TEST_F(HttpS2ApiTest, SideEffectFreeAppendErrorsAreRetried) {
  ASSERT_TRUE(emulator_->set_faults(
      R"({"errorNext":2,"errorOps":["append"],"errorCodes":["rate_limited","transaction_conflict"]})"));
  auto ack = append_texts(stream_, {"x"});
  ASSERT_TRUE(ack.ok()) << ack.error->message;
  EXPECT_EQ(ack.value->start_seq, 0u);
  EXPECT_EQ(emu_stat({"requests", "append"}), 3u);
  auto t = tail(stream_);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t.value, 1u);

  // Spent budget on side-effect-free errors: unavailable, not ambiguous.
  ASSERT_TRUE(emulator_->set_faults(
      R"({"errorNext":100,"errorOps":["append"],"errorCodes":["rate_limited"]})"));
  ack = append_texts(stream_, {"y"});
  ASSERT_FALSE(ack.ok());
  EXPECT_EQ(ack.error->kind, Kind::unavailable);
}

TEST_F(HttpS2ApiTest, RefusedConnectionsAreRetriedEvenForAppends) {
  auto api = make(kBasin, [](HttpS2Options& o) {
    o.endpoint = "http://127.0.0.1:1";  // privileged and unused: connection refused
  });
  AppendInput in;
  in.records = {text_record("x")};
  auto ack = append(stream_, in, api.get());
  ASSERT_FALSE(ack.ok());
  EXPECT_EQ(ack.error->kind, Kind::unavailable) << ack.error->message;
  EXPECT_EQ(api->stats().attempts, 4u);
  EXPECT_EQ(api->stats().retries, 3u);
}

TEST_F(HttpS2ApiTest, BinaryBodiesAndHeadersRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  AppendRecord r;
  r.headers = {{std::string("k\0ey", 4), std::string("\0v\xff\x01", 4)}, {"x", ""}};
  r.body = all + std::string(3, '\0');
  AppendInput in;
  in.records = {r, AppendRecord{{}, std::string(1, '\0')}};
  ASSERT_TRUE(append(stream_, in).ok());

  auto batch = read(stream_, 0);
  ASSERT_TRUE(batch.ok()) << batch.error->message;
  ASSERT_EQ(batch.value->records.size(), 2u);
  EXPECT_EQ(batch.value->records[0].headers, r.headers);
  EXPECT_EQ(batch.value->records[0].body, r.body);
  EXPECT_EQ(batch.value->records[1].body, std::string(1, '\0'));

  Collector c;
  auto session = api_->open_session(stream_, 0, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.records.size() == 2; }));
  std::lock_guard lock(c.mu);
  EXPECT_EQ(c.records[0].headers, r.headers);
  EXPECT_EQ(c.records[0].body, r.body);
}

TEST_F(HttpS2ApiTest, StreamNamesWithSlashesSpacesAndUnicode) {
  auto strict = make(kStrictBasin);
  std::string name = "a/b c/ü?#%2F" + stream_;
  ASSERT_TRUE(create(name, strict.get()).ok());
  AppendInput in;
  in.records = {text_record("x")};
  ASSERT_TRUE(append(name, in, strict.get()).ok());
  auto t = tail(name, strict.get());
  ASSERT_TRUE(t.ok()) << t.error->message;
  EXPECT_EQ(*t.value, 1u);
  auto other = tail("a", strict.get());  // the prefix is another (missing) stream
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error->kind, Kind::not_found);
  auto batch = read(name, 0, {}, strict.get());
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch.value->records.size(), 1u);
  Collector c;
  auto session = strict->open_session(name, 0, c.handlers());
  ASSERT_TRUE(c.wait([&] { return c.records.size() == 1; }));
}

TEST_F(HttpS2ApiTest, ListStreamsByPrefixAndStartAfter) {
  auto strict = make(kStrictBasin);
  const std::string prefix = "list/" + stream_ + "/";
  const std::vector<std::string> names = {prefix + "a", prefix + "b c", prefix + "\xc3\xbc?#%2F"};
  for (const auto& n : names) ASSERT_TRUE(create(n, strict.get()).ok()) << n;
  ASSERT_TRUE(create("list/" + stream_, strict.get()).ok());  // outside the prefix
  auto list = [&](const std::string& after, uint64_t limit) {
    Pending<StreamPage> p;
    strict->list_streams(prefix, after, limit, p.callback());
    return p.get();
  };
  auto first = list("", 2);
  ASSERT_TRUE(first.ok()) << first.error->message;
  EXPECT_EQ(first.value->names, (std::vector<std::string>{names[0], names[1]}));
  EXPECT_EQ(first.value->last, names[1]);
  EXPECT_TRUE(first.value->has_more);
  auto second = list(first.value->last, 2);
  ASSERT_TRUE(second.ok()) << second.error->message;
  EXPECT_EQ(second.value->names, (std::vector<std::string>{names[2]}));
  EXPECT_FALSE(second.value->has_more);
}

TEST_F(HttpS2ApiTest, ConcurrentCallsOnTwoThreads) {
  auto api = make(kBasin, [](HttpS2Options& o) {
    o.threads = 2;
    o.max_idle_connections = 4;
  });
  Collector c;
  auto session = api->open_session(stream_, 0, c.handlers());
  constexpr int kAppends = 64;
  std::vector<Pending<AppendAck>> pending(kAppends);
  for (int i = 0; i < kAppends; ++i) {
    AppendInput in;
    in.records = {text_record(std::to_string(i))};
    api->append(stream_, std::move(in), pending[i].callback());
  }
  std::vector<bool> seen(kAppends);
  for (auto& p : pending) {
    auto ack = p.get();
    ASSERT_TRUE(ack.ok()) << ack.error->message;
    ASSERT_LT(ack.value->start_seq, static_cast<uint64_t>(kAppends));
    EXPECT_FALSE(seen[ack.value->start_seq]);
    seen[ack.value->start_seq] = true;
  }
  ASSERT_TRUE(c.wait([&] { return c.records.size() == kAppends; }));
  std::lock_guard lock(c.mu);
  for (int i = 0; i < kAppends; ++i) EXPECT_EQ(c.records[i].seq_num, static_cast<uint64_t>(i));
  EXPECT_LE(api->stats().connections_opened, static_cast<uint64_t>(kAppends) + 1);
}

TEST_F(HttpS2ApiTest, DestroyingTheClientWithWorkInFlight) {
  ASSERT_TRUE(emulator_->set_faults(R"({"pingIntervalMs":20,"latencyMs":200})"));
  auto api = make(kBasin);
  Collector c;
  auto session = api->open_session(stream_, 0, c.handlers());
  ReadLimits wait;
  wait.wait_s = 30;
  api->read(stream_, 0, wait, [](S2Result<ReadBatch>) {});
  api.reset();      // calls in flight never call back
  session.reset();  // a handle may outlive its client
  std::lock_guard lock(c.mu);
  EXPECT_EQ(c.ends, 0);
}

TEST_F(HttpS2ApiTest, FactoryRejectsBadOptions) {
  std::string error;
  HttpS2Options o;
  o.basin = kBasin;
  o.endpoint = "ftp://x";
  EXPECT_FALSE(make_http_s2_api(o, &error));
  EXPECT_NE(error.find("http"), std::string::npos);
  o.endpoint = "https://{basin}.b.s2.dev";
  o.ca_file = "/nonexistent/ca.pem";
  EXPECT_FALSE(make_http_s2_api(o, &error));
  EXPECT_NE(error.find("TLS"), std::string::npos);
  o.ca_file.clear();
  EXPECT_TRUE(make_http_s2_api(o, &error));
  o.basin.clear();
  EXPECT_FALSE(make_http_s2_api(o, &error));
}

}  // namespace
}  // namespace ds::s2
