#!/usr/bin/python3
"""Benchmark of NSAT CODEC=DIFFUSION (a base codec's payload, VQ or MULTIRATE, refined on decode by a
small flow model conditioned on the scene's metadata) against its base decode (REFINEMENT=NO), the base
codec's own file, CODEC=MULTIRATE and GDAL's JP2OpenJPEG, for the issue's floors on the refined decode
against the base decode of the same file (equal bytes): FD <= 0.8 x the base's, high-frequency energy
within 15 % of the original's, downstream accuracy not lower, PSNR cost <= 0.5 dB, shuffled metadata
measurably worse than the true one, decode <= 5 x MULTIRATE's time.

Model --model (default: none, the codec's; its id and base codec come back in a probe file's
NSAT_CODEC_PARAMETERS), rates --rates (creation options; default LEVELS=1..3 on VQ, QUALITY=10..95 on
MULTIRATE). Datasets, all held out from the models' training: eurosat = --eurosat-count evenly spread EuroSAT
RGB test images (64x64, -co GSD=10); landsat7 = geotiff/landsat7_rasterio/RGB.byte.tif (all-zero collar
masked); osbs029 = aerial/deepforest/OSBS_029.tif (NEON 0.1 m, condition from its georeferencing); dota =
aerial/dota/unlabeled/mmrotate_dota_demo.jpg (no georeferencing, -co GSD=0.25). Scenes are coded whole.

Per rate (NSAT files OVERVIEWS=NONE NUM_THREADS=1): refined = CODEC=DIFFUSION NOISE=--noise (default: the
card's), default noise seed; base = that file with REFINEMENT=NO; base file = CODEC=<base_codec>
MODEL=<base model> at the rate (checked pixel-identical to the base); MULTIRATE = QUALITY 1..100 bisected
to the DIFFUSION file's bytes (100 when even that is smaller: saturated); JP2OpenJPEG = bench_vq's
options, QUALITY % bisected to the same bytes. Ablation: true and shuffled conditions (another scene's,
from nsat_scene_condition, as -co overrides), both NOISE_SEED=--ablation-seed. NOISE sweep at
--sweep-rate (default: the middle rate) on eurosat, osbs029, dota.

Metrics: bpp = file bytes x 8 / pixels; PSNR (peak 255, valid pixels, mean over images); MS-SSIM; FD =
Frechet distance of the 128-d pooled features of models/rdic-classifier-rgb8-v2, one vector per image or
64x64 scene window (< 10 % nodata); HF ratio = decoded / original sum of high_frequency_energy (|FFT|^2
above 0.25 cycles/px) over images or fully valid windows; EuroSAT accuracy and agreement with the
original's label; McNemar; sign and t tests on per-unit MSE; decode ms/MP on the scenes (fresh open, one
thread, one warm-up, median of 3).

Usage, from the repository root (one thread; nice it on a shared machine):
    nice -n 10 /usr/bin/python3 scripts/bench_diffusion.py [--models-dir DIR] [--plugin-dir build]
        [--model ID] [--rates LEVELS=1,LEVELS=2,LEVELS=3] [--noise 0.01] [--eurosat-count 300] [--quick]
Outputs in --out: report.md, results.json, rd_<dataset>.png, noise_sweep.png, crop_<scene>.png.
"""
import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)
sys.path.insert(0, os.path.join(SCRIPTS, "learned"))
DEFAULT_RATES = {"VQ": "LEVELS=1,LEVELS=2,LEVELS=3",
                 "MULTIRATE": "QUALITY=10,QUALITY=30,QUALITY=50,QUALITY=75,QUALITY=95"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="data folder (default: datasets.DEFAULT_DATA, ../shared/data)")
    p.add_argument("--out", default=os.path.join(SCRIPTS, "results", "diffusion"))
    p.add_argument("--plugin-dir", default=os.path.join(REPO, "build"), help="GDAL_DRIVER_PATH (default build/)")
    p.add_argument("--models-dir", default=None, help="NSAT_MODELS_DIR (default: unset, the repository's models/)")
    p.add_argument("--model", default=None, help="DIFFUSION -co MODEL (default: none, the codec's default)")
    p.add_argument("--rates", default=None, help="comma list of rate creation options (default: by base codec: "
                   + "; ".join(f"{k}: {v}" for k, v in DEFAULT_RATES.items()) + ")")
    p.add_argument("--noise", type=float, default=None, help="NOISE of the main DIFFUSION files (default: the card's)")
    p.add_argument("--sweep-rate", default=None, help="rate of the NOISE sweep (default: the middle one)")
    p.add_argument("--sweep-noises", default="0,0.005,0.01,0.015,0.02,0.03,0.05")
    p.add_argument("--ablation-seed", type=int, default=12345, help="NOISE_SEED of the ablation's files")
    p.add_argument("--eurosat-count", type=int, default=300)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 20 images, the middle and last rates, 3 noises, 384 px scene crops, 1 timing")
    args = p.parse_args()
    args.sweep_noises = [float(n) for n in args.sweep_noises.split(",")]
    if args.quick:
        args.eurosat_count, args.sweep_noises = 20, [0.0, 0.02]
    return args


ARGS = parse_args()
os.environ["GDAL_DRIVER_PATH"] = os.path.abspath(ARGS.plugin_dir)
if ARGS.models_dir:
    os.environ["NSAT_MODELS_DIR"] = os.path.abspath(ARGS.models_dir)
else:
    os.environ.pop("NSAT_MODELS_DIR", None)
os.environ["GDAL_NUM_THREADS"] = "1"
os.environ["GDAL_PAM_ENABLED"] = "NO"


def bench_vq_module():
    """bench_vq, for its writers' helpers (mem_dataset, JP2OpenJPEG options, model cards): it
    parses its command line at import, so it gets one naming our plugin, models and 1 thread."""
    saved = sys.argv
    sys.argv = [saved[0], "--plugin-dir", ARGS.plugin_dir, "--threads", "1"] + (
        ["--models-dir", ARGS.models_dir] if ARGS.models_dir else [])
    try:
        import bench_vq
    finally:
        sys.argv = saved
    return bench_vq


