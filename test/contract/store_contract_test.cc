// The engine-neutral storage contract (see store_contract.h). Everything here
// talks to StreamStore only.

#include "store_contract.h"

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "protocol/json.h"

namespace ds::contract {

// ------------------------------------------------------------------ helpers

std::string describe(const Error& e) {
  std::string s = std::string(errc_name(e.code)) + " (" + e.message + ")";
  if (e.tail) s += " tail=" + e.tail->str();
  if (e.closed) s += " closed";
  return s;
}

std::function<void(const CommitEvent&)> EventLog::sink() {
  return [shared = shared_](const CommitEvent& e) {
    {
      std::lock_guard lock(shared->mu);
      shared->events.push_back(e);
    }
    shared->cv.notify_all();
  };
}

bool EventLog::wait_for(size_t n, std::chrono::milliseconds bound) {
  std::unique_lock lock(shared_->mu);
  return shared_->cv.wait_for(lock, bound, [&] { return shared_->events.size() >= n; });
}

std::vector<CommitEvent> EventLog::events() const {
  std::lock_guard lock(shared_->mu);
  return shared_->events;
}

size_t EventLog::size() const {
  std::lock_guard lock(shared_->mu);
  return shared_->events.size();
}

namespace {

/// Runs one async call and waits for its single completion.
template <class T, class Start>
Result<T> call_sync(const char* what, Start&& start) {
  struct State {
    std::promise<Result<T>> promise;
    std::atomic<int> calls{0};
  };
  auto state = std::make_shared<State>();
  auto future = state->promise.get_future();
  start([state, what](Result<T> r) {
    if (state->calls.fetch_add(1) != 0) {
      ADD_FAILURE() << what << ": completion callback invoked more than once";
      return;
    }
    state->promise.set_value(std::move(r));
  });
  if (future.wait_for(kCallTimeout) != std::future_status::ready) {
    ADD_FAILURE() << what << ": no completion within " << kCallTimeout.count() << " s";
    return Error(errc::unavailable, std::string("contract test timeout in ") + what);
  }
  return future.get();
}

const std::string kA = "/v1/stream/a";
const std::string kB = "/v1/stream/b";
const std::string kC = "/v1/stream/c";
const std::string kJson = "application/json";
const std::string kText = "text/plain";

std::string concat(const std::vector<RecordPtr>& records) {
  std::string out;
  for (const auto& r : records) out += r->bytes;
  return out;
}

}  // namespace

::testing::AssertionResult StoreContract::Contiguous(const ReadOutcome& r) const {
  const bool dense = GetParam().traits.dense_offsets;
  Offset at = r.start;
  for (size_t i = 0; i < r.records.size(); ++i) {
    const auto& rec = *r.records[i];
    if (dense ? rec.begin != at : rec.begin < at) {
      return ::testing::AssertionFailure()
             << "record " << i << " begins at " << rec.begin.str() << ", expected "
             << (dense ? "" : "at least ") << at.str();
    }
    if (!(rec.begin < rec.end))
      return ::testing::AssertionFailure() << "record " << i << " is empty";
    at = rec.end;
  }
  if (dense ? at != r.next : r.next < at) {
    return ::testing::AssertionFailure()
           << "next is " << r.next.str() << ", records end at " << at.str();
  }
  return ::testing::AssertionSuccess();
}

void StoreContract::SetUp() {
  // The storage's own timestamps are real time: start the test's clock there.
  if (!GetParam().traits.manual_time) clock_.set_ms(SystemClock::instance().now_ms());
  harness_ = GetParam().make();
  if (IsSkipped() || HasFatalFailure()) return;  // the engine cannot run here
  ASSERT_TRUE(harness_);
  auto s = harness_->open(EngineOptions{&clock_, false});
  ASSERT_TRUE(IsOk(s));
  store_ = std::move(*s);
}

void StoreContract::TearDown() {
  store_.reset();
  harness_.reset();
}

void StoreContract::reopen(bool fault_injection) {
  store_.reset();
  auto s = harness_->open(EngineOptions{&clock_, fault_injection});
  ASSERT_TRUE(IsOk(s));
  store_ = std::move(*s);
}

CreateRequest StoreContract::create_req(const std::string& path, const std::string& content_type,
                                        const std::string& body) {
  CreateRequest r;
  r.path = path;
  r.config.content_type = content_type;
  r.body = body;
  return r;
}

CreateRequest StoreContract::fork_req(const std::string& path, const std::string& source,
                                      std::optional<Offset> at, uint64_t sub_offset) {
  CreateRequest r;
  r.path = path;
  r.forked_from = source;
  r.fork_offset = at;
  r.fork_sub_offset = sub_offset;
  return r;
}

AppendRequest StoreContract::append_req(const std::string& path, const std::string& body,
                                        const std::string& content_type) {
  AppendRequest r;
  r.path = path;
  r.body = body;
  r.content_type = content_type;
  return r;
}

AppendRequest StoreContract::producer_req(const std::string& path, const std::string& body,
                                          const std::string& id, uint64_t epoch, uint64_t seq) {
  AppendRequest r = append_req(path, body);
  r.producer = ProducerTriple{id, epoch, seq};
  return r;
}

AppendRequest StoreContract::close_req(const std::string& path) {
  AppendRequest r;
  r.path = path;
  r.close = true;
  return r;
}

Result<CreateOutcome> StoreContract::create(CreateRequest req) {
  return call_sync<CreateOutcome>("create", [&](auto cb) { store_->create(std::move(req), cb); });
}

Result<AppendOutcome> StoreContract::append(AppendRequest req) {
  return call_sync<AppendOutcome>("append", [&](auto cb) { store_->append(std::move(req), cb); });
}

Result<ReadOutcome> StoreContract::read(const std::string& path, OffsetSpec from,
                                        size_t max_bytes) {
  return call_sync<ReadOutcome>("read", [&](auto cb) {
    store_->read(ReadRequest{path, from, max_bytes}, cb);
  });
}

Result<StreamMeta> StoreContract::head(const std::string& path) {
  return call_sync<StreamMeta>("head", [&](auto cb) { store_->head(path, cb); });
}

Status StoreContract::remove(const std::string& path) {
  return call_sync<Unit>("remove", [&](auto cb) { store_->remove(path, cb); });
}

StreamMeta StoreContract::make_stream(const std::string& path, const std::string& content_type,
                                      const std::string& body) {
  auto r = create(create_req(path, content_type, body));
  EXPECT_TRUE(IsOk(r));
  if (!r) return {};
  EXPECT_TRUE(r->created) << path << " already existed";
  return r->meta;
}

Offset StoreContract::put(const std::string& path, const std::string& body,
                          const std::string& content_type) {
  auto r = append(append_req(path, body, content_type));
  EXPECT_TRUE(IsOk(r)) << "appending '" << body << "' to " << path;
  if (!r) return {};
  EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
  return r->tail;
}

std::string StoreContract::read_all(const std::string& path, OffsetSpec from, size_t max_bytes) {
  std::string out;
  for (int i = 0; i < 100'000; ++i) {
    auto r = read(path, from, max_bytes);
    EXPECT_TRUE(IsOk(r)) << "reading " << path;
    if (!r) return out;
    EXPECT_TRUE(Contiguous(*r));
    out += concat(r->records);
    if (r->up_to_date) {
      EXPECT_EQ(r->next, r->meta.tail);
      return out;
    }
    if (r->records.empty()) {
      ADD_FAILURE() << "read made no progress and is not up to date at " << r->next.str();
      return out;
    }
    from = OffsetSpec::position(r->next);
  }
  ADD_FAILURE() << "read_all did not reach the tail";
  return out;
}

std::string StoreContract::build_fork_chain(uint64_t depth,
                                            std::optional<uint64_t> last_ttl_seconds) {
  std::string expected = "root;";
  make_stream(fork_chain_path(0), kText, expected);
  for (uint64_t i = 1; i <= depth; ++i) {
    auto req = fork_req(fork_chain_path(i), fork_chain_path(i - 1));
    if (i == depth) req.config.ttl_seconds = last_ttl_seconds;
    auto f = create(req);
    EXPECT_TRUE(IsOk(f)) << "fork " << i;
    if (!f) return expected;
    if (i % 100 == 0 || i == depth) {
      const std::string body = "f" + std::to_string(i) + ";";
      put(fork_chain_path(i), body);
      expected += body;
    }
  }
  return expected;
}

// ------------------------------------------------------------------ create

TEST_P(StoreContract, HealthyWhenOpen) { DS_EXPECT_OK(store().health()); }

TEST_P(StoreContract, CreateNewStreamReportsCreated) {
  auto r = create(create_req(kA, kText));
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->created);
  EXPECT_EQ(r->meta.path, kA);
  EXPECT_EQ(r->meta.config.content_type, kText);
  if (traits().dense_offsets) {
    EXPECT_EQ(r->meta.tail, Offset{});
  }
  EXPECT_FALSE(r->meta.closed);
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->id, r->meta.id);
  EXPECT_EQ(h->tail, r->meta.tail);
  EXPECT_EQ(h->config.content_type, kText);
  EXPECT_FALSE(h->closed);
  auto rd = read(kA);
  DS_ASSERT_OK(rd);
  EXPECT_TRUE(rd->records.empty());
  EXPECT_EQ(rd->next, r->meta.tail);
  EXPECT_TRUE(rd->up_to_date);
}

TEST_P(StoreContract, CreateIdenticalStreamIsIdempotent) {
  auto first = create(create_req(kA, kText, "body"));
  DS_ASSERT_OK(first);
  ASSERT_TRUE(first->created);
  auto again = create(create_req(kA, kText, "body"));
  DS_ASSERT_OK(again);
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->meta.id, first->meta.id);
  EXPECT_EQ(again->meta.tail, first->meta.tail);
  EXPECT_EQ(read_all(kA), "body");  // the repeated body was not appended again
}

TEST_P(StoreContract, CreateWithDifferentConfigIsConfigMismatch) {
  auto base = create_req(kA, kText);
  base.config.ttl_seconds = 3600;
  DS_ASSERT_OK(create(base));

  auto other_type = base;
  other_type.config.content_type = kJson;
  DS_EXPECT_ERR(create(other_type), errc::config_mismatch);

  auto other_ttl = base;
  other_ttl.config.ttl_seconds = 60;
  DS_EXPECT_ERR(create(other_ttl), errc::config_mismatch);

  auto no_ttl = base;
  no_ttl.config.ttl_seconds.reset();
  DS_EXPECT_ERR(create(no_ttl), errc::config_mismatch);

  auto closed = base;
  closed.closed = true;
  DS_EXPECT_ERR(create(closed), errc::config_mismatch);

  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->config.content_type, kText);
  EXPECT_EQ(h->config.ttl_seconds, std::optional<uint64_t>(3600));
  EXPECT_FALSE(h->closed);
}

TEST_P(StoreContract, CreateClosedStream) {
  auto req = create_req(kA, kText);
  req.closed = true;
  auto r = create(req);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->created);
  EXPECT_TRUE(r->meta.closed);
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_TRUE(h->closed);
  auto a = append(append_req(kA, "late"));
  DS_ASSERT_ERR(a, errc::stream_closed);
  EXPECT_TRUE(a.error().closed);
  auto rd = read(kA);
  DS_ASSERT_OK(rd);
  EXPECT_TRUE(rd->records.empty());
  EXPECT_TRUE(rd->up_to_date);
  EXPECT_TRUE(rd->meta.closed);
  // The same closed PUT again is idempotent.
  auto again = create(req);
  DS_ASSERT_OK(again);
  EXPECT_FALSE(again->created);
}

TEST_P(StoreContract, CreateWithInitialBody) {
  auto meta = make_stream(kA, kText, "hello");
  EXPECT_LT(Offset{}, meta.tail);
  auto r = read(kA);
  DS_ASSERT_OK(r);
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0]->bytes, "hello");
  EXPECT_TRUE(Contiguous(*r));
  if (traits().dense_offsets) {
    EXPECT_EQ(r->records[0]->begin, Offset{});
  }
  EXPECT_EQ(r->records[0]->end, meta.tail);
  EXPECT_EQ(r->next, meta.tail);
  EXPECT_TRUE(r->up_to_date);
}

TEST_P(StoreContract, CreateClosedWithInitialBody) {
  auto req = create_req(kA, kText, "initial content");
  req.closed = true;
  auto r = create(req);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->meta.closed);
  EXPECT_LT(Offset{}, r->meta.tail);
  auto rd = read(kA);
  DS_ASSERT_OK(rd);
  EXPECT_EQ(concat(rd->records), "initial content");
  EXPECT_TRUE(rd->meta.closed);
  EXPECT_TRUE(rd->up_to_date);
}

TEST_P(StoreContract, CreateJsonWithEmptyArrayStoresNothing) {
  auto meta = make_stream(kA, kJson, "[]");
  if (traits().dense_offsets) {
    EXPECT_EQ(meta.tail, Offset{});
  }
  auto r = read(kA);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_EQ(r->next, meta.tail);
  EXPECT_TRUE(r->up_to_date);
  auto t = put(kA, "[1]", kJson);
  EXPECT_LT(Offset{}, t);
  EXPECT_EQ(read_all(kA), "1");
}

TEST_P(StoreContract, CreateJsonInitialBodyIsFramed) {
  make_stream(kA, kJson, R"([{"a":1},{"b":2}])");
  EXPECT_EQ(read_all(kA), R"({"a":1},{"b":2})");
  make_stream(kB, kJson, R"({"single":true})");
  EXPECT_EQ(read_all(kB), R"({"single":true})");
}

TEST_P(StoreContract, CreateJsonWithInvalidBodyCreatesNothing) {
  DS_EXPECT_ERR(create(create_req(kA, kJson, "{not json")), errc::bad_json);
  DS_EXPECT_ERR(head(kA), errc::not_found);
  // The path is still free.
  make_stream(kA, kJson, "[]");
}

TEST_P(StoreContract, MissingStreamIsNotFoundEverywhere) {
  DS_EXPECT_ERR(head(kA), errc::not_found);
  DS_EXPECT_ERR(read(kA), errc::not_found);
  DS_EXPECT_ERR(append(append_req(kA, "x")), errc::not_found);
  DS_EXPECT_ERR(append(close_req(kA)), errc::not_found);
  DS_EXPECT_ERR(remove(kA), errc::not_found);
}

// ------------------------------------------------------------------ append

TEST_P(StoreContract, AppendAdvancesTail) {
  make_stream(kA);
  auto r1 = append(append_req(kA, "abc"));
  DS_ASSERT_OK(r1);
  EXPECT_EQ(r1->kind, AppendOutcome::Kind::appended);
  EXPECT_FALSE(r1->closed);
  EXPECT_LT(Offset{}, r1->tail);
  auto r2 = append(append_req(kA, "de"));
  DS_ASSERT_OK(r2);
  EXPECT_LT(r1->tail, r2->tail);
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->tail, r2->tail);
  EXPECT_EQ(read_all(kA), "abcde");
}

