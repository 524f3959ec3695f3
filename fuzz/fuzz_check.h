#pragma once
// What the fuzz targets share: a property check that aborts (libFuzzer then
// reports the input that broke it), and the input as a string_view.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond) ((cond) ? (void)0 : ::ds::fuzz::fail(#cond, __FILE__, __LINE__))

namespace ds::fuzz {

[[noreturn]] inline void fail(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: property does not hold: %s\n", file, line, what);
  std::abort();
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace ds::fuzz
