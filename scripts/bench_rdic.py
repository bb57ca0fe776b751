#!/usr/bin/python3
"""RDIC benchmark in the form of the RDIC paper's Table 1: NSAT CODEC=RDIC (classifier-relevance
driven two-quality JPEG) against lossless PNG, plain JPEG at equal bytes and NSAT's learned
MULTIRATE codec on the EuroSAT RGB test split, judged by size and by the top-1 accuracy of two
land-cover classifiers on the decoded pixels: the analysis model whose relevance RDIC uses
(models/rdic-classifier-rgb8-v2) and a second classifier of another architecture that RDIC
never sees (scripts/learned/train_classifier.py's MaxPoolClassifier, trained on clean images).
The large-scene part (land-cover map agreement) is scripts/bench_rdic_scenes.py; its
scenes.json in --out is merged into results.json and report.md here.

Data
  EuroSAT rows `test,<class>,<file>` of <data>/eurosat_rgb_splits.csv, files
  <data>/eurosat_rgb/<class>/<file> (64x64 RGB JPEGs). A fixed class-stratified subset:
  --per-class N images per class, evenly spaced through each class's test rows in CSV order
  (0 = all 3,050). Each image is first copied to an in-memory GTiff so every codec gets the
  same Byte pixels; those pixels are "the originals".

Rows
  PNG                 GDAL PNG driver (ZLEVEL 6) from the original pixels: the lossless
                      reference whose total size is 100 %.
  GDAL JPEG q100/q50  GDAL's JPEG driver (file bytes; 4:2:0).
  NSAT JPEG qN        NSAT CODEC=JPEG QUALITY=N (4:2:0), a sweep of qualities.
  RDIC ...            NSAT CODEC=RDIC. LRP rows: the relevance rules of the codec: the driver's
                      defaults (|R| >= mean), DILATION 1/2, RELEVANCE=ALL and RELEVANCE_SHARE=s
                      for each --shares value, at the default qualities; "cells of <row>" rows
                      code <row>'s cells with other ROI_QUALITY / BG_QUALITY: BG 30/40/70/85 and
                      ROI 90 on the defaults' cells, each --share-grid pair on each
                      RELEVANCE_SHARE row's cells. Every RDIC file is written through ROI_MASK
                      with the cells of this script's epsilon-LRP of the analysis model and the
                      codec's mask rule (the codec's LRP per file is ~10x slower here); on the
                      first --verify images each row is also coded with the codec's own LRP
                      and the options of the row, and compared byte for byte (Checks).
                      RELEVANCE_WINDOW=64 is the whole image at 64x64 (checked).
  JPEG @ RDIC bytes   per image, the NSAT CODEC=JPEG quality whose payload is closest to that
                      RDIC row's payload (binary search over quality 1..100).
  MULTIRATE           NSAT CODEC=MULTIRATE QUALITY=100 (its largest lambda, the highest rate
                      the model reaches); asked for any RDIC rate with TARGET_BPP it gives this
                      same file (checked, below), so this row is MULTIRATE "at equal bytes" as
                      far as it can go.
  For NSAT rows the size is the payload, NSAT_BITS_PER_PIXEL * w * h / 8 (tile data only; the
  ~0.5-0.8 kB file header is left out); file bytes are reported beside it.

Metrics: size as % of the PNG total, bpp (8 * bytes / pixels, all bands), mean per-image PSNR
(peak 255), top-1 accuracy of each classifier (TorchScript, batches) and its change in
percentage points against the originals, share of predictions changed, share of relevant
16x16 cells (RDIC rows, NSAT_AUX), encode time. Paired tests: exact two-sided McNemar
(binomial on the discordant images) of RDIC against JPEG at its bytes, per classifier.

Floors (issue 19): size <= 30 % of PNG; analysis-model accuracy loss <= 1.0 pp; more accurate
than JPEG at equal bytes for both classifiers with McNemar p < 0.05.

Checks, on the first --verify images: the ROI_MASK files against CODEC=RDIC with the row's
own options (identical payload, pixels and cells; the Python cells against the codec's);
RELEVANCE_WINDOW=64 against no window on the 64x64 images; MULTIRATE TARGET_BPP=<RDIC rate>
against QUALITY=100. The classifiers run in a child process on the cached decoded pixels
(frozen TorchScript, checked against the plain module on the originals).

Figures: relevance.png (image, Python epsilon-LRP relevance, the mask NSAT stored for the best
row, the decoded image) for 4 test images; accuracy_vs_bpp.png (both classifiers).

Run time (2 shared cores, load 6-9): --quick ~1 min; --per-class 10 ~2.5 min; all 3,050
images: see report.md.

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_rdic.py [--data ../shared/data] [--out scripts/results/rdic]
        [--per-class 40] [--second-model PATH] [--wait-second S] [--shares 0.5,0.7,0.9]
        [--share-bg 30,50,70] [--verify 10] [--threads 2] [--cache DIR] [--quick]
    /usr/bin/python3 scripts/bench_rdic.py --report-only      # report.md from results.json
    /usr/bin/python3 scripts/bench_rdic.py --second-only --cache DIR   # (re)classify the cached
        decoded pixels with --second-model and rewrite results.json / report.md

The NSAT plugin is taken from GDAL_DRIVER_PATH (default: <repo>/build).
"""
import argparse
import csv
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from bench_common import file_sha256, mcnemar_p  # noqa: E402

SECOND_DEFAULT = os.path.join(REPO, "scripts", "learned", "eval_models", "landcover-maxpool",
                              "classifier.pt")
SECOND_FALLBACK = os.path.join(REPO, "runs", "classifier-maxpool", "export", "classifier.pt")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")),
                        help="data folder (default: ../shared/data from the repository root)")
    parser.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "rdic"),
                        help="output folder (default: scripts/results/rdic)")
    parser.add_argument("--per-class", type=int, default=40,
                        help="EuroSAT test images per class, evenly spaced (default 40; 0 = all)")
    parser.add_argument("--verify", type=int, default=100,
                        help="first images on which every LRP row is also coded with the codec's "
                             "own LRP and compared, and RELEVANCE_WINDOW / MULTIRATE are checked "
                             "(default 100)")
    parser.add_argument("--model", default="rdic-classifier-rgb8-v2",
                        help="analysis classifier, a folder under models/ (default rdic-classifier-rgb8-v2)")
    parser.add_argument("--second-model", default=None,
                        help="second classifier, a TorchScript file (card.json beside it; default "
                             "scripts/learned/eval_models/landcover-maxpool/classifier.pt, else "
                             "runs/classifier-maxpool/export/classifier.pt)")
    parser.add_argument("--wait-second", type=float, default=0,
                        help="seconds to wait, after the encodes, for the second classifier to "
                             "appear (default 0)")
    parser.add_argument("--shares", default="0.3,0.5,0.7,0.9",
                        help="RELEVANCE_SHARE values (LRP rows at the default qualities; default "
                             "0.3,0.5,0.7,0.9)")
    parser.add_argument("--share-grid", default="100:30,100:70,95:50,95:70,90:50,90:70",
                        help="ROI_QUALITY:BG_QUALITY pairs coded on each RELEVANCE_SHARE row's "
                             "cells (default 100:30,100:70,95:50,95:70,90:50,90:70)")
    parser.add_argument("--threads", type=int, default=1,
                        help="NSAT NUM_THREADS, GDAL_NUM_THREADS and torch threads (default 1: on "
                             "a loaded 2-core machine two LibTorch threads make the codec's LRP "
                             "about 10x slower)")
    parser.add_argument("--cache", default=None,
                        help="folder for the decoded pixels of every row (uint8 .npy), so that "
                             "--second-only can classify them again")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite report.md from the results.json in --out (no measurements; "
                             "figures are left as they are)")
    parser.add_argument("--second-only", action="store_true",
                        help="classify the pixels in --cache with --second-model, then rewrite "
                             "results.json and report.md in --out")
    parser.add_argument("--classify-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 images per class, 2 verified")
    return parser.parse_args()


ARGS = parse_args()
# Must be set before osgeo is imported: GDAL scans GDAL_DRIVER_PATH when it registers drivers.
os.environ.setdefault("GDAL_DRIVER_PATH", os.path.join(REPO, "build"))
os.environ["GDAL_PAM_ENABLED"] = "NO"
os.environ["GDAL_NUM_THREADS"] = str(ARGS.threads)

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

gdal.UseExceptions()
gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
torch.set_num_threads(ARGS.threads)

VSI = "/vsimem/bench_rdic"
MODEL_DIR = os.path.join(REPO, "models", ARGS.model)
EPSILON = 0.01
CELL = 16
PER_CLASS = 2 if ARGS.quick else ARGS.per_class
VERIFY = min(2, ARGS.verify) if ARGS.quick else ARGS.verify
FIGURE_CLASSES = ["Highway", "Industrial", "River", "AnnualCrop"]
SIZE_FLOOR = 30.0      # % of PNG
LOSS_FLOOR = 1.0       # pp, analysis model
ALPHA = 0.05           # McNemar
MODELS = ("analysis", "second")


def rdic_option_defaults():
    """Defaults of the RDIC creation options as the loaded NSAT driver declares them."""
    import xml.etree.ElementTree as ET
    wanted = dict(ROI_QUALITY="100", BG_QUALITY="50", DILATION="0", RELEVANCE="PREDICTED")
    driver = gdal.GetDriverByName("NSAT")
    if driver is None:
        return wanted
    xml = driver.GetMetadataItem(gdal.DMD_CREATIONOPTIONLIST) or ""
    found = dict(wanted)
    for option in ET.fromstring(xml).iter("Option"):
        if option.get("name") in wanted and option.get("default") is not None:
            found[option.get("name")] = option.get("default")
    return found


def share_key(share):
    return f"rdic_s{int(round(100 * share)):02d}"


RDIC_DEFAULTS = rdic_option_defaults()
DEFAULT_DILATION = int(RDIC_DEFAULTS["DILATION"])
DEFAULT_BG = int(RDIC_DEFAULTS["BG_QUALITY"])
OTHER_RELEVANCE = "ALL" if RDIC_DEFAULTS["RELEVANCE"].upper() != "ALL" else "PREDICTED"
SHARES = [float(s) for s in ARGS.shares.split(",") if s.strip()]
SHARE_GRID = [tuple(int(x) for x in pair.split(":")) for pair in ARGS.share_grid.split(",") if pair.strip()]
# RDIC rows whose mask comes from the codec's own LRP: key -> (label, options)
RDIC_LRP = {
    "rdic": (f"RDIC defaults (ROI {RDIC_DEFAULTS['ROI_QUALITY']}, BG {DEFAULT_BG}, "
             f"DILATION {DEFAULT_DILATION}, {RDIC_DEFAULTS['RELEVANCE']}, |R| >= mean)", []),
}
for _d in (0, 1, 2):
    if _d != DEFAULT_DILATION:
        RDIC_LRP[f"rdic_d{_d}"] = (f"RDIC DILATION={_d}", [f"DILATION={_d}"])
RDIC_LRP[f"rdic_{OTHER_RELEVANCE.lower()}"] = (f"RDIC RELEVANCE={OTHER_RELEVANCE}",
                                               [f"RELEVANCE={OTHER_RELEVANCE}"])
for _s in SHARES:
    RDIC_LRP[share_key(_s)] = (f"RDIC RELEVANCE_SHARE={_s:g}", [f"RELEVANCE_SHARE={_s:g}"])
