#include "store/log/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ds::logstore {

namespace {

// Reflected Castagnoli polynomial.
constexpr uint32_t kPoly = 0x82F63B78u;

// Slicing-by-8 tables: kTables[0] is the classic byte-at-a-time table;
// kTables[k][b] is the CRC of byte b followed by k zero bytes, which lets
// the loop fold eight input bytes with eight independent lookups.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1) ? kPoly : 0);
    t[0][b] = c;
  }
  for (size_t k = 1; k < 8; ++k)
    for (uint32_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  return t;
}

constexpr Tables kTables = make_tables();

uint32_t load_le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// Both implementations work on the raw (un-inverted) register; the public
// functions apply the ~ at both ends so that a returned crc can be passed
// back in to extend it.
uint32_t portable_raw(const unsigned char* p, size_t n, uint32_t c) {
  for (; n >= 8; p += 8, n -= 8) {
    // Byte-wise loads keep this independent of host endianness and alignment.
    const uint32_t lo = load_le32(p) ^ c;
    const uint32_t hi = load_le32(p + 4);
    c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
        kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
  }
  for (; n > 0; ++p, --n) c = (c >> 8) ^ kTables[0][(c ^ *p) & 0xff];
  return c;
}

#if defined(__x86_64__)
// Compiled for SSE4.2 on its own, so the rest of the build (and the binary's
// baseline) does not need -msse4.2; only called after the CPU check below.
__attribute__((target("sse4.2"))) uint32_t sse42_raw(const unsigned char* p, size_t n, uint32_t c) {
  // Align to 8 so the 64-bit steps never straddle a cache line.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  uint64_t c64 = c;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);  // x86 is little-endian, as the CRC expects
    c64 = _mm_crc32_u64(c64, v);
  }
  c = static_cast<uint32_t>(c64);
  for (; n > 0; --n) c = _mm_crc32_u8(c, *p++);
  return c;
}
#endif

using RawFn = uint32_t (*)(const unsigned char*, size_t, uint32_t);

RawFn pick() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return sse42_raw;
#endif
  return portable_raw;
}

}  // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) {
  // Chosen once: the CPU does not change under a running process.
  static const RawFn fn = pick();
  return ~fn(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
}

namespace detail {
uint32_t crc32c_portable(std::string_view data, uint32_t crc) {
  return ~portable_raw(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
}
}  // namespace detail

}  // namespace ds::logstore