TEST_P(StoreContract, AppendOffsetsStrictlyIncreaseAndMatchRecords) {
  make_stream(kA);
  std::vector<std::string> payloads;
  std::vector<Offset> tails;
  for (int i = 0; i < 20; ++i) {
    payloads.push_back(std::string(static_cast<size_t>(1 + i % 7), static_cast<char>('a' + i)));
    tails.push_back(put(kA, payloads.back()));
    if (i > 0) {
      EXPECT_LT(tails[i - 1], tails[i]) << "append " << i;
    }
  }
  auto r = read(kA);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(Contiguous(*r));
  ASSERT_EQ(r->records.size(), payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) {
    EXPECT_EQ(r->records[i]->bytes, payloads[i]);
    EXPECT_EQ(r->records[i]->end, tails[i]);
  }
  EXPECT_EQ(r->next, tails.back());
  EXPECT_TRUE(r->up_to_date);
}

TEST_P(StoreContract, AppendWithOtherContentTypeIsRejected) {
  auto meta = make_stream(kA, kText, "x");
  DS_EXPECT_ERR(append(append_req(kA, R"({"a":1})", kJson)), errc::content_type_mismatch);
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->tail, meta.tail);
  EXPECT_EQ(read_all(kA), "x");
}

TEST_P(StoreContract, AppendToClosedStreamCarriesTailAndClosed) {
  make_stream(kA);
  put(kA, "data");
  auto c = append(close_req(kA));
  DS_ASSERT_OK(c);
  const Offset tail = c->tail;

  auto a = append(append_req(kA, "more"));
  DS_ASSERT_ERR(a, errc::stream_closed);
  EXPECT_TRUE(a.error().closed);
  ASSERT_TRUE(a.error().tail.has_value());
  EXPECT_EQ(*a.error().tail, tail);

  // Append-and-close on a closed stream is not idempotent without a producer.
  auto ac = append_req(kA, "final");
  ac.close = true;
  auto r = append(ac);
  DS_ASSERT_ERR(r, errc::stream_closed);
  EXPECT_TRUE(r.error().closed);
  ASSERT_TRUE(r.error().tail.has_value());
  EXPECT_EQ(*r.error().tail, tail);
  EXPECT_EQ(read_all(kA), "data");
}

TEST_P(StoreContract, CloseOnlyIsIdempotent) {
  make_stream(kA);
  const Offset tail = put(kA, "content");
  auto first = append(close_req(kA));
  DS_ASSERT_OK(first);
  EXPECT_NE(first->kind, AppendOutcome::Kind::duplicate);
  EXPECT_TRUE(first->closed);
  // With sparse offsets the closure may take an offset of its own.
  if (traits().dense_offsets) {
    EXPECT_EQ(first->tail, tail);
  } else {
    EXPECT_LE(tail, first->tail);
  }
  const Offset closed_tail = first->tail;

  auto second = append(close_req(kA));
  DS_ASSERT_OK(second);
  EXPECT_EQ(second->kind, AppendOutcome::Kind::already_closed);
  EXPECT_TRUE(second->closed);
  EXPECT_EQ(second->tail, closed_tail);

  // A close-only request carries no body, so its Content-Type is not checked.
  auto typed = close_req(kA);
  typed.content_type = kJson;
  auto third = append(typed);
  DS_ASSERT_OK(third);
  EXPECT_TRUE(third->closed);

  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_TRUE(h->closed);
  EXPECT_EQ(h->tail, closed_tail);
  EXPECT_EQ(read_all(kA, OffsetSpec::position(tail)), "");
}

TEST_P(StoreContract, CloseOnlyIgnoresContentTypeOnOpenStream) {
  make_stream(kA, kJson);
  auto typed = close_req(kA);
  typed.content_type = kText;
  auto r = append(typed);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->closed);
}

TEST_P(StoreContract, AppendAndCloseIsAtomic) {
  make_stream(kA);
  put(kA, "first ");
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));

  auto req = append_req(kA, "final");
  req.close = true;
  auto r = append(req);
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
  EXPECT_TRUE(r->closed);

  ASSERT_TRUE(log.wait_for(2));
  auto ev = log.events()[1];
  ASSERT_EQ(ev.records.size(), 1u);
  EXPECT_EQ(ev.records[0]->bytes, "final");
  EXPECT_TRUE(ev.closed) << "data and closure must arrive in one commit";
  EXPECT_EQ(ev.tail, r->tail);

  auto rd = read(kA);
  DS_ASSERT_OK(rd);
  EXPECT_EQ(concat(rd->records), "first final");
  EXPECT_TRUE(rd->meta.closed);
  EXPECT_EQ(rd->meta.tail, r->tail);
}

TEST_P(StoreContract, RejectedAppendAndCloseLeavesStreamOpen) {
  make_stream(kA);
  auto req = append_req(kA, "[1]", kJson);
  req.close = true;
  DS_EXPECT_ERR(append(req), errc::content_type_mismatch);
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_FALSE(h->closed);
  put(kA, "still open");
}

// ------------------------------------------------------------------ Stream-Seq

TEST_P(StoreContract, StreamSeqMustIncrease) {
  make_stream(kA);
  auto with_seq = [&](const std::string& body, const std::string& seq) {
    auto r = append_req(kA, body);
    r.stream_seq = seq;
    return append(r);
  };
  DS_EXPECT_OK(with_seq("a", "001"));
  DS_EXPECT_OK(with_seq("b", "002"));
  DS_EXPECT_ERR(with_seq("x", "002"), errc::stream_seq_regression);
  DS_EXPECT_ERR(with_seq("x", "001"), errc::stream_seq_regression);
  DS_EXPECT_OK(with_seq("c", "003"));
  // Lexicographic, not numeric: "9" < "10" is false.
  DS_EXPECT_OK(with_seq("d", "9"));
  DS_EXPECT_ERR(with_seq("x", "10"), errc::stream_seq_regression);
  // Appends without Stream-Seq are not affected.
  put(kA, "e");
  DS_EXPECT_ERR(with_seq("x", "9"), errc::stream_seq_regression);
  EXPECT_EQ(read_all(kA), "abcde");
}

// ------------------------------------------------------------------ producers

TEST_P(StoreContract, ProducerAcceptsInOrderAndReportsDuplicates) {
  make_stream(kA);
  for (uint64_t seq = 0; seq < 3; ++seq) {
    auto r = append(producer_req(kA, std::string(1, static_cast<char>('a' + seq)), "p", 0, seq));
    DS_ASSERT_OK(r);
    EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
    EXPECT_EQ(r->producer_epoch, std::optional<uint64_t>(0));
    EXPECT_EQ(r->producer_seq, std::optional<uint64_t>(seq));
  }
  const Offset tail = head(kA)->tail;
  auto dup = append(producer_req(kA, "b", "p", 0, 1));
  DS_ASSERT_OK(dup);
  EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
  EXPECT_EQ(dup->producer_epoch, std::optional<uint64_t>(0));
  EXPECT_EQ(dup->producer_seq, std::optional<uint64_t>(2))
      << "a duplicate reports the highest accepted seq";
  EXPECT_EQ(dup->tail, tail);
  EXPECT_EQ(read_all(kA), "abc");
}

TEST_P(StoreContract, ProducerStaleEpochReportsCurrentEpoch) {
  make_stream(kA);
  DS_ASSERT_OK(append(producer_req(kA, "A0", "p", 0, 0)));
  DS_ASSERT_OK(append(producer_req(kA, "B0", "p", 1, 0)));
  auto stale = append(producer_req(kA, "A1", "p", 0, 1));
  DS_ASSERT_ERR(stale, errc::producer_stale_epoch);
  EXPECT_EQ(stale.error().producer_epoch, std::optional<uint64_t>(1));
  EXPECT_EQ(read_all(kA), "A0B0");
}

TEST_P(StoreContract, ProducerSeqGapReportsExpectedAndReceived) {
  make_stream(kA);
  auto fresh = append(producer_req(kA, "x", "p", 0, 3));
  DS_ASSERT_ERR(fresh, errc::producer_seq_gap);
  EXPECT_EQ(fresh.error().expected_seq, std::optional<uint64_t>(0));
  EXPECT_EQ(fresh.error().received_seq, std::optional<uint64_t>(3));

  DS_ASSERT_OK(append(producer_req(kA, "a", "p", 0, 0)));
  auto gap = append(producer_req(kA, "x", "p", 0, 2));
  DS_ASSERT_ERR(gap, errc::producer_seq_gap);
  EXPECT_EQ(gap.error().expected_seq, std::optional<uint64_t>(1));
  EXPECT_EQ(gap.error().received_seq, std::optional<uint64_t>(2));
  EXPECT_EQ(read_all(kA), "a");
}

TEST_P(StoreContract, ProducerNewEpochMustStartAtZero) {
  make_stream(kA);
  DS_ASSERT_OK(append(producer_req(kA, "a", "p", 0, 0)));
  DS_ASSERT_OK(append(producer_req(kA, "b", "p", 0, 1)));
  DS_EXPECT_ERR(append(producer_req(kA, "x", "p", 1, 1)), errc::producer_bad_epoch_start);
  auto r = append(producer_req(kA, "c", "p", 1, 0));
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
  EXPECT_EQ(r->producer_epoch, std::optional<uint64_t>(1));
  EXPECT_EQ(read_all(kA), "abc");
}

TEST_P(StoreContract, ProducersAreIndependent) {
  make_stream(kA);
  DS_ASSERT_OK(append(producer_req(kA, "A0", "A", 0, 0)));
  DS_ASSERT_OK(append(producer_req(kA, "B0", "B", 0, 0)));
  DS_ASSERT_OK(append(producer_req(kA, "A1", "A", 0, 1)));
  DS_ASSERT_OK(append(producer_req(kA, "B1", "B", 0, 1)));
  EXPECT_EQ(read_all(kA), "A0B0A1B1");
}

TEST_P(StoreContract, ProducerDuplicateIsCheckedBeforeStreamSeq) {
  make_stream(kA);
  auto req = producer_req(kA, "x", "p", 0, 0);
  req.stream_seq = "app-seq-001";
  auto first = append(req);
  DS_ASSERT_OK(first);
  EXPECT_EQ(first->kind, AppendOutcome::Kind::appended);
  auto retry = append(req);
  DS_ASSERT_OK(retry);
  EXPECT_EQ(retry->kind, AppendOutcome::Kind::duplicate);
  EXPECT_EQ(read_all(kA), "x");
}

TEST_P(StoreContract, ProducerCloseIsIdempotentOnlyForTheClosingTuple) {
  make_stream(kA);
  auto req = producer_req(kA, "final", "p", 0, 0);
  req.close = true;
  auto first = append(req);
  DS_ASSERT_OK(first);
  EXPECT_EQ(first->kind, AppendOutcome::Kind::appended);
  EXPECT_TRUE(first->closed);

  auto dup = append(req);
  DS_ASSERT_OK(dup);
  EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
  EXPECT_TRUE(dup->closed);
  EXPECT_EQ(dup->tail, first->tail);

  auto other = producer_req(kA, "final", "q", 0, 0);
  other.close = true;
  DS_EXPECT_ERR(append(other), errc::stream_closed);
  auto next = producer_req(kA, "final", "p", 0, 1);
  next.close = true;
  auto r = append(next);
  DS_ASSERT_ERR(r, errc::stream_closed);
  EXPECT_TRUE(r.error().closed);
  EXPECT_EQ(read_all(kA), "final");
}

TEST_P(StoreContract, ProducerCloseOnlyAdvancesProducerState) {
  make_stream(kA);
  DS_ASSERT_OK(append(producer_req(kA, "a", "p", 0, 0)));
  auto close = producer_req(kA, "", "p", 0, 1);
  close.close = true;
  auto r = append(close);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->closed);
  EXPECT_EQ(r->producer_seq, std::optional<uint64_t>(1));
  auto again = append(close);
  DS_ASSERT_OK(again);
  EXPECT_EQ(again->kind, AppendOutcome::Kind::duplicate);
  EXPECT_TRUE(again->closed);
}

// One producer, several threads, seqs submitted concurrently but in order
// (each submission is issued under a lock that hands out the next seq): every
// append is applied exactly once and in seq order.
TEST_P(StoreContract, ConcurrentInOrderProducerAppendsApplyOnceInOrder) {
  make_stream(kA);
  constexpr uint64_t kCount = 50;
  constexpr int kThreads = 5;
  std::mutex submit_mu;
  uint64_t next_seq = 0;
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::map<uint64_t, Result<AppendOutcome>> results;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (;;) {
        std::lock_guard lock(submit_mu);
        if (next_seq == kCount) return;
        uint64_t seq = next_seq++;
        store().append(producer_req(kA, "m" + std::to_string(seq) + ";", "p", 0, seq),
                       [&, seq](Result<AppendOutcome> r) {
                         // Notify under the lock: the test's frame (and
                         // done_cv) may be gone once the lock is released.
                         std::lock_guard l(done_mu);
                         results.emplace(seq, std::move(r));
                         done_cv.notify_all();
                       });
      }
    });
  }
  for (auto& t : threads) t.join();
  {
    std::unique_lock lock(done_mu);
    ASSERT_TRUE(done_cv.wait_for(lock, kCallTimeout, [&] { return results.size() == kCount; }))
        << "only " << results.size() << " of " << kCount << " appends completed";
  }
  std::string expected;
  std::optional<Offset> prev;
  for (uint64_t seq = 0; seq < kCount; ++seq) {
    const auto& r = results.at(seq);
    DS_ASSERT_OK(r);
    EXPECT_EQ(r->kind, AppendOutcome::Kind::appended) << "seq " << seq;
    if (prev) {
      EXPECT_LT(*prev, r->tail) << "seq " << seq;
    }
    prev = r->tail;
    expected += "m" + std::to_string(seq) + ";";
  }
  EXPECT_EQ(read_all(kA), expected);
}

