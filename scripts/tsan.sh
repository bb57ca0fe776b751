#!/usr/bin/env bash
# Concurrency under ThreadSanitizer (issue 14). Builds the plugin, nsat_learned.so and the
# concurrency test (autotest/concurrency/concurrent_reads.cpp) with -fsanitize=thread into
# build-tsan/ (GCC: its shared libtsan lets `LD_PRELOAD=libtsan.so.2 gdal_translate` load
# the instrumented plugin), checks that TSan is really on (a deliberate race must be
# reported), converts real scenes of autotest/data with that gdal_translate into
# build-tsan/data/ (MULTIRATE Byte and UInt16, FIXED_QUALITY, JPEG, LOSSLESS; 64 px tiles,
# 2 internal overviews; remade when the plugin or module is rebuilt), then has THREADS
# threads, each with its own handles, read WINDOWS random windows each, full resolution
# and overviews, and compare every one with a serial read (the program's header says how).
#
#   bash scripts/tsan.sh [THREADS] [WINDOWS]     (default 8 16; CI runs the default)
#
# Fails on any differing sample, failed read or ThreadSanitizer report (halt_on_error=1).
# The suppressions (autotest/concurrency/tsan.supp) name only uninstrumented libraries
# (GDAL, oneDNN), never NSAT code. Reports are kept in build-tsan/tsan-logs/, with NSAT's
# frames symbolised by addr2line (GCC's libtsan leaves modules dlopen'ed late unnamed).
# Measured 2026-12-01 on the shared 2-core EPYC with other work running (load 5-12): from
# scratch, build 9.0 min, files 1.7 min, test 4.5 min (15 min in all); CPU time 5.5 min in
# all (build 2.8, files 0.6, test 2.1), so about 5 min on two idle cores. A rerun with
# the build and files in place takes only the test.
set -euo pipefail
# Exit status 3: ThreadSanitizer's runtime cannot start on this machine (its kernel's address
# layout; the self-test's log says so), so nothing of ours was checked; .ci/run warns.
trap 'echo "tsan.sh: failed at line $LINENO (status $?)" >&2' ERR
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh >/dev/null
THREADS=${1:-8}
WINDOWS=${2:-16}
BUILD=${NSAT_TSAN_BUILD_DIR:-$PWD/build-tsan}
SUPPRESSIONS=$PWD/autotest/concurrency/tsan.supp
LOGS=$BUILD/tsan-logs
DATA=$BUILD/data
started=$SECONDS

echo "== ThreadSanitizer build ($BUILD)"
CC=gcc CXX=g++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNSAT_TSAN=ON \
  -DNSAT_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target nsat_concurrent_reads
built=$SECONDS
# (awk reads all of ldd's output: an early exit would end ldd with SIGPIPE under pipefail)
LIBTSAN=$(ldd "$BUILD/nsat_concurrent_reads" | awk '/libtsan/ && !found {print $3; found = 1}')
[[ -f $LIBTSAN ]] || { echo "tsan.sh: cannot find the libtsan of $BUILD/nsat_concurrent_reads" >&2; exit 1; }

rm -rf "$LOGS"
mkdir -p "$LOGS" "$DATA"
# A build that lost its instrumentation would pass without checking anything.
for module in gdal_NSAT.so nsat_learned.so; do
  if [[ $(nm -D --undefined-only "$BUILD/$module" | grep -c __tsan_func_entry || true) == 0 ]]; then
    echo "tsan.sh: $BUILD/$module is not built with ThreadSanitizer" >&2
    exit 1
  fi
done
selftest_status=0
TSAN_OPTIONS="halt_on_error=1:log_path=$LOGS/selftest" "$BUILD/nsat_concurrent_reads" \
  --selftest-race > "$LOGS/selftest.out" 2>&1 || selftest_status=$?
# (grep reads the files itself: `cat | grep -q` may end cat with SIGPIPE under pipefail)
if ! grep -qs "data race" "$LOGS"/selftest.*; then
  echo "tsan.sh: ThreadSanitizer did not report the test program's deliberate race" \
    "(status $selftest_status; kernel $(uname -r), vm.mmap_rnd_bits" \
    "$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo unknown)); its output:"
  head -n 40 "$LOGS"/selftest.* 2>/dev/null || true
  if grep -qs "FATAL: ThreadSanitizer" "$LOGS"/selftest.*; then
    echo "tsan.sh: ThreadSanitizer's runtime cannot start here: nothing was checked" >&2
    exit 3
  fi
  exit 1
fi
echo "ThreadSanitizer is on: it reported the deliberate race of --selftest-race"
export GDAL_DRIVER_PATH=$BUILD
unset NSAT_LEARNED_MODULE  # the module next to the TSan plugin
tsan_options() {  # LOG-NAME
  echo "halt_on_error=1:second_deadlock_stack=1:suppressions=$SUPPRESSIONS:log_path=$LOGS/$1"
}

