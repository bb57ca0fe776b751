#pragma once
// A lossy decode can land a valid sample on its band's nodata value, where a reader would
// take it for nodata. The tile payload (container/tile_payload.cpp) moves such samples to
// the nearest other value; a codec that measures its own decode (FIXED_QUALITY's block
// PSNR map) takes the same step, so that it measures what a reader gets.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "codecs/codec.h"

namespace nsat {

// The nearest representable value that differs from nodata.
template <typename T>
T nextToNodata(double nodata) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(nodata)) return T(0);
    return std::nextafter(static_cast<T>(nodata), std::numeric_limits<T>::max());
  } else {
    const T value = static_cast<T>(nodata);
    return value < std::numeric_limits<T>::max() ? T(value + 1) : T(value - 1);
  }
}

// Branch-free in the common case: most tiles have no sample on the nodata value.
template <typename T>
void moveOffNodata(T* samples, size_t count, double nodata) {
  const T substitute = nextToNodata<T>(nodata);
  if (std::isnan(nodata)) {
    for (size_t i = 0; i < count; ++i) {
      if (std::isnan(static_cast<double>(samples[i]))) samples[i] = substitute;
    }
    return;
  }
  const T nodataSample = static_cast<T>(nodata);
  for (size_t i = 0; i < count; ++i) {
    samples[i] = samples[i] == nodataSample ? substitute : samples[i];
  }
}

// `count` samples of `type` at `samples`; `nodata` must be representable in the type.
inline void moveOffNodata(DataType type, void* samples, size_t count, double nodata) {
  switch (type) {
    case DataType::Byte: return moveOffNodata(static_cast<uint8_t*>(samples), count, nodata);
    case DataType::UInt16: return moveOffNodata(static_cast<uint16_t*>(samples), count, nodata);
    case DataType::Int16: return moveOffNodata(static_cast<int16_t*>(samples), count, nodata);
    case DataType::UInt32: return moveOffNodata(static_cast<uint32_t*>(samples), count, nodata);
    case DataType::Int32: return moveOffNodata(static_cast<int32_t*>(samples), count, nodata);
    case DataType::Float32: return moveOffNodata(static_cast<float*>(samples), count, nodata);
    case DataType::Float64: return moveOffNodata(static_cast<double*>(samples), count, nodata);
  }
}

}  // namespace nsat
