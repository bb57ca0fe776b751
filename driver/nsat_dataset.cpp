#include "driver/nsat_dataset.h"

#include <algorithm>
#include <cstring>

#include "codecs/learned_module.h"
#include "codecs/registry.h"
#include "driver/nsat_auxiliary.h"
#include "driver/nsat_errors.h"
#include "driver/nsat_options.h"
#include "container/tile_payload.h"
#include "metadata/scene_condition.h"
#include "metadata/scene_description.h"

namespace nsat {

GDALDataType toGdalType(DataType type) {
  switch (type) {
    case DataType::Byte: return GDT_Byte;
    case DataType::UInt16: return GDT_UInt16;
    case DataType::Int16: return GDT_Int16;
    case DataType::UInt32: return GDT_UInt32;
    case DataType::Int32: return GDT_Int32;
    case DataType::Float32: return GDT_Float32;
    case DataType::Float64: return GDT_Float64;
  }
  return GDT_Unknown;
}

bool fromGdalType(GDALDataType gdalType, DataType& type) {
  for (DataType candidate : {DataType::Byte, DataType::UInt16, DataType::Int16, DataType::UInt32,
                             DataType::Int32, DataType::Float32, DataType::Float64}) {
    if (toGdalType(candidate) == gdalType) {
      type = candidate;
      return true;
    }
  }
  return false;
}

namespace {

std::shared_ptr<const Codec> codecOf(const Header& header,
                                     const nlohmann::json& openOptions = nlohmann::json()) {
  const CodecDescriptor* descriptor = findCodec(header.codecName);
  if (!descriptor) {
    throw Error("codec '" + header.codecName + "' is not known to this NSAT driver (it knows " +
                    codecNames() + ")",
                ErrorKind::NotSupported);
  }
  if (openOptions.empty()) return descriptor->create(header.codecParameters);
  nlohmann::json parameters = header.codecParameters;
  parameters[kOpenOptionsParameter] = openOptions;
  return descriptor->create(parameters);
}

// The codec open options given (checked against their declarations), as create() takes
// them; a warning for those this file's codec does not read.
nlohmann::json codecOpenOptions(const Header& header, CSLConstList given) {
  nlohmann::json chosen = nlohmann::json::object();
  const CodecDeclaration* declared = findCodecDeclaration(header.codecName);
  for (const auto& codec : codecCatalogue()) {
    for (const auto& option : codec.openOptions) {
      const char* value = CSLFetchNameValue(given, option.name.c_str());
      if (!value || chosen.contains(option.name)) continue;
      const bool reads =
          declared && std::any_of(declared->openOptions.begin(), declared->openOptions.end(),
                                  [&](const auto& own) { return own.name == option.name; });
      if (!reads) {
        CPLError(CE_Warning, CPLE_NotSupported,
                 "NSAT: open option %s is ignored by NSAT_CODEC=%s files", option.name.c_str(),
                 header.codecName.c_str());
        continue;
      }
      chosen[option.name] = choiceOption({{option.name, value}}, option);
    }
  }
  return chosen;
}

// Tiles decoded at once by one prefetch: a row of tiles of any usual image (fewer
// waits for the slowest tile), few enough that memory stays flat whatever the request.
constexpr size_t kMaxTilesInFlight = 64;

}  // namespace

// ---------------------------------------------------------------- lazy codec

LazyCodec::LazyCodec(std::shared_ptr<const ContainerReader> reader, nlohmann::json openOptions)
    : reader_(std::move(reader)), openOptions_(std::move(openOptions)) {}

const Codec& LazyCodec::get() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!codec_) codec_ = codecOf(reader_->header(), openOptions_);
  return *codec_;
}

// ---------------------------------------------------------------- dataset

NSATDataset::NSATDataset(std::shared_ptr<const ContainerReader> reader,
                         std::shared_ptr<const LazyCodec> codec, int level, int threads)
    : reader_(std::move(reader)), codec_(std::move(codec)), level_(level), threads_(threads) {
  const Header& header = reader_->header();
  nRasterXSize = header.levels[level].width;
  nRasterYSize = header.levels[level].height;
  eAccess = GA_ReadOnly;
  for (int band = 1; band <= header.bands; ++band) {
    SetBand(band, new NSATRasterBand(this, band, toGdalType(header.type), header.blockWidth,
                                     header.blockHeight));
  }
  if (level == 0) {
    for (size_t i = 1; i < header.levels.size(); ++i) {
      overviews_.push_back(std::make_unique<NSATDataset>(reader_, codec_, int(i), threads));
    }
  }
}

