// CreateCopy: reads the source strip by strip, encodes tiles in parallel and writes
// them in a fixed order, so the output bytes do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <set>

#include "codecs/learned_module.h"
#include "codecs/thread_pool.h"
#include "codecs/registry.h"
#include "container/container_file.h"
#include "container/tile_payload.h"
#include "driver/nsat_auxiliary.h"
#include "driver/nsat_dataset.h"
#include "metadata/scene_description.h"

namespace nsat {

namespace {

// Errors CreateCopy reports with their own CPLE_* class (the rest: CPLE_AppDefined).
class InvalidOption : public Error {  // CPLE_IllegalArg
 public:
  using Error::Error;
};
class UnsupportedInput : public Error {  // CPLE_NotSupported
 public:
  using Error::Error;
};

constexpr int kDefaultBlockSize = 256;
// OVERVIEWS=AUTO halves the image until its larger side fits in this.
constexpr int kSmallestOverview = 256;

// Creation options the driver itself reads; every other option goes to the codec.
const std::set<std::string> kDriverOptions = {"CODEC", "BLOCKSIZE", "OVERVIEWS",
                                              "OVERVIEW_RESAMPLING", "NUM_THREADS"};

struct WriteSettings {
  std::string codecName = "LOSSLESS";
  int blockSize = kDefaultBlockSize;
  bool overviews = true;
  GDALRIOResampleAlg resampling = GRIORA_Average;
  int threads = 1;
  CodecOptions codecOptions;
};

GDALRIOResampleAlg parseResampling(const char* name) {
  static const std::pair<const char*, GDALRIOResampleAlg> kAlgorithms[] = {
      {"NEAREST", GRIORA_NearestNeighbour}, {"AVERAGE", GRIORA_Average},
      {"BILINEAR", GRIORA_Bilinear},        {"CUBIC", GRIORA_Cubic},
      {"CUBICSPLINE", GRIORA_CubicSpline},  {"LANCZOS", GRIORA_Lanczos},
      {"MODE", GRIORA_Mode},                {"GAUSS", GRIORA_Gauss},
      {"RMS", GRIORA_RMS}};
  for (const auto& [algorithmName, algorithm] : kAlgorithms) {
    if (EQUAL(name, algorithmName)) return algorithm;
  }
  throw InvalidOption(std::string("OVERVIEW_RESAMPLING=") + name + " is not a GDAL resampling");
}

int parseThreads(const char* text) {
  const int threads = parseThreadCount(text);
  if (threads == 0) {
    throw InvalidOption(std::string("NUM_THREADS=") + text +
                " is invalid: expected a number of threads (1..1024) or ALL_CPUS");
  }
  return threads;
}

WriteSettings parseSettings(CreationOptionList options) {
  WriteSettings settings;
  settings.codecName = CSLFetchNameValueDef(options, "CODEC", "LOSSLESS");
  const char* block = CSLFetchNameValueDef(options, "BLOCKSIZE", "256");
  char* end = nullptr;
  const long blockSize = std::strtol(block, &end, 10);
  settings.blockSize = (end != block && *end == '\0' && blockSize > 0 && blockSize <= kMaxBlockSize)
                           ? int(blockSize)
                           : 0;  // "256abc", "", out of range: refused below
  if (settings.blockSize < kMinBlockSize || settings.blockSize > kMaxBlockSize ||
      settings.blockSize % 16 != 0) {
    throw InvalidOption(std::string("BLOCKSIZE=") + block +
                " is invalid: expected a multiple of 16 from 16 to 4096");
  }
  const char* overviews = CSLFetchNameValueDef(options, "OVERVIEWS", "AUTO");
  if (!EQUAL(overviews, "AUTO") && !EQUAL(overviews, "NONE")) {
    throw InvalidOption(std::string("OVERVIEWS=") + overviews + " is invalid: expected AUTO or NONE");
  }
  settings.overviews = EQUAL(overviews, "AUTO");
  const char* resampling = CSLFetchNameValueDef(options, "OVERVIEW_RESAMPLING", "AVERAGE");
  settings.resampling = parseResampling(resampling);
  settings.threads = parseThreads(CSLFetchNameValueDef(
      options, "NUM_THREADS", CPLGetConfigOption("GDAL_NUM_THREADS", "ALL_CPUS")));
  for (CSLConstList option = options; option && *option; ++option) {
    char* key = nullptr;
    const char* value = CPLParseNameValue(*option, &key);
    if (key && value && !kDriverOptions.count(CPLString(key).toupper())) {
      settings.codecOptions[CPLString(key).toupper()] = value;
    }
    CPLFree(key);
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

// Reads rows [row, row + rows) of a level from the source, resampled for overviews,
// into a planar buffer of all bands.
void readStrip(GDALDataset& source, const Header& header, int level, int row, int rows,
               GDALRIOResampleAlg resampling, std::vector<uint8_t>& strip) {
  const LevelSize& size = header.levels[level];
  const size_t sampleSize = dataTypeSize(header.type);
  strip.resize(size_t(size.width) * rows * header.bands * sampleSize);
  const double scaleY = double(header.height) / size.height;
  const double top = row * scaleY;
  const double bottom = std::min<double>(header.height, (row + rows) * scaleY);
  const int firstRow = int(std::floor(top));
  const int lastRow = std::min(header.height, int(std::ceil(bottom)));

  GDALRasterIOExtraArg extra;
  INIT_RASTERIO_EXTRA_ARG(extra);
  extra.eResampleAlg = level == 0 ? GRIORA_NearestNeighbour : resampling;
  extra.bFloatingPointWindowValidity = TRUE;
  extra.dfXOff = 0;
  extra.dfYOff = top;
  extra.dfXSize = header.width;
  extra.dfYSize = bottom - top;
  const GSpacing pixelSpace = GSpacing(sampleSize);
  const GSpacing lineSpace = pixelSpace * size.width;
  const GSpacing bandSpace = lineSpace * rows;
  if (source.RasterIO(GF_Read, 0, firstRow, header.width, lastRow - firstRow, strip.data(),
                      size.width, rows, toGdalType(header.type), header.bands, nullptr,
                      pixelSpace, lineSpace, bandSpace, &extra) != CE_None) {
    throw Error("reading the source image failed");
  }
}

// Copies tile column `tileX` out of a strip into a planar tile buffer.
std::vector<uint8_t> cutTile(const std::vector<uint8_t>& strip, const Header& header, int level,
                             int stripRows, const TileShape& shape, int tileX) {
  const size_t sampleSize = dataTypeSize(header.type);
  const size_t stripLine = size_t(header.levels[level].width) * sampleSize;
  const size_t tileLine = size_t(shape.width) * sampleSize;
  std::vector<uint8_t> tile(shape.byteCount());
  for (int band = 0; band < shape.bands; ++band) {
    const uint8_t* in = strip.data() + size_t(band) * stripLine * stripRows +
                        size_t(tileX) * header.blockWidth * sampleSize;
    uint8_t* out = tile.data() + size_t(band) * shape.bytesPerBand();
    for (int row = 0; row < shape.height; ++row) {
      std::memcpy(out + row * tileLine, in + row * stripLine, tileLine);
    }
  }
  return tile;
}

bool isCodecOption(const std::string& key) {
  for (const auto& codec : allCodecs()) {
    const auto& names = codec.optionNames;
    if (std::find(names.begin(), names.end(), key) != names.end()) return true;
  }
  const auto& learned = learnedCodecOptionNames();
  return std::find(learned.begin(), learned.end(), key) != learned.end();
}

class CancelledByUser : public Error {
 public:
  CancelledByUser() : Error("cancelled by the user") {}
};

// Codes every tile of every level; returns the summary of the full-resolution level's
// auxiliary raster when `summarise` (tile by tile, in file order: the same for any
// thread count).
AuxiliarySummary encodeAllLevels(GDALDataset& source, ContainerWriter& writer, const Codec& codec,
                                 const WriteSettings& settings, bool summarise,
                                 GDALProgressFunc progress, void* progressData) {
  AuxiliarySummary summary;
  const Header& header = writer.header();
  double totalPixels = 0;
  for (const auto& level : header.levels) totalPixels += double(level.width) * level.height;
  double donePixels = 0;
  std::vector<uint8_t> strip;
  for (int level = 0; level < int(header.levels.size()); ++level) {
    const LevelSize& size = header.levels[level];
    for (int tileY = 0; tileY < header.tilesDown(level); ++tileY) {
      const int rows = std::min(header.blockHeight, size.height - tileY * header.blockHeight);
      readStrip(source, header, level, tileY * header.blockHeight, rows, settings.resampling,
                strip);
      std::vector<std::vector<uint8_t>> payloads(header.tilesAcross(level));
      std::vector<AuxiliarySummary> summaries(payloads.size());
      ThreadPool::shared().parallelFor(payloads.size(), settings.threads, [&](size_t tileX) {
        const TileShape shape = header.tileShape(level, int(tileX), tileY);
        const auto tile = cutTile(strip, header, level, rows, shape, int(tileX));
        payloads[tileX] = encodeTilePayload(codec, shape, tile.data(), header.nodata);
        if (summarise && level == 0) summaries[tileX] = summariseTile(codec, shape, payloads[tileX]);
      });
      for (size_t tileX = 0; tileX < payloads.size(); ++tileX) {
        writer.writeTile(level, int(tileX), tileY, payloads[tileX]);
        summary.add(summaries[tileX]);
      }
      donePixels += double(size.width) * rows;
      if (!progress(donePixels / totalPixels, nullptr, progressData)) throw CancelledByUser();
    }
  }
  return summary;
}

// Room in the header for the auxiliary raster's description and summary, which are
// known only once every tile is coded.
constexpr size_t kAuxiliaryHeaderReserve = 4096;

}  // namespace

GDALDataset* NSATDataset::CreateCopy(const char* filename, GDALDataset* source, int /*strict*/,
                                     CreationOptionList options, GDALProgressFunc progress,
                                     void* progressData) {
  if (!progress) progress = GDALDummyProgress;
  try {
    if (source->GetRasterCount() < 1) throw Error("the source has no raster band");
    const GDALDataType gdalType = source->GetRasterBand(1)->GetRasterDataType();
    for (int band = 2; band <= source->GetRasterCount(); ++band) {
      if (source->GetRasterBand(band)->GetRasterDataType() != gdalType) {
        throw UnsupportedInput("all bands must have the same data type");
      }
    }
    DataType type;
    if (!fromGdalType(gdalType, type)) {
      throw UnsupportedInput(std::string("data type ") + GDALGetDataTypeName(gdalType) +
                  " is not supported (NSAT stores Byte, UInt16, Int16, UInt32, Int32, Float32 "
                  "and Float64)");
    }
    const WriteSettings settings = parseSettings(options);
    const CodecDescriptor* descriptor = findCodec(settings.codecName);
    if (!descriptor) {
      throw InvalidOption("CODEC=" + settings.codecName + " is unknown; available: " + codecNames());
    }
    const int bands = source->GetRasterCount();
    const std::string rejected = descriptor->rejectReason(type, bands);
    if (!rejected.empty()) {
      throw UnsupportedInput("CODEC=" + descriptor->name + " cannot code this image: " + rejected +
                  ". Codecs that accept " + dataTypeName(type) + " with " +
                  std::to_string(bands) + " band(s): " + codecNames(type, bands));
    }
    // Options no codec declares were already reported by GDAL's option validation.
    for (const auto& [key, value] : settings.codecOptions) {
      const auto& names = descriptor->optionNames;
      if (std::find(names.begin(), names.end(), key) == names.end() && isCodecOption(key)) {
        CPLError(CE_Warning, CPLE_NotSupported, "NSAT: option %s is ignored by CODEC=%s",
                 key.c_str(), descriptor->name.c_str());
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
    header.codecParameters = descriptor->parametersFromOptions(settings.codecOptions, type, bands);
    const std::unique_ptr<Codec> codec = descriptor->create(header.codecParameters);
    header.models = codec->models();
    const auto auxiliary = codec->auxiliary(bands, settings.blockSize);
    if (auxiliary && settings.blockSize % auxiliary->cellSize != 0) {
      throw InvalidOption("BLOCKSIZE=" + std::to_string(settings.blockSize) + " must be a multiple of " +
                  std::to_string(auxiliary->cellSize) + " for CODEC=" + descriptor->name);
    }
    describeScene(*source, header);

    ContainerWriter writer(filename, header, auxiliary ? kAuxiliaryHeaderReserve : 0);
    const AuxiliarySummary summary = encodeAllLevels(*source, writer, *codec, settings,
                                                     auxiliary.has_value(), progress, progressData);
    if (auxiliary) {
      header.auxiliary = storedAuxiliary(*auxiliary, summary);
      writer.rewriteHeader(header);
    }
    writer.commit();
  } catch (const CancelledByUser&) {
    CPLError(CE_Failure, CPLE_UserInterrupt, "NSAT: cancelled; %s was not written", filename);
    return nullptr;
  } catch (const InvalidOption& e) {
    CPLError(CE_Failure, CPLE_IllegalArg, "NSAT: cannot write %s: %s", filename, e.what());
    return nullptr;
  } catch (const UnsupportedInput& e) {
    CPLError(CE_Failure, CPLE_NotSupported, "NSAT: cannot write %s: %s", filename, e.what());
    return nullptr;
  } catch (const std::exception& e) {
    CPLError(CE_Failure, CPLE_AppDefined, "NSAT: cannot write %s: %s", filename, e.what());
    return nullptr;
  }
  GDALOpenInfo openInfo(filename, GA_ReadOnly);
  return Open(&openInfo);
}

}  // namespace nsat
