// The planar buffers the synthesis kernels read and write (synthesis_kernels.h), and the
// split of a layer's output channels over threads: shared by every network that runs on
// those kernels (MULTIRATE's and VQ's synthesis, DIFFUSION's refiner).
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>

#include "codecs/learned/synthesis_kernels.h"
#include "codecs/thread_pool.h"

namespace nsat {

// Planes of a layer's input in the kernels' layout: one zero sample of padding on
// every side, rows `stride` floats apart.
struct PaddedPlanes {
  float* data;
  int channels, height, width, stride;

  size_t plane() const { return size_t(height + 2) * stride; }
  float* interior(int channel) { return data + channel * plane() + stride + 1; }
  // Zeroes the top and bottom rows, the left column and everything right of `width`
  // (the kernels write whole vectors there).
  void clearBorder() {
    for (int c = 0; c < channels; ++c) {
      float* p = data + c * plane();
      std::fill(p, p + stride, 0.0f);
      std::fill(p + size_t(height + 1) * stride, p + size_t(height + 2) * stride, 0.0f);
      for (int y = 1; y <= height; ++y) {
        float* row = p + size_t(y) * stride;
        row[0] = 0.0f;
        std::fill(row + width + 1, row + stride, 0.0f);
      }
    }
  }
};

inline PaddedPlanes paddedPlanes(float* data, int channels, int height, int width) {
  return {data, channels, height, width, kernelRowWidth(width) + 2};
}

inline size_t paddedSize(int channels, int height, int width) {
  return size_t(channels) * (height + 2) * (kernelRowWidth(width) + 2);
}

// Output channels of a kernel in groups of 8 (the widest register block), spread over
// the available threads.
constexpr int kChannelGroup = 8;

inline void forChannelGroups(int channels, const Parallelism& parallelism,
                             const std::function<void(int, int)>& body) {
  const size_t groups = size_t(channels + kChannelGroup - 1) / kChannelGroup;
  parallelism.forEach(groups, [&](size_t group) {
    const int begin = int(group) * kChannelGroup;
    body(begin, std::min(channels, begin + kChannelGroup));
  });
}

}  // namespace nsat
