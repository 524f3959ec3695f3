#pragma once
// The memory of parked readers (server/parking.cc): what tens of thousands of
// idle connections cost is mostly how their small state is laid out.
// Pure and Asio-free; tested in test/unit/parked_memory_test.cc.

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <string_view>
#include <utility>

namespace ds::http_server {

/// Several short strings in one block: a count byte, a width byte (2 or 4),
/// each length in that width, then the characters. Inline when they fit in
/// `Inline` bytes (a request id and an address in 40, with a cursor and a
/// content type in 64, usually do), else on the heap: then the first byte
/// says so and the block's address is kept in the inline bytes (no pointer
/// beside them: `Inline` bytes in all).
template <size_t Inline>
class PackedText {
 public:
  static constexpr size_t kInline = Inline;
  static_assert(Inline >= 16 && Inline % 8 == 0);

  PackedText() = default;
  explicit PackedText(std::initializer_list<std::string_view> parts) {
    size_t chars = 0;
    size_t longest = 0;
    for (auto p : parts) {
      chars += p.size();
      longest = std::max(longest, p.size());
    }
    const size_t n = parts.size();
    const size_t width = longest <= 0xffff ? 2 : 4;
    const size_t total = 2 + width * n + chars;
    char* out = inline_;
    if (total > kInline) {
      out = new char[total];
      inline_[0] = kHeap;
      std::memcpy(inline_ + 8, &out, sizeof out);
    }
    out[0] = static_cast<char>(n);
    out[1] = static_cast<char>(width);
    char* len = out + 2;
    char* at = len + width * n;
    for (auto p : parts) {
      if (width == 2) {
        const auto l = static_cast<uint16_t>(p.size());
        std::memcpy(len, &l, 2);
      } else {
        const auto l = static_cast<uint32_t>(p.size());
        std::memcpy(len, &l, 4);
      }
      len += width;
      if (!p.empty()) std::memcpy(at, p.data(), p.size());
      at += p.size();
    }
  }
  PackedText(PackedText&&) = delete;  // an entry's, in place
  ~PackedText() {
    if (on_heap()) delete[] block();
  }

  /// The `i`th string ("" past the end).
  std::string_view get(size_t i) const {
    const char* b = block();
    const size_t n = static_cast<unsigned char>(b[0]);
    const size_t width = static_cast<unsigned char>(b[1]);
    if (i >= n) return {};
    const char* at = b + 2 + width * n;
    size_t l = 0;
    for (size_t k = 0;; ++k) {
      if (width == 2) {
        uint16_t v = 0;
        std::memcpy(&v, b + 2 + 2 * k, 2);
        l = v;
      } else {
        uint32_t v = 0;
        std::memcpy(&v, b + 2 + 4 * k, 4);
        l = v;
      }
      if (k == i) break;
      at += l;
    }
    return {at, l};
  }

 private:
  static constexpr char kHeap = static_cast<char>(0xff);  // never a count (parts are few)
  bool on_heap() const { return inline_[0] == kHeap; }
  char* block() const {
    if (!on_heap()) return const_cast<char*>(inline_);
    char* h = nullptr;
    std::memcpy(&h, inline_ + 8, sizeof h);
    return h;
  }
  alignas(8) char inline_[kInline] = {};
};

/// One short string in 16 bytes: inline up to 15 characters (a cursor is
/// a number of 20-second intervals, 7 digits), else on the heap. A parked
/// SSE reader's cursor, which a std::string would keep in 32.
class ShortText {
 public:
  static constexpr size_t kInline = 15;
  ShortText() = default;
  explicit ShortText(std::string_view v) { assign(v); }
  ShortText(const ShortText&) = delete;
  ShortText& operator=(const ShortText&) = delete;
  ~ShortText() { free_heap(); }

  /// `v` may be this text's own view.
  void assign(std::string_view v) {
    const char* old = b_[0] == kHeap ? heap() : nullptr;  // freed after the copy
    if (v.size() <= kInline) {
      b_[0] = static_cast<unsigned char>(v.size());
      if (!v.empty()) std::memmove(b_ + 1, v.data(), v.size());
    } else {
      const auto n = static_cast<uint32_t>(std::min<size_t>(v.size(), UINT32_MAX));
      char* h = new char[sizeof n + n];
      std::memcpy(h, &n, sizeof n);
      std::memcpy(h + sizeof n, v.data(), n);
      b_[0] = kHeap;
      std::memcpy(b_ + 8, &h, sizeof h);
    }
    delete[] old;
  }

  std::string_view view() const {
    if (b_[0] != kHeap) return {reinterpret_cast<const char*>(b_ + 1), b_[0]};
    const char* h = heap();
    uint32_t n = 0;
    std::memcpy(&n, h, sizeof n);
    return {h + sizeof n, n};
  }