# RDIC rows that reuse the cells of an LRP row: key -> (label, source row, options)
RDIC_REUSE = {}
for _opt, _values in (("BG_QUALITY", (30, 40, 70, 85)), ("ROI_QUALITY", (90,))):
    for _v in _values:
        if str(_v) != RDIC_DEFAULTS[_opt]:
            _short = "bg" if _opt == "BG_QUALITY" else "roi"
            RDIC_REUSE[f"rdic_{_short}{_v}"] = (f"RDIC {_opt}={_v}", "rdic", [f"{_opt}={_v}"])
DEFAULT_ROI = int(RDIC_DEFAULTS["ROI_QUALITY"])
for _s in SHARES:
    for _roi, _bg in SHARE_GRID:
        if (_roi, _bg) == (DEFAULT_ROI, DEFAULT_BG):
            continue
        _opts = ([f"ROI_QUALITY={_roi}"] if _roi != DEFAULT_ROI else []) + \
            ([f"BG_QUALITY={_bg}"] if _bg != DEFAULT_BG else [])
        _key = share_key(_s) + (f"_roi{_roi}" if _roi != DEFAULT_ROI else "") + \
            (f"_bg{_bg}" if _bg != DEFAULT_BG else "")
        RDIC_REUSE[_key] = (f"RDIC RELEVANCE_SHARE={_s:g} " + " ".join(_opts), share_key(_s), _opts)
