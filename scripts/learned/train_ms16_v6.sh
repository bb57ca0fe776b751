#!/bin/sh
# multirate-ms16-v6 (issue 12): the 16-bit single-band model on an 8x latent grid (three
# analysis stages, M = 192: 3 latents per pixel). multirate-ms16-v5 (16x grid, 0.75 latents
# per pixel) saturates at about 40.7 dB (peak 65535) on the held-out Landsat 8 B4 however
# many bits it spends, with 94 % of the error on the land interior: the same capacity limit
# that multirate-sar-db-v3 broke for speckle. Warm start from v5's committed export with its
# middle stage dropped (train_multirate.drop_middle_stage); same scenes16 data, hold-outs and
# lambda range as v5. Resumable: rerun the same command. Shipped (2026-12-04): 17,030 steps
# on 1-2 threads (0.23-0.3 s/step), lr never dropped, exported with --export-lambda-max 30
# (STEPS=17030 ... --export-lambda-max 30 redoes that export from the checkpoint).
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-ms16-v6}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --bands 1 --source scenes16 \
  --init-from "${INIT_FROM:-scripts/learned/warm_start/multirate-ms16-v5}" --init-eval-images 100 \
  --gain-activation positive --demodulation inverse --downsampling 8 \
  --lr-gain 1e-4 --lr-prior 1e-4 --lambda-min 0.0144 --lambda-max 300 \
  --steps "${STEPS:-30000}" --batch-size 8 --crop 128 --eurosat-every 4 \
  --threads "${THREADS:-2}" --seed 31 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 5000 --eval-images 100 --final-eval-images 312 --eval-lambda-count 7 \
  --model-id multirate-ms16-v6 --export "$RUN/export" "$@"
