#include "driver/nsat_auxiliary.h"

#include "driver/nsat_errors.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "container/tile_payload.h"
#include "metadata/scene_description.h"

namespace nsat {

namespace {

class AuxiliaryBand final : public GDALPamRasterBand {
 public:
  AuxiliaryBand(NSATAuxiliaryDataset* dataset, int band, const std::string& name,
                const std::string& unit) {
    poDS = dataset;
    nBand = band;
    latent_ = dataset->kind() == CellRaster::LatentIndices;
    eDataType = latent_ ? GDT_UInt16 : GDT_Float32;
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
    return latent_ ? kLatentNodata : std::numeric_limits<double>::quiet_NaN();
  }
  const char* GetUnitType() override { return unit_.c_str(); }

 private:
  std::string unit_;
  bool latent_ = false;
};

// A tile's cells, or an empty vector for an EMPTY tile.
std::vector<float> payloadCells(const Codec& codec, const TileShape& shape,
                                const std::vector<uint8_t>& payload,
                                CellRaster kind = CellRaster::Auxiliary) {
  const auto bytes = codecBytesOf(payload.data(), payload.size());
  if (!bytes) return {};
  return kind == CellRaster::Auxiliary ? codec.auxiliaryValues(shape, bytes->data, bytes->size)
                                       : codec.latentIndexValues(shape, bytes->data, bytes->size);
}

std::vector<float> tileCells(const ContainerReader& reader, const Codec& codec, int tileX,
                             int tileY, CellRaster kind = CellRaster::Auxiliary) {
  return payloadCells(codec, reader.header().tileShape(0, tileX, tileY),
                      reader.readTile(0, tileX, tileY), kind);
}

}  // namespace

NSATAuxiliaryDataset::NSATAuxiliaryDataset(std::shared_ptr<const ContainerReader> reader,
                                           std::shared_ptr<const Codec> codec,
                                           AuxiliaryDescription description, CellRaster kind)
    : reader_(std::move(reader)), codec_(std::move(codec)), description_(std::move(description)),
      kind_(kind) {
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
  if (!loadCrs(geo, "crs", srs_)) srs_.Clear();
  SetMetadataItem("NAME", description_.name.c_str());
  SetMetadataItem("DESCRIPTION", description_.description.c_str());
  SetMetadataItem("CELL_SIZE_PIXELS", std::to_string(cell).c_str());
}

#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 12, 0)
CPLErr NSATAuxiliaryDataset::GetGeoTransform(GDALGeoTransform& transform) const {
  for (int i = 0; i < 6; ++i) transform[i] = transform_[i];
  return hasTransform_ ? CE_None : CE_Failure;
}
#else
CPLErr NSATAuxiliaryDataset::GetGeoTransform(double* transform) {
  std::copy(transform_, transform_ + 6, transform);
  return hasTransform_ ? CE_None : CE_Failure;
}
#endif

const OGRSpatialReference* NSATAuxiliaryDataset::GetSpatialRef() const {
  return srs_.IsEmpty() ? nullptr : &srs_;
}

CPLErr NSATAuxiliaryDataset::readBlock(int tileX, int tileY, int band, void* image) {
  const size_t blockCells = size_t(cellsPerTile_) * cellsPerTile_;
  std::vector<float> out(blockCells, std::numeric_limits<float>::quiet_NaN());
  CPLErr result = CE_None;
  try {
    const std::vector<float> cells = tileCells(*reader_, *codec_, tileX, tileY, kind_);
    if (!cells.empty()) {
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
                  out.begin() + ptrdiff_t(y) * cellsPerTile_);
      }
    }
  } catch (const std::exception& e) {
    reportError(CE_Failure, e, ErrorSite::Read, GetDescription());
    result = CE_Failure;
  }
  if (kind_ == CellRaster::Auxiliary) {
    std::copy(out.begin(), out.end(), static_cast<float*>(image));
  } else {  // indices are small integers, exact in a float; NaN (no cells) is nodata
    auto* indices = static_cast<uint16_t*>(image);
    for (size_t i = 0; i < blockCells; ++i) {
      indices[i] = std::isnan(out[i]) ? uint16_t(kLatentNodata) : uint16_t(out[i]);
    }
  }
  return result;
}

