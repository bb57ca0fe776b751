#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS on a seed
# corpus of real files:
#  1. the NSAT reader, in build-fuzz/ (the golden files and a few conversions of the
#     bundled scenes, one per built-in codec);
#  2. the learned codecs' tile decoders, in build-fuzz-learned/ (with LibTorch, which is
#     not instrumented): nsat_fuzz_learned decodes MULTIRATE / FIXED_QUALITY payloads in
#     full, nsat_fuzz_learned_entropy stops after entropy decoding and side information;
#     nsat_fuzz_vq decodes VQ payloads in full, and refines them as DIFFUSION does.
#     Seeds: every tile of the learned golden files and of conversions of the bundled
#     scenes, framing stripped (autotest/fuzz/learned_seeds.py). The committed
#     reproducers in autotest/fuzz/learned_regressions/ are run first.
#
#   bash scripts/fuzz.sh [SECONDS]     (default 60 per target; CI runs the default)
# Caps per input: reader 1 GiB RSS, learned targets 2 GiB RSS (LibTorch, the models and
# ASan take about 850 MB before the first input); 512 MiB in one allocation, 10 s. Crashes,
# leaks, hangs and over-cap allocations fail the run; the reproducer is left in
# build-fuzz/artifacts/ or build-fuzz-learned/artifacts/ (rerun it with:
# build-fuzz/nsat_fuzz_reader build-fuzz/artifacts/<file>, or the learned target).
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
  case $(basename "$golden") in *multirate*|*fixed_quality*|*_vq*) continue ;; esac
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

# ---------------------------------------------------------------- the learned codecs
LEARNED=${NSAT_FUZZ_LEARNED_BUILD_DIR:-$PWD/build-fuzz-learned}
CC=clang CXX=clang++ cmake -S . -B "$LEARNED" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNSAT_BUILD_FUZZERS=ON -DNSAT_BUILD_LEARNED=ON -DNSAT_BUILD_TESTS=OFF >/dev/null
cmake --build "$LEARNED" -j"$(nproc)" --target nsat_fuzz_learned nsat_fuzz_learned_entropy \
  nsat_fuzz_vq