# Prints a report with NSAT's frames (<null> <null> (gdal_NSAT.so+0x...)) symbolised: the
# function, and the innermost line of our sources that it inlines.
symbolise() {  # LOG-FILE
  /usr/bin/python3 - "$1" "$BUILD" "$PWD" <<'EOF'
import os, re, subprocess, sys
log, build, source = sys.argv[1:4]
ours = {name: os.path.join(build, name)
        for name in ("gdal_NSAT.so", "nsat_learned.so", "nsat_concurrent_reads")}
frame = re.compile(r"^(\s*#\d+ )<null> <null> \(([^()+]+)\+(0x[0-9a-f]+)\)$")
for line in open(log, errors="replace").read().splitlines():
    match = frame.match(line)
    module = match and os.path.basename(match.group(2))
    if module in ours:
        out = subprocess.run(["addr2line", "-f", "-C", "-i", "-e", ours[module], match.group(3)],
                             capture_output=True, text=True).stdout.splitlines()
        pairs = list(zip(out[0::2], out[1::2]))  # the innermost inlined function first
        if pairs:
            place = next((p for _, p in pairs if p.startswith(source + "/")), pairs[0][1])
            line = f"{match.group(1)}{pairs[-1][0]} {place} ({module}+{match.group(3)})"
    print(line)
EOF
}

# Fails the run with the symbolised reports of LOG-NAME.
fail_with_reports() {  # LOG-NAME WHAT
  local found=0
  for log in "$LOGS/$1".*; do
    [[ -f $log ]] || continue
    found=1
    symbolise "$log" | tee "$log.symbolised"
  done
  echo "tsan.sh: FAILED: $2 (ThreadSanitizer reports: $(cat "$LOGS/$1".* 2>/dev/null |
    grep -c '^WARNING: ThreadSanitizer' || true); logs in $LOGS)" >&2
  [[ $found == 1 ]] || echo "tsan.sh: (no ThreadSanitizer report: the failure is the program's)" >&2
  exit 1
}

echo "== test files (gdal_translate with the TSan plugin, in $DATA)"
make_file() {  # NAME SOURCE gdal_translate-options...
  local name=$1 source=$2; shift 2
  local target=$DATA/$name
  # Remade when the plugin or module was rebuilt since.
  if [[ -s $target && $target -nt $BUILD/gdal_NSAT.so && $target -nt $BUILD/nsat_learned.so ]]; then
    return
  fi
  rm -f "$target"
  if ! TSAN_OPTIONS=$(tsan_options "translate-$name") LD_PRELOAD=$LIBTSAN \
      gdal_translate -q -of NSAT "$@" "autotest/data/$source" "$target"; then
    fail_with_reports "translate-$name" "gdal_translate -of NSAT $* $source"
  fi
}
make_file naip_multirate.nsat naip_4band_byte.tif -srcwin 0 0 520 520 \
  -co CODEC=MULTIRATE -co QUALITY=60 -co BLOCKSIZE=64
make_file landsat8_multirate.nsat landsat8_b4_uint16.tif -srcwin 500 500 520 520 \
  -co CODEC=MULTIRATE -co BLOCKSIZE=64
make_file landsat7_fixed_quality.nsat landsat7_rgb_byte.tif -srcwin 0 0 520 520 \
  -co CODEC=FIXED_QUALITY -co TARGET_PSNR=20 -co REFINE=1 -co BLOCKSIZE=64
make_file landsat7_jpeg.nsat landsat7_rgb_byte.tif -co CODEC=JPEG -co QUALITY=80 -co BLOCKSIZE=64
make_file landsat_int16_lossless.nsat landsat_int16_custom_crs.tif -co CODEC=LOSSLESS \
  -co BLOCKSIZE=64
make_file landsat7_diffusion.nsat landsat7_rgb_byte.tif -srcwin 100 100 264 264 \
  -co CODEC=DIFFUSION -co NOISE=0.02 -co BLOCKSIZE=64
made=$SECONDS

echo "== concurrent reads: $THREADS threads x $WINDOWS windows, each thread with its own handles"
status=0
TSAN_OPTIONS=$(tsan_options reads) "$BUILD/nsat_concurrent_reads" --threads "$THREADS" \
  --windows "$WINDOWS" "$DATA"/naip_multirate.nsat "$DATA"/landsat8_multirate.nsat \
  "$DATA"/landsat7_fixed_quality.nsat "$DATA"/landsat7_jpeg.nsat \
  "$DATA"/landsat_int16_lossless.nsat "$DATA"/landsat7_diffusion.nsat | tee "$LOGS/concurrent_reads.out" || status=$?
reports=$(cat "$LOGS"/reads.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true)
echo "== ThreadSanitizer summary: $reports report(s) (halt_on_error=1); build $((built - started)) s," \
  "files $((made - built)) s, test $((SECONDS - made)) s"
if [[ $status != 0 || $reports != 0 ]]; then
  fail_with_reports reads "nsat_concurrent_reads exited with status $status"
fi
echo "tsan.sh: PASS"
