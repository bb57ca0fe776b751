// The MULTIRATE hyper-synthesis as an integer network (Balle et al. 2019, "Integer
// networks for data compression"): quantised hyper-latents z in, Gaussian scale-table
// indices out, with integer arithmetic only. Encoder and decoder therefore derive the
// same entropy-coding tables on any CPU and for any thread count.
//
// Normative definition: scripts/learned/integer_hyper_synthesis.py (format
// nsat-int-hyper-synthesis-v1); this must agree with it bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace nsat {

class IntegerHyperSynthesis {
 public:
  // Throws nsat::Error if the JSON is not a valid nsat-int-hyper-synthesis-v1 network.
  explicit IntegerHyperSynthesis(const nlohmann::json& description);

  int inputChannels() const { return inputChannels_; }
  int outputChannels() const { return outputChannels_; }
  int scaleLevels() const { return scaleLevels_; }

  // z: inputChannels() x zHeight x zWidth, channel-major. Returns outputChannels() x
  // height x width indices (the top-left crop of the 4x upsampled result); needs
  // height <= 4 * zHeight and width <= 4 * zWidth.
  std::vector<uint8_t> scaleIndices(const std::vector<int32_t>& z, int zHeight, int zWidth,
                                    int height, int width) const;

 private:
  struct Layer {
    int inChannels, outChannels, outMax, shuffle;
    std::vector<int16_t> weight16;  // int8 values, [out][in][3][3], widened for pmaddwd
    std::vector<int32_t> bias, multiplier, shift;
  };
  std::vector<int32_t> run(const Layer& layer, const std::vector<int32_t>& input, int height,
                           int width) const;

  int inputChannels_, outputChannels_, scaleLevels_, inputClip_;
  std::vector<Layer> layers_;
};

}  // namespace nsat
