#include "container/header.h"

#include <climits>
#include <cmath>
#include <limits>

namespace nsat {

namespace {

// JSON has no NaN or infinity, and nodata is often one of them.
nlohmann::json nodataToJson(const std::optional<double>& value) {
  if (!value) return nullptr;
  if (std::isnan(*value)) return "nan";
  if (std::isinf(*value)) return *value > 0 ? "inf" : "-inf";
  return *value;
}

std::optional<double> nodataFromJson(const nlohmann::json& value) {
  if (value.is_null()) return std::nullopt;
  if (value.is_number()) return value.get<double>();
  const std::string text = value.get<std::string>();
  if (text == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (text == "inf") return std::numeric_limits<double>::infinity();
  if (text == "-inf") return -std::numeric_limits<double>::infinity();
  throw Error("header has an invalid nodata value '" + text + "'");
}

// In 64 bits: a width near INT_MAX plus a block size would overflow int.
int ceilDiv(int value, int divisor) {
  return int((int64_t(value) + divisor - 1) / divisor);
}

}  // namespace

int Header::tilesAcross(int level) const { return ceilDiv(levels.at(level).width, blockWidth); }

int Header::tilesDown(int level) const { return ceilDiv(levels.at(level).height, blockHeight); }

uint64_t Header::tileCount(int level) const {
  return static_cast<uint64_t>(tilesAcross(level)) * tilesDown(level);
}

uint64_t Header::totalTileCount() const {
  uint64_t total = 0;
  for (size_t level = 0; level < levels.size(); ++level) total += tileCount(int(level));
  return total;
}

TileShape Header::tileShape(int level, int tileX, int tileY) const {
  const LevelSize& size = levels.at(level);
  TileShape shape;
  shape.width = std::min(blockWidth, size.width - tileX * blockWidth);
  shape.height = std::min(blockHeight, size.height - tileY * blockHeight);
  shape.bands = bands;
  shape.type = type;
  shape.placement = {level, tileX * blockWidth, tileY * blockHeight, size.width, size.height,
                     width, height};
  return shape;
}

nlohmann::json Header::toJson() const {
  nlohmann::json json;
  json["raster"] = {{"width", width},
                    {"height", height},
                    {"bands", bands},
                    {"data_type", dataTypeName(type)},
                    {"block_width", blockWidth},
                    {"block_height", blockHeight}};
  json["levels"] = nlohmann::json::array();
  for (const auto& level : levels) json["levels"].push_back({level.width, level.height});
  nlohmann::json modelList = nlohmann::json::array();
  for (const auto& model : models) modelList.push_back({{"id", model.id}, {"sha256", model.sha256}});
  json["codec"] = {{"name", codecName}, {"parameters", codecParameters}, {"models", modelList}};
  json["nodata"] = nlohmann::json::array();
  for (const auto& value : nodata) json["nodata"].push_back(nodataToJson(value));
  json["georeferencing"] = georeferencing;
  json["bands"] = bandDescriptions;
  json["metadata"] = metadataDomains;
  if (!auxiliary.is_null()) json["auxiliary"] = auxiliary;
  return json;
}

Header Header::fromJson(const nlohmann::json& json) {
  Header header;
  try {
    const auto& raster = json.at("raster");
    header.width = raster.at("width").get<int>();
    header.height = raster.at("height").get<int>();
    header.bands = raster.at("bands").get<int>();
    header.type = dataTypeFromName(raster.at("data_type").get<std::string>());
    header.blockWidth = raster.at("block_width").get<int>();
    header.blockHeight = raster.at("block_height").get<int>();
    const auto& levels = json.at("levels");
    if (!levels.is_array() || levels.size() > size_t(kMaxLevels)) {
      throw Error("header has an invalid level list");
    }
    for (const auto& level : levels) {
      header.levels.push_back({level.at(0).get<int>(), level.at(1).get<int>()});
    }
    const auto& codec = json.at("codec");
    header.codecName = codec.at("name").get<std::string>();
    header.codecParameters = codec.at("parameters");
    for (const auto& model : codec.at("models")) {
      header.models.push_back(
          {model.at("id").get<std::string>(), model.at("sha256").get<std::string>()});
    }
    const auto& nodata = json.at("nodata");
    if (!nodata.is_array() || nodata.size() > size_t(kMaxBands)) {
      throw Error("header has an invalid nodata list");
    }
    for (const auto& value : nodata) header.nodata.push_back(nodataFromJson(value));
    header.georeferencing = json.value("georeferencing", nlohmann::json::object());
    header.bandDescriptions = json.value("bands", nlohmann::json::array());
    header.metadataDomains = json.value("metadata", nlohmann::json::object());
    header.auxiliary = json.value("auxiliary", nlohmann::json());
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("header is malformed: ") + e.what());
  }
  header.validate();
  return header;
}

void Header::validate() const {
  if (width < 1 || height < 1 || width > kMaxRasterSize || height > kMaxRasterSize) {
    throw Error("header has an invalid raster size (1 to 2^30 pixels a side)");
  }
  if (bands < 1 || bands > kMaxBands) throw Error("header has an invalid band count");
  if (blockWidth < kMinBlockSize || blockWidth > kMaxBlockSize || blockHeight < kMinBlockSize ||
      blockHeight > kMaxBlockSize) {
    throw Error("header has an invalid block size");
  }
  const uint64_t tileBytes =
      uint64_t(blockWidth) * uint64_t(blockHeight) * uint64_t(bands) * dataTypeSize(type);
  if (tileBytes > kMaxTileBytes) throw Error("header asks for tiles larger than 1 GiB");
  if (levels.empty() || levels.size() > size_t(kMaxLevels) || levels[0].width != width ||
      levels[0].height != height) {
    throw Error("header has an invalid level list");
  }
  for (size_t i = 1; i < levels.size(); ++i) {
    if (levels[i].width < 1 || levels[i].height < 1 || levels[i].width > levels[i - 1].width ||
        levels[i].height > levels[i - 1].height) {
      throw Error("header has an invalid overview level size");
    }
  }
  // Block sizes and level sizes are valid now, so the tile counts cannot overflow.
  if (totalTileCount() > kMaxTileCount) {
    throw Error("header asks for more than 2^26 tiles (use a larger BLOCKSIZE)");
  }
  if (nodata.size() != size_t(bands)) throw Error("header nodata list does not match bands");
  if (!bandDescriptions.is_array() ||
      (!bandDescriptions.empty() && bandDescriptions.size() != size_t(bands))) {
    throw Error("header band list does not match the band count");
  }
  if (codecName.empty()) throw Error("header names no codec");
  if (!auxiliary.is_null() && !auxiliary.is_object()) throw Error("header auxiliary is not an object");
}

}  // namespace nsat
