#include "codecs/learned/integer_hyper_synthesis.h"

#include <algorithm>
#include <cstdint>

#include "codecs/codec.h"
#include "codecs/learned/pixel_shuffle.h"

namespace nsat {

namespace {

template <typename T>
std::vector<T> integers(const nlohmann::json& list, size_t count, int64_t low, int64_t high,
                        const char* what) {
  if (!list.is_array() || list.size() != count) {
    throw Error(std::string("integer hyper-synthesis: ") + what + " has the wrong length");
  }
  std::vector<T> values;
  values.reserve(count);
  for (const auto& item : list) {
    const int64_t value = item.get<int64_t>();
    if (value < low || value > high) {
      throw Error(std::string("integer hyper-synthesis: ") + what + " out of range");
    }
    values.push_back(static_cast<T>(value));
  }
  return values;
}

}  // namespace

IntegerHyperSynthesis::IntegerHyperSynthesis(const nlohmann::json& description) {
  try {
    if (description.at("format").get<std::string>() != "nsat-int-hyper-synthesis-v1") {
      throw Error("unknown format " + description.at("format").get<std::string>());
    }
    inputChannels_ = description.at("input_channels").get<int>();
    outputChannels_ = description.at("output_channels").get<int>();
    scaleLevels_ = description.at("scale_levels").get<int>();
    inputClip_ = description.at("input_clip").at(1).get<int>();
    int channels = inputChannels_;
    for (const auto& item : description.at("layers")) {
      Layer layer;
      layer.inChannels = item.at("in_channels").get<int>();
      layer.outChannels = item.at("out_channels").get<int>();
      layer.outMax = item.at("out_max").get<int>();
      layer.shuffle = item.at("pixel_shuffle").get<int>();
      if (layer.inChannels != channels || item.at("kernel").get<int>() != 3 ||
          item.at("padding").get<int>() != 1 || item.at("out_min").get<int>() != 0 ||
          layer.outMax < 1 || layer.outMax > 255 || (layer.shuffle != 1 && layer.shuffle != 2) ||
          layer.outChannels % (layer.shuffle * layer.shuffle) != 0 || layer.outChannels > 4096) {
        throw Error("a layer has an unsupported shape");
      }
      const size_t outs = size_t(layer.outChannels);
      const auto weight = integers<int8_t>(item.at("weight"), outs * layer.inChannels * 9,
                                           -128, 127, "weight");
      layer.weight16.assign(weight.begin(), weight.end());
      layer.bias = integers<int32_t>(item.at("bias"), outs, -(1 << 30), 1 << 30, "bias");
      layer.multiplier =
          integers<int32_t>(item.at("multiplier"), outs, 1, 1 << 16, "multiplier");
      layer.shift = integers<int32_t>(item.at("shift"), outs, 1, 48, "shift");
      channels = layer.outChannels / (layer.shuffle * layer.shuffle);
      layers_.push_back(std::move(layer));
    }
    if (layers_.empty() || channels != outputChannels_ || layers_.back().outMax >= scaleLevels_) {
      throw Error("the layers do not produce " + std::to_string(outputChannels_) +
                  " scale indices");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("integer hyper-synthesis: malformed JSON: ") + e.what());
  } catch (const Error& e) {
    throw Error(std::string("integer hyper-synthesis: ") + e.what());
  }
}

// acc[o][p] = bias[o] + sum_k weight[o][k] * columns[p][k]. Integers: every order of the
// sum gives the same result, so the compiler may vectorise freely (pmaddwd on AVX2).
__attribute__((target_clones("avx2", "default"))) void integerDotProducts(
    const int16_t* weight, const int32_t* bias, const int16_t* columns, int outChannels,
    int positions, int length, int32_t* acc) {
  for (int o = 0; o < outChannels; ++o) {
    const int16_t* w = weight + size_t(o) * length;
    for (int p = 0; p < positions; ++p) {
      const int16_t* column = columns + size_t(p) * length;
      int32_t sum = 0;
      for (int k = 0; k < length; ++k) sum += int32_t(w[k]) * int32_t(column[k]);
      acc[size_t(o) * positions + p] = bias[o] + sum;
    }
  }
}

// 3x3 conv (zero padding), requantisation and clamping, then the optional PixelShuffle.
// Every weight is int8 and every activation in -127..255, so the products fit int16 x
// int16 -> int32 and |acc| < 2^31 for any input channel count below 2^31 / (9 * 128 *
// 255); the requantisation product uses int64. The 3x3 windows are laid out as columns
// (im2col), since the planes are small (4 x 4 to 16 x 16 for 256-pixel tiles).
std::vector<int32_t> IntegerHyperSynthesis::run(const Layer& layer,
                                                const std::vector<int32_t>& input, int height,
                                                int width) const {
  const int positions = height * width;
  const int length = layer.inChannels * 9;
  const size_t plane = size_t(positions);
  std::vector<int16_t> columns(size_t(positions) * length, 0);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      int16_t* column = &columns[(size_t(y) * width + x) * length];
      for (int i = 0; i < layer.inChannels; ++i) {
        const int32_t* in = input.data() + size_t(i) * plane;
        for (int ky = 0; ky < 3; ++ky) {
          const int sy = y + ky - 1;
          if (sy < 0 || sy >= height) continue;
          for (int kx = 0; kx < 3; ++kx) {
            const int sx = x + kx - 1;
            if (sx >= 0 && sx < width) column[i * 9 + ky * 3 + kx] = int16_t(in[sy * width + sx]);
          }
        }
      }
    }
  }
  std::vector<int32_t> acc(size_t(layer.outChannels) * plane);
  integerDotProducts(layer.weight16.data(), layer.bias.data(), columns.data(), layer.outChannels,
              positions, length, acc.data());
  std::vector<int32_t> output(acc.size());
  for (int o = 0; o < layer.outChannels; ++o) {
    const int64_t multiplier = layer.multiplier[o];
    const int shift = layer.shift[o];
    const int64_t half = int64_t(1) << (shift - 1);
    const int32_t* in = acc.data() + size_t(o) * plane;
    int32_t* out = output.data() + size_t(o) * plane;
    for (size_t p = 0; p < plane; ++p) {
      const int64_t value = (int64_t(in[p]) * multiplier + half) >> shift;
      out[p] = int32_t(std::clamp<int64_t>(value, 0, layer.outMax));
    }
  }
  if (layer.shuffle == 1) return output;
  std::vector<int32_t> shuffled(output.size());
  pixelShuffle2(output.data(), layer.outChannels, height, width, shuffled.data());
  return shuffled;
}

std::vector<uint8_t> IntegerHyperSynthesis::scaleIndices(const std::vector<int32_t>& z,
                                                         int zHeight, int zWidth, int height,
                                                         int width) const {
  if (z.size() != size_t(inputChannels_) * zHeight * zWidth) {
    throw Error("integer hyper-synthesis: z has the wrong size");
  }
  std::vector<int32_t> activation(z.size());
  std::transform(z.begin(), z.end(), activation.begin(),
                 [&](int32_t v) { return std::clamp(v, -inputClip_, inputClip_); });
  int h = zHeight, w = zWidth;
  for (const auto& layer : layers_) {
    activation = run(layer, activation, h, w);
    h *= layer.shuffle;
    w *= layer.shuffle;
  }
  if (height > h || width > w) throw Error("integer hyper-synthesis: output crop too large");
  std::vector<uint8_t> indices(size_t(outputChannels_) * height * width);
  for (int c = 0; c < outputChannels_; ++c)
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x)
        indices[(size_t(c) * height + y) * width + x] =
            uint8_t(activation[(size_t(c) * h + y) * w + x]);
  return indices;
}

}  // namespace nsat
