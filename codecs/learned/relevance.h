// The RDIC analysis model: a land-cover classifier (scripts/learned/train_classifier.py)
// and its epsilon-LRP relevance (Bach et al. 2015), propagated layer by layer from the
// logits back to the pixels:
//
//   R_i = sum_j  z_ij / (z_j + eps * sign(z_j)) * R_j,   z_ij = a_i w_ij,  z_j = sum_i z_ij + b_j
//
// The network is conv (+bias) / ReLU layers, a global average and a bias-free linear
// head. Relevance that the biases and the epsilon stabiliser absorb is counted, so the
// bookkeeping can be checked: input relevance + absorbed = the explained logits.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>

#include "codecs/learned/model_store.h"

namespace nsat {

struct RelevanceResult {
  std::vector<float> logits;     // one per class
  int predictedClass = 0;
  double explained = 0;          // sum of the output relevance that was propagated
  double absorbed = 0;           // taken by biases and epsilon on the way down
  std::vector<float> relevance;  // per pixel, summed over the 3 colour channels (H x W)
};

class LandCoverClassifier {
 public:
  // Loads and verifies model `id` (see model_store.h). Throws nsat::Error.
  explicit LandCoverClassifier(const std::string& id);

  const ModelFolder& folder() const { return folder_; }
  const std::vector<std::string>& classes() const { return classes_; }

  // `rgb`: 3 x height x width samples (planar, 0..255). With allClasses, every logit is
  // explained at once (the relevance of all classes summed); otherwise the predicted one.
  RelevanceResult explain(const std::vector<float>& rgb, int height, int width, bool allClasses,
                          double epsilon) const;

 private:
  struct Conv {
    at::Tensor weight, bias;
    int stride = 1, padding = 0;
  };
  ModelFolder folder_;
  std::vector<std::string> classes_;
  std::vector<Conv> convs_;
  at::Tensor head_;  // classes x channels
  double inputScale_ = 1.0 / 255.0;
};

std::shared_ptr<const LandCoverClassifier> loadLandCoverClassifier(const std::string& id);

}  // namespace nsat
