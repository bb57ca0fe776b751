#!/usr/bin/python3
"""Train, evaluate and export NSAT's MULTIRATE learned codec (multirate_model.py).

One model covers lambda in [lambda_min, lambda_max]; each batch draws its lambda
log-uniformly. Loss (per batch):

    loss = bpp + lambda * 255**2 * MSE

bpp = (bits of y + bits of z) / (B * H * W) from the likelihoods (uniform-noise proxy for
quantisation in the rates, straight-through rounding of y for the decoder), MSE = mean
over all samples of the normalised image (RGB: /255; MS bands: /16384). The default
lambda range 0.0018 .. 0.0932 is the range CompressAI's MSE models use for 8-bit images
in [0, 1] (its qualities 1..7). Adam with three learning rates: transforms and h_s --lr
(1e-4, divided by 10 after --lr-drop of the steps), factorised-prior density --lr-prior and
gain nets --lr-gain (1e-3 each; on 600-step runs this halved the z rate and cut the loss
by ~10% against 1e-4). The prior's tail quantiles get their own Adam on the aux loss.
Gradients are clipped to norm 1.

Speed (this repository's 2-core dev VM, Debian torch 1.13.1 CPU, --threads 1, RGB 64x64):
about 140 images/s at --batch-size 16, i.e. ~2 minutes per 1000 steps.

--source mix (RGB only) trains on EuroSAT plus crops of large 8-bit scenes with a nodata-masked
MSE (datasets.MixedRgbStream); --init-from DIR warm-starts from an exported model folder
(warm_start); see README.md, "MULTIRATE RGB v2", and train_rgb_v2.sh.

Examples:
    # smoke test
    /usr/bin/python3 scripts/learned/train_multirate.py --steps 30 --batch-size 8 \
        --checkpoint /tmp/mr.ckpt --log /tmp/mr.log --threads 1
    # real run (resumable: rerun the same command after an interruption)
    /usr/bin/python3 scripts/learned/train_multirate.py --bands 3 --steps 300000 \
        --batch-size 16 --checkpoint runs/rgb/ckpt.pt --log runs/rgb/log.jsonl \
        --device cuda --export runs/rgb/export
    # export only (steps already reached)
    /usr/bin/python3 scripts/learned/train_multirate.py --checkpoint runs/rgb/ckpt.pt \
        --steps 0 --export runs/rgb/export
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import signal
import sys
import time

# glibc returns every large freed buffer to the kernel by default, so each step pays
# page faults for its multi-MB activations (training ran ~2.4x slower). Keep them: restart
# this process once with a larger mmap threshold / trim threshold / top pad, before torch
# is loaded. NSAT_KEEP_MALLOC=1 disables this.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824",
               "MALLOC_TOP_PAD_": "268435456"}
if (__name__ == "__main__" and not os.environ.get("NSAT_KEEP_MALLOC")
        and not all(k in os.environ for k in _MALLOC_ENV)):
    _env = dict(os.environ)
    for _k, _v in _MALLOC_ENV.items():
        _env.setdefault(_k, _v)
    os.execve(sys.executable, [sys.executable] + sys.argv, _env)

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import datasets  # noqa: E402
import integer_hyper_synthesis as ihs  # noqa: E402
from multirate_model import (DEMODULATIONS, DOWNSAMPLINGS, GAIN_ACTIVATIONS, GAIN_FLOOR, M_LATENT, N_FILTERS,  # noqa: E402
                             ExportAnalysis, ExportHyperAnalysis, ExportSynthesis, GainNet,
                             MultirateCodec, rate_distortion, scale_table)

CKPT_VERSION = 2
# Config keys of version-1 checkpoints; the keys added since take these values for them.
LEGACY_CONFIG = {"source": "eurosat", "gain_activation": "relu"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=datasets.DEFAULT_DATA, help="data folder (default %(default)s)")
    p.add_argument("--bands", type=int, choices=(3, 4, 1), default=3,
                   help="3: EuroSAT RGB (Byte); 4: R, G, B, NIR (Byte, --source rgbn); "
                        "1: EuroSAT MS, each band a sample (UInt16)")
    p.add_argument("--steps", type=int, default=300000, help="total optimiser steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--source", choices=("eurosat", "mix", "rgbn", "sar", "scenes16"), default="eurosat",
                   help="eurosat: EuroSAT only (default); mix (--bands 3 only): crops of large "
                        "8-bit scenes + EuroSAT batches (datasets.MixedRgbStream); rgbn (--bands 4 "
                        "only): the same over 8-bit R, G, B, NIR scenes (datasets.RgbnStream); scenes16 "
                        "(--bands 1 only): crops of large 16-bit scenes + EuroSAT MS batches, "
                        "all mapped as the codec maps a tile (datasets.Scenes16Stream)")
    p.add_argument("--crop", type=int, default=64,
                   help="training crop (multiple of 16; <= 64 for eurosat, <= 256 for mix)")
    p.add_argument("--eurosat-every", type=int, default=4,
                   help="mix: every k-th batch is EuroSAT 64x64 at batch_size*(crop/64)^2 (0: none)")
    p.add_argument("--init-from", default=None, metavar="DIR",
                   help="warm start from an exported model folder (used only when no checkpoint exists)")
    p.add_argument("--init-eval-images", type=int, default=200,
                   help="after --init-from: EuroSAT test images for the check against the source card (0: skip)")
    p.add_argument("--eval-lambda-count", type=int, default=4, help="log-spaced evaluation lambdas")
    p.add_argument("--no-holdout-eval", action="store_true",
                   help="mix: skip the hold-out scene evaluation")
    p.add_argument("--downsampling", type=int, choices=DOWNSAMPLINGS, default=16,
                   help="latent grid step in pixels: 16 (four analysis stages) or 8 (three, "
                        "for speckle-like content; an --init-from 16x model loses one stage)")
    p.add_argument("--demodulation", choices=DEMODULATIONS, default="learned",
                   help="decoder gain: a second gain net (learned) or 1 / the modulation gain "
                        "(inverse: y quantised with step 1/gain, no quality plateau)")
    p.add_argument("--tie-at-lambda", type=float, default=0.2,
                   help="--demodulation inverse with --init-from a learned-demodulation model: "
                        "the source's modulation x demodulation product at this lambda is folded "
                        "into g_s's first layer, so the tied model decodes like the source there")
    p.add_argument("--gain-activation", choices=GAIN_ACTIVATIONS, default="positive",
                   help="last activation of the gain nets (multirate_model.PositiveGain); relu "
                        "is the first models' (dead channels)")
    p.add_argument("--export-lambda-max", type=float, default=None,
                   help="export (and evaluate) with this smaller lambda_max: the top of the range "
                        "where PSNR still rises with lambda (QUALITY=100 maps there); the gain nets "
                        "are rescaled so every lambda keeps its gains")
    p.add_argument("--lambda-min", type=float, default=0.0018)
    p.add_argument("--lambda-max", type=float, default=0.0932)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-aux", type=float, default=1e-3)
    p.add_argument("--lr-prior", type=float, default=1e-3,
                   help="lr of the factorised prior's density (default %(default)s; 0 = --lr)")
    p.add_argument("--lr-gain", type=float, default=1e-3,
                   help="lr of the modulation/demodulation nets (default %(default)s; 0 = --lr)")
    p.add_argument("--lr-drop", type=float, default=0.9,
                   help="fraction of --steps after which lr is divided by 10 (default %(default)s)")
    p.add_argument("--clip-grad", type=float, default=1.0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checkpoint", default=None, help="checkpoint file; resumed if present")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--log", default=None, help="JSON-lines log file (appended)")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=5000, help="0: only at the end")
    p.add_argument("--eval-images", type=int, default=500,
                   help="test images for periodic evaluation (evenly spread; 0 = all)")
    p.add_argument("--final-eval-images", type=int, default=0,
                   help="test images for the final evaluation / card (0 = all)")
    p.add_argument("--cache", action="store_true", help="keep decoded RGB JPEGs in memory")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="after training, write TorchScript + integer h_s + prior tables + card.json")
    p.add_argument("--model-id", default=None,
                   help="card id (default multirate-rgb8 / multirate-ms16; multirate-rgb8-v2 for --source mix)")
    return p.parse_args(argv)


def eval_lambdas(lmin: float, lmax: float, count: int = 4):
    return [float(math.exp(math.log(lmin) + k * (math.log(lmax) - math.log(lmin)) / (count - 1)))
            for k in range(count)]


@torch.no_grad()
def evaluate_holdout(model, crops, lambdas, device):
    """RD on fixed crops of the hold-out scenes (datasets.holdout_eval_crops): bpp over all
    pixels, PSNR of the valid pixels, both averaged over crops; also per scene."""
    model.eval()
    points = []
    for lam in lambdas:
        per = {}
        for name, img, valid in crops:
            x = torch.from_numpy(img[None]).to(device)
            m = torch.from_numpy(valid[None]).to(device)
            e = model.estimate(x, lam)
            x_hat = e["x_hat"].clamp(0.0, 1.0)
            mse = float((((x_hat - x) ** 2) * m).sum() / (m.sum().clamp_min(1.0) * x.shape[1]))
            per.setdefault(name, []).append((float(e["bpp_y"][0] + e["bpp_z"][0]),
                                              10 * math.log10(1.0 / max(mse, 1e-12))))
        allv = [v for vs in per.values() for v in vs]
        points.append({"lambda": lam, "crops": len(allv),
                       "bpp": float(np.mean([v[0] for v in allv])),
                       "psnr": float(np.mean([v[1] for v in allv])),
                       "by_scene": {k: [round(float(np.mean([v[0] for v in vs])), 4),
                                        round(float(np.mean([v[1] for v in vs])), 3)]
                                    for k, vs in per.items()}})
    model.train()
    return points


@torch.no_grad()
def tie_gains(model, state, lam):
    """Warm start of a tied-gain model from a learned-demodulation one: the source decodes
    g_s(round(y m) d) = g_s(round(y m) / m * (m d)), so g_s's first convolution takes the
    product p = m d at `lam` on each input channel and the tied model decodes exactly like
    the source at that lambda. Channels the source's decoder ignored (p ~ 0) start silent
    but, unlike a dead ReLU gain, still learn. Drops the demodulation weights from `state`."""
    def gain(prefix):  # the source's net, as the model computes it
        net = GainNet(model.m, activation=model.gain_activation)
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return net(torch.tensor([lam / model.lambda_max]))
    product = (gain("modulation.") * gain("demodulation.")).reshape(-1)
    state["g_s.0.weight"] = state["g_s.0.weight"] * product.view(1, -1, 1, 1)
    for k in [k for k in state if k.startswith("demodulation.")]:
        del state[k]
    return {"lambda": lam, "channels_with_product_over_1e-3": int((product > 1e-3).sum()),
            "product_median": float(product.median())}


def warm_start(model, src_dir, tie_lambda=0.2):
    """Load an exported MULTIRATE folder into a fresh MultirateCodec (same bands/N/M).

    * g_a, h_a, g_s: the TorchScript state dicts map 1:1 (FrozenGDN holds the effective
      beta/gamma, which are valid raw parameters: beta >= beta_min, gamma >= 0).
    * Gain nets: the exported input is lam / lambda_max_src; fc1.weight is scaled by
      lambda_max_new / lambda_max_src so the nets compute the same gains for every lambda.
    * Integer h_s: weight = w_int * real_weight_scale, bias = b_int * real_weight_scale *
      in_step; integer_params() then gives back the same integers (checked, returned).
    * Factorised prior: only pmf tables are exported, not the density network, so the
      density is refitted to the tables (KL(table || model) on each channel's support, Adam),
      then the quantiles by the aux loss. Returns a dict of diagnostics.
    """
    card = json.load(open(os.path.join(src_dir, "card.json"), encoding="utf-8"))
    source_bands = card["architecture"]["bands"]
    if (source_bands != model.bands and (source_bands, model.bands) != (3, 4)) \
            or card["architecture"]["N"] != model.n or card["architecture"]["M"] != model.m:
        raise SystemExit(f"--init-from {src_dir}: architecture {card['architecture']} does not match")
    lmax_src = float(card["lambda_max"])
    diag = {"source": src_dir, "source_id": card.get("id"), "source_lambda_max": lmax_src}
    ana = torch.jit.load(os.path.join(src_dir, "analysis.pt"), map_location="cpu").state_dict()
    hyp = torch.jit.load(os.path.join(src_dir, "hyper_analysis.pt"), map_location="cpu").state_dict()
    syn = torch.jit.load(os.path.join(src_dir, "synthesis.pt"), map_location="cpu").state_dict()
    state = {}
    gain_map = {"0.weight": "fc1.weight", "0.bias": "fc1.bias", "2.weight": "fc2.weight", "2.bias": "fc2.bias"}
    for sd, prefixes in ((ana, ("g_a.", "modulation.")), (syn, ("g_s.", "demodulation."))):
        for k, v in sd.items():
            if k.startswith(prefixes[0]):
                state[k] = v
            elif k.startswith(prefixes[1]):
                state[prefixes[1] + gain_map[k[len(prefixes[1]):]]] = v
    for k, v in hyp.items():
        state["h_a." + k] = v
    source_downsampling = int(card["architecture"].get("downsampling", 16))
    if source_downsampling != model.downsampling:
        diag["dropped_stage"] = drop_middle_stage(state, source_downsampling, model.downsampling)
    if source_bands != model.bands:
        diag["added_band"] = add_nir_band(state, model)
    ratio = model.lambda_max / lmax_src
    for net in ("modulation", "demodulation"):
        state[f"{net}.fc1.weight"] = (state[f"{net}.fc1.weight"].double() * ratio).float()
    source_tied = card["architecture"].get("demodulation") == "inverse_of_modulation"
    if model.tied and not source_tied:
        diag["tied_at_lambda"] = tie_gains(model, state, tie_lambda)
    elif model.tied != source_tied:
        raise SystemExit(f"--init-from {src_dir}: a tied-gain model cannot become a learned one")
    elif model.tied:
        for k in [k for k in state if k.startswith("demodulation.")]:
            del state[k]
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(("h_s.", "prior."))]
    if missing:
        raise SystemExit(f"--init-from: no source for {missing}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    if model.gain_activation != "relu":
        diag["revived_channels"] = revive_dead_channels(model)
    # Integer h_s back to real-valued parameters.
    hs = ihs.load_params(os.path.join(src_dir, "hyper_synthesis_int.json"))
    mism = 0
    with torch.no_grad():
        for layer, q in zip(model.h_s.layers(), hs["layers"]):
            s_w = torch.tensor(q["real_weight_scale"], dtype=torch.float64)
            w = torch.from_numpy(q["w"]).double() * s_w.view(-1, 1, 1, 1)
            layer.weight.copy_(w.float())
            layer.bias.copy_((torch.from_numpy(q["b"]).double() * s_w * layer.in_step).float())
            back = layer.integer_params()
            for key, ref in (("weight", q["w"]), ("bias", q["b"]), ("multiplier", q["m"]), ("shift", q["s"])):
                mism += int((back[key].numpy() != ref).sum())
    diag["hs_integer_mismatches_after_load"] = mism
    # Factorised prior: fit the density to the exported tables.
    prior = json.load(open(os.path.join(src_dir, "factorized_prior.json"), encoding="utf-8"))["tables"]
    diag.update(fit_prior(model.prior, prior))
    return diag, card


def drop_middle_stage(state, source_downsampling, downsampling):
    """A 16x source for an 8x model: g_a keeps its first two stages and its last conv (to
    M), which now reads the /4 features; g_s keeps its first stage and its last conv, which
    now writes pixels from /2 features. The dropped stage is the third of g_a (layers 4-5)
    and of g_s (layers 6-8). Renames `state` in place; returns what was dropped."""
    if (source_downsampling, downsampling) != (16, 8):
        raise SystemExit(f"--init-from: a {source_downsampling}x model cannot start a {downsampling}x one")
    renames = {"g_a.": {"6.": "4."}, "g_s.": {"9.": "6."}}
    drops = {"g_a.": ("4.", "5."), "g_s.": ("6.", "8.")}
    dropped, kept = [], {}
    for k, value in state.items():
        prefix = next((p for p in renames if k.startswith(p)), None)
        if prefix is None:
            kept[k] = value
            continue
        rest = k[len(prefix):]
        if rest.startswith(drops[prefix]):
            dropped.append(k)
            continue
        for old, new in renames[prefix].items():
            if rest.startswith(old):
                rest = new + rest[len(old):]
        kept[prefix + rest] = value
    state.clear()
    state.update(kept)
    return sorted(dropped)


def add_nir_band(state, model):
    """An RGB source for an RGBN model: g_a's first convolution reads the new fourth input
    with zero weights (the source's analysis, unchanged, until NIR pays), and g_s's last
    convolution writes the fourth band's 2x2 sub-pixels as the mean of the three bands'
    (PixelShuffle channel c * 4 + k is band c, sub-pixel k), so NIR starts as a grey
    estimate. Changes `state` in place; returns the two layers it widened."""
    first = "g_a.0.weight"
    last = f"g_s.{len(model.g_s) - 2}."
    w = state[first]
    state[first] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
    for key in (last + "weight", last + "bias"):
        v = state[key]
        per_band = v.reshape(3, 4, *v.shape[1:])
        state[key] = torch.cat([v, per_band.mean(dim=0)], dim=0)
    return [first, last + "weight", last + "bias"]


@torch.no_grad()
def truncate_lambda_range(model, lambda_max):
    """Makes `lambda_max` the model's top lambda, with the same gains for every lambda: the
    nets see lam / lambda_max, so fc1's weights are scaled by lambda_max / the old top."""
    ratio = lambda_max / model.lambda_max
    for net in model.gain_nets():
        net.fc1.weight.mul_(ratio)
    model.lambda_max = float(lambda_max)


@torch.no_grad()
def revive_dead_channels(model, probes=32):
    """Channels that a ReLU gain net had cut off (gain 0 at every lambda of the range) get a
    constant gain again: the median of the live channels' in the modulation, its inverse in
    the demodulation. Their g_a filters and g_s inputs never got a gradient, so they start
    from their initialisation. Returns how many channels were revived."""
    lams = torch.logspace(math.log10(model.lambda_min), math.log10(model.lambda_max), probes)
    lam_n = (lams / model.lambda_max).reshape(-1, 1)
    pre = model.modulation.fc2(torch.relu(model.modulation.fc1(lam_n)))   # (probes, M)
    dead = (pre <= 0).all(dim=0)
    if not bool(dead.any()):
        return 0
    live_gain = float(pre[:, ~dead].clamp_min(0).median()) if bool((~dead).any()) else 1.0
    live_gain = max(live_gain, 4 * GAIN_FLOOR)
    for net, gain in zip(model.gain_nets(), (live_gain, 1.0 / live_gain)):
        net.fc2.weight[dead] = 0.0
        net.fc2.bias[dead] = gain - GAIN_FLOOR    # PositiveGain adds the floor back
    return int(dead.sum())


def fit_prior(pr, tables, iters=3000):
    """Fit FactorizedPrior's density to per-channel pmf tables (min_value, pmf); then the
    quantiles to the new density. Returns the mean KL (bits) before/after."""
    c = pr.channels
    lo = min(t["min_value"] for t in tables)
    hi = max(t["min_value"] + len(t["pmf"]) - 1 for t in tables)
    grid = torch.arange(lo, hi + 1, dtype=torch.float32)
    target = torch.zeros(c, grid.numel())
    for ch, t in enumerate(tables):
        o = t["min_value"] - lo
        target[ch, o:o + len(t["pmf"])] = torch.tensor(t["pmf"])
    target = target / target.sum(dim=1, keepdim=True)
    z = grid.view(1, 1, 1, -1).repeat(1, c, 1, 1)          # (1, C, 1, L)

    def kl():
        q = pr.likelihood(z).view(c, -1).clamp_min(1e-12)
        return (target * (torch.log2(target.clamp_min(1e-30)) - torch.log2(q))).sum(dim=1).mean()

    dens = [p for n, p in pr.named_parameters() if n != "quantiles"]
    with torch.no_grad():
        before = float(kl())
    opt = torch.optim.Adam(dens, lr=1e-2)
    for i in range(iters):
        if i == int(iters * 0.7):
            for g in opt.param_groups:
                g["lr"] = 1e-3
        opt.zero_grad()
        loss = kl()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(kl())
        q = pr.quantiles
        for ch, t in enumerate(tables):
            q[ch, 0, 0] = t["min_value"]
            q[ch, 0, 2] = t["min_value"] + len(t["pmf"]) - 1
            q[ch, 0, 1] = t["min_value"] + int(np.argmax(t["pmf"]))
    aopt = torch.optim.Adam([pr.quantiles], lr=0.05)
    for _ in range(2000):
        aopt.zero_grad()
        a = pr.aux_loss()
        a.backward()
        aopt.step()
    return {"prior_kl_bits_before_fit": before, "prior_kl_bits_after_fit": after,
            "prior_aux_loss_after_fit": float(pr.aux_loss())}


@torch.no_grad()
def evaluate(model, dataset, count, lambdas, device, batch=32):
    """Test-split RD points with real rounding and the integer h_s (exact mode)."""
    model.eval()
    indices = list(datasets.eval_indices(dataset, count))
    points = []
    for lam in lambdas:
        bpp, bpp_z, psnr, mse_sum = [], [], [], 0.0
        for s in range(0, len(indices), batch):
            x = torch.from_numpy(np.stack([dataset.sample(i) for i in indices[s:s + batch]])).to(device)
            e = model.estimate(x, lam)
            x_hat = e["x_hat"].clamp(0.0, 1.0 if dataset.bands in (3, 4) else 65535 * datasets.MS_SCALE)
            mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3)).double()
            mse_sum += mse.sum().item()
            psnr += (10 * torch.log10(1.0 / mse.clamp_min(1e-12))).tolist()
            bpp += (e["bpp_y"] + e["bpp_z"]).tolist()
            bpp_z += e["bpp_z"].tolist()
        n = len(indices)
        points.append({"lambda": lam, "images": n, "bpp": float(np.mean(bpp)),
                       "bpp_z": float(np.mean(bpp_z)), "psnr": float(np.mean(psnr)),
                       "psnr_of_mean_mse": float(10 * math.log10(1.0 / max(mse_sum / n, 1e-12)))})
    model.train()
    return points


