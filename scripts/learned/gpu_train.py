#!/usr/bin/env python3
"""Train MULTIRATE RGB v2 on a lent GPU machine from a pack made by pack_crops.py.

Runs THERE (torch 2.x, CUDA, numpy 2, no GDAL, no data folder, no network) on what travels:
the working tree plus the carried ``runs/gpu_pack`` (pack.npz + warm.pt + manifest.json).
It trains the same ``MultirateCodec`` with train_multirate.py's own pieces
(``make_optimisers``, ``set_lr``, ``train_step`` = loss, clipping and both Adam steps,
``checkpoint_state``, ``evaluate``, ``evaluate_holdout``), on larger batches, for a
wall-clock budget, and writes to ``--out`` (default $OUT):

* ``ckpt.pt.part-00``, ``-01``, ... + ``ckpt.pt.sha256``: a train_multirate checkpoint
  (version 2: config, args, step, model, opt, aux_opt, stream, RNG states, init_from_info)
  split into 15 MiB parts, because the device tool brings back no file over 16 MiB. The
  config, args, stream state and the CPU RNG states are the warm checkpoint's, so the CPU
  run's command resumes from it unchanged; ``step`` is the warm step plus the GPU steps
  scaled by ``--batch-size / cpu batch size`` (CPU-step equivalents by pixels; the lr
  schedule, --lr-drop of --steps, is applied on that scale during GPU training too).
  Everything but tensors is plain Python (numpy 2 pickles do not load under numpy 1.24),
  optimiser groups keep only the keys torch 1.13's Adam knows, and the pickle's globals are
  checked against what torch 1.13 can resolve (``report.json``: "pickle_globals",
  "portable_to_torch_1_13"; a warning, not an error).
* ``model_state.pt``: the model's state_dict as plain CPU tensors.
  Both are written after step 1 (to try the save path early), every
  ``--save-every-minutes``, at the end, and on SIGTERM/SIGINT.
* ``log.jsonl`` (train records; RD on the pack's EuroSAT test images and hold-out crops
  before and after) and ``report.json``.

Numerics: float32 throughout, AMP off and TF32 off (``--tf32`` turns TF32 convolutions on).
The exported files are made later HERE, on the CPU, from the weights, so bit-exact export
never depends on GPU arithmetic; and the fake-quantised integer h_s needs float32 sums to be
exact (< 2**24), which fp16/bf16 autocast would break.

Bring it back (here, Debian torch 1.13):

    /usr/bin/python3 scripts/learned/gpu_train.py --join FILES_AT --to runs/gpu_back/ckpt.pt

then resume or export with train_multirate.py (README.md, "Training on a lent GPU").
CPU smoke test: ``--device cpu --minutes 0.2 --batch-size 4 --threads 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickletools
import re
import signal
import sys
import tempfile
import time
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)


def _stub_gdal():
    """datasets.py (imported by train_multirate) imports osgeo.gdal at module level; the GPU
    machine has no GDAL and this script reads only the pack, so a stub that fails on use
    is enough. NSAT_NO_GDAL=1 forces the stub (to test that here)."""
    if not os.environ.get("NSAT_NO_GDAL"):
        try:
            import osgeo.gdal  # noqa: F401
            return False
        except ImportError:
            pass

    def _unavailable(*_a, **_k):
        raise RuntimeError("GDAL is not available here: gpu_train.py reads only the pack")

    gdal = types.ModuleType("osgeo.gdal")
    gdal.UseExceptions = lambda: None
    gdal.Open = _unavailable
    gdal.GA_ReadOnly = 0
    pkg = types.ModuleType("osgeo")
    pkg.gdal = gdal
    sys.modules["osgeo"], sys.modules["osgeo.gdal"] = pkg, gdal
    return True


GDAL_STUBBED = _stub_gdal()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pack_crops  # noqa: E402
import train_multirate as tm  # noqa: E402
from multirate_model import MultirateCodec  # noqa: E402

RGB_SCALE = np.float32(tm.datasets.RGB_SCALE)
# Param-group keys of torch 1.13's Adam (torch 2.x adds others, e.g. decoupled_weight_decay).
ADAM_113_KEYS = ("params", "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach",
                 "capturable", "differentiable", "fused", "lr_factor")
# Pickle globals that torch 1.13's torch.load resolves (legacy storage classes are matched
# by pattern); _rebuild_tensor_v3 (new dtypes only) is not among them.
PICKLE_OK = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"}
PICKLE_OK_STORAGE = re.compile(r"^torch\.(Byte|Char|Short|Int|Long|Half|Float|Double|Bool|BFloat16)Storage$")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", default=os.path.join("runs", "gpu_pack"), help="folder with pack.npz and warm.pt")
    p.add_argument("--init", default=None, help="warm checkpoint (default PACK/warm.pt; any train_multirate "
                                                "--source mix checkpoint, with or without optimiser states)")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join("runs", "gpu_out"))
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the training loop")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many GPU steps (0: budget only)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="scene crops per batch; EuroSAT batches hold batch*(crop/64)^2 images")
    p.add_argument("--step-scale", type=float, default=0.0,
                   help="CPU-step equivalents per GPU step (default batch / the CPU run's batch)")
    p.add_argument("--seed", type=int, default=12345, help="GPU-side batches, lambda draws and noise")
    p.add_argument("--threads", type=int, default=8, help="torch CPU threads")
    p.add_argument("--tf32", action="store_true", help="allow TF32 convolutions/matmuls (default off)")
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--save-every-minutes", type=float, default=3.0, help="also save on the way (0: only at the end)")
    p.add_argument("--eval-lambda-count", type=int, default=5)
    p.add_argument("--eval-images", type=int, default=0, help="EuroSAT test images of the pack to evaluate (0: all)")
    p.add_argument("--no-eval", action="store_true", help="skip the RD checks before and after")
    p.add_argument("--part-mib", type=float, default=15.0, help="size of the checkpoint parts")
    p.add_argument("--join", default=None, metavar="DIR",
                   help="here: join DIR/ckpt.pt.part-* into --to, check SHA-256 and that it loads, and exit")
    p.add_argument("--to", default=os.path.join("runs", "gpu_back", "ckpt.pt"))
    return p.parse_args(argv)


def torch_load(path, device="cpu"):
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except TypeError:                                   # a torch without weights_only
        return torch.load(path, map_location=device)


def pickle_globals(path):
    """Module.name of every global the checkpoint's pickle references."""
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for op, arg, _pos in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
        if isinstance(arg, str):
            strings.append(arg)
    return sorted(found)


