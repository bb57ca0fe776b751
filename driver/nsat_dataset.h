// The GDAL side of NSAT: a read-only dataset over one container level, whose bands
// decode tiles on demand, plus CreateCopy (nsat_createcopy.cpp).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include <gdal_pam.h>

#include "codecs/codec.h"
#include "container/container_file.h"
#include "driver/nsat_auxiliary.h"

namespace nsat {

// Driver API types that later GDAL versions made const (built and tested with 3.6 and
// 3.10; the later guards follow GDAL's headers): the band map of IRasterIO (3.7), the
// metadata lists and CreateCopy's options (3.13).
#ifdef BANDMAP_TYPE
using BandMap = BANDMAP_TYPE;
#else
using BandMap = int*;
#endif
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 13, 0)
using MetadataList = CSLConstList;
using CreationOptionList = CSLConstList;
#else
using MetadataList = char**;
using CreationOptionList = char**;
#endif

// A file's codec, built on first use. Building a learned codec loads LibTorch and the
// model's weights, which `gdalinfo` and every other metadata-only open never need;
// a missing module or model is then reported on the first pixel read, by name.
class LazyCodec {
 public:
  // `openOptions`: the codec open options given (REFINEMENT), passed to its create().
  LazyCodec(std::shared_ptr<const ContainerReader> reader, nlohmann::json openOptions);
  // Throws nsat::Error if the codec cannot be built (again on every call).
  const Codec& get() const;

 private:
  std::shared_ptr<const ContainerReader> reader_;
  nlohmann::json openOptions_;
  mutable std::mutex mutex_;
  mutable std::shared_ptr<const Codec> codec_;
};

class NSATDataset final : public GDALPamDataset {
 public:
  static int Identify(GDALOpenInfo* openInfo);
  static GDALDataset* Open(GDALOpenInfo* openInfo);
  static GDALDataset* CreateCopy(const char* filename, GDALDataset* source, int strict,
                                 CreationOptionList options, GDALProgressFunc progress,
                                 void* progressData);

  NSATDataset(std::shared_ptr<const ContainerReader> reader, std::shared_ptr<const LazyCodec> codec,
              int level, int threads);

  // gdaladdo on an NSAT file writes an external .ovr, even when internal levels exist.
  CPLErr IBuildOverviews(const char* resampling, int overviewCount, const int* overviewList,
                         int bandCount, const int* bandList, GDALProgressFunc progress,
                         void* progressData, CSLConstList options) override;

  // Zero while gdaladdo builds external overviews, which must not be matched
  // against (and written into) the read-only internal levels.
  const Header& header() const { return reader_->header(); }

  int internalOverviewCount() const {
    return buildingExternalOverviews_ ? 0 : int(overviews_.size());
  }
  NSATDataset* internalOverview(int i) const { return overviews_[size_t(i)].get(); }
  // The default domain adds the summary of the codec's auxiliary raster, if any.
  MetadataList GetMetadata(const char* domain = "") override;
  const char* GetMetadataItem(const char* name, const char* domain = "") override;

  // Decodes the tile once and serves every band's block from it.
  CPLErr readBlock(int blockX, int blockY, int band, void* image);

  // Reads of many blocks decode the tiles they cover on the pool first (one thread per
  // tile), then GDAL's block-based path serves them from its cache.
  CPLErr IRasterIO(GDALRWFlag flag, int xOffset, int yOffset, int xSize, int ySize, void* data,
                   int bufferXSize, int bufferYSize, GDALDataType bufferType, int bandCount,
                   BandMap bandMap, GSpacing pixelSpace, GSpacing lineSpace, GSpacing bandSpace,
                   GDALRasterIOExtraArg* extra) override;
  // Decodes, in parallel, the tiles of this window that GDAL's block cache lacks and
  // puts every band of them there. Returns false (with a CPLError) on a decode error.
  bool prefetch(int xOffset, int yOffset, int xSize, int ySize);

 private:
  // Decoded planar tile, cached so the other bands' blocks need no second decode.
  std::shared_ptr<const std::vector<uint8_t>> decodedTile(int blockX, int blockY);
  std::vector<uint8_t> decodeTile(int blockX, int blockY, const Parallelism& parallelism) const;
  std::vector<uint8_t> decodePayload(int blockX, int blockY, const std::vector<uint8_t>& payload,
                                     const Parallelism& parallelism) const;
  // Copies one band of a decoded tile into a full-size block (edge blocks zero-padded).
  void copyBand(const std::vector<uint8_t>& tile, int blockX, int blockY, int band,
                void* block) const;
  // Every band's cached block of a decoded tile, except `skipBand` (filled by the caller).
  void fillCachedBlocks(const std::vector<uint8_t>& tile, int blockX, int blockY, int skipBand);
  bool prefetchTiles(const std::vector<std::pair<int, int>>& tiles);
  void describeStorage();
  void summariseAuxiliaryOnce();

  std::shared_ptr<const ContainerReader> reader_;
  std::shared_ptr<const LazyCodec> codec_;
  int level_;
  int threads_;
  std::vector<std::unique_ptr<NSATDataset>> overviews_;
  bool buildingExternalOverviews_ = false;
  std::optional<AuxiliaryDescription> auxiliary_;
  std::optional<AuxiliarySummary> storedSummary_;  // from the header
  std::mutex auxiliaryMutex_;
  bool auxiliarySummarised_ = false;

  std::mutex cacheMutex_;
  int cachedX_ = -1;
  int cachedY_ = -1;
  std::shared_ptr<const std::vector<uint8_t>> cachedTile_;
};

class NSATRasterBand final : public GDALPamRasterBand {
 public:
  NSATRasterBand(NSATDataset* dataset, int band, GDALDataType type, int blockWidth,
                 int blockHeight);

  CPLErr IReadBlock(int blockX, int blockY, void* image) override;
  CPLErr IRasterIO(GDALRWFlag flag, int xOffset, int yOffset, int xSize, int ySize, void* data,
                   int bufferXSize, int bufferYSize, GDALDataType bufferType, GSpacing pixelSpace,
                   GSpacing lineSpace, GDALRasterIOExtraArg* extra) override;
  double GetNoDataValue(int* hasNodata = nullptr) override;
  // Internal overviews, unless gdaladdo made an external .ovr, which then wins.
  int GetOverviewCount() override;
  GDALRasterBand* GetOverview(int i) override;
};

GDALDataType toGdalType(DataType type);
// False for GDAL types NSAT does not store (complex, 64-bit integers).
bool fromGdalType(GDALDataType gdalType, DataType& type);

}  // namespace nsat
