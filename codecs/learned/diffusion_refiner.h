// DIFFUSION's refiner (scripts/learned/diffusion_model.py): a rectified flow from the base
// codec's decode plus seeded noise to a sharper image, conditioned on the scene's metadata,
// run in a few Euler steps on our own fixed-order kernels, so every decode of a file gives
// the same pixels on every machine and thread count.
//
// The decoder's arithmetic is +, x and / in float32 (this file is built without
// contraction), the kernels' fused multiply-adds, and refiner_condition.h's sin(pi x) for the
// sinusoidal embeddings: no libm call whose last bit could depend on the CPU. The
// condition's arguments (the log of lambda, of the GSD) are computed once by the encoder and
// stored in the file.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codecs/learned/model_store.h"
#include "codecs/learned/refiner_condition.h"
#include "codecs/learned/synthesis_kernels.h"
#include "codecs/thread_pool.h"

namespace nsat {

class DiffusionRefiner {
 public:
  // Reads refiner.pt and the card of a DIFFUSION model; throws nsat::Error if they do not
  // fit together.
  explicit DiffusionRefiner(const ModelFolder& folder);

  const ModelFolder& folder() const { return folder_; }
  // The frozen base codec ("MULTIRATE" or "VQ") and model whose decodes it refines.
  const std::string& baseCodec() const { return baseCodec_; }
  const std::string& baseModel() const { return baseModel_; }
  const std::string& baseModelSha256() const { return baseModelSha256_; }
  int defaultSteps() const { return defaultSteps_; }
  float defaultSigma() const { return defaultSigma_; }
  float sigmaMax() const { return sigmaMax_; }
  // The argument of the base rate's embedding (the encoder stores it), from the base
  // codec's parameters: MULTIRATE's lambda on a log scale over the model's range, VQ's
  // number of levels. Throws nsat::Error if they hold neither.
  float rateArgument(const nlohmann::json& baseParameters) const;
  double macsPerPixel(int steps) const;

  // base: 3 x height x width samples in [0, 1] (height, width even). Returns the refined
  // image, same layout, clamped to [0, 1].
  std::vector<float> refine(const std::vector<float>& base, int height, int width,
                            const SceneArguments& scene, float rateArgument, float sigma, int steps,
                            const std::vector<float>& noise, const Parallelism& parallelism) const;

 private:
  struct Dense {
    int in = 0, out = 0;
    std::vector<float> weight, bias;  // [out][in]
    std::vector<float> apply(const std::vector<float>& x, bool relu) const;
  };
  struct Conv {
    int in = 0, out = 0;
    std::vector<float> weight, bias;  // [out][in][3][3]
  };

  std::vector<float> conditionVector(const SceneArguments& scene, float rateArgument,
                                     float sigmaArgument, float timeArgument) const;

  ModelFolder folder_;
  std::string baseCodec_, baseModel_, baseModelSha256_;
  int bands_ = 3, channels_ = 0, blocks_ = 0, hidden_ = 0, frequencies_ = 0;
  int defaultSteps_ = 0;
  float defaultSigma_ = 0, sigmaMax_ = 0;
  // The rate embedding: lambda (log over [lambdaMin_, lambdaMax_]) or levels (1..levels_).
  bool rateIsLevels_ = false;
  double lambdaMin_ = 0, lambdaMax_ = 0;
  int levels_ = 0;
  std::vector<float> unknown_;  // [scalar][2 * frequencies]
  Dense embed1_, embed2_;
  std::vector<Dense> film_;
  Conv convIn_, convOut_;
  std::vector<Conv> convA_, convB_;
};

// Loaded once per process and shared (thread-safe); `sha256` empty: any version.
std::shared_ptr<const DiffusionRefiner> loadDiffusionRefiner(const std::string& id,
                                                             const std::string& sha256 = "");

}  // namespace nsat