def join(args):
    parts = sorted(n for n in os.listdir(args.join) if n.startswith("ckpt.pt.part-"))
    if not parts:
        raise SystemExit(f"{args.join}: no ckpt.pt.part-* files")
    want = open(os.path.join(args.join, "ckpt.pt.sha256"), encoding="utf-8").read().split()[0]
    os.makedirs(os.path.dirname(os.path.abspath(args.to)), exist_ok=True)
    tmp = args.to + ".tmp"
    with open(tmp, "wb") as out:
        for n in parts:
            with open(os.path.join(args.join, n), "rb") as f:
                out.write(f.read())
    if tm.sha256(tmp) != want:
        os.remove(tmp)
        raise SystemExit("joined checkpoint: SHA-256 differs from ckpt.pt.sha256")
    ck = torch_load(tmp)
    missing = [k for k in ("version", "config", "args", "step", "model", "opt", "aux_opt", "stream",
                           "lam_rng", "torch_rng", "numpy_rng", "python_rng") if k not in ck]
    if missing or ck["version"] != tm.CKPT_VERSION:
        raise SystemExit(f"joined checkpoint: version {ck.get('version')}, missing {missing}")
    os.replace(tmp, args.to)
    g = ck.get("gpu_train", {})
    print(json.dumps({"joined": args.to, "parts": parts, "sha256": want, "step": ck["step"],
                      "warm_step": g.get("warm_step"), "gpu_steps": g.get("gpu_steps"),
                      "torch_there": g.get("torch"), "config_crop": ck["config"].get("crop"),
                      "config_batch_size": ck["config"].get("batch_size"),
                      "config_init_from": ck["config"].get("init_from")}, indent=1))


