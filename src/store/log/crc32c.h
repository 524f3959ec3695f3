#pragma once
// CRC32C (Castagnoli), the checksum of every WAL entry and checkpoint.
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise.

#include <cstdint>
#include <string_view>

namespace ds::logstore {

/// Extends `crc` (0 to start) over `data`.
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

namespace detail {
/// The table implementation crc32c() uses without SSE4.2; exposed so tests
/// can check the hardware path against it.
uint32_t crc32c_portable(std::string_view data, uint32_t crc = 0);
}  // namespace detail

}  // namespace ds::logstore
