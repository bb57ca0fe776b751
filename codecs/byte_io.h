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
  bool atEnd() const { return position_ == size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
  std::string what_;
};

}  // namespace nsat
