#!/usr/bin/env python3
"""Train, evaluate and export the DIFFUSION codec's refiner (diffusion_model.py).

    /usr/bin/python3 scripts/learned/train_diffusion.py --run runs/diffusion-rgb8 \
        --steps 20000 --export models/diffusion-rgb8-v1 --model-id diffusion-rgb8-v1

Data: EuroSAT RGB train images (condition: GSD 10 m, the rest unknown, since the JPEGs
carry no georeferencing) and 64 px crops of the large 8-bit training scenes of
``datasets.SCENE_SPECS`` (hold-outs excluded), each with the condition that
``build/nsat_scene_condition`` extracts from its file: the same extraction the codec
runs at encode time. Every known scalar is dropped (made unknown) with probability
``--drop``, so that scenes without some metadata still refine well.

Per batch: a rate for the frozen base model (MULTIRATE: a lambda drawn log-uniformly
over its range; VQ: a number of levels), the base codec's decode at that rate (rounded to
8 bits, as the codec hands it to the refiner), per image a
sigma in [0, sigma_max], noise, and a flow time s (half of them at the decoder's Euler
points k / steps). Loss (``--objective velocity``): masked mean squared error of the velocity.

``--objective unrolled`` fine-tunes a trained refiner (``--init-from``) through the decoder's
own sampler: the Euler steps run with gradients, at a sigma that is the card's decode sigma
half of the time, and the decoded tile is scored against the original by three terms, each
relative to the base decode's so that their weights read as trade-offs:
mean squared error / the base's, ``--feature-weight`` x a perceptual distance / the base's,
and ``--hf-weight`` x the squared log ratio of high-frequency spectral energy to the
original's. The perceptual distance is the normalised squared difference of the activations
before each max-pool of a frozen land-cover classifier of our own (``--perceptual-model``,
by default the benchmark-only ``landcover-maxpool-robust``: not the classifier whose
features bench_diffusion.py measures, so that the benchmark's Frechet distance is not the
training loss). EMA weights are evaluated and exported. SIGTERM saves a checkpoint; a run
resumes from it.
"""

import argparse
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # noqa: E402
from bench_common import file_sha256  # noqa: E402
from image_metrics import high_frequency_energy, psnr  # noqa: E402
from diffusion_model import (CODEC_KEYS, CONDITION_KEYS, FREQUENCIES, Refiner,  # noqa: E402
                             condition_argument, macs_per_pixel, parameter_count)

REPO = datasets.REPO_ROOT
EUROSAT_CONDITION = {"gsd": {"value": 10.0, "source": "EuroSAT: Sentinel-2 10 m (the -co GSD=10 override)"}}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=datasets.DEFAULT_DATA)
    p.add_argument("--run", required=True)
    p.add_argument("--base", default=os.path.join(REPO, "models", "vq-rgb8-v2"),
                   help="the frozen base model's folder: a MULTIRATE or a VQ model")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--sigma-max", type=float, default=0.15)
    p.add_argument("--euler-steps", type=int, default=3, help="decoder steps (training favours their times)")
    p.add_argument("--decode-sigma", type=float, default=0.05,
                   help="the card's default NOISE (chosen on the benchmark's sweep)")
    p.add_argument("--drop", type=float, default=0.25, help="probability to hide each known scalar")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--condition-tool", default=os.path.join(REPO, "build", "nsat_scene_condition"))
    p.add_argument("--init-from", default=None, help="a model folder (refiner.pt) to start from")
    p.add_argument("--objective", choices=("velocity", "unrolled"), default="velocity")
    p.add_argument("--perceptual-model", default=os.path.join(REPO, "scripts", "learned", "eval_models",
                                                             "landcover-maxpool-robust"),
                   help="classifier folder (classifier.pt with .features) for the unrolled objective")
    p.add_argument("--feature-weight", type=float, default=0.3)
    p.add_argument("--hf-weight", type=float, default=0.3)
    p.add_argument("--jpeg-share", type=float, default=0.0,
                   help="share of scene crops replaced by their own JPEG decode (quality 50-95): "
                        "archives hold soft, once-compressed images the refiner must not over-sharpen")
    p.add_argument("--export", default=None)
    p.add_argument("--model-id", default=None)
    return p.parse_args()


# ----------------------------------------------------------------------------- base codec

