// The auxiliary raster a codec stores in each tile (AuxiliaryDescription in
// codecs/codec.h), opened as its own dataset: NSAT_AUX:<file>. One Float32 band per
// layer, one pixel per cell, georeferenced on the image's grid scaled by the cell size,
// so QGIS can lay FIXED_QUALITY's block PSNR or RDIC's mask over the image.
// VQ's codebook indices open the same way as NSAT_LATENT:<file>, in UInt16 bands.
#pragma once

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <gdal_pam.h>
#include <ogr_spatialref.h>

#include "codecs/codec.h"
#include "container/container_file.h"

namespace nsat {

constexpr const char* kAuxiliaryPrefix = "NSAT_AUX:";
constexpr const char* kLatentPrefix = "NSAT_LATENT:";
// Nodata of the latent bands: tiles with no valid pixel (EMPTY) store no indices.
constexpr double kLatentNodata = 65535;

enum class CellRaster { Auxiliary, LatentIndices };

class NSATAuxiliaryDataset final : public GDALPamDataset {
 public:
  NSATAuxiliaryDataset(std::shared_ptr<const ContainerReader> reader,
                       std::shared_ptr<const Codec> codec, AuxiliaryDescription description,
                       CellRaster kind = CellRaster::Auxiliary);
  CellRaster kind() const { return kind_; }

  // Decodes the cells of one tile (all layers) into the band's block.
  CPLErr readBlock(int tileX, int tileY, int band, void* image);
  int cellsPerTile() const { return cellsPerTile_; }
  // GDAL 3.12 passes the geotransform as a GDALGeoTransform.
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 12, 0)
  CPLErr GetGeoTransform(GDALGeoTransform& transform) const override;
#else
  CPLErr GetGeoTransform(double* transform) override;
#endif
  const OGRSpatialReference* GetSpatialRef() const override;

 private:
  std::shared_ptr<const ContainerReader> reader_;
  std::shared_ptr<const Codec> codec_;
  AuxiliaryDescription description_;
  CellRaster kind_;
  int cellsPerTile_;
  bool hasTransform_ = false;
  double transform_[6] = {0, 1, 0, 0, 0, 1};
  OGRSpatialReference srs_;
};

// Mean, minimum and maximum over every cell of the full-resolution level, for gdalinfo.
struct AuxiliarySummary {
  double sum = 0;
  double minimum = std::numeric_limits<double>::infinity();
  double maximum = -std::numeric_limits<double>::infinity();
  size_t cells = 0;

  void add(const std::vector<float>& values);
  void add(const AuxiliarySummary& other);
  double mean() const { return cells ? sum / double(cells) : 0; }
};
// Reads every full-resolution tile: for files that do not store the summary.
AuxiliarySummary summariseAuxiliary(const ContainerReader& reader, const Codec& codec);
// One tile's summary from its payload (as CreateCopy writes it).
AuxiliarySummary summariseTile(const Codec& codec, const TileShape& shape,
                               const std::vector<uint8_t>& payload);

// The header's `auxiliary` field: the description and the summary, written at encode
// time so that opening a file needs neither its codec nor a pass over its tiles.
nlohmann::json storedAuxiliary(const AuxiliaryDescription& description,
                               const AuxiliarySummary& summary);
// The same field with the widest numbers JSON can hold, written before the tiles so that
// the final one takes its place.
nlohmann::json placeholderAuxiliary(const AuxiliaryDescription& description);
// False if the header has none (files written before it was stored); throws nsat::Error
// if it is malformed.
bool readStoredAuxiliary(const Header& header, AuxiliaryDescription& description,
                         AuxiliarySummary& summary);

}  // namespace nsat
