#!/bin/sh
# The first VQ models (models/vq-*-v1), one training each, 1 thread, seeded; run from the
# repository root. Usage: sh scripts/learned/train_vq_v1.sh rgbn16|rgb8|rgbn8
# A stopped run resumes from runs/<id>/checkpoint.pt; the export happens at the end.
set -eu
case "$1" in
  rgbn16) SRC=s2-rgbn; GROUPS=4; STEPS=40180; DROP=0.79642 ;;  # lr / 10 from step 32,000
  rgb8)   SRC=rgb8;    GROUPS=2; STEPS=16000; DROP=0.8 ;;
  rgbn8)  SRC=rgbn8;   GROUPS=2; STEPS=12000; DROP=0.8 ;;
  *) echo "usage: $0 rgbn16|rgb8|rgbn8" >&2; exit 2 ;;
esac
ID=vq-$1-v1
exec /usr/bin/python3 scripts/learned/train_vq.py --source $SRC --groups $GROUPS --levels 3 \
  --entries 256 --latent 32 --steps $STEPS --lr-drop-at $DROP --threads 1 --seed 1 --run runs/$ID \
  --export models/$ID --model-id $ID
