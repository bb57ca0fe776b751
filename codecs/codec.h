// The one interface every NSAT codec implements.
//
// A codec turns one tile (all bands, planar, typed) into bytes and back. It knows
// nothing of GDAL datasets or of the file layout: the container frames its payload
// (nodata mask, CRC, offsets) and the driver feeds it pixels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "codecs/error.h"
#include "codecs/thread_pool.h"

namespace nsat {

enum class DataType { Byte, UInt16, Int16, UInt32, Int32, Float32, Float64 };

size_t dataTypeSize(DataType type);
const char* dataTypeName(DataType type);
// Throws nsat::Error for names that are not one of ours.
DataType dataTypeFromName(const std::string& name);
bool isFloatingPoint(DataType type);

// Where a tile lies in the image: its level, its corner in that level, the level's size
// and the image's.
struct TilePlacement {
  int level = 0;
  int x = 0, y = 0;
  int levelWidth = 0, levelHeight = 0;
  int imageWidth = 0, imageHeight = 0;
};

// Shape of one tile as handed to a codec. Pixels are planar: band-major, then rows,
// then columns, native endianness, `dataTypeSize(type)` bytes each.
struct TileShape {
  int width = 0;
  int height = 0;
  int bands = 0;
  DataType type = DataType::Byte;
  TilePlacement placement;

  size_t pixelsPerBand() const { return static_cast<size_t>(width) * height; }
  size_t bytesPerBand() const { return pixelsPerBand() * dataTypeSize(type); }
  size_t byteCount() const { return bytesPerBand() * bands; }
};

// A tile grown by `margin` pixels on each side, clipped to its level: the window a codec
// with a context margin codes (Codec::contextMargin). Its placement is the window's corner.
TileShape contextWindow(const TileShape& tile, int margin);

// Fills `to` (planar) from `from`, both placed in one level: each pixel of `to` takes the
// pixel of `from` at the same place, or at the nearest place inside `from` (edge samples
// repeated). So it crops a window to its tile, and grows a tile into its window.
void copyClamped(const TileShape& from, const void* fromPixels, const TileShape& to,
                 void* toPixels);

// A weight file a codec depends on; stored in every file that uses it so that a
// file is never decoded with a model other than the one that wrote it.
struct ModelRef {
  std::string id;
  std::string sha256;
};

// A small raster a codec stores in each tile next to the pixels and that users can
// read (FIXED_QUALITY: the PSNR each block achieved; RDIC: its region-of-interest
// mask). The driver shows it as the subdataset NSAT_AUX:<file>.
struct AuxiliaryDescription {
  std::string name;         // e.g. "BLOCK_PSNR"
  std::string description;  // one line for gdalinfo
  std::string unit;         // e.g. "dB"
  int cellSize = 0;         // pixels per cell side; cells start at each tile's corner
  std::vector<std::string> layerNames;  // one band each
};

// What the driver may hand a codec next to a tile's pixels, read from sources only the
// driver can open (codecs know no GDAL).
struct EncodeGuide {
  // RDIC with ROI_MASK: the user's mask over this tile, width x height bytes, non-zero =
  // keep (resampled for overview levels); empty otherwise.
  std::vector<uint8_t> regionOfInterest;
  // Per band, the nodata value the tile payload moves valid decoded samples off
  // (codecs/nodata_guard.h); set by encodeTilePayload, none where the band has no nodata.
  std::vector<std::optional<double>> nodata;
  // Codecs with a contextMargin(): the planar pixels of contextWindow(tile, margin), the
  // tile's neighbours around it (nodata filled as in the tile). Empty: the codec stands the
  // tile's own edge samples in for them.
  std::vector<uint8_t> context;
};

class Codec {
 public:
  virtual ~Codec() = default;

  virtual std::string name() const = 0;
  // Lossy codecs get a lossless nodata mask next to their payload (see container/).
  virtual bool isLossless() const = 0;
  // Everything the decoder needs to rebuild this codec; stored in the file header.
  virtual nlohmann::json parameters() const = 0;
  virtual std::vector<ModelRef> models() const { return {}; }
  // Pixels of the neighbouring tiles (on each side, within the level) that encode wants in
  // EncodeGuide::context: a learned codec codes the tile with them so that its synthesis
  // sees across tile edges (no seams); decode still needs the tile's payload alone.
  virtual int contextMargin() const { return 0; }

  // Both calls must be safe to run concurrently on one instance: no mutable state.
  virtual std::vector<uint8_t> encode(const TileShape& shape, const void* pixels,
                                      const EncodeGuide& guide) const = 0;
  std::vector<uint8_t> encode(const TileShape& shape, const void* pixels) const {
    return encode(shape, pixels, EncodeGuide());
  }
  // `pixels` holds shape.byteCount() bytes. Throws nsat::Error on corrupt input.
  // `parallelism`: the threads this one tile may use (the driver gives one thread per
  // tile when it decodes several tiles at once).
  virtual void decode(const TileShape& shape, const uint8_t* data, size_t size, void* pixels,
                      const Parallelism& parallelism = Parallelism()) const = 0;
  // What auxiliary raster this codec stores for an image of `bands` bands in tiles of
  // `tileSize` pixels; nullopt if none.
  virtual std::optional<AuxiliaryDescription> auxiliary(int /*bands*/, int /*tileSize*/) const {
    return std::nullopt;
  }
  // One tile's auxiliary values: layers x ceil(height / cellSize) x ceil(width /
  // cellSize). Throws nsat::Error on corrupt input.
  virtual std::vector<float> auxiliaryValues(const TileShape&, const uint8_t*, size_t) const {
    return {};
  }
  // VQ: the codebook indices a tile stores, readable without decoding pixels (the driver
  // shows them as the subdataset NSAT_LATENT:<file>, integer bands); nullopt if none.
  // The values come as the auxiliary raster's do: layers x cells down x cells across.
  virtual std::optional<AuxiliaryDescription> latentIndices(int /*bands*/, int /*tileSize*/) const {
    return std::nullopt;
  }
  virtual std::vector<float> latentIndexValues(const TileShape&, const uint8_t*, size_t) const {
    return {};
  }
};

}  // namespace nsat