// Several threads of one producer all send every seq in order (retries racing
// each other): exactly one copy of each seq is applied.
TEST_P(StoreContract, ConcurrentProducerRetriesNeverDoubleApply) {
  make_stream(kA);
  constexpr uint64_t kCount = 50;
  constexpr int kThreads = 4;
  std::atomic<int> appended{0}, duplicates{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (uint64_t seq = 0; seq < kCount; ++seq) {
        auto r = append(producer_req(kA, "m" + std::to_string(seq) + ";", "p", 0, seq));
        if (!r) {
          ADD_FAILURE() << "seq " << seq << ": " << describe(r.error());
          ++failures;
          return;
        }
        if (r->kind == AppendOutcome::Kind::appended) ++appended;
        if (r->kind == AppendOutcome::Kind::duplicate) ++duplicates;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(appended.load(), static_cast<int>(kCount));
  EXPECT_EQ(duplicates.load(), static_cast<int>(kCount) * (kThreads - 1));
  std::string expected;
  for (uint64_t seq = 0; seq < kCount; ++seq) expected += "m" + std::to_string(seq) + ";";
  EXPECT_EQ(read_all(kA), expected);
}

// ------------------------------------------------------------------ If-Match

namespace {

/// `req`, made conditional on `tail` (and, for the HEAD/GET ETag form, the
/// stream's incarnation `id`).
AppendRequest expecting(AppendRequest req, Offset tail, std::optional<uint64_t> id = {}) {
  req.if_match = TailExpectation{false, {TailTag{tail, id}}};
  return req;
}

}  // namespace

TEST_P(StoreContract, ConditionalAppendAtTheTailAppends) {
  const StreamMeta m = make_stream(kA, kText, "a");
  auto b = append(expecting(append_req(kA, "b"), m.tail));
  DS_ASSERT_OK(b);
  EXPECT_EQ(b->kind, AppendOutcome::Kind::appended);
  // Chained: the answer's tail is the next expectation; the HEAD form too.
  auto c = append(expecting(append_req(kA, "c"), b->tail, m.id));
  DS_ASSERT_OK(c);
  EXPECT_EQ(c->kind, AppendOutcome::Kind::appended);
  auto any = append_req(kA, "d");
  any.if_match = TailExpectation{true, {}};
  DS_ASSERT_OK(append(any));
  EXPECT_EQ(read_all(kA), "abcd");
}

TEST_P(StoreContract, StaleConditionalAppendIsPreconditionFailedAndWritesNothing) {
  const StreamMeta m = make_stream(kA, kText, "a");
  const Offset tail = put(kA, "b");
  for (const auto& req :
       {expecting(append_req(kA, "x"), m.tail), expecting(append_req(kA, "x"), tail, m.id + 1)}) {
    auto r = append(req);
    DS_ASSERT_ERR(r, errc::precondition_failed);
    EXPECT_EQ(r.error().tail, std::optional<Offset>(tail)) << "the 412 reports the current tail";
    EXPECT_FALSE(r.error().closed);
  }
  auto nothing = append_req(kA, "x");
  nothing.if_match = TailExpectation{};  // tags the server never issued
  DS_EXPECT_ERR(append(nothing), errc::precondition_failed);
  EXPECT_EQ(head(kA)->tail, tail);
  EXPECT_EQ(read_all(kA), "ab");
}

TEST_P(StoreContract, ConditionalAppendToAMissingStreamIsNotFound) {
  auto any = append_req(kB, "x");
  any.if_match = TailExpectation{true, {}};
  DS_EXPECT_ERR(append(any), errc::not_found);
  DS_EXPECT_ERR(append(expecting(append_req(kB, "x"), Offset{})), errc::not_found);
}

TEST_P(StoreContract, ConditionalCloseAndClosedStreams) {
  const StreamMeta m = make_stream(kA, kText, "a");
  auto stale_close = expecting(close_req(kA), Offset{});
  if (m.tail != Offset{}) {
    DS_EXPECT_ERR(append(stale_close), errc::precondition_failed);
  }
  EXPECT_FALSE(head(kA)->closed);
  auto closed = append(expecting(close_req(kA), m.tail));
  DS_ASSERT_OK(closed);
  EXPECT_TRUE(closed->closed);
  const Offset tail = closed->tail;
  // Close-only again: idempotent while the expectation holds.
  auto again = append(expecting(close_req(kA), tail));
  DS_ASSERT_OK(again);
  EXPECT_EQ(again->kind, AppendOutcome::Kind::already_closed);
  auto r = append(expecting(close_req(kA), Offset{0, 0}, m.id + 1));
  DS_ASSERT_ERR(r, errc::precondition_failed);
  EXPECT_TRUE(r.error().closed);
  EXPECT_EQ(r.error().tail, std::optional<Offset>(tail));
  // An append to a closed stream is the closed conflict, whatever If-Match says.
  DS_EXPECT_ERR(append(expecting(append_req(kA, "x"), tail)), errc::stream_closed);
  DS_EXPECT_ERR(append(expecting(append_req(kA, "x"), Offset{})), errc::stream_closed);
  EXPECT_EQ(read_all(kA), "a");
}

// A producer's retry carries the expectation of its first attempt, which that
// attempt's own append made stale: the retry is the duplicate, not 412.
TEST_P(StoreContract, ConditionalProducerRetryIsTheDuplicate) {
  const StreamMeta m = make_stream(kA, kText, "a");
  auto req = expecting(producer_req(kA, "b", "p", 0, 0), m.tail);
  auto first = append(req);
  DS_ASSERT_OK(first);
  EXPECT_EQ(first->kind, AppendOutcome::Kind::appended);
  auto retry = append(req);
  DS_ASSERT_OK(retry);
  EXPECT_EQ(retry->kind, AppendOutcome::Kind::duplicate);
  EXPECT_EQ(retry->tail, first->tail);
  EXPECT_EQ(retry->producer_seq, std::optional<uint64_t>(0));
  // The producer's next append is conditional like any other, and a 412
  // does not consume its seq.
  put(kA, "c");
  auto stale = append(expecting(producer_req(kA, "d", "p", 0, 1), first->tail));
  DS_ASSERT_ERR(stale, errc::precondition_failed);
  auto next = append(expecting(producer_req(kA, "d", "p", 0, 1), head(kA)->tail));
  DS_ASSERT_OK(next);
  EXPECT_EQ(next->kind, AppendOutcome::Kind::appended);
  EXPECT_EQ(read_all(kA), "abcd");
}

TEST_P(StoreContract, ConditionalAppendWithStreamSeq) {
  const StreamMeta m = make_stream(kA, kText, "a");
  auto with = [&](const std::string& body, const std::string& seq, Offset tail) {
    auto r = expecting(append_req(kA, body), tail);
    r.stream_seq = seq;
    return append(r);
  };
  auto b = with("b", "002", m.tail);
  DS_ASSERT_OK(b);
  // The tail is checked before Stream-Seq.
  DS_EXPECT_ERR(with("x", "001", m.tail), errc::precondition_failed);
  DS_EXPECT_ERR(with("x", "003", m.tail), errc::precondition_failed);
  DS_EXPECT_ERR(with("x", "002", b->tail), errc::stream_seq_regression);
  DS_EXPECT_OK(with("c", "003", b->tail));
  EXPECT_EQ(read_all(kA), "abc");
}

// Writers racing with the same expectation: exactly one appends; the others
// get 412 with the winner's tail, and nothing of theirs is written.
TEST_P(StoreContract, RacingConditionalAppendsExactlyOneWins) {
  const StreamMeta m = make_stream(kA, kText, "a");
  constexpr int kWriters = 8;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Result<AppendOutcome>> results;
  for (int i = 0; i < kWriters; ++i) {
    store().append(expecting(append_req(kA, "w" + std::to_string(i) + ";"), m.tail),
                   [&](Result<AppendOutcome> r) {
                     // Notify under the lock: the test's frame (and cv)
                     // may be gone once the lock is released.
                     std::lock_guard lock(mu);
                     results.push_back(std::move(r));
                     cv.notify_all();
                   });
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kCallTimeout, [&] { return results.size() == kWriters; }));
  }
  std::optional<Offset> winner;
  int refused = 0;
  for (const auto& r : results) {
    if (r) {
      EXPECT_FALSE(winner.has_value()) << "two conditional appends at one tail succeeded";
      winner = r->tail;
    } else {
      EXPECT_EQ(r.error().code, errc::precondition_failed) << describe(r.error());
      ++refused;
    }
  }
  ASSERT_TRUE(winner.has_value());
  EXPECT_EQ(refused, kWriters - 1);
  for (const auto& r : results) {
    if (!r) {
      EXPECT_EQ(r.error().tail, winner);
    }
  }
  const std::string data = read_all(kA);
  EXPECT_EQ(data.size(), std::string("a").size() + 3) << data;
  EXPECT_EQ(head(kA)->tail, *winner);
}

// ------------------------------------------------------------------ read

TEST_P(StoreContract, ReadFromStart) {
  make_stream(kA);
  put(kA, "one");
  const Offset tail = put(kA, "two");
  auto r = read(kA, OffsetSpec::start());
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->start, Offset{});
  EXPECT_TRUE(Contiguous(*r));
  ASSERT_EQ(r->records.size(), 2u);
  EXPECT_EQ(r->records[0]->bytes, "one");
  EXPECT_EQ(r->records[1]->bytes, "two");
  EXPECT_EQ(r->next, tail);
  EXPECT_EQ(r->meta.tail, tail);
  EXPECT_TRUE(r->up_to_date);
  EXPECT_FALSE(r->meta.closed);
}

TEST_P(StoreContract, ReadEmptyStream) {
  make_stream(kA);
  auto r = read(kA);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_EQ(r->next, r->meta.tail);
  EXPECT_TRUE(r->up_to_date);
}

TEST_P(StoreContract, ReadFromMidOffset) {
  make_stream(kA);
  const Offset mid = put(kA, "first");
  const Offset tail = put(kA, "second");
  auto r = read(kA, OffsetSpec::position(mid));
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->start, mid);
  EXPECT_TRUE(Contiguous(*r));
  EXPECT_EQ(concat(r->records), "second");
  EXPECT_EQ(r->next, tail);
  EXPECT_TRUE(r->up_to_date);

  auto at_tail = read(kA, OffsetSpec::position(tail));
  DS_ASSERT_OK(at_tail);
  EXPECT_TRUE(at_tail->records.empty());
  EXPECT_EQ(at_tail->next, tail);
  EXPECT_TRUE(at_tail->up_to_date);
}

TEST_P(StoreContract, ReadFromNow) {
  make_stream(kA);
  put(kA, "old");
  const Offset tail = put(kA, "data");
  auto r = read(kA, OffsetSpec::now());
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_EQ(r->start, tail);
  EXPECT_EQ(r->next, tail);
  EXPECT_TRUE(r->up_to_date);
  // After a later append, reading from the `now` position returns only it.
  put(kA, "new");
  EXPECT_EQ(read_all(kA, OffsetSpec::position(r->next)), "new");
}

TEST_P(StoreContract, ReadFromNowOnClosedStream) {
  make_stream(kA, kText, "content");
  DS_ASSERT_OK(append(close_req(kA)));
  auto r = read(kA, OffsetSpec::now());
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_TRUE(r->up_to_date);
  EXPECT_TRUE(r->meta.closed);
}

TEST_P(StoreContract, ReadMaxBytesChunksContiguousWholeRecords) {
  make_stream(kA);
  const std::vector<std::string> payloads = {"aaaa", "bb", "cccccc", "d", "eeeee", "ff", "ggg"};
  std::set<std::string> whole(payloads.begin(), payloads.end());
  std::string all;
  Offset tail;
  for (const auto& p : payloads) {
    tail = put(kA, p);
    all += p;
  }
  for (size_t max_bytes : {size_t{1}, size_t{5}, size_t{8}, size_t{13}}) {
    SCOPED_TRACE("max_bytes=" + std::to_string(max_bytes));
    std::string got;
    Offset at{};
    size_t reads = 0;
    for (;;) {
      ASSERT_LT(++reads, 100u);
      auto r = read(kA, OffsetSpec::position(at), max_bytes);
      DS_ASSERT_OK(r);
      EXPECT_EQ(r->start, at);
      EXPECT_TRUE(Contiguous(*r));
      for (const auto& rec : r->records) {
        EXPECT_TRUE(whole.count(rec->bytes)) << "torn record '" << rec->bytes << "'";
      }
      got += concat(r->records);
      EXPECT_EQ(r->up_to_date, r->next == tail);
      if (r->up_to_date) break;
      ASSERT_FALSE(r->records.empty()) << "a read below the tail must return at least one record";
      at = r->next;
    }
    EXPECT_EQ(got, all);
  }
  // A cap of one byte returns exactly one (whole) record.
  auto one = read(kA, OffsetSpec::start(), 1);
  DS_ASSERT_OK(one);
  ASSERT_EQ(one->records.size(), 1u);
  EXPECT_EQ(one->records[0]->bytes, "aaaa");
  EXPECT_FALSE(one->up_to_date);
}

TEST_P(StoreContract, ReadsConcurrentWithAppendsNeverSeeTornRecords) {
  make_stream(kA);
  constexpr int kAppends = 200;
  auto payload = [](int i) {
    return "<" + std::to_string(i) + std::string(static_cast<size_t>(i % 13), '.') + ">";
  };
  std::string expected;
  std::set<std::string> whole;
  for (int i = 0; i < kAppends; ++i) {
    expected += payload(i);
    whole.insert(payload(i));
  }
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    for (int i = 0; i < kAppends; ++i) {
      auto r = append(append_req(kA, payload(i)));
      if (!r) ADD_FAILURE() << describe(r.error());
    }
    writer_done = true;
  });
  int rounds = 0;
  while (!writer_done.load() || rounds < 2) {
    ++rounds;
    auto r = read(kA, OffsetSpec::start(), 64);
    ASSERT_TRUE(IsOk(r));
    EXPECT_TRUE(Contiguous(*r));
    std::string prefix;
    for (const auto& rec : r->records) {
      EXPECT_TRUE(whole.count(rec->bytes)) << "torn record '" << rec->bytes << "'";
      prefix += rec->bytes;
    }
    EXPECT_EQ(expected.compare(0, prefix.size(), prefix), 0)
        << "read is not a prefix of the stream";
    EXPECT_LE(r->next, r->meta.tail);
  }
  writer.join();
  EXPECT_EQ(read_all(kA), expected);
}

// ------------------------------------------------------------------ JSON

TEST_P(StoreContract, JsonAppendsStoreJoinedMessages) {
  make_stream(kA, kJson);
  put(kA, R"([{"a":1},{"b":2}])", kJson);
  put(kA, R"({"c":3})", kJson);
  put(kA, R"([[1,2],[3]])", kJson);  // one level of flattening only
  auto r = read(kA);
  DS_ASSERT_OK(r);
  ASSERT_EQ(r->records.size(), 3u);
  EXPECT_EQ(r->records[0]->bytes, R"({"a":1},{"b":2})");
  EXPECT_EQ(r->records[1]->bytes, R"({"c":3})");
  EXPECT_EQ(r->records[2]->bytes, R"([1,2],[3])");
}

TEST_P(StoreContract, JsonRejectsEmptyArrayAndInvalidJson) {
  const Offset tail = make_stream(kA, kJson, R"([{"x":0}])").tail;
  DS_EXPECT_ERR(append(append_req(kA, "[]", kJson)), errc::empty_json_array);
  DS_EXPECT_ERR(append(append_req(kA, "{ invalid json }", kJson)), errc::bad_json);
  DS_EXPECT_ERR(append(append_req(kA, "{}", kText)), errc::content_type_mismatch);
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->tail, tail);
}

// ------------------------------------------------------------------ forks

TEST_P(StoreContract, ForkInheritsPrefixUpToForkOffset) {
  make_stream(kA, kText, "first");
  const Offset mid = head(kA)->tail;
  const Offset tail = put(kA, "second");

  auto at_mid = create(fork_req(kB, kA, mid));
  DS_ASSERT_OK(at_mid);
  EXPECT_TRUE(at_mid->created);
  // A fork's own offsets continue from its fork point (densely) or sort after
  // everything it inherits.
  if (traits().dense_offsets) {
    EXPECT_EQ(at_mid->meta.tail, mid);
  } else {
    EXPECT_LE(mid, at_mid->meta.tail);
  }
  EXPECT_EQ(at_mid->meta.config.content_type, kText) << "a fork inherits the source's content type";
  EXPECT_FALSE(at_mid->meta.closed);
  EXPECT_EQ(read_all(kB), "first");

  auto at_tail = create(fork_req(kC, kA));
  DS_ASSERT_OK(at_tail);
  if (traits().dense_offsets) {
    EXPECT_EQ(at_tail->meta.tail, tail);
  } else {
    EXPECT_LE(tail, at_tail->meta.tail);
  }
  EXPECT_EQ(read_all(kC), "firstsecond");

  auto at_zero = create(fork_req("/v1/stream/zero", kA, Offset{}));
  DS_ASSERT_OK(at_zero);
  auto r = read("/v1/stream/zero");
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->records.empty());
  EXPECT_TRUE(r->up_to_date);
}

