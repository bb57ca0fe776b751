#!/bin/sh
# RDIC analysis model robust to the coding it drives (issue 19): the shipped classifier
# fine-tuned with JPEG q30..100 on 75 % of the images. Resumable (same arguments).
cd "$(dirname "$0")/../.." || exit 1
mkdir -p runs/classifier-robust
setsid nohup nice -n 10 /usr/bin/python3 scripts/learned/train_classifier.py --epochs 6 --lr 5e-4 \
  --threads 1 --seed 2 --jpeg-share 0.75 --jpeg-quality 30 100 \
  --init-from models/rdic-classifier-rgb8 --checkpoint runs/classifier-robust/ckpt.pt \
  --log runs/classifier-robust/log.jsonl --export runs/classifier-robust/export \
  >> runs/classifier-robust/stdout.log 2>&1 < /dev/null &
echo "started PID $!"
