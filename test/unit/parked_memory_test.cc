// The layout of parked readers' state (server/parked_memory.h).

#include "server/parked_memory.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace ds::http_server {
namespace {

TEST(PackedText, EmptyHasNoParts) {
  PackedText<40> t;
  EXPECT_EQ(t.get(0), "");
  EXPECT_EQ(t.get(4), "");
}

TEST(PackedText, ShortPartsRoundTripInline) {
  PackedText<40> t{"0123456789abcdef", "", "127.0.0.1", "8123456"};
  EXPECT_EQ(t.get(0), "0123456789abcdef");
  EXPECT_EQ(t.get(1), "");
  EXPECT_EQ(t.get(2), "127.0.0.1");
  EXPECT_EQ(t.get(3), "8123456");
  EXPECT_EQ(t.get(4), "");  // past the end
}

TEST(PackedText, LongPartsGoToTheHeap) {
  const std::string id(64, 'i');
  const std::string origin = "https://app.example.com";
  const std::string ct = "application/json; charset=utf-8";
  PackedText<64> t{id, origin, "2001:db8::1", "cursor", ct};
  EXPECT_EQ(t.get(0), id);
  EXPECT_EQ(t.get(1), origin);
  EXPECT_EQ(t.get(2), "2001:db8::1");
  EXPECT_EQ(t.get(3), "cursor");
  EXPECT_EQ(t.get(4), ct);
}

TEST(PackedText, TakesItsInlineBytesOnly) {
  EXPECT_EQ(sizeof(PackedText<40>), 40u);  // the heap block's address in them when long
  EXPECT_EQ(sizeof(PackedText<64>), 64u);
  const std::string long_id(100, 'x');
  PackedText<40> t{long_id, "", "10.0.0.1:1"};
  EXPECT_EQ(t.get(0), long_id);
  EXPECT_EQ(t.get(2), "10.0.0.1:1");
}

TEST(PackedText, PartsLongerThanSixteenBitsKeepTheirLength) {
  const std::string big(70'000, 'c');
  PackedText<64> t{"a", big, "b"};
  EXPECT_EQ(t.get(0), "a");
  EXPECT_EQ(t.get(1), big);
  EXPECT_EQ(t.get(2), "b");
}

TEST(ShortText, ShortValuesStayInline) {
  ShortText t;
  EXPECT_EQ(t.view(), "");
  t.assign("2717393");
  EXPECT_EQ(t.view(), "2717393");
  t.assign("123456789012345");  // 15: the most inline
  EXPECT_EQ(t.view(), "123456789012345");
  t.assign("");
  EXPECT_EQ(t.view(), "");
}

TEST(ShortText, LongValuesGoToTheHeapAndBack) {
  const std::string long_value(300, 'x');
  ShortText t("1234567890123456");  // 16: one past inline
  EXPECT_EQ(t.view(), "1234567890123456");
  t.assign(long_value);
  EXPECT_EQ(t.view(), long_value);
  t.assign("7");  // frees the heap copy (ASan: no leak)
  EXPECT_EQ(t.view(), "7");
  t.assign(long_value);
  EXPECT_EQ(t.view(), long_value);
  t.assign(t.view().substr(290));  // its own text, heap to inline (ASan: no use after free)
  EXPECT_EQ(t.view(), std::string(10, 'x'));
  t.assign(long_value);
  t.assign(t.view().substr(1));  // heap to heap
  EXPECT_EQ(t.view(), long_value.substr(1));
  t.assign("abc");
  t.assign(t.view().substr(1));  // inline, overlapping
  EXPECT_EQ(t.view(), "bc");
}

struct Node {
  explicit Node(int v) : value(v) {}
  int value;
  Node* next = nullptr;
  static inline int alive = 0;
  static std::unique_ptr<Node> make(int v) {
    ++alive;
    return std::unique_ptr<Node>(new Node(v));
  }
  ~Node() { --alive; }
};

std::vector<int> values(const EntryList<Node>& l) {
  std::vector<int> out;
  l.for_each([&](const Node& n) { out.push_back(n.value); });
  return out;
}

TEST(EntryList, FirstInFirstOut) {
  EntryList<Node> l;
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.pop_front(), nullptr);
  for (int i = 1; i <= 4; ++i) l.push_back(Node::make(i));
  EXPECT_EQ(l.size(), 4u);
  EXPECT_EQ(l.front()->value, 1);
  EXPECT_EQ(values(l), (std::vector<int>{1, 2, 3, 4}));
  auto a = l.pop_front();
  EXPECT_EQ(a->value, 1);
  EXPECT_EQ(a->next, nullptr);
  l.push_back(std::move(a));
  EXPECT_EQ(values(l), (std::vector<int>{2, 3, 4, 1}));
  std::vector<int> popped;
  while (auto n = l.pop_front()) popped.push_back(n->value);
  EXPECT_EQ(popped, (std::vector<int>{2, 3, 4, 1}));
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.size(), 0u);
  l.push_back(Node::make(9));  // usable again after emptied
  EXPECT_EQ(values(l), (std::vector<int>{9}));
}

