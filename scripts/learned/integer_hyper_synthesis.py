#!/usr/bin/python3
"""Pure-integer reference of the MULTIRATE hyper-synthesis h_s (numpy, int64).

This is the normative definition the C++ decoder must reproduce bit for bit. File
``hyper_synthesis_int.json`` (format ``nsat-int-hyper-synthesis-v1``):

    {"format": ..., "input_channels": 64, "input_clip": [-127, 127],
     "output_channels": 192, "scale_levels": 64,
     "layers": [{"in_channels", "out_channels", "kernel": 3, "padding": 1,
                 "weight": [int8 as JSON ints, layout [out][in][ky][kx], row-major],
                 "bias": [int32 per out channel], "multiplier": [int32 per out channel],
                 "shift": [int32 per out channel], "out_min": 0, "out_max": 255 | 63,
                 "pixel_shuffle": 2 | 1}, ... 3 layers],
     "real_scales": {...informative only...}}

Inference on one tile, z_sym int32 (64, zh, zw), channel-major (CHW):

    a = clamp(z_sym, -127, 127)
    for each layer:
        acc[o, y, x] = bias[o] + sum_{i, ky, kx} weight[o, i, ky, kx] * a[i, y + ky - 1, x + kx - 1]
                       (a outside the tile is 0; |acc| < 2**26 so int32 is enough)
        v = (int64(acc) * multiplier[o] + (1 << (shift[o] - 1))) >> shift[o]   (arithmetic shift)
        a = clamp(v, out_min, out_max)     (out_min is 0, so shifting negatives either way agrees)
        if pixel_shuffle == 2: a[c, 2y + i, 2x + j] = a[4c + 2i + j, y, x]   (torch.nn.PixelShuffle)
    idx = a[:, :h, :w]   crop the (192, 4zh, 4zw) result top-left to y's size (h, w)

idx[c, y, x] is the index into the 64-entry scale table (nsat::defaultGaussianTables()) for
the Gaussian of y_sym[c, y, x]; no float arithmetic anywhere.

CLI: ``--check`` compares this reference with the torch fake-quantised h_s (float32, the
training forward, and float64 exact mode) on real EuroSAT tiles:

    /usr/bin/python3 scripts/learned/integer_hyper_synthesis.py --check \
        --checkpoint /tmp/mr.ckpt --export-dir /tmp/multirate_smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Sequence

import numpy as np

FORMAT = "nsat-int-hyper-synthesis-v1"


# --------------------------------------------------------------------------------------
# Export (needs torch) and loading


def params_from_model(h_s) -> Dict:
    """The integers of a multirate_model.IntHyperSynthesis, as a JSON-able dict."""
    from multirate_model import HIDDEN_STEP, LOG_SCALE_STEP, SCALE_LEVELS, Z_CLIP  # noqa: WPS433
    layers = []
    for k, layer in enumerate(h_s.layers()):
        q = layer.integer_params()
        if int(q["multiplier"].max()) > (1 << 15) or int(q["shift"].min()) < 1:
            raise ValueError(f"h_s layer {k}: requantisation multiplier out of range")
        layers.append({
            "in_channels": layer.cin, "out_channels": layer.cout, "kernel": layer.k,
            "padding": layer.k // 2,
            "weight": q["weight"].reshape(-1).tolist(), "bias": q["bias"].tolist(),
            "multiplier": q["multiplier"].tolist(), "shift": q["shift"].tolist(),
            "out_min": 0, "out_max": layer.out_max, "pixel_shuffle": 2 if k < 2 else 1,
            "real_weight_scale": q["weight_scale"].tolist(),
            "real_in_step": layer.in_step, "real_out_step": layer.out_step,
        })
    return {"format": FORMAT, "input_channels": h_s.l1.cin, "input_clip": [-Z_CLIP, Z_CLIP],
            "output_channels": h_s.l3.cout, "scale_levels": SCALE_LEVELS,
            "real_scales": {"hidden_activation_step": HIDDEN_STEP,
                            "output_step_ln_scale": LOG_SCALE_STEP,
                            "note": "informative; inference uses only the integers"},
            "layers": layers}


def save_params(params: Dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(params, f, separators=(",", ":"))


def load_params(path: str) -> Dict:
    with open(path, "r", encoding="utf-8") as f:
        params = json.load(f)
    if params.get("format") != FORMAT:
        raise ValueError(f"{path}: not {FORMAT}")
    for layer in params["layers"]:
        o, i, k = layer["out_channels"], layer["in_channels"], layer["kernel"]
        layer["w"] = np.asarray(layer["weight"], dtype=np.int64).reshape(o, i, k, k)
        layer["b"] = np.asarray(layer["bias"], dtype=np.int64)
        layer["m"] = np.asarray(layer["multiplier"], dtype=np.int64)
        layer["s"] = np.asarray(layer["shift"], dtype=np.int64)
        if np.abs(layer["w"]).max() > 127 or np.abs(layer["b"]).max() >= (1 << 31):
            raise ValueError(f"{path}: weight or bias out of int8/int32 range")
    return params


# --------------------------------------------------------------------------------------
# Integer inference


def conv_int(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'Same' zero-padded stride-1 conv, int64: a (Ci, H, W), w (Co, Ci, k, k) -> (Co, H, W)."""
    ci, h, wd = a.shape
    co, _, k, _ = w.shape
    p = k // 2
    ap = np.zeros((ci, h + 2 * p, wd + 2 * p), dtype=np.int64)
    ap[:, p:p + h, p:p + wd] = a
    cols = np.empty((ci, k, k, h, wd), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            cols[:, ky, kx] = ap[:, ky:ky + h, kx:kx + wd]
    acc = w.reshape(co, -1) @ cols.reshape(ci * k * k, h * wd)
    return acc.reshape(co, h, wd) + b[:, None, None]


def requantize(acc: np.ndarray, m: np.ndarray, s: np.ndarray, lo: int, hi: int) -> np.ndarray:
    v = (acc * m[:, None, None] + (np.int64(1) << (s - 1))[:, None, None]) >> s[:, None, None]
    return np.clip(v, lo, hi)


def pixel_shuffle(a: np.ndarray, r: int) -> np.ndarray:
    c, h, w = a.shape
    return a.reshape(c // (r * r), r, r, h, w).transpose(0, 3, 1, 4, 2).reshape(c // (r * r), h * r, w * r)


def run(params: Dict, z_sym: np.ndarray, stats: Dict = None) -> np.ndarray:
    """z_sym int (64, zh, zw) -> indices int64 (192, 4zh, 4zw), uncropped."""
    lo, hi = params["input_clip"]
    a = np.clip(np.asarray(z_sym, dtype=np.int64), lo, hi)
    for layer in params["layers"]:
        acc = conv_int(a, layer["w"], layer["b"])
        peak = int(np.abs(acc).max(initial=0))
        if stats is not None:
            stats["max_abs_acc"] = max(stats.get("max_abs_acc", 0), peak)
        if peak >= (1 << 31):
            raise OverflowError("h_s accumulator exceeds int32")
        a = requantize(acc, layer["m"], layer["s"], layer["out_min"], layer["out_max"])
        if layer["pixel_shuffle"] > 1:
            a = pixel_shuffle(a, layer["pixel_shuffle"])
    return a


def scale_indices(params: Dict, z_sym: np.ndarray, y_hw: Sequence[int], stats: Dict = None) -> np.ndarray:
    """Indices cropped to y's (h, w)."""
    return run(params, z_sym, stats)[:, : int(y_hw[0]), : int(y_hw[1])]


# --------------------------------------------------------------------------------------
# Check against torch


def check(args) -> int:
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import datasets
    from multirate_model import MultirateCodec

    torch.set_num_threads(args.threads)
    ck = torch.load(args.checkpoint, map_location="cpu")
    cfg = ck["config"]
    model = MultirateCodec(cfg["bands"], cfg["lambda_min"], cfg["lambda_max"])
    model.load_state_dict(ck["model"])
    model.eval()
    if args.export_dir:
        params = load_params(os.path.join(args.export_dir, "hyper_synthesis_int.json"))
    else:
        params = load_params_from_dict(params_from_model(model.h_s))
    test = datasets.make_dataset(args.data, cfg["bands"], "test")
    idx_all = list(datasets.eval_indices(test, args.images))
    lambdas = [cfg["lambda_min"], (cfg["lambda_min"] * cfg["lambda_max"]) ** 0.5, cfg["lambda_max"]]

    tiles: List[torch.Tensor] = []
    # single 64x64 images (z is 1x1) and 256x256 mosaics of 16 images (z is 4x4)
    for i in idx_all:
        tiles.append(torch.from_numpy(test.sample(i))[None])
    for s in range(0, len(idx_all) - 15, 16):
        imgs = [test.sample(i) for i in idx_all[s:s + 16]]
        rows = [np.concatenate(imgs[r * 4:(r + 1) * 4], axis=2) for r in range(4)]
        tiles.append(torch.from_numpy(np.concatenate(rows, axis=1))[None])
    for path in args.image:      # extra real scenes (first bands, top-left crop, / 255)
        from osgeo import gdal
        arr = gdal.Open(path).ReadAsArray()[: cfg["bands"]].astype(np.float32)
        h, w = arr.shape[1] // 64 * 64, arr.shape[2] // 64 * 64
        scale = datasets.RGB_SCALE if cfg["bands"] == 3 else datasets.MS_SCALE
        tiles.append(torch.from_numpy(arr[:, :h, :w] * np.float32(scale))[None])

    total = mism32 = mism64 = 0
    zmax = 0
    stats: Dict = {}
    hist = np.zeros(64, dtype=np.int64)
    with torch.no_grad():
        for x in tiles:
            for lam in lambdas:
                s = model.symbols(x, lam, exact=True)
                z = s["z_sym"]
                zmax = max(zmax, int(z.abs().max()))
                i64 = s["idx"][0].to(torch.int64).numpy()
                i32 = model.scale_indices(z, s["y_sym"].shape, exact=False)[0].to(torch.int64).numpy()
                ref = scale_indices(params, z[0].to(torch.int64).numpy(), s["y_sym"].shape[2:])
                total += ref.size
                mism64 += int((ref != i64).sum())
                mism32 += int((ref != i32).sum())
                hist += np.bincount(ref.reshape(-1), minlength=64)
                ref2 = scale_indices(params, z[0].to(torch.int64).numpy(), s["y_sym"].shape[2:], stats)
                assert np.array_equal(ref, ref2)
    used = np.nonzero(hist)[0]
    report = {"tiles": len(tiles), "lambdas": lambdas, "indices_compared": total,
              "mismatch_integer_vs_torch_float64_exact": mism64,
              "mismatch_integer_vs_torch_float32_fakequant": mism32,
              "max_abs_z_sym": zmax, "max_abs_accumulator": stats.get("max_abs_acc", 0),
              "index_range_used": [int(used.min()), int(used.max())] if used.size else None}
    ok = mism64 == 0 and mism32 == 0
    if args.stress:
        st = stress(model, params, args.stress)
        report["stress"] = st
        ok = ok and st["mismatch_float64"] == 0 and st["mismatch_float32_trained"] == 0
    print(json.dumps(report, indent=1))
    return 0 if ok else 1


def stress(model, params, count: int) -> Dict:
    """Random z (beyond the clamp too) through the trained h_s, and through h_s copies with
    weights/biases perturbed to spread the indices over 0..63 and push the accumulators."""
    import torch
    from multirate_model import IntHyperSynthesis
    gen = torch.Generator().manual_seed(7)
    out = {"tiles": 0, "indices": 0, "mismatch_float64": 0, "mismatch_float32_trained": 0,
           "mismatch_float32_perturbed": 0, "max_abs_accumulator": 0}
    hist = np.zeros(64, dtype=np.int64)
    for t in range(count):
        spread = [2, 8, 40, 300][t % 4]
        z = torch.round(torch.randn(1, model.n, 4, 4, generator=gen) * spread)
        for variant in range(2):
            if variant == 0:
                hs, prm = model.h_s, params
            else:
                hs = IntHyperSynthesis(model.n, model.m)
                hs.load_state_dict(model.h_s.state_dict())
                with torch.no_grad():
                    for layer in hs.layers():
                        layer.weight.mul_(1 + 2 * torch.rand(layer.weight.shape, generator=gen))
                        layer.bias.add_(torch.randn(layer.bias.shape, generator=gen) * 2)
                prm = load_params_from_dict(params_from_model(hs))
            with torch.no_grad():
                i64 = hs(z, exact=True)[0].to(torch.int64).numpy()
                i32 = hs(z, exact=False)[0].to(torch.int64).numpy()
            stats: Dict = {}
            ref = run(prm, z[0].to(torch.int64).numpy(), stats)
            out["tiles"] += 1
            out["indices"] += ref.size
            out["mismatch_float64"] += int((ref != i64).sum())
            key = "mismatch_float32_trained" if variant == 0 else "mismatch_float32_perturbed"
            out[key] += int((ref != i32).sum())
            out["max_abs_accumulator"] = max(out["max_abs_accumulator"], stats["max_abs_acc"])
            hist += np.bincount(ref.reshape(-1), minlength=64)
    used = np.nonzero(hist)[0]
    out["index_range_used"] = [int(used.min()), int(used.max())]
    out["float32_exact_bound"] = 1 << 24
    return out


def load_params_from_dict(params: Dict) -> Dict:
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(params, f)
    try:
        return load_params(f.name)
    finally:
        os.unlink(f.name)


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import datasets
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare with the torch model")
    p.add_argument("--checkpoint", help="training checkpoint (train_multirate.py --checkpoint)")
    p.add_argument("--export-dir", help="use this export's hyper_synthesis_int.json "
                                        "(default: integers taken from the checkpoint)")
    p.add_argument("--data", default=datasets.DEFAULT_DATA)
    p.add_argument("--images", type=int, default=64, help="EuroSAT test images to use")
    p.add_argument("--image", action="append", default=[], help="extra GeoTIFF/PNG scene (Byte)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stress", type=int, default=0,
                   help="also N random-z tiles through the trained and perturbed h_s")
    p.add_argument("--vector", help="run the integer h_s on an export's hs_test_vector.json")
    args = p.parse_args(argv)
    if args.vector:
        with open(args.vector, encoding="utf-8") as f:
            vec = json.load(f)
        params = load_params(os.path.join(os.path.dirname(args.vector), "hyper_synthesis_int.json"))
        z = np.asarray(vec["z_sym"], dtype=np.int64).reshape(vec["z_shape"])
        got = scale_indices(params, z, vec["y_shape"][1:]).reshape(-1)
        ok = bool(np.array_equal(got, np.asarray(vec["idx"])))
        print(json.dumps({"test_vector_matches": ok, "elements": int(got.size)}))
        return 0 if ok else 1
    if args.check:
        if not args.checkpoint:
            p.error("--check needs --checkpoint")
        return check(args)
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