def make_optimisers(model, args):
    """Adam in three groups: transforms + h_s (--lr), factorised-prior density (--lr-prior)
    and gain nets (--lr-gain), each group's lr = --lr * its "lr_factor"; plus the aux Adam
    on the prior's quantiles (--lr-aux). Returns (opt, aux_opt, lr_factors). Also used by
    gpu_train.py."""
    prior_params = model.prior_density_parameters()
    gain_params = [p for net in model.gain_nets() for p in net.parameters()]
    special = {id(p) for p in prior_params + gain_params}
    lr_factors = [1.0, (args.lr_prior / args.lr) if args.lr_prior else 1.0,
                  (args.lr_gain / args.lr) if args.lr_gain else 1.0]
    opt = torch.optim.Adam(
        [{"params": [p for p in model.main_parameters() if id(p) not in special], "lr_factor": lr_factors[0]},
         {"params": prior_params, "lr_factor": lr_factors[1]},
         {"params": gain_params, "lr_factor": lr_factors[2]}], lr=args.lr)
    aux_opt = torch.optim.Adam(model.aux_parameters(), lr=args.lr_aux)
    return opt, aux_opt, lr_factors


def set_lr(opt, args, step):
    """The lr schedule: --lr until --lr-drop * --steps, then a tenth; returns that lr."""
    lr = args.lr * (0.1 if step >= args.lr_drop * args.steps else 1.0)
    for gr in opt.param_groups:
        gr["lr"] = lr * gr["lr_factor"]
    return lr