int NSATDataset::Identify(GDALOpenInfo* openInfo) {
  if (STARTS_WITH_CI(openInfo->pszFilename, kAuxiliaryPrefix) ||
      STARTS_WITH_CI(openInfo->pszFilename, kLatentPrefix)) {
    return TRUE;
  }
  return hasNsatMagic(openInfo->pabyHeader, size_t(openInfo->nHeaderBytes));
}

namespace {

GDALDataset* openCellRaster(const char* name, CellRaster kind) {
  const char* prefix = kind == CellRaster::Auxiliary ? kAuxiliaryPrefix : kLatentPrefix;
  const std::string path = name + std::strlen(prefix);
  std::shared_ptr<const ContainerReader> reader = ContainerReader::open(path);
  std::shared_ptr<const Codec> codec = codecOf(reader->header());
  const int bands = reader->header().bands, tileSize = reader->header().blockWidth;
  const auto description = kind == CellRaster::Auxiliary ? codec->auxiliary(bands, tileSize)
                                                         : codec->latentIndices(bands, tileSize);
  if (!description) {
    throw Error("CODEC=" + reader->header().codecName + " stores no " +
                    (kind == CellRaster::Auxiliary ? "auxiliary raster" : "latent indices"),
                ErrorKind::NotSupported);
  }
  auto dataset = std::make_unique<NSATAuxiliaryDataset>(reader, codec, *description, kind);
  dataset->SetDescription(name);
  dataset->SetPamFlags(dataset->GetPamFlags() | GPF_DISABLED);
  return dataset.release();
}

}  // namespace

GDALDataset* NSATDataset::Open(GDALOpenInfo* openInfo) {
  if (!Identify(openInfo)) return nullptr;
  if (openInfo->eAccess == GA_Update) {
    CPLError(CE_Failure, CPLE_NotSupported,
             "NSAT: files are read-only; write a new one with gdal_translate -of NSAT "
             "(gdaladdo -ro builds external overviews)");
    return nullptr;
  }
  try {
    if (STARTS_WITH_CI(openInfo->pszFilename, kAuxiliaryPrefix)) {
      return openCellRaster(openInfo->pszFilename, CellRaster::Auxiliary);
    }
    if (STARTS_WITH_CI(openInfo->pszFilename, kLatentPrefix)) {
      return openCellRaster(openInfo->pszFilename, CellRaster::LatentIndices);
    }
    const int threads =
        threadCountOption(CSLFetchNameValue(openInfo->papszOpenOptions, "NUM_THREADS"));
    std::shared_ptr<const ContainerReader> reader = ContainerReader::open(openInfo->pszFilename);
    const Header& header = reader->header();
    auto codec = std::make_shared<const LazyCodec>(
        reader, codecOpenOptions(header, openInfo->papszOpenOptions));
    // Built-in codecs are cheap: build them now, so a file with bad codec parameters
    // fails to open. A learned codec waits for the first pixel.
    const CodecDeclaration* declared = findCodecDeclaration(header.codecName);
    if (!declared || !declared->learned) codec->get();

    auto dataset = std::make_unique<NSATDataset>(reader, codec, 0, threads);
    dataset->SetDescription(openInfo->pszFilename);
    applySceneDescription(header, *dataset);
    dataset->describeStorage();
    // PAM overrides (.aux.xml) come last; what the header set is not "dirty".
    dataset->TryLoadXML(openInfo->GetSiblingFiles());
    dataset->SetPamFlags(dataset->GetPamFlags() & ~GPF_DIRTY);
    dataset->oOvManager.Initialize(dataset.get(), openInfo->pszFilename,
                                   openInfo->GetSiblingFiles());
    return dataset.release();
  } catch (const std::exception& e) {
    reportError(CE_Failure, e, ErrorSite::Open,
                std::string("cannot open ") + openInfo->pszFilename);
    return nullptr;
  }
}

