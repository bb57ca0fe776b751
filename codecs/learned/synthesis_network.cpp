#include "codecs/learned/synthesis_network.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include "codecs/codec.h"
#include "codecs/learned/kernel_planes.h"
#include "codecs/learned/synthesis_kernels.h"
#include "codecs/learned/torch_weights.h"

namespace nsat {

namespace {

using Tensors = NamedTensors;

std::vector<float> floats(const Tensors& tensors, const std::string& name,
                          const std::vector<int64_t>& shape) {
  return tensorFloats(tensors, "synthesis.pt", name, shape);
}

}  // namespace

SynthesisNetwork::SynthesisNetwork(const torch::jit::Module& module, SynthesisArithmetic arithmetic,
                                   GainActivation gainActivation)
    : arithmetic_(arithmetic), gainActivation_(gainActivation) {
  Tensors tensors = namedTensors(module);
  try {
    inputScale_ = float(module.attr("input_scale").toDouble());
    lambdaMax_ = float(module.attr("lambda_max").toDouble());
    outputMax_ = float(module.attr("output_max").toDouble());
  } catch (const c10::Error&) {
    throw Error("synthesis.pt lacks input_scale, lambda_max or output_max");
  }
  // Stages g_s.0, g_s.3, g_s.6, ...: conv3x3, PixelShuffle(2), inverse GDN (g_s.<i+2>),
  // the last without the GDN. MULTIRATE has four, VQ two.
  const auto& first = tensors["g_s.0.weight"];
  if (!first.defined() || first.dim() != 4 || !tensors.count("g_s.3.weight")) {
    throw Error("synthesis.pt is not an NSAT synthesis (g_s.0 / g_s.3 missing)");
  }
  latentChannels_ = int(first.size(1));
  int channels = latentChannels_;
  for (int index = 0; tensors.count("g_s." + std::to_string(index) + ".weight"); index += 3) {
    const std::string name = "g_s." + std::to_string(index);
    const auto& w = tensors[name + ".weight"];
    if (!w.defined() || w.dim() != 4 || w.size(1) != channels || w.size(2) != 3 ||
        w.size(3) != 3 || w.size(0) % 4 != 0) {
      throw Error("synthesis.pt: " + name + " is not a 3x3 convolution of " +
                  std::to_string(channels) + " inputs");
    }
    Conv conv{channels, int(w.size(0)), {}, {}};
    conv.weight = floats(tensors, name + ".weight", {conv.out, conv.in, 3, 3});
    conv.bias = floats(tensors, name + ".bias", {conv.out});
    channels = conv.out / 4;
    convs_.push_back(std::move(conv));
    if (tensors.count("g_s." + std::to_string(index + 3) + ".weight")) {
      const std::string gdn = "g_s." + std::to_string(index + 2);
      InverseGdn layer{channels, floats(tensors, gdn + ".beta", {channels}),
                       floats(tensors, gdn + ".gamma", {channels, channels})};
      inverseGdns_.push_back(std::move(layer));
    }
  }
  if (convs_.size() > 6) throw Error("synthesis.pt has more stages than NSAT decodes");
  outputBands_ = channels;
  // The demodulation net (MULTIRATE, FIXED_QUALITY); VQ's synthesis has none.
  const auto hiddenFound = tensors.find("demodulation.0.weight");
  if (hiddenFound == tensors.end()) return;
  const auto& hidden = hiddenFound->second;
  if (hidden.dim() != 2) throw Error("synthesis.pt has a malformed demodulation net");
  const int hiddenSize = int(hidden.size(0));
  gain1_ = {1, hiddenSize, floats(tensors, "demodulation.0.weight", {hiddenSize, 1}),
            floats(tensors, "demodulation.0.bias", {hiddenSize})};
  gain2_ = {hiddenSize, latentChannels_,
            floats(tensors, "demodulation.2.weight", {latentChannels_, hiddenSize}),
            floats(tensors, "demodulation.2.bias", {latentChannels_})};
}

// lambda / lambda_max -> Dense, ReLU -> Dense, ReLU or positive: the per-channel gain.
// Float32 +, -, * and / only (this file is built without contraction): the same bits on
// every machine.
std::vector<float> SynthesisNetwork::demodulationGain(float lambda) const {
  if (gain1_.out == 0) throw Error("this synthesis has no demodulation net");
  const float normalised = lambda / lambdaMax_;
  std::vector<float> hidden(size_t(gain1_.out));
  for (int i = 0; i < gain1_.out; ++i) {
    hidden[i] = std::max(0.0f, gain1_.weight[i] * normalised + gain1_.bias[i]);
  }
  std::vector<float> gain(size_t(gain2_.out));
  for (int o = 0; o < gain2_.out; ++o) {
    float sum = gain2_.bias[o];
    for (int i = 0; i < gain2_.in; ++i) sum = sum + gain2_.weight[size_t(o) * gain2_.in + i] * hidden[i];
    if (!gainActivation_.positive) {
      gain[o] = std::max(0.0f, sum);
    } else {
      const float floor = gainActivation_.floor;
      gain[o] = sum >= 0.0f ? sum + floor : floor / (1.0f - sum / floor);
    }
    if (gainActivation_.inverse) gain[o] = 1.0f / gain[o];  // positive gains: never 0
  }
  return gain;
}

double SynthesisNetwork::macsPerPixel() const {
  // Layer l of L runs at 2^(l - L) of the output resolution in each direction; its
  // inverse GDN (channels^2 per position) at twice that.
  double macs = 0;
  for (size_t layer = 0; layer < convs_.size(); ++layer) {
    const double positions = std::ldexp(1.0, 2 * (int(layer) - int(convs_.size())));
    macs += positions * convs_[layer].in * convs_[layer].out * 9;
    if (layer < inverseGdns_.size()) {
      macs += 4 * positions * double(inverseGdns_[layer].channels) * inverseGdns_[layer].channels;
    }
  }
  return macs;
}

std::vector<float> SynthesisNetwork::run(const std::vector<int32_t>& y, int height, int width,
                                         float lambda, const Parallelism& parallelism) const {
  if (y.size() != size_t(latentChannels_) * height * width) {
    throw Error("synthesis: latent has the wrong size");
  }
  const std::vector<float> gain = demodulationGain(lambda);
  const size_t latentPlane = size_t(height) * width;
  std::vector<float> scaled(y.size());
  for (int c = 0; c < latentChannels_; ++c)
    for (size_t p = 0; p < latentPlane; ++p)
      scaled[c * latentPlane + p] = float(y[c * latentPlane + p]) * gain[c];
  return runScaled(scaled, height, width, parallelism);
}

std::vector<float> SynthesisNetwork::runScaled(const std::vector<float>& y, int height,
                                               int width, const Parallelism& parallelism) const {
  static const KernelIsa isa = defaultKernelIsa();
  return runScaled(y, height, width, parallelism, isa);
}

std::vector<float> SynthesisNetwork::runScaled(const std::vector<float>& y, int height,
                                               int width, const Parallelism& parallelism,
                                               KernelIsa isa) const {
  if (y.size() != size_t(latentChannels_) * height * width) {
    throw Error("synthesis: latent has the wrong size");
  }
  const SynthesisKernels& kernels = synthesisKernels(isa);
  // Buffers sized for the largest layer and kept per thread (about 20 MB for 256-pixel
  // tiles): fresh multi-megabyte allocations for every tile cost more in page faults
  // than the convolutions themselves.
  size_t inputSize = 0, convSize = 0, shuffledSize = 0;
  for (int layer = 0, h = height, w = width; layer < int(convs_.size()); ++layer, h *= 2, w *= 2) {
    inputSize = std::max(inputSize, paddedSize(convs_[layer].in, h, w));
    convSize = std::max(convSize, size_t(convs_[layer].out) * h * kernelRowWidth(w));
    shuffledSize =
        std::max(shuffledSize, size_t(convs_[layer].out / 4) * 2 * h * kernelRowWidth(2 * w));
  }
  thread_local std::vector<float> inputBuffer, convBuffer, shuffledBuffer, squaresBuffer;
  if (inputBuffer.size() < inputSize) inputBuffer.resize(inputSize);
  if (convBuffer.size() < convSize) convBuffer.resize(convSize);
  for (auto* buffer : {&shuffledBuffer, &squaresBuffer}) {
    if (buffer->size() < shuffledSize) buffer->resize(shuffledSize);
  }
  // Plain pointers: the pool's threads work on this thread's buffers.
  float* convOut = convBuffer.data();
  float* shuffled = shuffledBuffer.data();
  float* squares = squaresBuffer.data();

  PaddedPlanes input = paddedPlanes(inputBuffer.data(), latentChannels_, height, width);
  for (int c = 0; c < latentChannels_; ++c)
    for (int row = 0; row < height; ++row)
      std::memcpy(input.interior(c) + size_t(row) * input.stride,
                  &y[(size_t(c) * height + row) * width], sizeof(float) * width);
  input.clearBorder();

  std::vector<float> samples;
  int h = height, w = width;
  for (size_t layer = 0; layer < convs_.size(); ++layer) {
    const Conv& conv = convs_[layer];
    const int convStride = kernelRowWidth(w);
    const Conv3x3Job job{input.data, conv.in, h, w, input.stride, conv.weight.data(),
                         conv.bias.data(), convOut, convStride};
    forChannelGroups(conv.out, parallelism, [&](int begin, int end) {
      kernels.conv3x3(job, begin, end, arithmetic_);
    });
    // PixelShuffle(2): out[c, 2y + i, 2x + j] = conv[4c + 2i + j, y, x].
    const int channels = conv.out / 4;
    const int outHeight = 2 * h, outWidth = 2 * w;
    const size_t convPlane = size_t(h) * convStride;
    const bool last = layer + 1 == convs_.size();
    if (last) {
      samples.resize(size_t(channels) * outHeight * outWidth);
      for (int c = 0; c < channels; ++c)
        for (int y = 0; y < outHeight; ++y)
          for (int x = 0; x < outWidth; ++x) {
            const float value =
                convOut[(4 * c + 2 * (y & 1) + (x & 1)) * convPlane + size_t(y / 2) * convStride + x / 2];
            const float raw = value / inputScale_;
            // NaN (only from corrupt latents) becomes 0 instead of reaching a cast.
            samples[(size_t(c) * outHeight + y) * outWidth + x] =
                raw > 0.0f ? std::min(raw, outputMax_) : 0.0f;
          }
      break;
    }
    const int shuffledStride = kernelRowWidth(outWidth);
    const size_t shuffledPlane = size_t(outHeight) * shuffledStride;
    parallelism.forEach(size_t(channels), [&](size_t c) {
      for (int y = 0; y < outHeight; ++y) {
        float* row = shuffled + c * shuffledPlane + size_t(y) * shuffledStride;
        float* squareRow = squares + c * shuffledPlane + size_t(y) * shuffledStride;
        const float* even = convOut + (4 * c + 2 * (y & 1)) * convPlane + size_t(y / 2) * convStride;
        const float* odd = even + convPlane;
        for (int x = 0; x < w; ++x) {
          row[2 * x] = even[x];
          row[2 * x + 1] = odd[x];
        }
        // Zeros, not leftovers, in the columns the kernels compute but nobody reads.
        std::fill(row + outWidth, row + shuffledStride, 0.0f);
        for (int x = 0; x < shuffledStride; ++x) squareRow[x] = row[x] * row[x];
      }
    });
    // Inverse GDN into the next convolution's padded input.
    const InverseGdn& gdn = inverseGdns_[layer];
    input = paddedPlanes(inputBuffer.data(), channels, outHeight, outWidth);
    const InverseGdnJob gdnJob{shuffled, squares, channels, outHeight, outWidth, shuffledStride,
                               gdn.beta.data(), gdn.gamma.data(), input.interior(0),
                               input.plane(), input.stride};
    forChannelGroups(channels, parallelism, [&](int begin, int end) {
      kernels.inverseGdn(gdnJob, begin, end, arithmetic_);
    });
    input.clearBorder();
    h = outHeight;
    w = outWidth;
  }
  return samples;
}

}  // namespace nsat
