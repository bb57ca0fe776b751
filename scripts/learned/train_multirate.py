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
from multirate_model import (M_LATENT, N_FILTERS, ExportAnalysis, ExportHyperAnalysis,  # noqa: E402
                             ExportSynthesis, MultirateCodec, rate_distortion, scale_table)

CKPT_VERSION = 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=datasets.DEFAULT_DATA, help="data folder (default %(default)s)")
    p.add_argument("--bands", type=int, choices=(3, 1), default=3,
                   help="3: EuroSAT RGB (Byte); 1: EuroSAT MS, each band a sample (UInt16)")
    p.add_argument("--steps", type=int, default=300000, help="total optimiser steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=64, help="training crop (multiple of 16, <= 64)")
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
    p.add_argument("--model-id", default=None, help="card id (default multirate-rgb8 / multirate-ms16)")
    return p.parse_args(argv)


def eval_lambdas(lmin: float, lmax: float, count: int = 4):
    return [float(math.exp(math.log(lmin) + k * (math.log(lmax) - math.log(lmin)) / (count - 1)))
            for k in range(count)]


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
            x_hat = e["x_hat"].clamp(0.0, 1.0 if dataset.bands == 3 else 65535 * datasets.MS_SCALE)
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


def export(model, args, out_dir, step, test_ds, rd_points):
    model = model.cpu().eval()
    os.makedirs(out_dir, exist_ok=True)
    scale = datasets.RGB_SCALE if args.bands == 3 else datasets.MS_SCALE
    out_max = 255.0 if args.bands == 3 else 65535.0
    lam = torch.tensor([args.lambda_max], dtype=torch.float32)

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
            (x_ts - (model.g_s(sym["y_sym"] * model.demodulation(
                model.lam_tensor(args.lambda_max, "cpu")).view(1, -1, 1, 1)) / scale).clamp(0, out_max)).abs().max()),
        "hs_integer_vs_torch_exact_mismatches": int(
            (torch.from_numpy(idx_int)[None].double() != model.scale_indices(
                torch.from_numpy(z_sym)[None].double(), y_ts.shape, exact=True)).sum()),
    }

    for name in files:
        files[name] = sha256(os.path.join(out_dir, name))
    model_id = args.model_id or ("multirate-rgb8" if args.bands == 3 else "multirate-ms16")
    card = {
        "id": model_id,
        "codec": "MULTIRATE",
        "status": f"trained {step} of {args.steps} steps" if step else "untrained",
        "architecture": {
            "paper": "Mijares i Verdu et al. 2023, reduced-complexity multirate remote sensing "
                     "compression; Balle et al. 2018 scale hyperprior; Balle et al. 2019 integer networks",
            "N": model.n, "M": model.m, "bands": args.bands, "downsampling": 16,
            "hyperprior_downsampling": 64,
            "g_a": "4 x conv5x5 stride 2 (N, N, N, M), GDN after the first three",
            "g_s": "3 x [conv3x3 -> 4N, PixelShuffle(2), IGDN], conv3x3 -> 4*bands, PixelShuffle(2)",
            "h_a": "|y| -> conv3x3 s1 N, ReLU, conv5x5 s2 N, ReLU, conv5x5 s2 N",
            "h_s": "integer: conv3x3 4N + requant uint8 + PixelShuffle(2), same, conv3x3 M -> index 0..63",
            "modulation": "lambda/lambda_max -> Dense(64, ReLU) -> Dense(M, ReLU) = gain on y",
            "demodulation": "same shape, output multiplies y_hat before g_s",
            "entropy": "z: factorised prior, per-channel table; y: zero-mean Gaussian, "
                       "64 scales 0.11..256 log-spaced, index from h_s",
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data": {"train": "EuroSAT RGB train split (eurosat_rgb_splits.csv)" if args.bands == 3
                 else "EuroSAT MS train split, 13 bands as separate samples (eurosat_ms_splits.csv)",
                 "normalisation": "x / 255" if args.bands == 3 else "x / 16384 (nominal 14 bits)",
                 "augmentation": f"random {args.crop}x{args.crop} crop, flips, 90-degree turns"},
        "training": {"steps": step, "batch_size": args.batch_size, "optimizer": "Adam",
                     "lr": args.lr, "lr_drop": args.lr_drop, "lr_aux": args.lr_aux,
                     "lr_prior": args.lr_prior or args.lr, "lr_gain": args.lr_gain or args.lr,
                     "clip_grad": args.clip_grad, "seed": args.seed,
                     "loss": "bpp + lambda * 255^2 * MSE (bpp: bits / (B*H*W) from likelihoods; "
                             "MSE of normalised samples); lambda log-uniform per batch",
                     "quantisation_proxy": "uniform noise for rates, straight-through rounding for g_s; "
                                           "h_s fake-quantised (int8 weights, uint8 activations)"},
        "lambda_min": args.lambda_min, "lambda_max": args.lambda_max,
        "rd_points": rd_points,
        "rd_points_note": "EuroSAT test split, bpp = bits from likelihoods / pixels (all bands), "
                          "PSNR = mean over images of 10 log10(1 / MSE) on the normalised scale",
        "interface": {
            "analysis.pt": "forward(x: float32 (B,C,H,W) raw sample values, H,W multiples of 16; "
                           "lam: float32 (1,)) -> y_mod float32 (B,M,H/16,W/16); y_sym = round(y_mod)",
            "hyper_analysis.pt": "forward(y_mod) -> z float32 (B,N,ceil(H/64),ceil(W/64)); z_sym = round(z)",
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
    if args.crop % 16 or args.crop > 64 or args.crop < 16:
        raise SystemExit("--crop must be a multiple of 16 in 16..64")
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

    train_ds = datasets.make_dataset(args.data, args.bands, "train", cache=args.cache)
    test_ds = datasets.make_dataset(args.data, args.bands, "test")
    model = MultirateCodec(args.bands, args.lambda_min, args.lambda_max).to(device)
    # Three groups: transforms, factorised-prior density, gain nets (lr = --lr * factor).
    prior_params = model.prior_density_parameters()
    gain_params = list(model.modulation.parameters()) + list(model.demodulation.parameters())
    special = {id(p) for p in prior_params + gain_params}
    lr_factors = [1.0, (args.lr_prior / args.lr) if args.lr_prior else 1.0,
                  (args.lr_gain / args.lr) if args.lr_gain else 1.0]
    opt = torch.optim.Adam(
        [{"params": [p for p in model.main_parameters() if id(p) not in special], "lr_factor": lr_factors[0]},
         {"params": prior_params, "lr_factor": lr_factors[1]},
         {"params": gain_params, "lr_factor": lr_factors[2]}], lr=args.lr)
    aux_opt = torch.optim.Adam(model.aux_parameters(), lr=args.lr_aux)
    stream = datasets.BatchStream(train_ds, args.batch_size, args.crop, args.seed)
    lam_rng = np.random.Generator(np.random.PCG64(args.seed + 1000003))
    step = 0

    config = {"bands": args.bands, "lambda_min": args.lambda_min, "lambda_max": args.lambda_max,
              "N": N_FILTERS, "M": M_LATENT}
    if args.checkpoint and os.path.exists(args.checkpoint):
        ck = torch.load(args.checkpoint, map_location=device)
        if ck.get("version") != CKPT_VERSION or ck["config"] != config:
            raise SystemExit(f"{args.checkpoint}: made with {ck.get('config')}, not {config}")
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
        print(f"resumed {args.checkpoint} at step {step}", flush=True)

    def checkpoint():
        if not args.checkpoint:
            return
        os.makedirs(os.path.dirname(os.path.abspath(args.checkpoint)), exist_ok=True)
        atomic_save({"version": CKPT_VERSION, "config": config, "args": vars(args), "step": step,
                     "model": model.state_dict(), "opt": opt.state_dict(),
                     "aux_opt": aux_opt.state_dict(), "stream": stream.state(),
                     "lam_rng": lam_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                     "numpy_rng": np.random.get_state(), "python_rng": random.getstate()},
                    args.checkpoint)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    lambdas = eval_lambdas(args.lambda_min, args.lambda_max)
    log_lo, log_hi = math.log(args.lambda_min), math.log(args.lambda_max)
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0, "n": 0}
    t0, images = time.time(), 0
    model.train()
    while step < args.steps and stop["signal"] is None:
        lr = args.lr * (0.1 if step >= args.lr_drop * args.steps else 1.0)
        for gr in opt.param_groups:
            gr["lr"] = lr * gr["lr_factor"]
        x = torch.from_numpy(stream.next()).to(device)
        lam = float(math.exp(lam_rng.uniform(log_lo, log_hi)))
        out = model(x, lam)
        loss, bpp, mse = rate_distortion(out, x, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.main_parameters(), args.clip_grad)
        opt.step()
        aux = model.prior.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        step += 1
        images += x.shape[0]
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
                                "aux": acc["aux"] / n, "lr": lr, "images_per_s": images / dt})
            acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0, "n": 0}
            t0, images = time.time(), 0
        if step % args.checkpoint_every == 0:
            checkpoint()
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            pts = evaluate(model, test_ds, args.eval_images, lambdas, device)
            log_line(args.log, {"step": step, "eval": pts})
            t0, images = time.time(), 0

    checkpoint()
    if stop["signal"] is not None:
        print(f"signal {stop['signal']}: checkpoint saved at step {step}", flush=True)
        sys.exit(128 + stop["signal"])

    pts = evaluate(model, test_ds, args.final_eval_images, lambdas, device)
    log_line(args.log, {"step": step, "final_eval": pts})
    if args.export:
        card = export(model, args, args.export, step, test_ds, pts)
        print(json.dumps({"export": args.export, "checks": card["export_checks"],
                          "files": card["files"]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
