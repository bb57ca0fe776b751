// Real test scenes read through GDAL into the planar layout codecs take.
#pragma once

#include <string>
#include <vector>

#include <gdal_priv.h>
#include <gtest/gtest.h>

#include "codecs/codec.h"

namespace nsat::test {

inline std::string dataPath(const std::string& name) {
  return std::string(NSAT_TEST_DATA) + "/" + name;
}

struct Scene {
  TileShape shape;
  std::vector<uint8_t> pixels;
};

// A window of a real scene as one planar tile of `type`.
inline Scene readScene(const std::string& name, DataType type, GDALDataType gdalType, int x,
                       int y, int width, int height) {
  GDALAllRegister();
  std::unique_ptr<GDALDataset> dataset(
      GDALDataset::Open(dataPath(name).c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY));
  EXPECT_NE(dataset, nullptr) << name;
  Scene scene;
  scene.shape = {width, height, dataset->GetRasterCount(), type, {}};
  scene.pixels.resize(scene.shape.byteCount());
  const CPLErr err = dataset->RasterIO(GF_Read, x, y, width, height, scene.pixels.data(), width,
                                       height, gdalType, scene.shape.bands, nullptr, 0, 0, 0);
  EXPECT_EQ(err, CE_None);
  return scene;
}

inline double psnr8(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += double(a[i] - b[i]) * double(a[i] - b[i]);
  const double mse = sum / double(a.size());
  return mse == 0 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse);
}

}  // namespace nsat::test
