#!/usr/bin/env bash
# One command for a new user: installs dependencies, builds, installs the plugin
# where GDAL finds it (with the learned-codec module and the models), then converts the
# bundled Landsat 7 scene to .nsat (lossless, JPEG, the learned MULTIRATE, VQ and DIFFUSION
# codecs and the relevance-driven RDIC) and back, printing gdalinfo, sizes, bits per pixel and
# PSNR, VQ's codebook indices (NSAT_LATENT) and DIFFUSION's scene condition; and codes the NAIP aerial scene with FIXED_QUALITY,
# printing its block PSNR.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
BUILD_DIR=build bash scripts/build.sh
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO cmake --install build >/dev/null
echo "== installed: $(gdalinfo --formats | grep -i nsat)"

SCENE=autotest/data/landsat7_rgb_byte.tif
OUT=${DEMO_OUT:-demo_output}
mkdir -p "$OUT"

gdal_translate -of NSAT -co CODEC=LOSSLESS "$SCENE" "$OUT/scene_lossless.nsat"
gdal_translate -of NSAT -co CODEC=JPEG -co QUALITY=85 "$SCENE" "$OUT/scene_jpeg85.nsat"
gdal_translate -of NSAT -co CODEC=MULTIRATE -co QUALITY=75 "$SCENE" "$OUT/scene_multirate75.nsat"
gdal_translate -of NSAT -co CODEC=RDIC "$SCENE" "$OUT/scene_rdic.nsat"
gdal_translate -of NSAT -co CODEC=VQ "$SCENE" "$OUT/scene_vq.nsat"
# DIFFUSION: VQ's payload, refined on decode by a model conditioned on the scene's metadata.
gdal_translate -of NSAT -co CODEC=DIFFUSION "$SCENE" "$OUT/scene_diffusion.nsat"
# Fixed quality on the NAIP aerial scene (within the RGB model's reach): every 32 px block
# aims at 32.5 dB; the achieved PSNR per block is the subdataset NSAT_AUX:<file>.
gdal_translate -of NSAT -b 1 -b 2 -b 3 -co CODEC=FIXED_QUALITY -co TARGET_PSNR=32.5 \
  autotest/data/naip_4band_byte.tif "$OUT/naip_fixed_quality.nsat"
echo
echo "== gdalinfo $OUT/scene_multirate75.nsat"
gdalinfo "$OUT/scene_multirate75.nsat"
echo
echo "== block PSNR of $OUT/naip_fixed_quality.nsat (gdalinfo -stats NSAT_AUX:...)"
gdalinfo "$OUT/naip_fixed_quality.nsat" | grep "NSAT_BLOCK_PSNR"
gdalinfo -stats "NSAT_AUX:$OUT/naip_fixed_quality.nsat" | grep -E "Size is|Minimum="
echo
echo "== codebook indices of $OUT/scene_vq.nsat (gdalinfo NSAT_LATENT:...), one cell per 4 x 4 px"
gdalinfo "NSAT_LATENT:$OUT/scene_vq.nsat" | grep -E "Size is|Pixel Size|Band [0-9]"
echo
echo "== the scene condition $OUT/scene_diffusion.nsat was refined with (gdalinfo)"
gdalinfo "$OUT/scene_diffusion.nsat" | grep "NSAT_CONDITION_"
for name in scene_lossless scene_jpeg85 scene_multirate75 scene_rdic scene_vq scene_diffusion; do
  gdal_translate -q "$OUT/$name.nsat" "$OUT/$name.back.tif"
done
echo
echo "== size, rate and fidelity against $SCENE"
/usr/bin/python3 scripts/compare.py "$SCENE" "$OUT/scene_lossless.nsat" "$OUT/scene_jpeg85.nsat" \
  "$OUT/scene_multirate75.nsat" "$OUT/scene_rdic.nsat" "$OUT/scene_vq.nsat" \
  "$OUT/scene_diffusion.nsat"
