#pragma once

#include "codecs/registry.h"

namespace nsat {

// LOSSLESS: horizontal delta predictor on the samples' bit patterns, byte planes
// split apart, then zstd. Bit-exact for every data type, floats and NaN included.
CodecDescriptor losslessCodecDescriptor();

}  // namespace nsat