class PackedEuroSat:
    """The pack's EuroSAT test images in the shape train_multirate.evaluate expects."""

    bands = 3

    def __init__(self, imgs):
        self.imgs = imgs

    def __len__(self):
        return len(self.imgs)

    def sample(self, i):
        return self.imgs[i].astype(np.float32) * RGB_SCALE


def dihedral(x, m, gen):
    """Random flips and transpose per sample (the 8 symmetries of the square, uniform)."""
    bits = torch.randint(0, 2, (3, x.shape[0]), generator=gen, device=x.device).bool().view(3, -1, 1, 1, 1)
    x = torch.where(bits[0], x.flip(3), x)
    m = torch.where(bits[0], m.flip(3), m)
    x = torch.where(bits[1], x.flip(2), x)
    m = torch.where(bits[1], m.flip(2), m)
    x = torch.where(bits[2], x.transpose(2, 3), x)
    m = torch.where(bits[2], m.transpose(2, 3), m)
    return x, m


def portable_state(state):
    """CPU tensors and plain Python only; Adam groups with torch 1.13's keys."""
    state = pack_crops.plain(state)
    for key in ("opt", "aux_opt"):
        groups = []
        for gr in state[key]["param_groups"]:
            gr = {k: v for k, v in gr.items() if k in ADAM_113_KEYS}
            for k in ("fused", "capturable", "differentiable", "maximize"):
                gr[k] = bool(gr.get(k) or False)
            groups.append(gr)
        state[key]["param_groups"] = groups
        for st in state[key]["state"].values():
            if "step" in st:
                st["step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(())
    return state


def main(argv=None):
    args = parse_args(argv)
    if args.join:
        return join(args)
    t_start = time.time()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available")
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "log.jsonl")

    init = args.init or os.path.join(args.pack, "warm.pt")
    ck = torch_load(init)
    cfg = ck["config"]
    if ck.get("version") != tm.CKPT_VERSION or cfg.get("source") != "mix":
        raise SystemExit(f"{init}: need a version-{tm.CKPT_VERSION} --source mix checkpoint")
    targs = tm.parse_args([])                          # the CPU run's hyper-parameters
    for k, v in ck["args"].items():
        setattr(targs, k, v)
    if not targs.steps:
        raise SystemExit(f"{init}: args.steps is 0 (the lr schedule needs the CPU run's --steps)")
    pack = pack_crops.load_pack(os.path.join(args.pack, "pack.npz"))
    meta = pack["meta"]
    if meta["crop"] != cfg["crop"] or meta["scene_names"] != cfg["scenes"]:
        raise SystemExit("the pack was made for another run config (crop or scene list)")
    every = int(cfg["eurosat_every"])
    step_scale = args.step_scale or args.batch_size / float(cfg["batch_size"])

    torch.manual_seed(args.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    lam_rng = np.random.Generator(np.random.PCG64(args.seed))
    # The CPU run's architecture: its checkpoints name gain activation and demodulation.
    model = MultirateCodec(3, cfg["lambda_min"], cfg["lambda_max"],
                           gain_activation=cfg.get("gain_activation", "relu"),
                           demodulation=cfg.get("demodulation", "learned"))
    warm_diag = None
    if "model" in ck:
        model.load_state_dict(ck["model"])
    else:                                              # pack_crops.py --model-from DIR
        warm_diag, _card = tm.warm_start(model, os.path.join(REPO_ROOT, ck["model_from"]))
        torch.manual_seed(args.seed)
    model.to(device)
    if device.type == "cuda":
        # Same value as MultirateCodec.lam_tensor (the float32 of lam / lambda_max), made on
        # the device: a host tensor copied from pageable memory would sync every step.
        model.lam_tensor = lambda lam, dev: torch.full((1,), lam / model.lambda_max,
                                                       dtype=torch.float32, device=dev)
    opt, aux_opt, lr_factors = tm.make_optimisers(model, targs)
    if "opt" in ck:
        opt.load_state_dict(ck["opt"])
        for gr, factor in zip(opt.param_groups, lr_factors):
            gr["lr_factor"] = factor
        aux_opt.load_state_dict(ck["aux_opt"])

    scene_img = torch.from_numpy(pack["scene_img"]).to(device)
    scene_valid = torch.from_numpy(pack["scene_valid"]).to(device).unsqueeze(1)
    eu_img = torch.from_numpy(pack["eurosat_train"]).to(device)
    eu_batch = args.batch_size * max(1, (int(cfg["crop"]) // 64) ** 2)
    if every > 0 and len(eu_img) == 0:
        raise SystemExit("the pack has no EuroSAT train images but the config has --eurosat-every")

    def next_batch(k):
        if every > 0 and k % every == every - 1:
            i = torch.randint(0, len(eu_img), (eu_batch,), generator=gen, device=device)
            x = eu_img[i]
            m = torch.ones((x.shape[0], 1) + x.shape[2:], dtype=torch.uint8, device=device)
        else:
            i = torch.randint(0, len(scene_img), (args.batch_size,), generator=gen, device=device)
            x, m = scene_img[i], scene_valid[i].to(torch.uint8)
        x, m = dihedral(x, m, gen)
        return x.float() * float(RGB_SCALE), m.float()

    lambdas = tm.eval_lambdas(cfg["lambda_min"], cfg["lambda_max"], args.eval_lambda_count)
    test_ds = PackedEuroSat(pack["eurosat_test"])
    holdout = [(n, img.astype(np.float32) * RGB_SCALE, valid[None].astype(np.float32))
               for n, img, valid in pack["holdout"]]

    def rd_check(tag):
        if args.no_eval:
            return None
        t = time.time()
        rec = {"gpu_step": gpu_step, "step": equiv(), tag: tm.evaluate(model, test_ds, args.eval_images,
                                                                   lambdas, device)}
        if holdout:
            rec[tag + "_holdout"] = tm.evaluate_holdout(model, holdout, lambdas, device)
        rec["eval_seconds"] = round(time.time() - t, 1)
        tm.log_line(log_path, rec)
        return rec

    gpu_step, images = 0, 0
    warm_step = int(ck["step"])

    def equiv():
        return warm_step + int(round(gpu_step * step_scale))

    info = {"warm": os.path.normpath(init), "warm_step": warm_step, "warm_had_optimiser": "opt" in ck,
            "pack_counts": meta["counts"], "pack_seed": meta["seed"], "batch_size": args.batch_size,
            "eurosat_batch": eu_batch, "step_scale": step_scale, "seed": args.seed,
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "numpy": np.__version__, "cuda": torch.version.cuda,
            "amp": False, "tf32": bool(args.tf32), "gdal_stubbed": GDAL_STUBBED,
            "model_from": ck.get("model_from"), "model_from_diag": warm_diag}
    tm.log_line(log_path, {"gpu_train_start": info})
    before = rd_check("eval_before")

    def save(final):
        state = tm.checkpoint_state(cfg, targs, equiv(), model, opt, aux_opt, ck["stream"], lam_rng,
                                    torch.device("cpu"), ck.get("init_from_info"))
        # The CPU run's own states go back unchanged (it resumes as if from its checkpoint).
        for k in ("args", "lam_rng", "torch_rng", "numpy_rng", "python_rng"):
            state[k] = ck[k]
        state["cuda_rng"] = None
        state = portable_state(state)
        state["gpu_train"] = pack_crops.plain(dict(info, gpu_steps=gpu_step, images=images, final=final,
                                                   seconds=round(time.time() - t_start, 1)))
        with tempfile.TemporaryDirectory() as tmp:
            full = os.path.join(tmp, "ckpt.pt")
            torch.save(state, full, _use_new_zipfile_serialization=True)
            globs = pickle_globals(full)
            bad = [g for g in globs if g not in PICKLE_OK and not PICKLE_OK_STORAGE.match(g)]
            if bad:       # still delivered: the weights are also in model_state.pt
                print(f"WARNING: checkpoint pickle references {bad}, which torch 1.13 may not load",
                      flush=True)
            sha = tm.sha256(full)
            for n in os.listdir(args.out):
                if n.startswith("ckpt.pt.part-"):
                    os.remove(os.path.join(args.out, n))
            part = int(args.part_mib * (1 << 20))
            with open(full, "rb") as f:
                k = 0
                for blk in iter(lambda: f.read(part), b""):
                    with open(os.path.join(args.out, f"ckpt.pt.part-{k:02d}"), "wb") as o:
                        o.write(blk)
                    k += 1
            with open(os.path.join(args.out, "ckpt.pt.sha256"), "w", encoding="utf-8") as f:
                f.write(f"{sha}  ckpt.pt\n")
            size = os.path.getsize(full)
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                   os.path.join(args.out, "model_state.pt"), _use_new_zipfile_serialization=True)
        return {"sha256": sha, "bytes": size, "parts": k, "pickle_globals": globs,
                "portable_to_torch_1_13": not bad}

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log_lo, log_hi = math.log(cfg["lambda_min"]), math.log(cfg["lambda_max"])
    zero = torch.zeros((), device=device)
    acc = [zero.clone() for _ in range(4)]
    n_acc, t_log, img_log = 0, time.time(), 0
    t_loop = time.time()
    budget = args.minutes * 60.0
    last_save, saved = t_loop, None
    model.train()
    while stop["signal"] is None and time.time() - t_loop < budget and \
            (not args.max_steps or gpu_step < args.max_steps):
        lr = tm.set_lr(opt, targs, equiv())
        x, mask = next_batch(gpu_step)
        lam = float(math.exp(lam_rng.uniform(log_lo, log_hi)))
        out = tm.train_step(model, opt, aux_opt, x, mask, lam, targs.clip_grad)
        for a, v in zip(acc, out):
            a += v.detach()
        gpu_step += 1
        n_acc += 1
        images += x.shape[0]
        img_log += x.shape[0]
        if gpu_step % args.log_every == 0:
            vals = [float(a) / n_acc for a in acc]        # syncs
            dt = time.time() - t_log
            tm.log_line(log_path, {"gpu_step": gpu_step, "step": equiv(), "loss": vals[0], "bpp": vals[1],
                                   "psnr_train": 10 * math.log10(1.0 / max(vals[2], 1e-12)), "aux": vals[3],
                                   "lr": lr, "images_per_s": img_log / dt, "s_per_step": dt / n_acc,
                                   "elapsed_s": round(time.time() - t_loop, 1)})
            acc = [zero.clone() for _ in range(4)]
            n_acc, t_log, img_log = 0, time.time(), 0
        if gpu_step == 1 or (args.save_every_minutes and
                             time.time() - last_save > args.save_every_minutes * 60):
            # (after step 1: the whole save path is tried before the budget is spent)
            saved = save(final=False)
            last_save = time.time()
    if device.type == "cuda":
        torch.cuda.synchronize()
    loop_s = time.time() - t_loop
    after = rd_check("eval_after")
    saved = save(final=True)
    report = dict(info, gpu_steps=gpu_step, images=images, loop_seconds=round(loop_s, 1),
                  images_per_s=round(images / max(loop_s, 1e-9), 1), step=equiv(),
                  total_seconds=round(time.time() - t_start, 1), signal=stop["signal"],
                  checkpoint=saved,
                  eval_before=before, eval_after=after)
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(pack_crops.plain(report), f, indent=1)
    tm.log_line(log_path, {"gpu_train_end": {k: report[k] for k in ("gpu_steps", "images", "loop_seconds",
                                                                    "images_per_s", "step", "checkpoint")}})
    if stop["signal"] is not None:
        sys.exit(128 + stop["signal"])


if __name__ == "__main__":
    main()
