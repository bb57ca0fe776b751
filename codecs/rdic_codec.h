// RDIC, relevance-driven image compression (after "RDIC: reasoning based dynamic image
// compression"): the regions a land-cover classifier's epsilon-LRP relevance marks are
// JPEG-coded at high quality, the rest at low quality. A built-in codec: decoding is
// plain JPEG; only encoding with an LRP mask loads the learned-codec module.
#pragma once

#include "codecs/registry.h"

namespace nsat {

CodecDescriptor rdicCodecDescriptor();

// The creation option naming a user mask raster; the driver opens it (codecs know no
// GDAL) and passes each tile's window as EncodeGuide::regionOfInterest.
constexpr const char* kRoiMaskOption = "ROI_MASK";

}  // namespace nsat