vq = bench_vq_module()
import bench_common  # noqa: E402
import datasets  # noqa: E402  (scripts/learned/datasets.py)
import image_metrics  # noqa: E402
import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.stats  # noqa: E402
import torch  # noqa: E402
from osgeo import gdal  # noqa: E402
from image_metrics import high_frequency_energy  # noqa: E402
from train_diffusion import scene_condition  # noqa: E402  (scripts/learned)

torch.set_num_threads(1)
ARGS.data = ARGS.data or datasets.DEFAULT_DATA
bm = bench_common.bench_multirate_module(1)   # psnr, fmt, jsonable
fmt = bm.fmt
VSI = "/vsimem/bench_diffusion"
REF, BASE, OWN, MR, JP2 = "refined", "base", "base file", "MULTIRATE", "JP2OpenJPEG"
CODECS = [REF, BASE, OWN, MR, JP2]
TIMED = [REF, BASE, MR, JP2]
TRUE = "true"
WINDOW, MAX_NODATA = 64, 0.10
JP2_STEPS = 12
SPEED_REPEATS = 1 if ARGS.quick else 3
QUICK_CROP = 384
CLASSIFIER = os.path.join(REPO, "models", "rdic-classifier-rgb8-v2")
LANDSAT7, OSBS, DOTA = ("geotiff/landsat7_rasterio/RGB.byte.tif", "aerial/deepforest/OSBS_029.tif",
                        "aerial/dota/unlabeled/mmrotate_dota_demo.jpg")
CO_KEYS = {"sun_elevation": "SUN_ELEVATION", "sun_azimuth": "SUN_AZIMUTH", "center_lat": "CENTER_LAT",
           "center_lon": "CENTER_LON", "gsd": "GSD"}
FLOORS = dict(fd_ratio=0.8, hf_tolerance=0.15, psnr_cost_db=0.5, speed_ratio=5.0, p_value=0.05)


log = bench_common.log


# ---------------------------------------------------------------------------------------------
# Conditions, encode, decode.

def scene_overrides(path):
    """-co overrides {NAME: value} that give another file this scene's known condition."""
    tool = os.path.join(ARGS.plugin_dir, "nsat_scene_condition")
    tool = tool if os.path.exists(tool) else os.path.join(REPO, "build", "nsat_scene_condition")
    condition = scene_condition(tool, path)
    value = lambda key: (condition.get(key) or {}).get("value")  # noqa: E731
    out = {name: f"{value(key):.6f}" for key, name in CO_KEYS.items() if value(key) is not None}
    if value("year") is not None and value("day_of_year") is not None:
        day = datetime.datetime(int(value("year")), 1, 1) + datetime.timedelta(days=float(value("day_of_year")) - 1,
                                                                             hours=float(value("hour_utc") or 0))
        out["ACQUISITION_DATETIME"] = f"{day:%Y-%m-%dT%H:%M:%SZ}"
    return out


def nsat_options(codec, rate=None, **extra):
    """NSAT creation options: CODEC, the rate option (KEY=VALUE), then extra {KEY: value} (None left out)."""
    options = [f"CODEC={codec}", "OVERVIEWS=NONE", "NUM_THREADS=1"] + ([rate] if rate else [])
    return options + [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items() if v is not None]


def diffusion_options(rate, noise, seed=None, overrides=None):
    return nsat_options("DIFFUSION", rate, MODEL=ARGS.model, NOISE=noise, NOISE_SEED=seed, **(overrides or {}))


def write(src, path, driver, options):
    gdal.Translate(path, src, format=driver, creationOptions=options)
    return gdal.VSIStatL(path).size


def open_file(path, open_options=()):
    nsat = path.endswith(".nsat")
    return gdal.OpenEx(path, gdal.OF_RASTER, open_options=(["NUM_THREADS=1", *open_options] if nsat else []))


def read(path, open_options=()):
    """(bands, H, W) array and the NSAT IMAGE_STRUCTURE metadata ({} for JP2OpenJPEG)."""
    ds = open_file(path, open_options)
    meta = (ds.GetMetadata("IMAGE_STRUCTURE") or {}) if path.endswith(".nsat") else {}
    array = ds.ReadAsArray()
    ds = None
    vq.note_models(meta)
    return array, meta


def codec_parameters(meta):
    return json.loads(meta.get("NSAT_CODEC_PARAMETERS") or "{}")


def probe_model():
    """(DIFFUSION model id, base codec) of a 16 px file written with -co MODEL=--model (or none)."""
    src = gdal.GetDriverByName("MEM").Create("", 16, 16, 3, gdal.GDT_Byte)
    path = f"{VSI}/probe.nsat"
    write(src, path, "NSAT", nsat_options("DIFFUSION", MODEL=ARGS.model, GSD=10))
    params = codec_parameters(read(path)[1])
    gdal.Unlink(path)
    return params["model"], params["base_codec"]


def multirate_matching(src, path, target):
    """Writes the CODEC=MULTIRATE file nearest to `target` bytes: bisection of the integer QUALITY
    1..100 (sizes taken as increasing in QUALITY). Returns (quality, bytes, saturated), saturated when
    even QUALITY 100 is smaller than the target."""
    sizes, last = {}, [None]

    def size(q):
        if q not in sizes:
            sizes[q], last[0] = write(src, path, "NSAT", nsat_options("MULTIRATE", f"QUALITY={q}")), q
        return sizes[q]

    saturated = size(100) < target
    if saturated:
        q = 100
    else:
        lo, hi = 1, 100     # size(hi) >= target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if size(mid) >= target else (mid, hi)
        q = min((lo, hi), key=lambda k: (abs(size(k) - target), k))
    if last[0] != q:
        write(src, path, "NSAT", nsat_options("MULTIRATE", f"QUALITY={q}"))
    return q, sizes[q], saturated


