#pragma once
// Where a connection's request and response header fields live: a bump
// arena over a buffer the connection owns, so that parsing a typical request
// and building its answer allocate nothing (Beast's fields allocate one node
// per field, and one buffer for the target or reason).
//
// The arena resets itself: it counts the allocations it has handed out and
// still holds, and when the last is given back its whole buffer is free
// again. Memory is therefore never reused while anything allocated from it
// lives: a request (or response) kept past the next request only keeps the
// arena from resetting. What does not fit (a large head, or one kept alive
// while the next is parsed) comes from the heap, one allocation each, as
// before.
//
// Not thread-safe: a connection's arena is used on its strand only. A copy of
// a container (select_on_container_copy_construction) and a default-built
// allocator use the heap, so that whatever leaves the connection by copy (a
// parked reader's state) holds nothing of the arena; a move carries the
// arena with it, so moved-to objects must not outlive the connection.

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define DS_ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define DS_ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define DS_ARENA_POISON(p, n) ((void)(p), (void)(n))
#define DS_ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace ds::http_server {

namespace arena_detail {
inline void* heap_allocate(size_t n, size_t align) {
  if (align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) return ::operator new(n);
  return ::operator new (n, std::align_val_t{align});
}
// Not inlined: g++ 12 otherwise flags the heap branch of
// RequestArena::deallocate as freeing the inline buffer (-Wfree-nonheap-object),
// which the range check before it rules out.
[[gnu::noinline]] inline void heap_deallocate(void* p, size_t align) noexcept {
  if (align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    ::operator delete(p);
  } else {
    ::operator delete (p, std::align_val_t{align});
  }
}
}  // namespace arena_detail

class RequestArena {
 public:
  // Under AddressSanitizer the buffer is poisoned except for what is handed
  // out, so a use after free of a field is still reported.
  RequestArena(std::byte* buffer, size_t capacity) : buf_(buffer), cap_(capacity) {
    DS_ARENA_POISON(buf_, cap_);
  }
  ~RequestArena() { DS_ARENA_UNPOISON(buf_, cap_); }
  RequestArena(const RequestArena&) = delete;
  RequestArena& operator=(const RequestArena&) = delete;

  /// `n` bytes aligned to `align`: from the buffer while it has room, else
  /// from the heap.
  void* allocate(size_t n, size_t align) {
    const size_t start = (used_ + align - 1) & ~(align - 1);
    if (align <= alignof(std::max_align_t) && start <= cap_ && n <= cap_ - start) {
      used_ = start + n;
      ++live_;
      DS_ARENA_UNPOISON(buf_ + start, n);
      return buf_ + start;
    }
    ++heap_allocations_;
    return arena_detail::heap_allocate(n, align);
  }

  /// `n`: the size it was allocated with.
  void deallocate(void* p, size_t n, size_t align) noexcept {
    auto* b = static_cast<std::byte*>(p);
    if (b >= buf_ && b < buf_ + cap_) {
      DS_ARENA_POISON(b, n);
      if (--live_ == 0) used_ = 0;  // everything given back: start over
      return;
    }
    arena_detail::heap_deallocate(p, align);
  }

  /// Allocations from the buffer not yet given back.
  size_t live() const { return live_; }
  /// Bytes of the buffer in use (0 once everything was given back).
  size_t used() const { return used_; }
  size_t capacity() const { return cap_; }
  /// Allocations that did not fit and went to the heap, since construction.
  size_t heap_allocations() const { return heap_allocations_; }

 private:
  std::byte* buf_;
  size_t cap_;
  size_t used_ = 0;
  size_t live_ = 0;
  size_t heap_allocations_ = 0;
};

/// A RequestArena with its buffer inline (a connection's coroutine frame
/// holds it).
template <size_t N>
class InlineRequestArena : public RequestArena {
 public:
  InlineRequestArena() : RequestArena(storage_, N) {}

 private:
  alignas(std::max_align_t) std::byte storage_[N];
};

/// A standard allocator over a RequestArena; without one (default-built, or
/// a container's copy), over the heap.
template <class T>
class ArenaAllocator {
 public:
  using value_type = T;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_copy_assignment = std::false_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  ArenaAllocator() noexcept = default;
  explicit ArenaAllocator(RequestArena* arena) noexcept : arena_(arena) {}
  template <class U>
  ArenaAllocator(const ArenaAllocator<U>& other) noexcept : arena_(other.arena()) {}

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (!arena_) return static_cast<T*>(arena_detail::heap_allocate(bytes, alignof(T)));
    return static_cast<T*>(arena_->allocate(bytes, alignof(T)));
  }
  void deallocate(T* p, size_t n) noexcept {
    if (!arena_) {
      arena_detail::heap_deallocate(p, alignof(T));
      return;
    }
    arena_->deallocate(p, n * sizeof(T), alignof(T));
  }

  /// A container's copy does not share the arena (it may outlive it).
  ArenaAllocator select_on_container_copy_construction() const noexcept { return {}; }

  RequestArena* arena() const noexcept { return arena_; }

  template <class U>
  bool operator==(const ArenaAllocator<U>& other) const noexcept {
    return arena_ == other.arena();
  }

 private:
  RequestArena* arena_ = nullptr;
};

}  // namespace ds::http_server
