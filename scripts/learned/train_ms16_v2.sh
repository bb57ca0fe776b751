#!/bin/sh
# The multirate-ms16-v2 model: multirate-ms16 warm-started with its 179 channels that ReLU
# gains had cut off revived (--gain-activation positive, train_multirate.revive_dead_channels),
# trained on EuroSAT MS bands over a wider lambda range (up to 10: the KLT components and
# 16-bit scenes need higher rates than the first model reached). The gain nets and prior
# learn at the transforms' rate (1e-4): at 1e-3 the gains cut the revived channels off
# again within 10k steps (15 of 192 in use), before g_a and g_s could learn to use them.
# Resumable: rerun the same command. Measured on the shared 2-core EPYC, 1 thread, next to
# another training: about 15 steps/s.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-ms16-v2}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --bands 1 \
  --init-from models/multirate-ms16 --init-eval-images 100 --gain-activation positive --lr-gain 1e-4 --lr-prior 1e-4 \
  --lambda-min 0.0144 --lambda-max 10 --steps "${STEPS:-40000}" --batch-size 8 --crop 64 \
  --threads 1 --seed 12 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 15000 --eval-images 100 --final-eval-images 312 --eval-lambda-count 6 \
  --model-id multirate-ms16-v2 --export "$RUN/export" "$@"
