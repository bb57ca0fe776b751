#pragma once

#include "codecs/registry.h"

namespace nsat {

// JPEG through libjpeg-turbo: Byte data; 1 or 3 bands make one JPEG stream
// (3 bands as YCbCr), any other band count is coded band by band in greyscale.
CodecDescriptor jpegCodecDescriptor();

// One 8-bit JPEG stream of 1 or 3 interleaved components: the building block that
// the JPEG codec and relevance-driven (RDIC) coding share.
std::vector<uint8_t> compressJpeg(const uint8_t* interleaved, int width, int height,
                                  int components, int quality, bool subsampleChroma);
// Decodes into `interleaved` (width*height*components bytes); throws nsat::Error if
// the stream is corrupt or not of this size.
void decompressJpeg(const uint8_t* data, size_t size, int width, int height, int components,
                    uint8_t* interleaved);

}  // namespace nsat
