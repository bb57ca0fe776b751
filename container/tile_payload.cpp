#include "container/tile_payload.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <cstring>
#include <limits>

#include <zstd.h>

#include "codecs/nodata_guard.h"
#include "container/byte_order.h"

namespace nsat {

namespace {

constexpr uint8_t kFlagMask = 1;   // u32 length + zstd-compressed mask follow
constexpr uint8_t kFlagEmpty = 2;  // every sample is nodata: no codec payload

// Per-band mask modes inside the mask blob.
constexpr uint8_t kAllValid = 0;
constexpr uint8_t kSameAsPrevious = 1;
constexpr uint8_t kBitmap = 2;

// Calls f with a value of the C++ type that stores `type`.
template <typename F>
void withSampleType(DataType type, F&& f) {
  switch (type) {
    case DataType::Byte: return f(uint8_t{});
    case DataType::UInt16: return f(uint16_t{});
    case DataType::Int16: return f(int16_t{});
    case DataType::UInt32: return f(uint32_t{});
    case DataType::Int32: return f(int32_t{});
    case DataType::Float32: return f(float{});
    case DataType::Float64: return f(double{});
  }
}

template <typename T>
bool isNodata(T sample, double nodata) {
  if (std::isnan(nodata)) return std::isnan(static_cast<double>(sample));
  return static_cast<double>(sample) == nodata;
}

// One bit per sample, set where the sample is nodata (empty if the band has none),
// and how many samples that is.
template <typename T>
std::vector<uint8_t> bandBitmap(const T* samples, size_t count, double nodata,
                                size_t& nodataCount) {
  std::vector<uint8_t> bits((count + 7) / 8, 0);
  nodataCount = 0;
  for (size_t i = 0; i < count; ++i) {
    if (isNodata(samples[i], nodata)) {
      bits[i / 8] |= uint8_t(1u << (i % 8));
      ++nodataCount;
    }
  }
  if (nodataCount == 0) bits.clear();
  return bits;
}

// Mean of the valid samples, written over the nodata ones.
template <typename T>
void fillNodata(T* samples, const std::vector<uint8_t>& bits, size_t count) {
  double sum = 0;
  size_t valid = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!(bits[i / 8] >> (i % 8) & 1)) {
      sum += static_cast<double>(samples[i]);
      ++valid;
    }
  }
  const T fill = valid ? static_cast<T>(sum / valid) : T(0);
  for (size_t i = 0; i < count; ++i) {
    if (bits[i / 8] >> (i % 8) & 1) samples[i] = fill;
  }
}

// Two passes, so the common case (few masked samples) is a branch-free loop: first
// move valid samples off the nodata value, then write nodata where the mask says so.
template <typename T>
void applyMask(T* samples, const uint8_t* bits, size_t count, double nodata) {
  moveOffNodata(samples, count, nodata);
  if (!bits) return;
  const T nodataSample = static_cast<T>(nodata);
  for (size_t byte = 0; byte < (count + 7) / 8; ++byte) {
    for (uint8_t pending = bits[byte]; pending; pending &= uint8_t(pending - 1)) {
      const size_t i = byte * 8 + size_t(__builtin_ctz(pending));
      if (i < count) samples[i] = nodataSample;
    }
  }
}

std::vector<uint8_t> zstdCompress(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> out(ZSTD_compressBound(raw.size()));
  const size_t written = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 3);
  if (ZSTD_isError(written)) throw Error("zstd could not compress a nodata mask");
  out.resize(written);
  return out;
}

// A nodata value the data type cannot hold (-10000 on Byte, 0.5 on Int16) marks no
// sample: such a band is treated as having no nodata.
std::vector<std::optional<double>> representableNodata(
    DataType type, const std::vector<std::optional<double>>& nodata) {
  std::vector<std::optional<double>> kept(nodata);
  withSampleType(type, [&](auto tag) {
    using T = decltype(tag);
    for (auto& value : kept) {
      if (!value) continue;
      if constexpr (std::is_floating_point_v<T>) {
        if (std::isfinite(*value) && std::fabs(*value) > std::numeric_limits<T>::max()) {
          value.reset();
        }
      } else if (!std::isfinite(*value) || std::floor(*value) != *value ||
                 *value < double(std::numeric_limits<T>::lowest()) ||
                 *value > double(std::numeric_limits<T>::max())) {
        value.reset();
      }
    }
  });
  return kept;
}

}  // namespace

