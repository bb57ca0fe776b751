// FIXED_QUALITY: every block of the image meets a target PSNR or MSE (Mijares i Verdu
// et al. 2024, "Fixed-quality compression of remote sensing images with neural
// networks"). A MULTIRATE model codes the tile with a lambda per block, predicted from
// the block's baseline error and corrected in closed loop (REFINE); the 8-bit lambda
// map and the achieved PSNR of each block travel as side information.
#pragma once

#include "codecs/registry.h"

namespace nsat {

CodecDescriptor fixedQualityCodecDescriptor();

// The lambda of level Q (0..255) of the lambda map in a tile of payload version
// `payloadVersion`: version 2 log-spaced, lambda_min * (lambda_max / lambda_min)^(Q / 255);
// version 1 linear, (lambda_max - lambda_min) * Q / 255 + lambda_min, as the paper stores it.
float fixedQualityLevelLambda(double lambdaMin, double lambdaMax, int level, int payloadVersion);

}  // namespace nsat
