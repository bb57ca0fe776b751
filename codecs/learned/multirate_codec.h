// MULTIRATE: the reduced-complexity multirate learned codec (Mijares i Verdu et al.
// 2023): a scale-hyperprior autoencoder whose latent is scaled by a lambda-driven gain,
// so one model codes at every rate in its lambda range.
#pragma once

#include "codecs/registry.h"

namespace nsat {

CodecDescriptor multirateCodecDescriptor();

}  // namespace nsat
