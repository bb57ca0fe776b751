// nsat_scene_condition FILE [KEY=VALUE ...]: the scene condition the DIFFUSION codec
// would store for FILE (with the same creation-option overrides), as JSON on stdout.
// The training scripts read their scenes' conditions through it, so that training and
// the codec see one extraction.
#include <cpl_conv.h>
#include <cpl_string.h>
#include <gdal_priv.h>

#include <cstdio>
#include <memory>

#include "codecs/error.h"
#include "metadata/scene_condition.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: nsat_scene_condition FILE [KEY=VALUE ...]\n");
    return 2;
  }
  GDALAllRegister();
  std::unique_ptr<GDALDataset> dataset(
      GDALDataset::Open(argv[1], GDAL_OF_RASTER | GDAL_OF_VERBOSE_ERROR));
  if (!dataset) return 1;
  CPLStringList overrides;
  for (int i = 2; i < argc; ++i) overrides.AddString(argv[i]);
  try {
    nsat::SceneCondition condition = nsat::extractSceneCondition(*dataset);
    nsat::applyConditionOverrides(condition, overrides.List());
    std::printf("%s\n", nsat::toJson(condition).dump(1).c_str());
  } catch (const nsat::Error& e) {
    std::fprintf(stderr, "nsat_scene_condition: %s\n", e.what());
    return 1;
  }
  return 0;
}
