// Little-endian integer fields of the on-disk layout, independent of the host.
#pragma once

#include <cstdint>
#include <vector>

namespace nsat {

inline void putLE(uint8_t* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

inline uint64_t getLE(const uint8_t* in, int bytes) {
  uint64_t value = 0;
  for (int i = bytes; i-- > 0;) value = (value << 8) | in[i];
  return value;
}

inline void appendLE(std::vector<uint8_t>& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

}  // namespace nsat
