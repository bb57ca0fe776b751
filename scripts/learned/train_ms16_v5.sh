#!/bin/sh
# multirate-ms16-v5 (issue 12): the 16-bit single-band model trained on large 16-bit scenes
# (Landsat 5/7/8, Sentinel-2, WorldView-like aerial; datasets.SCENES16_SPECS) beside
# EuroSAT MS, every sample mapped as the codec maps a tile (offset = the tile's minimum,
# a power-of-two step, + 256), which the EuroSAT-only v3 never saw: it was trained on
# DN / 16384, and on Landsat 8 it stopped at 39 dB (peak 65535) at 2.1 bpp where JPEG 2000
# needs 0.17 bpp. Warm start from v3 (same 16x grid), lambda range widened from 10 to 300
# so that QUALITY 100 reaches the high rates. Hold-outs: the benchmark's Landsat 8 scene and
# Sentinel-2 patch (datasets.SCENES16_HOLDOUT). Resumable: rerun the same command.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-ms16-v5}
mkdir -p "$RUN"
# Without this run's checkpoint (a fresh machine), go on from the committed warm-start export.
WARM=scripts/learned/warm_start/multirate-ms16-v5
[ ! -f "$RUN/ckpt.pt" ] && [ -z "$INIT_FROM" ] && [ -f "$WARM/card.json" ] && INIT_FROM=$WARM
exec /usr/bin/python3 scripts/learned/train_multirate.py --bands 1 --source scenes16 \
  --init-from "${INIT_FROM:-models/multirate-ms16-v3}" --init-eval-images 100 \
  --gain-activation positive --demodulation inverse \
  --lr-gain 1e-4 --lr-prior 1e-4 --lambda-min 0.0144 --lambda-max 300 \
  --steps "${STEPS:-30000}" --batch-size 8 --crop 128 --eurosat-every 4 \
  --threads "${THREADS:-2}" --seed 29 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 5000 --eval-images 100 --final-eval-images 312 --eval-lambda-count 7 \
  --model-id multirate-ms16-v5 --export "$RUN/export" "$@"
