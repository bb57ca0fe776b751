#!/bin/sh
# The multirate-sar-db model (issue 17): multirate-ms16 fine-tuned on Sentinel-1 backscatter
# in dB (datasets.SarDbWindows), each window mapped as the codec maps a Float32 tile, over a
# wider lambda range (speckle needs many more bits than optical 16-bit data), with positive
# gains and the channels that ReLU gains had cut off revived (--gain-activation positive),
# gain nets and prior at the transforms' learning rate (see train_ms16_v2.sh). Resumable:
# rerun the same command. Measured on the shared 2-core EPYC, 1 thread: about 20 steps/s alone.
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-sar}
mkdir -p "$RUN"
exec /usr/bin/python3 scripts/learned/train_multirate.py --source sar --bands 1 \
  --init-from models/multirate-ms16 --init-eval-images 48 --gain-activation positive --lr-gain 1e-4 --lr-prior 1e-4 \
  --lambda-min 0.0144 --lambda-max 10 --steps "${STEPS:-40000}" --batch-size 8 --crop 64 \
  --threads 1 --seed 17 --checkpoint "$RUN/ckpt.pt" --log "$RUN/log.jsonl" \
  --eval-every 10000 --eval-images 48 --final-eval-images 48 --eval-lambda-count 6 \
  --model-id multirate-sar-db --export "$RUN/export" "$@"
