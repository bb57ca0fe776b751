// CreateCopy's write pipeline: reads the source in windows of tiles, codes the tiles on
// the shared pool and writes them in file order, in memory bounded whatever the image's
// width and band count; the output bytes do not depend on the thread count.
#pragma once

#include <string>

#include <gdal_priv.h>

#include "codecs/codec.h"
#include "container/container_file.h"
#include "driver/nsat_auxiliary.h"
#include "driver/nsat_roi_mask.h"

namespace nsat {

struct EncodeSettings {
  GDALRIOResampleAlg resampling = GRIORA_Average;  // how overview levels are made
  int threads = 1;
  // Where the pixels of an overview level wait while the next one is made from them
  // (CreateCopy: the target's folder). CPL_TMPDIR, when set, wins; empty: the system's
  // temporary folder.
  std::string temporaryFolder;
  // RDIC's ROI_MASK: read tile by tile into each tile's EncodeGuide; null if none.
  const RegionOfInterestRaster* regionOfInterest = nullptr;
};

// Source pixels one read window holds (at least one tile): its geometry depends on the
// header alone, never on the thread count, so the pixels read are the same for any.
constexpr size_t kWindowBytes = size_t(32) << 20;

// Codes every tile of every level of writer.header() from `source`; returns the summary
// of the full-resolution level's auxiliary raster when `summarise` (tile by tile, in
// file order: the same for any thread count). Throws nsat::Error (kind Cancelled when
// `progress` asks to stop, FileIO when the source or a temporary file cannot be read or
// written).
//
// Memory: the tiles of two rounds are in flight (the one being coded and the next one
// being read), a round being consecutive read windows that hold at least `threads`
// tiles: at most 2 × (kWindowBytes + threads × one tile) of source pixels, plus the
// round's payloads and what each codec needs per tile; GDAL's block cache (GDAL_CACHEMAX)
// comes on top.
AuxiliarySummary encodeAllLevels(GDALDataset& source, ContainerWriter& writer, const Codec& codec,
                                 const EncodeSettings& settings, bool summarise,
                                 GDALProgressFunc progress, void* progressData);

}  // namespace nsat
