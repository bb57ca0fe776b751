#!/usr/bin/env bash
# One command for every test: installs dependencies, builds, runs the GoogleTest
# suite (also under AddressSanitizer/UBSan) and the Python GDAL/rasterio/QGIS tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh --with-qgis

echo "== build"
BUILD_DIR=build bash scripts/build.sh
echo "== C++ unit tests (ctest)"
ctest --test-dir build --output-on-failure -j"$(nproc)"

echo "== C++ unit tests under AddressSanitizer + UBSan"
# LibTorch is not built for ASan: the learned module's tests run in the build above.
BUILD_DIR=build-asan bash scripts/build.sh -DNSAT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
  -DNSAT_BUILD_LEARNED=OFF
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)"

echo "== Python tests (GDAL CLI, rasterio, QGIS) with the plugin from build/"
NSAT_PLUGIN_DIR="$PWD/build" QT_QPA_PLATFORM=offscreen \
  /usr/bin/python3 -m pytest autotest/python -q -p no:cacheprovider
