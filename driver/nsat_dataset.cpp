#include "driver/nsat_dataset.h"

#include <cstring>

#include "codecs/registry.h"
#include "driver/nsat_auxiliary.h"
#include "container/tile_payload.h"
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

// ---------------------------------------------------------------- dataset

NSATDataset::NSATDataset(std::shared_ptr<const ContainerReader> reader,
                         std::shared_ptr<const Codec> codec, int level)
    : reader_(std::move(reader)), codec_(std::move(codec)), level_(level) {
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
      overviews_.push_back(std::make_unique<NSATDataset>(reader_, codec_, int(i)));
    }
  }
}

int NSATDataset::Identify(GDALOpenInfo* openInfo) {
  if (STARTS_WITH_CI(openInfo->pszFilename, kAuxiliaryPrefix)) return TRUE;
  return hasNsatMagic(openInfo->pabyHeader, size_t(openInfo->nHeaderBytes));
}

namespace {

std::shared_ptr<const Codec> codecOf(const Header& header) {
  const CodecDescriptor* descriptor = findCodec(header.codecName);
  if (!descriptor) {
    throw Error("codec '" + header.codecName + "' is not known to this NSAT driver (it knows " +
                codecNames() + ")");
  }
  return descriptor->create(header.codecParameters);
}

GDALDataset* openAuxiliary(const char* name) {
  const std::string path = name + std::strlen(kAuxiliaryPrefix);
  std::shared_ptr<const ContainerReader> reader = ContainerReader::open(path);
  std::shared_ptr<const Codec> codec = codecOf(reader->header());
  const auto description = codec->auxiliary(reader->header().bands, reader->header().blockWidth);
  if (!description) {
    throw Error("CODEC=" + reader->header().codecName + " stores no auxiliary raster");
  }
  auto dataset = std::make_unique<NSATAuxiliaryDataset>(reader, codec, *description);
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
      return openAuxiliary(openInfo->pszFilename);
    }
    std::shared_ptr<const ContainerReader> reader = ContainerReader::open(openInfo->pszFilename);
    const Header& header = reader->header();
    std::shared_ptr<const Codec> codec = codecOf(header);

    auto dataset = std::make_unique<NSATDataset>(reader, codec, 0);
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
    CPLError(CE_Failure, CPLE_OpenFailed, "NSAT: cannot open %s: %s", openInfo->pszFilename,
             e.what());
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

  auxiliary_ = codec_->auxiliary(header.bands, header.blockWidth);
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
}

// The auxiliary raster's summary reads every full-resolution tile, so it is made only
// when the default metadata domain is asked for (gdalinfo does).
void NSATDataset::summariseAuxiliaryOnce() {
  if (!auxiliary_ || auxiliarySummarised_ || level_ != 0) return;
  auxiliarySummarised_ = true;
  try {
    const AuxiliarySummary summary = summariseAuxiliary(*reader_, *codec_);
    if (summary.cells == 0) return;
    const std::string prefix = "NSAT_" + auxiliary_->name;
    const bool dirty = GetPamFlags() & GPF_DIRTY;
    GDALPamDataset::SetMetadataItem((prefix + "_MEAN").c_str(), CPLSPrintf("%.2f", summary.mean));
    GDALPamDataset::SetMetadataItem((prefix + "_MIN").c_str(), CPLSPrintf("%.2f", summary.minimum));
    GDALPamDataset::SetMetadataItem((prefix + "_MAX").c_str(), CPLSPrintf("%.2f", summary.maximum));
    if (!dirty) SetPamFlags(GetPamFlags() & ~GPF_DIRTY);
  } catch (const std::exception& e) {
    CPLError(CE_Warning, CPLE_AppDefined, "NSAT: %s: cannot summarise %s: %s", GetDescription(),
             auxiliary_->name.c_str(), e.what());
  }
}

char** NSATDataset::GetMetadata(const char* domain) {
  if (domain == nullptr || domain[0] == '\0') summariseAuxiliaryOnce();
  return GDALPamDataset::GetMetadata(domain);
}

const char* NSATDataset::GetMetadataItem(const char* name, const char* domain) {
  if ((domain == nullptr || domain[0] == '\0') && name && STARTS_WITH_CI(name, "NSAT_")) {
    summariseAuxiliaryOnce();
  }
  return GDALPamDataset::GetMetadataItem(name, domain);
}

std::shared_ptr<const std::vector<uint8_t>> NSATDataset::decodedTile(int blockX, int blockY) {
  {
    std::lock_guard<std::mutex> lock(cacheMutex_);
    if (cachedTile_ && cachedX_ == blockX && cachedY_ == blockY) return cachedTile_;
  }
  const Header& header = reader_->header();
  const TileShape shape = header.tileShape(level_, blockX, blockY);
  const std::vector<uint8_t> payload = reader_->readTile(level_, blockX, blockY);
  auto pixels = std::make_shared<std::vector<uint8_t>>(shape.byteCount());
  decodeTilePayload(*codec_, shape, payload.data(), payload.size(), header.nodata,
                    pixels->data());
  std::lock_guard<std::mutex> lock(cacheMutex_);
  cachedX_ = blockX;
  cachedY_ = blockY;
  cachedTile_ = pixels;
  return pixels;
}

CPLErr NSATDataset::readBlock(int blockX, int blockY, int band, void* image) {
  const Header& header = reader_->header();
  std::shared_ptr<const std::vector<uint8_t>> tile;
  try {
    tile = decodedTile(blockX, blockY);
  } catch (const std::exception& e) {
    CPLError(CE_Failure, CPLE_AppDefined, "NSAT: %s: %s", GetDescription(), e.what());
    return CE_Failure;
  }
  const TileShape shape = header.tileShape(level_, blockX, blockY);
  const size_t sampleSize = dataTypeSize(header.type);
  const size_t tileRow = size_t(shape.width) * sampleSize;
  const size_t blockRow = size_t(header.blockWidth) * sampleSize;

  // Copies one band of the tile into a full-size block; edge blocks are zero-padded.
  auto copyBand = [&](int bandIndex, void* destination) {
    auto* out = static_cast<uint8_t*>(destination);
    if (shape.width != header.blockWidth || shape.height != header.blockHeight) {
      std::memset(out, 0, blockRow * header.blockHeight);
    }
    const uint8_t* in = tile->data() + size_t(bandIndex - 1) * shape.bytesPerBand();
    for (int row = 0; row < shape.height; ++row) {
      std::memcpy(out + row * blockRow, in + row * tileRow, tileRow);
    }
  };
  copyBand(band, image);

  // Fill the other bands' cached blocks now, as GDAL's GTiff driver does for
  // pixel-interleaved data, so reading all bands decodes each tile once.
  for (int other = 1; other <= nBands; ++other) {
    if (other == band) continue;
    GDALRasterBand* otherBand = GetRasterBand(other);
    if (GDALRasterBlock* cached = otherBand->TryGetLockedBlockRef(blockX, blockY)) {
      cached->DropLock();
      continue;
    }
    GDALRasterBlock* block = otherBand->GetLockedBlockRef(blockX, blockY, TRUE);
    if (!block) continue;
    copyBand(other, block->GetDataRef());
    block->DropLock();
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

// From the header, for overview levels too (they have no PAM of their own).
double NSATRasterBand::GetNoDataValue(int* hasNodata) {
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
