// libFuzzer harness for VQ tile payloads (codecs/learned/vq_codec.cpp), and for DIFFUSION
// files on a VQ base (codecs/learned/diffusion_codec.cpp: the same payload, then the
// refiner), built with the learned fuzzers by scripts/fuzz.sh (nsat_fuzz_vq).
//
// Input: 4 selector bytes, then a VQ payload as a tile stores it (framing stripped):
//   byte 0  the model (modulo kModels): 0 vq-rgb8-v1, 1 vq-rgbn8-v1, 2 vq-rgbn16-v1,
//           3 vq-rgb8-v2, 4 to 6 DIFFUSION diffusion-vq-rgb8-v1, -v2, -v3 (base vq-rgb8-v2,
//           NOISE 0.02, a real scene condition, the tile's place from its sizes)
//   byte 1  levels - 1 (modulo the model's levels)
//   byte 2  tile width - 1, byte 3 tile height - 1 (1 .. 256 px)
// The tile has one band group of the model's band count. Every input is decoded in full
// (indices, codewords, synthesis, and for DIFFUSION the refiner's Euler steps) and its
// latent indices are read (VQ); a corrupt payload must give nsat::Error, nothing else.
// Seeds: autotest/fuzz/learned_seeds.py --vq.
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <vector>

#include <ATen/Parallel.h>

#include "codecs/error.h"
#include "codecs/learned/diffusion_codec.h"
#include "codecs/learned/vq_codec.h"
#include "codecs/learned/vq_model.h"

namespace nsat {
namespace {

constexpr int kModels = 7;
constexpr const char* kModelIds[kModels] = {"vq-rgb8-v1",           "vq-rgbn8-v1",
                                            "vq-rgbn16-v1",         "vq-rgb8-v2",
                                            "diffusion-vq-rgb8-v1", "diffusion-vq-rgb8-v2",
                                            "diffusion-vq-rgb8-v3"};
constexpr int kFirstDiffusionModel = 4;
constexpr int kDiffusionBase = 3;  // vq-rgb8-v2, the VQ-based refiners' base
constexpr size_t kSelectorSize = 4;
// The condition of autotest/data/landsat7_rgb_byte.tif (nsat_scene_condition), as the
// driver hands it to DIFFUSION.
constexpr const char* kSceneCondition =
    R"({"center_lat":{"source":"geotransform","value":24.56},)"
    R"("center_lon":{"source":"geotransform","value":-77.76},)"
    R"("gsd":{"source":"geotransform","value":299.87}})";

struct ModelCodecs {
  DataType type;
  int bands;
  std::vector<std::unique_ptr<Codec>> byLevels;  // LEVELS = 1 .. the model's
};
ModelCodecs* models[kModels];

}  // namespace
}  // namespace nsat

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace nsat;
  at::set_num_threads(1);
  const CodecDescriptor descriptor = vqCodecDescriptor();
  const CodecDescriptor diffusion = diffusionCodecDescriptor();
  try {
    for (int m = 0; m < kFirstDiffusionModel; ++m) {
      const auto model = loadVqModel(kModelIds[m]);
      auto* codecs = new ModelCodecs{model->codesBytes ? DataType::Byte : DataType::UInt16,
                                     model->bands, {}};
      for (int levels = 1; levels <= model->levels; ++levels) {
        const CodecOptions options = {{"MODEL", kModelIds[m]}, {"LEVELS", std::to_string(levels)}};
        codecs->byLevels.push_back(
            descriptor.create(descriptor.parametersFromOptions(options, codecs->type, codecs->bands)));
      }
      models[m] = codecs;
    }
    for (int m = kFirstDiffusionModel; m < kModels; ++m) {
      auto* codecs = new ModelCodecs{DataType::Byte, 3, {}};
      const size_t levelCount = models[kDiffusionBase]->byLevels.size();
      for (size_t levels = 1; levels <= levelCount; ++levels) {
        const CodecOptions options = {{"MODEL", kModelIds[m]},
                                      {"LEVELS", std::to_string(levels)},
                                      {"NOISE", "0.02"},
                                      {kSceneConditionOption, kSceneCondition}};
        codecs->byLevels.push_back(
            diffusion.create(diffusion.parametersFromOptions(options, DataType::Byte, 3)));
      }
      models[m] = codecs;
    }
  } catch (const std::exception& e) {
    std::cerr << "fuzz_vq_payloads: cannot load the VQ and DIFFUSION models: " << e.what() << "\n";
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nsat;
  if (size < kSelectorSize) return 0;
  const ModelCodecs& codecs = *models[data[0] % kModels];
  const Codec& codec = *codecs.byLevels[data[1] % codecs.byLevels.size()];
  TileShape shape;
  shape.width = data[2] + 1;
  shape.height = data[3] + 1;
  shape.bands = codecs.bands;
  shape.type = codecs.type;
  // DIFFUSION's noise is keyed by the tile: let the selector move it.
  shape.placement.x = data[2] % 7;
  shape.placement.y = data[3] % 5;
  std::vector<uint8_t> pixels(shape.byteCount());
  try {
    codec.decode(shape, data + kSelectorSize, size - kSelectorSize, pixels.data());
  } catch (const Error&) {
  }
  try {
    codec.latentIndexValues(shape, data + kSelectorSize, size - kSelectorSize);
  } catch (const Error&) {
  }
  return 0;
}
