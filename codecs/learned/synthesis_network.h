// The MULTIRATE synthesis transform g_s, run by our own float32 kernels in a fixed
// summation order.
//
// LibTorch's convolutions pick their algorithm by CPU, thread count and backend: with
// oneDNN disabled, 17 of 196,608 samples of one 256x256 tile rounded differently
// (measured here). A decoder must give the same pixels everywhere, so the weights come
// from the TorchScript file (synthesis.pt) but the arithmetic is ours: every output is
// accumulated in one thread in the order (input channel, ky, kx), with IEEE float32
// multiplies and adds only (this file is compiled with -ffp-contract=off, so no FMA).
// Vectorising across neighbouring outputs does not change any output's sum.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace nsat {

class SynthesisNetwork {
 public:
  // Reads the weights of an ExportSynthesis TorchScript module (see
  // scripts/learned/multirate_model.py). Throws nsat::Error if its layout differs.
  explicit SynthesisNetwork(const torch::jit::Module& module);

  int latentChannels() const { return latentChannels_; }
  int outputBands() const { return outputBands_; }
  double outputMax() const { return outputMax_; }

  // y: latentChannels() x height x width quantised latents. Returns outputBands() x
  // 16 height x 16 width samples in raw units, clamped to [0, outputMax()].
  std::vector<float> run(const std::vector<int32_t>& y, int height, int width, float lambda,
                         int threads) const;
  // Same from latents already multiplied by their demodulation gain (a lambda per
  // position, or unquantised latents for an encoder's estimate).
  std::vector<float> runScaled(const std::vector<float>& scaledLatent, int height, int width,
                               int threads) const;

  // lambda -> the per-channel gain on y_hat (the demodulation net, in float32).
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

  std::vector<Conv> convs_;           // 4: each followed by PixelShuffle(2)
  std::vector<InverseGdn> inverseGdns_;  // 3: after the first three shuffles
  Dense gain1_, gain2_;
  int latentChannels_ = 0, outputBands_ = 0;
  float inputScale_ = 1, lambdaMax_ = 1, outputMax_ = 255;
};

}  // namespace nsat
