#!/bin/sh
# MULTIRATE RGB with revived channels (issue 12): multirate-rgb8 warm-started with the 168
# latent channels its ReLU gains had cut off revived, positive gains, gain nets and prior at
# the transforms' learning rate, EuroSAT RGB at a wider lambda range (the recipe of
# train_ms16_v2.sh). Resumable: rerun the same command.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-rgb8-v3}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --bands 3 --cache \
  --init-from models/multirate-rgb8 --init-eval-images 300 --gain-activation positive \
  --lr-gain 1e-4 --lr-prior 1e-4 --lambda-min 0.0018 --lambda-max 0.72 \
  --steps "${STEPS:-30000}" --batch-size 8 --crop 64 --threads 1 --seed 3 \
  --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" --eval-every 10000 --eval-images 300 \
  --final-eval-images 1000 --eval-lambda-count 6 --model-id multirate-rgb8-v3 \
  --export "$RUN/export" "$@"