 private:
  static constexpr unsigned char kHeap = 0xff;
  const char* heap() const {
    const char* h = nullptr;
    std::memcpy(&h, b_ + 8, sizeof h);
    return h;
  }
  void free_heap() {
    if (b_[0] != kHeap) return;
    delete[] heap();
    b_[0] = 0;
  }
  alignas(8) unsigned char b_[16] = {};
};
static_assert(sizeof(ShortText) == 16);

/// The entries of one of the lot's buckets, linked through their own `next`
/// (no vector storage per stream and offset, which grew during a connect
/// burst between short-lived frames and pinned their pages). Owns them;
/// first in, first out, as the vectors were.
template <class T>
class EntryList {
 public:
  EntryList() = default;
  EntryList(EntryList&& o) noexcept
      : head_(std::exchange(o.head_, nullptr)),
        tail_(std::exchange(o.tail_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  EntryList& operator=(EntryList&& o) noexcept {
    if (this != &o) {
      clear();
      head_ = std::exchange(o.head_, nullptr);
      tail_ = std::exchange(o.tail_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~EntryList() { clear(); }

  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return head_; }

  void push_back(std::unique_ptr<T> r) {
    T* p = r.release();
    p->next = nullptr;
    if (tail_) {
      tail_->next = p;
    } else {
      head_ = p;
    }
    tail_ = p;
    ++size_;
  }
  /// The first entry, taken out (null when empty).
  std::unique_ptr<T> pop_front() {
    T* p = head_;
    if (!p) return nullptr;
    head_ = p->next;
    if (!head_) tail_ = nullptr;
    p->next = nullptr;
    --size_;
    return std::unique_ptr<T>(p);
  }
  /// Takes out the entries for which `take(const T&)` is true, in order, and
  /// gives each to `out(std::unique_ptr<T>)`.
  template <class Take, class Out>
  void take_if(Take&& take, Out&& out) {
    T* prev = nullptr;
    for (T* p = head_; p;) {
      T* nxt = p->next;
      if (take(static_cast<const T&>(*p))) {
        (prev ? prev->next : head_) = nxt;
        if (tail_ == p) tail_ = prev;
        p->next = nullptr;
        --size_;
        out(std::unique_ptr<T>(p));
      } else {
        prev = p;
      }
      p = nxt;
    }
  }
  template <class F>
  void for_each(F&& f) const {
    for (const T* p = head_; p; p = p->next) f(*p);
  }
  void clear() {
    while (head_) {
      T* p = head_;
      head_ = p->next;
      delete p;
    }
    tail_ = nullptr;
    size_ = 0;
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
};

/// Fixed-size slots for the lot's entries, carved from blocks of their own
/// (mmap'd, 128 KiB), not from the general heap: tens of thousands of small
/// long-lived entries allocated between each connection's short-lived
/// buffers and coroutine frames would pin the pages of those (freed) once
/// the readers park, so that none could be given back (see trim_soon).
/// Slots are reused, blocks are kept (the peak of parked readers); a block's
/// pages are touched only as far as it was ever used.
/// Thread safety: any thread.
#if defined(__SANITIZE_ADDRESS__)
#define DS_SLOT_POOL_HEAP 1  // ASan sees use-after-free of heap objects only
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DS_SLOT_POOL_HEAP 1
#endif
#endif

template <size_t Size, class Tag = void>
class SlotPool {
 public:
  static void* get() {
#ifdef DS_SLOT_POOL_HEAP
    in_use_.fetch_add(1, std::memory_order_relaxed);
    return ::operator new(Size);
#endif
    std::lock_guard lock(mu());
    auto& f = free_list();
    void* p = f;
    if (p) {
      f = f->next;
    } else {
      p = carve();
      if (!p) throw std::bad_alloc();
    }
    in_use_.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  static void put(void* p) {
    if (!p) return;
#ifdef DS_SLOT_POOL_HEAP
    in_use_.fetch_sub(1, std::memory_order_relaxed);
    ::operator delete(p);
    return;
#endif
    std::lock_guard lock(mu());
    auto* s = static_cast<Free*>(p);
    s->next = free_list();
    free_list() = s;
    in_use_.fetch_sub(1, std::memory_order_relaxed);
  }
  /// Slots handed out now.
  static size_t in_use() { return in_use_.load(std::memory_order_relaxed); }

 private:
  struct Free {
    Free* next;
  };
  static constexpr size_t kSlot = (Size + 7) / 8 * 8;  // 8-aligned (PoolAllocator checks)
  static inline std::atomic<size_t> in_use_{0};
  static constexpr size_t kBlock = size_t{128} << 10;
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static Free*& free_list() {
    static Free* f = nullptr;
    return f;
  }
  struct Block {
    char* next = nullptr;  ///< the first slot never handed out
    char* end = nullptr;
  };
  static Block& block() {
    static Block b;
    return b;
  }
  /// A slot never handed out: carved from the newest block in order, so a
  /// block's pages are touched only as far as it is used (a pool with a
  /// hundred objects keeps a few pages resident, not 128 KiB).
  static void* carve() {
    auto& b = block();
    if (b.next == nullptr || b.end - b.next < static_cast<std::ptrdiff_t>(kSlot)) {
      void* m = ::mmap(nullptr, kBlock, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) return nullptr;
      b.next = static_cast<char*>(m);
      b.end = b.next + kBlock / kSlot * kSlot;
    }
    void* p = b.next;
    b.next += kSlot;
    return p;
  }
};

/// An allocator that takes single objects from SlotPool (arrays from the
/// heap): for the lot's per-stream objects (the stream's lot, its bucket map
/// and its entry in the lot of lots). The first readers of a connect burst
/// make them in the middle of the burst's short-lived frames and buffers,
/// whose pages they would pin once those are freed.
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}
  static constexpr bool kPooled = alignof(T) <= 8;  // SlotPool's slots are 8-aligned
  struct Tag;  // pools apart from the entries' (ParkingLot::trim_soon counts those)
  // T may be a pointer (a hash table's buckets): its size is meant.
  using Pool = SlotPool<sizeof(T), Tag>;  // NOLINT(bugprone-sizeof-expression)
  T* allocate(size_t n) {
    if (kPooled && n == 1) return static_cast<T*>(Pool::get());
    return static_cast<T*>(::operator new(n * sizeof(T)));  // NOLINT(bugprone-sizeof-expression)
  }
  void deallocate(T* p, size_t n) noexcept {
    if (kPooled && n == 1) {
      Pool::put(p);
      return;
    }
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace ds::http_server
