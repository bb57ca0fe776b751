#!/bin/sh
# multirate-ms16-v4 (issue 12): the 16-bit single-band model on an 8x latent grid (three
# analysis stages, 3 latents per pixel), so that high rates are not capped: the 16x
# multirate-ms16-v3 stops at 39 dB (peak 65535) on Landsat 8 at 2.4 bpp where JP2 reaches
# 54 dB at 1.9 bpp. Warm start from v3 with its middle stage dropped
# (train_multirate.drop_middle_stage), tied gains, EuroSAT MS bands, and a lambda range
# reaching 100x higher (a Landsat 8 tile is mapped at 1/8 or 1/16 DN per model level, so
# 55 dB there needs an error of about one model level). Resumable.
# Not shipped yet: a first run (2026-12-02, 10k steps on one EPYC thread) reached 57.9 dB
# (DN/16384) at 0.71 bpp on 100 test samples, v3 57.6 at 0.67, and flattened at 60.4 dB from
# lambda 156 on (5 to 17 bpp): the transform's own ceiling, so more steps or a residual
# stage come before it can be a default.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-ms16-v4}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --bands 1 \
  --init-from "${INIT_FROM:-models/multirate-ms16-v3}" --init-eval-images 100 \
  --gain-activation positive --demodulation inverse --downsampling 8 \
  --lr-gain 1e-4 --lr-prior 1e-4 --lambda-min 0.0144 --lambda-max 1000 \
  --steps "${STEPS:-40000}" --batch-size 8 --crop 64 \
  --threads 1 --seed 23 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 10000 --eval-images 100 --final-eval-images 312 --eval-lambda-count 7 \
  --model-id multirate-ms16-v4 --export "$RUN/export" "$@"
