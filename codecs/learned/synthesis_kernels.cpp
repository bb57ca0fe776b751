#include "codecs/learned/synthesis_kernels.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "codecs/codec.h"

namespace nsat {

extern const SynthesisKernels kScalarSynthesisKernels;
extern const SynthesisKernels kAvx2SynthesisKernels;
extern const SynthesisKernels kAvx512SynthesisKernels;

const char* kernelIsaName(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Scalar: return "scalar";
    case KernelIsa::Avx2: return "avx2";
    case KernelIsa::Avx512: return "avx512";
  }
  return "?";
}

bool cpuSupports(KernelIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case KernelIsa::Scalar: return true;
    case KernelIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case KernelIsa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  }
  return false;
}

const SynthesisKernels& synthesisKernels(KernelIsa isa) {
  if (!cpuSupports(isa)) {
    throw Error(std::string("this CPU cannot run the ") + kernelIsaName(isa) + " synthesis kernels");
  }
  switch (isa) {
    case KernelIsa::Avx512: return kAvx512SynthesisKernels;
    case KernelIsa::Avx2: return kAvx2SynthesisKernels;
    case KernelIsa::Scalar: break;
  }
  return kScalarSynthesisKernels;
}

KernelIsa defaultKernelIsa() {
  if (const char* forced = std::getenv("NSAT_SYNTHESIS_KERNEL")) {
    for (KernelIsa isa : {KernelIsa::Scalar, KernelIsa::Avx2, KernelIsa::Avx512}) {
      if (std::strcmp(forced, kernelIsaName(isa)) == 0 && cpuSupports(isa)) return isa;
    }
  }
  for (KernelIsa isa : {KernelIsa::Avx512, KernelIsa::Avx2}) {
    if (cpuSupports(isa)) return isa;
  }
  return KernelIsa::Scalar;
}

}  // namespace nsat