void AuxiliarySummary::add(const std::vector<float>& values) {
  for (float value : values) {
    sum += value;
    minimum = std::min(minimum, double(value));
    maximum = std::max(maximum, double(value));
    ++cells;
  }
}

void AuxiliarySummary::add(const AuxiliarySummary& other) {
  sum += other.sum;
  minimum = std::min(minimum, other.minimum);
  maximum = std::max(maximum, other.maximum);
  cells += other.cells;
}

AuxiliarySummary summariseAuxiliary(const ContainerReader& reader, const Codec& codec) {
  const Header& header = reader.header();
  AuxiliarySummary summary;
  for (int tileY = 0; tileY < header.tilesDown(0); ++tileY) {
    for (int tileX = 0; tileX < header.tilesAcross(0); ++tileX) {
      AuxiliarySummary tile;  // tile by tile, in the order CreateCopy adds them
      tile.add(tileCells(reader, codec, tileX, tileY));
      summary.add(tile);
    }
  }
  return summary;
}

AuxiliarySummary summariseTile(const Codec& codec, const TileShape& shape,
                               const std::vector<uint8_t>& payload) {
  AuxiliarySummary summary;
  summary.add(payloadCells(codec, shape, payload));
  return summary;
}

namespace {

// The auxiliary values are floats: stored with a float's shortest digits ("37.7", not
// "37.70000076293945"), which also bounds their length (placeholderAuxiliary).
double shortFloat(double value) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof(text), float(value)).ptr;
  return std::strtod(std::string(text, end).c_str(), nullptr);
}

}  // namespace

nlohmann::json storedAuxiliary(const AuxiliaryDescription& description,
                               const AuxiliarySummary& summary) {
  nlohmann::json json = {{"name", description.name},
                         {"description", description.description},
                         {"unit", description.unit},
                         {"cell_size", description.cellSize},
                         {"layers", description.layerNames},
                         {"cells", summary.cells}};
  if (summary.cells) {
    json["mean"] = shortFloat(summary.mean());
    json["min"] = shortFloat(summary.minimum);
    json["max"] = shortFloat(summary.maximum);
  }
  return json;
}

nlohmann::json placeholderAuxiliary(const AuxiliaryDescription& description) {
  AuxiliarySummary widest;
  widest.cells = std::numeric_limits<size_t>::max();
  nlohmann::json json = storedAuxiliary(description, widest);
  // The longest shortest-digits float text: "-1.17549435e-38".
  for (const char* key : {"mean", "min", "max"}) json[key] = -double(std::numeric_limits<float>::min());
  return json;
}

bool readStoredAuxiliary(const Header& header, AuxiliaryDescription& description,
                         AuxiliarySummary& summary) {
  if (header.auxiliary.is_null()) return false;
  try {
    const nlohmann::json& json = header.auxiliary;
    description.name = json.at("name").get<std::string>();
    description.description = json.at("description").get<std::string>();
    description.unit = json.at("unit").get<std::string>();
    description.cellSize = json.at("cell_size").get<int>();
    description.layerNames = json.at("layers").get<std::vector<std::string>>();
    summary = AuxiliarySummary();
    summary.cells = json.at("cells").get<size_t>();
    if (summary.cells) {
      summary.sum = json.at("mean").get<double>() * double(summary.cells);
      summary.minimum = json.at("min").get<double>();
      summary.maximum = json.at("max").get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("header auxiliary is malformed: ") + e.what());
  }
  if (description.cellSize < 1 || description.cellSize > header.blockWidth ||
      description.layerNames.empty() || description.layerNames.size() > size_t(header.bands)) {
    throw Error("header auxiliary has an invalid cell size or layer list");
  }
  return true;
}

}  // namespace nsat