void NSATDataset::describeStorage() {
  const Header& header = reader_->header();
  const double pixels = double(header.width) * header.height;
  const double bits = 8.0 * double(reader_->levelPayloadBytes(0));
  const double rawBits = pixels * header.bands * 8.0 * double(dataTypeSize(header.type));
  std::string models;
  for (const auto& model : header.models) {
    models += (models.empty() ? "" : ",") + model.id + ":" + model.sha256;
  }
  // gdalinfo prints IMAGE_STRUCTURE by default, so the codec and the achieved rate
  // are visible without asking for a domain.
  const char* domain = "IMAGE_STRUCTURE";
  // Not COMPRESSION: rasterio maps that item onto a fixed list of GDAL codecs.
  SetMetadataItem("NSAT_CODEC", header.codecName.c_str(), domain);
  SetMetadataItem("INTERLEAVE", "PIXEL", domain);
  SetMetadataItem("NSAT_FORMAT_VERSION",
                  CPLSPrintf("%d.%d", kFormatMajor, reader_->formatMinor()), domain);
  SetMetadataItem("NSAT_CODEC_PARAMETERS", header.codecParameters.dump().c_str(), domain);
  if (!models.empty()) SetMetadataItem("NSAT_MODELS", models.c_str(), domain);
  SetMetadataItem("NSAT_INTERNAL_OVERVIEWS", CPLSPrintf("%d", int(header.levels.size()) - 1),
                  domain);
  // Payload of the full-resolution level; overviews and header excluded.
  SetMetadataItem("NSAT_BITS_PER_PIXEL", CPLSPrintf("%.4f", bits / pixels), domain);
  SetMetadataItem("NSAT_BITS_PER_SAMPLE", CPLSPrintf("%.4f", bits / (pixels * header.bands)),
                  domain);
  SetMetadataItem("NSAT_COMPRESSION_RATIO", CPLSPrintf("%.3f", rawBits / bits), domain);
  // DIFFUSION: the scene condition its refiner decodes with, and where each value came from.
  if (const auto stored = header.codecParameters.find("scene_condition");
      stored != header.codecParameters.end()) {
    for (const std::string& line : describe(sceneConditionFromJson(*stored))) {
      const size_t equals = line.find('=');
      SetMetadataItem(("NSAT_CONDITION_" + line.substr(0, equals)).c_str(),
                      line.substr(equals + 1).c_str(), domain);
    }
  }

  // Files store their auxiliary raster's description and summary; for older files
  // only the codec knows them, so a learned codec is built here if it may have one.
  AuxiliaryDescription stored;
  AuxiliarySummary summary;
  if (readStoredAuxiliary(header, stored, summary)) {
    auxiliary_ = stored;
    storedSummary_ = summary;
  } else if (const CodecDeclaration* declared = findCodecDeclaration(header.codecName);
             !declared || !declared->learned || declared->mayStoreAuxiliary) {
    auxiliary_ = codec_->get().auxiliary(header.bands, header.blockWidth);
  }
  if (auxiliary_) {
    SetMetadataItem("SUBDATASET_1_NAME", (std::string(kAuxiliaryPrefix) + GetDescription()).c_str(),
                    "SUBDATASETS");
    SetMetadataItem("SUBDATASET_1_DESC",
                    (auxiliary_->name + ": " + auxiliary_->description + " (" +
                     (auxiliary_->unit.empty() ? "" : auxiliary_->unit + ", ") + "one value per " +
                     std::to_string(auxiliary_->cellSize) + " px cell)")
                        .c_str(),
                    "SUBDATASETS");
  }
  // VQ: the codebook indices, described from the header (no model is loaded to open).
  if (const CodecDeclaration* declared = findCodecDeclaration(header.codecName);
      declared && declared->storesLatentIndices) {
    const int index = auxiliary_ ? 2 : 1;
    SetMetadataItem(CPLSPrintf("SUBDATASET_%d_NAME", index),
                    (std::string(kLatentPrefix) + GetDescription()).c_str(), "SUBDATASETS");
    SetMetadataItem(CPLSPrintf("SUBDATASET_%d_DESC", index),
                    ("VQ_INDEX: codebook indices of model " +
                     header.codecParameters.value("model", std::string("?")) +
                     " on the latent grid (one UInt16 band per level and codebook group)")
                        .c_str(),
                    "SUBDATASETS");
  }
}