TEST_P(StoreContract, ForkAppendsFollowTheForkPoint) {
  make_stream(kA, kText, "source");
  const Offset fork_point = create(fork_req(kB, kA))->meta.tail;
  const Offset tail = put(kB, " fork");
  EXPECT_LT(fork_point, tail);
  auto r = read(kB);
  DS_ASSERT_OK(r);
  EXPECT_TRUE(Contiguous(*r));
  EXPECT_EQ(concat(r->records), "source fork") << "one read spans the fork boundary";
  EXPECT_TRUE(r->up_to_date);
  EXPECT_EQ(read_all(kB, OffsetSpec::position(fork_point)), " fork");
  EXPECT_EQ(read_all(kA), "source");
}

TEST_P(StoreContract, SourceAppendsAfterForkAreInvisibleToFork) {
  make_stream(kA, kText, "before");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  put(kA, " after");
  EXPECT_EQ(read_all(kB), "before");
  EXPECT_EQ(read_all(kA), "before after");
  put(kB, " mine");
  EXPECT_EQ(read_all(kB), "before mine");
}

TEST_P(StoreContract, ForkSubOffsetOnBytes) {
  make_stream(kA, kText, "hello");
  auto f = create(fork_req(kB, kA, Offset{}, 3));
  DS_ASSERT_OK(f);
  EXPECT_EQ(read_all(kB), "hel");
  EXPECT_EQ(f->meta.tail, head(kB)->tail);
  put(kB, "LO");
  EXPECT_EQ(read_all(kB), "helLO");
  EXPECT_EQ(read_all(kA), "hello");

  auto with_body = fork_req(kC, kA, Offset{}, 3);
  with_body.body = "XY";
  DS_ASSERT_OK(create(with_body));
  EXPECT_EQ(read_all(kC), "helXY");

  DS_EXPECT_ERR(create(fork_req("/v1/stream/over", kA, Offset{}, 6)), errc::bad_request);
  DS_EXPECT_ERR(head("/v1/stream/over"), errc::not_found);
}

TEST_P(StoreContract, ForkSubOffsetAnchoredMidStream) {
  make_stream(kA, kText, "first");
  const Offset anchor = head(kA)->tail;
  put(kA, "second");
  DS_ASSERT_OK(create(fork_req(kB, kA, anchor, 3)));
  EXPECT_EQ(read_all(kB), "firstsec");
}

TEST_P(StoreContract, ForkSubOffsetOnEmptySourceIsRejected) {
  make_stream(kA);
  DS_EXPECT_ERR(create(fork_req(kB, kA, Offset{}, 1)), errc::bad_request);
  DS_EXPECT_ERR(head(kB), errc::not_found);
}

TEST_P(StoreContract, ForkSubOffsetOnJsonCountsMessages) {
  make_stream(kA, kJson, R"([{"a":1},{"b":2},{"c":3},{"d":4}])");
  DS_ASSERT_OK(create(fork_req(kB, kA, Offset{}, 2)));
  EXPECT_EQ(read_all(kB), R"({"a":1},{"b":2})");
  put(kB, R"([{"e":5}])", kJson);
  auto r = read(kB);
  DS_ASSERT_OK(r);
  std::vector<std::string> bytes;
  for (const auto& rec : r->records) bytes.push_back(rec->bytes);
  EXPECT_EQ(bytes, (std::vector<std::string>{R"({"a":1},{"b":2})", R"({"e":5})"}));
  DS_EXPECT_ERR(create(fork_req(kC, kA, Offset{}, 5)), errc::bad_request);
}

TEST_P(StoreContract, ForkOfForkComposesSubOffsets) {
  make_stream(kA, kText, "abcdef");
  DS_ASSERT_OK(create(fork_req(kB, kA, Offset{}, 4)));
  EXPECT_EQ(read_all(kB), "abcd");
  DS_ASSERT_OK(create(fork_req(kC, kB, Offset{}, 2)));
  EXPECT_EQ(read_all(kC), "ab");
  put(kC, "Z");
  EXPECT_EQ(read_all(kC), "abZ");
  EXPECT_EQ(read_all(kB), "abcd");
  EXPECT_EQ(read_all(kA), "abcdef");
}

TEST_P(StoreContract, ForkChainsReadAcrossLevels) {
  make_stream(kA, kText, "X");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  put(kB, "Y");
  DS_ASSERT_OK(create(fork_req(kC, kB)));
  put(kC, "Z");
  put(kA, "0");
  put(kB, "1");
  EXPECT_EQ(read_all(kA), "X0");
  EXPECT_EQ(read_all(kB), "XY1");
  EXPECT_EQ(read_all(kC), "XYZ");
}

TEST_P(StoreContract, ForkRejections) {
  make_stream(kA, kText, "data");
  DS_EXPECT_ERR(create(fork_req(kB, "/v1/stream/missing")), errc::not_found);
  DS_EXPECT_ERR(create(fork_req(kB, kA, Offset{Offset::kMaxPart, Offset::kMaxPart})),
                errc::fork_offset_beyond_tail);
  auto json_fork = fork_req(kB, kA);
  json_fork.config.content_type = kJson;
  DS_EXPECT_ERR(create(json_fork), errc::content_type_mismatch);
  DS_EXPECT_ERR(head(kB), errc::not_found);
  // The target path is in use with another config.
  make_stream(kC, kJson);
  DS_EXPECT_ERR(create(fork_req(kC, kA)), errc::config_mismatch);
}

TEST_P(StoreContract, ForkCreationIsIdempotent) {
  make_stream(kA, kText, "data");
  const Offset fork_point = head(kA)->tail;  // what an omitted fork offset resolves to
  auto first = create(fork_req(kB, kA));
  DS_ASSERT_OK(first);
  EXPECT_TRUE(first->created);
  auto again = create(fork_req(kB, kA));
  DS_ASSERT_OK(again);
  EXPECT_FALSE(again->created) << "omitting the fork offset matches the stored, resolved one";
  EXPECT_EQ(again->meta.id, first->meta.id);
  auto explicit_offset = create(fork_req(kB, kA, fork_point));
  DS_ASSERT_OK(explicit_offset);
  EXPECT_FALSE(explicit_offset->created);
  DS_EXPECT_ERR(create(fork_req(kB, kA, Offset{})), errc::config_mismatch);
}

TEST_P(StoreContract, ForkOfClosedSourceIsOpen) {
  auto req = create_req(kA, kText, "hello");
  req.closed = true;
  DS_ASSERT_OK(create(req));
  auto f = create(fork_req(kB, kA));
  DS_ASSERT_OK(f);
  EXPECT_FALSE(f->meta.closed);
  put(kB, " fork data");
  EXPECT_EQ(read_all(kB), "hello fork data");
  DS_ASSERT_OK(create(fork_req(kC, kA, Offset{}, 3)));
  EXPECT_EQ(read_all(kC), "hel");
}

TEST_P(StoreContract, ForkAndSourceCloseIndependently) {
  make_stream(kA, kText, "data");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  DS_ASSERT_OK(append(close_req(kB)));
  EXPECT_TRUE(head(kB)->closed);
  EXPECT_FALSE(head(kA)->closed);
  put(kA, "more");
  DS_ASSERT_OK(create(fork_req(kC, kA)));
  DS_ASSERT_OK(append(close_req(kA)));
  put(kC, "!");
  EXPECT_FALSE(head(kC)->closed);
}

TEST_P(StoreContract, ForkDoesNotInheritProducerState) {
  make_stream(kA);
  DS_ASSERT_OK(append(producer_req(kA, "hello", "p", 0, 0)));
  DS_ASSERT_OK(create(fork_req(kB, kA, Offset{}, 3)));
  auto r = append(producer_req(kB, "LO", "p", 0, 0));
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->kind, AppendOutcome::Kind::appended);
  EXPECT_EQ(read_all(kB), "helLO");
}

TEST_P(StoreContract, ForkInheritsTtlUnlessGivenItsOwn) {
  auto src = create_req(kA, kText, "data");
  src.config.ttl_seconds = 3600;
  DS_ASSERT_OK(create(src));
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  EXPECT_EQ(head(kB)->config.ttl_seconds, std::optional<uint64_t>(3600));
  auto own = fork_req(kC, kA);
  own.config.ttl_seconds = 99999;
  DS_ASSERT_OK(create(own));
  EXPECT_EQ(head(kC)->config.ttl_seconds, std::optional<uint64_t>(99999));
}

TEST_P(StoreContract, DeletingAForkKeepsTheSource) {
  make_stream(kA, kText, "source data");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  DS_ASSERT_OK(create(fork_req(kC, kA)));
  DS_ASSERT_OK(remove(kB));
  DS_EXPECT_ERR(head(kB), errc::not_found);
  DS_EXPECT_ERR(read(kB), errc::not_found);
  DS_ASSERT_OK(remove(kC));
  EXPECT_EQ(read_all(kA), "source data");
  EXPECT_EQ(head(kA)->ref_count, 0u);
  // With no forks left, deleting the source removes it outright.
  DS_ASSERT_OK(remove(kA));
  DS_EXPECT_ERR(head(kA), errc::not_found);
}

TEST_P(StoreContract, DeletingASourceWithForksSoftDeletesIt) {
  make_stream(kA, kText, "preserved data");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  DS_ASSERT_OK(remove(kA));
  DS_EXPECT_ERR(head(kA), errc::gone);
  DS_EXPECT_ERR(read(kA), errc::gone);
  DS_EXPECT_ERR(append(append_req(kA, "x")), errc::gone);
  DS_EXPECT_ERR(remove(kA), errc::gone);
  DS_EXPECT_ERR(create(create_req(kA, kText)), errc::config_mismatch);
  DS_EXPECT_ERR(create(fork_req(kC, kA)), errc::fork_source_deleted);
  EXPECT_EQ(read_all(kB), "preserved data");
  put(kB, "+");
  EXPECT_EQ(read_all(kB), "preserved data+");
}

TEST_P(StoreContract, DeletingTheLastForkCascadesToADeletedSource) {
  make_stream(kA, kText, "data");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  DS_ASSERT_OK(create(fork_req(kC, kA)));
  DS_ASSERT_OK(remove(kA));
  DS_ASSERT_OK(remove(kB));
  DS_EXPECT_ERR(head(kA), errc::gone) << "one fork still reads through the source";
  EXPECT_EQ(read_all(kC), "data");
  DS_ASSERT_OK(remove(kC));
  DS_EXPECT_ERR(head(kC), errc::not_found);
  DS_EXPECT_ERR(head(kA), errc::not_found);
  // The path is free again.
  auto re = create(create_req(kA, kJson));
  DS_ASSERT_OK(re);
  EXPECT_TRUE(re->created);
}

TEST_P(StoreContract, CascadeThroughThreeLevels) {
  make_stream(kA, kText, "A");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  put(kB, "B");
  DS_ASSERT_OK(create(fork_req(kC, kB)));
  put(kC, "C");
  DS_ASSERT_OK(remove(kA));
  DS_ASSERT_OK(remove(kB));
  DS_EXPECT_ERR(head(kA), errc::gone);
  DS_EXPECT_ERR(head(kB), errc::gone);
  EXPECT_EQ(read_all(kC), "ABC");
  DS_ASSERT_OK(remove(kC));
  DS_EXPECT_ERR(head(kC), errc::not_found);
  DS_EXPECT_ERR(head(kB), errc::not_found);
  DS_EXPECT_ERR(head(kA), errc::not_found);
}

TEST_P(StoreContract, DeletingTheMiddleOfAChain) {
  make_stream(kA, kText, "A");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  put(kB, "B");
  DS_ASSERT_OK(create(fork_req(kC, kB)));
  put(kC, "C");
  DS_ASSERT_OK(remove(kB));
  DS_EXPECT_ERR(head(kB), errc::gone);
  EXPECT_EQ(read_all(kC), "ABC");
  EXPECT_EQ(read_all(kA), "A");
  DS_ASSERT_OK(remove(kC));
  DS_EXPECT_ERR(head(kB), errc::not_found);
  EXPECT_EQ(read_all(kA), "A");
  EXPECT_EQ(head(kA)->ref_count, 0u);
}

TEST_P(StoreContract, RejectedForkDoesNotTakeAReference) {
  make_stream(kA, kText, "data");
  auto json_fork = fork_req(kB, kA);
  json_fork.config.content_type = kJson;
  DS_EXPECT_ERR(create(json_fork), errc::content_type_mismatch);
  DS_EXPECT_ERR(create(fork_req(kB, kA, Offset{Offset::kMaxPart, 0})),
                errc::fork_offset_beyond_tail);
  DS_EXPECT_ERR(create(fork_req(kB, kA, Offset{}, 99)), errc::bad_request);
  make_stream(kC, kJson);
  auto json_src_fork = fork_req("/v1/stream/j", kC);
  json_src_fork.body = "{oops";
  DS_EXPECT_ERR(create(json_src_fork), errc::bad_json);
  EXPECT_EQ(head(kA)->ref_count, 0u);
  EXPECT_EQ(head(kC)->ref_count, 0u);
  DS_ASSERT_OK(remove(kA));
  DS_EXPECT_ERR(head(kA), errc::not_found) << "a leaked reference would make this gone";
  DS_ASSERT_OK(remove(kC));
  DS_EXPECT_ERR(head(kC), errc::not_found);
}

// ---- Fork depth (issue 13.1): a client chooses how deep a chain is, so no
// engine may recurse over one, and no chain is deeper than kMaxForkDepth.

TEST_P(StoreContract, ForkChainAtTheDepthLimitReadsAndDeeperIsRefused) {
  const uint64_t depth = kMaxForkDepth;
  const std::string expected = build_fork_chain(depth);
  ASSERT_FALSE(HasFailure());
  const std::string deepest = fork_chain_path(depth);
  auto meta = head(deepest);
  DS_ASSERT_OK(meta);
  EXPECT_EQ(meta->fork_depth, depth);
  EXPECT_EQ(read_all(deepest), expected);
  EXPECT_EQ(read_all(deepest, OffsetSpec::start(), 16), expected) << "in small reads";
  const std::string too_deep = "/v1/stream/too-deep";
  auto refuse_deeper = [&] {
    auto r = create(fork_req(too_deep, deepest));
    DS_EXPECT_ERR(r, errc::bad_request);
    if (!r) {
      EXPECT_NE(r.error().message.find("fork chain too deep"), std::string::npos);
    }
    DS_EXPECT_ERR(head(too_deep), errc::not_found);
    EXPECT_EQ(head(deepest)->ref_count, 0u) << "a refused fork takes no reference";
  };
  refuse_deeper();
  // Beside the deepest, a chain may branch at any shallower level.
  auto sibling = create(fork_req("/v1/stream/sibling", fork_chain_path(depth - 1)));
  DS_ASSERT_OK(sibling);
  EXPECT_EQ(sibling->meta.fork_depth, depth);
  DS_ASSERT_OK(remove("/v1/stream/sibling"));
  reopen();  // the depth is stored with the stream
  EXPECT_EQ(head(deepest)->fork_depth, depth);
  EXPECT_EQ(read_all(deepest), expected);
  refuse_deeper();
}

