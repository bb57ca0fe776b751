#!/usr/bin/env python3
"""Train, evaluate and export an NSAT VQ model (vq_model.py).

    /usr/bin/python3 scripts/learned/train_vq.py --source s2-rgbn --run runs/vq-rgbn16 \
        --steps 20000 --export models/vq-rgbn16-v1 --model-id vq-rgbn16-v1

Sources (datasets.py): ``s2-rgbn`` (Sentinel-2 B2, B3, B4, B8 UInt16 reflectance x 10000:
EuroSAT MS train chips and the Sentinel-2 scenes of ../shared/data), ``rgb8`` (EuroSAT RGB
and the mixed 8-bit scenes of MULTIRATE's ``--source mix``), ``rgbn8`` (NAIP 4-band Byte:
the training part of the NAIP scene and the Sentinel-2 scenes stretched to 8 bit).

Schedule: ``--warmup`` steps as a plain autoencoder, then k-means initialisation of every
codebook on latents of the training stream, then VQ training where each batch uses a
random number of levels (1 .. L) so that every prefix of levels decodes well. SIGTERM
saves a checkpoint; a run resumes from its checkpoint. The export writes the TorchScript
transforms, ``vq_tables.json`` (codebooks, context classes, rANS frequencies; see
``vq_entropy.py``) and ``card.json``.
"""

import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # noqa: E402
from bench_common import file_sha256  # noqa: E402
from image_metrics import psnr, ssim_bands  # noqa: E402
import vq_entropy  # noqa: E402
from vq_model import (LATENT_DOWNSAMPLING, ExportVqAnalysis, ExportVqSynthesis,  # noqa: E402
                      VqCodec)

SOURCES = {
    # source: bands, input scale (raw -> model units), output max, sample type
    "s2-rgbn": (4, 1.0 / 10000.0, 65535.0, "UInt16"),
    "rgb8": (3, 1.0 / 255.0, 255.0, "Byte"),
    "rgbn8": (4, 1.0 / 255.0, 255.0, "Byte"),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=sorted(SOURCES), required=True)
    p.add_argument("--data", default=datasets.DEFAULT_DATA)
    p.add_argument("--run", required=True, help="run folder: checkpoint.pt, log.jsonl")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--warmup", type=int, default=1500, help="autoencoder steps before VQ")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--analysis-filters", type=int, default=64)
    p.add_argument("--synthesis-filters", type=int, default=128)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--entries", type=int, default=256)
    p.add_argument("--commitment", type=float, default=0.25)
    p.add_argument("--kmeans-batches", type=int, default=48)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-drop-at", type=float, default=0.8, help="fraction of steps; lr / 10 after")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from another run's checkpoint: every tensor of the same name and "
                        "shape (encoder, codebooks; the decoder too if it has the same width), "
                        "then train without warm-up or k-means")
    p.add_argument("--export", default=None, metavar="DIR")
    p.add_argument("--model-id", default=None)
    return p.parse_args()


def model_input(img: np.ndarray, scale: float) -> torch.Tensor:
    """A raw image as the model's (1, C, H, W) input, padded by edge replication to the
    latent grid as the codec pads a tile."""
    x = torch.from_numpy(img.astype(np.float32) * np.float32(scale))[None]
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % LATENT_DOWNSAMPLING, 0, -h % LATENT_DOWNSAMPLING), mode="replicate")


def evaluate(codec: VqCodec, images, scale: float, out_max: float, levels: int) -> dict:
    """Mean PSNR (against the type's peak) and SSIM of the held-out images at each level count."""
    codec.eval()
    rows = []
    with torch.no_grad():
        for used in range(1, levels + 1):
            ps, ss = [], []
            for img in images:
                h, w = img.shape[-2:]
                x_hat, _, _, _ = codec(model_input(img, scale), used)
                rec = np.clip(np.round(x_hat[0, :, :h, :w].numpy() / scale), 0, out_max)
                ps.append(psnr(img, rec, out_max))
                ss.append(ssim_bands(img, rec))
            rows.append({"levels": used, "images": len(images), "psnr": float(np.mean(ps)),
                         "ssim": float(np.mean(ss))})
    codec.train()
    return {"points": rows}


