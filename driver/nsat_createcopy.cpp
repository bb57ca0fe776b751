// CreateCopy: options, the header, then the write pipeline (nsat_tile_encoder.cpp).
#include <algorithm>
#include <cmath>

#include "codecs/learned_module.h"
#include "codecs/thread_pool.h"
#include "codecs/rdic_codec.h"
#include "codecs/registry.h"
#include "container/container_file.h"
#include "container/tile_payload.h"
#include "driver/nsat_auxiliary.h"
#include "driver/nsat_dataset.h"
#include "driver/nsat_errors.h"
#include "driver/nsat_options.h"
#include "driver/nsat_roi_mask.h"
#include "driver/nsat_tile_encoder.h"
#include "metadata/scene_condition.h"
#include "metadata/scene_description.h"

namespace nsat {

namespace {

Error invalidOption(const std::string& message) { return Error(message, ErrorKind::InvalidOption); }
Error notSupported(const std::string& message) { return Error(message, ErrorKind::NotSupported); }

// OVERVIEWS=AUTO halves the image until its larger side fits in this.
constexpr int kSmallestOverview = 256;

struct WriteSettings {
  std::string codecName;
  int blockSize = 0;
  bool overviews = true;
  EncodeSettings encoding;
  CodecOptions codecOptions;  // every option the driver does not read itself
};

GDALRIOResampleAlg resamplingAlgorithm(const std::string& name) {
  static const std::pair<const char*, GDALRIOResampleAlg> kAlgorithms[] = {
      {"NEAREST", GRIORA_NearestNeighbour}, {"AVERAGE", GRIORA_Average},
      {"BILINEAR", GRIORA_Bilinear},        {"CUBIC", GRIORA_Cubic},
      {"CUBICSPLINE", GRIORA_CubicSpline},  {"LANCZOS", GRIORA_Lanczos},
      {"MODE", GRIORA_Mode},                {"GAUSS", GRIORA_Gauss},
      {"RMS", GRIORA_RMS}};
  for (const auto& [algorithmName, algorithm] : kAlgorithms) {
    if (name == algorithmName) return algorithm;
  }
  throw Error("internal error: OVERVIEW_RESAMPLING=" + name + " has no GDAL algorithm");
}

WriteSettings parseSettings(CreationOptionList options) {
  CodecOptions given;
  for (CSLConstList option = options; option && *option; ++option) {
    char* key = nullptr;
    const char* value = CPLParseNameValue(*option, &key);
    if (key && value) given[CPLString(key).toupper()] = value;
    CPLFree(key);
  }
  const auto& declared = driverCreationOptions();
  const auto option = [&](const char* name) -> const OptionDeclaration& {
    return declarationOf(declared, name);
  };
  WriteSettings settings;
  // Not choiceOption: an unknown codec gets its own message (with what exists).
  settings.codecName = given.count("CODEC") ? given["CODEC"] : option("CODEC").defaultValue;
  settings.blockSize = integerOption(given, option("BLOCKSIZE"));
  const CodecDeclaration* codec = findCodecDeclaration(CPLString(settings.codecName).toupper());
  if (!given.count("BLOCKSIZE") && codec && codec->defaultBlockSize > 0) {
    settings.blockSize = codec->defaultBlockSize;
  }
  if (settings.blockSize % 16 != 0) {
    throw invalidOption("BLOCKSIZE=" + given["BLOCKSIZE"] + " is invalid: expected a multiple of 16");
  }
  settings.overviews = choiceOption(given, option("OVERVIEWS")) == "AUTO";
  settings.encoding.resampling = resamplingAlgorithm(choiceOption(given, option("OVERVIEW_RESAMPLING")));
  settings.encoding.threads = threadCountOption(
      given.count("NUM_THREADS") ? given["NUM_THREADS"].c_str() : nullptr);
  for (const auto& entry : given) {  // not a structured binding: clang 14 cannot capture one
    const std::string& key = entry.first;
    const bool driverOption = std::any_of(declared.begin(), declared.end(),
                                          [&](const OptionDeclaration& o) { return o.name == key; });
    if (!driverOption) settings.codecOptions[key] = entry.second;
  }
  return settings;
}

std::vector<LevelSize> levelSizes(int width, int height, bool overviews) {
  std::vector<LevelSize> levels{{width, height}};
  while (overviews && std::max(levels.back().width, levels.back().height) > kSmallestOverview &&
         levels.size() < size_t(kMaxLevels)) {
    levels.push_back({(levels.back().width + 1) / 2, (levels.back().height + 1) / 2});
  }
  return levels;
}

bool isCodecOption(const std::string& key) {
  const auto& codecs = codecCatalogue();
  return std::any_of(codecs.begin(), codecs.end(),
                     [&](const CodecDeclaration& codec) { return codec.readsOption(key); });
}

// The auxiliary summary is known only once every tile is coded: a large file's header is
// written first with placeholderAuxiliary() and this much room to spare, which covers the
// final numbers' digits however badly they compress.
constexpr size_t kAuxiliaryHeaderReserve = 64;

}  // namespace

GDALDataset* NSATDataset::CreateCopy(const char* filename, GDALDataset* source, int strict,
                                     CreationOptionList options, GDALProgressFunc progress,
                                     void* progressData) {
  if (!progress) progress = GDALDummyProgress;
  try {
    if (source->GetRasterCount() < 1) throw notSupported("the source has no raster band");
    const GDALDataType gdalType = source->GetRasterBand(1)->GetRasterDataType();
    for (int band = 2; band <= source->GetRasterCount(); ++band) {
      if (source->GetRasterBand(band)->GetRasterDataType() != gdalType) {
        throw notSupported("all bands must have the same data type");
      }
    }
    DataType type;
    if (!fromGdalType(gdalType, type)) {
      throw notSupported(std::string("data type ") + GDALGetDataTypeName(gdalType) +
                  " is not supported (NSAT stores Byte, UInt16, Int16, UInt32, Int32, Float32 "
                  "and Float64)");
    }
    const WriteSettings settings = parseSettings(options);
    const CodecDescriptor* descriptor = findCodec(settings.codecName);
    if (!descriptor) {
      throw invalidOption("CODEC=" + settings.codecName + " is unknown; available: " + codecNames());
    }
    const int bands = source->GetRasterCount();
    const std::string rejected = descriptor->rejectReason(type, bands);
    if (!rejected.empty()) {
      throw notSupported("CODEC=" + descriptor->name + " cannot code this image: " + rejected +
                  ". Codecs that accept " + dataTypeName(type) + " with " +
                  std::to_string(bands) + " band(s): " + codecNames(type, bands));
    }
    // Options no codec declares were already reported by GDAL's option validation. A
    // strict copy (gdal_translate -strict) may not drop what the user asked for.
    for (const auto& [key, value] : settings.codecOptions) {
      if (!descriptor->readsOption(key) && isCodecOption(key)) {
        const std::string ignored = "option " + key + " is ignored by CODEC=" + descriptor->name;
        if (strict) throw invalidOption(ignored + " (strict copy)");
        CPLError(CE_Warning, CPLE_NotSupported, "NSAT: %s", ignored.c_str());
      }
    }

    Header header;
    header.width = source->GetRasterXSize();
    header.height = source->GetRasterYSize();
    header.bands = bands;
    header.type = type;
    header.blockWidth = header.blockHeight = settings.blockSize;
    header.levels = levelSizes(header.width, header.height, settings.overviews);
    header.codecName = descriptor->name;
    CodecOptions codecOptions = settings.codecOptions;
    // No margin without neighbours: a one-tile image (an ML chip) stays a file that readers
    // from before OVERLAP open, with a header a few bytes shorter.
    if (descriptor->readsOption(kContextMarginOption) && !codecOptions.count(kContextMarginOption) &&
        header.tilesAcross(0) == 1 && header.tilesDown(0) == 1) {
      codecOptions[kContextMarginOption] = "0";
    }
    if (descriptor->conditionedOnScene) {
      SceneCondition condition = extractSceneCondition(*source);
      applyConditionOverrides(condition, options);
      codecOptions[kSceneConditionOption] = toJson(condition).dump();
    }
    header.codecParameters = descriptor->parametersFromOptions(codecOptions, type, bands);
    const std::unique_ptr<Codec> codec = descriptor->create(header.codecParameters);
    header.models = codec->models();
    const auto auxiliary = codec->auxiliary(bands, settings.blockSize);
    if (auxiliary && settings.blockSize % auxiliary->cellSize != 0) {
      throw invalidOption("BLOCKSIZE=" + std::to_string(settings.blockSize) + " must be a multiple of " +
                  std::to_string(auxiliary->cellSize) + " for CODEC=" + descriptor->name);
    }
    describeScene(*source, header);

    EncodeSettings encoding = settings.encoding;
    encoding.temporaryFolder = CPLGetDirname(filename);  // room like the target's, not /tmp's
    std::optional<RegionOfInterestRaster> regionOfInterest;
    const auto maskPath = settings.codecOptions.find(kRoiMaskOption);
    if (maskPath != settings.codecOptions.end() && descriptor->readsOption(kRoiMaskOption)) {
      regionOfInterest.emplace(maskPath->second, header.width, header.height);
      encoding.regionOfInterest = &*regionOfInterest;
    }
    if (auxiliary) header.auxiliary = placeholderAuxiliary(*auxiliary);
    ContainerWriter writer(filename, header, auxiliary ? kAuxiliaryHeaderReserve : 0);
    const AuxiliarySummary summary = encodeAllLevels(*source, writer, *codec, encoding,
                                                     auxiliary.has_value(), progress, progressData);
    if (auxiliary) {
      header.auxiliary = storedAuxiliary(*auxiliary, summary);
      writer.rewriteHeader(header);
    }
    writer.commit();
  } catch (const std::exception& e) {
    reportError(CE_Failure, e, ErrorSite::Write, std::string(filename) + " was not written");
    return nullptr;
  }
  GDALOpenInfo openInfo(filename, GA_ReadOnly);
  return Open(&openInfo);
}

}  // namespace nsat