def jp2_matching(src, path, target, raw_bytes, width, height):
    """Writes the JP2OpenJPEG file nearest to `target` bytes: bisection of QUALITY (% of the raw
    size) in log space, starting at target / raw. Returns (quality, bytes)."""
    options = lambda q: vq.creation_options(vq.JP2, f"{q:.5g}", width=width, height=height)  # noqa: E731
    lo, hi = math.log(0.01), math.log(100.0)
    q = min(max(100.0 * target / raw_bytes, 0.01), 100.0)
    best = None
    for _ in range(JP2_STEPS):
        size = write(src, path, vq.JP2, options(q))
        if best is None or abs(size - target) < abs(best[1] - target):
            best = (q, size)
        if abs(size - target) <= 0.005 * target:
            break
        lo, hi = (lo, math.log(q)) if size > target else (math.log(q), hi)
        q = math.exp((lo + hi) / 2)
    if size != best[1]:
        write(src, path, vq.JP2, options(best[0]))
    return best


def timed_decode(path, open_options=()):
    """ms for ReadAsArray of a freshly opened file: one warm-up, median of SPEED_REPEATS."""
    read(path, open_options)
    times = []
    for _ in range(SPEED_REPEATS):
        ds = open_file(path, open_options)
        t0 = time.perf_counter()
        ds.ReadAsArray()
        times.append(time.perf_counter() - t0)
        ds = None
    return 1000.0 * statistics.median(times)


# ---------------------------------------------------------------------------------------------
# Measures.

class Classifier:
    """The land-cover classifier: its forward is classifier(mean_HW(features(x / 255)))."""

    def __init__(self):
        self.module = torch.jit.load(os.path.join(CLASSIFIER, "classifier.pt")).eval()
        with open(os.path.join(CLASSIFIER, "card.json")) as f:
            self.classes = json.load(f)["classes"]

    def __call__(self, stack):
        """(N, 3, 64, 64) uint8 -> pooled features (N, 128) float64, predicted class (N,)."""
        with torch.no_grad():
            pooled = self.module.features(torch.from_numpy(stack.astype(np.float32) / 255.0)).mean(dim=(2, 3))
            return pooled.numpy().astype(np.float64), self.module.classifier(pooled).argmax(1).numpy()


def frechet(a, b):
    """Frechet distance between Gaussians fitted to two feature sets (rows = samples)."""
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = scipy.linalg.sqrtm(ca @ cb, disp=False)
    if not np.isfinite(root).all():
        eps = 1e-6 * np.eye(len(ca))
        root, _ = scipy.linalg.sqrtm((ca + eps) @ (cb + eps), disp=False)
    d = a.mean(0) - b.mean(0)
    return float(d @ d + np.trace(ca + cb - 2.0 * root.real))


def scene_windows(valid):
    """(y, x) of the non-overlapping 64x64 windows with < 10 % nodata."""
    h, w = valid.shape
    return [(y, x) for y in range(0, h - WINDOW + 1, WINDOW) for x in range(0, w - WINDOW + 1, WINDOW)
            if 1.0 - valid[y:y + WINDOW, x:x + WINDOW].mean() < MAX_NODATA]


def measure(item, decoded, size, classify):
    """Per-image (per-scene) values and per-unit (image or window) arrays of one decode."""
    ref, valid = item["array"], item["valid"]
    filled = np.where(valid, decoded, ref)
    stack = np.stack([filled[:, y:y + WINDOW, x:x + WINDOW] for y, x in item["units"]])
    feats, preds = classify(stack)
    se, hf = [], []
    for y, x in item["units"]:
        v = valid[y:y + WINDOW, x:x + WINDOW]
        d = ref[:, y:y + WINDOW, x:x + WINDOW].astype(np.float64) - decoded[:, y:y + WINDOW, x:x + WINDOW]
        se.append(float(np.mean(d[:, v] ** 2)))
        hf.append(high_frequency_energy(stack[len(se) - 1].astype(np.float64)) if v.all() else np.nan)
    return dict(bytes=size, pixels=ref.shape[1] * ref.shape[2], psnr=bm.psnr(ref, decoded, valid, 255.0),
                msssim=image_metrics.msssim(ref, decoded, valid, 255.0)[0],
                se=np.array(se), hf=np.array(hf), feats=feats, preds=preds)


def summarize(records, original, labels):
    """One point from the per-item records of one setting (original: the same of the originals)."""
    cat = lambda key, rs: np.concatenate([r[key] for r in rs])  # noqa: E731
    feats, preds, hf, ohf = cat("feats", records), cat("preds", records), cat("hf", records), cat("hf", original)
    point = dict(n=len(records), units=len(preds), file_bytes=float(np.mean([r["bytes"] for r in records])),
                 bpp=8.0 * sum(r["bytes"] for r in records) / sum(r["pixels"] for r in records),
                 psnr=float(np.mean([r["psnr"] for r in records])),
                 msssim=float(np.mean([r["msssim"] for r in records])),
                 fd=frechet(cat("feats", original), feats),
                 hf_ratio=float(np.nansum(hf) / np.nansum(ohf)), hf_ratio_unit_mean=float(np.nanmean(hf / ohf)),
                 agreement=float(np.mean(preds == cat("preds", original))))
    if labels is not None:
        point["accuracy"] = float(np.mean(preds == labels))
    if "quality" in records[0]:     # MULTIRATE and JP2OpenJPEG at the DIFFUSION file's bytes
        point.update(quality_mean=float(np.mean([r["quality"] for r in records])),
                     target_bytes=float(np.mean([r["target"] for r in records])),
                     saturated=int(sum(r.get("saturated", False) for r in records)))
    return point


# ---------------------------------------------------------------------------------------------
# Datasets.

def eurosat_items():
    rgb = datasets.EuroSatRgb(ARGS.data, "test")
    classes = Classifier().classes
    for i in datasets.eval_indices(rgb, ARGS.eurosat_count):
        array = rgb.raw(i)
        yield dict(name=rgb.name(i), array=array, valid=np.ones(array.shape[1:], bool), units=[(0, 0)],
                   src=vq.mem_dataset(array), label=classes.index(rgb.rows[i][0]))


