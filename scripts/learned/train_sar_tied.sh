#!/bin/sh
# SAR backscatter (dB) with tied gains (issues 12 and 17; see train_rgb8_tied.sh):
# multirate-sar-db with its gain product at lambda 1 folded into g_s, trained on the same
# SAR windows (datasets.SarDbWindows, same hold-outs). Resumable.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-sar-tied}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --source sar --bands 1 \
  --init-from models/multirate-sar-db --init-eval-images 48 --gain-activation positive \
  --demodulation inverse --tie-at-lambda 1.0 --lr-gain 1e-4 --lr-prior 1e-4 \
  --lambda-min 0.0144 --lambda-max 10 --steps "${STEPS:-30000}" --batch-size 8 --crop 64 \
  --threads 1 --seed 18 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 10000 --eval-images 48 --final-eval-images 48 --eval-lambda-count 7 \
  --model-id multirate-sar-tied --export "$RUN/export" "$@"
