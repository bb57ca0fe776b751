#include "codecs/codec.h"

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

}  // namespace nsat
