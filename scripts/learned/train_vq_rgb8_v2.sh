#!/bin/sh
# vq-rgb8-v2: vq-rgb8-v1's encoder and codebooks with a decoder half as wide (64 filters, so
# it decodes faster than MULTIRATE's synthesis), trained together 10,000 more steps on the
# same data. Needs runs/vq-rgb8-v1/checkpoint.pt (sh scripts/learned/train_vq_v1.sh rgb8).
set -eu
exec /usr/bin/python3 scripts/learned/train_vq.py --source rgb8 --groups 2 --levels 3 \
  --entries 256 --latent 32 --synthesis-filters 64 --steps 10000 --lr-drop-at 0.8 --threads 2 \
  --seed 2 --init-from runs/vq-rgb8-v1/checkpoint.pt --run runs/vq-rgb8-v2 \
  --export models/vq-rgb8-v2 --model-id vq-rgb8-v2
