#include "codecs/learned/synthesis_network.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "codecs/codec.h"
#include "codecs/learned/pixel_shuffle.h"
#include "codecs/parallel.h"

namespace nsat {

namespace {

using Tensors = std::map<std::string, at::Tensor>;

std::vector<float> floats(const Tensors& tensors, const std::string& name,
                          const std::vector<int64_t>& shape) {
  const auto found = tensors.find(name);
  if (found == tensors.end()) throw Error("synthesis.pt has no " + name);
  const at::Tensor tensor = found->second.to(at::kFloat).contiguous();
  if (tensor.sizes().vec() != shape) throw Error("synthesis.pt: " + name + " has another shape");
  return std::vector<float>(tensor.data_ptr<float>(), tensor.data_ptr<float>() + tensor.numel());
}

struct ConvGeometry {
  int inChannels, height, width, paddedWidth;
  size_t paddedPlane, plane;
};

// `Outputs` output channels x `Block` neighbouring pixels of one row, accumulated in
// registers. Every output still sums bias, then input channel by input channel, ky, kx,
// in that order: blocking only shares the input loads between outputs.
template <int Outputs, int Block>
inline void convolveBlock(float* const* out, const float* const* weight, const float* bias,
                          const float* __restrict padded, const ConvGeometry& g, int y,
                          int x0) {
  float acc[Outputs][Block];
  for (int o = 0; o < Outputs; ++o)
    for (int j = 0; j < Block; ++j) acc[o][j] = bias[o];
  for (int c = 0; c < g.inChannels; ++c) {
    const float* in = padded + c * g.paddedPlane + size_t(y) * g.paddedWidth + x0;
    for (int ky = 0; ky < 3; ++ky) {
      for (int kx = 0; kx < 3; ++kx) {
        const float* __restrict row = in + ky * g.paddedWidth + kx;
        for (int o = 0; o < Outputs; ++o) {
          const float k = weight[o][c * 9 + ky * 3 + kx];
          for (int j = 0; j < Block; ++j) acc[o][j] = acc[o][j] + k * row[j];
        }
      }
    }
  }
  for (int o = 0; o < Outputs; ++o)
    for (int j = 0; j < Block; ++j) out[o][size_t(y) * g.width + x0 + j] = acc[o][j];
}

// `Outputs` output channels of a 3x3 convolution over zero-padded planar input. Cloned
// for AVX2: wider vectors, the same sums.
template <int Outputs>
__attribute__((target_clones("avx2", "default"))) void convolveChannels(
    float* const* out, const float* const* weight, const float* bias,
    const float* __restrict padded, const ConvGeometry& g) {
  constexpr int kBlock = 16;
  for (int y = 0; y < g.height; ++y) {
    int x = 0;
    for (; x + kBlock <= g.width; x += kBlock) {
      convolveBlock<Outputs, kBlock>(out, weight, bias, padded, g, y, x);
    }
    for (; x < g.width; ++x) convolveBlock<Outputs, 1>(out, weight, bias, padded, g, y, x);
  }
}

// 3x3 convolution, zero padding 1, planar [channels][height][width]. `padded` is
// scratch of at least inChannels x (height + 2) x (width + 2) floats.
void conv3x3(const float* input, int inChannels, int height, int width,
             const std::vector<float>& weight, const std::vector<float>& bias, int outChannels,
             float* output, float* padded, int threads) {
  const int paddedWidth = width + 2;
  const size_t paddedPlane = size_t(height + 2) * paddedWidth;
  const size_t plane = size_t(height) * width;
  std::fill(padded, padded + size_t(inChannels) * paddedPlane, 0.0f);
  for (int c = 0; c < inChannels; ++c)
    for (int y = 0; y < height; ++y)
      std::memcpy(&padded[c * paddedPlane + size_t(y + 1) * paddedWidth + 1],
                  &input[c * plane + size_t(y) * width], sizeof(float) * width);
  const ConvGeometry geometry{inChannels, height, width, paddedWidth, paddedPlane, plane};
  constexpr int kOutputs = 4;  // 4 x 16 accumulators fit the 16 AVX registers
  const size_t groups = size_t(outChannels + kOutputs - 1) / kOutputs;
  parallelFor(groups, threads, [&](size_t group) {
    const size_t first = group * kOutputs;
    const size_t count = std::min<size_t>(kOutputs, size_t(outChannels) - first);
    float* out[kOutputs];
    const float* weights[kOutputs];
    for (size_t o = 0; o < count; ++o) {
      out[o] = &output[(first + o) * plane];
      weights[o] = &weight[(first + o) * inChannels * 9];
    }
    if (count == kOutputs) {
      convolveChannels<kOutputs>(out, weights, &bias[first], padded, geometry);
    } else {
      for (size_t o = 0; o < count; ++o) {
        convolveChannels<1>(&out[o], &weights[o], &bias[first + o], padded, geometry);
      }
    }
  });
}

}  // namespace

SynthesisNetwork::SynthesisNetwork(const torch::jit::Module& module) {
  Tensors tensors;
  for (const auto& item : module.named_parameters(true)) tensors[item.name] = item.value;
  for (const auto& item : module.named_buffers(true)) tensors[item.name] = item.value;
  try {
    inputScale_ = float(module.attr("input_scale").toDouble());
    lambdaMax_ = float(module.attr("lambda_max").toDouble());
    outputMax_ = float(module.attr("output_max").toDouble());
  } catch (const c10::Error&) {
    throw Error("synthesis.pt lacks input_scale, lambda_max or output_max");
  }
  const auto& first = tensors["g_s.0.weight"];
  const auto& last = tensors["g_s.9.weight"];
  if (!first.defined() || !last.defined() || first.dim() != 4 || last.dim() != 4) {
    throw Error("synthesis.pt is not a MULTIRATE synthesis (g_s.0 / g_s.9 missing)");
  }
  latentChannels_ = int(first.size(1));
  outputBands_ = int(last.size(0)) / 4;
  int channels = latentChannels_;
  for (int index : {0, 3, 6, 9}) {
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
    if (index != 9) {
      const std::string gdn = "g_s." + std::to_string(index + 2);
      InverseGdn layer{channels, floats(tensors, gdn + ".beta", {channels}),
                       floats(tensors, gdn + ".gamma", {channels, channels})};
      inverseGdns_.push_back(std::move(layer));
    }
  }
  const auto& hidden = tensors["demodulation.0.weight"];
  if (!hidden.defined() || hidden.dim() != 2) throw Error("synthesis.pt has no demodulation net");
  const int hiddenSize = int(hidden.size(0));
  gain1_ = {1, hiddenSize, floats(tensors, "demodulation.0.weight", {hiddenSize, 1}),
            floats(tensors, "demodulation.0.bias", {hiddenSize})};
  gain2_ = {hiddenSize, latentChannels_,
            floats(tensors, "demodulation.2.weight", {latentChannels_, hiddenSize}),
            floats(tensors, "demodulation.2.bias", {latentChannels_})};
}

// lambda / lambda_max -> Dense, ReLU -> Dense, ReLU: the per-channel inverse gain.
std::vector<float> SynthesisNetwork::demodulationGain(float lambda) const {
  const float normalised = lambda / lambdaMax_;
  std::vector<float> hidden(size_t(gain1_.out));
  for (int i = 0; i < gain1_.out; ++i) {
    hidden[i] = std::max(0.0f, gain1_.weight[i] * normalised + gain1_.bias[i]);
  }
  std::vector<float> gain(size_t(gain2_.out));
  for (int o = 0; o < gain2_.out; ++o) {
    float sum = gain2_.bias[o];
    for (int i = 0; i < gain2_.in; ++i) sum = sum + gain2_.weight[size_t(o) * gain2_.in + i] * hidden[i];
    gain[o] = std::max(0.0f, sum);
  }
  return gain;
}

std::vector<float> SynthesisNetwork::run(const std::vector<int32_t>& y, int height, int width,
                                         float lambda, int threads) const {
  if (y.size() != size_t(latentChannels_) * height * width) {
    throw Error("synthesis: latent has the wrong size");
  }
  const std::vector<float> gain = demodulationGain(lambda);
  const size_t latentPlane = size_t(height) * width;
  std::vector<float> scaled(y.size());
  for (int c = 0; c < latentChannels_; ++c)
    for (size_t p = 0; p < latentPlane; ++p)
      scaled[c * latentPlane + p] = float(y[c * latentPlane + p]) * gain[c];
  return runScaled(scaled, height, width, threads);
}

std::vector<float> SynthesisNetwork::runScaled(const std::vector<float>& y, int height,
                                               int width, int threads) const {
  if (y.size() != size_t(latentChannels_) * height * width) {
    throw Error("synthesis: latent has the wrong size");
  }
  // Buffers sized for the largest layer and kept per thread (about 13 MB for 256-pixel
  // tiles): fresh multi-megabyte allocations for every tile cost more in page faults
  // than the convolutions themselves.
  size_t largest = y.size(), largestPadded = 0;
  for (int layer = 0, h = height, w = width; layer < int(convs_.size()); ++layer, h *= 2, w *= 2) {
    largest = std::max(largest, size_t(convs_[layer].out) * h * w);
    largestPadded = std::max(largestPadded, size_t(convs_[layer].in) * (h + 2) * (w + 2));
  }
  thread_local std::vector<float> activationBuffer, scratchBuffer, squaresBuffer, paddedBuffer;
  for (auto* buffer : {&activationBuffer, &scratchBuffer, &squaresBuffer}) {
    if (buffer->size() < largest) buffer->resize(largest);
  }
  if (paddedBuffer.size() < largestPadded) paddedBuffer.resize(largestPadded);
  // Plain pointers: the worker threads below must use this thread's buffers.
  float* activation = activationBuffer.data();
  float* scratch = scratchBuffer.data();
  float* squares = squaresBuffer.data();
  float* padded = paddedBuffer.data();

  std::copy(y.begin(), y.end(), activation);

  int h = height, w = width;
  for (size_t layer = 0; layer < convs_.size(); ++layer) {
    const Conv& conv = convs_[layer];
    conv3x3(activation, conv.in, h, w, conv.weight, conv.bias, conv.out, scratch, padded,
            threads);
    pixelShuffle2(scratch, conv.out, h, w, activation);
    h *= 2;
    w *= 2;
    if (layer >= inverseGdns_.size()) break;
    // Inverse GDN: x_i * sqrt(beta_i + sum_j gamma_ij x_j^2).
    const InverseGdn& gdn = inverseGdns_[layer];
    const size_t plane = size_t(h) * w;
    const size_t count = plane * gdn.channels;
    for (size_t i = 0; i < count; ++i) squares[i] = activation[i] * activation[i];
    parallelFor(size_t(gdn.channels), threads, [&](size_t i) {
      float* __restrict norm = &scratch[i * plane];
      std::fill(norm, norm + plane, gdn.beta[i]);
      for (int j = 0; j < gdn.channels; ++j) {
        const float g = gdn.gamma[i * gdn.channels + j];
        const float* __restrict square = &squares[size_t(j) * plane];
        for (size_t p = 0; p < plane; ++p) norm[p] = norm[p] + g * square[p];
      }
      const float* __restrict x = &activation[i * plane];
      for (size_t p = 0; p < plane; ++p) norm[p] = x[p] * std::sqrt(norm[p]);
    });
    std::swap(activation, scratch);
  }
  std::vector<float> samples(size_t(outputBands_) * h * w);
  for (size_t i = 0; i < samples.size(); ++i) {
    const float raw = activation[i] / inputScale_;
    // NaN (only from corrupt latents) becomes 0 instead of reaching a cast.
    samples[i] = raw > 0.0f ? std::min(raw, outputMax_) : 0.0f;
  }
  return samples;
}

}  // namespace nsat
