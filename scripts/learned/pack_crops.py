#!/usr/bin/python3
"""Pack the MULTIRATE RGB v2 training data into one small file for a lent GPU machine.

The GPU machine (see README.md, "Training on a lent GPU") gets a copy of the working tree
plus at most 8 "carry" paths, 64 MiB in all *including the tracked tree*, and has neither
GDAL nor ../shared/data. This script, run HERE (Debian torch 1.13, GDAL), writes
``--out`` (default runs/gpu_pack/, gitignored, carried as one path):

* ``warm.pt``: the warm start, a train_multirate.py checkpoint without its optimiser
  states (model, config, args, step, stream and RNG states, init_from_info; ~8 MB, or ~30 kB
  with ``--model-from DIR``, when gpu_train takes the weights from a git-tracked export):
  - ``--warm-from FILE``: a train_multirate checkpoint (default runs/mr-rgb-v2/ckpt.pt,
    only read);
  - ``--warm-from DIR``: an exported model folder (e.g. models/multirate-rgb8): runs
    ``train_multirate.main(... --init-from DIR --steps 0 ...)`` here, i.e. exactly the
    step-0 checkpoint of a fresh v2 run (warm_start, seeds), then sets its args.steps to
    ``--total-steps`` (the lr schedule of the CPU run, 400000).
  Its config (crop, batch size, --eurosat-every, seed, scene list, ...) is the config of the
  CPU run that will later resume from the GPU's checkpoint; the pack follows it.
* ``pack.npz``: numpy .npz (no pickle) of xz-compressed chunks (delta filter over
  interleaved RGB; stdlib lzma, lossless, decoded arrays are checked against SHA-256s):
  - ``scene_img`` (K, 3, crop, crop) uint8 + ``scene_valid`` (K, crop, crop) bool
    (bit-packed): crops cut by ``datasets.MixedRgbStream`` itself (its ``_scene_crop``:
    group by GROUP_WEIGHTS, scene by valid pixels, uniform position, redrawn while > 50 %
    nodata, flips/turns; hold-outs excluded, cloud scenes stretched per scene, nodata =
    all bands 0 or pix4d alpha 0), seeded by ``--seed``;
  - ``eurosat_train`` (E, 3, 64, 64) uint8: distinct EuroSAT RGB train images, E chosen so
    that EuroSAT keeps its pixel share of the v2 stream (every ``eurosat_every``-th batch);
  - ``eurosat_test`` (T, 3, 64, 64): ``datasets.eval_indices(test, T)`` (GPU-side RD check);
  - ``holdout_img``/``holdout_valid``: ``datasets.holdout_eval_crops`` (never trained on;
    GPU-side RD check only).
  Chunks are added (scene crops and EuroSAT in proportion) until ``--max-mib`` is reached;
  by default that is 64 MiB minus the tree that travels, minus warm.pt, minus 1 MiB.
* ``manifest.json``: sources, counts per group/scene, seed, hold-outs, sizes, SHA-256s.

Run from the repository root (relative --init-from paths are part of the run config):

    /usr/bin/python3 scripts/learned/pack_crops.py                       # full pack
    /usr/bin/python3 scripts/learned/pack_crops.py --limit 64 --out /tmp/gpu_pack_smoke

``load_pack`` (numpy + lzma only, no GDAL) is what gpu_train.py uses to read the pack.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

PACK_FORMAT = "nsat-gpu-pack-v1"
MIB = 1 << 20
CARRY_LIMIT = 64 * MIB
DELTA_RGB = [{"id": lzma.FILTER_DELTA, "dist": 3}, {"id": lzma.FILTER_LZMA2, "preset": 6}]
PLAIN = [{"id": lzma.FILTER_LZMA2, "preset": 6}]


# --------------------------------------------------------------------------------------
# Reading (numpy + stdlib only: runs on the GPU machine, which has no GDAL)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _decode(blob: np.ndarray, info: dict) -> np.ndarray:
    raw = lzma.decompress(blob.tobytes(), format=lzma.FORMAT_XZ)
    if info["kind"] == "rgb":                      # stored N, H, W, 3 -> N, 3, H, W
        n, c, h, w = info["shape"]
        arr = np.frombuffer(raw, np.uint8).reshape(n, h, w, c).transpose(0, 3, 1, 2)
    else:                                          # bit-packed bool N, H, W
        n, h, w = info["shape"]
        arr = np.unpackbits(np.frombuffer(raw, np.uint8), count=n * h * w).reshape(n, h, w).astype(bool)
    arr = np.ascontiguousarray(arr)
    if _sha(arr) != info["sha256"]:
        raise ValueError(f"pack chunk {info['key']}: SHA-256 of the decoded array differs")
    return arr


def load_pack(path: str) -> dict:
    """Decode a pack: {"meta", "scene_img", "scene_valid", "scene_index", "eurosat_train",
    "eurosat_test", "holdout": [(name, img uint8 (3,h,w), valid bool (h,w))]}."""
    z = np.load(path, allow_pickle=False)
    meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    if meta.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: not a {PACK_FORMAT} pack")
    out = {"meta": meta}
    for name, chunks in meta["arrays"].items():
        parts = [_decode(z[c["key"]], c) for c in chunks]
        if name.startswith("holdout"):
            out[name] = parts
        else:
            empty = (0, 3, 64, 64) if name.startswith("eurosat") else (0,)
            out[name] = np.concatenate(parts) if parts else np.zeros(empty, np.uint8)
    out["scene_index"] = np.array(meta["scene_index"], dtype=np.int64)
    out["holdout"] = [(n, img[0], val[0]) for n, img, val in
                      zip(meta["holdout_names"], out.pop("holdout_img"), out.pop("holdout_valid"))]
    return out


# --------------------------------------------------------------------------------------
# Writing (here: GDAL, the data folder, torch 1.13)


def plain(obj):
    """Recursively turn numpy values into Python ones (so that no numpy class is pickled:
    numpy 2 pickles do not load under Debian's numpy 1.24); tensors stay tensors."""
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)                    # also torch.__version__ (a str subclass)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    raise TypeError(f"unexpected {type(obj)} in a checkpoint")


