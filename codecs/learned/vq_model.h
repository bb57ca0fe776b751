// One trained VQ model in memory (scripts/learned/vq_model.py): the TorchScript encoder,
// our deterministic synthesis, the codebooks and the context-conditioned rANS tables of
// the indices. Loaded once per process and shared by every codec instance and thread.
//
// Indices of one band group are coded in raster order of latent positions; at each
// position level by level, and within a level group by group. The table of an index is
// picked by its context: the classes (vq_tables.json "classes") of already-coded indices
// named by the card's references, a missing one (tile edge, first group or level) being
// class C; context = sum_j class_j * (C + 1)^j. Only integers and table lookups: the
// decoder gives the same indices on every machine, and the codewords are summed in level
// order before the fixed-order synthesis.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>

#include "codecs/entropy/cdf_tables.h"
#include "codecs/learned/model_store.h"
#include "codecs/learned/synthesis_network.h"

namespace nsat {

enum class ContextReference { Left, Up, PreviousGroup, PreviousLevel };

struct VqModel {
  ModelFolder folder;
  int bands = 0;           // image bands coded together
  bool codesBytes = true;  // Byte, else 16-bit integers
  double inputScale = 1;   // raw sample -> model units (inside analysis.pt)
  int levels = 0, groups = 0, entries = 0, groupChannels = 0;
  int downsampling = 4;

  torch::jit::Module analysis;  // encoder only: raw samples -> y before quantisation
  std::unique_ptr<SynthesisNetwork> synthesis;
  std::vector<float> codebooks;  // [level][group][entry][channel]
  std::vector<uint8_t> classes;  // [level][group][entry]
  std::vector<ContextReference> references;
  int classCount = 0;
  int contextCount = 0;
  // [level][group][context], straight from the stored integer frequencies: no maths
  // library is involved, so no fingerprint is needed (unlike MULTIRATE's Gaussians).
  std::vector<QuantizedCdf> tables;

  int latentChannels() const { return groups * groupChannels; }
  const float* codeword(int level, int group, int entry) const {
    return codebooks.data() + ((size_t(level) * groups + group) * entries + entry) * groupChannels;
  }
  int entryClass(int level, int group, int entry) const {
    return classes[(size_t(level) * groups + group) * entries + entry];
  }
  const QuantizedCdf& table(int level, int group, int context) const {
    return tables[(size_t(level) * groups + group) * contextCount + context];
  }
};

// Loads (once) and returns model `id`; with a non-empty `expectedSha256`, requires the
// model on disk to be that one. Throws nsat::Error naming the model otherwise.
std::shared_ptr<const VqModel> loadVqModel(const std::string& id,
                                           const std::string& expectedSha256 = "");

// The codebook indices of one band group: [level][group][row][column].
struct VqIndices {
  int levels = 0, groups = 0, height = 0, width = 0;
  std::vector<uint16_t> values;

  VqIndices(int levels_, int groups_, int height_, int width_)
      : levels(levels_), groups(groups_), height(height_), width(width_),
        values(size_t(levels_) * groups_ * height_ * width_) {}
  uint16_t& at(int level, int group, int y, int x) {
    return values[((size_t(level) * groups + group) * height + y) * width + x];
  }
  uint16_t at(int level, int group, int y, int x) const {
    return values[((size_t(level) * groups + group) * height + y) * width + x];
  }
};

// The rANS stream of the indices (the first indices.levels levels).
std::vector<uint8_t> encodeVqIndices(const VqModel& model, const VqIndices& indices);
// Throws nsat::Error if the stream is corrupt, truncated or has trailing bytes.
VqIndices decodeVqIndices(const VqModel& model, const uint8_t* data, size_t size, int levels,
                          int height, int width);
// The quantised latent (latentChannels() x height x width): codewords summed in level order.
std::vector<float> vqLatent(const VqModel& model, const VqIndices& indices);
// The nearest codewords (residual, level by level) of a latent y (latentChannels() x
// height x width), for the encoder.
VqIndices quantiseVqLatent(const VqModel& model, const float* y, int levels, int height,
                           int width);

}  // namespace nsat
