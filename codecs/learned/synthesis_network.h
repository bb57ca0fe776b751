// The synthesis transform g_s of MULTIRATE (and of VQ), run by our own float32 kernels in a fixed
// summation order.
//
// LibTorch's convolutions pick their algorithm by CPU, thread count and backend: with
// oneDNN disabled, 17 of 196,608 samples of one 256x256 tile rounded differently
// (measured here). A decoder must give the same pixels everywhere, so the weights come
// from the TorchScript file (synthesis.pt) but the arithmetic is ours
// (synthesis_kernels.h): every output is accumulated in the order (input channel, ky,
// kx) with the model's arithmetic, whatever the instruction set and thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codecs/learned/synthesis_kernels.h"
#include "codecs/thread_pool.h"

namespace torch::jit {
struct Module;
}

namespace nsat {

// The demodulation net's last activation (the card's "gain_activation"): ReLU for the
// first models; "positive" (x + floor for x >= 0, floor / (1 - x / floor) below) for
// models trained since, which cannot cut a channel off.
// With `inverse` (tied gains: the card's "demodulation": "inverse_of_modulation") the net
// is a copy of the modulation net and the gain on y_hat is 1 / its output.
struct GainActivation {
  bool positive = false;
  float floor = 0;
  bool inverse = false;
};

class SynthesisNetwork {
 public:
  // Reads the weights of an ExportSynthesis TorchScript module (see
  // scripts/learned/multirate_model.py). Throws nsat::Error if its layout differs.
  SynthesisNetwork(const torch::jit::Module& module, SynthesisArithmetic arithmetic,
                   GainActivation gainActivation = {});

  int latentChannels() const { return latentChannels_; }
  int outputBands() const { return outputBands_; }
  // Output pixels per latent position along each axis: 2^stages (MULTIRATE 16, VQ 4).
  int upsampling() const { return 1 << convs_.size(); }
  double outputMax() const { return outputMax_; }

  // y: latentChannels() x height x width quantised latents. Returns outputBands() x
  // upsampling() height x upsampling() width samples in raw units, clamped to [0, outputMax()].
  std::vector<float> run(const std::vector<int32_t>& y, int height, int width, float lambda,
                         const Parallelism& parallelism) const;
  // Same from latents already multiplied by their demodulation gain (a lambda per
  // position, or unquantised latents for an encoder's estimate).
  std::vector<float> runScaled(const std::vector<float>& scaledLatent, int height, int width,
                               const Parallelism& parallelism) const;
  // Same on the kernels of one instruction set (for tests: every set gives the same bits).
  std::vector<float> runScaled(const std::vector<float>& scaledLatent, int height, int width,
                               const Parallelism& parallelism, KernelIsa isa) const;
  SynthesisArithmetic arithmetic() const { return arithmetic_; }
  // Multiply-accumulates per output sample (for benchmarks).
  double macsPerPixel() const;

  // lambda -> the per-channel gain on y_hat (the demodulation net, in float32). Throws
  // nsat::Error for a synthesis without one (VQ).
  std::vector<float> demodulationGain(float lambda) const;

 private:
  struct Conv {
    int in, out;
    std::vector<float> weight;  // [out][in][3][3]
    std::vector<float> bias;
  };
  struct InverseGdn {
    int channels;
    std::vector<float> beta, gamma;  // gamma [i][j]
  };
  struct Dense {
    int in, out;
    std::vector<float> weight;  // [out][in]
    std::vector<float> bias;
  };

  std::vector<Conv> convs_;           // each followed by PixelShuffle(2)
  std::vector<InverseGdn> inverseGdns_;  // after every shuffle but the last
  Dense gain1_, gain2_;
  SynthesisArithmetic arithmetic_;
  GainActivation gainActivation_;
  int latentChannels_ = 0, outputBands_ = 0;
  float inputScale_ = 1, lambdaMax_ = 1, outputMax_ = 255;
};

}  // namespace nsat
