#!/usr/bin/env bash
# One command for every test: installs dependencies, builds, runs the GoogleTest
# suite (also under AddressSanitizer/UBSan) and the Python GDAL/rasterio/QGIS tests.
# NSAT_BUILD_ROOT: where the build trees go (default: the repository; scripts/
# test_debian13.sh builds elsewhere so that the host's build/ is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_ROOT=${NSAT_BUILD_ROOT:-$PWD}

bash scripts/install_deps.sh --with-qgis

echo "== build"
BUILD_DIR="$BUILD_ROOT/build" bash scripts/build.sh
echo "== C++ unit tests (ctest)"
ctest --test-dir "$BUILD_ROOT/build" --output-on-failure -j"$(nproc)"

echo "== C++ unit tests under AddressSanitizer + UBSan"
# LibTorch is not built for ASan: the learned module's tests run in the build above.
BUILD_DIR="$BUILD_ROOT/build-asan" bash scripts/build.sh -DNSAT_SANITIZE=ON \
  -DCMAKE_BUILD_TYPE=Debug -DNSAT_BUILD_LEARNED=OFF
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir "$BUILD_ROOT/build-asan" --output-on-failure -j"$(nproc)"

echo "== Python tests (GDAL CLI, rasterio, QGIS) with the plugin from build/"
NSAT_PLUGIN_DIR="$BUILD_ROOT/build" QT_QPA_PLATFORM=offscreen \
  /usr/bin/python3 -m pytest autotest/python -q -p no:cacheprovider