def travelling_tree_bytes(root: str) -> int:
    """Bytes of what the device tool copies anyway: tracked + untracked-not-ignored files."""
    total = 0
    for extra in ([], ["-o", "--exclude-standard"]):
        names = subprocess.run(["git", "-C", root, "ls-files", "-z"] + extra, check=True,
                               capture_output=True).stdout.split(b"\0")
        for n in names:
            p = os.path.join(root, n.decode())
            if n and os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def make_warm(args, out_path: str) -> dict:
    import torch
    import train_multirate as tm
    src = args.warm_from
    if os.path.isdir(src):
        with tempfile.TemporaryDirectory() as tmp:
            ck_path = os.path.join(tmp, "step0.pt")
            argv = ["--data", args.data, "--source", "mix", "--bands", "3", "--crop", str(args.crop),
                    "--batch-size", str(args.batch_size), "--eurosat-every", str(args.eurosat_every),
                    "--lambda-min", repr(args.lambda_min), "--lambda-max", repr(args.lambda_max),
                    "--seed", str(args.train_seed), "--init-from", src, "--init-eval-images", "0",
                    "--steps", "0", "--checkpoint", ck_path, "--final-eval-images", "1",
                    "--no-holdout-eval", "--threads", str(args.threads), "--eval-every", "0"]
            print("warm start from an export folder: train_multirate " + " ".join(argv), flush=True)
            tm.main(argv)
            ck = torch.load(ck_path, map_location="cpu")
        ck["args"]["steps"] = args.total_steps
    else:
        ck = torch.load(src, map_location="cpu")
    if ck.get("version") != tm.CKPT_VERSION or ck.get("config", {}).get("source") != "mix":
        raise SystemExit(f"--warm-from {src}: need a version-{tm.CKPT_VERSION} --source mix checkpoint")
    if not ck["args"].get("steps"):
        raise SystemExit(f"--warm-from {src}: args.steps is 0; the lr schedule needs the run's --steps")
    slim = plain({k: v for k, v in ck.items() if k not in ("opt", "aux_opt")})
    slim["warm_source"] = os.path.normpath(src)
    if args.model_from:
        # The weights come from an exported folder that travels with the tree anyway;
        # gpu_train.py loads it with train_multirate.warm_start.
        rel = os.path.relpath(os.path.abspath(args.model_from), REPO_ROOT)
        tracked = subprocess.run(["git", "-C", REPO_ROOT, "ls-files", "--error-unmatch",
                                  os.path.join(rel, "card.json")], capture_output=True).returncode == 0
        if not tracked or not os.path.isfile(os.path.join(REPO_ROOT, rel, "synthesis.pt")):
            raise SystemExit(f"--model-from {args.model_from}: not an exported folder tracked by git "
                             "(it must travel with the working tree)")
        del slim["model"]
        slim["model_from"] = rel
    torch.save(slim, out_path, _use_new_zipfile_serialization=True)
    return slim


