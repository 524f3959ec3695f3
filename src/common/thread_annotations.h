#pragma once
// Clang's thread-safety annotations (-Wthread-safety), and a mutex the
// analysis understands. Under any other compiler the macros expand to
// nothing and ds::Mutex is a plain std::mutex wrapper.
//
// libstdc++'s std::mutex and std::lock_guard carry no annotations, so data
// that a mutex guards uses ds::Mutex and ds::MutexLock instead:
//
//   ds::Mutex mu_;
//   int n_ DS_GUARDED_BY(mu_) = 0;
//   void bump() { ds::MutexLock lock(mu_); ++n_; }
//   void bump_locked() DS_REQUIRES(mu_) { ++n_; }
//
// A std::condition_variable waits on lock.native(); the analysis treats the
// mutex as held across the wait (it is, whenever the caller runs).

#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define DS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define DS_THREAD_ANNOTATION(x)
#endif

#define DS_CAPABILITY(x) DS_THREAD_ANNOTATION(capability(x))
#define DS_SCOPED_CAPABILITY DS_THREAD_ANNOTATION(scoped_lockable)
#define DS_GUARDED_BY(x) DS_THREAD_ANNOTATION(guarded_by(x))
#define DS_PT_GUARDED_BY(x) DS_THREAD_ANNOTATION(pt_guarded_by(x))
#define DS_ACQUIRED_BEFORE(...) DS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define DS_ACQUIRED_AFTER(...) DS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define DS_REQUIRES(...) DS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define DS_ACQUIRE(...) DS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define DS_RELEASE(...) DS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define DS_REQUIRES_SHARED(...) DS_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define DS_ACQUIRE_SHARED(...) DS_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define DS_RELEASE_SHARED(...) DS_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define DS_TRY_ACQUIRE(...) DS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define DS_EXCLUDES(...) DS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define DS_ASSERT_CAPABILITY(x) DS_THREAD_ANNOTATION(assert_capability(x))
#define DS_RETURN_CAPABILITY(x) DS_THREAD_ANNOTATION(lock_returned(x))
#define DS_NO_THREAD_SAFETY_ANALYSIS DS_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace ds {

/// std::mutex, as a capability the analysis tracks.
class DS_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() DS_ACQUIRE() { mu_.lock(); }
  void unlock() DS_RELEASE() { mu_.unlock(); }
  bool try_lock() DS_TRY_ACQUIRE(true) { return mu_.try_lock(); }

  /// The underlying mutex, for std::unique_lock (condition variables).
  std::mutex& native() DS_RETURN_CAPABILITY(this) { return mu_; }

 private:
  std::mutex mu_;
};

/// Holds a ds::Mutex for its scope (std::unique_lock underneath: it may be
/// unlocked early and relocked, and a condition variable can wait on it).
class DS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) DS_ACQUIRE(mu) : lock_(mu.native()) {}
  ~MutexLock() DS_RELEASE() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void lock() DS_ACQUIRE() { lock_.lock(); }
  void unlock() DS_RELEASE() { lock_.unlock(); }

  /// For std::condition_variable::wait*: the wait releases the mutex and
  /// takes it again before returning, so to the analysis it stays held.
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

/// std::shared_mutex, as a capability the analysis tracks: data guarded by
/// it may be read under ReaderLock and written under WriterLock.
class DS_CAPABILITY("mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() DS_ACQUIRE() { mu_.lock(); }
  void unlock() DS_RELEASE() { mu_.unlock(); }
  void lock_shared() DS_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() DS_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

/// Holds a SharedMutex exclusively for its scope.
class DS_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) DS_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() DS_RELEASE() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

/// Holds a SharedMutex shared for its scope.
class DS_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) DS_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() DS_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace ds
