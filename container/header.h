// The `.nsat` file header: what the container needs to find and decode tiles
// (raster shape, levels, codec, nodata), plus the scene description that the
// metadata/ module fills and reads back (georeferencing, bands, metadata domains).
// FORMAT.md in this folder is the normative description.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "codecs/codec.h"

namespace nsat {

struct LevelSize {
  int width = 0;
  int height = 0;
};

struct Header {
  int width = 0;
  int height = 0;
  int bands = 0;
  DataType type = DataType::Byte;
  int blockWidth = 256;
  int blockHeight = 256;
  // levels[0] is the full-resolution image, the rest are internal overviews.
  std::vector<LevelSize> levels;

  std::string codecName;
  nlohmann::json codecParameters = nlohmann::json::object();
  std::vector<ModelRef> models;

  // One entry per band; empty optional: the band has no nodata value.
  std::vector<std::optional<double>> nodata;

  // Opaque to the container: written and read by metadata/.
  nlohmann::json georeferencing = nlohmann::json::object();
  nlohmann::json bandDescriptions = nlohmann::json::array();
  nlohmann::json metadataDomains = nlohmann::json::object();
  // The codec's auxiliary raster, described and summarised at encode time (null if the
  // codec has none, or in files written before it was stored): written by the driver.
  nlohmann::json auxiliary = nullptr;

  int tilesAcross(int level) const;
  int tilesDown(int level) const;
  uint64_t tileCount(int level) const;
  uint64_t totalTileCount() const;
  // Size of tile (x, y) of a level: edge tiles are cropped to the image.
  TileShape tileShape(int level, int tileX, int tileY) const;

  nlohmann::json toJson() const;
  // Validates every field against the sanity limits; throws nsat::Error.
  static Header fromJson(const nlohmann::json& json);
  // Throws nsat::Error if a field is out of the limits in FORMAT.md.
  void validate() const;
};

// Sanity limits applied to every header before anything is allocated from it.
constexpr int kMaxBands = 65535;
constexpr int kMinBlockSize = 16;
constexpr int kMaxBlockSize = 4096;
constexpr int kMaxLevels = 32;
// Largest decoded tile (all bands) a file may ask a reader to allocate.
constexpr uint64_t kMaxTileBytes = uint64_t(1) << 30;
// Largest raster side (2^30: every tile count and offset stays far inside int and
// uint64 arithmetic) and largest tile count over all levels (2^26 tiles: a 1 GiB
// index), checked before anything is allocated from a header.
constexpr int kMaxRasterSize = 1 << 30;
constexpr uint64_t kMaxTileCount = uint64_t(1) << 26;

}  // namespace nsat
