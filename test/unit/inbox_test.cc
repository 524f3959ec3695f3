// server/inbox.h and common/wake_batch.h: results from another thread reach
// the event loop in order, exactly once, a batch of them with one drain.

#include "server/inbox.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <thread>
#include <vector>

#include "common/wake_batch.h"

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

}  // namespace
}  // namespace ds::http_server
