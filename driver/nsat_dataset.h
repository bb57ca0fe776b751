// The GDAL side of NSAT: a read-only dataset over one container level, whose bands
// decode tiles on demand, plus CreateCopy (nsat_createcopy.cpp).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <gdal_pam.h>

#include "codecs/codec.h"
#include "container/container_file.h"

namespace nsat {

class NSATDataset final : public GDALPamDataset {
 public:
  static int Identify(GDALOpenInfo* openInfo);
  static GDALDataset* Open(GDALOpenInfo* openInfo);
  static GDALDataset* CreateCopy(const char* filename, GDALDataset* source, int strict,
                                 char** options, GDALProgressFunc progress, void* progressData);

  NSATDataset(std::shared_ptr<const ContainerReader> reader, std::shared_ptr<const Codec> codec,
              int level);

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
  char** GetMetadata(const char* domain = "") override;
  const char* GetMetadataItem(const char* name, const char* domain = "") override;

  // Decodes the tile once and serves every band's block from it.
  CPLErr readBlock(int blockX, int blockY, int band, void* image);

 private:
  // Decoded planar tile, cached so the other bands' blocks need no second decode.
  std::shared_ptr<const std::vector<uint8_t>> decodedTile(int blockX, int blockY);
  void describeStorage();
  void summariseAuxiliaryOnce();

  std::shared_ptr<const ContainerReader> reader_;
  std::shared_ptr<const Codec> codec_;
  int level_;
  std::vector<std::unique_ptr<NSATDataset>> overviews_;
  bool buildingExternalOverviews_ = false;
  std::optional<AuxiliaryDescription> auxiliary_;
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
  double GetNoDataValue(int* hasNodata = nullptr) override;
  // Internal overviews, unless gdaladdo made an external .ovr, which then wins.
  int GetOverviewCount() override;
  GDALRasterBand* GetOverview(int i) override;
};

GDALDataType toGdalType(DataType type);
// False for GDAL types NSAT does not store (complex, 64-bit integers).
bool fromGdalType(GDALDataType gdalType, DataType& type);

}  // namespace nsat
