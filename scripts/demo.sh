#!/usr/bin/env bash
# One command for a new user: installs dependencies, builds, installs the plugin
# where GDAL finds it (with the learned-codec module and the models), then converts the
# bundled Landsat 7 scene to .nsat (lossless, JPEG and the learned MULTIRATE codec) and
# back, printing gdalinfo, sizes, bits per pixel and PSNR.
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
echo
echo "== gdalinfo $OUT/scene_multirate75.nsat"
gdalinfo "$OUT/scene_multirate75.nsat"
for name in scene_lossless scene_jpeg85 scene_multirate75; do
  gdal_translate -q "$OUT/$name.nsat" "$OUT/$name.back.tif"
done
echo
echo "== size, rate and fidelity against $SCENE"
/usr/bin/python3 scripts/compare.py "$SCENE" "$OUT/scene_lossless.nsat" "$OUT/scene_jpeg85.nsat" \
  "$OUT/scene_multirate75.nsat"
