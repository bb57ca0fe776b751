#!/usr/bin/env bash
# Builds the libFuzzer target of the NSAT reader (clang, ASan + UBSan) into build-fuzz/
# and runs it on a seed corpus of real files (the golden files and a few conversions of
# the bundled scenes, one per built-in codec).
#
#   bash scripts/fuzz.sh [SECONDS]     (default 60; CI runs the default)
# Caps per input: 1 GiB RSS, 512 MiB in one allocation, 10 s. Crashes, leaks, hangs and
# over-cap allocations fail the run; the reproducer is left in build-fuzz/artifacts/
# (rerun it with: build-fuzz/nsat_fuzz_reader build-fuzz/artifacts/<file>).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh --with-fuzz >/dev/null
SECONDS_TO_RUN=${1:-60}
BUILD=${NSAT_FUZZ_BUILD_DIR:-$PWD/build-fuzz}

CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNSAT_BUILD_FUZZERS=ON -DNSAT_BUILD_LEARNED=OFF -DNSAT_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target nsat_fuzz_reader

corpus="$BUILD/corpus"
mkdir -p "$corpus" "$BUILD/artifacts"
for golden in autotest/golden/*.nsat; do
  # Learned-codec files need the LibTorch module, which this build leaves out.
  case $(basename "$golden") in *multirate*|*fixed_quality*) continue ;; esac
  cp -n "$golden" "$corpus/"
done
# Seeds from the regular build's plugin (the fuzz build makes none), when present.
if [[ -f build/gdal_NSAT.so ]]; then
  seed() {  # NAME SOURCE gdal_translate-options...
    local name=$1 source=$2; shift 2
    [[ -s $corpus/$name ]] || GDAL_DRIVER_PATH=build gdal_translate -q -of NSAT "$@" \
      "autotest/data/$source" "$corpus/$name"
  }
  seed jpeg_naip4.nsat naip_4band_byte.tif -srcwin 0 0 96 80 -co CODEC=JPEG -co BLOCKSIZE=32
  seed rdic_rgb.nsat eurosat_rgb_river.jpg -co CODEC=RDIC -co BLOCKSIZE=32 \
    -co ROI_MASK=autotest/data/eurosat_rgb_river.jpg
  seed lossless_int16.nsat landsat_int16_custom_crs.tif -srcwin 0 0 96 80 -co CODEC=LOSSLESS \
    -co BLOCKSIZE=32
  seed jpeg_collar.nsat landsat7_rgb_byte.tif -srcwin 0 0 96 80 -co CODEC=JPEG -co BLOCKSIZE=16
fi

echo "== fuzzing the NSAT reader for ${SECONDS_TO_RUN} s ($(ls "$corpus" | wc -l) seeds)"
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$BUILD/nsat_fuzz_reader" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=1024 \
  -malloc_limit_mb=512 -timeout=10 -max_len=262144 -print_final_stats=1 \
  -artifact_prefix="$BUILD/artifacts/" "$corpus" 2>&1 | tail -n 25
