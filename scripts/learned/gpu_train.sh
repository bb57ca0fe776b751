#!/bin/sh
# MULTIRATE RGB v2 on a lent GPU (README.md, "Training on a lent GPU"). First, here:
#   /usr/bin/python3 scripts/learned/pack_crops.py        # -> runs/gpu_pack (carry <= 64 MiB with the tree)
# Then the device tool, exactly:
#   run(command="sh scripts/learned/gpu_train.sh", carry=["runs/gpu_pack"], timeout_s=600)
# Then here: /usr/bin/python3 scripts/learned/gpu_train.py --join <files_at> --to runs/gpu_back/ckpt.pt
cd "$(dirname "$0")/../.." && PYTHONUNBUFFERED=1 exec python3 scripts/learned/gpu_train.py --pack runs/gpu_pack --device cuda --minutes "${MINUTES:-8}" --batch-size "${BATCH:-64}" "$@"
