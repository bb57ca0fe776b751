// DIFFUSION: MULTIRATE's payload, decoded by MULTIRATE and then refined by a small
// conditional flow model (after COSMIC, Zhang et al.: a light encoder, a decoder compensated
// by a diffusion model conditioned on the scene's sensor metadata). The condition (date,
// sun, place, ground sample distance) is extracted by the driver, stored in the header and
// shown by gdalinfo; REFINEMENT=NO (open option) decodes the base alone.
#pragma once

#include "codecs/registry.h"

namespace nsat {

CodecDescriptor diffusionCodecDescriptor();

}  // namespace nsat