std::vector<uint8_t> encodeTilePayload(const Codec& codec, const TileShape& shape,
                                       const void* pixels,
                                       const std::vector<std::optional<double>>& declaredNodata,
                                       const EncodeGuide& guide) {
  const auto nodata = representableNodata(shape.type, declaredNodata);
  const size_t count = shape.pixelsPerBand();
  std::vector<std::vector<uint8_t>> bitmaps(shape.bands);
  bool everySampleNodata = true;
  bool anyNodataBand = false;
  withSampleType(shape.type, [&](auto tag) {
    using T = decltype(tag);
    const T* samples = static_cast<const T*>(pixels);
    for (int band = 0; band < shape.bands; ++band) {
      if (!nodata[band]) {
        everySampleNodata = false;
        continue;
      }
      anyNodataBand = true;
      size_t nodataCount = 0;
      bitmaps[band] = bandBitmap(samples + band * count, count, *nodata[band], nodataCount);
      everySampleNodata = everySampleNodata && nodataCount == count;
    }
  });
  if (everySampleNodata) return {kFlagEmpty};

  EncodeGuide withNodata = guide;
  withNodata.nodata = nodata;
  // The neighbours around the tile get the same treatment: a collar next to the tile
  // would ring into it as much as one inside.
  if (!withNodata.context.empty()) {
    const size_t contextCount =
        withNodata.context.size() / (shape.bands * dataTypeSize(shape.type));
    withSampleType(shape.type, [&](auto tag) {
      using T = decltype(tag);
      T* samples = reinterpret_cast<T*>(withNodata.context.data());
      for (int band = 0; band < shape.bands; ++band) {
        if (!nodata[band]) continue;
        size_t nodataCount = 0;
        T* plane = samples + band * contextCount;
        const auto bits = bandBitmap(plane, contextCount, *nodata[band], nodataCount);
        if (nodataCount) fillNodata(plane, bits, contextCount);
      }
    });
  }
  const bool needsMask = anyNodataBand && !codec.isLossless();
  std::vector<uint8_t> out{needsMask ? kFlagMask : uint8_t(0)};
  if (!needsMask) {
    const auto payload = codec.encode(shape, pixels, withNodata);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
  }

  std::vector<uint8_t> mask;
  for (int band = 0; band < shape.bands; ++band) {
    if (bitmaps[band].empty()) {
      mask.push_back(kAllValid);
    } else if (band > 0 && bitmaps[band] == bitmaps[band - 1]) {
      mask.push_back(kSameAsPrevious);
    } else {
      mask.push_back(kBitmap);
      mask.insert(mask.end(), bitmaps[band].begin(), bitmaps[band].end());
    }
  }
  const auto packedMask = zstdCompress(mask);
  appendLE(out, packedMask.size(), 4);
  out.insert(out.end(), packedMask.begin(), packedMask.end());

  std::vector<uint8_t> filled(static_cast<const uint8_t*>(pixels),
                              static_cast<const uint8_t*>(pixels) + shape.byteCount());
  withSampleType(shape.type, [&](auto tag) {
    using T = decltype(tag);
    T* samples = reinterpret_cast<T*>(filled.data());
    for (int band = 0; band < shape.bands; ++band) {
      if (!bitmaps[band].empty()) fillNodata(samples + band * count, bitmaps[band], count);
    }
  });
  const auto payload = codec.encode(shape, filled.data(), withNodata);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::optional<CodecBytes> codecBytesOf(const uint8_t* data, size_t size) {
  if (size < 1) throw Error("tile is corrupt: empty payload");
  const uint8_t flags = data[0];
  if (flags & ~(kFlagMask | kFlagEmpty) || flags == (kFlagMask | kFlagEmpty)) {
    throw Error("tile is corrupt: unknown flags");
  }
  if (flags & kFlagEmpty) return std::nullopt;
  size_t offset = 1;
  if (flags & kFlagMask) {
    if (size < offset + 4) throw Error("tile is corrupt: truncated mask");
    const size_t packedSize = getLE(data + offset, 4);
    offset += 4;
    if (packedSize > size - offset) throw Error("tile is corrupt: truncated mask");
    offset += packedSize;
  }
  return CodecBytes{data + offset, size - offset};
}

void decodeTilePayload(const Codec& codec, const TileShape& shape, const uint8_t* data,
                       size_t size, const std::vector<std::optional<double>>& declaredNodata,
                       void* pixels, const Parallelism& parallelism) {
  const auto nodata = representableNodata(shape.type, declaredNodata);
  if (size < 1) throw Error("tile is corrupt: empty payload");
  const uint8_t flags = data[0];
  if (flags & ~(kFlagMask | kFlagEmpty) || flags == (kFlagMask | kFlagEmpty)) {
    throw Error("tile is corrupt: unknown flags");
  }
  const size_t count = shape.pixelsPerBand();
  if (flags & kFlagEmpty) {
    withSampleType(shape.type, [&](auto tag) {
      using T = decltype(tag);
      T* samples = static_cast<T*>(pixels);
      for (int band = 0; band < shape.bands; ++band) {
        if (!nodata[band]) throw Error("tile is corrupt: empty tile in a band without nodata");
        std::fill(samples + band * count, samples + (band + 1) * count,
                  static_cast<T>(*nodata[band]));
      }
    });
    return;
  }
  size_t offset = 1;
  std::vector<uint8_t> mask;
  if (flags & kFlagMask) {
    if (size < offset + 4) throw Error("tile is corrupt: truncated mask");
    const size_t packedSize = getLE(data + offset, 4);
    offset += 4;
    if (packedSize > size - offset) throw Error("tile is corrupt: truncated mask");
    const size_t bitmapBytes = (count + 7) / 8;
    const size_t maxMask = shape.bands * (1 + bitmapBytes);
    const auto rawSize = ZSTD_getFrameContentSize(data + offset, packedSize);
    if (rawSize == ZSTD_CONTENTSIZE_ERROR || rawSize == ZSTD_CONTENTSIZE_UNKNOWN ||
        rawSize > maxMask) {
      throw Error("tile is corrupt: bad nodata mask");
    }
    mask.resize(rawSize);
    const size_t got = ZSTD_decompress(mask.data(), mask.size(), data + offset, packedSize);
    if (ZSTD_isError(got) || got != rawSize) throw Error("tile is corrupt: bad nodata mask");
    offset += packedSize;
  }
  codec.decode(shape, data + offset, size - offset, pixels, parallelism);
  if (codec.isLossless()) return;

  // Replay the mask blob band by band; bands without nodata keep the decoded values.
  size_t cursor = 0;
  const uint8_t* previousBits = nullptr;
  const size_t bitmapBytes = (count + 7) / 8;
  withSampleType(shape.type, [&](auto tag) {
    using T = decltype(tag);
    T* samples = static_cast<T*>(pixels);
    for (int band = 0; band < shape.bands; ++band) {
      const uint8_t* bits = nullptr;
      if (!mask.empty()) {
        if (cursor >= mask.size()) throw Error("tile is corrupt: short nodata mask");
        const uint8_t mode = mask[cursor++];
        if (mode == kBitmap) {
          if (mask.size() - cursor < bitmapBytes) throw Error("tile is corrupt: short mask");
          bits = mask.data() + cursor;
          cursor += bitmapBytes;
        } else if (mode == kSameAsPrevious) {
          bits = previousBits;
        } else if (mode != kAllValid) {
          throw Error("tile is corrupt: unknown nodata mask mode");
        }
      }
      previousBits = bits;
      if (nodata[band]) applyMask(samples + band * count, bits, count, *nodata[band]);
    }
  });
}

}  // namespace nsat