learned_corpus="$LEARNED/corpus"
mkdir -p "$learned_corpus" "$LEARNED/artifacts" "$LEARNED/seed-files"
learned_files=(autotest/golden/*multirate*.nsat autotest/golden/*fixed_quality*.nsat
               autotest/golden/*_vq*.nsat)  # *_vq*: DIFFUSION on VQ too
# Conversions with the regular build's plugin and module, when present: every MULTIRATE
# model, 1 to 4 bands (and KLT stacks), Byte / UInt16 / Int16 / Float32, every quality
# block, edge tiles, nodata collars. The
# FIXED_QUALITY targets are the harness's (29.5 dB for Byte, 50 dB for 16-bit).
if [[ -f build/gdal_NSAT.so && -f build/nsat_learned.so ]]; then
  learned_seed() {  # NAME SOURCE gdal_translate-options...
    local name=$1 source=$2; shift 2
    [[ -s $LEARNED/seed-files/$name.nsat ]] || GDAL_DRIVER_PATH=build gdal_translate -q -of NSAT \
      "$@" "autotest/data/$source" "$LEARNED/seed-files/$name.nsat" \
      || echo "fuzz.sh: no seed $name (build/ cannot write it)" >&2
  }
  mr=(-co CODEC=MULTIRATE)
  fq8=(-co CODEC=FIXED_QUALITY -co TARGET_PSNR=29.5 -co MODEL=fixed-quality-rgb8)
  fq16=(-co CODEC=FIXED_QUALITY -co TARGET_PSNR=50 -co MODEL=fixed-quality-ms16)
  learned_seed mr_rgb landsat7_rgb_byte.tif -srcwin 150 0 96 80 "${mr[@]}" -co BLOCKSIZE=32
  learned_seed mr_naip16 naip_4band_byte.tif -srcwin 0 0 80 72 "${mr[@]}" -co BLOCKSIZE=16 \
    -co QUALITY=100
  learned_seed mr_river64 eurosat_rgb_river.jpg "${mr[@]}" -co BLOCKSIZE=64 -co QUALITY=1
  learned_seed mr_grey landsat7_rgb_byte.tif -b 1 -srcwin 100 100 70 50 "${mr[@]}" \
    -co BLOCKSIZE=32 -co TARGET_BPP=0.5
  learned_seed mr_u16 landsat8_b4_uint16.tif -srcwin 600 600 96 80 "${mr[@]}" -co BLOCKSIZE=32
  learned_seed mr_ms3 eurosat_ms_residential.tif -b 2 -b 3 -b 4 "${mr[@]}" -co BLOCKSIZE=64
  learned_seed mr_i16 landsat_int16_custom_crs.tif -srcwin 0 0 64 48 "${mr[@]}" -co BLOCKSIZE=32
  learned_seed mr_s1 s1_grd_gcps_uint16.tif -srcwin 0 0 48 48 "${mr[@]}" -co BLOCKSIZE=16
  # Float32 dB (the SAR model) and the spectral transform (payload version 2).
  learned_seed mr_sar s1_vv_vh_db_float32.tif -srcwin 3 7 90 80 "${mr[@]}" -co BLOCKSIZE=32
  learned_seed mr_sar_klt s1_vv_vh_db_float32.tif -srcwin 5 5 90 70 "${mr[@]}" \
    -co SPECTRAL_TRANSFORM=KLT -co BLOCKSIZE=32 -co TARGET_BPP=1
  learned_seed mr_ms4_klt eurosat_ms_annualcrop_1601.tif -b 1 -b 5 -b 9 -b 12 "${mr[@]}" \
    -co BLOCKSIZE=32
  learned_seed mr_i16_klt landsat_int16_custom_crs.tif -srcwin 10 10 48 48 "${mr[@]}" \
    -co SPECTRAL_TRANSFORM=KLT -co BLOCKSIZE=16
  learned_seed mr_ms16v1_klt eurosat_ms_residential.tif -b 4 -b 8 "${mr[@]}" \
    -co MODEL=multirate-ms16 -co SPECTRAL_TRANSFORM=KLT -co BLOCKSIZE=64
  learned_seed fq_naip32 naip_4band_byte.tif -srcwin 300 200 96 64 "${fq8[@]}" \
    -co QUALITY_BLOCK=32 -co BLOCKSIZE=64
  learned_seed fq_rgb16 landsat7_rgb_byte.tif -srcwin 150 0 64 64 "${fq8[@]}" \
    -co QUALITY_BLOCK=16 -co BLOCKSIZE=32
  learned_seed fq_forest64 eurosat_rgb_forest.jpg "${fq8[@]}" -co QUALITY_BLOCK=64 -co BLOCKSIZE=64
  learned_seed fq_global landsat7_rgb_byte.tif -srcwin 200 200 80 48 "${fq8[@]}" \
    -co QUALITY_BLOCK=GLOBAL -co BLOCKSIZE=32
  learned_seed fq_u16 landsat8_b4_uint16.tif -srcwin 600 600 64 64 "${fq16[@]}" \
    -co QUALITY_BLOCK=16 -co BLOCKSIZE=32
  learned_seed fq_ms2 eurosat_ms_annualcrop_1601.tif -b 3 -b 8 "${fq16[@]}" \
    -co QUALITY_BLOCK=GLOBAL -co BLOCKSIZE=64
  learned_seed fq_i16 landsat_int16_custom_crs.tif -srcwin 0 0 48 48 "${fq16[@]}" \
    -co QUALITY_BLOCK=32 -co BLOCKSIZE=32
  # VQ: every model and level count, edge tiles (autotest/fuzz/fuzz_vq_payloads.cpp).
  vq=(-co CODEC=VQ -co BLOCKSIZE=32)
  learned_seed vq_rgb1 eurosat_rgb_river.jpg -srcwin 0 0 50 40 "${vq[@]}" -co LEVELS=1 \
    -co MODEL=vq-rgb8-v1
  learned_seed vq_rgb3 landsat7_rgb_byte.tif -srcwin 150 0 64 64 "${vq[@]}" -co LEVELS=3
  learned_seed vq_naip2 naip_4band_byte.tif -srcwin 720 0 70 48 "${vq[@]}"
  learned_seed vq_s2_1 eurosat_ms_residential_rgbn.tif "${vq[@]}" -co LEVELS=1
  learned_seed vq_s2_3 eurosat_ms_residential_rgbn.tif -srcwin 3 5 61 59 "${vq[@]}" -co LEVELS=3
  # DIFFUSION on its default VQ base: the same payload, decoded then refined.
  learned_seed diffusion_2 landsat7_rgb_byte.tif -srcwin 150 0 70 64 -co CODEC=DIFFUSION \
    -co BLOCKSIZE=32 -co LEVELS=2 -co NOISE=0.02
  learned_files+=("$LEARNED"/seed-files/*.nsat)
fi
/usr/bin/python3 autotest/fuzz/learned_seeds.py "$learned_corpus" "${learned_files[@]}" >/dev/null
vq_corpus="$LEARNED/corpus-vq"
/usr/bin/python3 autotest/fuzz/learned_seeds.py --vq "$vq_corpus" "${learned_files[@]}" >/dev/null

# Learned targets: 2 GiB RSS (see above). Known one-time allocations of LibTorch are not
# leaks of ours; none has been reported so far, so there is no LSan suppression.
learned_options=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -max_len=65536)
sanitizers=(env ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
            UBSAN_OPTIONS=print_stacktrace=1)
regressions=(autotest/fuzz/learned_regressions/*)
for target in nsat_fuzz_learned nsat_fuzz_learned_entropy; do
  if [[ -e ${regressions[0]} ]]; then
    echo "== $target on the ${#regressions[@]} committed reproducers"
    "${sanitizers[@]}" "$LEARNED/$target" "${learned_options[@]}" "${regressions[@]}" 2>&1 | tail -n 3
  fi
  echo "== fuzzing $target for ${SECONDS_TO_RUN} s ($(ls "$learned_corpus" | wc -l) seeds)"
  "${sanitizers[@]}" "$LEARNED/$target" -max_total_time="$SECONDS_TO_RUN" "${learned_options[@]}" \
    -print_final_stats=1 -artifact_prefix="$LEARNED/artifacts/" "$learned_corpus" 2>&1 | tail -n 25
done
echo "== fuzzing nsat_fuzz_vq for ${SECONDS_TO_RUN} s ($(ls "$vq_corpus" | wc -l) seeds)"
"${sanitizers[@]}" "$LEARNED/nsat_fuzz_vq" -max_total_time="$SECONDS_TO_RUN" "${learned_options[@]}" \
  -print_final_stats=1 -artifact_prefix="$LEARNED/artifacts/" "$vq_corpus" 2>&1 | tail -n 25
