#!/bin/sh
# MULTIRATE 16-bit with tied gains (issue 12; see train_rgb8_tied.sh): multirate-ms16-v2 with
# its gain product at lambda 1 folded into g_s, trained on EuroSAT MS bands at lambda up to
# 10 (the v2 range, where v2's separate gains made PSNR fall above 1.948). Resumable.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-ms16-tied}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --bands 1 \
  --init-from models/multirate-ms16-v2 --init-eval-images 100 --gain-activation positive \
  --demodulation inverse --tie-at-lambda 1.0 --lr-gain 1e-4 --lr-prior 1e-4 \
  --lambda-min 0.0144 --lambda-max 10 --steps "${STEPS:-60000}" --batch-size 8 --crop 64 \
  --threads 1 --seed 13 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 15000 --eval-images 100 --final-eval-images 312 --eval-lambda-count 7 \
  --model-id multirate-ms16-tied --export "$RUN/export" "$@"
