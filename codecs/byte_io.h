// Little-endian fields inside codec payloads, read with bounds checks so that a
// damaged tile gives nsat::Error instead of a read past its end.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "codecs/codec.h"
#include "container/byte_order.h"

namespace nsat {

inline void appendU32(std::vector<uint8_t>& out, uint32_t value) { appendLE(out, value, 4); }

inline void appendFloat32(std::vector<uint8_t>& out, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  appendLE(out, bits, 4);
}

// Unsigned LEB128: 7 bits a byte, low bits first, the high bit set on all but the last.
inline void appendVarint(std::vector<uint8_t>& out, uint32_t value) {
  while (value >= 0x80) {
    out.push_back(uint8_t(value | 0x80));
    value >>= 7;
  }
  out.push_back(uint8_t(value));
}

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string what)
      : data_(data), size_(size), what_(std::move(what)) {}

  const uint8_t* bytes(size_t count) {
    if (count > size_ - position_) throw Error(what_ + " is truncated");
    const uint8_t* start = data_ + position_;
    position_ += count;
    return start;
  }
  uint32_t u32() { return static_cast<uint32_t>(getLE(bytes(4), 4)); }
  float float32() {
    const uint32_t bits = u32();
    float value;
    std::memcpy(&value, &bits, 4);
    return value;
  }
  uint32_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      const uint8_t byte = *bytes(1);
      value |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) {
        if (value > UINT32_MAX) break;
        return uint32_t(value);
      }
    }
    throw Error(what_ + " has a malformed length");
  }
  bool atEnd() const { return position_ == size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
  std::string what_;
};

}  // namespace nsat
