#!/bin/sh
# MULTIRATE RGB v2: multi-source data (EuroSAT + large 8-bit scenes, clouds), lambda 0.0018..0.72,
# warm-started from models/multirate-rgb8. Resumable: rerun this script (same arguments!) after
# an interruption; it continues runs/mr-rgb-v2/ckpt.pt. See README.md, "MULTIRATE RGB v2".
# setsid: the run survives the shell (and the session's job control) that started it.
# On a machine without the checkpoint (runs/ is not committed), the run starts from the
# weights the last session committed in scripts/learned/warm_start/ (optimiser state and
# step count start afresh), else from the shipped multirate-rgb8.
cd "$(dirname "$0")/../.." || exit 1
mkdir -p runs/mr-rgb-v2
INIT=models/multirate-rgb8
if [ ! -f runs/mr-rgb-v2/ckpt.pt ] && [ -f scripts/learned/warm_start/multirate-rgb8-v2/card.json ]; then
  INIT=scripts/learned/warm_start/multirate-rgb8-v2
fi
setsid nohup /usr/bin/python3 scripts/learned/train_multirate.py --source mix --bands 3 --crop 128 \
  --batch-size 16 --eurosat-every 4 --lambda-min 0.0018 --lambda-max 0.72 --steps 400000 \
  --threads 1 --seed 1 --cache --init-from "$INIT" --init-eval-images 1000 \
  --checkpoint runs/mr-rgb-v2/ckpt.pt --checkpoint-every 1000 --log runs/mr-rgb-v2/log.jsonl \
  --log-every 100 --eval-every 5000 --eval-images 300 --eval-lambda-count 5 \
  --export runs/mr-rgb-v2/export --model-id multirate-rgb8-v2 >> runs/mr-rgb-v2/stdout.log 2>&1 < /dev/null &
echo "started PID $!"
