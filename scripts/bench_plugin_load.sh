#!/usr/bin/env bash
# Plugin load-cost benchmark for the NSAT GDAL driver.
#
# Design rule: GDAL loads every plugin in every process, so `gdalinfo --version`
# with gdal_NSAT.so on GDAL_DRIVER_PATH must stay within 1.3x of the time without
# it, and the plugin must not link torch / c10.
#
# Usage (from the repository root):
#   bash scripts/bench_plugin_load.sh [PLUGIN_DIR]      # default: build/
# Environment:
#   RUNS=30            timed runs per configuration (after WARMUP untimed runs)
#   WARMUP=3
#   MAX_RATIO=1.3      threshold for `gdalinfo --version`
#
# Prints a markdown report on stdout; exits non-zero if the `--version` ratio
# exceeds MAX_RATIO or the plugin has a torch/c10 NEEDED entry.
set -euo pipefail

PLUGIN_DIR="${1:-build}"
RUNS="${RUNS:-30}"
WARMUP="${WARMUP:-3}"
MAX_RATIO="${MAX_RATIO:-1.3}"
TIF="autotest/data/eurosat_ms_residential.tif"

PLUGIN_DIR="$(cd "$PLUGIN_DIR" && pwd)"
PLUGIN="$PLUGIN_DIR/gdal_NSAT.so"
[[ -f "$PLUGIN" ]] || { echo "error: $PLUGIN not found (build first)" >&2; exit 2; }
[[ -f "$TIF" ]] || { echo "error: $TIF not found (run from the repository root)" >&2; exit 2; }
command -v gdalinfo >/dev/null || { echo "error: gdalinfo not on PATH" >&2; exit 2; }

if [[ ! -x /usr/bin/time ]]; then
  echo "installing GNU time for peak RSS ..." >&2
  if command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
    apt-get install -y -qq time >/dev/null 2>&1 || true
  fi
fi

EMPTY_DIR="$(mktemp -d)"
TMP="$(mktemp -d)"
trap 'rm -rf "$EMPTY_DIR" "$TMP"' EXIT

# Sanity check: the plugin really gets registered (and is absent in the baseline).
if ! GDAL_DRIVER_PATH="$PLUGIN_DIR" gdalinfo --format NSAT >/dev/null 2>&1; then
  echo "error: GDAL does not register NSAT from $PLUGIN_DIR" >&2; exit 2
fi
if GDAL_DRIVER_PATH="$EMPTY_DIR" gdalinfo --format NSAT >/dev/null 2>&1; then
  echo "error: NSAT is registered even with an empty GDAL_DRIVER_PATH (built into libgdal?)" >&2
  exit 2
fi

now_ns() { date +%s%N; }

# time_pair NAME CMD...: alternate runs without / with the plugin (interleaving
# cancels slow drift on a shared machine); write per-run milliseconds to
# $TMP/NAME.without and $TMP/NAME.with.
time_pair() {
  local name="$1"; shift
  local i dir t0 t1
  : >"$TMP/$name.without"; : >"$TMP/$name.with"
  for ((i = 0; i < WARMUP; i++)); do
    GDAL_DRIVER_PATH="$EMPTY_DIR" "$@" >/dev/null 2>&1
    GDAL_DRIVER_PATH="$PLUGIN_DIR" "$@" >/dev/null 2>&1
  done
  for ((i = 0; i < RUNS; i++)); do
    for dir in without with; do
      local path="$EMPTY_DIR"; [[ $dir == with ]] && path="$PLUGIN_DIR"
      t0=$(now_ns)
      GDAL_DRIVER_PATH="$path" "$@" >/dev/null 2>&1
      t1=$(now_ns)
      echo "$(( (t1 - t0) / 1000 ))" >>"$TMP/$name.$dir"   # microseconds
    done
  done
}

# median of a file of integers (microseconds) -> milliseconds with 2 decimals
median_ms() {
  sort -n "$1" | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m / 1000}'
}
minmax_ms() {
  sort -n "$1" | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.2f–%.2f", lo/1000, hi/1000}'
}