TEST_P(StoreContract, DeletingTheDeepestForkCascadesDownASoftDeletedChainOfMaximumDepth) {
  const uint64_t depth = kMaxForkDepth;
  const std::string expected = build_fork_chain(depth);
  ASSERT_FALSE(HasFailure());
  for (uint64_t i = 0; i < depth; ++i) {
    ASSERT_TRUE(IsOk(remove(fork_chain_path(i)))) << i;
  }
  DS_EXPECT_ERR(head(fork_chain_path(0)), errc::gone);
  DS_EXPECT_ERR(head(fork_chain_path(depth - 1)), errc::gone);
  EXPECT_EQ(read_all(fork_chain_path(depth)), expected)
      << "the chain reads through deleted sources";
  DS_ASSERT_OK(remove(fork_chain_path(depth)));
  for (uint64_t i = 0; i <= depth; ++i) {
    ASSERT_TRUE(IsErr(head(fork_chain_path(i)), errc::not_found)) << i;
  }
  auto again = create(create_req(fork_chain_path(0), kText));
  DS_ASSERT_OK(again);
  EXPECT_TRUE(again->created) << "the cascade freed the root's path";
}

TEST_P(StoreContract, ExpiryOfTheDeepestForkCascadesDownASoftDeletedChainOfMaximumDepth) {
  const uint64_t depth = kMaxForkDepth;
  const std::string expected = build_fork_chain(depth, /*last_ttl_seconds=*/10);
  ASSERT_FALSE(HasFailure());
  for (uint64_t i = 0; i < depth; ++i) {
    ASSERT_TRUE(IsOk(remove(fork_chain_path(i)))) << i;
  }
  clock_.advance_ms(11'000);
  // The next write to the expired fork finds it expired and deletes it, as
  // the background sweep would: the same cascade down the whole chain.
  DS_EXPECT_ERR(append(append_req(fork_chain_path(depth), "late")), errc::not_found);
  for (uint64_t i = 0; i <= depth; ++i) {
    ASSERT_TRUE(IsErr(head(fork_chain_path(i)), errc::not_found)) << i;
  }
  auto again = create(create_req(fork_chain_path(0), kText));
  DS_ASSERT_OK(again);
  EXPECT_TRUE(again->created) << "the cascade freed the root's path";
}

// ---- JSON forks (issue 13.7): a JSON stream is read in whole messages, so a
// fork of one must begin at a message boundary, never inside an append.

namespace {
::testing::AssertionResult WholeJsonRecords(const Result<ReadOutcome>& r) {
  if (!r) return ::testing::AssertionFailure() << describe(r.error());
  for (const auto& rec : r->records) {
    if (!frame_json("[" + rec->bytes + "]"))
      return ::testing::AssertionFailure() << "not whole JSON messages: " << rec->bytes;
  }
  return ::testing::AssertionSuccess();
}
}  // namespace

TEST_P(StoreContract, JsonForkMustBeginAtAMessageBoundary) {
  make_stream(kA, kJson);
  put(kA, R"([{"a":"xyz"},{"b":2}])", kJson);
  put(kA, R"([{"c":3}])", kJson);
  auto r = read(kA);
  DS_ASSERT_OK(r);
  ASSERT_EQ(r->records.size(), 2u);
  const Record first = *r->records[0];
  ASSERT_EQ(first.begin.hi, first.end.hi);
  // Every offset from the first append's start to its end: its two ends are
  // boundaries, anything between them (engines with byte offsets) is inside.
  int boundaries = 0, inside = 0;
  for (uint64_t lo = first.begin.lo; lo <= first.end.lo; ++lo) {
    const Offset at{first.begin.hi, lo};
    const std::string fork = "/v1/stream/jf" + std::to_string(lo - first.begin.lo);
    auto f = create(fork_req(fork, kA, at));
    if (at == first.begin || at == first.end) {
      ++boundaries;
      ASSERT_TRUE(IsOk(f)) << at.str();
      EXPECT_TRUE(WholeJsonRecords(read(fork))) << "fork at " << at.str();
      // A fork of the fork at an offset inside the inherited append is refused too.
      if (at == first.end && first.end.lo - first.begin.lo > 1) {
        DS_EXPECT_ERR(create(fork_req("/v1/stream/jff", fork, Offset{at.hi, at.lo - 1})),
                      errc::bad_offset);
      }
      continue;
    }
    ++inside;
    EXPECT_TRUE(IsErr(f, errc::bad_offset)) << "fork at " << at.str();
    if (f) {
      EXPECT_TRUE(WholeJsonRecords(read(fork))) << "fork at " << at.str();
    }
    DS_EXPECT_ERR(create(fork_req(fork, kA, at, 1)), errc::bad_offset);
    DS_EXPECT_ERR(head(fork), errc::not_found);
    DS_EXPECT_ERR(read(kA, OffsetSpec::position(at)), errc::bad_offset);
  }
  EXPECT_EQ(boundaries, 2);
  // Byte-offset engines have offsets inside an append; S2's offsets are one per
  // record, so every fork offset is a boundary there.
  if (traits().dense_offsets) {
    EXPECT_GT(inside, 0);
  } else {
    EXPECT_EQ(inside, 0);
  }
  EXPECT_EQ(head(kA)->ref_count, 2u) << "refused forks take no reference";
  // Sub-offset forks at a boundary keep counting whole messages.
  DS_ASSERT_OK(create(fork_req("/v1/stream/jsub", kA, first.begin, 1)));
  auto sub = read("/v1/stream/jsub");
  EXPECT_TRUE(WholeJsonRecords(sub));
  EXPECT_EQ(concat(sub->records), R"({"a":"xyz"})");
}

// ------------------------------------------------------------------ TTL

namespace {
/// Why restart-and-TTL tests skip without EngineTraits::manual_time.
constexpr const char* kRestartNeedsManualTime =
    "after a restart the engine re-derives access times from its storage's own (real) "
    "timestamps, which the test's ManualClock cannot move";
CreateRequest ttl_req(const std::string& path, uint64_t ttl_seconds, const std::string& body = "") {
  CreateRequest r;
  r.path = path;
  r.config.content_type = "text/plain";
  r.config.ttl_seconds = ttl_seconds;
  r.body = body;
  return r;
}
}  // namespace

TEST_P(StoreContract, TtlExpiresAfterIdlePeriod) {
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  clock_.advance_ms(9'999);
  DS_EXPECT_OK(head(kA));
  clock_.advance_ms(1);
  DS_EXPECT_ERR(head(kA), errc::not_found);
  DS_EXPECT_ERR(read(kA), errc::not_found);
  DS_EXPECT_ERR(append(append_req(kA, "x")), errc::not_found);
  DS_EXPECT_ERR(remove(kA), errc::not_found);
}

TEST_P(StoreContract, ReadsRenewTtl) {
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  for (int i = 0; i < 5; ++i) {
    clock_.advance_ms(6'000);
    EXPECT_EQ(read_all(kA), "data") << "read " << i;
  }
  clock_.advance_ms(9'999);
  DS_EXPECT_OK(head(kA));
  clock_.advance_ms(1);
  DS_EXPECT_ERR(head(kA), errc::not_found);
}

TEST_P(StoreContract, AppendsRenewTtl) {
  DS_ASSERT_OK(create(ttl_req(kA, 10)));
  for (int i = 0; i < 5; ++i) {
    clock_.advance_ms(6'000);
    put(kA, "x");
  }
  clock_.advance_ms(9'999);
  EXPECT_EQ(read_all(kA), "xxxxx");
}

// Both engines decide PUTs with protocol/rules.h (decide_create_existing):
// an idempotent PUT is a write, so it renews a sliding TTL. (The S2 engine
// used not to.)
TEST_P(StoreContract, IdempotentCreateRenewsTtl) {
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  for (int i = 0; i < 3; ++i) {
    clock_.advance_ms(6'000);
    auto again = create(ttl_req(kA, 10, "data"));
    DS_ASSERT_OK(again);
    EXPECT_FALSE(again->created) << "PUT " << i;
  }
  clock_.advance_ms(9'999);
  DS_EXPECT_OK(head(kA));
  clock_.advance_ms(1);
  DS_EXPECT_ERR(head(kA), errc::not_found);
}

TEST_P(StoreContract, HeadDoesNotRenewTtl) {
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  for (int i = 0; i < 3; ++i) {
    clock_.advance_ms(3'000);
    DS_EXPECT_OK(head(kA));
  }
  clock_.advance_ms(1'000);
  DS_EXPECT_ERR(head(kA), errc::not_found);
  DS_EXPECT_ERR(read(kA), errc::not_found);
}

TEST_P(StoreContract, ExpiresAtIsNeverExtended) {
  auto req = create_req(kA, kText, "data");
  req.config.expires_at_ms = clock_.now_ms() + 10'000;
  req.config.expires_at_text = "2023-11-14T22:13:30.000Z";
  DS_ASSERT_OK(create(req));
  clock_.advance_ms(5'000);
  EXPECT_EQ(read_all(kA), "data");
  put(kA, "more");
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->config.expires_at_ms, req.config.expires_at_ms);
  EXPECT_EQ(h->config.expires_at_text, req.config.expires_at_text);
  clock_.advance_ms(4'999);
  EXPECT_EQ(read_all(kA), "datamore");
  clock_.advance_ms(1);
  DS_EXPECT_ERR(head(kA), errc::not_found);
  DS_EXPECT_ERR(read(kA), errc::not_found);
}

TEST_P(StoreContract, ExpiredStreamCanBeRecreated) {
  auto old = create(ttl_req(kA, 10, "old"));
  DS_ASSERT_OK(old);
  clock_.advance_ms(10'000);
  auto fresh = create(create_req(kA, kJson));
  DS_ASSERT_OK(fresh);
  EXPECT_TRUE(fresh->created);
  EXPECT_NE(fresh->meta.id, old->meta.id);
  EXPECT_EQ(fresh->meta.config.content_type, kJson);
  if (traits().dense_offsets) {
    EXPECT_EQ(fresh->meta.tail, Offset{});
  } else {
    EXPECT_LT(old->meta.tail, fresh->meta.tail) << "the new incarnation sorts after the old one";
  }
  EXPECT_EQ(read_all(kA), "") << "data of the expired incarnation must not resurface";
  put(kA, "[1]", kJson);
  EXPECT_EQ(read_all(kA), "1");
}

TEST_P(StoreContract, ForkExpiresByItsOwnTtl) {
  DS_ASSERT_OK(create(ttl_req(kA, 60, "source")));
  auto f = fork_req(kB, kA);
  f.config.ttl_seconds = 1;
  DS_ASSERT_OK(create(f));
  DS_EXPECT_OK(head(kB));
  clock_.advance_ms(1'000);
  DS_EXPECT_ERR(head(kB), errc::not_found) << "an expired fork is not found, not gone";
  DS_EXPECT_ERR(read(kB), errc::not_found);
  EXPECT_EQ(read_all(kA), "source");
}

TEST_P(StoreContract, ReadingAForkDoesNotRenewTheSource) {
  DS_ASSERT_OK(create(ttl_req(kA, 2, "source")));
  auto f = fork_req(kB, kA);
  f.config.ttl_seconds = 2;
  DS_ASSERT_OK(create(f));
  clock_.advance_ms(1'500);
  EXPECT_EQ(read_all(kB), "source");
  clock_.advance_ms(500);
  auto src = head(kA);
  ASSERT_FALSE(src.ok()) << "the source must have expired";
  EXPECT_TRUE(src.error().code == errc::not_found || src.error().code == errc::gone)
      << describe(src.error());
  auto src_read = read(kA);
  ASSERT_FALSE(src_read.ok());
  EXPECT_TRUE(src_read.error().code == errc::not_found || src_read.error().code == errc::gone);
  DS_EXPECT_OK(head(kB));
  EXPECT_EQ(read_all(kB), "source") << "an expired source keeps its data for its forks";
  put(kB, "+fork");
  EXPECT_EQ(read_all(kB), "source+fork");
}

TEST_P(StoreContract, ExpiredSourceCannotBeForkedOrRecreatedWhileForksLive) {
  DS_ASSERT_OK(create(ttl_req(kA, 10, "source")));
  auto f = fork_req(kB, kA);
  f.config.ttl_seconds = 3600;
  DS_ASSERT_OK(create(f));
  clock_.advance_ms(10'000);
  auto fork_of_expired = create(fork_req(kC, kA));
  ASSERT_FALSE(fork_of_expired.ok());
  EXPECT_TRUE(fork_of_expired.error().code == errc::fork_source_deleted ||
              fork_of_expired.error().code == errc::not_found)
      << describe(fork_of_expired.error());
  EXPECT_EQ(read_all(kB), "source");
  // When the last fork goes, the expired source goes with it.
  DS_ASSERT_OK(remove(kB));
  DS_EXPECT_ERR(head(kA), errc::not_found);
  auto re = create(create_req(kA, kText));
  DS_ASSERT_OK(re);
  EXPECT_TRUE(re->created);
  EXPECT_EQ(read_all(kA), "");
}

// ------------------------------------------------------------------ durability

TEST_P(StoreContract, ReopenKeepsDataTailAndClosure) {
  make_stream(kA, kText, "one");
  put(kA, "two");
  auto c = append(close_req(kA));
  DS_ASSERT_OK(c);
  make_stream(kB, kJson, R"([{"a":1}])");
  const Offset b_tail = put(kB, R"({"b":2})", kJson);
  auto b_meta = head(kB);
  DS_ASSERT_OK(b_meta);

  reopen();

  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_TRUE(h->closed);
  EXPECT_EQ(h->tail, c->tail);
  EXPECT_EQ(h->config.content_type, kText);
  EXPECT_EQ(read_all(kA), "onetwo");
  DS_EXPECT_ERR(append(append_req(kA, "x")), errc::stream_closed);
  auto hb = head(kB);
  DS_ASSERT_OK(hb);
  EXPECT_EQ(hb->tail, b_tail);
  EXPECT_EQ(hb->id, b_meta->id);
  EXPECT_FALSE(hb->closed);
  auto r = read(kB);
  DS_ASSERT_OK(r);
  ASSERT_EQ(r->records.size(), 2u);
  EXPECT_EQ(r->records[0]->bytes, R"({"a":1})");
  EXPECT_EQ(r->records[1]->bytes, R"({"b":2})");
  // Appends continue after the old tail.
  const Offset t = put(kB, "[3]", kJson);
  EXPECT_LT(b_tail, t);
}

TEST_P(StoreContract, ReopenKeepsProducerStateAndStreamSeq) {
  make_stream(kA);
  auto req = producer_req(kA, "a", "p", 3, 0);
  req.stream_seq = "s1";
  DS_ASSERT_OK(append(req));
  DS_ASSERT_OK(append(producer_req(kA, "b", "p", 3, 1)));

  reopen();

  auto retry = append(producer_req(kA, "b", "p", 3, 1));
  DS_ASSERT_OK(retry);
  EXPECT_EQ(retry->kind, AppendOutcome::Kind::duplicate)
      << "a retried append after restart is a duplicate";
  EXPECT_EQ(retry->producer_seq, std::optional<uint64_t>(1));
  auto stale = append(producer_req(kA, "x", "p", 2, 0));
  DS_ASSERT_ERR(stale, errc::producer_stale_epoch);
  EXPECT_EQ(stale.error().producer_epoch, std::optional<uint64_t>(3));
  auto gap = append(producer_req(kA, "x", "p", 3, 5));
  DS_ASSERT_ERR(gap, errc::producer_seq_gap);
  EXPECT_EQ(gap.error().expected_seq, std::optional<uint64_t>(2));
  auto seq = append_req(kA, "x");
  seq.stream_seq = "s1";
  DS_EXPECT_ERR(append(seq), errc::stream_seq_regression);
  DS_ASSERT_OK(append(producer_req(kA, "c", "p", 3, 2)));
  EXPECT_EQ(read_all(kA), "abc");
}

TEST_P(StoreContract, ReopenKeepsProducerClosure) {
  make_stream(kA);
  auto req = producer_req(kA, "final", "p", 0, 0);
  req.close = true;
  DS_ASSERT_OK(append(req));
  reopen();
  auto dup = append(req);
  DS_ASSERT_OK(dup);
  EXPECT_EQ(dup->kind, AppendOutcome::Kind::duplicate);
  EXPECT_TRUE(dup->closed);
  DS_EXPECT_ERR(append(producer_req(kA, "x", "q", 0, 0)), errc::stream_closed);
}

TEST_P(StoreContract, ReopenKeepsForksAndReferences) {
  make_stream(kA, kText, "abcdef");
  DS_ASSERT_OK(create(fork_req(kB, kA, Offset{}, 4)));
  put(kB, "+");
  DS_ASSERT_OK(create(fork_req(kC, kA)));
  DS_ASSERT_OK(remove(kA));

  reopen();

  DS_EXPECT_ERR(head(kA), errc::gone);
  EXPECT_EQ(read_all(kB), "abcd+");
  EXPECT_EQ(read_all(kC), "abcdef");
  DS_ASSERT_OK(remove(kB));
  DS_EXPECT_ERR(head(kA), errc::gone);

  reopen();

  DS_EXPECT_ERR(head(kB), errc::not_found);
  DS_EXPECT_ERR(head(kA), errc::gone);
  DS_ASSERT_OK(remove(kC));
  DS_EXPECT_ERR(head(kA), errc::not_found);

  reopen();

  DS_EXPECT_ERR(head(kA), errc::not_found);
  DS_EXPECT_ERR(head(kC), errc::not_found);
}

TEST_P(StoreContract, ReopenKeepsTtlAndExpiry) {
  DS_REQUIRE_TRAIT(manual_time, kRestartNeedsManualTime);
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  clock_.advance_ms(5'000);
  reopen();
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->config.ttl_seconds, std::optional<uint64_t>(10));
  clock_.advance_ms(5'000);
  DS_EXPECT_ERR(head(kA), errc::not_found);
  reopen();
  DS_EXPECT_ERR(head(kA), errc::not_found);
  DS_EXPECT_ERR(read(kA), errc::not_found);
}

// A path's incarnations never share an id (the ETag's first part), even
// across a restart. Ids may be numbered per path (the S2 engine does).
TEST_P(StoreContract, IncarnationIdsAreNeverReusedAcrossReopen) {
  std::map<std::string, std::set<uint64_t>> ids;
  auto make = [&](const std::string& path) { ids[path].insert(make_stream(path).id); };
  make(kA);
  make(kB);
  DS_ASSERT_OK(remove(kB));
  reopen();
  make(kB);
  make(kC);
  DS_ASSERT_OK(remove(kC));
  reopen();
  make(kC);
  EXPECT_EQ(ids[kB].size(), 2u) << "a re-created stream reused its path's old id";
  EXPECT_EQ(ids[kC].size(), 2u) << "a re-created stream reused its path's old id";
}

// ------------------------------------------------------------------ watch

TEST_P(StoreContract, WatchInitialEventHasCurrentTail) {
  make_stream(kA, kText, "abc");
  const Offset tail = put(kA, "def");
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(w);
  ASSERT_TRUE(log.wait_for(1));
  auto ev = log.events()[0];
  EXPECT_TRUE(ev.records.empty());
  EXPECT_EQ(ev.tail, tail);
  EXPECT_FALSE(ev.closed);
  EXPECT_FALSE(ev.gone);
}

TEST_P(StoreContract, WatchInitialEventOfClosedStream) {
  make_stream(kA, kText, "abc");
  DS_ASSERT_OK(append(close_req(kA)));
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  EXPECT_TRUE(log.events()[0].closed);
  EXPECT_FALSE(log.events()[0].gone);
}

TEST_P(StoreContract, WatchOfMissingStreamIsGone) {
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  EXPECT_TRUE(log.events()[0].gone);
}

TEST_P(StoreContract, WatchDeliversEachCommitInOrder) {
  make_stream(kA);
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  std::vector<Offset> tails;
  std::string expected;
  for (int i = 0; i < 10; ++i) {
    std::string body = "r" + std::to_string(i);
    expected += body;
    tails.push_back(put(kA, body));
  }
  ASSERT_TRUE(log.wait_for(11)) << "got " << log.size() << " events";
  auto events = log.events();
  std::string seen;
  Offset at = events[0].tail;
  size_t commit = 0;
  for (size_t i = 1; i < events.size(); ++i) {
    const auto& ev = events[i];
    EXPECT_FALSE(ev.gone);
    for (const auto& rec : ev.records) {
      EXPECT_EQ(rec->begin, at) << "event " << i << " skips or repeats data";
      at = rec->end;
      seen += rec->bytes;
    }
    EXPECT_EQ(ev.tail, at);
    // Each acknowledged append's tail appears as some event's tail, in order.
    while (commit < tails.size() && tails[commit] <= ev.tail) ++commit;
  }
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(commit, tails.size());
  EXPECT_EQ(at, tails.back());
}

TEST_P(StoreContract, WatchSeesConcurrentCommitsWithoutGaps) {
  make_stream(kA);
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  constexpr int kThreads = 4, kPer = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        auto r = append(append_req(kA, std::to_string(t) + ":" + std::to_string(i) + ";"));
        if (!r) ADD_FAILURE() << describe(r.error());
      }
    });
  }
  for (auto& t : threads) t.join();
  const Offset tail = head(kA)->tail;
  // Wait until the events reach the tail.
  std::string seen;
  Offset at = log.events()[0].tail;
  size_t consumed = 1;
  while (at < tail) {
    ASSERT_TRUE(log.wait_for(consumed + 1)) << "events stopped at " << at.str();
    auto events = log.events();
    for (; consumed < events.size(); ++consumed) {
      for (const auto& rec : events[consumed].records) {
        ASSERT_EQ(rec->begin, at);
        at = rec->end;
        seen += rec->bytes;
      }
    }
  }
  EXPECT_EQ(seen, read_all(kA));
}

TEST_P(StoreContract, WatchDeletionDeliversGone) {
  make_stream(kA, kText, "x");
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  DS_ASSERT_OK(remove(kA));
  ASSERT_TRUE(log.wait_for(2));
  EXPECT_TRUE(log.events().back().gone);
}

TEST_P(StoreContract, WatchSoftDeletionDeliversGone) {
  make_stream(kA, kText, "x");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  DS_ASSERT_OK(remove(kA));
  ASSERT_TRUE(log.wait_for(2));
  EXPECT_TRUE(log.events().back().gone);
}

// Commits one after another on different streams, a deletion and a close
// among them: each stream's events carry its own changes, in order, and
// nothing of another commit's (the log engine reuses its per-group staging).
TEST_P(StoreContract, WatchEventsOfSuccessiveCommitsCarryOnlyTheirOwn) {
  make_stream(kA);
  make_stream(kB);
  make_stream(kC, kText, "c");
  EventLog a_log, b_log, c_log;
  auto wa = store().watch(kA, a_log.sink());
  auto wb = store().watch(kB, b_log.sink());
  auto wc = store().watch(kC, c_log.sink());
  ASSERT_TRUE(a_log.wait_for(1));
  ASSERT_TRUE(b_log.wait_for(1));
  ASSERT_TRUE(c_log.wait_for(1));
  DS_ASSERT_OK(remove(kC));
  ASSERT_TRUE(c_log.wait_for(2));
  EXPECT_TRUE(c_log.events().back().gone);
  std::string a_expected, b_expected;
  Offset a_tail, b_tail;
  for (int i = 0; i < 6; ++i) {
    a_expected += "a" + std::to_string(i);
    a_tail = put(kA, "a" + std::to_string(i));
    b_expected += std::string(static_cast<size_t>(i) + 1, 'b');
    b_tail = put(kB, std::string(static_cast<size_t>(i) + 1, 'b'));
  }
  auto close = append(close_req(kA));
  DS_ASSERT_OK(close);
  // Reads a stream's events up to `tail` (and its closure when `closed`).
  // (Without dense offsets a closure may take an offset of its own.)
  const bool dense = traits().dense_offsets;
  auto check = [dense](EventLog& log, const Offset& tail, bool closed,
                       const std::string& expected) {
    auto events = log.events();
    size_t consumed = 1;
    Offset at = events[0].tail;
    bool seen_closed = false;
    std::string seen;
    while (at < tail || seen_closed != closed) {
      if (consumed == events.size()) {
        if (!log.wait_for(consumed + 1)) {
          ADD_FAILURE() << "events stopped at " << at.str();
          return;
        }
        events = log.events();
      }
      const auto& ev = events[consumed++];
      EXPECT_FALSE(ev.gone);
      EXPECT_FALSE(seen_closed) << "an event after the closure";
      for (const auto& rec : ev.records) {
        if (dense) {
          EXPECT_EQ(rec->begin, at) << "an event skips or repeats data";
        } else {
          EXPECT_GE(rec->begin, at) << "an event repeats data";
        }
        at = rec->end;
        seen += rec->bytes;
      }
      if (dense) {
        EXPECT_EQ(ev.tail, at);
      } else {
        EXPECT_GE(ev.tail, at);
        at = ev.tail;
      }
      seen_closed = ev.closed;
    }
    EXPECT_EQ(seen, expected);
  };
  check(a_log, a_tail, true, a_expected);
  check(b_log, b_tail, false, b_expected);
  if (dense) {
    EXPECT_EQ(close->tail, a_tail);
  }
  EXPECT_EQ(c_log.size(), 2u) << "a deleted stream's watch fired again";
}

TEST_P(StoreContract, ForkWatchIgnoresSourceAppends) {
  make_stream(kA, kText, "inherited");
  DS_ASSERT_OK(create(fork_req(kB, kA)));
  EventLog src_log, fork_log;
  auto ws = store().watch(kA, src_log.sink());
  auto wf = store().watch(kB, fork_log.sink());
  ASSERT_TRUE(fork_log.wait_for(1));
  ASSERT_TRUE(src_log.wait_for(1));
  put(kA, " source extra");
  ASSERT_TRUE(src_log.wait_for(2));
  put(kB, " fork new");
  ASSERT_TRUE(fork_log.wait_for(2));
  auto events = fork_log.events();
  ASSERT_EQ(events.size(), 2u) << "the fork's watch fired for a source append";
  ASSERT_EQ(events[1].records.size(), 1u);
  EXPECT_EQ(events[1].records[0]->bytes, " fork new");
  EXPECT_EQ(events[1].records[0]->begin, events[0].tail);
}

TEST_P(StoreContract, DestroyedWatchStopsDelivering) {
  make_stream(kA);
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  put(kA, "a");
  ASSERT_TRUE(log.wait_for(2));
  w.reset();
  put(kA, "b");
  DS_ASSERT_OK(remove(kA));
  EXPECT_EQ(log.size(), 2u);
}

// ------------------------------------------------------------------ faults

class FaultScope {
 public:
  FaultScope(FaultControl* f, bool syncs, bool appends) : f_(f) {
    f_->fail_syncs(syncs);
    f_->fail_appends(appends);
  }
  ~FaultScope() {
    f_->fail_syncs(false);
    f_->fail_appends(false);
  }

 private:
  FaultControl* f_;
};

namespace {
::testing::AssertionResult IsStorageError(const Result<AppendOutcome>& r) {
  if (r.ok())
    return ::testing::AssertionFailure() << "a write whose log sync failed was acknowledged";
  if (r.error().code == errc::storage_failure || r.error().code == errc::unavailable) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected storage_failure or unavailable, got " << describe(r.error());
}
}  // namespace

#define DS_REQUIRE_FAULTS()         \
  reopen(/*fault_injection=*/true); \
  if (HasFatalFailure()) return;    \
  if (faults() == nullptr) GTEST_SKIP() << GetParam().name << " has no fault-injection seam"

TEST_P(StoreContract, FailedLogSyncFailsTheAppendAndLeavesNoTrace) {
  DS_REQUIRE_FAULTS();
  make_stream(kA, kText, "a");
  const Offset tail = head(kA)->tail;
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  {
    FaultScope scope(faults(), /*syncs=*/true, /*appends=*/false);
    EXPECT_TRUE(IsStorageError(append(append_req(kA, "lost"))));
  }
  ASSERT_GT(faults()->injected(), 0u) << "the injected fault never reached the engine";
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->tail, tail);
  auto r = read(kA);
  DS_ASSERT_OK(r);
  EXPECT_EQ(concat(r->records), "a");
  EXPECT_EQ(r->meta.tail, tail);
  EXPECT_EQ(log.size(), 1u) << "watchers were told about a write that failed";
}

TEST_P(StoreContract, FailedLogAppendFailsTheAppendAndLeavesNoTrace) {
  DS_REQUIRE_FAULTS();
  make_stream(kA, kText, "a");
  const Offset tail = head(kA)->tail;
  {
    FaultScope scope(faults(), /*syncs=*/false, /*appends=*/true);
    auto req = append_req(kA, "lost");
    req.close = true;
    EXPECT_TRUE(IsStorageError(append(req)));
  }
  ASSERT_GT(faults()->injected(), 0u) << "the injected fault never reached the engine";
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->tail, tail);
  EXPECT_FALSE(h->closed);
  EXPECT_EQ(read_all(kA), "a");
}

TEST_P(StoreContract, FailedLogSyncFailsCreateAndFork) {
  DS_REQUIRE_FAULTS();
  make_stream(kA, kText, "a");
  {
    FaultScope scope(faults(), true, false);
    auto c = create(create_req(kB, kText, "b"));
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(c.error().code == errc::storage_failure || c.error().code == errc::unavailable)
        << describe(c.error());
    auto f = create(fork_req(kC, kA));
    ASSERT_FALSE(f.ok());
  }
  DS_EXPECT_ERR(head(kB), errc::not_found);
  DS_EXPECT_ERR(head(kC), errc::not_found);
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->ref_count, 0u) << "a failed fork must not hold a reference";
}

TEST_P(StoreContract, FailedLogSyncFailsRemove) {
  DS_REQUIRE_FAULTS();
  make_stream(kA, kText, "a");
  {
    FaultScope scope(faults(), true, false);
    auto r = remove(kA);
    ASSERT_FALSE(r.ok()) << "a delete whose log sync failed was acknowledged";
  }
  EXPECT_EQ(read_all(kA), "a");
}

// After a failed durable write the engine must not claim to be healthy while
// it refuses every write.
TEST_P(StoreContract, HealthReflectsWritabilityAfterStorageFailure) {
  DS_REQUIRE_FAULTS();
  make_stream(kA, kText, "a");
  {
    FaultScope scope(faults(), true, false);
    EXPECT_TRUE(IsStorageError(append(append_req(kA, "lost"))));
  }
  auto next = append(append_req(kA, "b"));
  auto health = store().health();
  EXPECT_TRUE(next.ok() || !health.ok())
      << "the engine reports healthy but rejects writes: " << describe(next.error());
  if (next.ok()) {
    EXPECT_EQ(read_all(kA), "ab");
  }
}

// An append that failed is retried by its producer after a restart: it is
// applied exactly once, whatever the failed attempt left in the log.
TEST_P(StoreContract, ProducerRetryAfterFailedSyncAndRestartAppliesOnce) {
  DS_REQUIRE_FAULTS();
  make_stream(kA);
  DS_ASSERT_OK(append(producer_req(kA, "a", "p", 0, 0)));
  {
    FaultScope scope(faults(), true, false);
    EXPECT_TRUE(IsStorageError(append(producer_req(kA, "b", "p", 0, 1))));
  }
  // Whatever the engine does next with other writers must not corrupt p's
  // retry. An engine may refuse writes until it restarts; one that stays
  // writable (S2) takes q's append, and p's retry then lands after it.
  auto q = append(producer_req(kA, "q", "q", 0, 0));
  reopen();
  auto retry = append(producer_req(kA, "b", "p", 0, 1));
  DS_ASSERT_OK(retry);
  const std::string all = read_all(kA);
  EXPECT_EQ(std::count(all.begin(), all.end(), 'b'), 1) << "content: " << all;
  if (q.ok()) {
    EXPECT_TRUE(all == "aqb" || all == "abq") << "content: " << all;
  } else {
    EXPECT_EQ(all.rfind("ab", 0), 0u) << "content: " << all;
  }
  DS_ASSERT_OK(append(producer_req(kA, "c", "p", 0, 2)));
}

// ------------------------------------------------------------------ group commit
//
// pause_syncs() stalls the engine's commit so that the requests queued behind
// it are committed together: each must still see the effect of the ones
// queued before it, exactly as if they had been sent one at a time.

namespace {

class PauseScope {
 public:
  explicit PauseScope(FaultControl* f) : f_(f) { f_->pause_syncs(true); }
  ~PauseScope() { f_->pause_syncs(false); }

 private:
  FaultControl* f_;
};

template <class T>
class Pending {
 public:
  template <class Start>
  explicit Pending(Start&& start) {
    auto p = std::make_shared<std::promise<Result<T>>>();
    future_ = p->get_future();
    start([p](Result<T> r) { p->set_value(std::move(r)); });
  }
  Result<T> get() {
    if (future_.wait_for(kCallTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "no completion within " << kCallTimeout.count() << " s";
      return Error(errc::unavailable, "contract test timeout");
    }
    return future_.get();
  }

 private:
  std::future<Result<T>> future_;
};

}  // namespace

constexpr const char* kNeedsGroupCommit =
    "the engine has no group commit to pause, and does not order concurrently submitted "
    "requests by submission";

#define DS_PENDING_APPEND(req) Pending<AppendOutcome>([&](auto cb) { store().append((req), cb); })
#define DS_PENDING_CREATE(req) Pending<CreateOutcome>([&](auto cb) { store().create((req), cb); })
#define DS_PENDING_REMOVE(path) Pending<Unit>([&](auto cb) { store().remove((path), cb); })

TEST_P(StoreContract, GroupedCreateAndSubOffsetForkSeeEachOther) {
  DS_REQUIRE_TRAIT(group_commit, kNeedsGroupCommit);
  DS_REQUIRE_FAULTS();
  make_stream(kC, kText, "x");
  std::optional<Pending<AppendOutcome>> blocker, more;
  std::optional<Pending<CreateOutcome>> src, fork;
  {
    PauseScope pause(faults());
    blocker.emplace(DS_PENDING_APPEND(append_req(kC, "y")));
    ASSERT_TRUE(faults()->wait_until_paused(kCallTimeout));
    src.emplace(DS_PENDING_CREATE(create_req(kA, kText, "hello")));
    fork.emplace(DS_PENDING_CREATE(fork_req(kB, kA, Offset{}, 3)));
    more.emplace(DS_PENDING_APPEND(append_req(kB, "LO")));
  }
  DS_EXPECT_OK(blocker->get());
  auto s = src->get();
  DS_ASSERT_OK(s);
  EXPECT_TRUE(s->created);
  auto f = fork->get();
  DS_ASSERT_OK(f);
  EXPECT_TRUE(f->created);
  DS_EXPECT_OK(more->get());
  EXPECT_EQ(read_all(kB), "helLO");
  EXPECT_EQ(read_all(kA), "hello");
}

TEST_P(StoreContract, GroupedAppendAndSubOffsetForkSeeEachOther) {
  DS_REQUIRE_TRAIT(group_commit, kNeedsGroupCommit);
  DS_REQUIRE_FAULTS();
  make_stream(kC, kText, "x");
  make_stream(kA, kText, "ab");
  const Offset anchor = head(kA)->tail;
  std::optional<Pending<AppendOutcome>> blocker, data;
  std::optional<Pending<CreateOutcome>> fork;
  {
    PauseScope pause(faults());
    blocker.emplace(DS_PENDING_APPEND(append_req(kC, "y")));
    ASSERT_TRUE(faults()->wait_until_paused(kCallTimeout));
    data.emplace(DS_PENDING_APPEND(append_req(kA, "cdef")));
    fork.emplace(DS_PENDING_CREATE(fork_req(kB, kA, anchor, 2)));
  }
  DS_EXPECT_OK(blocker->get());
  DS_EXPECT_OK(data->get());
  auto f = fork->get();
  DS_ASSERT_OK(f);
  EXPECT_TRUE(f->created);
  EXPECT_EQ(read_all(kB), "abcd");
}

TEST_P(StoreContract, GroupedRequestsOnOnePathApplyInOrder) {
  DS_REQUIRE_TRAIT(group_commit, kNeedsGroupCommit);
  DS_REQUIRE_FAULTS();
  make_stream(kC, kText, "x");
  std::optional<Pending<AppendOutcome>> blocker, a1, a2;
  std::optional<Pending<CreateOutcome>> c1, c2, c3;
  std::optional<Pending<Unit>> rm;
  {
    PauseScope pause(faults());
    blocker.emplace(DS_PENDING_APPEND(append_req(kC, "y")));
    ASSERT_TRUE(faults()->wait_until_paused(kCallTimeout));
    c1.emplace(DS_PENDING_CREATE(create_req(kA, kText)));
    c2.emplace(DS_PENDING_CREATE(create_req(kA, kText)));
    a1.emplace(DS_PENDING_APPEND(append_req(kA, "old")));
    rm.emplace(DS_PENDING_REMOVE(kA));
    c3.emplace(DS_PENDING_CREATE(create_req(kA, kJson)));
    a2.emplace(DS_PENDING_APPEND(append_req(kA, "[1]", kJson)));
  }
  DS_EXPECT_OK(blocker->get());
  auto r1 = c1->get();
  DS_ASSERT_OK(r1);
  EXPECT_TRUE(r1->created);
  auto r2 = c2->get();
  DS_ASSERT_OK(r2);
  EXPECT_FALSE(r2->created);
  DS_EXPECT_OK(a1->get());
  DS_EXPECT_OK(rm->get());
  auto r3 = c3->get();
  DS_ASSERT_OK(r3);
  EXPECT_TRUE(r3->created);
  EXPECT_NE(r3->meta.id, r1->meta.id);
  DS_EXPECT_OK(a2->get());
  EXPECT_EQ(head(kA)->config.content_type, kJson);
  EXPECT_EQ(read_all(kA), "1");
  reopen();
  EXPECT_EQ(read_all(kA), "1");
}

TEST_P(StoreContract, GroupedForkAndSourceDeletion) {
  DS_REQUIRE_TRAIT(group_commit, kNeedsGroupCommit);
  DS_REQUIRE_FAULTS();
  make_stream(kC, kText, "x");
  make_stream(kA, kText, "data");
  std::optional<Pending<AppendOutcome>> blocker;
  std::optional<Pending<CreateOutcome>> fork;
  std::optional<Pending<Unit>> rm;
  {
    PauseScope pause(faults());
    blocker.emplace(DS_PENDING_APPEND(append_req(kC, "y")));
    ASSERT_TRUE(faults()->wait_until_paused(kCallTimeout));
    fork.emplace(DS_PENDING_CREATE(fork_req(kB, kA)));
    rm.emplace(DS_PENDING_REMOVE(kA));
  }
  DS_EXPECT_OK(blocker->get());
  DS_ASSERT_OK(fork->get());
  DS_ASSERT_OK(rm->get());
  DS_EXPECT_ERR(head(kA), errc::gone);
  EXPECT_EQ(read_all(kB), "data");
  DS_ASSERT_OK(remove(kB));
  DS_EXPECT_ERR(head(kA), errc::not_found);
}

TEST_P(StoreContract, EveryRequestInAFailedCommitFails) {
  DS_REQUIRE_TRAIT(group_commit, kNeedsGroupCommit);
  DS_REQUIRE_FAULTS();
  make_stream(kC, kText, "x");
  make_stream(kA, kText, "a");
  std::optional<Pending<AppendOutcome>> blocker, a, dup;
  std::optional<Pending<CreateOutcome>> b;
  {
    PauseScope pause(faults());
    blocker.emplace(DS_PENDING_APPEND(append_req(kC, "y")));
    ASSERT_TRUE(faults()->wait_until_paused(kCallTimeout));
    a.emplace(DS_PENDING_APPEND(producer_req(kA, "1", "p", 0, 0)));
    b.emplace(DS_PENDING_CREATE(create_req(kB, kText, "b")));
    faults()->fail_syncs(true);
  }
  auto rb = blocker->get();
  auto ra = a->get();
  auto rc = b->get();
  faults()->fail_syncs(false);
  EXPECT_FALSE(rb.ok()) << "a write whose log sync failed was acknowledged";
  EXPECT_FALSE(ra.ok()) << "a write whose log sync failed was acknowledged";
  EXPECT_FALSE(rc.ok()) << "a write whose log sync failed was acknowledged";
  EXPECT_EQ(read_all(kC), "x");
  EXPECT_EQ(read_all(kA), "a");
  DS_EXPECT_ERR(head(kB), errc::not_found);
}

// ------------------------------------------------------------------ more concurrency

TEST_P(StoreContract, ConcurrentCreatesOfOnePathCreateOnce) {
  constexpr int kThreads = 8;
  std::vector<std::optional<Result<CreateOutcome>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] { results[t] = create(create_req(kA, kText)); });
  }
  for (auto& t : threads) t.join();
  int created = 0;
  std::set<uint64_t> ids;
  for (auto& r : results) {
    ASSERT_TRUE(r.has_value());
    DS_ASSERT_OK(*r);
    created += (*r)->created ? 1 : 0;
    ids.insert((*r)->meta.id);
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ids.size(), 1u);
}

TEST_P(StoreContract, ConcurrentForkAndSourceDeleteStayConsistent) {
  for (int i = 0; i < 20; ++i) {
    const std::string src = "/v1/stream/src" + std::to_string(i);
    const std::string fork = "/v1/stream/fork" + std::to_string(i);
    make_stream(src, kText, "data");
    std::optional<Result<CreateOutcome>> f;
    std::optional<Status> rm;
    std::thread t1([&] { f = create(fork_req(fork, src)); });
    std::thread t2([&] { rm = remove(src); });
    t1.join();
    t2.join();
    DS_ASSERT_OK(*rm);
    if (f->ok()) {
      DS_EXPECT_ERR(head(src), errc::gone);
      EXPECT_EQ(read_all(fork), "data");
      DS_ASSERT_OK(remove(fork));
    } else {
      DS_EXPECT_ERR(*f, errc::not_found);
    }
    DS_EXPECT_ERR(head(src), errc::not_found);
  }
}

// ------------------------------------------------------------------ more create / TTL / watch

TEST_P(StoreContract, CreateComparesClosureStatus) {
  make_stream(kA);
  DS_ASSERT_OK(append(close_req(kA)));
  DS_EXPECT_ERR(create(create_req(kA, kText)), errc::config_mismatch);
  auto closed = create_req(kA, kText);
  closed.closed = true;
  auto r = create(closed);
  DS_ASSERT_OK(r);
  EXPECT_FALSE(r->created);
}

TEST_P(StoreContract, ReadRenewalSurvivesRestart) {
  DS_REQUIRE_TRAIT(manual_time, kRestartNeedsManualTime);
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  clock_.advance_ms(8'000);
  EXPECT_EQ(read_all(kA), "data");
  reopen();
  clock_.advance_ms(5'000);  // 13 s after creation, 5 s after the read
  DS_EXPECT_OK(head(kA)) << "the read's TTL renewal was lost across a restart";
}

// A closed stream's tail is final: reads that renew its TTL do not move it.
TEST_P(StoreContract, TtlRenewalKeepsAClosedStreamsFinalTail) {
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  auto c = append(close_req(kA));
  DS_ASSERT_OK(c);
  for (int i = 0; i < 3; ++i) {
    clock_.advance_ms(3'000);
    auto r = read(kA);
    DS_ASSERT_OK(r);
    EXPECT_EQ(concat(r->records), "data");
    EXPECT_TRUE(r->meta.closed);
    EXPECT_EQ(r->meta.tail, c->tail) << "read " << i;
    EXPECT_EQ(r->next, c->tail) << "read " << i;
  }
  clock_.advance_ms(3'000);  // 12 s after creation, 3 s after the last read
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->tail, c->tail);
}

TEST_P(StoreContract, ExpiresAtSurvivesRestart) {
  auto req = create_req(kA, kText, "data");
  req.config.expires_at_ms = clock_.now_ms() + 10'000;
  req.config.expires_at_text = "2023-11-14T22:13:30.000Z";
  DS_ASSERT_OK(create(req));
  reopen();
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->config.expires_at_ms, req.config.expires_at_ms);
  EXPECT_EQ(h->config.expires_at_text, req.config.expires_at_text);
  clock_.advance_ms(10'000);
  DS_EXPECT_ERR(head(kA), errc::not_found);
}

TEST_P(StoreContract, WatcherOfExpiredStreamGetsGone) {
  DS_ASSERT_OK(create(ttl_req(kA, 10, "data")));
  EventLog log;
  auto w = store().watch(kA, log.sink());
  ASSERT_TRUE(log.wait_for(1));
  clock_.advance_ms(10'000);
  // Any write access to the path notices the expiry (so does the sweeper).
  DS_EXPECT_ERR(append(append_req(kA, "x")), errc::not_found);
  ASSERT_TRUE(log.wait_for(2)) << "the watcher of an expired stream was never told it is gone";
  EXPECT_TRUE(log.events().back().gone);
}

// ------------------------------------------------------------------ listing

namespace {
Result<ListOutcome> list_page(StreamStore& store, ListRequest req) {
  return call_sync<ListOutcome>("list", [&](auto cb) { store.list(std::move(req), cb); });
}
ListRequest list_req(std::string prefix, std::string start_after = "", size_t limit = 1000) {
  ListRequest r;
  r.prefix = std::move(prefix);
  r.start_after = std::move(start_after);
  r.limit = limit;
  return r;
}
/// One page's paths (asserting success); empty on failure.
std::vector<std::string> listed(StreamStore& store, const std::string& prefix,
                                const std::string& start_after = "") {
  auto r = list_page(store, list_req(prefix, start_after));
  EXPECT_TRUE(IsOk(r));
  if (!r) return {};
  EXPECT_FALSE(r->more) << "fewer than a page of streams, yet more is set";
  return r->paths;
}
const std::string kListed = "/v1/stream/list/";
}  // namespace

TEST_P(StoreContract, ListOfEmptyStoreIsEmpty) {
  auto r = list_page(store(), list_req(""));
  DS_ASSERT_OK(r);
  EXPECT_TRUE(r->paths.empty());
  EXPECT_FALSE(r->more);
}

TEST_P(StoreContract, ListFiltersByPrefixInAscendingOrder) {
  for (const char* name : {"c", "a", "b"}) make_stream(kListed + name);
  make_stream("/v1/stream/other");
  make_stream("/v1/stream/lis");  // a prefix of the prefix: not listed
  EXPECT_EQ(listed(store(), kListed),
            (std::vector<std::string>{kListed + "a", kListed + "b", kListed + "c"}));
  EXPECT_EQ(listed(store(), ""),
            (std::vector<std::string>{"/v1/stream/lis", kListed + "a", kListed + "b", kListed + "c",
                                      "/v1/stream/other"}));
  EXPECT_TRUE(listed(store(), kListed + "z").empty());
}

TEST_P(StoreContract, ListOrdersByBytesAcrossSharedPrefixes) {
  // '-' (0x2d) < '/' (0x2f) < 'a' (0x61) < 0xc3 (the first byte of "é"): byte
  // order, not length, not path segments, and bytes compare unsigned.
  const std::vector<std::string> sorted = {kListed + "a",  kListed + "a-b", kListed + "a/b",
                                           kListed + "aa", kListed + "b",   kListed + "\xc3\xa9"};
  for (size_t i : {3, 5, 1, 0, 4, 2}) make_stream(sorted[i]);
  EXPECT_EQ(listed(store(), kListed), sorted);
  // A prefix is a byte prefix, not a path segment.
  EXPECT_EQ(listed(store(), kListed + "a"),
            (std::vector<std::string>{sorted[0], sorted[1], sorted[2], sorted[3]}));
  // start_after is exclusive, and need not name a stream.
  EXPECT_EQ(listed(store(), kListed, kListed + "a"),
            (std::vector<std::string>(sorted.begin() + 1, sorted.end())));
  EXPECT_EQ(listed(store(), kListed, kListed + "a."),
            (std::vector<std::string>(sorted.begin() + 2, sorted.end())));
  EXPECT_EQ(listed(store(), kListed + "a", kListed + "a/b"), (std::vector<std::string>{sorted[3]}));
  EXPECT_TRUE(listed(store(), kListed, kListed + "\xc3\xa9").empty());
}

TEST_P(StoreContract, ListPagesVisitEveryStreamExactlyOnce) {
  std::vector<std::string> all;
  for (const char* name : {"e", "b", "d", "a", "c"}) {
    make_stream(kListed + name);
    all.push_back(kListed + name);
  }
  std::sort(all.begin(), all.end());
  std::vector<std::string> seen;
  std::string after;
  for (int pages = 1;; ++pages) {
    ASSERT_LE(pages, 3) << "5 streams in pages of 2 take 3 pages";
    auto r = list_page(store(), list_req(kListed, after, 2));
    DS_ASSERT_OK(r);
    ASSERT_FALSE(r->paths.empty()) << "page " << pages << " is empty";
    ASSERT_LE(r->paths.size(), 2u);
    seen.insert(seen.end(), r->paths.begin(), r->paths.end());
    if (!r->more) break;
    EXPECT_EQ(r->paths.size(), 2u) << "a page before the last is full";
    after = r->paths.back();
  }
  EXPECT_EQ(seen, all);
}

TEST_P(StoreContract, ListSkipsNothingWhenAStreamIsDeletedBetweenPages) {
  for (const char* name : {"a", "b", "c", "d"}) make_stream(kListed + name);
  auto first = list_page(store(), list_req(kListed, "", 2));
  DS_ASSERT_OK(first);
  ASSERT_EQ(first->paths, (std::vector<std::string>{kListed + "a", kListed + "b"}));
  EXPECT_TRUE(first->more);
  DS_ASSERT_OK(remove(kListed + "b"));  // the cursor itself goes,
  DS_ASSERT_OK(remove(kListed + "c"));  // and one not listed yet;
  make_stream(kListed + "bb");          // one past the cursor comes
  auto second = list_page(store(), list_req(kListed, first->paths.back(), 2));
  DS_ASSERT_OK(second);
  EXPECT_EQ(second->paths, (std::vector<std::string>{kListed + "bb", kListed + "d"}));
}

TEST_P(StoreContract, ListLeavesOutDeletedAndSoftDeletedStreams) {
  make_stream(kListed + "a", kText, "data");
  make_stream(kListed + "b");
  make_stream(kListed + "c");
  DS_ASSERT_OK(create(fork_req(kListed + "fork", kListed + "a")));
  DS_ASSERT_OK(remove(kListed + "b"));
  DS_ASSERT_OK(remove(kListed + "a"));  // the fork still reads it: soft-deleted
  DS_ASSERT_ERR(head(kListed + "a"), errc::gone);
  EXPECT_EQ(listed(store(), kListed), (std::vector<std::string>{kListed + "c", kListed + "fork"}));
  // Dead streams before the first live one do not cut a page short.
  auto r = list_page(store(), list_req(kListed, "", 1));
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->paths, (std::vector<std::string>{kListed + "c"}));
  EXPECT_TRUE(r->more);
  make_stream(kListed + "b");  // a new incarnation is listed again
  EXPECT_EQ(listed(store(), kListed),
            (std::vector<std::string>{kListed + "b", kListed + "c", kListed + "fork"}));
}

TEST_P(StoreContract, ListLeavesOutExpiredStreams) {
  DS_ASSERT_OK(create(ttl_req(kListed + "ttl", 10)));
  auto at = create_req(kListed + "at");
  at.config.expires_at_ms = clock_.now_ms() + 20'000;
  at.config.expires_at_text = "2023-11-14T22:13:40.000Z";
  DS_ASSERT_OK(create(at));
  make_stream(kListed + "kept");
  clock_.advance_ms(9'999);
  EXPECT_EQ(listed(store(), kListed),
            (std::vector<std::string>{kListed + "at", kListed + "kept", kListed + "ttl"}));
  clock_.advance_ms(1);
  EXPECT_EQ(listed(store(), kListed), (std::vector<std::string>{kListed + "at", kListed + "kept"}));
  clock_.advance_ms(10'000);
  EXPECT_EQ(listed(store(), kListed), (std::vector<std::string>{kListed + "kept"}));
}

TEST_P(StoreContract, ListRejectsALimitOutOfRange) {
  make_stream(kListed + "a");
  DS_EXPECT_ERR(list_page(store(), list_req("", "", 0)), errc::bad_request);
  DS_EXPECT_ERR(list_page(store(), list_req("", "", kMaxListLimit + 1)), errc::bad_request);
  auto r = list_page(store(), list_req("", "", kMaxListLimit));
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->paths, (std::vector<std::string>{kListed + "a"}));
}

// ---------------------------------------------------------------- retention

namespace {

CreateRequest retained_req(const std::string& path, std::optional<uint64_t> max_age_s,
                           std::optional<uint64_t> max_bytes) {
  CreateRequest r;
  r.path = path;
  r.config.content_type = "text/plain";
  r.config.retention_max_age_s = max_age_s;
  r.config.retention_max_bytes = max_bytes;
  return r;
}

}  // namespace

// Retention runs in the background: waits (bounded) until the stream's
// earliest offset reaches `at`.
static bool wait_for_earliest(StreamStore& store, const std::string& path, Offset at) {
  for (int i = 0; i < 100; ++i) {
    std::promise<Result<StreamMeta>> p;
    auto f = p.get_future();
    store.head(path, [&p](Result<StreamMeta> r) { p.set_value(std::move(r)); });
    auto r = f.get();
    if (r && r->earliest >= at) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST_P(StoreContract, RetentionMaxBytesDropsWholeAppendsFromTheFront) {
  DS_REQUIRE_TRAIT(retention, "retention is not enforced by this engine");
  DS_ASSERT_OK(create(retained_req(kA, std::nullopt, 10)));
  std::vector<Offset> tails;
  for (const char* body : {"aaaaaa", "bbbbbb", "cccccc", "dddddd", "eeeeee"})
    tails.push_back(put(kA, body));
  clock_.advance_ms(1'000);  // lets maintenance run
  // 10 bytes behind the tail is inside the last-but-one append: only the
  // last one stays (whole appends go).
  ASSERT_TRUE(wait_for_earliest(store(), kA, tails[3]));
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->earliest, tails[3]);

  auto gone = read(kA, OffsetSpec::position(Offset{}));
  DS_ASSERT_ERR(gone, errc::retention_trimmed);
  ASSERT_TRUE(gone.error().earliest.has_value());
  EXPECT_EQ(*gone.error().earliest, tails[3]);
  DS_EXPECT_ERR(read(kA, OffsetSpec::position(tails[2])), errc::retention_trimmed);

  auto from_start = read(kA);  // offset=-1 begins at the earliest offset
  DS_ASSERT_OK(from_start);
  EXPECT_EQ(from_start->start, tails[3]);
  EXPECT_EQ(from_start->meta.earliest, tails[3]);
  EXPECT_EQ(read_all(kA), "eeeeee");
  EXPECT_EQ(read_all(kA, OffsetSpec::position(tails[3])), "eeeeee");

  // The earliest offset is durable.
  reopen();
  auto again = head(kA);
  DS_ASSERT_OK(again);
  EXPECT_EQ(again->earliest, tails[3]);
  DS_EXPECT_ERR(read(kA, OffsetSpec::position(Offset{})), errc::retention_trimmed);
  EXPECT_EQ(read_all(kA), "eeeeee");
  // Appends go on as before, and retention with them.
  Offset t = put(kA, "ffffff");
  clock_.advance_ms(1'000);
  ASSERT_TRUE(wait_for_earliest(store(), kA, tails[4]));
  EXPECT_EQ(read_all(kA), "ffffff");
  EXPECT_EQ(head(kA)->tail, t);
}

TEST_P(StoreContract, RetentionMaxAgeDropsOldAppends) {
  DS_REQUIRE_TRAIT(retention, "retention is not enforced by this engine");
  DS_ASSERT_OK(create(retained_req(kA, 10, std::nullopt)));
  put(kA, "old1");
  Offset old_end = put(kA, "old2");
  clock_.advance_ms(5'000);
  put(kA, "new");
  clock_.advance_ms(6'000);  // old1/old2 are 11 s old, new 6 s
  ASSERT_TRUE(wait_for_earliest(store(), kA, old_end));
  EXPECT_EQ(head(kA)->earliest, old_end);
  EXPECT_EQ(read_all(kA), "new");
  DS_EXPECT_ERR(read(kA, OffsetSpec::position(Offset{})), errc::retention_trimmed);
  // After a restart, an engine whose storage stamps records with its own
  // wall clock (S2) reads their times back from there, which this test's
  // clock cannot move: "new" would already be 11 s old.
  if (!traits().manual_time) return;
  // When the appends were made survives a restart.
  reopen();
  EXPECT_EQ(read_all(kA), "new");
  clock_.advance_ms(5'000);
  Offset tail = head(kA)->tail;
  ASSERT_TRUE(wait_for_earliest(store(), kA, tail));
  EXPECT_EQ(read_all(kA), "");
  auto r = read(kA);
  DS_ASSERT_OK(r);
  EXPECT_EQ(r->start, tail);
  EXPECT_TRUE(r->up_to_date);
}

TEST_P(StoreContract, RetentionSettingsArePartOfTheConfig) {
  DS_REQUIRE_TRAIT(retention, "retention is not enforced by this engine");
  auto made = create(retained_req(kA, 3600, 1000));
  DS_ASSERT_OK(made);
  EXPECT_EQ(made->meta.config.retention_max_age_s, std::optional<uint64_t>(3600));
  EXPECT_EQ(made->meta.config.retention_max_bytes, std::optional<uint64_t>(1000));
  auto same = create(retained_req(kA, 3600, 1000));
  DS_ASSERT_OK(same);
  EXPECT_FALSE(same->created);
  DS_EXPECT_ERR(create(retained_req(kA, 3600, std::nullopt)), errc::config_mismatch);
  DS_EXPECT_ERR(create(retained_req(kA, std::nullopt, std::nullopt)), errc::config_mismatch);
  reopen();
  auto h = head(kA);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->config.retention_max_age_s, std::optional<uint64_t>(3600));
  EXPECT_EQ(h->config.retention_max_bytes, std::optional<uint64_t>(1000));
  EXPECT_EQ(h->earliest, Offset{});
}

// A fork reads its source's data: what the source's retention removed is
// gone for the fork too (410 with the fork's earliest offset).
TEST_P(StoreContract, RetentionOfASourceAppliesToItsForks) {
  DS_REQUIRE_TRAIT(retention, "retention is not enforced by this engine");
  DS_ASSERT_OK(create(retained_req(kA, std::nullopt, 6)));
  put(kA, "aaaaaa");
  Offset second = put(kA, "bbbbbb");
  Offset fork_at = put(kA, "cccccc");
  clock_.advance_ms(1'000);
  ASSERT_TRUE(wait_for_earliest(store(), kA, second));
  DS_ASSERT_OK(create(fork_req(kB, kA, fork_at)));
  put(kB, "ffffff");
  auto h = head(kB);
  DS_ASSERT_OK(h);
  EXPECT_EQ(h->earliest, second);
  EXPECT_EQ(h->config.retention_max_bytes, std::nullopt);  // not inherited
  EXPECT_EQ(read_all(kB), "ccccccffffff");
  auto gone = read(kB, OffsetSpec::position(Offset{}));
  DS_ASSERT_ERR(gone, errc::retention_trimmed);
  EXPECT_EQ(gone.error().earliest, std::optional<Offset>(second));
  // A fork that must read the append at its fork offset (a sub-offset)
  // cannot begin inside what retention removed.
  auto c = fork_req("/v1/stream/c", kA, Offset{}, 2);
  auto refused = create(c);
  DS_ASSERT_ERR(refused, errc::retention_trimmed);
  EXPECT_EQ(refused.error().earliest, std::optional<Offset>(second));
}

}  // namespace ds::contract
