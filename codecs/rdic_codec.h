// RDIC, relevance-driven image compression (after "RDIC: reasoning based dynamic image
// compression"): the regions a land-cover classifier's epsilon-LRP relevance marks are
// JPEG-coded at high quality, the rest at low quality. A built-in codec: decoding is
// plain JPEG; only encoding with an LRP mask loads the learned-codec module.
#pragma once

#include "codecs/registry.h"

namespace nsat {

CodecDescriptor rdicCodecDescriptor();

}  // namespace nsat
