#!/bin/sh
# multirate-sar-db-v3 (issue 17): the SAR dB model on an 8x latent grid (three analysis
# stages, M = 192: 3 latents per pixel). The 16x models (0.75 latents per pixel) saturate on
# speckle, which is nearly white: multirate-sar-db-v2 stops at 29.5 dB PSNR-on-dB on the
# pyroSAR plane however many bits it spends, where JP2 keeps rising. Warm start from v2 with
# its middle stage dropped (train_multirate.drop_middle_stage), tied gains, the same SAR
# windows and hold-outs (datasets.SarDbWindows), lambda reaching lower rates. Resumable.
# Measured on the shared 2-core EPYC, 1 thread: about 0.1 s per step.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-sar-db-v3}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --source sar --bands 1 \
  --init-from "${INIT_FROM:-models/multirate-sar-db-v2}" --init-eval-images 48 \
  --gain-activation positive --demodulation inverse --downsampling 8 \
  --lr-gain 1e-4 --lr-prior 1e-4 --lambda-min 0.005 --lambda-max 10 \
  --steps "${STEPS:-45000}" --batch-size 8 --crop 64 \
  --threads 1 --seed 19 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 5000 --eval-images 48 --final-eval-images 48 --eval-lambda-count 7 \
  --model-id multirate-sar-db-v3 --export "$RUN/export" "$@"
