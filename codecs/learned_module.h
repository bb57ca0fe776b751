// The learned codecs (MULTIRATE, FIXED_QUALITY, and RDIC's classifier) link LibTorch,
// which would make every GDAL process start 7x slower if the plugin linked it. They
// live in a separate module, nsat_learned.so, opened with dlopen the first time a
// file or a creation option names one of them. What the plugin must know of them
// before that (names, options) is declared here, once, and the module uses the same
// declarations.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "codecs/registry.h"

namespace nsat {

constexpr const char* kLearnedModuleFile = "nsat_learned.so";
// Bumped whenever CodecDescriptor or Codec change in a way the module must match.
constexpr int kLearnedModuleAbi = 9;  // 9: EncodeGuide::context, Codec::contextMargin

// The relevance of each pixel of an RGB tile under RDIC's land-cover classifier.
struct ClassifierExplanation {
  std::vector<float> relevance;  // height x width, summed over the colour channels
  int predictedClass = 0;
  std::string className;
  std::vector<float> logits;
  // Relevance put in at the output, and what biases and epsilon took on the way down:
  // sum(relevance) + absorbed == explained.
  double explained = 0, absorbed = 0;
};

// What the module provides: its codecs, and the classifier that RDIC (a built-in codec:
// its decoder is plain JPEG) needs only to encode.
struct LearnedModuleExports {
  std::vector<CodecDescriptor> codecs;
  // The classifier's id and card hash; throws nsat::Error if it is missing or damaged.
  std::function<ModelRef(const std::string& model)> classifierRef;
  // `rgb`: planar 3 x height x width samples 0..255.
  std::function<ClassifierExplanation(const std::string& model, const std::vector<float>& rgb,
                                      int height, int width, bool allClasses, double epsilon)>
      explain;
};

// The module's entry point: fills `exports` and returns 0, or returns non-zero if it
// was built for another ABI.
constexpr const char* kLearnedModuleEntry = "nsat_register_learned_codecs";
using LearnedModuleEntry = int (*)(int abi, LearnedModuleExports* exports);

// The codecs the module provides: names, descriptions and options (no module loaded).
const std::vector<CodecDeclaration>& learnedCodecDeclarations();
// The declaration of one of them; throws nsat::Error (internal) for another name.
const CodecDeclaration& learnedCodecDeclaration(const std::string& upperCaseName);

// Where the module is looked for: $NSAT_LEARNED_MODULE, else next to the library that
// holds this code (the GDAL plugin folder once installed).
std::string learnedModulePath();

// Loads the module once per process (thread-safe) and returns what it exports. Throws
// nsat::Error naming the module's path if it is missing or incompatible.
const LearnedModuleExports& learnedModule();
inline const std::vector<CodecDescriptor>& learnedCodecs() { return learnedModule().codecs; }

}  // namespace nsat
