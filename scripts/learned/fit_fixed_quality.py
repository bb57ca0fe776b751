"""Fits the FIXED_QUALITY error model of a MULTIRATE model and writes its calibration card.

Mijares i Verdu et al. 2024 (IEEE JSTARS, "Fixed-quality compression of remote sensing
images with neural networks") predict the error of a block coded at lambda from the
block's *baseline error* MSE0, the error of analysis -> synthesis without quantisation:

    MSE(lambda) = MSE0 + alpha * MSE0 / (2 * Mbar(lambda))^2,    Mbar(lambda) ~ a * lambda + b

where Mbar is the mean magnitude of the modulation gains. This script measures, on
training images, every 16x16 block's MSE0 (at lambda_max, no rounding) and its MSE at a
grid of lambdas (rounded latent), fits alpha by least squares on
log((MSE - MSE0) * (2 Mbar)^2 / MSE0), fits a and b on the gain network's outputs, and
reports how well the open-loop prediction lands. The codec uses alpha and the exact
Mbar of each of the 256 stored lambda levels (the linear a, b, fitted over those levels,
are recorded as the paper's form).

Usage:
    /usr/bin/python3 scripts/learned/fit_fixed_quality.py --model models/multirate-rgb8-v4 \
        --out models/fixed-quality-rgb8-v2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402

LEVELS = 256
BLOCK = 16
MAPPED_RANGE = 4096.0   # as the codec's 16-bit sample mapping (multirate_codec.cpp)
MAPPED_BASE = 256.0


def lambda_levels(lmin: float, lmax: float) -> np.ndarray:
    """The 8-bit lambda map's levels of payload version 2 (fixed_quality_codec.cpp):
    lambda = lmin * (lmax / lmin)^(Q / 255)."""
    return lmin * (lmax / lmin) ** (np.arange(LEVELS) / (LEVELS - 1))


def map_16bit(raw: np.ndarray) -> tuple:
    """The codec's exact per-tile mapping (x - min) / 2^k + 256 and its inverse factor."""
    low, high = float(raw.min()), float(raw.max())
    shift = 0
    while shift < 16 and (high - low) / 2 ** shift > MAPPED_RANGE:
        shift += 1
    return (raw.astype(np.float64) - low) / 2 ** shift + MAPPED_BASE, low, shift