# peak RSS in KiB: median over 5 runs of /usr/bin/time -v
peak_rss_kib() {
  local path="$1"; shift
  if [[ ! -x /usr/bin/time ]]; then echo "n/a"; return; fi
  local i
  for ((i = 0; i < 5; i++)); do
    GDAL_DRIVER_PATH="$path" /usr/bin/time -v "$@" 2>&1 >/dev/null \
      | awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}'
  done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "n/a" || a == "n/a" || b == 0) print "n/a"; else printf "%.3f", a / b }'; }

time_pair version gdalinfo --version
time_pair info gdalinfo "$TIF"

V_WO=$(median_ms "$TMP/version.without"); V_W=$(median_ms "$TMP/version.with")
I_WO=$(median_ms "$TMP/info.without");    I_W=$(median_ms "$TMP/info.with")
V_R=$(ratio "$V_W" "$V_WO"); I_R=$(ratio "$I_W" "$I_WO")

R_V_WO=$(peak_rss_kib "$EMPTY_DIR" gdalinfo --version)
R_V_W=$(peak_rss_kib "$PLUGIN_DIR" gdalinfo --version)
R_I_WO=$(peak_rss_kib "$EMPTY_DIR" gdalinfo "$TIF")
R_I_W=$(peak_rss_kib "$PLUGIN_DIR" gdalinfo "$TIF")

NEEDED="$(readelf -d "$PLUGIN" | awk '/NEEDED/ {gsub(/[\[\]]/, "", $NF); print $NF}')"
TORCH_LINKED=no
if grep -Eiq 'torch|c10' <<<"$NEEDED"; then TORCH_LINKED=yes; fi

CPU="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
SO_SIZE="$(stat -c %s "$PLUGIN")"

cat <<EOF
# NSAT plugin load benchmark

- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')
- Load average at start (1/5/15 min): $(cut -d" " -f1-3 /proc/loadavg)
- Machine: $(nproc) cores, CPU: ${CPU:-unknown}, $(uname -sr)
- $(gdalinfo --version)
- Plugin: \`$PLUGIN\` ($SO_SIZE bytes)
- Method: ${RUNS} timed runs per configuration after ${WARMUP} warm-up runs, with/without runs interleaved;
  "without" = \`GDAL_DRIVER_PATH\` pointing to an empty directory, "with" = the directory holding \`gdal_NSAT.so\`.
  Peak RSS = median of 5 runs of \`/usr/bin/time -v\`.

| Command | median without (ms) | median with (ms) | ratio with/without | range without (ms) | range with (ms) |
|---|---:|---:|---:|---:|---:|
| \`gdalinfo --version\` | $V_WO | $V_W | **$V_R** | $(minmax_ms "$TMP/version.without") | $(minmax_ms "$TMP/version.with") |
| \`gdalinfo $TIF\` | $I_WO | $I_W | $I_R | $(minmax_ms "$TMP/info.without") | $(minmax_ms "$TMP/info.with") |

| Command | peak RSS without (KiB) | peak RSS with (KiB) | ratio |
|---|---:|---:|---:|
| \`gdalinfo --version\` | $R_V_WO | $R_V_W | $(ratio "$R_V_W" "$R_V_WO") |
| \`gdalinfo $TIF\` | $R_I_WO | $R_I_W | $(ratio "$R_I_W" "$R_I_WO") |

NEEDED libraries of \`gdal_NSAT.so\` (torch/c10 linked: **$TORCH_LINKED**):

\`\`\`
$NEEDED
\`\`\`
EOF

STATUS=0
if awk -v r="$V_R" -v m="$MAX_RATIO" 'BEGIN { exit !(r > m) }'; then
  echo
  echo "**FAIL**: \`gdalinfo --version\` is ${V_R}x slower with the plugin (limit ${MAX_RATIO}x)."
  STATUS=1
fi
if [[ $TORCH_LINKED == yes ]]; then
  echo
  echo "**FAIL**: gdal_NSAT.so links torch/c10 directly."
  STATUS=1
fi
if [[ $STATUS -eq 0 ]]; then
  echo
  echo "**PASS**: load-time ratio ${V_R}x <= ${MAX_RATIO}x and no torch/c10 in NEEDED."
fi
exit "$STATUS"
