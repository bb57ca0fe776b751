// The learned codecs (MULTIRATE, FIXED_QUALITY, RDIC, VQ, DIFFUSION) link LibTorch,
// which would make every GDAL process start 7x slower if the plugin linked it. They
// live in a separate module, nsat_learned.so, opened with dlopen the first time a
// file or a creation option names one of them.
#pragma once

#include <string>
#include <vector>

#include "codecs/registry.h"

namespace nsat {

constexpr const char* kLearnedModuleFile = "nsat_learned.so";
// Bumped whenever CodecDescriptor or Codec change in a way the module must match.
constexpr int kLearnedModuleAbi = 2;
// The module's entry point: appends its codecs and returns 0, or returns non-zero if it
// was built for another ABI.
constexpr const char* kLearnedModuleEntry = "nsat_register_learned_codecs";
using LearnedModuleEntry = int (*)(int abi, std::vector<CodecDescriptor>* codecs);

// Codec names the module provides, known without loading it.
bool isLearnedCodecName(const std::string& upperCaseName);
// Creation options only the learned codecs read, known without loading the module.
const std::vector<std::string>& learnedCodecOptionNames();

// Where the module is looked for: $NSAT_LEARNED_MODULE, else next to the library that
// holds this code (the GDAL plugin folder once installed).
std::string learnedModulePath();

// Loads the module once per process (thread-safe) and returns its codecs. Throws
// nsat::Error naming the module's path if it is missing or incompatible.
const std::vector<CodecDescriptor>& learnedCodecs();

}  // namespace nsat