// Files written before the summary was stored need every full-resolution tile read for
// it, so it is made only when the default metadata domain is asked for (gdalinfo does).
void NSATDataset::summariseAuxiliaryOnce() {
  std::lock_guard<std::mutex> lock(auxiliaryMutex_);
  if (!auxiliary_ || auxiliarySummarised_ || level_ != 0) return;
  auxiliarySummarised_ = true;
  try {
    const AuxiliarySummary summary =
        storedSummary_ ? *storedSummary_ : summariseAuxiliary(*reader_, codec_->get());
    if (summary.cells == 0) return;
    const std::string prefix = "NSAT_" + auxiliary_->name;
    const bool dirty = GetPamFlags() & GPF_DIRTY;
    GDALPamDataset::SetMetadataItem((prefix + "_MEAN").c_str(), CPLSPrintf("%.2f", summary.mean()));
    GDALPamDataset::SetMetadataItem((prefix + "_MIN").c_str(), CPLSPrintf("%.2f", summary.minimum));
    GDALPamDataset::SetMetadataItem((prefix + "_MAX").c_str(), CPLSPrintf("%.2f", summary.maximum));
    if (!dirty) SetPamFlags(GetPamFlags() & ~GPF_DIRTY);
  } catch (const std::exception& e) {
    reportError(CE_Warning, e, ErrorSite::Read,
                std::string(GetDescription()) + ": cannot summarise " + auxiliary_->name);
  }
}

MetadataList NSATDataset::GetMetadata(const char* domain) {
  if (domain == nullptr || domain[0] == '\0') summariseAuxiliaryOnce();
  return GDALPamDataset::GetMetadata(domain);
}

const char* NSATDataset::GetMetadataItem(const char* name, const char* domain) {
  if ((domain == nullptr || domain[0] == '\0') && name && STARTS_WITH_CI(name, "NSAT_")) {
    summariseAuxiliaryOnce();
  }
  return GDALPamDataset::GetMetadataItem(name, domain);
}

std::vector<uint8_t> NSATDataset::decodeTile(int blockX, int blockY,
                                              const Parallelism& parallelism) const {
  return decodePayload(blockX, blockY, reader_->readTile(level_, blockX, blockY), parallelism);
}

std::vector<uint8_t> NSATDataset::decodePayload(int blockX, int blockY,
                                                const std::vector<uint8_t>& payload,
                                                const Parallelism& parallelism) const {
  const Header& header = reader_->header();
  const TileShape shape = header.tileShape(level_, blockX, blockY);
  std::vector<uint8_t> pixels(shape.byteCount());
  decodeTilePayload(codec_->get(), shape, payload.data(), payload.size(), header.nodata,
                    pixels.data(), parallelism);
  return pixels;
}

std::shared_ptr<const std::vector<uint8_t>> NSATDataset::decodedTile(int blockX, int blockY) {
  {
    std::lock_guard<std::mutex> lock(cacheMutex_);
    if (cachedTile_ && cachedX_ == blockX && cachedY_ == blockY) return cachedTile_;
  }
  // One tile alone: it may use every thread.
  auto pixels = std::make_shared<const std::vector<uint8_t>>(
      decodeTile(blockX, blockY, Parallelism{&ThreadPool::shared(), threads_}));
  std::lock_guard<std::mutex> lock(cacheMutex_);
  cachedX_ = blockX;
  cachedY_ = blockY;
  cachedTile_ = pixels;
  return pixels;
}

void NSATDataset::copyBand(const std::vector<uint8_t>& tile, int blockX, int blockY, int band,
                           void* block) const {
  const Header& header = reader_->header();
  const TileShape shape = header.tileShape(level_, blockX, blockY);
  const size_t sampleSize = dataTypeSize(header.type);
  const size_t tileRow = size_t(shape.width) * sampleSize;
  const size_t blockRow = size_t(header.blockWidth) * sampleSize;
  auto* out = static_cast<uint8_t*>(block);
  if (shape.width != header.blockWidth || shape.height != header.blockHeight) {
    std::memset(out, 0, blockRow * header.blockHeight);
  }
  const uint8_t* in = tile.data() + size_t(band - 1) * shape.bytesPerBand();
  for (int row = 0; row < shape.height; ++row) {
    std::memcpy(out + row * blockRow, in + row * tileRow, tileRow);
  }
}

// As GDAL's GTiff driver does for pixel-interleaved data, so reading all bands
// decodes each tile once.
void NSATDataset::fillCachedBlocks(const std::vector<uint8_t>& tile, int blockX, int blockY,
                                   int skipBand) {
  for (int band = 1; band <= nBands; ++band) {
    if (band == skipBand) continue;
    GDALRasterBand* rasterBand = GetRasterBand(band);
    if (GDALRasterBlock* cached = rasterBand->TryGetLockedBlockRef(blockX, blockY)) {
      cached->DropLock();
      continue;
    }
    GDALRasterBlock* block = rasterBand->GetLockedBlockRef(blockX, blockY, TRUE);
    if (!block) continue;
    copyBand(tile, blockX, blockY, band, block->GetDataRef());
    block->DropLock();
  }
}