class _Recording(list):
    """The stream's scene list, remembering which scene _scene_crop picked last."""
    last = None

    def __getitem__(self, i):
        self.last = i
        return list.__getitem__(self, i)


def _compress_rgb(arr: np.ndarray, key: str) -> tuple:
    hwc = np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
    blob = lzma.compress(hwc.tobytes(), format=lzma.FORMAT_XZ, filters=DELTA_RGB)
    return np.frombuffer(blob, np.uint8), {"key": key, "kind": "rgb", "shape": list(arr.shape),
                                           "sha256": _sha(arr)}


def _compress_bits(valid: np.ndarray, key: str) -> tuple:
    v = np.ascontiguousarray(valid.astype(bool))
    blob = lzma.compress(np.packbits(v.reshape(-1)).tobytes(), format=lzma.FORMAT_XZ, filters=PLAIN)
    return np.frombuffer(blob, np.uint8), {"key": key, "kind": "bits", "shape": list(v.shape),
                                           "sha256": _sha(v)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="data folder (default datasets.DEFAULT_DATA)")
    p.add_argument("--out", default=os.path.join(REPO_ROOT, "runs", "gpu_pack"))
    p.add_argument("--warm-from", default=None,
                   help="train_multirate checkpoint or exported folder (default runs/mr-rgb-v2/ckpt.pt "
                        "if present, else models/multirate-rgb8)")
    p.add_argument("--model-from", default=None, metavar="DIR",
                   help="leave the weights out of warm.pt (8 MB more for the pack): gpu_train loads them "
                        "from this git-tracked exported folder (train_multirate.warm_start, prior refitted)")
    p.add_argument("--seed", type=int, default=20251201, help="seed of the crop/EuroSAT draws")
    p.add_argument("--max-mib", type=float, default=None,
                   help="pack.npz size limit (default: 64 MiB - travelling tree - warm.pt - 1 MiB)")
    p.add_argument("--limit", type=int, default=0, help="at most this many scene crops (smoke tests)")
    p.add_argument("--eurosat-test", type=int, default=100, help="EuroSAT test images for the GPU-side RD check")
    p.add_argument("--chunk", type=int, default=32, help="scene crops per compressed chunk")
    p.add_argument("--threads", type=int, default=1)
    g = p.add_argument_group("only for --warm-from DIR (the v2 run's values)")
    g.add_argument("--crop", type=int, default=128)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--eurosat-every", type=int, default=4)
    g.add_argument("--lambda-min", type=float, default=0.0018)
    g.add_argument("--lambda-max", type=float, default=0.72)
    g.add_argument("--train-seed", type=int, default=1)
    g.add_argument("--total-steps", type=int, default=400000)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    import datasets
    torch.set_num_threads(args.threads)
    args.data = args.data or datasets.DEFAULT_DATA
    if args.warm_from is None:
        ck = os.path.join("runs", "mr-rgb-v2", "ckpt.pt")
        args.warm_from = ck if os.path.exists(ck) else os.path.join("models", "multirate-rgb8")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    warm_path = os.path.join(args.out, "warm.pt")
    warm = make_warm(args, warm_path)
    cfg = warm["config"]
    crop, every = int(cfg["crop"]), int(cfg["eurosat_every"])
    warm_bytes = os.path.getsize(warm_path)
    tree_bytes = travelling_tree_bytes(REPO_ROOT)
    limit = int(args.max_mib * MIB) if args.max_mib else CARRY_LIMIT - tree_bytes - warm_bytes - MIB
    if limit <= 2 * MIB:
        raise SystemExit(f"only {limit / MIB:.1f} MiB left for the pack (tree {tree_bytes / MIB:.1f} MiB, "
                         f"warm.pt {warm_bytes / MIB:.1f} MiB)")

    train = datasets.make_dataset(args.data, 3, "train")
    test = datasets.make_dataset(args.data, 3, "test")
    stream = datasets.MixedRgbStream(args.data, train, int(cfg["batch_size"]), crop, args.seed, every)
    if stream.scene_names() != cfg["scenes"]:
        raise SystemExit("the data folder's training scenes differ from the warm checkpoint's config")
    stream.scenes = _Recording(stream.scenes)

    entries, meta_arrays = {}, {k: [] for k in ("scene_img", "scene_valid", "eurosat_train",
                                                  "eurosat_test", "holdout_img", "holdout_valid")}
    size = 0

    def add(name, blob_info):
        nonlocal size
        blob, info = blob_info
        entries[info["key"]] = blob
        meta_arrays[name].append(info)
        size += blob.nbytes + 200                         # + zip member overhead

    # Fixed parts first: the evaluation data.
    test_idx = list(datasets.eval_indices(test, args.eurosat_test))
    add("eurosat_test", _compress_rgb(np.stack([test.raw(i) for i in test_idx]), "eurosat_test.000"))
    holdout_names = []
    for j, (name, img, valid) in enumerate(datasets.holdout_eval_crops(args.data)):
        u8 = np.rint(img * 255.0).astype(np.uint8)
        assert np.array_equal(u8.astype(np.float32) * np.float32(datasets.RGB_SCALE), img)
        add("holdout_img", _compress_rgb(u8[None], f"holdout_img.{j:03d}"))
        add("holdout_valid", _compress_bits(valid[0][None] > 0, f"holdout_valid.{j:03d}"))
        holdout_names.append(name)

    # Then scene crops and EuroSAT train images in the stream's pixel proportion.
    per_crop = (crop / 64) ** 2 / max(every - 1, 1) if every > 0 else 0.0
    eu_order = np.random.Generator(np.random.PCG64(args.seed + 1)).permutation(len(train))
    scene_index, n_scene, n_eu, full = [], 0, 0, False
    while not full and (not args.limit or n_scene < args.limit):
        k = min(args.chunk, args.limit - n_scene) if args.limit else args.chunk
        imgs, masks, idx = [], [], []
        for _ in range(k):
            img, m = stream._scene_crop()
            imgs.append(img)
            masks.append(m)
            idx.append(stream.scenes.last)
        ci = len(meta_arrays["scene_img"])
        a = _compress_rgb(np.stack(imgs), f"scene_img.{ci:03d}")
        b = _compress_bits(np.stack(masks), f"scene_valid.{ci:03d}")
        e_target = min(int(round((n_scene + k) * per_crop)), len(train))
        e_new = e_target - n_eu
        c = None
        if e_new > 0:
            c = _compress_rgb(np.stack([train.raw(int(i)) for i in eu_order[n_eu:e_target]]),
                              f"eurosat_train.{len(meta_arrays['eurosat_train']):03d}")
        need = a[0].nbytes + b[0].nbytes + (c[0].nbytes if c else 0) + 600
        if size + need > limit:
            full = True
            break
        add("scene_img", a)
        add("scene_valid", b)
        if c:
            add("eurosat_train", c)
        scene_index += idx
        n_scene += k
        n_eu = max(n_eu, e_target)
        print(f"  {n_scene} scene crops, {n_eu} EuroSAT, {size / MIB:.2f} MiB", flush=True)
    if n_scene == 0:
        raise SystemExit("not even one chunk fits: lower --chunk or raise --max-mib")

    names = cfg["scenes"]
    by_scene, by_group = {}, {}
    for i in scene_index:
        s = stream.scenes[i]
        by_scene[s.name] = by_scene.get(s.name, 0) + 1
        by_group[s.group] = by_group.get(s.group, 0) + 1
    meta = {
        "format": PACK_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seed": args.seed, "data": args.data, "crop": crop, "eurosat_every": every,
        "cpu_batch_size": int(cfg["batch_size"]),
        "counts": {"scene_crops": n_scene, "eurosat_train": n_eu, "eurosat_test": len(test_idx),
                   "holdout_crops": len(holdout_names)},
        "scene_crops_by_group": by_group, "scene_crops_by_scene": by_scene,
        "scene_names": names, "scene_index": [int(i) for i in scene_index],
        "eurosat_test_indices": test_idx, "holdout_names": holdout_names,
        "arrays": meta_arrays,
    }
    entries["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    pack_path = os.path.join(args.out, "pack.npz")
    tmp = pack_path + ".tmp.npz"
    np.savez(tmp, **entries)
    os.replace(tmp, pack_path)

    def file_sha(p):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for blk in iter(lambda: f.read(MIB), b""):
                h.update(blk)
        return h.hexdigest()

    manifest = {k: v for k, v in meta.items() if k not in ("arrays", "scene_index", "eurosat_test_indices")}
    manifest.update({
        "what": "MULTIRATE RGB v2 training data for scripts/learned/gpu_train.py",
        "sampling": "scene crops cut by datasets.MixedRgbStream._scene_crop (GROUP_WEIGHTS, scenes by "
                    "valid pixels, uniform positions, redrawn while > 50 % nodata, flips/turns); EuroSAT "
                    "train images distinct, in the stream's pixel share; gpu_train draws uniformly "
                    "from both and adds random flips/transposes",
        "group_weights": datasets.GROUP_WEIGHTS,
        "scenes": [s.describe() for s in stream.scenes],
        "skipped_smaller_than_crop": stream.skipped,
        "holdout_never_trained": list(datasets.HOLDOUT_SCENES),
        "holdout_files_present": datasets.holdout_paths(args.data),
        "nodata": "all three bands 0 (any scene) or alpha 0 (pix4d): weight 0 in the MSE",
        "cloud_stretch": "per scene, lo/hi = %.1f/%.1f th percentile of valid samples, 8 bit" %
                         datasets.STRETCH_PERCENTILES,
        "warm": {"source": warm["warm_source"], "step": warm["step"], "config": cfg,
                 "model_from": warm.get("model_from"),
                 "total_steps": warm["args"]["steps"], "bytes": warm_bytes, "sha256": file_sha(warm_path)},
        "pack": {"bytes": os.path.getsize(pack_path), "sha256": file_sha(pack_path),
                 "limit_bytes": limit, "raw_bytes": int(sum(int(np.prod(c["shape"])) * (1 if c["kind"] == "rgb" else 1 / 8)
                                                        for cs in meta_arrays.values() for c in cs))},
        "travelling_tree_bytes_at_pack_time": tree_bytes,
        "carry_total_bytes": tree_bytes + warm_bytes + os.path.getsize(pack_path),
        "seconds": round(time.time() - t0, 1),
    })
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps({"out": args.out, "counts": meta["counts"], "by_group": by_group,
                      "pack_mib": round(manifest["pack"]["bytes"] / MIB, 2),
                      "warm_mib": round(warm_bytes / MIB, 2), "tree_mib": round(tree_bytes / MIB, 2),
                      "carry_total_mib": round(manifest["carry_total_bytes"] / MIB, 2),
                      "warm_step": warm["step"]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
