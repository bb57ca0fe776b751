// The auxiliary raster a codec stores in each tile (AuxiliaryDescription in
// codecs/codec.h), opened as its own dataset: NSAT_AUX:<file>. One Float32 band per
// layer, one pixel per cell, georeferenced on the image's grid scaled by the cell size,
// so QGIS can lay FIXED_QUALITY's block PSNR or RDIC's mask over the image.
#pragma once

#include <memory>
#include <string>

#include <gdal_pam.h>
#include <ogr_spatialref.h>

#include "codecs/codec.h"
#include "container/container_file.h"

namespace nsat {

constexpr const char* kAuxiliaryPrefix = "NSAT_AUX:";

class NSATAuxiliaryDataset final : public GDALPamDataset {
 public:
  NSATAuxiliaryDataset(std::shared_ptr<const ContainerReader> reader,
                       std::shared_ptr<const Codec> codec, AuxiliaryDescription description);

  // Decodes the cells of one tile (all layers) into the band's block.
  CPLErr readBlock(int tileX, int tileY, int band, void* image);
  int cellsPerTile() const { return cellsPerTile_; }
  CPLErr GetGeoTransform(double* transform) override;
  const OGRSpatialReference* GetSpatialRef() const override;

 private:
  std::shared_ptr<const ContainerReader> reader_;
  std::shared_ptr<const Codec> codec_;
  AuxiliaryDescription description_;
  int cellsPerTile_;
  bool hasTransform_ = false;
  double transform_[6] = {0, 1, 0, 0, 0, 1};
  OGRSpatialReference srs_;
};

// Mean, minimum and maximum over every cell of the full-resolution level, for gdalinfo.
struct AuxiliarySummary {
  double mean = 0, minimum = 0, maximum = 0;
  size_t cells = 0;
};
AuxiliarySummary summariseAuxiliary(const ContainerReader& reader, const Codec& codec);

}  // namespace nsat
