// What one tile's bytes hold: a flag byte, the lossless nodata mask that lossy
// codecs need, and the codec's own payload (see FORMAT.md, "Tile payload").
#pragma once

#include <optional>
#include <vector>

#include "codecs/codec.h"

namespace nsat {

// `pixels` is planar (TileShape layout). Lossy codecs see nodata samples replaced
// by their band's mean so that the collar does not cost bits or ring into the image.
std::vector<uint8_t> encodeTilePayload(const Codec& codec, const TileShape& shape,
                                       const void* pixels,
                                       const std::vector<std::optional<double>>& nodata,
                                       const EncodeGuide& guide = EncodeGuide());

// Restores nodata samples exactly, and moves a valid sample that a lossy codec
// decoded onto the nodata value off it, so the mask stays right both ways.
// Throws nsat::Error on a corrupt payload.
void decodeTilePayload(const Codec& codec, const TileShape& shape, const uint8_t* data,
                       size_t size, const std::vector<std::optional<double>>& nodata,
                       void* pixels, const Parallelism& parallelism = Parallelism());

// The codec's own bytes inside a tile payload (after the flags and nodata mask);
// nullopt for an EMPTY tile. Throws nsat::Error on a corrupt payload.
struct CodecBytes {
  const uint8_t* data;
  size_t size;
};
std::optional<CodecBytes> codecBytesOf(const uint8_t* data, size_t size);

}  // namespace nsat
