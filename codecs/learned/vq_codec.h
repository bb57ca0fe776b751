// VQ: vector-quantised codebook indices as the payload (after CORSA, VITO / ESA Phi-lab):
// a light encoder, a residual product quantiser whose indices are entropy-coded under a
// context model, and a decoder. The indices are readable without decoding pixels
// (NSAT_LATENT:<file>) and the codebooks are in the model's vq_tables.json, so they serve
// as features.
#pragma once

#include "codecs/registry.h"

namespace nsat {

CodecDescriptor vqCodecDescriptor();

}  // namespace nsat