def save_checkpoint(path, codec, opt, stream, step):
    tmp = path + ".tmp"
    torch.save({"codec": codec.state_dict(), "opt": opt.state_dict(), "stream": stream.state(),
                "step": step, "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def export(args, codec: VqCodec, step: int, history: list, test_images) -> None:
    bands, scale, out_max, sample_type = SOURCES[args.source]
    os.makedirs(args.export, exist_ok=True)
    codec.eval()
    analysis = torch.jit.script(ExportVqAnalysis(codec, scale))
    synthesis = torch.jit.script(ExportVqSynthesis(codec, scale, out_max))
    analysis.save(os.path.join(args.export, "analysis.pt"))
    synthesis.save(os.path.join(args.export, "synthesis.pt"))
    # Entropy model: indices of every training image, tables, held-out code lengths.
    train_images = datasets.vq_training_images(args.data, args.source)

    def indices_of(images):
        out = []
        with torch.no_grad():
            for img in images:
                y = codec.g_a(model_input(img, scale))
                _, idx = codec.quantizer.quantise(codec.quantizer.vectors(y), codec.quantizer.levels)
                hh, ww = y.shape[-2:]
                out.append(np.stack([i.numpy().reshape(hh, ww, -1).transpose(2, 0, 1) for i in idx]))
        return out  # each [L, G, h, w]

    books = codec.quantizer.codebooks.numpy()
    tables, report = vq_entropy.fit_tables(books, indices_of(train_images), indices_of(test_images))
    tables["codebooks"] = books.tolist()
    with open(os.path.join(args.export, "vq_tables.json"), "w") as f:
        json.dump(tables, f, separators=(",", ":"))
    ev = evaluate(codec, test_images, scale, out_max, codec.quantizer.levels)
    raw_bits = LATENT_DOWNSAMPLING ** 2 * bands * (8 if sample_type == "Byte" else 16)
    for row in ev["points"]:
        fixed = row["levels"] * codec.quantizer.groups * math.log2(codec.quantizer.entries)
        coded = report["bits_per_position"][row["levels"] - 1]
        row.update({"fixed_bits_per_position": fixed, "coded_bits_per_position": coded,
                    "compression_ratio_fixed": raw_bits / fixed,
                    "compression_ratio_coded": raw_bits / coded})
    files = {name: file_sha256(os.path.join(args.export, name))
             for name in ("analysis.pt", "synthesis.pt", "vq_tables.json")}
    q = codec.quantizer
    card = {
        "id": args.model_id,
        "codec": "VQ",
        "status": f"trained {step} steps",
        "architecture": {
            "paper": "CORSA (VITO / ESA Phi-lab): vector-quantised autoencoder compression for remote sensing; "
                     "van den Oord et al. 2017 (VQ-VAE, EMA codebooks)",
            "bands": bands,
            "latent_channels": args.latent,
            "downsampling": LATENT_DOWNSAMPLING,
            "g_a": f"conv5x5 s2 {args.analysis_filters}, GDN, conv5x5 s2 {args.analysis_filters}, GDN, conv3x3 {args.latent}",
            "g_s": f"conv3x3 -> 4x{args.synthesis_filters}, PixelShuffle(2), IGDN, conv3x3 -> 4x{bands}, PixelShuffle(2)",
            "quantiser": f"residual product VQ: {q.levels} levels x {q.groups} groups of {q.dim} channels, "
                         f"{q.entries} entries each; a decoder may stop after any level",
            "levels": q.levels, "groups": q.groups, "group_channels": q.dim, "entries": q.entries,
            "analysis_macs_per_pixel": analysis_macs(args, bands),
            "synthesis_arithmetic": "fused-multiply-add",
            "entropy": tables["context"]["description"],
        },
        "sample_type": sample_type,
        "input_scale": scale,
        "output_max": out_max,
        "data": datasets.vq_source_description(args.source),
        "training": {"steps": step, "warmup": args.warmup, "init_from": args.init_from,
                     "batch_size": args.batch_size,
                     "crop": args.crop, "lr": args.lr, "commitment": args.commitment,
                     "seed": args.seed, "threads": args.threads},
        "eval_heldout": ev["points"],
        "eval_note": "held-out images (datasets.vq_test_images); PSNR against the type's peak, "
                     "SSIM per band with the band's own range (image_metrics.ssim_bands); bits per latent "
                     "position with the context model vs fixed-length indices",
        "entropy_report": report,
        "history_tail": history[-5:],
        "files": files,
        "software": {"torch": torch.__version__},
    }
    with open(os.path.join(args.export, "card.json"), "w") as f:
        json.dump(card, f, indent=1)
    print(json.dumps(ev["points"], indent=1))
    codec.train()


def analysis_macs(args, bands: int) -> float:
    a = args.analysis_filters
    return 25 * bands * a / 4 + 25 * a * a / 16 + 9 * a * args.latent / 16


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bands, scale, out_max, _ = SOURCES[args.source]
    os.makedirs(args.run, exist_ok=True)
    ckpt_path = os.path.join(args.run, "checkpoint.pt")
    log_path = os.path.join(args.run, "log.jsonl")
    codec = VqCodec(bands, args.analysis_filters, args.synthesis_filters, args.latent,
                    args.groups, args.levels, args.entries)
    opt = torch.optim.Adam([p for p in codec.parameters() if p.requires_grad], lr=args.lr)
    stream = datasets.vq_stream(args.data, args.source, scale, args.batch_size, args.crop, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    if args.init_from and not os.path.exists(ckpt_path):
        source = torch.load(args.init_from)["codec"]
        own = codec.state_dict()
        taken = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        codec.load_state_dict(taken, strict=False)
        print(f"initialised {len(taken)} of {len(own)} tensors from {args.init_from}", flush=True)
    if args.init_from:
        args.warmup = 0  # the codebooks come initialised
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path)
        codec.load_state_dict(state["codec"])
        opt.load_state_dict(state["opt"])
        stream.set_state(state["stream"])
        step = state["step"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step}", flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    test_images = datasets.vq_test_images(args.data, args.source)
    history = []
    t0, losses = time.time(), []
    while step < args.steps and not stop["now"]:
        lr = args.lr * (0.1 if step >= args.lr_drop_at * args.steps else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        x = torch.from_numpy(stream.next())
        if step < args.warmup:
            x_hat, y, _, commit = codec(x, 0, quantise=False)
        else:
            if not bool(codec.quantizer.initialised):
                with torch.no_grad():
                    vs = [codec.quantizer.vectors(codec.g_a(torch.from_numpy(stream.next())))
                          for _ in range(args.kmeans_batches)]
                codec.quantizer.kmeans_init(torch.cat(vs), 12, gen)
                print(f"k-means initialised at step {step}", flush=True)
            used = 1 + int(torch.randint(0, args.levels, (1,), generator=gen))
            x_hat, y, (v, indices), commit = codec(x, used)
        mse = F.mse_loss(x_hat, x)
        loss = mse + args.commitment * commit
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        if step >= args.warmup:
            codec.quantizer.ema_update(v, indices, gen)
        losses.append(float(mse))
        step += 1
        if step % args.log_every == 0:
            rec = {"step": step, "mse": float(np.mean(losses)), "lr": lr,
                   "steps_per_s": args.log_every / (time.time() - t0)}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            t0, losses = time.time(), []
        if step % args.checkpoint_every == 0:
            save_checkpoint(ckpt_path, codec, opt, stream, step)
        if args.eval_every and step % args.eval_every == 0 and step > args.warmup:
            ev = evaluate(codec, test_images, scale, out_max, args.levels)
            history.append({"step": step, **ev})
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step, "eval": ev["points"]}) + "\n")
    save_checkpoint(ckpt_path, codec, opt, stream, step)
    if args.export and not stop["now"]:
        if not args.model_id:
            raise SystemExit("--export needs --model-id")
        export(args, codec, step, history, test_images)


if __name__ == "__main__":
    main()