class MultirateBase:
    """A frozen MULTIRATE model: raw 0..255 in, the codec's rounded decode out. Its rate is
    lambda, drawn log-uniformly over the card's range."""

    codec = "MULTIRATE"

    def __init__(self, folder: str):
        self.folder = folder
        with open(os.path.join(folder, "card.json")) as f:
            self.card = json.load(f)
        self.analysis = torch.jit.load(os.path.join(folder, "analysis.pt")).eval()
        self.synthesis = torch.jit.load(os.path.join(folder, "synthesis.pt")).eval()
        self.lambda_range = (float(self.card["lambda_min"]), float(self.card["lambda_max"]))

    @torch.no_grad()
    def decode(self, x01: torch.Tensor, lam: float) -> torch.Tensor:
        """x in [0, 1], (B, 3, H, W), H and W multiples of 16 -> rounded base decode in [0, 1]."""
        lam_t = torch.tensor([lam], dtype=torch.float32)
        y = torch.round(self.analysis(x01 * 255.0, lam_t))
        return torch.round(self.synthesis(y, lam_t)) / 255.0

    def draw_rate(self, rng: np.random.Generator) -> float:
        lo, hi = self.lambda_range
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    def rate_argument(self, lam: float) -> float:
        lo, hi = self.lambda_range
        return math.log(lam / lo) / math.log(hi / lo) - 0.5

    def eval_rates(self):
        """(label, rate): QUALITY 30 and 70 (log-linear over the lambda range, as the codec)."""
        lo, hi = self.lambda_range
        return [(f"QUALITY={q}", lo * (hi / lo) ** ((q - 1) / 99.0)) for q in (30, 70)]

    def rate_description(self) -> dict:
        return {"rate": "lambda", "lambda_range": list(self.lambda_range)}


class VqBase:
    """A frozen VQ model: the residual product quantiser with the codebooks of its
    vq_tables.json. Its rate is the number of levels, drawn uniformly."""

    codec = "VQ"

    def __init__(self, folder: str):
        from vq_model import ResidualProductQuantizer
        self.folder = folder
        with open(os.path.join(folder, "card.json")) as f:
            self.card = json.load(f)
        with open(os.path.join(folder, "vq_tables.json")) as f:
            books = torch.tensor(json.load(f)["codebooks"], dtype=torch.float32)
        levels, groups, entries, dim = books.shape
        self.quantizer = ResidualProductQuantizer(levels, groups, entries, dim)
        self.quantizer.codebooks.copy_(books)
        self.levels = levels
        self.analysis = torch.jit.load(os.path.join(folder, "analysis.pt")).eval()
        self.synthesis = torch.jit.load(os.path.join(folder, "synthesis.pt")).eval()

    @torch.no_grad()
    def decode(self, x01: torch.Tensor, levels: int) -> torch.Tensor:
        y = self.analysis(x01 * 255.0)
        total, _ = self.quantizer.quantise(self.quantizer.vectors(y), int(levels))
        return torch.round(self.synthesis(self.quantizer.latent(total, y.shape))) / 255.0

    def draw_rate(self, rng: np.random.Generator) -> int:
        return int(rng.integers(1, self.levels + 1))

    def rate_argument(self, levels: int) -> float:
        return (levels - 1) / max(self.levels - 1, 1) - 0.5

    def eval_rates(self):
        return [(f"LEVELS={k}", k) for k in range(1, self.levels + 1)]

    def rate_description(self) -> dict:
        return {"rate": "levels", "levels": self.levels}


def open_base(folder: str):
    with open(os.path.join(folder, "card.json")) as f:
        codec = json.load(f)["codec"]
    return {"MULTIRATE": MultirateBase, "VQ": VqBase}[codec](folder)


# ----------------------------------------------------------------------------- conditions

