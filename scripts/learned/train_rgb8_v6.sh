#!/bin/sh
# multirate-rgb8-v6 (issue 12): multirate-rgb8-v5 trained on, same configuration and stream.
# v5's held-out ceiling was still rising when its 48,000 steps ended (lambda 4: 27.5 dB at step
# 2k, 31.0 at 13k, 33.0 at 25k), so this continues its checkpoint to STEPS (default 84,000),
# the learning rate back at 1e-4 until the drop at 0.9 x STEPS. Where v5's checkpoint is gone
# (a fresh machine), it warm-starts from the exported v5 instead. Resumable: rerun the same
# command; STEPS=<current step> only redoes the final evaluation and export.
# train_rgb8_v7.sh continues this run the same way (PREVIOUS_RUN, PREVIOUS_MODEL, MODEL_ID).
set -e
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-rgb8-v6}
PREVIOUS_RUN=${PREVIOUS_RUN:-runs/mr-rgb8-v5}
PREVIOUS_MODEL=${PREVIOUS_MODEL:-models/multirate-rgb8-v5}
MODEL_ID=${MODEL_ID:-multirate-rgb8-v6}
mkdir -p "$RUN"
if [ ! -f "$RUN/ckpt.pt" ] && [ -f "$PREVIOUS_RUN/ckpt.pt" ]; then
  cp "$PREVIOUS_RUN/ckpt.pt" "$RUN/ckpt.pt"
  touch "$RUN/continues_v5_checkpoint"
fi
# A checkpoint continued from v5's run (v6's, and v7's from v6's) keeps that run's warm start in its
# configuration.
[ -f "$RUN/continues_v5_checkpoint" ] && INIT_FROM=models/multirate-rgb8-v4
RUN="$RUN" STEPS=${STEPS:-84000} INIT_FROM=${INIT_FROM:-$PREVIOUS_MODEL} \
  exec sh scripts/learned/train_rgb8_v5.sh --model-id "$MODEL_ID" "$@"
