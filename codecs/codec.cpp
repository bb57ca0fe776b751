#include "codecs/codec.h"

#include <algorithm>
#include <cstring>

namespace nsat {

namespace {

struct TypeInfo {
  DataType type;
  const char* name;  // GDAL's spelling, so headers read naturally next to gdalinfo
  size_t size;
};

constexpr TypeInfo kTypes[] = {
    {DataType::Byte, "Byte", 1},       {DataType::UInt16, "UInt16", 2},
    {DataType::Int16, "Int16", 2},     {DataType::UInt32, "UInt32", 4},
    {DataType::Int32, "Int32", 4},     {DataType::Float32, "Float32", 4},
    {DataType::Float64, "Float64", 8},
};

const TypeInfo& info(DataType type) {
  for (const auto& entry : kTypes) {
    if (entry.type == type) return entry;
  }
  throw Error("unknown data type");
}

}  // namespace

size_t dataTypeSize(DataType type) { return info(type).size; }

const char* dataTypeName(DataType type) { return info(type).name; }

DataType dataTypeFromName(const std::string& name) {
  for (const auto& entry : kTypes) {
    if (name == entry.name) return entry.type;
  }
  throw Error("unsupported data type '" + name + "'");
}

bool isFloatingPoint(DataType type) {
  return type == DataType::Float32 || type == DataType::Float64;
}

TileShape contextWindow(const TileShape& tile, int margin) {
  const TilePlacement& at = tile.placement;
  TileShape window = tile;
  window.placement.x = std::max(0, at.x - margin);
  window.placement.y = std::max(0, at.y - margin);
  window.width = std::min(at.levelWidth, at.x + tile.width + margin) - window.placement.x;
  window.height = std::min(at.levelHeight, at.y + tile.height + margin) - window.placement.y;
  // A tile placed nowhere (levelWidth 0: a codec test) or outside its level has no context.
  if (margin <= 0 || window.width < tile.width || window.height < tile.height) return tile;
  return window;
}

void copyClamped(const TileShape& from, const void* fromPixels, const TileShape& to,
                 void* toPixels) {
  const size_t sample = dataTypeSize(to.type);
  const auto* in = static_cast<const uint8_t*>(fromPixels);
  auto* out = static_cast<uint8_t*>(toPixels);
  std::vector<size_t> columns(size_t(to.width));
  for (int x = 0; x < to.width; ++x) {
    columns[x] = size_t(std::clamp(to.placement.x + x - from.placement.x, 0, from.width - 1));
  }
  for (int band = 0; band < to.bands; ++band) {
    for (int y = 0; y < to.height; ++y) {
      const int row = std::clamp(to.placement.y + y - from.placement.y, 0, from.height - 1);
      const uint8_t* line = in + (size_t(band) * from.height + row) * from.width * sample;
      uint8_t* target = out + (size_t(band) * to.height + y) * to.width * sample;
      if (to.placement.x >= from.placement.x &&
          to.placement.x + to.width <= from.placement.x + from.width) {
        std::memcpy(target, line + columns[0] * sample, size_t(to.width) * sample);
        continue;
      }
      for (int x = 0; x < to.width; ++x) {
        std::memcpy(target + size_t(x) * sample, line + columns[x] * sample, sample);
      }
    }
  }
}

}  // namespace nsat
