// Entry point of nsat_learned.so, the module the plugin dlopens on first use of a
// learned codec (codecs/learned_module.h). Everything that needs LibTorch is here.
#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <thread>

#include "codecs/learned/multirate_codec.h"
#include "codecs/learned_module.h"

extern "C" __attribute__((visibility("default"))) int nsat_register_learned_codecs(
    int abi, std::vector<nsat::CodecDescriptor>* codecs) {
  if (abi != nsat::kLearnedModuleAbi || !codecs) return 1;
  // OpenMP gives LibTorch one thread here unless told otherwise.
  int threads = int(std::thread::hardware_concurrency());
  if (const char* text = std::getenv("NSAT_TORCH_THREADS")) threads = std::atoi(text);
  if (threads > 0) at::set_num_threads(threads);
  // For determinism checks: the encoder's transforms on LibTorch's generic kernels.
  if (std::getenv("NSAT_TORCH_DISABLE_MKLDNN")) at::globalContext().setUserEnabledMkldnn(false);
  codecs->push_back(nsat::multirateCodecDescriptor());
  return 0;
}
