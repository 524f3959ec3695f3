#pragma once
// What an embedded engine reports about each of its group commits (metrics).

#include <chrono>
#include <cstddef>

namespace ds {

/// One synced write of a group commit.
struct GroupCommitStats {
  size_t requests = 0;  ///< creates, appends and deletes decided in the group
  size_t bytes = 0;     ///< bytes written to the log
  std::chrono::nanoseconds write_duration{0};  ///< the write and its fdatasync
};

}  // namespace ds