RDIC_ROWS = list(RDIC_LRP) + list(RDIC_REUSE)
JPEG_SWEEP = [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]
SHARE_PROBE = share_key(SHARES[len(SHARES) // 2]) if SHARES else None


def log(message):
    print(message, file=sys.stderr, flush=True)


def lrp_rule(key):
    """The mask rule of an LRP row, in the keys of NSAT_CODEC_PARAMETERS."""
    options = dict(o.split("=", 1) for o in RDIC_LRP[key][1])
    rule = dict(relevance=options.get("RELEVANCE", RDIC_DEFAULTS["RELEVANCE"]).upper(),
                dilation=int(options.get("DILATION", DEFAULT_DILATION)))
    if "RELEVANCE_SHARE" in options:
        rule["relevance_share"] = float(options["RELEVANCE_SHARE"])
        rule["dilation"] = 0
    return rule


def rdic_options(key):
    """(source LRP row, creation options) of an RDIC row."""
    if key in RDIC_LRP:
        return key, RDIC_LRP[key][1]
    _, source, options = RDIC_REUSE[key]
    return source, RDIC_LRP[source][1] + options


def rdic_setting(key):
    """A short, quotable option string of an RDIC row."""
    _, options = rdic_options(key)
    return "CODEC=RDIC" + "".join(f" {o}" for o in options) if options else "CODEC=RDIC (defaults)"


# ---------------------------------------------------------------------------------------------
# Encoding helpers (all in /vsimem/).

def unlink(path):
    if gdal.VSIStatL(path) is not None:
        gdal.Unlink(path)


def vsi_size(path):
    stat = gdal.VSIStatL(path)
    if stat is None:
        raise RuntimeError(f"no output file was written ({gdal.GetLastErrorMsg()})")
    return stat.size


def read_array(path):
    ds = gdal.Open(path)
    array = ds.ReadAsArray()
    ds = None
    return array if array.ndim == 3 else array[np.newaxis]


def gdal_encode(src, driver, options, stem, ext):
    """GDAL PNG / JPEG driver round trip: (file bytes, decoded array)."""
    path = f"{VSI}/{stem}{ext}"
    try:
        out = gdal.Translate(path, src, format=driver, creationOptions=options)
        if out is None:
            raise RuntimeError(gdal.GetLastErrorMsg() or "gdal.Translate returned None")
        out = None
        size = vsi_size(path)
        decoded = read_array(path)
    finally:
        unlink(path)
    return dict(payload=size, file=size, decoded=decoded)


def nsat_encode(src, options, stem, aux=False):
    """NSAT round trip: dict(payload bytes, file bytes, decoded, cells (aux), seconds, params)."""
    path = f"{VSI}/{stem}.nsat"
    options = list(options) + ["OVERVIEWS=NONE", f"NUM_THREADS={ARGS.threads}"]
    try:
        start = time.perf_counter()
        out = gdal.Translate(path, src, format="NSAT", creationOptions=options)
        if out is None:
            raise RuntimeError(gdal.GetLastErrorMsg() or "gdal.Translate returned None")
        out = None
        seconds = time.perf_counter() - start
        size = vsi_size(path)
        ds = gdal.Open(path)
        decoded = ds.ReadAsArray()
        bpp = float(ds.GetMetadataItem("NSAT_BITS_PER_PIXEL", "IMAGE_STRUCTURE"))
        params = ds.GetMetadataItem("NSAT_CODEC_PARAMETERS", "IMAGE_STRUCTURE")
        pixels = ds.RasterXSize * ds.RasterYSize
        ds = None
        cells = None
        if aux:
            aux_ds = gdal.Open(f"NSAT_AUX:{path}")
            cells = aux_ds.ReadAsArray().astype(np.float32)
            aux_ds = None
    finally:
        unlink(path)
    return dict(payload=bpp * pixels / 8.0, file=size, decoded=decoded, cells=cells,
                seconds=seconds, params=params, bpp=bpp)


def write_cell_mask(cells, width, height, path):
    """A Byte raster of the image size, 1 on the pixels of relevant cells (for ROI_MASK)."""
    pixels = np.kron(cells.astype(np.uint8), np.ones((CELL, CELL), dtype=np.uint8))[:height, :width]
    ds = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal.GDT_Byte)
    ds.GetRasterBand(1).WriteArray(pixels)
    ds = None


def psnr(reference, decoded, valid=None):
    ref = reference.astype(np.float64)
    dec = decoded.astype(np.float64)
    if valid is not None:
        ref, dec = ref[:, valid], dec[:, valid]
    mse = float(np.mean((ref - dec) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


def same_encode(a, b):
    return dict(payload_equal=abs(a["payload"] - b["payload"]) < 0.5,
                pixels_equal=bool(np.array_equal(a["decoded"], b["decoded"])),
                cells_equal=(a.get("cells") is None and b.get("cells") is None) or
                bool(np.array_equal(a["cells"], b["cells"])))


# ---------------------------------------------------------------------------------------------
# The classifiers, and epsilon-LRP of the analysis model in Python.

class Classifier:
    """The analysis model (models/<name>/): TorchScript forward and a Python epsilon-LRP."""

    def __init__(self, folder):
        with open(os.path.join(folder, "card.json")) as f:
            self.card = json.load(f)
        self.path = os.path.join(folder, "classifier.pt")
        self.name = self.card.get("id", os.path.basename(folder))
        self.sha256 = file_sha256(self.path)
        self.module = torch.jit.load(self.path, map_location="cpu").eval()
        self.classes = list(self.card["classes"])
        arch = self.card["architecture"]
        self.scale = float(arch.get("input_scale", 1.0 / 255.0))
        state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.convs = []
        for i, layer in enumerate(arch["layers"]):
            self.convs.append((state[f"features.{2 * i}.weight"], state[f"features.{2 * i}.bias"],
                               int(layer.get("stride", 1)), int(layer.get("padding", 0))))
        self.head = state["classifier.weight"]

    def logits(self, batch_uint8):
        """(B, 3, H, W) uint8 -> (B, K) logits of the TorchScript model."""
        return torchscript_logits(self.module, batch_uint8)

    @staticmethod
    def stabilise(z):
        # z + eps * sign(z), with sign(0) taken as +1 so nothing divides by zero.
        return torch.where(z >= 0, z + EPSILON, z - EPSILON)

    def relevance(self, batch_uint8, all_classes=False):
        """Epsilon-LRP to the input, R_i = sum_j z_ij / (z_j + eps sign z_j) R_j, z_ij = a_i w_ij
        (the bias enters z_j only). Returns (R (B, 3, H, W), logits (B, K)). The global average
        pool and the bias-free head have no nonlinearity between them, so they are treated as
        one linear layer: z_(k,p),c = a_kp w_ck / P, whose z_c is the logit."""
        x = torch.from_numpy(np.array(batch_uint8)).float()
        with torch.enable_grad():
            a = x * self.scale
            inputs = []
            for weight, bias, stride, padding in self.convs:
                inputs.append(a.detach())
                a = F.relu(F.conv2d(a, weight, bias, stride=stride, padding=padding))
            a = a.detach()
            positions = a.shape[2] * a.shape[3]
            logits = a.mean(dim=(2, 3)) @ self.head.t()
            if all_classes:
                r_out = logits.clone()
            else:
                r_out = torch.zeros_like(logits)
                rows = torch.arange(len(logits))
                pred = logits.argmax(dim=1)
                r_out[rows, pred] = logits[rows, pred]
            s = r_out / self.stabilise(logits)
            r = a * (s @ self.head)[:, :, None, None] / positions
            for (weight, bias, stride, padding), inp in zip(reversed(self.convs), reversed(inputs)):
                inp = inp.clone().requires_grad_(True)
                z = F.conv2d(inp, weight, bias, stride=stride, padding=padding)
                ratio = (r / self.stabilise(z.detach())).detach()
                (grad,) = torch.autograd.grad(z, inp, grad_outputs=ratio)
                r = inp.detach() * grad
        return r.detach(), logits.detach()


class PlainClassifier:
    """A classifier known only as TorchScript: logits = module(float32 (B,3,H,W) raw 0..255)."""

    def __init__(self, path, analysis_classes):
        self.path = path
        self.sha256 = file_sha256(path)
        self.module = torch.jit.load(path, map_location="cpu").eval()
        card_path = os.path.join(os.path.dirname(path), "card.json")
        self.card = {}
        if os.path.exists(card_path):
            with open(card_path) as f:
                self.card = json.load(f)
        self.name = self.card.get("id", os.path.basename(os.path.dirname(path)))
        self.classes = list(self.card.get("classes", analysis_classes))
        if sorted(self.classes) != sorted(analysis_classes):
            raise RuntimeError(f"{path}: classes {self.classes} differ from the analysis model's")
        # Its output index -> the analysis model's class index.
        self.to_analysis = np.array([analysis_classes.index(c) for c in self.classes])

    def predict(self, batch_uint8):
        return self.to_analysis[torchscript_logits(self.module, batch_uint8).argmax(axis=1)]


def torchscript_logits(module, batch_uint8, chunk=256):
    with torch.no_grad():
        out = []
        for i in range(0, len(batch_uint8), chunk):
            x = torch.from_numpy(np.array(batch_uint8[i:i + chunk])).float()
            out.append(module(x))
        return torch.cat(out).numpy()


def second_model_path(wait=0.0):
    """The second classifier's file: --second-model, else the eval_models path, else the run's
    export; waits up to `wait` seconds for one to appear (a training run still exporting)."""
    candidates = [ARGS.second_model] if ARGS.second_model else [SECOND_DEFAULT, SECOND_FALLBACK]
    deadline = time.time() + wait
    announced = False
    while True:
        for path in candidates:
            card = os.path.join(os.path.dirname(path), "card.json")
            if os.path.exists(path) and (os.path.exists(card) or ARGS.second_model):
                size = os.path.getsize(path)
                time.sleep(2)
                if os.path.getsize(path) == size:
                    return path
        if time.time() >= deadline:
            return None
        if not announced:
            log(f"waiting up to {deadline - time.time():.0f} s for the second classifier "
                f"({' or '.join(os.path.relpath(p, REPO) for p in candidates)})")
            announced = True
        time.sleep(20)


def cells_from_relevance(per_pixel, dilation):
    """RDIC's mean rule on (B, H, W) per-pixel relevance magnitudes: >= the image mean, dilated
    by `dilation` px (square), then a 16x16 cell is relevant if >= 50 % of its pixels are."""
    mask = (per_pixel >= per_pixel.mean(dim=(1, 2), keepdim=True)).float()[:, None]
    if dilation > 0:
        mask = F.max_pool2d(mask, 2 * dilation + 1, stride=1, padding=dilation)
    return (F.avg_pool2d(mask, CELL, ceil_mode=True)[:, 0] >= 0.5).numpy().astype(np.float32)


def cells_holding_share(per_pixel, share):
    """RDIC's RELEVANCE_SHARE rule on (B, H, W) |R| (H, W multiples of 16): the fewest cells,
    largest cell sum first (ties by position), that hold `share` of the image's total."""
    mag = per_pixel.double().numpy()
    b, h, w = mag.shape
    sums = mag.reshape(b, h // CELL, CELL, w // CELL, CELL).sum(axis=(2, 4)).reshape(b, -1)
    out = np.zeros_like(sums, dtype=np.float32)
    for i in range(b):
        total = mag[i].sum()
        kept = 0.0
        for cell in np.argsort(-sums[i], kind="stable"):
            if kept >= share * total or sums[i, cell] <= 0:
                break
            out[i, cell] = 1
            kept += sums[i, cell]
    return out.reshape(b, h // CELL, w // CELL)


def python_cells_from(per_pixel, rule):
    """The codec's mask rule (NSAT_CODEC_PARAMETERS keys) on (B, H, W) |sum_RGB R|."""
    if rule.get("relevance_share"):
        return cells_holding_share(per_pixel, float(rule["relevance_share"]))
    return cells_from_relevance(per_pixel, int(rule.get("dilation", 0)))


def python_cells(classifier, images, rule):
    """The codec's mask rule, from this script's LRP, for a few images."""
    r, _ = classifier.relevance(images, all_classes=str(rule.get("relevance")).upper() == "ALL")
    return python_cells_from(r.sum(dim=1).abs(), rule)


# ---------------------------------------------------------------------------------------------
# EuroSAT.

def eurosat_subset():
    table = os.path.join(ARGS.data, "eurosat_rgb_splits.csv")
    by_class = {}
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): (v or "").strip() for k, v in row.items()}
            if row["split"] != "test":
                continue
            path = os.path.join(ARGS.data, "eurosat_rgb", row["class"], os.path.basename(row["file"]))
            by_class.setdefault(row["class"], []).append(path)
    picked = []
    for name in sorted(by_class):
        files = by_class[name]
        if PER_CLASS and PER_CLASS < len(files):
            index = np.unique(np.round(np.linspace(0, len(files) - 1, PER_CLASS)).astype(int))
            files = [files[i] for i in index]
        picked += [(path, name) for path in files]
    total = sum(len(v) for v in by_class.values())
    return picked, total, {k: len(v) for k, v in by_class.items()}


class JpegCache:
    """NSAT CODEC=JPEG round trips of one image, by quality."""

    def __init__(self, src, stem):
        self.src, self.stem, self.done = src, stem, {}

    def get(self, quality):
        if quality not in self.done:
            self.done[quality] = nsat_encode(self.src, ["CODEC=JPEG", f"QUALITY={quality}"],
                                             f"{self.stem}_jpeg{quality}")
        return self.done[quality]

    def closest(self, target):
        """Quality 1..100 whose payload is closest to target (ties: the lower quality)."""
        lo, hi = 1, 100
        if self.get(hi)["payload"] <= target:
            return hi
        while hi - lo > 1:  # invariant: payload(lo) <= target < payload(hi), or lo == 1
            mid = (lo + hi) // 2
            if self.get(mid)["payload"] <= target:
                lo = mid
            else:
                hi = mid
        if self.get(lo)["payload"] > target:
            return lo
        return lo if target - self.get(lo)["payload"] <= self.get(hi)["payload"] - target else hi


def read_original(path):
    """The pixels every codec gets: the EuroSAT JPEG decoded by GDAL (as the GTiff copy)."""
    ds = gdal.Open(path)
    array = ds.ReadAsArray()
    if ds.RasterCount != 3 or ds.GetRasterBand(1).DataType != gdal.GDT_Byte:
        raise RuntimeError(f"{path}: not 3-band Byte")
    return array


def process_image(index, path, cells_of, model_hashes):
    """All round trips of one EuroSAT image: ({row: record with decoded}, [verify records]).
    cells_of: {LRP row: (4, 4) cells of the Python epsilon-LRP with that row's rule}."""
    stem = f"e{index}"
    src_path = f"{VSI}/{stem}_src.tif"
    mask_path = f"{VSI}/{stem}_mask.tif"
    rows, verify = {}, []
    try:
        src = gdal.Translate(src_path, path, format="GTiff")
        original = src.ReadAsArray()
        width, height = src.RasterXSize, src.RasterYSize
        rows["original"] = dict(payload=None, file=None, decoded=original)
        rows["png"] = gdal_encode(src, "PNG", [], stem, ".png")
        if not np.array_equal(rows["png"]["decoded"], original):
            raise RuntimeError("PNG round trip is not lossless")
        rows["gdal_jpeg_q100"] = gdal_encode(src, "JPEG", ["QUALITY=100"], stem, ".jpg")
        rows["gdal_jpeg_q50"] = gdal_encode(src, "JPEG", ["QUALITY=50"], stem, ".jpg")
        jpeg = JpegCache(src, stem)
        for q in JPEG_SWEEP:
            rows[f"jpeg_q{q}"] = jpeg.get(q)
        for key in RDIC_ROWS:
            source, _ = rdic_options(key)
            cells = cells_of[source]
            write_cell_mask(cells, width, height, mask_path)
            extra = [] if key in RDIC_LRP else RDIC_REUSE[key][2]
            # The codec refuses DILATION / RELEVANCE* / MODEL with ROI_MASK (they only shape
            # LRP masks).
            record = nsat_encode(src, ["CODEC=RDIC", f"ROI_MASK={mask_path}"] + extra,
                                 f"{stem}_{key}", aux=True)
            if not np.array_equal(record["cells"], cells):
                raise RuntimeError(f"{key}: NSAT_AUX cells differ from the ROI_MASK given")
            if index < VERIFY and (key in RDIC_LRP or source == SHARE_PROBE or source == "rdic"):
                _, options = rdic_options(key)
                direct = nsat_encode(src, ["CODEC=RDIC"] + options, f"{stem}_{key}_lrp", aux=True)
                params = json.loads(direct["params"])
                model_hashes.add(params.get("model_sha256"))
                check = dict(check="roi_mask", row=key, **same_encode(direct, record))
                if key in RDIC_LRP:
                    rule = lrp_rule(key)
                    check["params_match"] = all(
                        (params.get(k) == v if not isinstance(v, float) else
                         abs(float(params.get(k, -1)) - v) < 1e-9)
                        for k, v in rule.items() if not (k == "dilation" and "relevance_share" in rule))
                verify.append(check)
                if key in RDIC_LRP:
                    verify.append(dict(check="cells_python_vs_codec", row=key,
                                       cells_agree=float(np.mean(direct["cells"] == cells)),
                                       identical=bool(np.array_equal(direct["cells"], cells))))
            rows[key] = record
        for key in RDIC_ROWS:
            q = jpeg.closest(rows[key]["payload"])
            capped = q == 100 and jpeg.get(100)["payload"] < rows[key]["payload"]
            rows[f"jpeg_at_{key}"] = dict(jpeg.get(q), quality=q, capped=capped)
        rows["multirate"] = nsat_encode(src, ["CODEC=MULTIRATE", "QUALITY=100"], f"{stem}_mr")
        if index < VERIFY:
            for key in dict.fromkeys(k for k in ("rdic", SHARE_PROBE) if k):
                plain = nsat_encode(src, ["CODEC=RDIC"] + RDIC_LRP[key][1], f"{stem}_{key}_p", aux=True)
                windowed = nsat_encode(src, ["CODEC=RDIC"] + RDIC_LRP[key][1] + ["RELEVANCE_WINDOW=64"],
                                       f"{stem}_{key}_w64", aux=True)
                verify.append(dict(check="window64", row=key, **same_encode(windowed, plain)))
            target = rows[SHARE_PROBE or "rdic"]["bpp"]
            capped = nsat_encode(src, ["CODEC=MULTIRATE", f"TARGET_BPP={target:.4f}"], f"{stem}_mrt")
            verify.append(dict(check="multirate_target", row=SHARE_PROBE or "rdic", target_bpp=target,
                               bpp_target=capped["bpp"], bpp_q100=rows["multirate"]["bpp"],
                               **same_encode(capped, rows["multirate"])))
        src = None
    finally:
        for p in (src_path, mask_path):
            if gdal.VSIStatL(p) is not None:
                gdal.Unlink(p)
    for record in rows.values():
        record["psnr"] = psnr(original, record["decoded"])
    for v in verify:
        v["image"] = os.path.basename(path)
    return rows, verify


def row_labels():
    labels = {
        "original": "originals (EuroSAT JPEG decoded)",
        "png": "PNG (lossless, GDAL PNG ZLEVEL=6)",
        "gdal_jpeg_q100": "JPEG q100 (GDAL JPEG driver, file)",
        "gdal_jpeg_q50": "JPEG q50 (GDAL JPEG driver, file)",
        "multirate": "MULTIRATE QUALITY=100 (its highest rate)",
    }
    for q in JPEG_SWEEP:
        labels[f"jpeg_q{q}"] = f"NSAT JPEG q{q}"
    for key, (label, _) in RDIC_LRP.items():
        labels[key] = label
        labels[f"jpeg_at_{key}"] = f"NSAT JPEG at the bytes of `{key}`"
    for key, (label, source, _) in RDIC_REUSE.items():
        labels[key] = f"{label} [cells of {source}]"
        labels[f"jpeg_at_{key}"] = f"NSAT JPEG at the bytes of `{key}`"
    return labels


def encode_digits(values):
    """Class indices 0..9 as one string of digits (compact per-image columns in results.json)."""
    return "".join(str(int(v)) for v in values)


def decode_digits(text):
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - ord("0")


class UniqueStore:
    """Decoded images of every (row, image), each distinct array stored once, so that the
    classifiers run once per distinct image (JPEG at equal bytes often lands on the same
    quality for several RDIC rows, GDAL and NSAT JPEG q100 decode alike, ...)."""

    def __init__(self, capacity, shape):
        self.pixels = np.empty((capacity,) + shape, dtype=np.uint8)
        self.count = 0
        self.index = {}   # row -> list of positions, one per kept image

    def add_image(self, rows):
        seen = {}
        for k, pixels in rows.items():
            digest = hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16).digest()
            if digest not in seen:
                if self.count == len(self.pixels):
                    self.pixels = np.concatenate([self.pixels, np.empty_like(self.pixels)])
                self.pixels[self.count] = pixels
                seen[digest] = self.count
                self.count += 1
            self.index.setdefault(k, []).append(seen[digest])

    def predictions(self, predict):
        """{row: predicted class per image} for predict(uint8 batch) -> classes."""
        classes = np.concatenate([predict(self.pixels[i:i + 1024])
                                  for i in range(0, self.count, 1024)]) if self.count else np.zeros(0)
        return {k: classes[np.array(v)] for k, v in self.index.items()}

    def row(self, key):
        return self.pixels[np.array(self.index[key])]

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        np.save(os.path.join(folder, "pixels.npy"), self.pixels[:self.count])
        with open(os.path.join(folder, "index.json"), "w") as f:
            json.dump(self.index, f)

    @classmethod
    def load(cls, folder):
        store = cls.__new__(cls)
        store.pixels = np.load(os.path.join(folder, "pixels.npy"), mmap_mode="r")
        store.count = len(store.pixels)
        with open(os.path.join(folder, "index.json")) as f:
            store.index = json.load(f)
        return store


def run_eurosat(results, analysis):
    picked, total, class_counts = eurosat_subset()
    n_picked = len(picked)
    e = results["eurosat"] = dict(
        images=n_picked, test_split_images=total, per_class=PER_CLASS or "all",
        class_counts_in_split=class_counts,
        selection=("all test images" if n_picked == total else
                   f"{PER_CLASS} per class, evenly spaced through each class's test rows in CSV order"),
        rdic_rows=RDIC_ROWS, rdic_lrp=list(RDIC_LRP),
        rdic_sources={k: rdic_options(k)[0] for k in RDIC_ROWS},
        rdic_settings={k: rdic_setting(k) for k in RDIC_ROWS},
        lrp_rules={k: lrp_rule(k) for k in RDIC_LRP})
    log(f"EuroSAT: {n_picked} of {total} test images, {len(RDIC_LRP)} LRP rules, "
        f"{len(RDIC_ROWS)} RDIC rows")
    # Python epsilon-LRP of every original, once per RELEVANCE mode, then each row's rule.
    start = time.perf_counter()
    originals, readable = [], []
    for path, _ in picked:
        try:
            originals.append(read_original(path))
            readable.append(True)
        except Exception as error:  # noqa: BLE001
            log(f"  cannot read {path}: {error}")
            readable.append(False)
    originals = np.stack(originals)
    cells_all = {}
    per_pixel = {}
    for key in RDIC_LRP:
        rule = lrp_rule(key)
        mode = rule["relevance"] == "ALL"
        if mode not in per_pixel:
            chunks = []
            for i in range(0, len(originals), 128):
                r, _ = analysis.relevance(originals[i:i + 128], all_classes=mode)
                chunks.append(r.sum(dim=1).abs())
            per_pixel[mode] = torch.cat(chunks)
        cells_all[key] = python_cells_from(per_pixel[mode], rule)
    per_pixel = None
    e["lrp_seconds"] = time.perf_counter() - start
    log(f"  Python epsilon-LRP masks of {len(originals)} images: {e['lrp_seconds']:.0f} s")
    slot_of = {}
    j = 0
    for i, ok in enumerate(readable):
        if ok:
            slot_of[i] = j
            j += 1
    figure_index = {}
    for i, (_, name) in enumerate(picked):
        if name in FIGURE_CLASSES and name not in figure_index and readable[i]:
            figure_index[name] = i
    hashes = set()
    store = None
    kept, labels_true, per_row = [], [], {}
    verify, failures = [], []
    cells_kept = {k: [] for k in RDIC_LRP}
    extra = dict(bytes={}, relevant={}, quality={})
    start = time.perf_counter()
    for index, (path, name) in enumerate(picked):
        if not readable[index]:
            failures.append(dict(image=os.path.basename(path), error="unreadable"))
            continue
        s = slot_of[index]
        cells_of = {k: cells_all[k][s] for k in RDIC_LRP}
        try:
            rows, checks = process_image(index, path, cells_of, hashes)
            if not np.array_equal(rows["original"]["decoded"], originals[s]):
                raise RuntimeError("the GTiff copy differs from the pixels the LRP saw")
        except Exception as error:  # noqa: BLE001
            failures.append(dict(image=os.path.basename(path), error=f"{type(error).__name__}: {error}"))
            log(f"  FAILED {path}: {error}")
            continue
        verify += checks
        kept.append(index)
        labels_true.append(analysis.classes.index(name))
        if store is None:
            store = UniqueStore(n_picked * (len(rows) // 2 + 4), rows["original"]["decoded"].shape)
        store.add_image({k: r["decoded"] for k, r in rows.items()})
        for k in RDIC_LRP:
            cells_kept[k].append(cells_of[k])
        for k, r in rows.items():
            entry = per_row.setdefault(k, dict(payload=[], file=[], psnr=[], cells=[], quality=[],
                                              seconds=[], capped=[]))
            entry["payload"].append(r["payload"])
            entry["file"].append(r["file"])
            entry["psnr"].append(r["psnr"])
            if r.get("cells") is not None:
                entry["cells"].append(float(r["cells"].mean()))
            if "quality" in r:
                entry["quality"].append(r["quality"])
                entry["capped"].append(bool(r["capped"]))
            if "seconds" in r:
                entry["seconds"].append(r["seconds"])
            if r["payload"] is not None:
                extra["bytes"].setdefault(k, []).append(int(round(float(r["payload"]))))
        for k in RDIC_ROWS:
            extra["relevant"].setdefault(k, []).append(round(float(rows[k]["cells"].mean()), 4))
            extra["quality"].setdefault(k, []).append(int(rows[f"jpeg_at_{k}"]["quality"]))
        done = index + 1
        if done % 50 == 0 or done == n_picked:
            elapsed = time.perf_counter() - start
            log(f"  {done}/{n_picked} images, {elapsed:.0f} s ({elapsed / done:.2f} s/image, "
                f"~{(n_picked - done) * elapsed / done / 60:.0f} min left, load {os.getloadavg()[0]:.1f}, "
                f"{store.count} distinct decoded images)")
    e["failures"] = failures
    e["encode_seconds"] = time.perf_counter() - start
    e["rdic_model_sha256_seen"] = sorted(h for h in hashes if h)
    if not labels_true:
        raise RuntimeError("no EuroSAT image could be processed")
    n = len(kept)
    png_total = float(np.sum(per_row["png"]["payload"]))
    labels = row_labels()
    table = {}
    for k, entry in per_row.items():
        row = dict(label=labels.get(k, k), n=n,
                   psnr=float(np.mean([v for v in entry["psnr"] if math.isfinite(v)]))
                   if k not in ("original", "png") else float("inf"))
        if entry["payload"][0] is not None:
            total_bytes = float(np.sum(entry["payload"]))
            row.update(bytes=total_bytes, file_bytes=float(np.sum(entry["file"])),
                       percent_png=100.0 * total_bytes / png_total,
                       percent_png_file=100.0 * float(np.sum(entry["file"])) / png_total,
                       bpp=8.0 * total_bytes / (n * 64 * 64),
                       file_bpp=8.0 * float(np.sum(entry["file"])) / (n * 64 * 64))
        if entry["cells"]:
            row["relevant_cells"] = float(np.mean(entry["cells"]))
        if entry["quality"]:
            row["quality_mean"] = float(np.mean(entry["quality"]))
            row["quality_range"] = [int(min(entry["quality"])), int(max(entry["quality"]))]
            row["capped_at_q100"] = int(np.sum(entry["capped"]))
        if entry["seconds"]:
            row["encode_s_mean"] = float(np.mean(entry["seconds"]))
        table[k] = row
    e.update(rows=table, png_total_bytes=png_total, verify=verify, distinct_decoded=store.count,
             per_image=dict(classes=list(analysis.classes),
                            image=[os.path.basename(picked[i][0]) for i in kept],
                            label=labels_true, predicted={},
                            payload_bytes=extra["bytes"], relevant_share=extra["relevant"],
                            jpeg_quality_at=extra["quality"]))
    # The TorchScript forward against this script's LRP forward (same logits?).
    _, logits = analysis.relevance(originals[:64])
    e["max_abs_logit_diff_python_vs_torchscript"] = float(
        np.max(np.abs(logits.numpy() - torchscript_logits(analysis.module, originals[:64]))))
    cells_kept = {k: np.stack(v) for k, v in cells_kept.items()}
    figure = {name: kept.index(i) for name, i in figure_index.items() if i in kept}
    return store, cells_kept, figure


def classify(results, store, analysis):
    """Predictions of both classifiers for every (row, image), from the distinct decoded images."""
    e = results["eurosat"]
    start = time.perf_counter()
    fast, check = fast_module(analysis.path, store.row("original"))
    preds = store.predictions(lambda x: torchscript_logits(fast, x).argmax(axis=1))
    e["per_image"]["predicted"]["analysis"] = {k: encode_digits(v) for k, v in preds.items()}
    e["analysis_classify"] = dict(seconds=time.perf_counter() - start, frozen_check=check)
    with open(os.path.join(ARGS.cache, "predicted.json"), "w") as f:
        json.dump(e["per_image"]["predicted"], f)
    log(f"analysis model: {store.count} distinct images in {e['analysis_classify']['seconds']:.0f} s")
    path = second_model_path(ARGS.wait_second)
    if path is None:
        e["second"] = dict(error="no second classifier found (" + ", ".join(
            os.path.relpath(p, REPO) for p in ([ARGS.second_model] if ARGS.second_model
                                               else [SECOND_DEFAULT, SECOND_FALLBACK])) + ")")
        log("second classifier: " + e["second"]["error"])
        return
    second = PlainClassifier(path, e["per_image"]["classes"])
    start = time.perf_counter()
    fast, check = fast_module(second.path, store.row("original"))
    preds = store.predictions(lambda x: second.to_analysis[torchscript_logits(fast, x).argmax(axis=1)])
    e["per_image"]["predicted"]["second"] = {k: encode_digits(v) for k, v in preds.items()}
    with open(os.path.join(ARGS.cache, "predicted.json"), "w") as f:   # kept if a later step fails
        json.dump(e["per_image"]["predicted"], f)
    acc = second.card.get("accuracy", {})
    e["second"] = dict(path=os.path.relpath(path, REPO), name=second.name, sha256=second.sha256,
                       card_accuracy_test=acc.get("test"), card_accuracy_valid=acc.get("valid"),
                       architecture=second.card.get("architecture"),
                       epochs=second.card.get("training", {}).get("epochs"),
                       seconds=time.perf_counter() - start, frozen_check=check,
                       changed_during_run=file_sha256(path) != second.sha256)
    log(f"second classifier {second.name} ({os.path.relpath(path, REPO)}): {store.count} distinct "
        f"images in {e['second']['seconds']:.0f} s")


def fast_module(path, sample):
    """torch.jit.freeze + optimize_for_inference of a classifier file (about 2.5x faster on this
    CPU for the maxpool model), checked against the plain module on `sample`: (module, check).
    Falls back to the plain module if freezing fails or changes any prediction."""
    module = torch.jit.load(path, map_location="cpu").eval()
    try:
        fast = torch.jit.optimize_for_inference(
            torch.jit.freeze(torch.jit.load(path, map_location="cpu").eval()))
        b = torchscript_logits(fast, sample)
    except Exception as error:  # noqa: BLE001
        return module, dict(used=False, error=f"{type(error).__name__}: {str(error).splitlines()[0][:120]}")
    a = torchscript_logits(module, sample)
    differ = int(np.sum(a.argmax(axis=1) != b.argmax(axis=1)))
    if differ:
        return module, dict(used=False, images=len(sample), predictions_differ=differ)
    return fast, dict(used=True, images=len(sample), predictions_differ=0,
                      max_abs_logit_diff=float(np.max(np.abs(a - b))))


def save_cache(store, cells, figure, folder):
    store.save(folder)
    for k, v in cells.items():
        np.save(os.path.join(folder, f"cells_{k}.npy"), v)
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(dict(lrp=list(cells), figure=figure), f)


def load_cache(folder):
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    cells = {k: np.load(os.path.join(folder, f"cells_{k}.npy")) for k in meta["lrp"]}
    return UniqueStore.load(folder), cells, meta["figure"]


# ---------------------------------------------------------------------------------------------
# Accuracies, paired tests and the floors (from the per-image columns, so --report-only and
# --second-only recompute them the same way).

def verify_summary(records):
    """Per check: images, encodes, identical encodes, per-row counts; mismatches kept whole."""
    out = {}
    for v in records:
        s = out.setdefault(v["check"], dict(images=set(), n=0, identical=0, rows={}, mismatches=[]))
        s["images"].add(v["image"])
        s["n"] += 1
        row = s["rows"].setdefault(v["row"], dict(n=0, identical=0, cells_agree=[]))
        row["n"] += 1
        if v["check"] == "cells_python_vs_codec":
            ok = v["identical"]
            row["cells_agree"].append(v["cells_agree"])
        else:
            ok = v["payload_equal"] and v["pixels_equal"] and v["cells_equal"]
        if "params_match" in v:
            s.setdefault("params_match", [0, 0])
            s["params_match"][0] += int(v["params_match"])
            s["params_match"][1] += 1
        if v["check"] == "multirate_target":
            for k in ("target_bpp", "bpp_target", "bpp_q100"):
                s.setdefault(k, []).append(v[k])
        s["identical"] += int(ok)
        row["identical"] += int(ok)
        if not ok and len(s["mismatches"]) < 20:
            s["mismatches"].append(v)
    for s in out.values():
        s["images"] = len(s["images"])
        for row in s["rows"].values():
            row["cells_agree"] = float(np.mean(row["cells_agree"])) if row["cells_agree"] else None
        for k in ("target_bpp", "bpp_target", "bpp_q100"):
            if k in s:
                s[k] = float(np.mean(s[k]))
    return out


def summarise(results):
    e = results["eurosat"]
    if "verify" in e:
        e["verify_summary"] = verify_summary(e.pop("verify"))
    pi0 = e["per_image"]
    # Per-image payloads of the PNG, RDIC and MULTIRATE rows only (JPEG rows follow from
    # jpeg_quality_at and the pixels); the totals of every row are in "rows".
    keep = set(["png", "multirate"] + list(e["rdic_rows"]))
    pi0["payload_bytes"] = {k: v for k, v in pi0.get("payload_bytes", {}).items() if k in keep}
    if any(k not in e["rdic_lrp"] for k in pi0.get("relevant_share", {})):
        # Cells at ROI quality per image, as counts of the 16 cells, for the LRP rows only
        # (the other RDIC rows reuse them).
        pi0["relevant_cells_of_16"] = {k: [int(round(16 * x)) for x in v]
                                       for k, v in pi0.pop("relevant_share").items() if k in e["rdic_lrp"]}
    pi = e["per_image"]
    labels = np.array(pi["label"])
    classes = pi["classes"]
    models = [m for m in MODELS if m in pi["predicted"]]
    e["models"] = models
    preds = {m: {k: decode_digits(v) for k, v in pi["predicted"][m].items()} for m in models}
    e["accuracy_original"] = {}
    for m in models:
        original = preds[m]["original"]
        acc0 = float(np.mean(original == labels))
        e["accuracy_original"][m] = acc0
        for k, row in e["rows"].items():
            p = preds[m][k]
            correct = p == labels
            row.setdefault("models", {})[m] = dict(
                accuracy=float(correct.mean()), delta_pp=100.0 * (float(correct.mean()) - acc0),
                changed=float(np.mean(p != original)),
                per_class={classes[c]: float(correct[labels == c].mean())
                           for c in range(len(classes)) if np.any(labels == c)})

    def pair(a, b, m):
        ca, cb = preds[m][a] == labels, preds[m][b] == labels
        only_a, only_b = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
        return dict(only_a=only_a, only_b=only_b, p=mcnemar_p(only_a, only_b),
                    diff_pp=100.0 * (float(ca.mean()) - float(cb.mean())))

    rdic_rows = e["rdic_rows"]
    paired = {m: {} for m in models}
    for m in models:
        for k in rdic_rows:
            paired[m][f"{k}|jpeg_at_{k}"] = pair(k, f"jpeg_at_{k}", m)
    rows = e["rows"]
    verdicts = {}
    for k in rdic_rows:
        r = rows[k]
        v = dict(size_ok=r["percent_png"] <= SIZE_FLOOR,
                 loss_ok=r["models"]["analysis"]["delta_pp"] >= -LOSS_FLOOR)
        for m in MODELS:
            if m in models:
                t = paired[m][f"{k}|jpeg_at_{k}"]
                v[f"beats_{m}"] = t["diff_pp"] > 0 and t["p"] < ALPHA
                v[f"ahead_{m}"] = t["diff_pp"] > 0
            else:
                v[f"beats_{m}"] = None
        v["floors_met"] = sum(1 for x in ("size_ok", "loss_ok", "beats_analysis", "beats_second") if v.get(x))
        v["all_ok"] = v["floors_met"] == 4
        verdicts[k] = v
    small = [k for k in rdic_rows if verdicts[k]["size_ok"]]
    if any(verdicts[k]["all_ok"] for k in small):
        best = min((k for k in small if verdicts[k]["all_ok"]), key=lambda k: rows[k]["percent_png"])
        why = "the smallest RDIC row that meets every floor"
    elif small:
        best = max(small, key=lambda k: (verdicts[k]["floors_met"],
                                         np.mean([rows[k]["models"][m]["accuracy"] for m in models]),
                                         -rows[k]["percent_png"]))
        why = (f"no RDIC row meets every floor; among the rows of at most {SIZE_FLOOR:g} % of PNG, "
               "the one that meets the most floors, then the highest mean accuracy of the "
               f"{len(models)} classifier(s)")
    else:
        best = min(rdic_rows, key=lambda k: rows[k]["percent_png"])
        why = f"no RDIC row is at most {SIZE_FLOOR:g} % of PNG; the smallest"
    margin = max(small or rdic_rows, key=lambda k: sum(paired[m][f"{k}|jpeg_at_{k}"]["diff_pp"] for m in models))
    for m in models:
        for b in ("multirate", "jpeg_q100", "jpeg_q50", "jpeg_q95", "jpeg_q90"):
            paired[m][f"{best}|{b}"] = pair(best, b, m)
    e["paired"] = paired
    e["verdicts"] = verdicts
    e["best"] = dict(row=best, why=why, largest_margin_row=margin)
    # Which floors are met by the best row, in words.
    v = verdicts[best]
    e["floors"] = {
        f"size <= {SIZE_FLOOR:g} % of PNG": v["size_ok"],
        f"analysis-model loss <= {LOSS_FLOOR:g} pp": v["loss_ok"],
        "beats JPEG at equal bytes, analysis model (McNemar p < 0.05)": v["beats_analysis"],
        "beats JPEG at equal bytes, second classifier (McNemar p < 0.05)": v["beats_second"],
    }


# ---------------------------------------------------------------------------------------------
# Figures.

def plot_relevance(analysis, store, cells_codec, figure, results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    e = results["eurosat"]
    best = e["best"]["row"]
    source = e["rdic_sources"][best]
    params = e["lrp_rules"][source]
    names = [n for n in FIGURE_CLASSES if n in figure]
    fig, axes = plt.subplots(len(names), 4, figsize=(12.5, 3.2 * len(names)))
    axes = np.atleast_2d(axes)
    agreement = {}
    cls = analysis.classes
    for row, name in enumerate(names):
        i = figure[name]
        image = np.asarray(store.pixels[store.index["original"][i]])
        decoded = np.asarray(store.pixels[store.index[best][i]])
        cells = cells_codec[source][i]
        r, _ = analysis.relevance(image[None], all_classes=str(params.get("relevance")).upper() == "ALL")
        per_pixel = r[0].abs().sum(dim=0).numpy()
        cells_py = python_cells(analysis, image[None], params)[0]
        agreement[name] = float(np.mean(cells_py == cells))
        h, w = image.shape[1:]
        mask = np.kron(cells, np.ones((CELL, CELL)))[:h, :w]
        rgb = np.transpose(image, (1, 2, 0))
        pred_o = cls[int(analysis.logits(image[None]).argmax())]
        pred_d = cls[int(analysis.logits(decoded[None]).argmax())]
        axes[row, 0].imshow(rgb, interpolation="nearest")
        axes[row, 0].set_title(f"{name}: {e['per_image']['image'][i]}\npredicted {pred_o}", fontsize=8)
        im = axes[row, 1].imshow(per_pixel, cmap="hot", interpolation="nearest")
        axes[row, 1].set_title("epsilon-LRP, sum |R| over RGB\n(Python, predicted class)", fontsize=8)
        fig.colorbar(im, ax=axes[row, 1], fraction=0.046, pad=0.03)
        shaded = (rgb.astype(np.float32) * (0.25 + 0.75 * mask[:, :, None])).astype(np.uint8)
        axes[row, 2].imshow(shaded, interpolation="nearest")
        for cy in range(cells.shape[0]):
            for cx in range(cells.shape[1]):
                if cells[cy, cx]:
                    axes[row, 2].add_patch(plt.Rectangle((cx * CELL - 0.5, cy * CELL - 0.5), CELL, CELL,
                                                         fill=False, ec="yellow", lw=0.6))
        axes[row, 2].set_title(f"NSAT_AUX mask of {source} (yellow = ROI)\n"
                               f"{100 * cells.mean():.0f} % of cells; Python-LRP cells agree "
                               f"{100 * agreement[name]:.0f} %", fontsize=8)
        axes[row, 3].imshow(np.transpose(decoded, (1, 2, 0)), interpolation="nearest")
        axes[row, 3].set_title(f"{best} decoded, {psnr(image, decoded):.1f} dB\npredicted {pred_d}",
                               fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = os.path.join(out, "relevance.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, agreement


def plot_accuracy(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    e = results["eurosat"]
    rows = e["rows"]
    models = e["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5), squeeze=False)
    best = e["best"]["row"]
    for ax, m in zip(axes[0], models):
        sweep = [rows[f"jpeg_q{q}"] for q in JPEG_SWEEP]
        ax.plot([r["bpp"] for r in sweep], [100 * r["models"][m]["accuracy"] for r in sweep], "o-",
                color="tab:blue", label="NSAT JPEG q10..q100")
        for q, r in zip(JPEG_SWEEP, sweep):
            if q in (10, 50, 90, 100):
                ax.annotate(f"q{q}", (r["bpp"], 100 * r["models"][m]["accuracy"]), fontsize=7,
                            textcoords="offset points", xytext=(3, -9))
        for k in e["rdic_rows"]:
            r, j = rows[k], rows[f"jpeg_at_{k}"]
            colour = "tab:red" if k == best else "salmon"
            ax.plot(r["bpp"], 100 * r["models"][m]["accuracy"], "s", color=colour, ms=5)
            ax.plot(j["bpp"], 100 * j["models"][m]["accuracy"], "x", color="tab:blue", ms=5)
            ax.plot([r["bpp"], j["bpp"]], [100 * r["models"][m]["accuracy"], 100 * j["models"][m]["accuracy"]],
                    "-", color="gray", lw=0.5)
        b = rows[best]
        ax.annotate(best, (b["bpp"], 100 * b["models"][m]["accuracy"]), fontsize=7, color="tab:red",
                    textcoords="offset points", xytext=(4, -10))
        ax.plot([], [], "s", color="salmon", label="RDIC settings")
        ax.plot([], [], "s", color="tab:red", label=f"best: {best}")
        ax.plot([], [], "x", color="tab:blue", label="JPEG at each RDIC row's bytes (per image)")
        mr = rows["multirate"]
        ax.plot(mr["bpp"], 100 * mr["models"][m]["accuracy"], "^", color="tab:green",
                label="MULTIRATE, highest rate")
        acc0 = 100 * e["accuracy_original"][m]
        ax.axhline(acc0, color="gray", ls="--", label="originals")
        ax.axhline(acc0 - LOSS_FLOOR, color="gray", ls=":", label=f"originals - {LOSS_FLOOR:g} pp")
        ax.axvline(SIZE_FLOOR / 100 * rows["png"]["bpp"], color="k", ls=":", lw=0.8,
                   label=f"{SIZE_FLOOR:g} % of PNG")
        name = e.get("second", {}).get("name", "second") if m == "second" else e.get("analysis_name", "analysis")
        ax.set_title(f"{name}: EuroSAT RGB test, {e['images']} images", fontsize=9)
        ax.set_xlabel("bits per pixel (NSAT payload; all 3 bands)")
        ax.set_ylabel("top-1 accuracy (%)")
        lo = min(100 * rows["jpeg_q30"]["models"][m]["accuracy"],
                 min(100 * rows[k]["models"][m]["accuracy"] for k in e["rdic_rows"]))
        ax.set_ylim(max(0, lo - 2), acc0 + 1.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = os.path.join(out, "accuracy_vs_bpp.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Report.

def machine():
    """CPU model and core count as lscpu names them."""
    info = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                info[k.strip()] = v.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    model = info.get("Model name", platform.processor() or "unknown")
    cores = info.get("CPU(s)", str(os.cpu_count()))
    hyper = info.get("Hypervisor vendor")
    return dict(cpu=model, cores=cores, hypervisor=hyper,
                memory_gib=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1))


def fmt(value, digits=2):
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def fmt_p(p, sentence=False):
    if p is None:
        return "n/a"
    if p < 0.001:
        return "< 0.001" if sentence else "<0.001"
    return ("= " if sentence else "") + f"{p:.3f}"


def yes(value):
    return "n/a" if value is None else ("**met**" if value else "not met")


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(results, path):
    """results.json, indented, with the per-image columns on one line each."""
    data = jsonable(results)
    columns = data.get("eurosat", {}).pop("per_image", None)
    text = json.dumps(data, indent=1)
    if columns is not None:
        packed = "{\n" + ",\n".join("  " + json.dumps(k) + ": " + json.dumps(v, separators=(",", ":"))
                                    for k, v in columns.items()) + "}"
        data["eurosat"]["per_image"] = "@PER_IMAGE@"
        text = json.dumps(data, indent=1).replace('"@PER_IMAGE@"', packed)
    with open(path, "w") as f:
        f.write(text + "\n")


def acc_cells(row, m):
    if m not in row.get("models", {}):
        return "n/a", "n/a"
    a = row["models"][m]
    return fmt(100 * a["accuracy"]), f"{a['delta_pp']:+.2f}"


def write_report(results, out):
    meta = results["meta"]
    e = results["eurosat"]
    rows = e["rows"]
    models = e["models"]
    second = e.get("second", {})
    second_name = second.get("name", "second classifier")
    best = e["best"]["row"]
    lines = []
    add = lines.append
    add("# RDIC benchmark: relevance-driven JPEG against PNG, JPEG at equal bytes and MULTIRATE")
    add("")
    add(f"- Date: {meta['date']}; run time {meta.get('elapsed_s', 0) / 60:.1f} min "
        f"(EuroSAT encodes {e.get('encode_seconds', 0) / 60:.1f} min, second classifier "
        f"{second.get('seconds', 0) / 60:.1f} min)" + (" — --quick smoke run" if meta["quick"] else ""))
    add(f"- Machine (lscpu): {meta['cpu']}, {meta['cores']} CPUs"
        + (f", {meta['hypervisor']} guest" if meta.get("hypervisor") else "")
        + f", {meta.get('memory_gib', '?')} GiB; shared with other jobs (load average at start "
        f"{meta['load_at_start']}, at end {meta.get('load_at_end', 'n/a')})")
    add(f"- Software: GDAL {meta['gdal']}, Python {meta['python']}, numpy {meta['numpy']}, "
        f"torch {meta['torch']}; plugin `{meta['plugin']}`")
    add(f"- Command: `{meta['command']}`" + (f" (then `{meta['second_only_command']}`)"
                                             if meta.get("second_only_command") else ""))
    argv = shlex.split(meta["command"])
    if "--out" in argv and argv.index("--out") + 1 < len(argv):
        written = os.path.abspath(os.path.join(REPO, argv[argv.index("--out") + 1]))
        if os.path.normpath(written) != os.path.normpath(out):
            add(f"- The run wrote to `{argv[argv.index('--out') + 1]}`; its files were copied here and "
                "this report was regenerated from results.json (`--report-only`).")
    for note in meta.get("notes", []):
        add(f"- {note}")
    card = meta["classifier"]
    add(f"- Analysis model (RDIC's relevance, first accuracy column): `{card['path']}` sha256 "
        f"`{card['sha256'][:16]}…`, card test accuracy {fmt(card['accuracy_test'], 4)}; the RDIC "
        f"files of this run name sha256 "
        f"{', '.join('`' + h[:16] + '…`' for h in e.get('rdic_model_sha256_seen', []))}.")
    if "error" in second:
        add(f"- **Second classifier: {second['error']}; its columns are n/a.**")
    else:
        add(f"- Second classifier (never seen by RDIC; trained on clean images): `{second['path']}` "
            f"({second_name}; {second.get('architecture')}), sha256 `{second['sha256'][:16]}…`, "
            f"card test accuracy {fmt(second.get('card_accuracy_test'), 4)}, "
            f"{second.get('epochs')} epochs.")
        if second.get("changed_during_run"):
            add("- **Warning: the second classifier's file changed while it was being run.**")
    if card.get("changed_during_run"):
        add("- **Warning: the analysis model's file changed during the run.**")
    add(f"- Data: EuroSAT RGB test split (`eurosat_rgb_splits.csv`), {e['images']} of "
        f"{e['test_split_images']} images ({e['selection']}), 64x64; failures: {len(e['failures'])}. "
        "Every codec encodes the decoded EuroSAT JPEG pixels (\"originals\"); accuracy and PSNR "
        "are measured against them. NSAT sizes are payloads (tile data, `NSAT_BITS_PER_PIXEL`; the "
        "file header is left out), PNG is GDAL PNG file bytes (100 %). Files: OVERVIEWS=NONE, "
        f"NUM_THREADS={meta['threads']}.")
    add("- RDIC masks: this script's epsilon-LRP of the analysis model (the codec's rule: |R| >= "
        "mean or RELEVANCE_SHARE, on |Σ_RGB R|) for every image, given to CODEC=RDIC through "
        "ROI_MASK; on the first images every LRP row is also coded with the codec's own LRP and "
        "compared (Checks). This is ~10x faster than the codec's LRP per file on this machine.")
    acc0 = e["accuracy_original"]
    add(f"- Accuracy on the originals: analysis model {fmt(100 * acc0['analysis'])} %"
        + (f", {second_name} {fmt(100 * acc0['second'])} %" if "second" in acc0 else "")
        + f". One image = {100 / e['images']:.3f} pp.")
    add("")
    add("## Floors (issue 19) and the key rows")
    add("")
    v = e["verdicts"][best]
    add(f"Best RDIC setting ({e['best']['why']}): **`{best}`** = `{e['rdic_settings'][best]}`, "
        f"{fmt(rows[best]['percent_png'])} % of PNG, {fmt(100 * rows[best]['relevant_cells'], 1)} % "
        "of the 16 px cells at ROI quality.")
    add("")
    n_rows = len(e["rdic_rows"])
    for name, met in e["floors"].items():
        extra = ""
        for m in models:
            if name.startswith("beats") and (("analysis" in name) == (m == "analysis")):
                t = e["paired"][m][f"{best}|jpeg_at_{best}"]
                extra = f" (p {fmt_p(t['p'], True)}, {t['only_a']}/{t['only_b']} discordant"
                if met and t["p"] >= ALPHA / n_rows:
                    extra += (f"; not significant after a Bonferroni correction for the {n_rows} settings "
                              f"tried, threshold {ALPHA / n_rows:.4f}")
                extra += ")"
        add(f"- {name}: {yes(met)}{extra}")
    scenes = results.get("scenes", {})
    overall = scenes.get("overall", {})
    if overall:
        keys = [k for k in overall if not k.startswith("jpeg_at_")]
        above = [k for k in keys if all(m in overall[k] and overall[k][m]["agreement"] >
                                        overall[f"jpeg_at_{k}"][m]["agreement"] for m in MODELS)]
        add(f"- large scenes, land-cover map agreement above JPEG's at equal bytes (pooled windows, both "
            f"classifiers): {yes(bool(above))}" + (f" ({', '.join(above)})" if above else
            f" — JPEG keeps more labels for all {len(keys)} settings (section 'Large scenes')"))
    add("")
    add("p: exact two-sided McNemar of the RDIC row against the row named, per classifier "
        "(images right with one and wrong with the other).")
    add("")
    add(f"| row | size % of PNG | bpp | PSNR dB | Δ acc analysis pp | Δ acc {second_name} pp | "
        f"p analysis | p {second_name} |")
    add("|---|---|---|---|---|---|---|---|")
    shown = list(dict.fromkeys([best, e["best"]["largest_margin_row"]]))
    ranked = sorted((k for k in e["rdic_rows"] if e["verdicts"][k]["size_ok"]),
                    key=lambda k: -np.mean([rows[k]["models"][m]["accuracy"] for m in models]))
    for k in ranked:
        if len(shown) >= 3:
            break
        if k not in shown:
            shown.append(k)

    def key_row(k, label, vs=None):
        r = rows[k]
        ps = []
        for m in ("analysis", "second"):
            if vs is None or m not in models:
                ps.append("")
            else:
                t = e["paired"][m].get(f"{vs[0]}|{vs[1]}")
                ps.append(f"{fmt_p(t['p'])} ({t['only_a']}/{t['only_b']})" if t else "")
        add(f"| {label} | {fmt(r.get('percent_png'))} | {fmt(r.get('bpp'), 3)} | {fmt(r['psnr'])} | "
            f"{acc_cells(r, 'analysis')[1]} | {acc_cells(r, 'second')[1]} | {ps[0]} | {ps[1]} |")

    for k in shown:
        tag = "best" if k == best else ("largest margin over JPEG, both classifiers summed"
                                         if k == e["best"]["largest_margin_row"]
                                         else "next most accurate ≤ 30 %")
        key_row(k, f"RDIC `{k}` ({tag}): {e['rdic_settings'][k]}", (k, f"jpeg_at_{k}"))
        j = rows[f"jpeg_at_{k}"]
        key_row(f"jpeg_at_{k}", f"&nbsp;&nbsp;JPEG at `{k}`'s bytes (mean q {j['quality_mean']:.1f})")
    key_row("multirate", "MULTIRATE, its highest rate (cannot reach RDIC's bytes)", (best, "multirate"))
    key_row("jpeg_q100", "NSAT JPEG q100 (anchor)", (best, "jpeg_q100"))
    key_row("jpeg_q50", "NSAT JPEG q50 (anchor)", (best, "jpeg_q50"))
    add("")
    add(f"p for the RDIC rows: against JPEG at its bytes, with the discordant counts (right only "
        f"with RDIC / only with JPEG); for MULTIRATE and the anchors: `{best}` against that row.")
    add("")
    add("## Table 1: EuroSAT test, every row")
    add("")
    add(f"PNG total {e['png_total_bytes'] / 1e6:.3f} MB ({rows['png']['bpp']:.2f} bpp).")
    add("")
    add(f"| row | size % of PNG | file % | bpp | PSNR dB | acc analysis % | Δ pp | acc {second_name} % | "
        "Δ pp | ROI cells % | encode s/img |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    order = (["png", "gdal_jpeg_q100", "gdal_jpeg_q50", "jpeg_q100", "jpeg_q95", "jpeg_q90", "jpeg_q50",
              "multirate"] + e["rdic_rows"] + [f"jpeg_at_{k}" for k in e["rdic_rows"]])
    for k in order:
        r = rows[k]
        label = r["label"]
        if "quality_mean" in r:
            label += f" (mean q {r['quality_mean']:.1f}, {r['quality_range'][0]}-{r['quality_range'][1]}"
            if r["capped_at_q100"]:
                label += f"; {r['capped_at_q100']} capped at q100"
            label += ")"
        a, s = acc_cells(r, "analysis"), acc_cells(r, "second")
        add(f"| {label} | {fmt(r.get('percent_png'))} | {fmt(r.get('percent_png_file'))} | "
            f"{fmt(r.get('bpp'), 3)} | {fmt(r['psnr'])} | {a[0]} | {a[1]} | {s[0]} | {s[1]} | "
            f"{fmt(100 * r['relevant_cells'], 1) if 'relevant_cells' in r else ''} | "
            f"{fmt(r.get('encode_s_mean'), 3) if 'encode_s_mean' in r else ''} |")
    add("")
    add("[LRP]: the codec's own relevance; [cells of X]: X's cells given through ROI_MASK (checked "
        "identical to running the LRP, below). 'JPEG at the bytes of': per image, the NSAT JPEG "
        "quality whose payload is closest to the RDIC payload. ROI cells: share of 16 px cells at "
        "ROI_QUALITY.")
    add("")
    add("## RDIC against JPEG at equal bytes, every setting")
    add("")
    add(f"| RDIC row | size % | JPEG size % | Δ analysis RDIC / JPEG pp | p (RDIC/JPEG only) | "
        f"Δ {second_name} RDIC / JPEG pp | p (RDIC/JPEG only) | floors met |")
    add("|---|---|---|---|---|---|---|---|")
    for k in e["rdic_rows"]:
        r, j, v = rows[k], rows[f"jpeg_at_{k}"], e["verdicts"][k]
        cells = []
        for m in ("analysis", "second"):
            if m in models:
                t = e["paired"][m][f"{k}|jpeg_at_{k}"]
                cells += [f"{r['models'][m]['delta_pp']:+.2f} / {j['models'][m]['delta_pp']:+.2f}",
                          f"{fmt_p(t['p'])} ({t['only_a']}/{t['only_b']})"]
            else:
                cells += ["n/a", "n/a"]
        met = [n for n, x in (("size", v["size_ok"]), ("loss", v["loss_ok"]),
                              ("beats (analysis)", v["beats_analysis"]),
                              ("beats (second)", v["beats_second"])) if x]
        add(f"| `{k}` | {fmt(r['percent_png'])} | {fmt(j['percent_png'])} | {' | '.join(cells)} | "
            f"{', '.join(met) or 'none'} |")
    add("")
    add("## JPEG quality sweep (NSAT CODEC=JPEG, payload)")
    add("")
    add(f"| quality | size % of PNG | bpp | PSNR dB | Δ acc analysis pp | Δ acc {second_name} pp |")
    add("|---|---|---|---|---|---|")
    for q in JPEG_SWEEP:
        r = rows[f"jpeg_q{q}"]
        add(f"| {q} | {fmt(r['percent_png'])} | {fmt(r['bpp'], 3)} | {fmt(r['psnr'])} | "
            f"{acc_cells(r, 'analysis')[1]} | {acc_cells(r, 'second')[1]} |")
    add("")
    add(f"## Per-class accuracy (%), best row `{best}` and JPEG at its bytes")
    add("")
    cols = [("original", m) for m in models] + [(best, m) for m in models] + \
        [(f"jpeg_at_{best}", m) for m in models]
    add("| class | " + " | ".join(f"{k.replace('jpeg_at_', 'JPEG@')} ({'an.' if m == 'analysis' else '2nd'})"
                                  for k, m in cols) + " |")
    add("|---|" + "---|" * len(cols))
    for c in e["per_image"]["classes"]:
        add(f"| {c} | " + " | ".join(fmt(100 * rows[k]["models"][m]["per_class"][c], 1) for k, m in cols) + " |")
    add("")
    add("## Checks")
    add("")
    vs = e["verify_summary"]
    s = vs.get("cells_python_vs_codec")
    if s:
        add(f"- Python epsilon-LRP cells (used for every image) against the codec's own LRP "
            f"(NSAT_AUX), first {s['images']} images: " + "; ".join(
                f"`{k}` {100 * r['cells_agree']:.2f} % of cells, {r['identical']}/{r['n']} images identical"
                for k, r in s["rows"].items()) + ".")
    names = dict(roi_mask="RDIC through ROI_MASK (Python cells) against CODEC=RDIC with the row's own "
                          "options (codec LRP)",
                 window64="RELEVANCE_WINDOW=64 against no window (64x64 images)",
                 multirate_target="MULTIRATE TARGET_BPP=<RDIC rate> against QUALITY=100")
    for check in ("roi_mask", "window64", "multirate_target"):
        s = vs.get(check)
        if not s:
            continue
        text = (f"- {names[check]}, first {s['images']} images: {s['identical']} of {s['n']} encodes "
                "identical (payload, decoded pixels" + (", NSAT_AUX cells" if check != "multirate_target" else "") + ")")
        if "params_match" in s:
            text += (f"; the codec's parameters match the Python rule in {s['params_match'][0]} of "
                     f"{s['params_match'][1]}")
        if check == "multirate_target":
            text += (f"; asked for {s['target_bpp']:.2f} bpp it gives {s['bpp_target']:.3f} bpp "
                     f"(QUALITY=100: {s['bpp_q100']:.3f})")
        add(text + ".")
    add(f"- This script's LRP forward against the TorchScript forward: max |logit diff| "
        f"{e['max_abs_logit_diff_python_vs_torchscript']:.1e}.")
    for m, info in (("analysis", e.get("analysis_classify", {})), ("second", e.get("second", {}))):
        fc = info.get("frozen_check")
        if fc:
            add(f"- {m} classifier run frozen (torch.jit.freeze + optimize_for_inference): "
                + (f"same predictions as the plain module on the {fc['images']} originals "
                   f"(max |logit diff| {fc['max_abs_logit_diff']:.1e})" if fc.get("used") else
                   f"not used ({fc.get('error') or str(fc.get('predictions_differ')) + ' predictions differ'})")
                + ".")
    add(f"- Distinct decoded images classified: {e.get('distinct_decoded')} "
        f"(of {e['images'] * len(rows)} row x image pairs).")
    if "figure_agreement" in meta:
        add("- Figure images, Python-LRP cells vs NSAT_AUX: " + ", ".join(
            f"{k} {100 * v:.0f} %" for k, v in meta["figure_agreement"].items()) + ".")
    if e["failures"]:
        add(f"- Failed images ({len(e['failures'])}): " + "; ".join(
            f"{f['image']}: {f['error']}" for f in e["failures"][:5]))
    add("")
    scenes_section(results, add)
    add("## Figures")
    add("")
    for name, caption in (("accuracy_vs_bpp.png", "accuracy against bpp, both classifiers; grey "
                           "lines join each RDIC row to JPEG at its bytes"),
                          ("relevance.png", "image, Python epsilon-LRP relevance, the mask NSAT "
                           "stored for the best row's relevance rule, the decoded best row"),
                          ("scenes_maps.png", "large scenes: image, RDIC mask, analysis-model "
                           "land-cover map on the original, windows whose label changed under "
                           "RDIC and under JPEG at equal bytes")):
        if name in meta.get("plots", []) or (name == "scenes_maps.png" and
                                             os.path.exists(os.path.join(out, name))):
            add(f"![{name}]({name})")
            add("")
            add(f"*{name}: {caption}.*")
            add("")
    add("## Notes")
    add("")
    for paragraph in discussion(results):
        add(f"- {paragraph}")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def scenes_section(results, add):
    scenes = results.get("scenes")
    if not scenes:
        return
    meta = scenes.get("meta", {})
    add("## Large scenes: land-cover map agreement at equal bytes")
    add("")
    add(f"From `scripts/bench_rdic_scenes.py` (`{meta.get('command', '')}`), {meta.get('date', '')}, "
        f"{meta.get('elapsed_s', 0) / 60:.1f} min, load average {meta.get('load_at_start', '?')} → "
        f"{meta.get('load_at_end', '?')}. {meta.get('method', '')} Classifiers: the analysis model "
        f"and `{meta.get('second', {}).get('path', 'n/a')}` (sha256 "
        f"`{meta.get('second', {}).get('sha256', '')[:16]}…`).")
    add("")
    good = {n: s for n, s in scenes["scenes"].items() if "error" not in s}
    for n, s in scenes["scenes"].items():
        if "error" in s:
            add(f"- {n}: failed: {s['error']}")
    add("| scene | GSD | px (64 px windows) | PNG MB |")
    add("|---|---|---|---|")
    for n, s in good.items():
        add(f"| {n}: {s['description']} | {s['gsd']} | {s['width']}x{s['height']} ({s['windows_valid']}) | "
            f"{s['rows']['png']['file_bytes'] / 1e6:.2f} |")
    add("")
    keys = [k for k in next(iter(good.values()))["rows"] if k.startswith("rdic")] if good else []

    def pooled(k, m):
        a = b = 0
        for s in good.values():
            t = s.get("paired", {}).get(m, {}).get(f"{k}|jpeg_at_{k}")
            if t:
                a, b = a + t["only_a"], b + t["only_b"]
        return a, b, mcnemar_p(a, b)

    add("Pooled over the scenes' windows (agreement: share of windows whose label is kept; "
        "p: McNemar RDIC vs JPEG on the pooled windows, discordant counts in brackets):")
    add("")
    add("| RDIC setting (RELEVANCE_WINDOW=64) | file % of PNG, mean of scenes | analysis: RDIC / JPEG % | p | "
        "second: RDIC / JPEG % | p |")
    add("|---|---|---|---|---|---|")
    overall = scenes.get("overall", {})
    for k in keys:
        cells = []
        for m in MODELS:
            o, oj = overall.get(k, {}).get(m), overall.get(f"jpeg_at_{k}", {}).get(m)
            if o and oj:
                a, b, pv = pooled(k, m)
                cells += [f"{100 * o['agreement']:.1f} / {100 * oj['agreement']:.1f}", f"{fmt_p(pv)} ({a}/{b})"]
            else:
                cells += ["n/a", ""]
        size = np.mean([s["rows"][k]["percent_png"] for s in good.values()])
        size_j = np.mean([s["rows"][f"jpeg_at_{k}"]["percent_png"] for s in good.values()])
        opts = " ".join(o for o in good[next(iter(good))]["rows"][k].get("options", []) if not o.startswith("BLOCKSIZE"))
        add(f"| `{k}`: {opts} | {size:.1f} (JPEG {size_j:.1f}) | " + " | ".join(cells) + " |")
    add("")
    add("Per scene (agreement % RDIC / JPEG at equal file bytes; JPEG quality found):")
    add("")
    add("| scene | setting | RDIC % of PNG | JPEG q (% of PNG) | PSNR RDIC / JPEG dB | analysis % | p | second % | p |")
    add("|---|---|---|---|---|---|---|---|---|")
    for n, s in good.items():
        for k in keys:
            r, j = s["rows"][k], s["rows"][f"jpeg_at_{k}"]
            cells = []
            for m in MODELS:
                t = s.get("paired", {}).get(m, {}).get(f"{k}|jpeg_at_{k}")
                if t and m in r.get("agreement", {}):
                    cells += [f"{100 * r['agreement'][m]:.1f} / {100 * j['agreement'][m]:.1f}",
                              f"{fmt_p(t['p'])} ({t['only_a']}/{t['only_b']})"]
                else:
                    cells += ["n/a", ""]
            add(f"| {n} | `{k}` | {r['percent_png']:.1f} | q{j['quality']} ({j['percent_png']:.1f}) | "
                f"{fmt(r['psnr'])} / {fmt(j['psnr'])} | " + " | ".join(cells) + " |")
    add("")
    for note in scenes.get("notes", []):
        add(f"- {note}")
    add("")


def discussion(results):
    """Short, number-driven notes."""
    e = results["eurosat"]
    rows = e["rows"]
    models = e["models"]
    text = []
    best = e["best"]["row"]
    b, j = rows[best], rows[f"jpeg_at_{best}"]
    parts = []
    for m in models:
        t = e["paired"][m][f"{best}|jpeg_at_{best}"]
        parts.append(f"{'analysis model' if m == 'analysis' else e['second'].get('name', m)} "
                     f"{b['models'][m]['delta_pp']:+.2f} pp against JPEG's {j['models'][m]['delta_pp']:+.2f} pp "
                     f"({t['only_a']} images right only with RDIC, {t['only_b']} only with JPEG, p {fmt_p(t['p'], True)})")
    text.append(f"`{best}` ({e['rdic_settings'][best]}) stores the test images in {fmt(b['percent_png'])} % "
                f"of the PNG size; JPEG at the same bytes (mean quality {j['quality_mean']:.0f}): "
                + "; ".join(parts) + ".")
    wins = {m: [k for k in e["rdic_rows"] if e["verdicts"][k].get(f"beats_{m}")] for m in models}
    ahead = {m: [k for k in e["rdic_rows"] if e["verdicts"][k].get(f"ahead_{m}")] for m in models}
    text.append("RDIC settings more accurate than JPEG at their bytes: " + "; ".join(
        f"{'analysis model' if m == 'analysis' else e['second'].get('name', m)}: {len(ahead[m])} of "
        f"{len(e['rdic_rows'])} ahead, {len(wins[m])} with p < {ALPHA:g}"
        + (f" ({', '.join(wins[m])})" if wins[m] else "") for m in models) + ".")
    n_rows = len(e["rdic_rows"])
    if "analysis" in wins:
        text.append(f"Multiple comparisons: {n_rows} RDIC settings were each tested against JPEG; with no "
                    f"real difference about {ALPHA * n_rows:.1f} of them would reach p < {ALPHA:g} by chance, "
                    f"and a Bonferroni threshold is {ALPHA / n_rows:.4f}. "
                    + (f"The analysis-model win(s) ({', '.join(wins['analysis'])}) "
                       + ("do not" if all(e['paired']['analysis'][f'{k}|jpeg_at_{k}']['p'] >= ALPHA / n_rows
                                          for k in wins["analysis"]) else "do")
                       + " pass it; the best row was also chosen after looking at these results, so its "
                       "p-value is optimistic." if wins["analysis"] else ""))
    if "second" in models:
        sm = e["second"].get("name", "second")
        worst = sorted(e["per_image"]["classes"],
                       key=lambda c: rows[best]["models"]["second"]["per_class"][c]
                       - rows["original"]["models"]["second"]["per_class"][c])[:2]
        text.append(f"{sm} (trained on clean images only) loses more on RDIC than on JPEG at equal bytes in "
                    f"{sum(1 for k in e['rdic_rows'] if e['paired']['second'][f'{k}|jpeg_at_{k}']['diff_pp'] < 0)} "
                    f"of {n_rows} settings; at `{best}` mostly in "
                    + ", ".join(f"{c} ({100 * rows['original']['models']['second']['per_class'][c]:.1f} → "
                                f"{100 * rows[best]['models']['second']['per_class'][c]:.1f} %, JPEG "
                                f"{100 * rows['jpeg_at_' + best]['models']['second']['per_class'][c]:.1f} %)"
                                for c in worst)
                    + ". The analysis model was fine-tuned with JPEG q30..100 augmentation and tolerates the "
                    "coarse background; a network that was not does not, so the gain seen with the "
                    "analysis model does not carry over.")
    text.append(f"At equal bytes plain JPEG has {min(rows['jpeg_at_' + k]['psnr'] - rows[k]['psnr'] for k in e['rdic_rows']):.1f}"
                f"-{max(rows['jpeg_at_' + k]['psnr'] - rows[k]['psnr'] for k in e['rdic_rows']):.1f} dB more PSNR than "
                "RDIC on every setting (mean per-image PSNR).")
    r0, j0 = rows["rdic"], rows["jpeg_q90"]
    text.append(f"File headers: an RDIC file of a 64x64 image carries {(r0['file_bytes'] - r0['bytes']) / e['images']:.0f} B "
                f"besides its payload (a space-padded JSON header) against {(j0['file_bytes'] - j0['bytes']) / e['images']:.0f} B "
                "for NSAT JPEG, so whole RDIC files of such small images are several times their payload "
                "(the 'file %' column); the comparisons here use payloads, and the large-scene part uses "
                "whole files, where this is negligible.")
    q = rows["jpeg_q100"]
    text.append(f"Anchors: NSAT JPEG q100 is {fmt(q['percent_png'])} % of PNG "
                + ", ".join(f"{q['models'][m]['delta_pp']:+.2f} pp ({m})" for m in models)
                + f"; q50 is {fmt(rows['jpeg_q50']['percent_png'])} % "
                + ", ".join(f"{rows['jpeg_q50']['models'][m]['delta_pp']:+.2f} pp ({m})" for m in models) + ".")
    mr = rows["multirate"]
    text.append(f"MULTIRATE's highest rate is {fmt(mr['bpp'], 3)} bpp ({fmt(mr['percent_png'])} % of PNG, "
                f"{fmt(mr['psnr'])} dB), far below every RDIC row, so it cannot be compared at equal "
                "bytes: " + ", ".join(f"{mr['models'][m]['delta_pp']:+.2f} pp ({m})" for m in models) + ".")
    return text


# ---------------------------------------------------------------------------------------------

def finish(results, out, analysis, store=None, cells_codec=None, figure=None, start=None):
    summarise(results)
    plots = [p for p in results["meta"].get("plots", [])]
    if store is not None:
        try:
            _, agreement = plot_relevance(analysis, store, cells_codec, figure, results, out)
            plots.append("relevance.png")
            results["meta"]["figure_agreement"] = agreement
        except Exception as error:  # noqa: BLE001
            log(f"relevance figure failed: {type(error).__name__}: {error}")
    try:
        plot_accuracy(results, out)
        plots.append("accuracy_vs_bpp.png")
    except Exception as error:  # noqa: BLE001
        log(f"accuracy figure failed: {type(error).__name__}: {error}")
    results["meta"]["plots"] = sorted(set(plots))
    scenes_path = os.path.join(out, "scenes.json")
    if os.path.exists(scenes_path):
        with open(scenes_path) as f:
            results["scenes"] = json.load(f)
    if start is not None:
        results["meta"]["elapsed_s"] = time.perf_counter() - start
        results["meta"]["load_at_end"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    write_json(results, os.path.join(out, "results.json"))
    write_report(results, out)


def main():
    out = os.path.abspath(ARGS.out)
    os.makedirs(out, exist_ok=True)
    if ARGS.report_only or ARGS.second_only or ARGS.classify_child:
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        for row in results["eurosat"]["rows"].values():
            if row.get("psnr") is None:
                row["psnr"] = float("inf")
        analysis = Classifier(MODEL_DIR)
        if ARGS.second_only or ARGS.classify_child:
            if not ARGS.cache:
                sys.exit("--second-only needs --cache")
            start = time.perf_counter()
            store, cells, figure = load_cache(ARGS.cache)
            classify(results, store, analysis)
            if ARGS.second_only:
                results["meta"]["second_only_command"] = " ".join(
                    shlex.quote(a) for a in [sys.executable] + sys.argv)
            results["meta"]["elapsed_s"] = results["meta"].get("elapsed_s", 0) + \
                time.perf_counter() - start
            results["meta"]["load_at_end"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
            finish(results, out, analysis, store, cells, figure)
        else:
            finish(results, out, analysis)
        log(f"wrote {out}/results.json and report.md")
        return
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit(f"NSAT driver not found (GDAL_DRIVER_PATH={os.environ.get('GDAL_DRIVER_PATH')})")
    start = time.perf_counter()
    analysis = Classifier(MODEL_DIR)
    card_acc = analysis.card.get("accuracy", {})
    results = dict(meta=dict(
        date=f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}",
        **machine(), load_at_start="/".join(f"{x:.2f}" for x in os.getloadavg()),
        gdal=gdal.VersionInfo("RELEASE_NAME"), numpy=np.__version__, torch=torch.__version__,
        python=platform.python_version(),
        plugin=os.path.join(os.environ["GDAL_DRIVER_PATH"], "gdal_NSAT.so"),
        command=" ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
        quick=ARGS.quick, threads=ARGS.threads, rdic_defaults=RDIC_DEFAULTS,
        floors=dict(size_percent_png=SIZE_FLOOR, loss_pp=LOSS_FLOOR, alpha=ALPHA),
        classifier=dict(path=os.path.relpath(analysis.path, REPO), sha256=analysis.sha256,
                        accuracy_test=card_acc.get("test"), accuracy_valid=card_acc.get("valid"),
                        epochs=analysis.card.get("training", {}).get("epochs")),
        rdic_rows={k: dict(options=v[1]) for k, v in RDIC_LRP.items()} |
        {k: dict(cells_of=v[1], options=v[2]) for k, v in RDIC_REUSE.items()},
        jpeg_sweep=JPEG_SWEEP))
    log(f"analysis model {analysis.name}, card test accuracy {card_acc.get('test')}")
    try:
        store, cells_codec, figure = run_eurosat(results, analysis)
    finally:
        for name in gdal.ReadDirRecursive(VSI) or []:
            if not name.endswith("/"):
                gdal.Unlink(f"{VSI}/{name}")
    results["eurosat"]["analysis_name"] = analysis.name
    results["meta"]["classifier"]["changed_during_run"] = file_sha256(analysis.path) != analysis.sha256
    # The classifiers run in a fresh process on the cached pixels: once the NSAT plugin has
    # loaded the MULTIRATE models into this process's LibTorch, torch.jit.freeze of another
    # module fails ("Couldn't find method forward"), and unfrozen the second classifier is
    # ~2.5x slower.
    import tempfile
    cache = ARGS.cache or tempfile.mkdtemp(prefix="bench_rdic_cache_")
    save_cache(store, cells_codec, figure, cache)
    store = None
    results["meta"]["cache"] = ARGS.cache
    results["meta"]["elapsed_s"] = time.perf_counter() - start
    write_json(results, os.path.join(out, "results.json"))
    child = [sys.executable, os.path.abspath(__file__), "--classify-child", "--cache", cache,
             "--out", out, "--model", ARGS.model, "--threads", str(ARGS.threads),
             "--wait-second", str(ARGS.wait_second), "--shares", ARGS.shares,
             "--share-grid", ARGS.share_grid] + \
        (["--second-model", ARGS.second_model] if ARGS.second_model else []) + \
        (["--quick"] if ARGS.quick else [])
    status = subprocess.run(child).returncode
    if not ARGS.cache:
        import shutil
        shutil.rmtree(cache, ignore_errors=True)
    if status != 0:
        sys.exit(f"classification step failed ({status}); encodes are in {out}/results.json")
    log(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