def scene_item(key, rel):
    """A scene's bands 1-3 (a centre crop with --quick); all-zero pixels are nodata."""
    src_win = None
    if ARGS.quick:
        ds = gdal.Open(os.path.join(ARGS.data, rel))
        side = min(QUICK_CROP, ds.RasterXSize, ds.RasterYSize)
        src_win = [(ds.RasterXSize - side) // 2, (ds.RasterYSize - side) // 2, side, side]
        ds = None
    src = gdal.Translate(f"{VSI}/{key}.tif", os.path.join(ARGS.data, rel), format="GTiff", bandList=[1, 2, 3],
                         srcWin=src_win)
    array = src.ReadAsArray()
    valid = array.any(axis=0)
    return dict(name=key, array=array, valid=valid, units=scene_windows(valid), src=src, label=None)


# ---------------------------------------------------------------------------------------------
# One dataset.

def variants(rate, shuffles, sweep):
    """(NOISE, condition, NOISE_SEED) of the DIFFUSION files at one rate: the main file (default
    seed), the ablation (true and shuffled conditions, one explicit seed) and, at the sweep rate,
    the NOISE sweep (default seed)."""
    out = [(ARGS.noise, TRUE, None)] + [(ARGS.noise, c, ARGS.ablation_seed) for c in (TRUE, *shuffles)]
    if sweep and rate == ARGS.sweep_rate:
        out += [(n, TRUE, None) for n in sweep_noises()]
    return list(dict.fromkeys(out))


def code_rate(item, rate, stem, overrides, shuffles, sweep, classify, records, checks, first):
    """Writes and decodes every file of one item at one rate, appending measures to records keyed
    (codec, rate, noise, condition, seed) and to checks (conditions, sigma, seed: first item only).
    Returns {codec: (path, bytes)} of the main files (left on disk), {codec: decode} and (base codec,
    base model) read from the DIFFUSION file."""
    files, decodes, main_meta = {}, {}, None
    for noise, cond, seed in variants(rate, shuffles, sweep):
        main = (noise, cond, seed) == (ARGS.noise, TRUE, None)
        path = f"{stem}.nsat" if main else f"{stem}_{cond}_{noise:g}_{seed}.nsat"
        size = write(item["src"], path, "NSAT", diffusion_options(rate, noise, seed, {**overrides,
                                                                                       **shuffles.get(cond, {})}))
        decoded, meta = read(path)
        records[(REF, rate, noise, cond, seed)].append(measure(item, decoded, size, classify))
        params = codec_parameters(meta)
        if first:
            name = f"{rate} {cond} noise {noise:g} seed {seed or 'default'}"
            checks["conditions"][name] = {k[len("NSAT_CONDITION_"):]: v for k, v in meta.items()
                                          if k.startswith("NSAT_CONDITION_")}
            checks["sigma"][name], checks["seed"][name] = params.get("sigma"), params.get("noise_seed")
        if main:
            files[REF] = files[BASE] = (path, size)
            decodes[REF], main_meta = decoded, params
        else:
            gdal.Unlink(path)
    decodes[BASE] = read(files[BASE][0], ["REFINEMENT=NO"])[0]
    base_codec, base_model = main_meta["base_codec"], main_meta["base"]["model"]
    own = f"{stem}_own.nsat"
    files[OWN] = (own, write(item["src"], own, "NSAT", nsat_options(base_codec, rate, MODEL=base_model)))
    decodes[OWN] = read(own)[0]
    same = np.array_equal(decodes[BASE], decodes[OWN])
    counts = checks["base_equals_own"].setdefault(rate, [0, 0])
    counts[0], counts[1] = counts[0] + int(same), counts[1] + 1
    target, (height, width) = files[REF][1], item["array"].shape[1:]
    mr_q, mr_size, saturated = multirate_matching(item["src"], f"{stem}_mr.nsat", target)
    jp2_q, jp2_size = jp2_matching(item["src"], f"{stem}.jp2", target, item["array"].nbytes, width, height)
    files[MR], files[JP2] = (f"{stem}_mr.nsat", mr_size), (f"{stem}.jp2", jp2_size)
    decodes[MR], decodes[JP2] = read(files[MR][0])[0], read(files[JP2][0])[0]
    base_rec = measure(item, decodes[BASE], files[BASE][1], classify)
    recs = {BASE: base_rec,
            OWN: dict(base_rec, bytes=files[OWN][1]) if same else measure(item, decodes[OWN], files[OWN][1], classify),
            MR: dict(measure(item, decodes[MR], mr_size, classify), quality=mr_q, target=target, saturated=saturated),
            JP2: dict(measure(item, decodes[JP2], jp2_size, classify), quality=jp2_q, target=target)}
    for codec, rec in recs.items():
        records[(codec, rate, None, TRUE, None)].append(rec)
    return files, decodes, (base_codec, base_model)


def run_dataset(key, items, overrides, shuffles, workdir, timing, sweep, keep=False):
    """Codes every item at every setting. overrides: the true -co condition; shuffles: {name:
    overrides}. Returns the dataset's entry (points, tests, checks, speed) and, with keep, the
    decodes {codec: array} of the first item at the sweep rate (crops)."""
    classify = Classifier()
    records, originals, labels, kept, speed = defaultdict(list), [], [], {}, []
    checks = dict(conditions={}, sigma={}, seed={}, base_equals_own={})
    for index, item in enumerate(items):
        originals.append(measure(item, item["array"], 0, classify))
        labels.append(item["label"])
        for r, rate in enumerate(ARGS.rates):
            files, decodes, base = code_rate(item, rate, f"{workdir}/{key}_{index}_r{r}", overrides, shuffles, sweep,
                                             classify, records, checks, index == 0)
            checks["base"] = base
            if timing:   # ms per megapixel of the main files, refined and base from the same file
                speed.append(dict(rate=rate, bytes={c: files[c][1] for c in (REF, OWN, MR, JP2)}, **{
                    c: timed_decode(files[c][0], ["REFINEMENT=NO"] if c == BASE else ()) / item["array"][0].size * 1e6
                    for c in TIMED}))
                log(f"  {key} {rate} decode ms/MP: " + ", ".join(f"{c} {speed[-1][c]:.0f}" for c in TIMED))
            if keep and index == 0 and rate == ARGS.sweep_rate:
                kept = dict(decodes, original=item["array"])
            for path, _ in files.values():
                if gdal.VSIStatL(path) is not None:
                    gdal.Unlink(path)
        if (index + 1) % 50 == 0:
            log(f"  {key}: {index + 1} images")
    labels = np.array(labels) if labels[0] is not None else None
    points = [dict(codec=c, rate=r, noise=n, condition=cond, seed=s, **summarize(recs, originals, labels))
              for (c, r, n, cond, s), recs in records.items()]
    cat = lambda name: np.concatenate([o[name] for o in originals])  # noqa: E731
    return dict(points=points, tests=paired_tests(records, labels, shuffles), checks=checks, speed=speed,
                overrides=overrides, shuffles=shuffles, sweep=sweep, items=len(originals),
                units=len(cat("preds")), hf_units=int(np.isfinite(cat("hf")).sum()),
                original_accuracy=None if labels is None else float(np.mean(cat("preds") == labels))), kept


def sweep_noises():
    return sorted(set(ARGS.sweep_noises) | {ARGS.noise})


def paired_tests(records, labels, shuffles):
    """Per rate: McNemar refined vs base (labels), and shuffled vs true metadata (same explicit
    noise seed) on the per-unit mean squared error (t-test and sign test)."""
    cat = lambda key, rs: np.concatenate([r[key] for r in rs])  # noqa: E731
    tests = []
    for rate in ARGS.rates:
        row = dict(rate=rate)
        if labels is not None:
            ref, base = records[(REF, rate, ARGS.noise, TRUE, None)], records[(BASE, rate, None, TRUE, None)]
            r_ok, b_ok = cat("preds", ref) == labels, cat("preds", base) == labels
            b, c = int((b_ok & ~r_ok).sum()), int((r_ok & ~b_ok).sum())
            row["mcnemar"] = dict(base_only=b, refined_only=c, p=bench_common.mcnemar_p(b, c))
        true_se = cat("se", records[(REF, rate, ARGS.noise, TRUE, ARGS.ablation_seed)])
        for name in shuffles:
            shuffled_se = cat("se", records[(REF, rate, ARGS.noise, name, ARGS.ablation_seed)])
            diff = shuffled_se - true_se
            pos, neg = int((diff > 0).sum()), int((diff < 0).sum())
            row[f"shuffle_{name}"] = dict(
                mean_se_diff=float(diff.mean()), worse=pos, better=neg, sign_p=bench_common.mcnemar_p(pos, neg),
                t_p=float(scipy.stats.ttest_rel(shuffled_se, true_se).pvalue) if len(diff) > 1 else None)
        tests.append(row)
    return tests


# ---------------------------------------------------------------------------------------------
# Floors.

def point(entry, codec, rate, cond=TRUE, noise="main", seed=None):
    noise = (ARGS.noise if codec == REF else None) if noise == "main" else noise
    return next(p for p in entry["points"]
                if (p["codec"], p["rate"], p["noise"], p["condition"], p["seed"]) == (codec, rate, noise, cond, seed))


def downstream(p):
    return ("accuracy", p["accuracy"]) if "accuracy" in p else ("agreement", p["agreement"])


def floors(entry):
    rows = []
    for rate in ARGS.rates:
        ref, base = point(entry, REF, rate), point(entry, BASE, rate)
        test = next(t for t in entry["tests"] if t["rate"] == rate)
        shuffled = [test[f"shuffle_{s}"] for s in entry["shuffles"]]
        worse = [s["mean_se_diff"] > 0 and s["sign_p"] < FLOORS["p_value"] for s in shuffled]
        speed = next((s for s in entry["speed"] if s["rate"] == rate), None)
        metric, value = downstream(ref)
        rows.append(dict(
            rate=rate, mcnemar=test.get("mcnemar"), fd_ratio=ref["fd"] / base["fd"] if base["fd"] > 0 else None,
            hf_ratio=ref["hf_ratio"], downstream=(metric, value, base[metric]),
            psnr_cost=base["psnr"] - ref["psnr"], shuffle=[(s["mean_se_diff"], s["sign_p"]) for s in shuffled],
            speed_ratio=speed[REF] / speed[MR] if speed else None,
            met=dict(fd=ref["fd"] <= FLOORS["fd_ratio"] * base["fd"],
                     hf=abs(ref["hf_ratio"] - 1.0) <= FLOORS["hf_tolerance"],
                     downstream=value >= base[metric],
                     psnr=base["psnr"] - ref["psnr"] <= FLOORS["psnr_cost_db"],
                     shuffle=all(worse) if worse else None,
                     speed=(speed[REF] <= FLOORS["speed_ratio"] * speed[MR]) if speed else None)))
    return rows


# ---------------------------------------------------------------------------------------------
# Plots and crops.

def save(fig, path, title):
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot(results, out):
    written = []
    metrics = (("psnr", "PSNR (dB, peak 255)"), ("fd", "Frechet distance (classifier features)"),
               ("hf_ratio", "HF energy ratio (decoded / original)"))
    for key, entry in results["datasets"].items():
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
        for codec, style in zip(CODECS, ("o-", "s--", "x:", "^-", "d-")):
            pts = sorted((point(entry, codec, r) for r in ARGS.rates), key=lambda p: p["bpp"])
            for ax, (m, label) in zip(axes, metrics):
                ax.plot([p["bpp"] for p in pts], [p[m] for p in pts], style, label=codec, markersize=4)
                ax.set(xlabel="bits per pixel (file)", ylabel=label)
        axes[2].axhspan(1 - FLOORS["hf_tolerance"], 1 + FLOORS["hf_tolerance"], color="g", alpha=0.1)
        for ax in axes:
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        written.append(save(fig, os.path.join(out, f"rd_{key}.png"),
                            f"{key}: {entry['description']} (refined NOISE {ARGS.noise:g})"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    noises = sweep_noises()
    for key, entry in results["datasets"].items():
        if not entry["sweep"]:
            continue
        base = point(entry, BASE, ARGS.sweep_rate)
        pts = [point(entry, REF, ARGS.sweep_rate, noise=n) for n in noises]
        for ax, values in zip(axes, ([base["psnr"] - p["psnr"] for p in pts], [p["fd"] / base["fd"] for p in pts],
                                     [p["hf_ratio"] for p in pts])):
            ax.plot(noises, values, "o-", label=key)
    for ax, label, ref, floor in zip(axes, ("PSNR cost, base - refined (dB)", "FD refined / base",
                                            "HF energy ratio (decoded / original)"), (0, 1, 1),
                                     (FLOORS["psnr_cost_db"], FLOORS["fd_ratio"], None)):
        ax.axhline(ref, color="k", lw=0.8, ls=":")
        if floor is not None:
            ax.axhline(floor, color="r", lw=0.8, ls="--", label="floor")
        else:
            ax.axhspan(1 - FLOORS["hf_tolerance"], 1 + FLOORS["hf_tolerance"], color="g", alpha=0.1)
        ax.set(xlabel="NOISE (sigma)", ylabel=label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return written + [save(fig, os.path.join(out, "noise_sweep.png"), f"NOISE sweep at {ARGS.sweep_rate}")]


def render_crop(kept, path, side=128, scale=2):
    """original | base | refined | MULTIRATE | JP2 at equal bytes, a centre crop, x2 nearest."""
    h, w = kept["original"].shape[1:]
    y, x = (h - side) // 2, (w - side) // 2
    names = ("original", BASE, REF, MR, JP2)
    fig, axes = plt.subplots(1, len(names), figsize=(len(names) * side * scale / 100 + 0.4, side * scale / 100 + 0.7))
    for ax, name in zip(axes, names):
        crop = kept[name][:, y:y + side, x:x + side].transpose(1, 2, 0)
        ax.imshow(np.repeat(np.repeat(crop, scale, 0), scale, 1), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    return save(fig, path, f"{ARGS.sweep_rate}, NOISE {ARGS.noise:g}: {side}x{side} centre crop, x{scale} nearest; "
                "MULTIRATE and JP2OpenJPEG at the DIFFUSION file's bytes")


# ---------------------------------------------------------------------------------------------
# Report.

def verdict(met):
    return "n/a" if met is None else ("met" if met else "**not met**")


def table(add, header, rows):
    add("| " + " | ".join(header) + " |")
    add("|" + "---|" * len(header))
    for row in rows:
        add("| " + " | ".join(map(str, row)) + " |")
    add("")


def setting(p, codec, rate):
    if codec == MR:
        return f"QUALITY {p['quality_mean']:.3g}" + (f", saturated {p['saturated']}/{p['n']}" if p["saturated"] else "")
    return f"QUALITY {p['quality_mean']:.3g} %" if codec == JP2 else rate


def report(results, out):
    lines = []
    add = lines.append
    meta, m, sets = results["meta"], results["meta"]["machine"], results["datasets"]
    add("# NSAT CODEC=DIFFUSION: base decode, refined decode, MULTIRATE and JP2OpenJPEG")
    add("")
    add(f"- Date: {meta['date']}. Wall time {meta['elapsed_s']:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in meta["sections_s"].items()) + ").")
    add(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, SIMD {'/'.join(m['simd']) or 'none'}, "
        f"{m['system']}; load average {meta['load_at_start']} at start, {meta['load_at_end']} at end (shared "
        "with a training job: timings are indicative).")
    add(f"- GDAL {meta['gdal']}, numpy {meta['numpy']}, torch {torch.__version__}, Python {m['python']}. Plugin "
        f"`{meta['plugin']}`; NSAT_MODELS_DIR `{meta['models_dir']}`. Command: `{meta['command']}`.")
    add(f"- Model `{meta['model']}` ({'-co MODEL' if ARGS.model else 'the codec default, no MODEL option'}), base "
        f"codec {meta['base_codec']} (NSAT_CODEC_PARAMETERS base_codec) with model `{meta['base_model']}`. Rates "
        f"{', '.join(ARGS.rates)}. Main NOISE {ARGS.noise:g} ({meta['noise_source']}), default noise seed (derived "
        f"from the condition); ablation NOISE_SEED={ARGS.ablation_seed}; NOISE sweep {sweep_noises()} at "
        f"{ARGS.sweep_rate}.")
    add("- Models named by the files (NSAT_MODELS: id, card.json sha256) against the card on the search path: "
        + "; ".join(f"`{i}` `{', '.join(h)}` ({'same as' if c and [c['sha256']] == h else '**differs from**'} "
                    f"`{c['path'] if c else 'none'}`)" for i, h in sorted(results["models"].items())
                    for c in [vq.find_card(i)])
        + ". Classifier `rdic-classifier-rgb8-v2`, card sha256 "
        f"`{bench_common.file_sha256(os.path.join(CLASSIFIER, 'card.json'))}`.")
    for key, e in sets.items():
        add(f"- **{key}**: {e['description']}; {e['items']} file(s), {e['units']} classifier unit(s), "
            f"{e['hf_units']} HF unit(s)" + ("" if e["original_accuracy"] is None else
                                            f", classifier accuracy on the originals {e['original_accuracy']:.3f}")
            + f". True condition -co `{e['overrides'] or '(from the file)'}`; "
            + "; ".join(f"shuffle `{s}` -co `{o}`" for s, o in e["shuffles"].items()) + ".")
    add("")
    add("## Floors: refined vs base decode of the same DIFFUSION file (equal bytes)")
    add("")
    table(add, ["dataset", "rate", "FD refined / base (<= 0.8)", "HF ratio refined (1 +- 0.15)",
                "downstream refined vs base (not lower)", "PSNR cost dB (<= 0.5)",
                "shuffled - true MSE, sign p (worse, p < 0.05)", "decode refined / MULTIRATE (<= 5)"],
          [[key, r["rate"], f"{fmt(r['fd_ratio'], 2)} {verdict(r['met']['fd'])}",
            f"{r['hf_ratio']:.3f} {verdict(r['met']['hf'])}",
            "{} {:.3f} vs {:.3f}".format(*r["downstream"]) + (" (McNemar {base_only} / {refined_only}, p {p:.2g})"
                                                               .format(**r["mcnemar"]) if r["mcnemar"] else "")
            + " " + verdict(r["met"]["downstream"]),
            f"{r['psnr_cost']:.2f} {verdict(r['met']['psnr'])}",
            ", ".join(f"{d:+.2f} (p {p:.2g})" for d, p in r["shuffle"]) + f" {verdict(r['met']['shuffle'])}",
            f"{fmt(r['speed_ratio'], 2)} {verdict(r['met']['speed'])}"]
           for key, e in sets.items() for r in e["floors"]])
    add("Compared: *FD*: Frechet distance of the refined decode's classifier features to the originals' over the base "
        "decode's (REFINEMENT=NO, same file). *HF*: the refined decode's high-frequency energy over the original's, "
        "met within [0.85, 1.15]. *Downstream*: EuroSAT accuracy against the labels, scenes: agreement of the "
        "per-window labels with the original's; met when refined >= base; McNemar: images only the base / only "
        "the refined decode classifies right, exact two-sided p. *PSNR cost*: base - refined PSNR (mean "
        "over images). *Shuffled*: per-unit MSE of the refined decode coded with each other scene's condition minus "
        f"with the true one, both NOISE_SEED={ARGS.ablation_seed}; met when every shuffle is worse on average with a "
        "sign test p < 0.05. *Decode*: refined ms/MP over the MULTIRATE file's at the DIFFUSION file's bytes "
        "(scenes only).")
    add("")
    add("## Rate-distortion (main NOISE, true metadata)")
    add("")
    add(f"base file: the {meta['base_codec']} file at the same rate (its own bytes; pixels = the base decode's, see "
        "the checks). MULTIRATE and JP2OpenJPEG: bisected to each DIFFUSION file's bytes, setting = mean QUALITY "
        "(saturated: QUALITY 100 still below the target, used as is). HF ratio: sum of the decodes' over the sum of "
        "the originals' high-frequency energy; HF unit mean: mean of the per-image (per-window) ratios, the model "
        "card's definition, which smooth images dominate.")
    add("")
    table(add, ["dataset", "rate", "codec", "setting", "file bytes (mean)", "bpp", "PSNR", "MS-SSIM", "FD",
                "HF ratio", "HF unit mean", "accuracy", "agreement"],
          [[key, r, c, setting(p, c, r), f"{p['file_bytes']:.0f}", f"{p['bpp']:.4f}", f"{p['psnr']:.2f}",
            f"{p['msssim']:.4f}", f"{p['fd']:.3f}", f"{p['hf_ratio']:.3f}", fmt(p["hf_ratio_unit_mean"], 3),
            fmt(p.get("accuracy"), 3), f"{p['agreement']:.3f}"]
           for key, e in sets.items() for r in ARGS.rates for c in CODECS for p in [point(e, c, r)]])
    add(f"## Metadata ablation (NOISE {ARGS.noise:g}, NOISE_SEED={ARGS.ablation_seed} for true and shuffled)")
    add("")
    add("The refined decode of the same image coded with another scene's condition against the true one, the noise "
        "draw held fixed. MSE difference = shuffled - true per image (window); worse / better = units with a "
        "positive / negative difference; sign test (exact binomial) and paired t-test p.")
    add("")
    rows = []
    for key, e in sets.items():
        for t in e["tests"]:
            true = point(e, REF, t["rate"], seed=ARGS.ablation_seed)
            for s in e["shuffles"]:
                sh, r = point(e, REF, t["rate"], cond=s, seed=ARGS.ablation_seed), t[f"shuffle_{s}"]
                rows.append([key, t["rate"], s, f"{true['psnr']:.2f} / {sh['psnr']:.2f}",
                             f"{true['fd']:.3f} / {sh['fd']:.3f}", f"{true['hf_ratio']:.3f} / {sh['hf_ratio']:.3f}",
                             f"{r['mean_se_diff']:+.3f}", f"{r['worse']} / {r['better']}", f"{r['sign_p']:.3g}",
                             fmt(r["t_p"], 3)])
    table(add, ["dataset", "rate", "shuffle", "PSNR true / shuffled", "FD true / shuffled", "HF true / shuffled",
                "mean MSE diff", "worse / better", "sign p", "t-test p"], rows)
    add(f"## NOISE sweep ({ARGS.sweep_rate}, true metadata, default seed)")
    add("")
    add("PSNR cost = base - refined; FD ratio = refined / base FD; downstream: EuroSAT accuracy, scenes agreement, "
        "refined (base).")
    add("")
    rows = []
    for key, e in sets.items():
        if not e["sweep"]:
            continue
        base = point(e, BASE, ARGS.sweep_rate)
        for n in sweep_noises():
            p = point(e, REF, ARGS.sweep_rate, noise=n)
            sigma = e["checks"]["sigma"].get(f"{ARGS.sweep_rate} {TRUE} noise {n:g} seed default")
            metric, value = downstream(p)
            rows.append([key, f"{n:g}", fmt(sigma, 4), f"{p['psnr']:.2f}", f"{base['psnr'] - p['psnr']:.2f}",
                         f"{p['fd']:.3f}", f"{p['fd'] / base['fd']:.2f}", f"{p['hf_ratio']:.3f}",
                         f"{metric} {value:.3f} ({base[metric]:.3f})"])
        rows.append([key, "base", "n/a", f"{base['psnr']:.2f}", "0", f"{base['fd']:.3f}", "1",
                     f"{base['hf_ratio']:.3f}", "{} {:.3f}".format(*downstream(base))])
    table(add, ["dataset", "NOISE", "sigma in the file", "PSNR", "PSNR cost dB", "FD", "FD ratio", "HF ratio",
                "downstream refined (base)"], rows)
    add(f"## Decode time (ms per megapixel, one thread, median of {SPEED_REPEATS} after a warm-up)")
    add("")
    table(add, ["dataset", "rate", *TIMED, "refined / MULTIRATE", "bytes DIFFUSION / base file / MULTIRATE / JP2"],
          [[key, s["rate"], *(f"{s[c]:.0f}" for c in TIMED), f"{s[REF] / s[MR]:.2f}",
            " / ".join(str(s["bytes"][c]) for c in (REF, OWN, MR, JP2))]
           for key, e in sets.items() for s in e["speed"]])
    add("## Checks and notes")
    add("")
    for key, e in sets.items():
        extra = [point(e, REF, r)["file_bytes"] - point(e, OWN, r)["file_bytes"] for r in ARGS.rates]
        conditions = e["checks"]["conditions"]
        add(f"- {key}: REFINEMENT=NO decode pixel-identical to the {e['checks']['base'][0]} file's: " + ", ".join(
            f"{r} {n[0]}/{n[1]}" for r, n in e["checks"]["base_equals_own"].items())
            + f". DIFFUSION file - {e['checks']['base'][0]} file: {min(extra):+.0f} .. {max(extra):+.0f} bytes (mean; "
            "same payload, larger header). NSAT_CONDITION_* of its first file: " + "; ".join(
                f"{c}: GSD {conditions[n].get('GSD')}, lat {conditions[n].get('CENTER_LAT')}, lon "
                f"{conditions[n].get('CENTER_LON')}" for c in (TRUE, *e["shuffles"])
                for n in [f"{ARGS.rates[0]} {c} noise {ARGS.noise:g} seed {ARGS.ablation_seed}"])
            + ". Noise seeds in its first files: " + ", ".join(
                sorted({f"{v}" + (" (explicit)" if v == ARGS.ablation_seed else " (derived)")
                        for v in e["checks"]["seed"].values()})) + ".")
    for note in results["notes"]:
        add(f"- {note}")
    add("")
    add(f"Plots: {', '.join(meta['plots'])} (crop: original | base | refined | MULTIRATE | JP2OpenJPEG, the last two "
        f"at the DIFFUSION file's bytes, {ARGS.sweep_rate}, 128x128 at the centre, x2 nearest). All points: "
        "results.json.")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------

def resolve_model():
    """Fills --rates, --sweep-rate and --noise from the model (probe file and card); returns
    (model id, base codec, noise source)."""
    model, base_codec = probe_model()
    rates = (ARGS.rates or DEFAULT_RATES[base_codec]).split(",")
    ARGS.sweep_rate = ARGS.sweep_rate or rates[len(rates) // 2]
    ARGS.rates = [ARGS.sweep_rate, rates[-1]] if ARGS.quick and ARGS.sweep_rate != rates[-1] else rates
    if ARGS.sweep_rate not in ARGS.rates:
        ARGS.rates.append(ARGS.sweep_rate)
    card = vq.find_card(model)
    source = "--noise"
    if ARGS.noise is None:
        ARGS.noise, source = float(card["card"]["decode"]["sigma"]), f"the card's default, {card['path']}"
    return model, base_codec, source


def main():
    out = os.path.abspath(ARGS.out)
    os.makedirs(out, exist_ok=True)
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit(f"NSAT driver not found (GDAL_DRIVER_PATH={os.environ['GDAL_DRIVER_PATH']})")
    model, base_codec, noise_source = resolve_model()
    log(f"model {model} (base {base_codec}), rates {ARGS.rates}, NOISE {ARGS.noise:g}, sweep at {ARGS.sweep_rate}")
    start = time.perf_counter()
    results = dict(meta=dict(**bench_common.run_metadata(), model=model, base_codec=base_codec,
                             noise_source=noise_source, sections_s={}, args=dict(vars(ARGS))), datasets={}, notes=[])
    landsat_co, osbs_co = (scene_overrides(os.path.join(ARGS.data, p)) for p in (LANDSAT7, OSBS))
    crop_note = f", centre {QUICK_CROP}x{QUICK_CROP} crop (--quick)" if ARGS.quick else ""
    results["notes"].append(
        f"dota: {DOTA} has no georeferencing; its true metadata is taken as -co GSD=0.25 (DOTA's Google Earth "
        "imagery, about 0.1-0.3 m), no position. The file was JPEG re-encoded once upstream (mmrotate demo), so its "
        "'original' carries JPEG artefacts.")
    # (key, description, items, true -co, shuffles, workdir (None: on disk), timing, NOISE sweep, crop)
    plan = [("eurosat", "EuroSAT RGB test images 64x64, -co GSD=10", eurosat_items, {"GSD": "10"},
             {"osbs029": osbs_co, "landsat7": landsat_co}, VSI, False, True, False),
            ("landsat7", f"{LANDSAT7}, all-zero collar masked{crop_note}", lambda: [scene_item("landsat7", LANDSAT7)],
             {}, {"osbs029": osbs_co}, None, True, False, True),
            ("osbs029", f"{OSBS} (NEON 0.1 m aerial, georeferenced){crop_note}", lambda: [scene_item("osbs029", OSBS)],
             {}, {"landsat7": landsat_co}, None, True, True, True),
            ("dota", f"{DOTA} (aerial, no georeferencing, JPEG), -co GSD=0.25{crop_note}",
             lambda: [scene_item("dota", DOTA)], {"GSD": "0.25"}, {"landsat7": landsat_co}, None, True, True, False)]
    with tempfile.TemporaryDirectory(prefix="bench_diffusion_") as tmp:
        for key, description, items, overrides, shuffles, workdir, timing, sweep, crop in plan:
            t0 = time.perf_counter()
            log(f"{key}: {description}")
            entry, kept = run_dataset(key, items(), overrides, shuffles, workdir or tmp, timing, sweep, keep=crop)
            entry.update(description=description, floors=floors(entry))
            results["datasets"][key] = entry
            if kept:
                results["meta"].setdefault("crops", []).append(os.path.basename(
                    render_crop(kept, os.path.join(out, f"crop_{key}.png"))))
            results["meta"]["sections_s"][key] = time.perf_counter() - t0
            log(f"  {key}: {results['meta']['sections_s'][key]:.0f} s")
    results["meta"]["base_model"] = next(iter(results["datasets"].values()))["checks"]["base"][1]
    for name in gdal.ReadDirRecursive(VSI) or []:
        gdal.Unlink(f"{VSI}/{name}")
    results["models"] = {k: sorted(v) for k, v in vq.MODELS_SEEN.items()}
    results["meta"].update(load_at_end="/".join(f"{x:.2f}" for x in os.getloadavg()),
                           elapsed_s=time.perf_counter() - start)
    bench_common.save_results(results, out, plot, report, bm.jsonable,
                              extra_files=results["meta"].get("crops", []))


if __name__ == "__main__":
    main()
