#include "driver/nsat_auxiliary.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "container/tile_payload.h"

namespace nsat {

namespace {

class AuxiliaryBand final : public GDALPamRasterBand {
 public:
  AuxiliaryBand(NSATAuxiliaryDataset* dataset, int band, const std::string& name,
                const std::string& unit) {
    poDS = dataset;
    nBand = band;
    eDataType = GDT_Float32;
    nBlockXSize = nBlockYSize = dataset->cellsPerTile();
    SetDescription(name.c_str());
    unit_ = unit;
  }
  CPLErr IReadBlock(int blockX, int blockY, void* image) override {
    return static_cast<NSATAuxiliaryDataset*>(poDS)->readBlock(blockX, blockY, nBand, image);
  }
  // Tiles with no valid pixel (EMPTY) have no cells.
  double GetNoDataValue(int* hasNodata) override {
    if (hasNodata) *hasNodata = TRUE;
    return std::numeric_limits<double>::quiet_NaN();
  }
  const char* GetUnitType() override { return unit_.c_str(); }

 private:
  std::string unit_;
};

// A tile's cells, or an empty vector for an EMPTY tile.
std::vector<float> tileCells(const ContainerReader& reader, const Codec& codec, int tileX,
                             int tileY) {
  const TileShape shape = reader.header().tileShape(0, tileX, tileY);
  const std::vector<uint8_t> payload = reader.readTile(0, tileX, tileY);
  const auto bytes = codecBytesOf(payload.data(), payload.size());
  if (!bytes) return {};
  return codec.auxiliaryValues(shape, bytes->data, bytes->size);
}

}  // namespace

NSATAuxiliaryDataset::NSATAuxiliaryDataset(std::shared_ptr<const ContainerReader> reader,
                                           std::shared_ptr<const Codec> codec,
                                           AuxiliaryDescription description)
    : reader_(std::move(reader)), codec_(std::move(codec)), description_(std::move(description)) {
  const Header& header = reader_->header();
  const int cell = description_.cellSize;
  if (cell < 1 || header.blockWidth % cell != 0 || header.blockHeight != header.blockWidth) {
    throw Error("the auxiliary cells (" + std::to_string(cell) +
                " px) do not divide the tiles evenly");
  }
  cellsPerTile_ = header.blockWidth / cell;
  nRasterXSize = (header.width + cell - 1) / cell;
  nRasterYSize = (header.height + cell - 1) / cell;
  eAccess = GA_ReadOnly;
  for (size_t layer = 0; layer < description_.layerNames.size(); ++layer) {
    SetBand(int(layer) + 1, new AuxiliaryBand(this, int(layer) + 1, description_.layerNames[layer],
                                              description_.unit));
  }
  // The image's grid, cells `cell` pixels wide; GCP-only images stay ungeoreferenced.
  const nlohmann::json& geo = header.georeferencing;
  if (geo.contains("geotransform") && geo["geotransform"].size() == 6) {
    const auto image = geo["geotransform"].get<std::vector<double>>();
    transform_[0] = image[0];
    transform_[3] = image[3];
    for (int i : {1, 2, 4, 5}) transform_[i] = image[size_t(i)] * cell;
    hasTransform_ = true;
  }
  const std::string wkt = geo.value("crs_wkt", std::string());
  if (!wkt.empty() && srs_.importFromWkt(wkt.c_str()) == OGRERR_NONE) {
    srs_.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
  } else {
    srs_.Clear();
  }
  SetMetadataItem("NAME", description_.name.c_str());
  SetMetadataItem("DESCRIPTION", description_.description.c_str());
  SetMetadataItem("CELL_SIZE_PIXELS", std::to_string(cell).c_str());
}

CPLErr NSATAuxiliaryDataset::GetGeoTransform(double* transform) {
  std::copy(transform_, transform_ + 6, transform);
  return hasTransform_ ? CE_None : CE_Failure;
}

const OGRSpatialReference* NSATAuxiliaryDataset::GetSpatialRef() const {
  return srs_.IsEmpty() ? nullptr : &srs_;
}

CPLErr NSATAuxiliaryDataset::readBlock(int tileX, int tileY, int band, void* image) {
  auto* out = static_cast<float*>(image);
  std::fill(out, out + size_t(cellsPerTile_) * cellsPerTile_,
            std::numeric_limits<float>::quiet_NaN());
  try {
    const std::vector<float> cells = tileCells(*reader_, *codec_, tileX, tileY);
    if (cells.empty()) return CE_None;
    const TileShape shape = reader_->header().tileShape(0, tileX, tileY);
    const int cell = description_.cellSize;
    const int across = (shape.width + cell - 1) / cell, down = (shape.height + cell - 1) / cell;
    const size_t layerCells = size_t(across) * down;
    if (cells.size() != layerCells * description_.layerNames.size()) {
      throw Error("tile " + std::to_string(tileX) + "," + std::to_string(tileY) +
                  " has the wrong number of auxiliary cells");
    }
    const float* layer = cells.data() + size_t(band - 1) * layerCells;
    for (int y = 0; y < down; ++y) {
      std::copy(layer + size_t(y) * across, layer + size_t(y + 1) * across,
                out + size_t(y) * cellsPerTile_);
    }
  } catch (const std::exception& e) {
    CPLError(CE_Failure, CPLE_AppDefined, "NSAT: %s: %s", GetDescription(), e.what());
    return CE_Failure;
  }
  return CE_None;
}

AuxiliarySummary summariseAuxiliary(const ContainerReader& reader, const Codec& codec) {
  AuxiliarySummary summary;
  summary.minimum = std::numeric_limits<double>::infinity();
  summary.maximum = -summary.minimum;
  double sum = 0;
  const Header& header = reader.header();
  for (int tileY = 0; tileY < header.tilesDown(0); ++tileY) {
    for (int tileX = 0; tileX < header.tilesAcross(0); ++tileX) {
      for (float value : tileCells(reader, codec, tileX, tileY)) {
        sum += value;
        summary.minimum = std::min(summary.minimum, double(value));
        summary.maximum = std::max(summary.maximum, double(value));
        ++summary.cells;
      }
    }
  }
  if (summary.cells) summary.mean = sum / double(summary.cells);
  return summary;
}

}  // namespace nsat
