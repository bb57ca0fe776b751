#include "driver/nsat_roi_mask.h"

#include <algorithm>
#include <cmath>

namespace nsat {

RegionOfInterestRaster::RegionOfInterestRaster(const std::string& path, int imageWidth,
                                               int imageHeight)
    : path_(path), dataset_(GDALDataset::Open(path.c_str(), GDAL_OF_RASTER)) {
  if (!dataset_ || dataset_->GetRasterCount() < 1) {
    throw Error("ROI_MASK=" + path + " cannot be opened as a raster", ErrorKind::InvalidOption);
  }
  if (dataset_->GetRasterXSize() != imageWidth || dataset_->GetRasterYSize() != imageHeight) {
    throw Error("ROI_MASK=" + path + " is " + std::to_string(dataset_->GetRasterXSize()) + "x" +
                    std::to_string(dataset_->GetRasterYSize()) + ", the image is " +
                    std::to_string(imageWidth) + "x" + std::to_string(imageHeight),
                ErrorKind::InvalidOption);
  }
}

std::vector<uint8_t> RegionOfInterestRaster::tileMask(const TileShape& shape) const {
  const TilePlacement& place = shape.placement;
  const double scaleX = double(place.imageWidth) / place.levelWidth;
  const double scaleY = double(place.imageHeight) / place.levelHeight;
  GDALRasterIOExtraArg extra;
  INIT_RASTERIO_EXTRA_ARG(extra);
  extra.eResampleAlg = GRIORA_Mode;  // a cell of an overview is relevant as most of its pixels are
  extra.bFloatingPointWindowValidity = TRUE;
  extra.dfXOff = place.x * scaleX;
  extra.dfYOff = place.y * scaleY;
  extra.dfXSize = std::min(shape.width * scaleX, place.imageWidth - extra.dfXOff);
  extra.dfYSize = std::min(shape.height * scaleY, place.imageHeight - extra.dfYOff);
  const int x0 = int(std::floor(extra.dfXOff)), y0 = int(std::floor(extra.dfYOff));
  const int x1 = std::min(place.imageWidth, int(std::ceil(extra.dfXOff + extra.dfXSize)));
  const int y1 = std::min(place.imageHeight, int(std::ceil(extra.dfYOff + extra.dfYSize)));
  // Float64 so that a mask of any type keeps "non-zero" exactly (0.4 stays non-zero).
  std::vector<double> values(shape.pixelsPerBand());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (dataset_->GetRasterBand(1)->RasterIO(GF_Read, x0, y0, x1 - x0, y1 - y0, values.data(),
                                             shape.width, shape.height, GDT_Float64, 0, 0,
                                             &extra) != CE_None) {
      throw Error("ROI_MASK=" + path_ + " cannot be read", ErrorKind::FileIO);
    }
  }
  std::vector<uint8_t> mask(values.size());
  std::transform(values.begin(), values.end(), mask.begin(),
                 [](double value) { return uint8_t(value != 0); });
  return mask;
}

}  // namespace nsat