CPLErr NSATDataset::readBlock(int blockX, int blockY, int band, void* image) {
  std::shared_ptr<const std::vector<uint8_t>> tile;
  try {
    tile = decodedTile(blockX, blockY);
  } catch (const std::exception& e) {
    reportError(CE_Failure, e, ErrorSite::Read, GetDescription());
    return CE_Failure;
  }
  copyBand(*tile, blockX, blockY, band, image);
  fillCachedBlocks(*tile, blockX, blockY, band);
  return CE_None;
}

bool NSATDataset::prefetchTiles(const std::vector<std::pair<int, int>>& tiles) {
  std::vector<std::vector<uint8_t>> decoded(tiles.size());
  try {
    // One multi-range read for all of them (exact byte ranges over /vsicurl/), then
    // one thread per tile.
    const std::vector<std::vector<uint8_t>> payloads = reader_->readTiles(level_, tiles);
    ThreadPool::shared().parallelFor(tiles.size(), threads_, [&](size_t i) {
      decoded[i] = decodePayload(tiles[i].first, tiles[i].second, payloads[i], Parallelism());
    });
  } catch (const std::exception& e) {
    reportError(CE_Failure, e, ErrorSite::Read, GetDescription());
    return false;
  }
  for (size_t i = 0; i < tiles.size(); ++i) {
    fillCachedBlocks(decoded[i], tiles[i].first, tiles[i].second, 0);
  }
  return true;
}

// Also with one thread: one multi-range read of the window's tiles is what keeps a
// /vsicurl/ read to their exact bytes.
bool NSATDataset::prefetch(int xOffset, int yOffset, int xSize, int ySize) {
  if (xSize <= 0 || ySize <= 0) return true;
  const Header& header = reader_->header();
  const int firstX = xOffset / header.blockWidth, lastX = (xOffset + xSize - 1) / header.blockWidth;
  const int firstY = yOffset / header.blockHeight, lastY = (yOffset + ySize - 1) / header.blockHeight;
  GDALRasterBand* firstBand = GetRasterBand(1);
  std::vector<std::pair<int, int>> missing;
  for (int y = firstY; y <= lastY; ++y) {
    for (int x = firstX; x <= lastX; ++x) {
      if (GDALRasterBlock* cached = firstBand->TryGetLockedBlockRef(x, y)) {
        cached->DropLock();
      } else {
        missing.emplace_back(x, y);
      }
    }
  }
  // A single tile is decoded by readBlock, with the threads inside the tile.
  if (missing.size() < 2) return true;
  const size_t batch = std::max(kMaxTilesInFlight, size_t(threads_));
  for (size_t first = 0; first < missing.size(); first += batch) {
    const std::vector<std::pair<int, int>> tiles(
        missing.begin() + first, missing.begin() + std::min(missing.size(), first + batch));
    if (!prefetchTiles(tiles)) return false;
  }
  return true;
}

CPLErr NSATDataset::IRasterIO(GDALRWFlag flag, int xOffset, int yOffset, int xSize, int ySize,
                              void* data, int bufferXSize, int bufferYSize,
                              GDALDataType bufferType, int bandCount, BandMap bandMap,
                              GSpacing pixelSpace, GSpacing lineSpace, GSpacing bandSpace,
                              GDALRasterIOExtraArg* extra) {
  const bool fullResolution = bufferXSize == xSize && bufferYSize == ySize;
  if (flag != GF_Read || !fullResolution) {
    // Resampled reads may be served by an overview: let GDAL choose, block by block.
    return GDALPamDataset::IRasterIO(flag, xOffset, yOffset, xSize, ySize, data, bufferXSize,
                                     bufferYSize, bufferType, bandCount, bandMap, pixelSpace,
                                     lineSpace, bandSpace, extra);
  }
  // One row of tiles at a time: its tiles are in the block cache when GDAL copies them
  // out, however large the request and however small the cache.
  const int blockHeight = reader_->header().blockHeight;
  for (int top = yOffset; top < yOffset + ySize;) {
    const int bottom = std::min(yOffset + ySize, (top / blockHeight + 1) * blockHeight);
    if (!prefetch(xOffset, top, xSize, bottom - top)) return CE_Failure;
    GDALRasterIOExtraArg rowExtra;
    INIT_RASTERIO_EXTRA_ARG(rowExtra);
    if (extra) rowExtra.eResampleAlg = extra->eResampleAlg;
    auto* rowData = static_cast<GByte*>(data) + (top - yOffset) * lineSpace;
    const CPLErr result = GDALPamDataset::IRasterIO(
        flag, xOffset, top, xSize, bottom - top, rowData, xSize, bottom - top, bufferType,
        bandCount, bandMap, pixelSpace, lineSpace, bandSpace, &rowExtra);
    if (result != CE_None) return result;
    if (extra && extra->pfnProgress &&
        !extra->pfnProgress(double(bottom - yOffset) / ySize, "", extra->pProgressData)) {
      CPLError(CE_Failure, CPLE_UserInterrupt, "User terminated");
      return CE_Failure;
    }
    top = bottom;
  }
  return CE_None;
}