def scene_condition(tool: str, path: str, overrides=()) -> dict:
    out = subprocess.run([tool, path, *overrides], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def condition_vectors(condition: dict):
    """(arguments, known) float32 arrays over CONDITION_KEYS."""
    args = np.zeros(len(CONDITION_KEYS), np.float32)
    known = np.zeros(len(CONDITION_KEYS), np.float32)
    for i, key in enumerate(CONDITION_KEYS):
        value = (condition.get(key) or {}).get("value")
        if value is not None:
            args[i], known[i] = condition_argument(key, float(value)), 1.0
    return args, known


class RefinerStream:
    """Seeded, resumable (x [B,3,H,W] in [0,1], mask [B,1,H,W], cond args, cond known):
    EuroSAT batches and scene batches alternate."""

    def __init__(self, data: str, tool: str, batch: int, crop: int, seed: int, jpeg_share: float = 0.0):
        self.scenes, _ = datasets.load_scenes(data, crop)
        self.eurosat = datasets.EuroSatRgb(data, "train")
        self.conditions = []
        for s in self.scenes:
            self.conditions.append(scene_condition(tool, os.path.join(data, s.name)))
        self.scene_vectors = [condition_vectors(c) for c in self.conditions]
        self.eurosat_vector = condition_vectors(EUROSAT_CONDITION)
        w = np.array([datasets.GROUP_WEIGHTS[s.group] / sum(1 for t in self.scenes if t.group == s.group)
                      for s in self.scenes])
        self.scene_p = w / w.sum()
        self.batch, self.crop, self.jpeg_share = batch, crop, jpeg_share
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.count = 0

    def describe(self):
        return [{"scene": s.name, "group": s.group,
                 "condition": {k: c.get(k, {}).get("value") for k in CONDITION_KEYS}}
                for s, c in zip(self.scenes, self.conditions)]

    def next(self):
        rng, c = self.rng, self.crop
        self.count += 1
        if self.count % 2 == 0:
            idx = rng.integers(0, len(self.eurosat), size=self.batch * (c // 64) ** 2)
            x = np.stack([datasets.augment(self.eurosat.sample(int(i)), rng, 64) for i in idx])
            if c != 64:
                k = c // 64
                x = x.reshape(self.batch, k, k, 3, 64, 64).transpose(0, 3, 1, 4, 2, 5).reshape(self.batch, 3, c, c)
            a, kn = self.eurosat_vector
            return (x.astype(np.float32), np.ones((self.batch, 1, c, c), np.float32),
                    np.tile(a, (self.batch, 1)), np.tile(kn, (self.batch, 1)))
        xs, ms, aa, kk = [], [], [], []
        for _ in range(self.batch):
            i = int(rng.choice(len(self.scenes), p=self.scene_p))
            s = self.scenes[i]
            _, h, w = s.img.shape
            for _ in range(100):
                top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
                m = s.valid[top:top + c, left:left + c]
                if m.mean() >= 1.0 - datasets.MAX_NODATA_FRACTION:
                    break
            img, m = datasets._augment_pair(s.img[:, top:top + c, left:left + c], m, rng)
            if self.jpeg_share > 0 and rng.random() < self.jpeg_share:
                img = datasets.jpeg_round_trip(img, int(rng.integers(50, 96)))
            xs.append(img.astype(np.float32) / 255.0)
            ms.append(m[None].astype(np.float32))
            a, kn = self.scene_vectors[i]
            aa.append(a)
            kk.append(kn)
        return np.stack(xs), np.stack(ms), np.stack(aa), np.stack(kk)

    def state(self):
        return {"rng": self.rng.bit_generator.state, "count": self.count}

    def set_state(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.count = int(state["count"])


# ----------------------------------------------------------------------------- unrolled objective

class PerceptualFeatures:
    """Activations before each max-pool of a frozen land-cover classifier (input [0, 1]):
    an LPIPS-like distance from weights trained here, nothing downloaded."""

    def __init__(self, folder: str):
        module = torch.jit.load(os.path.join(folder, "classifier.pt")).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.layers = list(module.features.children())

    def __call__(self, x01: torch.Tensor):
        taps, h = [], x01
        for layer in self.layers:
            if layer.original_name == "MaxPool2d":
                taps.append(h)
            h = layer(h)
        return taps

    def distance(self, a: torch.Tensor, reference_taps) -> torch.Tensor:
        """Sum over taps of |phi(a) - phi(ref)|^2 / |phi(ref)|^2 (whole batch)."""
        total = a.new_zeros(())
        for ta, tr in zip(self(a), reference_taps):
            total = total + ((ta - tr) ** 2).sum() / (tr ** 2).sum().clamp_min(1e-8)
        return total


def high_frequency_energy_torch(img: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,): image_metrics.high_frequency_energy, differentiable."""
    f = torch.fft.fft2(img - img.mean(dim=(-2, -1), keepdim=True))
    fy = torch.fft.fftfreq(img.shape[-2])[:, None]
    fx = torch.fft.fftfreq(img.shape[-1])[None, :]
    high = (torch.sqrt(fx ** 2 + fy ** 2) > 0.25).to(img.dtype)
    return ((f.real ** 2 + f.imag ** 2) * high).sum(dim=(-3, -2, -1))


def unrolled_loss(args, refiner: Refiner, perceptual: PerceptualFeatures, base, rate, x, m, b, a, kn, rng):
    """The decoder's sampler with gradients, scored against x (see the module docstring)."""
    sigma = args.decode_sigma if rng.random() < 0.5 else float(rng.uniform(0.0, args.sigma_max))
    noise = torch.randn_like(x)
    out = refiner.refine(b, noise, sigma, args.euler_steps, a, kn, torch.tensor(base.rate_argument(rate)),
                         condition_argument("sigma", sigma, sigma_max=args.sigma_max))
    out = m * out + (1.0 - m) * x
    mse = ((out - x) ** 2).sum() / ((b - x) ** 2 * m).sum().clamp_min(1e-10)
    with torch.no_grad():
        ref_taps = perceptual(x)
        base_distance = perceptual.distance(m * b + (1.0 - m) * x, ref_taps).clamp_min(1e-8)
    feature = perceptual.distance(out, ref_taps) / base_distance
    eps = 1e-6 * x.shape[-1] * x.shape[-2]
    hf = ((torch.log(high_frequency_energy_torch(out) + eps)
           - torch.log(high_frequency_energy_torch(x) + eps)) ** 2).mean()
    loss = mse + args.feature_weight * feature + args.hf_weight * hf
    return loss, {"mse_rel": float(mse), "feature_rel": float(feature), "hf_log2": float(hf)}


# ----------------------------------------------------------------------------- evaluation

def eval_set(data: str, tool: str):
    """48 EuroSAT test images and fixed 64 px crops of the hold-out scenes, with conditions."""
    rgb = datasets.EuroSatRgb(data, "test")
    items = [(rgb.sample(int(i)), condition_vectors(EUROSAT_CONDITION)) for i in datasets.eval_indices(rgb, 48)]
    for rel in datasets.holdout_paths(data):
        path = os.path.join(data, rel)
        img = datasets._read_bands(path, (1, 2, 3)).astype(np.float32) / 255.0
        cond = condition_vectors(scene_condition(tool, path))
        _, h, w = img.shape
        for k in range(4):
            top, left = (h - 64) * (k + 1) // 5, (w - 64) * ((k * 3) % 5 + 1) // 6
            crop = img[:, top:top + 64, left:left + 64]
            if (crop.max(axis=0) > 0).mean() > 0.9:
                items.append((crop, cond))
    return items


@functools.lru_cache(maxsize=None)
def benchmark_classifier():
    """The classifier whose Frechet distance bench_diffusion.py reports (loaded once per run);
    evaluation only, never a training loss."""
    return torch.jit.load(os.path.join(REPO, "models", "rdic-classifier-rgb8-v2", "classifier.pt")).eval()


def pooled_features(x01: torch.Tensor) -> torch.Tensor:
    return benchmark_classifier().features(x01).mean(dim=(2, 3))


@torch.no_grad()
def evaluate(refiner: Refiner, base, items, sigma_max: float, steps: int):
    """Per rate: PSNR, high-frequency ratio and, as a cheap stand-in for the benchmark's Frechet
    distance, the mean squared distance of pooled classifier features to the originals'
    (feature_ratio: refined over base)."""
    rows = []
    for label, rate in base.eval_rates():
        lam_arg = torch.tensor(base.rate_argument(rate))
        x = torch.from_numpy(np.stack([it[0] for it in items]))
        a = torch.from_numpy(np.stack([it[1][0] for it in items]))
        kn = torch.from_numpy(np.stack([it[1][1] for it in items]))
        b = base.decode(x, rate)
        gen = torch.Generator().manual_seed(1234)
        noise = torch.randn(x.shape, generator=gen)
        x255 = x.numpy() * 255.0
        row = {"rate": label, "psnr_base": float(np.mean([psnr(o, r, 255.0) for o, r in zip(x255, np.round(b.numpy() * 255))])),
               "hf_ratio_base": float(np.mean([high_frequency_energy(r) / high_frequency_energy(o)
                                                for o, r in zip(x255, b.numpy() * 255)]))}
        original_features = pooled_features(x)
        base_distance = float(((pooled_features(b) - original_features) ** 2).sum(1).mean())  # b is 8-bit
        for sigma in (0.0, 0.02, 0.05):
            out = refiner.refine(b, noise, sigma, steps, a, kn, lam_arg,
                                 condition_argument("sigma", sigma, sigma_max=sigma_max))
            r = np.round(out.numpy() * 255)
            row[f"psnr_sigma{sigma}"] = float(np.mean([psnr(o, rr, 255.0) for o, rr in zip(x255, r)]))
            row[f"hf_ratio_sigma{sigma}"] = float(np.mean([high_frequency_energy(rr) / high_frequency_energy(o)
                                                          for o, rr in zip(x255, r)]))
            distance = float(((pooled_features(torch.from_numpy(r / 255.0).float()) - original_features) ** 2)
                             .sum(1).mean())
            row[f"feature_ratio_sigma{sigma}"] = distance / max(base_distance, 1e-12)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- training

def save_checkpoint(path, refiner, ema, opt, stream, step):
    tmp = path + ".tmp"
    torch.save({"refiner": refiner.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "stream": stream.state(), "step": step, "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def training_objective(args) -> dict:
    if args.objective == "velocity":
        return {"name": "velocity", "loss": "masked MSE of the rectified-flow velocity"}
    return {"name": "unrolled", "loss": "relative MSE + feature_weight x relative perceptual distance "
                                        "+ hf_weight x (log HF energy ratio)^2, through the decoder's Euler steps",
            "feature_weight": args.feature_weight, "hf_weight": args.hf_weight,
            "decode_sigma_share": 0.5, "jpeg_share": args.jpeg_share,
            "perceptual_model": {"folder": os.path.relpath(args.perceptual_model, REPO),
                                 "card_sha256": file_sha256(os.path.join(args.perceptual_model, "card.json"))}}


def export(args, ema: Refiner, base, step: int, history, items, stream) -> None:
    os.makedirs(args.export, exist_ok=True)
    ema.eval()
    z = torch.zeros(1, 3, 16, 16)
    c = torch.zeros(1, args.hidden)
    traced = torch.jit.trace(ema, (z, z, c))
    traced.save(os.path.join(args.export, "refiner.pt"))
    ev = evaluate(ema, base, items, args.sigma_max, args.euler_steps)
    card = {
        "id": args.model_id,
        "codec": "DIFFUSION",
        "status": f"trained {step} steps",
        "base_model": {"id": base.card["id"], "codec": base.codec,
                       "card_sha256": file_sha256(os.path.join(base.folder, "card.json"))},
        "architecture": {
            "paper": "COSMIC (Zhang et al.): light encoder, decoder compensated by a metadata-conditioned "
                     "diffusion model; rectified flow (Liu et al. 2022) with few Euler steps",
            "bands": 3,
            "channels": args.channels,
            "blocks": args.blocks,
            "hidden": args.hidden,
            "frequencies": FREQUENCIES,
            "condition_keys": list(CONDITION_KEYS),
            "codec_keys": list(CODEC_KEYS),
            "rate_embedding": base.rate_description(),
            "sigma_max": args.sigma_max,
            "layout": "unshuffle2([z, base] - 0.5) -> conv_in -> blocks x [ReLU, conv_a, FiLM, ReLU, conv_b, +] "
                      "-> ReLU -> conv_out -> PixelShuffle(2) = velocity",
            "macs_per_pixel_per_step": macs_per_pixel(3, args.channels, args.blocks),
            "parameters": parameter_count(ema),
            "synthesis_arithmetic": "fused-multiply-add",
        },
        "decode": {"euler_steps": args.euler_steps, "sigma": args.decode_sigma,
                   "noise": "Irwin-Hall sum of 4 uniforms from a counter hash of (file seed, level, tile, band, pixel), "
                            "scaled to unit variance"},
        "data": {"eurosat": "EuroSAT RGB train split, condition GSD 10 m only",
                 "scenes": stream.describe(), "drop_probability": args.drop,
                 "holdouts": list(datasets.holdout_paths(args.data))},
        "training": {"steps": step, "batch_size": args.batch_size, "crop": args.crop, "lr": args.lr,
                     "ema": args.ema, "seed": args.seed, "threads": args.threads, "init_from": args.init_from,
                     "objective": training_objective(args)},
        "eval_heldout": ev,
        "eval_note": "48 EuroSAT RGB test images + 64 px crops of the hold-out scenes; torch float decode "
                     "(Gaussian noise), PSNR peak 255, hf_ratio: spectral energy above 0.25 cycles/px vs the original's",
        "history_tail": history[-5:],
        "files": {"refiner.pt": file_sha256(os.path.join(args.export, "refiner.pt"))},
        "software": {"torch": torch.__version__},
    }
    with open(os.path.join(args.export, "card.json"), "w") as f:
        json.dump(card, f, indent=1)
    print(json.dumps(ev, indent=1))


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.run, exist_ok=True)
    base = open_base(args.base)
    refiner = Refiner(3, args.channels, args.blocks, args.hidden)
    if args.init_from:
        refiner.load_state_dict(torch.jit.load(os.path.join(args.init_from, "refiner.pt")).state_dict())
    ema = Refiner(3, args.channels, args.blocks, args.hidden)
    ema.load_state_dict(refiner.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(refiner.parameters(), lr=args.lr)
    stream = RefinerStream(args.data, args.condition_tool, args.batch_size, args.crop, args.seed,
                           args.jpeg_share)
    ckpt_path = os.path.join(args.run, "checkpoint.pt")
    step = 0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        refiner.load_state_dict(ck["refiner"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        stream.set_state(ck["stream"])
        torch.set_rng_state(ck["torch_rng"])
        step = ck["step"]
        print(f"resumed at step {step}", flush=True)
    items = eval_set(args.data, args.condition_tool)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    log = open(os.path.join(args.run, "log.jsonl"), "a")
    history = []
    perceptual = PerceptualFeatures(args.perceptual_model) if args.objective == "unrolled" else None
    t0, losses, part_sums = time.time(), [], {}
    while step < args.steps and not stop["now"]:
        x, m, a, kn = (torch.from_numpy(v) for v in stream.next())
        step_rng = np.random.default_rng(step + 7919 * args.seed)
        rate = base.draw_rate(step_rng)
        b = base.decode(x, rate)
        batch = x.shape[0]
        drop = (torch.rand(kn.shape) < args.drop).float()
        kn = kn * (1.0 - drop)
        if perceptual is not None:
            loss, parts = unrolled_loss(args, refiner, perceptual, base, rate, x, m, b, a, kn, step_rng)
            for key, value in parts.items():
                part_sums[key] = part_sums.get(key, 0.0) + value
        else:
            sigma = torch.rand(batch) * args.sigma_max
            on_grid = torch.randint(0, args.euler_steps, (batch,)).float() / args.euler_steps
            s = torch.where(torch.rand(batch) < 0.5, on_grid, torch.rand(batch))
            noise = torch.randn_like(x)
            z0 = b + sigma[:, None, None, None] * noise
            zs = (1 - s)[:, None, None, None] * z0 + s[:, None, None, None] * x
            codec_args = torch.stack([torch.full((batch,), base.rate_argument(rate)),
                                      sigma / args.sigma_max - 0.5, s - 0.5], dim=1)
            c = refiner.embed(a, kn, codec_args)
            v = refiner.velocity(zs, b, c)
            loss = ((v - (x - z0)) ** 2 * m).sum() / (m.sum() * 3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), refiner.parameters()):
                pe.mul_(args.ema).add_(p, alpha=1 - args.ema)
        step += 1
        losses.append(float(loss))
        if step % 100 == 0:
            rec = {"step": step, "loss": float(np.mean(losses)), "sec_per_step": (time.time() - t0) / len(losses),
                   **{k: v / len(losses) for k, v in part_sums.items()}}
            part_sums = {}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            t0, losses = time.time(), []
        if step % args.checkpoint_every == 0:
            save_checkpoint(ckpt_path, refiner, ema, opt, stream, step)
        if step % args.eval_every == 0:
            ev = {"step": step, "eval": evaluate(ema, base, items, args.sigma_max, args.euler_steps)}
            history.append(ev)
            print(json.dumps(ev), flush=True)
            log.write(json.dumps(ev) + "\n")
            log.flush()
    save_checkpoint(ckpt_path, refiner, ema, opt, stream, step)
    if args.export:
        export(args, ema, base, step, history, items, stream)


if __name__ == "__main__":
    main()
