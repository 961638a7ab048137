// Byte order and Internet checksum helpers shared by the coalescer (gro.cc) and the segmenter (gso.cc).
#pragma once

#include <cstddef>
#include <cstdint>

namespace quicgate {

inline uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Load32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void Store16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

inline uint64_t Sum16(const uint8_t* p, size_t n, uint64_t acc) {
  size_t i = 0;
  for (; i + 1 < n; i += 2) acc += Load16(p + i);
  if (i < n) acc += static_cast<uint64_t>(p[i]) << 8;
  return acc;
}

inline uint16_t Fold(uint64_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(acc);
}

// Sum of the pseudo header (addresses, protocol, transport length), folded but not complemented: what the
// checksum field must hold when the kernel is asked to finish the sum (CHECKSUM_PARTIAL).
inline uint16_t PseudoHeaderSum(const uint8_t* ip, bool v4, uint8_t protocol, uint32_t transportLength) {
  uint64_t acc = v4 ? Sum16(ip + 12, 8, 0) : Sum16(ip + 8, 32, 0);
  acc += protocol;
  acc += transportLength;
  return Fold(acc);
}

}  // namespace quicgate
