// server/inbox.h and common/wake_batch.h: results from another thread reach
// the event loop in order, exactly once, a batch of them with one drain.

#include "server/inbox.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/wake_batch.h"
#include "server/http.h"

namespace ds::http_server {
namespace {

struct Recorded final : Inbox::Item {
  Recorded(std::vector<int>& log, int v) : log(log), v(v) {}
  std::vector<int>& log;
  int v;
  void deliver() override {
    log.push_back(v);
    delete this;
  }
  void discard() override {
    log.push_back(-v);
    delete this;
  }
};

TEST(Inbox, DeliversInPushOrderOnTheEventLoop) {
  boost::asio::io_context ioc;
  Inbox inbox(ioc.get_executor());
  std::vector<int> log;
  std::thread writer([&] {
    for (int i = 1; i <= 100; ++i) inbox.push(new Recorded(log, i));
  });
  writer.join();
  EXPECT_TRUE(log.empty()) << "nothing runs on the pushing thread";
  ioc.run();
  ASSERT_EQ(log.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(log[static_cast<size_t>(i)], i + 1);
}

TEST(Inbox, ABatchOnTheWriterThreadCostsOneDrain) {
  boost::asio::io_context ioc;
  Inbox inbox(ioc.get_executor());
  std::vector<int> log;
  std::thread writer([&] {
    for (int group = 0; group < 3; ++group) {
      WakeBatch wakes;
      for (int i = 1; i <= 10; ++i) inbox.push(new Recorded(log, group * 10 + i));
    }
  });
  writer.join();
  ioc.run();
  EXPECT_EQ(log.size(), 30u);
  EXPECT_EQ(inbox.drains(), 1u) << "the three groups were all pushed before the loop ran";
}

TEST(Inbox, WithoutABatchEachPushWhileTheLoopIsIdlePostsADrain) {
  boost::asio::io_context ioc;
  Inbox inbox(ioc.get_executor());
  std::vector<int> log;
  for (int i = 1; i <= 3; ++i) {
    inbox.push(new Recorded(log, i));
    ioc.restart();
    ioc.run();
  }
  EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(inbox.drains(), 3u);
}

TEST(Inbox, WhatIsUndeliveredWhenItGoesAwayIsDiscarded) {
  std::vector<int> log;
  {
    boost::asio::io_context ioc;
    Inbox inbox(ioc.get_executor());
    inbox.push(new Recorded(log, 7));
    inbox.push(new Recorded(log, 8));
  }
  EXPECT_EQ(log, (std::vector<int>{-7, -8}));
}

TEST(WakeBatch, DefersEachWakeOnceToTheEndAndNestsBatches) {
  std::vector<void*> woken;
  auto wake = [](void* arg) { static_cast<std::vector<void*>*>(arg)->push_back(arg); };
  EXPECT_FALSE(WakeBatch::defer(wake, &woken)) << "no batch: wake at once";
  {
    WakeBatch outer;
    {
      WakeBatch inner;
      EXPECT_TRUE(WakeBatch::defer(wake, &woken));
      EXPECT_TRUE(WakeBatch::defer(wake, &woken));
      EXPECT_TRUE(woken.empty());
    }
    EXPECT_EQ(woken.size(), 1u) << "the inner batch ended";
  }
  EXPECT_EQ(woken.size(), 1u);
}

// async_call (server/http.h): the result reaches the coroutine once, by the
// inbox from another thread or by its own post; its call object comes from
// Asio's recycling cache, so many calls in a row reuse one block.
asio::awaitable<void> call_many(Inbox* inbox, int n, std::vector<std::string>& got) {
  for (int i = 0; i < n; ++i) {
    auto op = async_call<std::string>(inbox, [i, inbox](auto cb) {
      // Longer than the small-string buffer: the value moves, not copies.
      std::string v = "result number " + std::to_string(i) + " of the calls in a row";
      if (inbox) {
        std::thread writer([&cb, v = std::move(v)]() mutable { cb(std::move(v)); });
        writer.join();
      } else {
        cb(std::move(v));  // inline: the coroutine has not suspended yet
      }
    });
    got.push_back(co_await std::move(op));
  }
}

TEST(AsyncCall, ResultsReachTheCoroutineByTheInboxOrByAPost) {
  for (bool with_inbox : {true, false}) {
    boost::asio::io_context ioc;
    Inbox inbox(ioc.get_executor());
    std::vector<std::string> got;
    asio::co_spawn(ioc, call_many(with_inbox ? &inbox : nullptr, 50, got), asio::detached);
    ioc.run();
    ASSERT_EQ(got.size(), 50u) << with_inbox;
    for (int i = 0; i < 50; ++i)
      EXPECT_EQ(got[static_cast<size_t>(i)],
                "result number " + std::to_string(i) + " of the calls in a row");
  }
}

}  // namespace
}  // namespace ds::http_server
