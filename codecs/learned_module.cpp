#include "codecs/learned_module.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "metadata/scene_condition.h"

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

// MODEL is read by three codecs, each with its own default and meaning.
const std::vector<CodecDeclaration>& learnedCodecDeclarations() {
  static const std::vector<CodecDeclaration> declarations = [] {
    CodecDeclaration multirate;
    multirate.name = "MULTIRATE";
    multirate.description =
        "learned multirate codec (scale hyperprior, lambda-modulated latent; one model, every "
        "rate)";
    multirate.learned = true;
    multirate.defaultBlockSize = 512;
    multirate.options = {
        integerOptionDeclaration(
            "QUALITY", 1, 100, 75,
            "log-linear over the model's lambda range, 1 smallest, 100 best"),
        numberOptionDeclaration(
            "LAMBDA", "the rate-distortion trade-off itself, inside the model's lambda range "
                      "(instead of QUALITY)"),
        numberOptionDeclaration(
            "TARGET_BPP",
            "fixed rate in bits per pixel (all bands) per tile: lambda is searched per tile "
            "(bisection on log lambda) so each payload fits; a tile that cannot get that "
            "small is coded at the smallest lambda"),
        integerOptionDeclaration(
            "OVERLAP", 0, 64, 8,
            "pixels of the neighbouring tiles (on each side, within the image) coded with each "
            "tile, so that its synthesis sees across tile edges: no seams. A tile still "
            "decodes alone; about 5 % more bytes in 512 px tiles, 10 % in 256 px ones. 0: "
            "none, the default for an image of one tile"),
        choiceOptionDeclaration(
            "SPECTRAL_TRANSFORM", {"AUTO", "KLT", "NONE"}, "AUTO",
            "decorrelate the bands of a 16-bit or Float32 stack first: a Karhunen-Loeve "
            "transform (PCA) per tile, stored in it, whose components the single-band model "
            "codes at one rate-distortion slope; AUTO: KLT from 4 bands on"),
        choiceOptionDeclaration(
            "SAMPLE_TRANSFORM", {"NONE", "AMPLITUDE_DB"}, "NONE",
            "AMPLITUDE_DB: UInt16 SAR amplitude (Sentinel-1 GRD DN) coded as 20 log10(DN) by "
            "the SAR model (its default MODEL), decoded as round(10^(dB/20)); DN 0 stays 0"),
        textOptionDeclaration("MODEL",
                              "a folder in models/: multirate-rgb8-v6 (default for Byte; "
                              "multirate-rgb8, multirate-rgb8-v3, multirate-rgb8-v4, "
                              "multirate-rgb8-v5 the earlier ones), "
                              "multirate-ms16-v6 (default for UInt16/Int16; multirate-ms16, "
                              "multirate-ms16-v2, multirate-ms16-v3 the earlier ones), "
                              "multirate-sar-db-v3 "
                              "(default for Float32: Sentinel-1 backscatter in dB, and for "
                              "SAMPLE_TRANSFORM=AMPLITUDE_DB; multirate-sar-db, "
                              "multirate-sar-db-v2 the earlier ones)")};

    CodecDeclaration fixedQuality;
    fixedQuality.name = "FIXED_QUALITY";
    fixedQuality.description =
        "learned fixed-quality codec: a lambda per block so that every block meets TARGET_PSNR";
    fixedQuality.learned = true;
    fixedQuality.mayStoreAuxiliary = true;  // its per-block PSNR
    fixedQuality.options = {
        numberOptionDeclaration(
            "TARGET_PSNR",
            "PSNR in dB every block should reach; the peak is the data type's (255 for Byte, "
            "65535 for UInt16/Int16, as in Mijares i Verdu et al. 2024), so 16-bit PSNRs look "
            "high"),
        numberOptionDeclaration("TARGET_MSE",
                                "mean squared error in sample units every block should stay "
                                "under (instead of TARGET_PSNR)"),
        choiceOptionDeclaration(
            "QUALITY_BLOCK", {"16", "32", "64", "GLOBAL"}, "32",
            "block side in pixels that gets its own lambda; GLOBAL: one lambda per tile. "
            "BLOCKSIZE must be a multiple of it"),
        integerOptionDeclaration("REFINE", 0, 8, 4,
                                 "closed-loop passes that decode, measure each block and "
                                 "correct its lambda; 0 is the paper's open-loop prediction"),
        textOptionDeclaration("MODEL",
                              "the calibration, a folder in models/: fixed-quality-rgb8-v4 "
                              "(default for Byte, of multirate-rgb8-v6; fixed-quality-rgb8-v3 "
                              "of multirate-rgb8-v5, fixed-quality-rgb8-v2 of multirate-rgb8-v4, "
                              "fixed-quality-rgb8 of the first RGB model), "
                              "fixed-quality-ms16-v2 (default for UInt16/Int16; fixed-quality-ms16)")};
    CodecDeclaration vq;
    vq.name = "VQ";
    vq.description =
        "learned vector-quantised codec: codebook indices as the payload, entropy-coded under "
        "a context model, readable as features (NSAT_LATENT:<file>)";
    vq.learned = true;
    vq.storesLatentIndices = true;
    vq.options = {
        integerOptionDeclaration(
            "LEVELS", 1, 8, 2,
            "residual codebook levels kept: 1 smallest, each more refines what the levels "
            "before it left (the models have 3; each level costs 32 bits per 4x4 pixels of a "
            "16-bit band group, 16 of a Byte one, before entropy coding)"),
        textOptionDeclaration("MODEL",
                              "a folder in models/: vq-rgb8-v2 (default for 3-band Byte; "
                              "vq-rgb8-v1 the first one, with a decoder twice as wide), "
                              "vq-rgbn8-v1 (4-band Byte, NAIP RGB+NIR), vq-rgbn16-v1 (4-band "
                              "UInt16/Int16: Sentinel-2 B2, B3, B4, B8 reflectance x 10000)")};
    CodecDeclaration diffusion;
    diffusion.name = "DIFFUSION";
    diffusion.description =
        "learned codec with a generative decoder: the payload of a base codec (VQ or MULTIRATE), "
        "its decode refined by a small flow model conditioned on the scene's metadata (date, sun, "
        "place, GSD)";
    diffusion.learned = true;
    diffusion.conditionedOnScene = true;
    // The base codec's rate options, with their bounds and defaults, read by the base.
    auto baseOption = [](const std::vector<OptionDeclaration>& options, const char* name,
                         const char* help) {
      OptionDeclaration option = declarationOf(options, name);
      option.help = help;
      return option;
    };
    diffusion.options = {
        baseOption(vq.options, "LEVELS", "the rate of a VQ-based MODEL (the default), as VQ's LEVELS"),
        baseOption(multirate.options, "QUALITY",
                   "the rate of a MULTIRATE-based MODEL, as MULTIRATE's QUALITY"),
        baseOption(multirate.options, "LAMBDA", "the same as MULTIRATE's LAMBDA, instead of QUALITY"),
        numberOptionDeclaration(
            "NOISE",
            "noise scale the refinement starts from, 0 .. the model's sigma_max (0.15), in units "
            "of the full sample range: 0 is a plain learned post-filter, larger values give "
            "more synthesised texture (default: the model card's)"),
        integerOptionDeclaration(
            "NOISE_SEED", 0, 2147483647, 0,
            "seed of the refinement noise (with the tile's level and place); 0: derived from the "
            "scene condition, so the same scene gives the same file. Equal seeds draw equal noise, "
            "e.g. to compare conditions"),
        textOptionDeclaration("MODEL",
                              "a folder in models/: diffusion-vq-rgb8-v3 (default; its base is "
                              "VQ vq-rgb8-v2, so the rate is LEVELS), diffusion-vq-rgb8-v2 and "
                              "-v1 (the same base), diffusion-rgb8-v1 (base MULTIRATE multirate-rgb8-v4: "
                              "QUALITY or LAMBDA)")};
    for (const auto& option : sceneConditionOptions()) diffusion.options.push_back(option);
    diffusion.openOptions = {choiceOptionDeclaration(
        "REFINEMENT", {"YES", "NO"}, "YES",
        "DIFFUSION files: NO decodes the base codec alone (faster, smoother, the PSNR-oriented "
        "image)")};
    return std::vector<CodecDeclaration>{multirate, fixedQuality, vq, diffusion};
  }();
  return declarations;
}

const CodecDeclaration& learnedCodecDeclaration(const std::string& upperCaseName) {
  for (const auto& declaration : learnedCodecDeclarations()) {
    if (declaration.name == upperCaseName) return declaration;
  }
  throw Error("internal error: " + upperCaseName + " is not a learned codec");
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
