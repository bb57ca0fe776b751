#!/bin/sh
# multirate-rgbn8-v1 (issue 12): the 4-band 8-bit model (R, G, B, NIR: NAIP and stretched
# Landsat / Sentinel-2, datasets.RgbnStream), so that NIR is no longer coded as a grey copy
# through the RGB model. Warm start from multirate-rgb8-v6 (same 8x grid) with the NIR input
# at zero weight and the NIR output as the mean of the three bands'
# (train_multirate.add_nir_band); v6's lambda range, exported at its lambda_max 0.2.
# Hold-out: the NAIP columns from 700 on. Resumable: rerun the same command.
# Not shipped: after 28,000 steps (2026-12-04, 1 thread, 0.2 s/step) it beats v6 on the
# held-out NAIP columns below 1.3 bpp only (scripts/learned/README.md, "RGB + NIR").
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-rgbn8-v1}
mkdir -p "$RUN"
# Without this run's checkpoint (a fresh machine), go on from the committed warm-start export.
WARM=scripts/learned/warm_start/multirate-rgbn8-v1
[ ! -f "$RUN/ckpt.pt" ] && [ -z "$INIT_FROM" ] && [ -f "$WARM/card.json" ] && INIT_FROM=$WARM
exec /usr/bin/python3 scripts/learned/train_multirate.py --source rgbn --bands 4 --crop 128 \
  --batch-size 4 --eurosat-every 2 \
  --init-from "${INIT_FROM:-models/multirate-rgb8-v6}" --init-eval-images 0 \
  --gain-activation positive --demodulation inverse --downsampling 8 \
  --lr-gain 1e-4 --lr-prior 1e-4 --lambda-min 0.0018 --lambda-max 4.0 \
  --steps "${STEPS:-24000}" --threads "${THREADS:-1}" --seed 37 \
  --checkpoint "$RUN/ckpt.pt" --checkpoint-every 500 --log "$RUN/log.jsonl" --log-every 100 \
  --eval-every 0 --eval-images 270 --final-eval-images 270 --eval-lambda-count 7 \
  --export-lambda-max 0.2 --model-id multirate-rgbn8-v1 --export "$RUN/export" "$@"
