// Entry point of nsat_learned.so, the module the plugin dlopens on first use of a
// learned codec (codecs/learned_module.h). Everything that needs LibTorch is here.
#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <cstdlib>

#include "codecs/learned/diffusion_codec.h"
#include "codecs/learned/fixed_quality_codec.h"
#include "codecs/learned/multirate_codec.h"
#include "codecs/learned/relevance.h"
#include "codecs/learned/vq_codec.h"
#include "codecs/learned_module.h"

namespace {

nsat::ClassifierExplanation explain(const std::string& model, const std::vector<float>& rgb,
                                    int height, int width, bool allClasses, double epsilon) {
  const auto classifier = nsat::loadLandCoverClassifier(model);
  const nsat::RelevanceResult result =
      classifier->explain(rgb, height, width, allClasses, epsilon);
  return {result.relevance, result.predictedClass,
          classifier->classes().at(size_t(result.predictedClass)), result.logits,
          result.explained, result.absorbed};
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int nsat_register_learned_codecs(
    int abi, nsat::LearnedModuleExports* exports) {
  if (abi != nsat::kLearnedModuleAbi || !exports) return 1;
  // LibTorch's thread count is the host application's: the driver already codes tiles
  // in parallel, one thread each. NSAT_TORCH_THREADS sets it anyway (a global setting).
  if (const char* text = std::getenv("NSAT_TORCH_THREADS")) {
    const int threads = std::atoi(text);
    if (threads > 0) at::set_num_threads(threads);
  }
  // For determinism checks: the encoder's transforms on LibTorch's generic kernels.
  if (std::getenv("NSAT_TORCH_DISABLE_MKLDNN")) at::globalContext().setUserEnabledMkldnn(false);
  exports->codecs.push_back(nsat::multirateCodecDescriptor());
  exports->codecs.push_back(nsat::fixedQualityCodecDescriptor());
  exports->codecs.push_back(nsat::vqCodecDescriptor());
  exports->codecs.push_back(nsat::diffusionCodecDescriptor());
  exports->classifierRef = [](const std::string& model) {
    return nsat::loadLandCoverClassifier(model)->folder().ref();
  };
  exports->explain = explain;
  return 0;
}