CPLErr NSATDataset::IBuildOverviews(const char* resampling, int overviewCount,
                                    const int* overviewList, int bandCount, const int* bandList,
                                    GDALProgressFunc progress, void* progressData,
                                    CSLConstList options) {
  buildingExternalOverviews_ = true;
  const CPLErr result =
      GDALPamDataset::IBuildOverviews(resampling, overviewCount, overviewList, bandCount,
                                      bandList, progress, progressData, options);
  buildingExternalOverviews_ = false;
  return result;
}

// ---------------------------------------------------------------- band

NSATRasterBand::NSATRasterBand(NSATDataset* dataset, int band, GDALDataType type, int blockWidth,
                               int blockHeight) {
  poDS = dataset;
  nBand = band;
  eDataType = type;
  nBlockXSize = blockWidth;
  nBlockYSize = blockHeight;
}

CPLErr NSATRasterBand::IReadBlock(int blockX, int blockY, void* image) {
  return static_cast<NSATDataset*>(poDS)->readBlock(blockX, blockY, nBand, image);
}

// QGIS reads band by band: the first band's read decodes the window's tiles in
// parallel and fills every band's blocks.
CPLErr NSATRasterBand::IRasterIO(GDALRWFlag flag, int xOffset, int yOffset, int xSize,
                                 int ySize, void* data, int bufferXSize, int bufferYSize,
                                 GDALDataType bufferType, GSpacing pixelSpace, GSpacing lineSpace,
                                 GDALRasterIOExtraArg* extra) {
  if (flag == GF_Read && bufferXSize == xSize && bufferYSize == ySize &&
      !static_cast<NSATDataset*>(poDS)->prefetch(xOffset, yOffset, xSize, ySize)) {
    return CE_Failure;
  }
  return GDALPamRasterBand::IRasterIO(flag, xOffset, yOffset, xSize, ySize, data, bufferXSize,
                                      bufferYSize, bufferType, pixelSpace, lineSpace, extra);
}

// A value set later with SetNoDataValue (kept in the .aux.xml) wins; otherwise the
// header's, for overview levels too (they have no PAM of their own).
double NSATRasterBand::GetNoDataValue(int* hasNodata) {
  int fromPam = FALSE;
  const double pamValue = GDALPamRasterBand::GetNoDataValue(&fromPam);
  if (fromPam) {
    if (hasNodata) *hasNodata = TRUE;
    return pamValue;
  }
  const auto& nodata = static_cast<NSATDataset*>(poDS)->header().nodata[size_t(nBand - 1)];
  if (hasNodata) *hasNodata = nodata.has_value();
  return nodata.value_or(0.0);
}

int NSATRasterBand::GetOverviewCount() {
  const int external = GDALPamRasterBand::GetOverviewCount();
  if (external > 0) return external;
  return static_cast<NSATDataset*>(poDS)->internalOverviewCount();
}

GDALRasterBand* NSATRasterBand::GetOverview(int i) {
  if (GDALPamRasterBand::GetOverviewCount() > 0) return GDALPamRasterBand::GetOverview(i);
  auto* dataset = static_cast<NSATDataset*>(poDS);
  if (i < 0 || i >= dataset->internalOverviewCount()) return nullptr;
  return dataset->internalOverview(i)->GetRasterBand(nBand);
}

}  // namespace nsat
