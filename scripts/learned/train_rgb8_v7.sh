#!/bin/sh
# multirate-rgb8-v7 (issue 12, not yet shipped): multirate-rgb8-v6's run continued to STEPS
# (default 120,000) the same way v6 continued v5's; v6's held-out curve still rose between
# steps 48,000 and 84,000. Without v6's checkpoint it warm-starts from the exported v6.
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/mr-rgb8-v7} PREVIOUS_RUN=runs/mr-rgb8-v6 PREVIOUS_MODEL=models/multirate-rgb8-v6 \
  MODEL_ID=multirate-rgb8-v7 STEPS=${STEPS:-120000} exec sh scripts/learned/train_rgb8_v6.sh "$@"
