// PixelShuffle(2) as torch.nn.PixelShuffle defines it, for the learned codecs' own
// networks: out[c, 2y + i, 2x + j] = in[4c + 2i + j, y, x], planar channel-major.
#pragma once

#include <cstddef>

namespace nsat {

template <typename T>
void pixelShuffle2(const T* input, int channels, int height, int width, T* output) {
  for (int c = 0; c < channels / 4; ++c)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j)
        for (int y = 0; y < height; ++y)
          for (int x = 0; x < width; ++x)
            output[(size_t(c) * 2 * height + 2 * y + i) * 2 * width + 2 * x + j] =
                input[(size_t(4 * c + 2 * i + j) * height + y) * width + x];
}

}  // namespace nsat
