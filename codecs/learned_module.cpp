#include "codecs/learned_module.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace nsat {

namespace {

struct LoadedModule {
  LearnedModuleExports exports;
  std::string error;  // set if loading failed; reported on every later use too
};

LoadedModule loadModule() {
  LoadedModule loaded;
  const std::string path = learnedModulePath();
  // RTLD_LOCAL: LibTorch's symbols stay out of GDAL's global namespace. RTLD_LAZY: of
  // LibTorch's many thousand functions only those called get resolved (measured: the
  // load takes a third less time than with RTLD_NOW).
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (!handle) {
    const char* reason = dlerror();
    loaded.error = "the learned-codec module " + path + " could not be loaded (" +
                   (reason ? reason : "unknown reason") +
                   "); build and install NSAT with its learned codecs, or set "
                   "NSAT_LEARNED_MODULE to the module's path";
    return loaded;
  }
  // The module stays loaded for the life of the process: its codecs are shared.
  auto entry = reinterpret_cast<LearnedModuleEntry>(dlsym(handle, kLearnedModuleEntry));
  if (!entry) {
    loaded.error = "the learned-codec module " + path + " has no " + kLearnedModuleEntry;
  } else if (entry(kLearnedModuleAbi, &loaded.exports) != 0) {
    loaded.exports = LearnedModuleExports();
    loaded.error = "the learned-codec module " + path +
                   " was built for another version of the NSAT plugin";
  }
  return loaded;
}

}  // namespace

bool isLearnedCodecName(const std::string& upperCaseName) {
  for (const char* name : {"MULTIRATE", "FIXED_QUALITY", "VQ", "DIFFUSION"}) {
    if (upperCaseName == name) return true;
  }
  return false;
}

bool learnedCodecMayStoreAuxiliary(const std::string& upperCaseName) {
  return upperCaseName == "FIXED_QUALITY";  // its per-block PSNR
}

const std::vector<std::string>& learnedCodecOptionNames() {
  static const std::vector<std::string> names = {
      "LAMBDA", "TARGET_BPP", "MODEL", "TARGET_PSNR", "TARGET_MSE", "QUALITY_BLOCK", "REFINE"};
  return names;
}

std::string learnedModulePath() {
  if (const char* overridden = std::getenv("NSAT_LEARNED_MODULE")) return overridden;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&learnedModulePath), &info) && info.dli_fname) {
    const std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) return self.substr(0, slash + 1) + kLearnedModuleFile;
  }
  return kLearnedModuleFile;
}

const LearnedModuleExports& learnedModule() {
  static std::once_flag once;
  static LoadedModule module;
  std::call_once(once, [] { module = loadModule(); });
  if (!module.error.empty()) throw Error(module.error);
  return module.exports;
}

}  // namespace nsat
