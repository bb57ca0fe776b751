// One trained MULTIRATE model in memory: the TorchScript encoder transforms, the
// integer hyper-synthesis, our deterministic synthesis and the entropy tables. Loaded
// once per process and shared by every codec instance and thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>

#include "codecs/entropy/cdf_tables.h"
#include "codecs/learned/integer_hyper_synthesis.h"
#include "codecs/learned/model_store.h"
#include "codecs/learned/synthesis_network.h"

namespace nsat {

struct MultirateModel {
  ModelFolder folder;
  int bands = 0;  // image bands the model codes at once (3: RGB, 1: one band)
  double lambdaMin = 0, lambdaMax = 0;
  double sampleMax = 0;  // 255 or 65535: the sample range the model was trained on
  // Pixels per latent position along each axis: 16 (four analysis stages) or 8 (three).
  int downsampling = 16;

  // Latent positions covering `pixels` samples (the tile is padded to whole cells).
  int latentsFor(int pixels) const { return (pixels + downsampling - 1) / downsampling; }

  bool codesBytes() const { return sampleMax <= 255; }

  // Encoder only (float results never reach the decoder's entropy tables).
  torch::jit::Module analysisTransform;   // g_a, input scaling included
  torch::jit::Module modulation;          // lambda / lambda_max -> per-channel gain
  torch::jit::Module hyperAnalysis;
  double inputScale = 1;

  std::unique_ptr<IntegerHyperSynthesis> hyperSynthesis;
  std::unique_ptr<SynthesisNetwork> synthesis;
  std::vector<QuantizedCdf> hyperLatentTables;  // one per z channel
  // Fingerprint of the z tables and the Gaussian scale tables: a decoder whose maths
  // library builds other tables refuses the file rather than decode garbage.
  std::string tablesFingerprint;
};

// Shared by the loaders of the learned models. Each throws nsat::Error naming the model.
torch::jit::Module loadTorchScript(const ModelFolder& folder, const std::string& name);
nlohmann::json readJson(const ModelFolder& folder, const std::string& name);
at::Tensor runModule(const torch::jit::Module& module, const at::Tensor& input);
// Plain TorchScript execution (no re-optimisation after the first runs), once per process.
void useUnoptimisedTorchScript();
// The card's architecture.synthesis_arithmetic.
SynthesisArithmetic synthesisArithmetic(const ModelFolder& folder);

// Loads (once) and returns model `id`; with a non-empty `expectedSha256`, requires the
// model on disk to be that one. Throws nsat::Error naming the model otherwise.
std::shared_ptr<const MultirateModel> loadMultirateModel(const std::string& id,
                                                         const std::string& expectedSha256 = "");

}  // namespace nsat
