// RDIC's ROI_MASK creation option: a raster the driver opens once and reads tile by
// tile for the codec (codecs know no GDAL).
#pragma once

#include <gdal_priv.h>

#include <mutex>
#include <string>
#include <vector>

#include "codecs/codec.h"

namespace nsat {

class RegionOfInterestRaster {
 public:
  // Throws nsat::Error (InvalidOption) if `path` is not a raster of the image's size.
  RegionOfInterestRaster(const std::string& path, int imageWidth, int imageHeight);

  // The mask over one tile of any level: width x height bytes, 1 where band 1 is
  // non-zero. Overview levels are read resampled by mode. Safe from several threads.
  std::vector<uint8_t> tileMask(const TileShape& shape) const;

 private:
  std::string path_;
  GDALDatasetUniquePtr dataset_;
  mutable std::mutex mutex_;  // a GDAL dataset is not for concurrent use
};

}  // namespace nsat
