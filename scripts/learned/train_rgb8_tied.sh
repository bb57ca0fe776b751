#!/bin/sh
# MULTIRATE RGB with tied gains (issue 12): the decoder's gain is 1 / the modulation gain
# (--demodulation inverse), so y_hat * gain is y quantised with step 1/gain and quality can
# only rise with lambda. Warm-started from multirate-rgb8-v3 with its modulation x
# demodulation product at lambda 0.2 folded into g_s (train_multirate.tie_gains), then
# trained on the mixed stream (every 2nd batch EuroSAT; clouds, bright surfaces, aerial,
# NAIP, Landsat and Sentinel-2 crops of 128 px with nodata masked) at lambda up to 2.
# Resumable: rerun the same command.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-rgb8-tied}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --source mix --bands 3 --crop 128 \
  --batch-size 4 --eurosat-every 2 --cache \
  --init-from models/multirate-rgb8-v3 --init-eval-images 0 --gain-activation positive \
  --demodulation inverse --tie-at-lambda 0.2 \
  --lr-gain 1e-4 --lr-prior 1e-4 --lambda-min 0.0018 --lambda-max 2.0 \
  --steps "${STEPS:-80000}" --threads 1 --seed 6 \
  --checkpoint "$RUN/ckpt.pt" --checkpoint-every 1000 --log "$RUN/log.jsonl" --log-every 200 \
  --eval-every 10000 --eval-images 300 --final-eval-images 1000 --eval-lambda-count 7 \
  --model-id multirate-rgb8-tied --export "$RUN/export" "$@"