def train_step(model, opt, aux_opt, x, mask, lam, clip_grad):
    """One optimiser step on batch x (mask: nodata weights or None) at lambda lam: the
    rate-distortion loss, gradient clipping of the main parameters, then the aux step.
    Returns the (loss, bpp, mse, aux) tensors."""
    out = model(x, lam)
    loss, bpp, mse = rate_distortion(out, x, lam, mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(model.main_parameters(), clip_grad)
    opt.step()
    aux = model.prior.aux_loss()
    aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    aux_opt.step()
    return loss, bpp, mse, aux


def checkpoint_state(config, args, step, model, opt, aux_opt, stream_state, lam_rng, device, init_info):
    """The resumable checkpoint (CKPT_VERSION): what main() saves and resumes from."""
    return {"version": CKPT_VERSION, "config": config, "args": vars(args), "step": step,
            "model": model.state_dict(), "opt": opt.state_dict(),
            "aux_opt": aux_opt.state_dict(), "stream": stream_state,
            "lam_rng": lam_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
            "init_from_info": init_info}


def atomic_save(obj, path):
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def log_line(path, record):
    print(json.dumps(record), flush=True)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mosaic(dataset, indices, grid):
    """grid x grid test images side by side: a (1, C, 64g, 64g) tile of real data."""
    imgs = [dataset.sample(i) for i in indices[: grid * grid]]
    rows = [np.concatenate(imgs[r * grid:(r + 1) * grid], axis=2) for r in range(grid)]
    return torch.from_numpy(np.concatenate(rows, axis=1)[None])


def export(model, args, out_dir, step, test_ds, rd_points, stream=None, holdout_points=None,
           init_info=None):
    model = model.cpu().eval()
    train_names = stream.dataset.names if args.source == "sar" else []
    model_id = args.model_id or ("multirate-sar-db" if args.source == "sar" else
                                 "multirate-ms16" if args.bands == 1 else
                                 "multirate-rgbn8-v1" if args.source == "rgbn" else
                                 "multirate-rgb8-v2" if args.source == "mix" else "multirate-rgb8")
    if args.source == "mix" and model_id == "multirate-rgb8":
        raise SystemExit("--source mix exports need a new model id (default multirate-rgb8-v2), "
                         "not the shipped multirate-rgb8")
    old_card = os.path.join(out_dir, "card.json")
    if os.path.exists(old_card):
        old_id = json.load(open(old_card, encoding="utf-8")).get("id")
        if old_id != model_id:
            raise SystemExit(f"--export {out_dir} holds model '{old_id}', not '{model_id}': refusing to overwrite")
    os.makedirs(out_dir, exist_ok=True)
    eight_bit = args.bands in (3, 4)
    scale = datasets.RGB_SCALE if eight_bit else datasets.MS_SCALE
    out_max = 255.0 if eight_bit else 65535.0
    lam = torch.tensor([args.lambda_max], dtype=torch.float32)

    stages = model.downsampling.bit_length() - 1
    d = model.downsampling
    files = {}
    ana = torch.jit.script(ExportAnalysis(model, scale))
    hyp = torch.jit.script(ExportHyperAnalysis(model))
    syn = torch.jit.script(ExportSynthesis(model, scale, out_max))
    for name, mod in (("analysis.pt", ana), ("hyper_analysis.pt", hyp), ("synthesis.pt", syn)):
        mod.save(os.path.join(out_dir, name))
        files[name] = None

    # Integer hyper-synthesis and factorised-prior tables.
    hs_path = os.path.join(out_dir, "hyper_synthesis_int.json")
    ihs.save_params(ihs.params_from_model(model.h_s), hs_path)
    files["hyper_synthesis_int.json"] = None
    prior = {"format": "nsat-factorized-prior-v1", "channels": model.n,
             "symbols": "z_sym = round(z) per element (no median offset); channel c uses table c",
             "pmf_dtype": "float32 (decimal with 9 significant digits: exact round trip)",
             "tail_mass_target": model.prior.tail_mass,
             "tables": model.prior.pmf_tables()}
    with open(os.path.join(out_dir, "factorized_prior.json"), "w", encoding="utf-8") as f:
        json.dump(prior, f, separators=(",", ":"))
    files["factorized_prior.json"] = None

    # Check the scripted modules against the Python model and write a test vector.
    g = 4
    x = mosaic(test_ds, list(datasets.eval_indices(test_ds, 16)), g)
    with torch.no_grad():
        y_ref = model.g_a(x) * model.modulation(model.lam_tensor(args.lambda_max, "cpu")).view(1, -1, 1, 1)
        y_ts = ana(x / scale, lam)
        z_ts = hyp(y_ts)
        sym = model.symbols(x, args.lambda_max)
        x_ts = syn(sym["y_sym"], lam)
    params = ihs.load_params(hs_path)
    z_sym = torch.round(z_ts).to(torch.int64).numpy()[0]
    idx_int = ihs.scale_indices(params, z_sym, y_ts.shape[2:])
    vector = {"format": "nsat-multirate-test-vector-v1",
              "source": "4x4 mosaic of EuroSAT test images, lambda = lambda_max",
              "lambda": args.lambda_max, "z_shape": list(z_sym.shape), "z_sym": z_sym.reshape(-1).tolist(),
              "y_shape": [int(model.m)] + list(y_ts.shape[2:]),
              "idx": idx_int.reshape(-1).tolist()}
    with open(os.path.join(out_dir, "hs_test_vector.json"), "w", encoding="utf-8") as f:
        json.dump(vector, f, separators=(",", ":"))
    files["hs_test_vector.json"] = None
    checks = {
        "analysis_torchscript_max_abs_diff": float((y_ts - y_ref).abs().max()),
        "synthesis_torchscript_vs_python_max_abs_diff_raw_units": float(
            (x_ts - (model.g_s(sym["y_sym"] * model.demodulation_gain(
                model.lam_tensor(args.lambda_max, "cpu")).view(1, -1, 1, 1)) / scale).clamp(0, out_max)).abs().max()),
        "hs_integer_vs_torch_exact_mismatches": int(
            (torch.from_numpy(idx_int)[None].double() != model.scale_indices(
                torch.from_numpy(z_sym)[None].double(), y_ts.shape, exact=True)).sum()),
    }

    for name in files:
        files[name] = sha256(os.path.join(out_dir, name))
    card = {
        "id": model_id,
        "codec": "MULTIRATE",
        "status": (f"trained {step} of {args.steps} steps" if args.steps >= step else f"trained {step} steps") if step else "untrained",
        "architecture": {
            "paper": "Mijares i Verdu et al. 2023, reduced-complexity multirate remote sensing "
                     "compression; Balle et al. 2018 scale hyperprior; Balle et al. 2019 integer networks",
            "N": model.n, "M": model.m, "bands": args.bands, "downsampling": model.downsampling,
            "hyperprior_downsampling": 4 * model.downsampling,
            "g_a": (f"{stages} x conv5x5 stride 2 ({', '.join(['N'] * (stages - 1))}, M), "
                    f"GDN after the first {stages - 1}"),
            "g_s": (f"{stages - 1} x [conv3x3 -> 4N, PixelShuffle(2), IGDN], conv3x3 -> 4*bands, "
                    "PixelShuffle(2)"),
            "h_a": "|y| -> conv3x3 s1 N, ReLU, conv5x5 s2 N, ReLU, conv5x5 s2 N",
            "h_s": "integer: conv3x3 4N + requant uint8 + PixelShuffle(2), same, conv3x3 M -> index 0..63",
            "modulation": ("lambda/lambda_max -> Dense(64, ReLU) -> Dense(M, ReLU) = gain on y"
                           if args.gain_activation == "relu" else
                           "lambda/lambda_max -> Dense(64, ReLU) -> Dense(M, positive) = gain on y; "
                           f"positive(x) = x + d for x >= 0, d / (1 - x/d) below, d = {GAIN_FLOOR}"),
            # The C++ decoder's gain on y_hat: the net in synthesis.pt ("learned", cards
            # without the field) or 1 / that net, a copy of the modulation net (tied gains).
            "demodulation": "inverse_of_modulation" if model.tied else "learned",
            "demodulation_net": ("the modulation net; the gain on y_hat is 1 / its output" if model.tied
                                 else "same shape, output multiplies y_hat before g_s"),
            # The C++ decoder's demodulation activation; cards without it mean "relu".
            "gain_activation": args.gain_activation,
            "gain_floor": GAIN_FLOOR if args.gain_activation == "positive" else None,
            # How the C++ decoder adds each product in g_s (codecs/learned/synthesis_kernels.h):
            # one rounding per term. Cards without the field (the first models) mean
            # "multiply-then-add", which their files keep forever.
            "synthesis_arithmetic": "fused-multiply-add",
            "entropy": "z: factorised prior, per-channel table; y: zero-mean Gaussian, "
                       "64 scales 0.11..256 log-spaced, index from h_s",
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data": {"train": "EuroSAT RGB train split (eurosat_rgb_splits.csv)" if args.bands == 3
                 else ("8-bit R, G, B, NIR scene crops and EuroSAT MS train chips (B4, B3, B2, B8 "
                       f"stretched {test_ds.stretch} to 8 bit; data_mix)") if args.bands == 4
                 else "EuroSAT MS train split, 13 bands as separate samples (eurosat_ms_splits.csv)",
                 "normalisation": "x / 255" if eight_bit else "x / 16384 (nominal 14 bits)",
                 "augmentation": f"random {args.crop}x{args.crop} crop, flips, 90-degree turns"}
                if args.source not in ("sar", "scenes16") else {
                 "train": ("crops of 16-bit scene planes and EuroSAT MS train chips (data_mix)"),
                 "test": "EuroSAT MS test split, 13 bands as separate samples, each chip mapped as one tile",
                 "normalisation": ("per window, as the codec maps an integer tile: (v - min) / 2^s + 256, "
                                   "s the smallest integer >= 0 with (max - min) / 2^s <= 4096; then / 16384 "
                                   f"(scene crops: a window of up to {datasets.SCENES16_TILE} px around the crop)"),
                 "augmentation": f"random {args.crop}x{args.crop} crop, flips, 90-degree turns"}
                if args.source == "scenes16" else {
                 "train": (f"{len(train_names)} windows of {datasets.SAR_WINDOW} px (stride "
                           f"{datasets.SAR_TRAIN_STRIDE}) of Sentinel-1 backscatter in dB: "
                           + ", ".join(sorted({n.split('@')[0] for n in train_names}))),
                 "test": (f"{len(test_ds)} windows of {datasets.SAR_TEST_WINDOW} px: "
                          + ", ".join(sorted({n.split('@')[0] for n in test_ds.names}))),
                 "sample_domain": "Float32 backscatter in dB (UInt16 GRD amplitude: 20 log10 DN)",
                 "normalisation": ("per window, as the codec maps a Float32 tile: (v - min) * 2^-e + 256, "
                                   "e the smallest integer >= -24 with (max - min) 2^-e <= 4096; then / 16384"),
                 "augmentation": f"random {args.crop}x{args.crop} crop, flips, 90-degree turns"},
        "data_mix": None if args.source not in ("mix", "rgbn") else {
            "description": (f"every {args.eurosat_every}th batch: {stream.eurosat_batch} EuroSAT "
                            f"{'RGB' if args.source == 'mix' else 'MS RGBN'} train "
                            f"images at 64x64; other batches: {args.batch_size} crops of {args.crop}x{args.crop} "
                            "from large 8-bit scenes (group weights below, scenes by valid pixels within "
                            "a group); UInt16/Float32 cloud scenes stretched per scene 0.5..99.9 % to 8 bit"),
            "group_weights": stream.group_weights,
            "scenes": [sc.describe() for sc in stream.scenes],
            "skipped_smaller_than_crop": stream.skipped,
            "holdout_never_trained": list(datasets.HOLDOUT_SCENES) if args.source == "mix" else
                [f"{datasets.NAIP_TRAIN} columns >= {datasets.VQ_NAIP_TEST_COLUMN}"],
            "holdout_files_present": datasets.holdout_paths(args.data) if args.source == "mix" else None,
            "nodata": "pixels with all bands 0 (or alpha 0 for pix4d) have weight 0 in the MSE; "
                      "crops > 50 % nodata are redrawn; the rate counts all pixels"},
        "data_mix_16bit": None if args.source != "scenes16" else {
            "description": (f"every {args.eurosat_every}th batch: {stream.eurosat_batch} EuroSAT MS train "
                            f"chips (one band each) at 64x64; other batches: {args.batch_size} crops of "
                            f"{args.crop}x{args.crop} from 16-bit scene planes (group weights below, planes by "
                            "non-zero valid pixels within a group)"),
            "group_weights": datasets.SCENES16_GROUP_WEIGHTS,
            "scenes": [plane.describe() for plane in stream.scenes],
            "skipped_smaller_than_crop": stream.skipped,
            "holdout_never_trained": list(datasets.SCENES16_HOLDOUT),
            "nodata": "declared nodata: filled with the window's valid mean, weight 0 in the MSE; "
                      "undeclared zeros (collars) are data; crops > 50 % nodata or zero are redrawn"},
        "init_from": None if not init_info else {k: v for k, v in init_info.items() if k != "source_card_rd_points"},
        "training": {"steps": step, "batch_size": args.batch_size, "optimizer": "Adam",
                     "lr": args.lr, "lr_drop": args.lr_drop, "lr_aux": args.lr_aux,
                     "lr_prior": args.lr_prior or args.lr, "lr_gain": args.lr_gain or args.lr,
                     "clip_grad": args.clip_grad, "seed": args.seed,
                     "loss": "bpp + lambda * 255^2 * MSE (bpp: bits / (B*H*W) from likelihoods; "
                             "MSE of normalised samples); lambda log-uniform per batch",
                     "quantisation_proxy": "uniform noise for rates, straight-through rounding for g_s; "
                                           "h_s fake-quantised (int8 weights, uint8 activations)"},
        "lambda_min": args.lambda_min, "lambda_max": args.lambda_max,
        "lambda_max_trained": getattr(args, "lambda_max_trained", None),
        "rd_points": rd_points,
        "rd_points_holdout": holdout_points,
        "rd_points_holdout_note": None if holdout_points is None else (
            f"fixed crops of the hold-out scenes (datasets."
            f"{ {'scenes16': 'holdout16_eval_crops', 'rgbn': 'holdout_rgbn_eval_crops'}.get(args.source, 'holdout_eval_crops')}); "
            "bpp over all pixels, PSNR over valid pixels"),
        "rd_points_note": "EuroSAT test split, bpp = bits from likelihoods / pixels (all bands), "
                          "PSNR = mean over images of 10 log10(1 / MSE) on the normalised scale",
        "interface": {
            "analysis.pt": (f"forward(x: float32 (B,C,H,W) raw sample values, H,W multiples of {d}; "
                            f"lam: float32 (1,)) -> y_mod float32 (B,M,H/{d},W/{d}); y_sym = round(y_mod)"),
            "hyper_analysis.pt": (f"forward(y_mod) -> z float32 (B,N,ceil(H/{4 * d}),ceil(W/{4 * d})); "
                                  "z_sym = round(z)"),
            "synthesis.pt": "forward(y_sym as float32 (B,M,h,w), lam (1,)) -> x_hat raw units, "
                            f"clamped to [0, {out_max}]; round to the sample type",
            "hyper_synthesis_int.json": "integer h_s: z_sym -> scale index (see integer_hyper_synthesis.py)",
            "factorized_prior.json": "per-channel pmf, tail_mass, min_value for nsat::factorizedPriorTables",
            "hs_test_vector.json": "z_sym and the expected indices for a C++ unit test",
        },
        "scale_table": scale_table(),
        "export_checks": checks,
        "files": files,
        "software": {"torch": torch.__version__, "python": platform.python_version(),
                     "numpy": np.__version__},
    }
    with open(os.path.join(out_dir, "card.json"), "w", encoding="utf-8") as f:
        json.dump(card, f, indent=1)
    return card


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    max_crop = 256 if args.source in ("mix", "rgbn", "scenes16") else 120 if args.source == "sar" else 64
    if args.crop % 16 or args.crop > max_crop or args.crop < 16:
        raise SystemExit(f"--crop must be a multiple of 16 in 16..{max_crop}")
    if args.source == "mix" and args.bands != 3:
        raise SystemExit("--source mix is for --bands 3 only")
    if args.source == "rgbn" and args.bands != 4:
        raise SystemExit("--source rgbn is for --bands 4 only")
    if args.source in ("sar", "scenes16") and args.bands != 1:
        raise SystemExit(f"--source {args.source} is for --bands 1 only")
    if not (0 < args.lambda_min <= args.lambda_max):
        raise SystemExit("need 0 < --lambda-min <= --lambda-max")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available in this torch")

    for path in (args.log, args.checkpoint):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    if args.source == "sar":
        train_ds = datasets.SarDbWindows(args.data, "train")
        test_ds = datasets.SarDbWindows(args.data, "test")
    elif args.source == "scenes16":
        train_ds = datasets.CodecMappedMs(datasets.EuroSatMsBands(args.data, "train"))
        test_ds = datasets.CodecMappedMs(datasets.EuroSatMsBands(args.data, "test"))
    else:
        train_ds = datasets.make_dataset(args.data, args.bands, "train", cache=args.cache)
        test_ds = datasets.make_dataset(args.data, args.bands, "test")
    model = MultirateCodec(args.bands, args.lambda_min, args.lambda_max,
                           gain_activation=args.gain_activation,
                           demodulation=args.demodulation,
                           downsampling=args.downsampling).to(device)
    opt, aux_opt, lr_factors = make_optimisers(model, args)
    holdout = []
    if args.source == "mix":
        stream = datasets.MixedRgbStream(args.data, train_ds, args.batch_size, args.crop, args.seed,
                                         args.eurosat_every)
        if not args.no_holdout_eval:
            holdout = datasets.holdout_eval_crops(args.data)
    elif args.source == "rgbn":
        stream = datasets.RgbnStream(args.data, train_ds, args.batch_size, args.crop, args.seed,
                                     args.eurosat_every)
        if not args.no_holdout_eval:
            holdout = datasets.holdout_rgbn_eval_crops(args.data)
    elif args.source == "scenes16":
        stream = datasets.Scenes16Stream(args.data, train_ds, args.batch_size, args.crop, args.seed,
                                         args.eurosat_every)
        if not args.no_holdout_eval:
            holdout = datasets.holdout16_eval_crops(args.data)
    else:
        stream = datasets.BatchStream(train_ds, args.batch_size, args.crop, args.seed)
    lam_rng = np.random.Generator(np.random.PCG64(args.seed + 1000003))
    step = 0

    config = {"bands": args.bands, "lambda_min": args.lambda_min, "lambda_max": args.lambda_max,
              "N": N_FILTERS, "M": M_LATENT, "source": args.source,
              "gain_activation": args.gain_activation}
    if args.demodulation != "learned":   # older checkpoints have no such key
        config["demodulation"] = args.demodulation
    if args.downsampling != 16:
        config["downsampling"] = args.downsampling
    if args.source in ("mix", "rgbn", "scenes16"):
        # Everything that changes the batch sequence: a resume with other values would not
        # continue the same stream.
        config.update({"batch_size": args.batch_size, "crop": args.crop,
                       "eurosat_every": args.eurosat_every, "seed": args.seed,
                       "scenes": stream.scene_names(),
                       "group_weights": (datasets.SCENES16_GROUP_WEIGHTS if args.source == "scenes16"
                                         else stream.group_weights),
                       "init_from": os.path.normpath(args.init_from) if args.init_from else None})
    resumed = False
    if args.checkpoint and os.path.exists(args.checkpoint):
        ck = torch.load(args.checkpoint, map_location=device)
        ck_config = dict(ck.get("config", {}))
        if ck.get("version") == 1:
            for k, v in LEGACY_CONFIG.items():
                ck_config.setdefault(k, v)
        if ck.get("version") not in (1, CKPT_VERSION) or ck_config != config:
            diff = sorted(k for k in set(ck_config) | set(config) if ck_config.get(k) != config.get(k))
            raise SystemExit(f"{args.checkpoint}: config differs in {diff}: checkpoint "
                             f"{str([ck_config.get(k) for k in diff])[:400]}, now {str([config.get(k) for k in diff])[:400]}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        for gr, factor in zip(opt.param_groups, lr_factors):   # the command line decides
            gr["lr_factor"] = factor
        aux_opt.load_state_dict(ck["aux_opt"])
        stream.set_state(ck["stream"])
        lam_rng.bit_generator.state = ck["lam_rng"]
        torch.set_rng_state(ck["torch_rng"])
        if device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"])
        np.random.set_state(ck["numpy_rng"])
        random.setstate(ck["python_rng"])
        step = ck["step"]
        resumed = True
        print(f"resumed {args.checkpoint} at step {step}", flush=True)
    init_info = ck.get("init_from_info") if resumed else None
    if args.init_from and not resumed:
        # The warm start uses its own RNG streams only through torch's default generator
        # (Adam is deterministic); reseed afterwards so the run is reproducible either way.
        init_info, src_card = warm_start(model, args.init_from, args.tie_at_lambda)
        torch.manual_seed(args.seed)
        if args.init_eval_images:
            src_lams = [p["lambda"] for p in src_card.get("rd_points", [])] or eval_lambdas(args.lambda_min, args.lambda_max)
            t_ev = time.time()
            init_info["eval"] = evaluate(model, test_ds, args.init_eval_images, src_lams, device)
            init_info["eval_seconds"] = time.time() - t_ev
            init_info["source_card_rd_points"] = src_card.get("rd_points")
        log_line(args.log, {"step": 0, "init_from": init_info})

    def checkpoint():
        if not args.checkpoint:
            return
        os.makedirs(os.path.dirname(os.path.abspath(args.checkpoint)), exist_ok=True)
        atomic_save(checkpoint_state(config, args, step, model, opt, aux_opt, stream.state(),
                                     lam_rng, device, init_info), args.checkpoint)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    lambdas = eval_lambdas(args.lambda_min, args.lambda_max, args.eval_lambda_count)
    log_lo, log_hi = math.log(args.lambda_min), math.log(args.lambda_max)
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0, "n": 0}
    t0, images, pixels = time.time(), 0, 0
    model.train()
    while step < args.steps and stop["signal"] is None:
        lr = set_lr(opt, args, step)
        batch = stream.next()
        if isinstance(batch, tuple):
            x = torch.from_numpy(batch[0]).to(device)
            mask = torch.from_numpy(batch[1]).to(device)
        else:
            x, mask = torch.from_numpy(batch).to(device), None
        lam = float(math.exp(lam_rng.uniform(log_lo, log_hi)))
        loss, bpp, mse, aux = train_step(model, opt, aux_opt, x, mask, lam, args.clip_grad)
        step += 1
        images += x.shape[0]
        pixels += x.shape[0] * x.shape[2] * x.shape[3]
        acc["loss"] += loss.item()
        acc["bpp"] += bpp.item()
        acc["mse"] += mse.item()
        acc["aux"] += aux.item()
        acc["n"] += 1
        if step % args.log_every == 0 or step == args.steps:
            dt = time.time() - t0
            n = acc["n"]
            log_line(args.log, {"step": step, "loss": acc["loss"] / n, "bpp": acc["bpp"] / n,
                                "psnr_train": 10 * math.log10(1.0 / max(acc["mse"] / n, 1e-12)),
                                "aux": acc["aux"] / n, "lr": lr, "images_per_s": images / dt,
                                "pixels_per_s": pixels / dt, "s_per_step": dt / n})
            acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0, "n": 0}
            t0, images, pixels = time.time(), 0, 0
        if step % args.checkpoint_every == 0:
            checkpoint()
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            t_ev = time.time()
            pts = evaluate(model, test_ds, args.eval_images, lambdas, device)
            rec = {"step": step, "eval": pts}
            if holdout:
                rec["eval_holdout"] = evaluate_holdout(model, holdout, lambdas, device)
            rec["eval_seconds"] = round(time.time() - t_ev, 1)
            log_line(args.log, rec)
            t0, images, pixels = time.time(), 0, 0

    checkpoint()
    if stop["signal"] is not None:
        print(f"signal {stop['signal']}: checkpoint saved at step {step}", flush=True)
        sys.exit(128 + stop["signal"])

    if args.export_lambda_max is not None:
        if not (args.lambda_min < args.export_lambda_max <= args.lambda_max):
            raise SystemExit("--export-lambda-max must lie in (--lambda-min, --lambda-max]")
        truncate_lambda_range(model, args.export_lambda_max)
        args.lambda_max_trained, args.lambda_max = args.lambda_max, args.export_lambda_max
        lambdas = eval_lambdas(args.lambda_min, args.lambda_max, args.eval_lambda_count)
    pts = evaluate(model, test_ds, args.final_eval_images, lambdas, device)
    hold_pts = evaluate_holdout(model, holdout, lambdas, device) if holdout else None
    log_line(args.log, {"step": step, "final_eval": pts, "final_eval_holdout": hold_pts})
    if args.export:
        card = export(model, args, args.export, step, test_ds, pts, stream=stream,
                      holdout_points=hold_pts, init_info=init_info)
        print(json.dumps({"export": args.export, "checks": card["export_checks"],
                          "files": card["files"]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