TEST(EntryList, TakeIfKeepsTheOrderOfBothParts) {
  const int before = Node::alive;
  {
    EntryList<Node> l;
    for (int i = 1; i <= 7; ++i) l.push_back(Node::make(i));
    std::vector<int> taken;
    std::vector<std::unique_ptr<Node>> keep;
    // The first, some middle ones and the last.
    l.take_if([](const Node& n) { return n.value == 1 || n.value % 3 == 0 || n.value == 7; },
              [&](std::unique_ptr<Node> n) {
                taken.push_back(n->value);
                keep.push_back(std::move(n));
              });
    EXPECT_EQ(taken, (std::vector<int>{1, 3, 6, 7}));
    EXPECT_EQ(values(l), (std::vector<int>{2, 4, 5}));
    EXPECT_EQ(l.size(), 3u);
    l.push_back(Node::make(8));  // the tail moved back past the taken last
    EXPECT_EQ(values(l), (std::vector<int>{2, 4, 5, 8}));
    l.take_if([](const Node&) { return true; }, [](std::unique_ptr<Node>) {});
    EXPECT_TRUE(l.empty());
    l.push_back(Node::make(10));
    EXPECT_EQ(values(l), (std::vector<int>{10}));
    EntryList<Node> moved = std::move(l);
    EXPECT_TRUE(l.empty());
    EXPECT_EQ(values(moved), (std::vector<int>{10}));
    moved.push_back(Node::make(11));
    moved = EntryList<Node>();  // deletes what it held
    EXPECT_TRUE(moved.empty());
    for (int i = 0; i < 3; ++i) moved.push_back(Node::make(i));
  }  // the list deletes what is left
  EXPECT_EQ(Node::alive, before);
}

TEST(SlotPool, HandsOutDistinctSlotsAndReusesFreedOnes) {
  using Pool = SlotPool<200>;
  const size_t before = Pool::in_use();
  std::vector<void*> got;
  std::set<void*> distinct;
  // More than one block's worth.
  for (int i = 0; i < 1000; ++i) {
    void* p = Pool::get();
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xab, 200);  // the whole slot is writable
    got.push_back(p);
    distinct.insert(p);
  }
  EXPECT_EQ(distinct.size(), got.size());
  EXPECT_EQ(Pool::in_use(), before + 1000);
  for (void* p : got) Pool::put(p);
  EXPECT_EQ(Pool::in_use(), before);
  Pool::put(nullptr);  // no-op
  EXPECT_EQ(Pool::in_use(), before);
}

TEST(SlotPool, CarvesSlotsInOrderFromABlock) {
#ifdef DS_SLOT_POOL_HEAP
  GTEST_SKIP() << "sanitizer build: slots come from the heap";
#endif
  struct Tag;
  using Pool = SlotPool<48, Tag>;  // a pool of its own: nothing handed out before
  auto* a = static_cast<char*>(Pool::get());
  auto* b = static_cast<char*>(Pool::get());
  auto* c = static_cast<char*>(Pool::get());
  // In order, one slot apart: a block is touched only as far as it is used.
  EXPECT_EQ(b - a, 48);
  EXPECT_EQ(c - b, 48);
  Pool::put(b);
  EXPECT_EQ(Pool::get(), b);  // freed slots first
  auto* d = static_cast<char*>(Pool::get());
  EXPECT_EQ(d - c, 48);
  for (char* p : {a, b, c, d}) Pool::put(p);
  EXPECT_EQ(Pool::in_use(), 0u);
}

TEST(PoolAllocator, BacksNodeContainersAndSharedObjects) {
  struct Big {
    explicit Big(int v) : value(v) {}
    int value;
    char pad[300] = {};
  };
  {
    std::map<int, std::string, std::less<int>, PoolAllocator<std::pair<const int, std::string>>> m;
    for (int i = 0; i < 2000; ++i) m.emplace(i, std::to_string(i));
    for (int i = 0; i < 2000; i += 2) m.erase(i);
    ASSERT_EQ(m.size(), 1000u);
    EXPECT_EQ(m.at(1999), "1999");
    std::unordered_map<std::string, int, std::hash<std::string>, std::equal_to<std::string>,
                       PoolAllocator<std::pair<const std::string, int>>>
        u;  // its bucket arrays (n > 1) come from the heap
    for (int i = 0; i < 500; ++i) u[std::to_string(i)] = i;
    EXPECT_EQ(u.at("499"), 499);
  }
  auto p = std::allocate_shared<Big>(PoolAllocator<Big>(), 7);
  std::weak_ptr<Big> w = p;
  EXPECT_EQ(p->value, 7);
  p.reset();
  EXPECT_TRUE(w.expired());
}

}  // namespace
}  // namespace ds::http_server
