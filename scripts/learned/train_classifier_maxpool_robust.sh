#!/bin/sh
# The benchmark's second classifier (scripts/learned/eval_models/landcover-maxpool, trained
# on clean images) fine-tuned with the compression augmentation of the RDIC analysis model
# (JPEG q30..100 on 75 % of the images, train_classifier_robust.sh): a user's classifier
# for a compressed archive, of another architecture, never seen by RDIC (issue 19).
# Resumable (same arguments).
cd "$(dirname "$0")/../.." || exit 1
mkdir -p runs/classifier-maxpool-robust
exec /usr/bin/python3 scripts/learned/train_classifier.py --architecture maxpool --epochs 3 \
  --lr 5e-4 --threads 1 --seed 5 --jpeg-share 0.75 --jpeg-quality 30 100 \
  --init-from scripts/learned/eval_models/landcover-maxpool \
  --checkpoint runs/classifier-maxpool-robust/ckpt.pt --log runs/classifier-maxpool-robust/log.jsonl \
  --export runs/classifier-maxpool-robust/export "$@"