def block_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(C, H, W) arrays -> MSE of every BLOCK x BLOCK block over all channels."""
    d = (a.astype(np.float64) - b) ** 2
    c, h, w = d.shape
    return d.reshape(c, h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(0, 2, 4))


class Model:
    def __init__(self, folder: str):
        self.card = json.load(open(os.path.join(folder, "card.json")))
        self.analysis = torch.jit.load(os.path.join(folder, "analysis.pt"))
        self.synthesis = torch.jit.load(os.path.join(folder, "synthesis.pt"))
        self.lmin, self.lmax = self.card["lambda_min"], self.card["lambda_max"]
        self.scale = float(self.analysis.input_scale)
        self.out_max = float(self.synthesis.output_max)

    @torch.no_grad()
    def gains(self, lam: float):
        ln = torch.tensor([[lam / self.lmax]], dtype=torch.float32)
        demodulation = self.synthesis.demodulation(ln).reshape(1, -1, 1, 1)
        if getattr(self.synthesis, "inverse_gain", False):  # tied gains: 1 / that net
            demodulation = 1.0 / demodulation
        return self.analysis.modulation(ln).reshape(1, -1, 1, 1), demodulation

    @torch.no_grad()
    def latent(self, x: np.ndarray) -> torch.Tensor:
        return self.analysis.g_a(torch.from_numpy(x[None].astype(np.float32)) * self.scale)

    @torch.no_grad()
    def reconstruct(self, y: torch.Tensor, lam: float, quantise: bool) -> np.ndarray:
        mod, demod = self.gains(lam)
        ym = y * mod
        if quantise:
            ym = torch.round(ym)
        x = self.synthesis.g_s(ym * demod) / self.scale
        return torch.clamp(x, 0, self.out_max)[0].double().numpy()

    def mean_gain(self, lam: float) -> float:
        return float(self.gains(lam)[0].mean())


def samples(model: Model, data: str, count: int, seed: int):
    """(model-domain image, factor to original units^2) for `count` training images."""
    bands = model.card["architecture"]["bands"]
    ds = datasets.make_dataset(data, bands, "train")
    rng = np.random.Generator(np.random.PCG64(seed))
    for i in rng.choice(len(ds), size=min(count, len(ds)), replace=False):
        raw = ds.raw(int(i))
        if bands == 3:
            yield raw.astype(np.float64), 1.0
        else:
            mapped, _, shift = map_16bit(raw)
            yield mapped, float(4 ** shift)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="MULTIRATE model folder")
    p.add_argument("--data", default=datasets.DEFAULT_DATA)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--lambdas", type=int, default=6, help="lambda grid size (log-spaced)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", required=True, help="calibration model folder to write")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)

    model = Model(args.model)
    grid = np.exp(np.linspace(math.log(model.lmin), math.log(model.lmax), args.lambdas))
    mbar = {float(l): model.mean_gain(float(l)) for l in grid}
    rows = []  # (mse0, mse, mbar) per block and lambda, original units
    for x, factor in samples(model, args.data, args.images, args.seed):
        y = model.latent(x)
        mse0 = block_mse(x, np.round(model.reconstruct(y, model.lmax, False))) * factor
        for lam in grid:
            mse = block_mse(x, np.round(model.reconstruct(y, float(lam), True))) * factor
            for m0, m in zip(mse0.ravel(), mse.ravel()):
                rows.append((m0, m, mbar[float(lam)]))
    rows = np.array(rows)
    mse0, mse, mb = rows[:, 0], rows[:, 1], rows[:, 2]
    usable = (mse > mse0 * 1.01) & (mse0 > 0)
    log_alpha = np.log((mse[usable] - mse0[usable]) * (2 * mb[usable]) ** 2 / mse0[usable])
    alpha = float(np.exp(np.mean(log_alpha)))

    levels = lambda_levels(model.lmin, model.lmax)
    level_gain = np.array([model.mean_gain(float(l)) for l in levels])
    a, b = np.polyfit(levels, level_gain, 1)

    # Open-loop check on the fitting blocks: predicted vs measured PSNR at each lambda.
    predicted = mse0 + alpha * mse0 / (2 * mb) ** 2
    peak = 255.0 if model.out_max <= 255 else 65535.0
    err_db = 10 * np.log10(predicted / np.maximum(mse, 1e-12))   # >0: prediction pessimistic
    card = {
        "id": os.path.basename(os.path.normpath(args.out)),
        "codec": "FIXED_QUALITY",
        "base_model": model.card["id"],
        "base_model_sha256": hashlib.sha256(
            open(os.path.join(args.model, "card.json"), "rb").read()).hexdigest(),
        "error_model": "MSE(lambda) = MSE0 + alpha * MSE0 / (2 * Mbar(lambda))^2 "
                       "(Mijares i Verdu et al. 2024); Mbar = mean modulation gain",
        "alpha": alpha,
        "mbar_linear_fit": {"a": float(a), "b": float(b),
                            "max_abs_residual": float(np.max(np.abs(a * levels + b - level_gain)))},
        "baseline": "MSE0: g_s(g_a(x) * mod(lambda_max) * demod(lambda_max)), no rounding of the "
                    "latent, output rounded to integers",
        "psnr_peak": peak,
        "fit": {"data": f"{args.images} images of the {model.card['data']['train']}",
                "block": BLOCK, "lambdas": [float(l) for l in grid],
                "blocks_used": int(usable.sum()), "blocks_total": int(len(rows)),
                "log_alpha_std": float(np.std(log_alpha)),
                "prediction_error_db_mean": float(np.mean(err_db[usable])),
                "prediction_error_db_std": float(np.std(err_db[usable])),
                "note": "prediction error = predicted - measured PSNR error in dB on the fitting "
                        "blocks with uniform lambda; the codec's REFINE passes correct the rest"},
        "files": {},
        "software": {"torch": torch.__version__, "python": platform.python_version()},
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "card.json"), "w", encoding="utf-8") as f:
        json.dump(card, f, indent=1)
    print(json.dumps({k: card[k] for k in ("alpha", "mbar_linear_fit", "fit")}, indent=1))


if __name__ == "__main__":
    main()
