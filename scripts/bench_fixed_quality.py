#!/usr/bin/python3
"""Fixed-quality benchmark of NSAT CODEC=FIXED_QUALITY (Mijares i Verdu et al. 2024, IEEE JSTARS,
"Fixed-Quality Compression of Remote Sensing Images With Neural Networks"), Table II extended.

For each dataset, QUALITY_BLOCK in (GLOBAL, 64, 32, 16) and REFINE in (0, 4), every image is
written with CODEC=FIXED_QUALITY TARGET_PSNR=<target> and decoded again; the PSNR of every
quality block is measured here from the decoded pixels against the original (MSE over the
bands of the block's band group, peak 255 for Byte and 65535 for 16-bit), never taken from the
file. The PSNR the file stores per block (subdataset NSAT_AUX:<path>) is only compared with the
measurement as a sanity check.

Controllability. The model reaches only a narrow PSNR range per block between its lambda_min
and lambda_max, so each block is classified from two uniform-lambda CODEC=MULTIRATE encodings
(LAMBDA=lambda_min and LAMBDA=lambda_max, measured on the same block grid):
  unreachable   PSNR(lambda_max) < target
  over          PSNR(lambda_min) > target (the block cannot be made worse)
  controllable  otherwise (PSNR(lambda_min) <= target <= PSNR(lambda_max))
Statistics of (achieved - target) are reported over controllable blocks and over all blocks.

Target per dataset: the median over 16 px blocks of (PSNR(lambda_min) + PSNR(lambda_max)) / 2,
rounded to 0.1 dB (or --target-<dataset>).

Rate cost. MULTIRATE is encoded at a grid of uniform lambdas, log-spaced from lambda_min to
lambda_max (the model's card.json). For each FIXED_QUALITY setting, the uniform lambda with the
same mean block PSNR (all blocks, on that setting's block grid, pooled over the images) is found
by piecewise-linear interpolation of log(lambda) and log(bpp) against mean block PSNR; the cost
is payload bpp(FIXED_QUALITY) / payload bpp(MULTIRATE) - 1 (FIXED_QUALITY's side information,
its lambda map and PSNR map, is inside the payload).

Datasets
  landsat8     autotest/data/landsat8_b4_uint16.tif (1550x1578, 1 x UInt16). It declares no
               nodata; Landsat Level-1 uses DN 0 as fill, so 0 is treated as nodata
               (--landsat-fill none to disable): such pixels are left out of every block MSE and
               blocks with no valid pixel are skipped.
  eurosat_ms   first N (default 12 of 24, for time) images of the test split of
               <data>/eurosat_ms_splits.csv, 64x64, 13 x UInt16 (band groups: one per band).
  eurosat_rgb  first N images of the test split of <data>/eurosat_rgb_splits.csv (64x64 RGB
               JPEGs, each first copied to an in-memory GTiff so every encoding gets the same Byte
               input).
  naip         autotest/data/naip_4band_byte.tif (934x724, 4 x Byte; groups: bands 1-3, band 4).

Every NSAT file is written with OVERVIEWS=NONE and BLOCKSIZE=256 (so GLOBAL = one lambda per
256 px tile: the whole image for the 64x64 EuroSAT images, per tile for the scenes).

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_fixed_quality.py [--data ../shared/data]
        [--out scripts/results/fixed_quality] [--eurosat-rgb-images 60] [--eurosat-ms-images 12]
        [--lambdas 6] [--threads 2] [--datasets landsat8,eurosat_ms,eurosat_rgb,naip] [--quick]

Outputs in --out: report.md, results.json, hist_16px_controllable.png, hist_16px_all.png.
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET_KEYS = ["landsat8", "eurosat_ms", "eurosat_rgb", "naip"]
# All 24 EuroSAT MS test images made the default run take 26 minutes on 2 shared cores (the 13
# bands are coded one by one); half of them keeps it under ~25 minutes.
EUROSAT_MS_DEFAULT = 12


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")),
                        help="data folder (default: ../shared/data from the repository root)")
    parser.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "fixed_quality"),
                        help="output folder (default: scripts/results/fixed_quality)")
    parser.add_argument("--datasets", default=",".join(DATASET_KEYS),
                        help="comma-separated subset of " + ",".join(DATASET_KEYS))
    parser.add_argument("--eurosat-rgb-images", type=int, default=60,
                        help="first N images of the EuroSAT RGB test split (default 60)")
    parser.add_argument("--eurosat-ms-images", type=int, default=EUROSAT_MS_DEFAULT,
                        help=f"first N images of the EuroSAT MS test split (default "
                             f"{EUROSAT_MS_DEFAULT} of 24, to keep the run under ~25 minutes)")
    parser.add_argument("--lambdas", type=int, default=6,
                        help="uniform MULTIRATE lambdas, log-spaced over the model range (default 6)")
    parser.add_argument("--landsat-fill", default="0",
                        help="Landsat value treated as nodata when the file declares none "
                             "(default 0, the Level-1 fill value; 'none' to disable)")
    for key in DATASET_KEYS:
        parser.add_argument(f"--target-{key.replace('_', '-')}", type=float, default=None,
                            help=f"TARGET_PSNR for {key} (default: automatic, see above)")
    parser.add_argument("--extra-refine", type=int, default=None,
                        help="one extra row, QUALITY_BLOCK=16 with this REFINE, to see whether more "
                             "closed-loop passes help (default 4, with --quick 0; 0 = none)")
    parser.add_argument("--blocksize", type=int, default=256, help="NSAT BLOCKSIZE (default 256)")
    parser.add_argument("--threads", type=int, default=2,
                        help="NSAT NUM_THREADS and GDAL_NUM_THREADS (default 2)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite report.md from the results.json in --out (no encoding; the "
                             "PNGs are kept as they are)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test (about 2 minutes): 3 EuroSAT RGB images, 1 EuroSAT MS "
                             "image, 256x256 windows of the scenes, 3 lambdas, no extra row")
    args = parser.parse_args()
    if args.extra_refine is None:
        args.extra_refine = 0 if args.quick else 4
    return args


ARGS = parse_args()
# Must be set before osgeo is imported: GDAL scans GDAL_DRIVER_PATH when it registers drivers.
os.environ.setdefault("GDAL_DRIVER_PATH", os.path.join(REPO, "build"))
os.environ["GDAL_PAM_ENABLED"] = "NO"  # no .aux.xml side files
os.environ["GDAL_NUM_THREADS"] = str(ARGS.threads)

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
gdal.SetConfigOption("GDAL_NUM_THREADS", str(ARGS.threads))
gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")

VSI = "/vsimem/bench_fixed_quality"
QUALITY_BLOCKS = ["GLOBAL", "64", "32", "16"]
REFINES = [0, 4]  # the open loop and the default
PSNR_CAP = 150.0          # the codec stores lossless blocks (MSE 0) as 150 dB; same cap here
STORED_TOLERANCE = 0.05   # the stored PSNR map is in 0.1 dB steps
WITHIN_DB = 0.5           # "achieved >= target - 0.5 dB"
QUICK_IMAGES = 3
QUICK_MS_IMAGES = 1
QUICK_WINDOW = 256
QUICK_LAMBDAS = 3
HIST_RANGE = (-3.0, 3.0)
HIST_STEP = 0.1
# Issue targets, for controllable blocks.
OPEN_LOOP_GOAL = dict(mean=0.5, std=1.5)
REFINED_GOAL = dict(mean=0.25, std=1.0, within=95.0)


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# GDAL messages: every warning / error the driver emits is kept (first text, count).

DRIVER_MESSAGES = {}  # (class, text) -> count
FAILURES = []         # {"dataset", "what", "message"}


def gdal_handler(err_class, err_no, text):
    names = {gdal.CE_Debug: "debug", gdal.CE_Warning: "warning", gdal.CE_Failure: "failure",
             gdal.CE_Fatal: "fatal"}
    if err_class == gdal.CE_Debug:
        return
    key = (names.get(err_class, str(err_class)), str(text).strip())
    DRIVER_MESSAGES[key] = DRIVER_MESSAGES.get(key, 0) + 1


def unlink(path):
    """Deletes a /vsimem/ file if it exists (gdal.Unlink raises on a missing file)."""
    if gdal.VSIStatL(path) is not None:
        gdal.Unlink(path)


def record_failure(dataset, what, message):
    FAILURES.append(dict(dataset=dataset, what=what, message=message))
    log(f"  FAILED {dataset} {what}: {message}")


# ---------------------------------------------------------------------------------------------
# Models.

# FIXED_QUALITY's default calibration per sample type (codecs/learned/fixed_quality_codec.cpp);
# the uniform-lambda MULTIRATE encodings use the model that calibration is for.
CALIBRATIONS = {"Byte": "fixed-quality-rgb8-v4", "UInt16": "fixed-quality-ms16-v2"}


def read_card(model):
    with open(os.path.join(REPO, "models", model, "card.json")) as f:
        return json.load(f)


def model_range(model):
    card = read_card(model)
    return float(card["lambda_min"]), float(card["lambda_max"])


def lambda_grid(lmin, lmax, count):
    count = max(2, count)
    values = np.exp(np.linspace(math.log(lmin), math.log(lmax), count))
    values[0], values[-1] = lmin, lmax  # exactly the card's bounds
    return [float(v) for v in values]


# ---------------------------------------------------------------------------------------------
# Datasets. An image: dict(name, src (path for gdal.Translate), ref (bands, H, W) float64,
# valid (bands, H, W) bool, groups [(first band, count)], peak).

def band_groups(dtype, bands):
    if dtype == "Byte" and bands >= 3:
        return [(0, 3)] + [(b, 1) for b in range(3, bands)]
    return [(b, 1) for b in range(bands)]


def read_image(name, src_path, fill=None):
    ds = gdal.Open(src_path)
    ref = ds.ReadAsArray()
    if ref.ndim == 2:
        ref = ref[np.newaxis]
    band1 = ds.GetRasterBand(1)
    dtype = gdal.GetDataTypeName(band1.DataType)
    valid = np.ones(ref.shape, dtype=bool)
    nodata = []
    for b in range(ds.RasterCount):
        value = ds.GetRasterBand(b + 1).GetNoDataValue()
        nodata.append(value)
        if value is None and fill is not None:
            value = fill
        if value is not None:
            valid[b] = ref[b] != value
    image = dict(name=name, src=src_path, ref=ref.astype(np.float64), valid=valid, dtype=dtype,
                 groups=band_groups(dtype, ds.RasterCount), width=ds.RasterXSize,
                 height=ds.RasterYSize, bands=ds.RasterCount, declared_nodata=nodata,
                 peak=255.0 if dtype == "Byte" else 65535.0)
    ds = None
    return image


def split_rows(table, split):
    rows = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"].strip() == split:
                rows.append((row["class"].strip(), os.path.basename(row["file"].strip())))
    return rows


def load_scene(key, path, fill):
    info = gdal.Info(path, format="json")
    width, height = info["size"]
    if ARGS.quick:
        w, h = min(QUICK_WINDOW, width), min(QUICK_WINDOW, height)
        window = [(width - w) // 2, (height - h) // 2, w, h]
    else:
        window = [0, 0, width, height]
    src_path = f"{VSI}/{key}_src.tif"
    copy = gdal.Translate(src_path, path, format="GTiff", srcWin=window)
    copy = None  # closed: complete before it is reopened
    image = read_image(os.path.basename(path), src_path, fill)
    image["window"] = window
    return [image]


def load_dataset(key):
    """-> (images, description)"""
    if key == "landsat8":
        path = os.path.join(REPO, "autotest", "data", "landsat8_b4_uint16.tif")
        fill = None if ARGS.landsat_fill.lower() == "none" else float(ARGS.landsat_fill)
        images = load_scene(key, path, fill)
        image = images[0]
        declared = image["declared_nodata"][0]
        if declared is not None:
            note = f"declared nodata {declared:g} left out"
        elif fill is not None:
            note = (f"no nodata declared; DN {fill:g} (Landsat Level-1 fill) treated as nodata: "
                    f"{100 * (1 - image['valid'].mean()):.1f}% of the pixels")
        else:
            note = "no nodata declared, every pixel counts"
        desc = (f"Landsat 8 B4 `autotest/data/landsat8_b4_uint16.tif`, window {image['window']} "
                f"of 1550x1578, 1 x UInt16; {note}")
        return images, desc
    if key == "naip":
        path = os.path.join(REPO, "autotest", "data", "naip_4band_byte.tif")
        images = load_scene(key, path, None)
        image = images[0]
        nodata = image["declared_nodata"]
        note = ("no nodata declared" if all(v is None for v in nodata)
                else f"declared nodata {nodata} left out ({100 * (1 - image['valid'].mean()):.1f}% of the samples)")
        desc = (f"NAIP `autotest/data/naip_4band_byte.tif`, window {image['window']} of 934x724, "
                f"4 x Byte, groups: bands 1-3, band 4; {note}")
        return images, desc
    if key == "eurosat_ms":
        rows = split_rows(os.path.join(ARGS.data, "eurosat_ms_splits.csv"), "test")
        count = QUICK_MS_IMAGES if ARGS.quick else ARGS.eurosat_ms_images
        images = []
        for cls, name in rows[:count]:
            images.append(read_image(name, os.path.join(ARGS.data, "eurosat_ms", cls, name)))
        desc = (f"EuroSAT MS, first {len(images)} of the {len(rows)} test images of "
                f"eurosat_ms_splits.csv, 64x64, 13 x UInt16, one band group per band")
        if len(images) < len(rows) and not ARGS.quick:
            desc += (" (not all: with all 24 the default run took 26 min on 2 shared cores; "
                     "`--eurosat-ms-images 24` for all)")
        return images, desc
    if key == "eurosat_rgb":
        rows = split_rows(os.path.join(ARGS.data, "eurosat_rgb_splits.csv"), "test")
        count = QUICK_IMAGES if ARGS.quick else ARGS.eurosat_rgb_images
        images = []
        for index, (cls, name) in enumerate(rows[:count]):
            src_path = f"{VSI}/rgb_{index}.tif"
            copy = gdal.Translate(src_path, os.path.join(ARGS.data, "eurosat_rgb", cls, name),
                                  format="GTiff")
            copy = None
            images.append(read_image(name, src_path))
        desc = (f"EuroSAT RGB, first {len(images)} of the {len(rows)} test images of "
                f"eurosat_rgb_splits.csv (JPEG copied to an in-memory GTiff), 64x64, 3 x Byte, "
                f"one band group")
        return images, desc
    raise ValueError(key)


# ---------------------------------------------------------------------------------------------
# Encoding and measurement.

def encode(image, options, dst):
    options = list(options) + ["OVERVIEWS=NONE", f"BLOCKSIZE={ARGS.blocksize}",
                               f"NUM_THREADS={ARGS.threads}"]
    t0 = time.perf_counter()
    out = gdal.Translate(dst, image["src"], format="NSAT", creationOptions=options)
    out = None  # closed: the file is complete
    return time.perf_counter() - t0


def decode(dst, image):
    ds = gdal.Open(dst)
    decoded = ds.ReadAsArray()
    payload = float(ds.GetMetadataItem("NSAT_BITS_PER_PIXEL", "IMAGE_STRUCTURE"))
    ds = None
    if decoded.ndim == 2:
        decoded = decoded[np.newaxis]
    size = gdal.VSIStatL(dst).size
    file_bpp = 8.0 * size / (image["width"] * image["height"])
    return decoded.astype(np.float64), payload, file_bpp


def read_stored(dst):
    ds = gdal.Open("NSAT_AUX:" + dst)
    stored = ds.ReadAsArray()
    names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
    ds = None
    if stored.ndim == 2:
        stored = stored[np.newaxis]
    return stored.astype(np.float64), names


def cell_size(quality_block):
    return ARGS.blocksize if quality_block == "GLOBAL" else int(quality_block)


def block_psnr(image, decoded, cell):
    """-> psnr (groups, ny, nx) with NaN for blocks without a valid sample, partial (same shape,
    True where the block has some nodata sample)."""
    ref, valid = image["ref"], image["valid"]
    bands, height, width = ref.shape
    ny, nx = -(-height // cell), -(-width // cell)
    pad = ((0, 0), (0, ny * cell - height), (0, nx * cell - width))
    err = np.pad(np.where(valid, (ref - decoded) ** 2, 0.0), pad)
    ok = np.pad(valid, pad)
    inside = np.pad(np.ones(valid.shape, dtype=bool), pad)
    sums = err.reshape(bands, ny, cell, nx, cell).sum(axis=(2, 4))
    counts = ok.reshape(bands, ny, cell, nx, cell).sum(axis=(2, 4)).astype(np.float64)
    totals = inside.reshape(bands, ny, cell, nx, cell).sum(axis=(2, 4)).astype(np.float64)
    out = np.full((len(image["groups"]), ny, nx), np.nan)
    partial = np.zeros(out.shape, dtype=bool)
    peak2 = image["peak"] ** 2
    for g, (first, count) in enumerate(image["groups"]):
        s = sums[first:first + count].sum(axis=0)
        n = counts[first:first + count].sum(axis=0)
        t = totals[first:first + count].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mse = s / n
            psnr = np.where(mse > 0, 10.0 * np.log10(peak2 / mse), PSNR_CAP)
        psnr = np.minimum(psnr, PSNR_CAP)
        out[g] = np.where(n > 0, psnr, np.nan)
        partial[g] = (n > 0) & (n < t)
    return out, partial


def image_sse(image, decoded):
    valid = image["valid"]
    return float(((image["ref"] - decoded) ** 2)[valid].sum()), int(valid.sum())


def psnr_of(sse, count, peak):
    if count == 0:
        return float("nan")
    mse = sse / count
    return PSNR_CAP if mse <= 0 else min(PSNR_CAP, 10 * math.log10(peak * peak / mse))


# ---------------------------------------------------------------------------------------------
# Statistics.

def error_stats(err):
    err = err[np.isfinite(err)]
    if err.size == 0:
        return dict(n=0, mean=None, std=None, median=None, within=None, min=None, max=None)
    return dict(n=int(err.size), mean=float(err.mean()), std=float(err.std()),
                median=float(np.median(err)), within=float(100.0 * np.mean(err >= -WITHIN_DB)),
                min=float(err.min()), max=float(err.max()))


def histogram(err):
    edges = np.arange(HIST_RANGE[0], HIST_RANGE[1] + HIST_STEP / 2, HIST_STEP)
    clipped = np.clip(err[np.isfinite(err)], HIST_RANGE[0] + 1e-9, HIST_RANGE[1] - 1e-9)
    counts, _ = np.histogram(clipped, bins=edges)
    return counts.tolist(), edges.tolist()


def verdict(refine, stats):
    if stats["n"] == 0:
        return "n/a"
    if refine == 0:
        ok = abs(stats["mean"]) <= OPEN_LOOP_GOAL["mean"] and stats["std"] <= OPEN_LOOP_GOAL["std"]
    else:
        ok = (abs(stats["mean"]) <= REFINED_GOAL["mean"] and stats["std"] <= REFINED_GOAL["std"]
              and stats["within"] >= REFINED_GOAL["within"])
    return "pass" if ok else "FAIL"


def match_uniform(curve, psnr):
    """curve: list of dict(lam, mean_psnr, payload_bpp, file_bpp) for one block grid; ->
    dict(lam, payload_bpp, file_bpp, in_range) at the given mean block PSNR."""
    points = sorted(curve, key=lambda p: p["mean_psnr"])
    xs = np.array([p["mean_psnr"] for p in points])
    in_range = bool(xs[0] - 1e-9 <= psnr <= xs[-1] + 1e-9)
    result = dict(in_range=in_range, psnr_range=[float(xs[0]), float(xs[-1])])
    if not in_range:
        return result
    for key, name in (("lam", "lam"), ("payload_bpp", "payload_bpp"), ("file_bpp", "file_bpp")):
        ys = np.log([p[key] for p in points])
        result[name] = float(np.exp(np.interp(psnr, xs, ys)))
    monotone = all(b["lam"] > a["lam"] for a, b in zip(points, points[1:]))
    result["monotone"] = monotone
    return result


# ---------------------------------------------------------------------------------------------
# One dataset.

def flat(per_image):
    return np.concatenate([a.ravel() for a in per_image]) if per_image else np.zeros(0)


def run_dataset(key, results):
    t_start = time.perf_counter()
    try:
        images, description = load_dataset(key)
    except (RuntimeError, OSError, ValueError) as error:
        record_failure(key, "load", str(error).strip())
        results["datasets"][key] = dict(skipped=f"load failed: {error}")
        return
    if not images:
        results["datasets"][key] = dict(skipped="no images")
        return
    try:
        run_images(key, images, description, results, t_start)
    finally:
        for image in images:
            if image["src"].startswith("/vsimem/"):
                unlink(image["src"])


def run_images(key, images, description, results, t_start):
    dtype = images[0]["dtype"]
    calibration = CALIBRATIONS["Byte" if dtype == "Byte" else "UInt16"]
    model = read_card(calibration)["base_model"]
    lmin, lmax = model_range(model)
    lambdas = lambda_grid(lmin, lmax, QUICK_LAMBDAS if ARGS.quick else ARGS.lambdas)
    info = dict(description=description, images=len(images), dtype=dtype, model=model,
                calibration=calibration,
                lambda_min=lmin, lambda_max=lmax, lambdas=lambdas, peak=images[0]["peak"],
                groups=images[0]["groups"], pixels=int(sum(i["width"] * i["height"] for i in images)))
    results["datasets"][key] = info
    log(f"{key}: {len(images)} image(s), {dtype}, model {model}, lambdas {[f'{v:.4g}' for v in lambdas]}")
    dst = f"{VSI}/{key}.nsat"

    # Probe: is FIXED_QUALITY available for this sample type at all? If not, only the two
    # uniform-lambda encodings at the ends of the range run (PSNR span and would-be target).
    fq_error = None
    try:
        encode(images[0], ["CODEC=FIXED_QUALITY", f"MODEL={calibration}", "TARGET_PSNR=40",
                           "QUALITY_BLOCK=16", "REFINE=0"], dst)
    except RuntimeError as error:
        fq_error = str(error).strip()
        record_failure(key, "FIXED_QUALITY probe", fq_error)
        lambdas = [lmin, lmax]
        info["lambdas"] = lambdas
    finally:
        unlink(dst)

    cells = {qb: cell_size(qb) for qb in QUALITY_BLOCKS}
    # Uniform-lambda MULTIRATE grid.
    mr = []  # per lambda: dict(lam, enc_s, payload, file, psnr_img, blocks {qb: [per image arrays]})
    for lam in lambdas:
        entry = dict(lam=lam, enc_s=0.0, payload=[], file=[], sse=0.0, count=0, image_psnr=[],
                     blocks={qb: [] for qb in QUALITY_BLOCKS}, failed=0)
        for image in images:
            try:
                # OVERLAP=0: FIXED_QUALITY codes each tile alone.
                entry["enc_s"] += encode(image, ["CODEC=MULTIRATE", f"MODEL={model}", f"LAMBDA={lam!r}",
                                              "SPECTRAL_TRANSFORM=NONE", "OVERLAP=0"], dst)
                decoded, payload, file_bpp = decode(dst, image)
            except RuntimeError as error:
                record_failure(key, f"MULTIRATE LAMBDA={lam:.5g} {image['name']}", str(error).strip())
                entry["failed"] += 1
                for qb in QUALITY_BLOCKS:
                    entry["blocks"][qb].append(None)
                continue
            finally:
                unlink(dst)
            entry["payload"].append(payload)
            entry["file"].append(file_bpp)
            sse, count = image_sse(image, decoded)
            entry["sse"] += sse
            entry["count"] += count
            entry["image_psnr"].append(psnr_of(sse, count, image["peak"]))
            for qb in QUALITY_BLOCKS:
                entry["blocks"][qb].append(block_psnr(image, decoded, cells[qb])[0])
        mr.append(entry)
        log(f"  MULTIRATE LAMBDA={lam:.5g}: payload {np.mean(entry['payload']):.4f} bpp, "
            f"{time.perf_counter() - t_start:.0f} s")
    if any(e["failed"] for e in mr):
        info["skipped"] = "a MULTIRATE encoding failed (see failures)"
        return

    def mr_flat(index, qb):
        return flat(mr[index]["blocks"][qb])

    # Target: median over 16 px blocks of the midpoint between the two uniform-lambda PSNRs.
    low16, high16 = mr_flat(0, "16"), mr_flat(-1, "16")
    mid = (low16 + high16) / 2
    auto_target = round(float(np.nanmedian(mid)), 1)
    override = getattr(ARGS, "target_" + key)
    target = override if override is not None else auto_target
    info.update(target=target, target_auto=auto_target, target_overridden=override is not None,
                psnr16_lambda_min_median=float(np.nanmedian(low16)),
                psnr16_lambda_max_median=float(np.nanmedian(high16)),
                psnr16_span_median=float(np.nanmedian(high16 - low16)),
                psnr16_span_p10_p90=[float(np.nanpercentile(high16 - low16, 10)),
                                     float(np.nanpercentile(high16 - low16, 90))])
    log(f"  target {target} dB (median 16 px block PSNR: {info['psnr16_lambda_min_median']:.2f} at "
        f"lambda_min, {info['psnr16_lambda_max_median']:.2f} at lambda_max)")

    # MULTIRATE summary per lambda and per block grid.
    mid_index = len(lambdas) // 2
    info["multirate"] = []
    curves = {qb: [] for qb in QUALITY_BLOCKS}
    pooled_curve = []  # against the PSNR of the MSE pooled over every valid sample of the dataset
    for entry in mr:
        row = dict(lam=entry["lam"], payload_bpp=float(np.mean(entry["payload"])),
                   file_bpp=float(np.mean(entry["file"])), enc_s=entry["enc_s"],
                   image_psnr_mean=float(np.mean(entry["image_psnr"])),
                   pooled_psnr=psnr_of(entry["sse"], entry["count"], images[0]["peak"]),
                   mean_block_psnr={})
        for qb in QUALITY_BLOCKS:
            values = flat(entry["blocks"][qb])
            row["mean_block_psnr"][qb] = float(np.nanmean(values))
            curves[qb].append(dict(lam=entry["lam"], mean_psnr=row["mean_block_psnr"][qb],
                                   payload_bpp=row["payload_bpp"], file_bpp=row["file_bpp"]))
        info["multirate"].append(row)
        pooled_curve.append(dict(lam=entry["lam"], mean_psnr=row["pooled_psnr"],
                                 payload_bpp=row["payload_bpp"], file_bpp=row["file_bpp"]))
    info["timing_lambda"] = lambdas[mid_index]
    mr_time = mr[mid_index]["enc_s"]
    if fq_error is not None:
        info["skipped_short"] = f"FIXED_QUALITY failed: `{fq_error}`"
        info["skipped"] = (f"FIXED_QUALITY cannot encode this dataset: `{fq_error}`. Only the "
                           "uniform-lambda encodings at lambda_min and lambda_max ran (target and "
                           "PSNR span below are what the benchmark would have used).")
        return

    # Block classes per grid.
    classes = {}
    for qb in QUALITY_BLOCKS:
        low, high = mr_flat(0, qb), mr_flat(-1, qb)
        cls = np.full(low.shape, "", dtype=object)
        cls[high < target] = "unreachable"
        cls[(cls == "") & (low > target)] = "over"
        cls[(cls == "") & np.isfinite(low) & np.isfinite(high)] = "controllable"
        robust = (cls == "controllable") & (low <= target - WITHIN_DB) & (high >= target + WITHIN_DB)
        classes[qb] = dict(cls=cls, nonmonotone=int(np.sum(low > high)), robust=robust,
                           high_margin=high - target)

    # FIXED_QUALITY settings.
    info["settings"] = []
    plan = [(qb, refine) for qb in QUALITY_BLOCKS for refine in REFINES]
    if ARGS.extra_refine > 0 and ARGS.extra_refine not in REFINES:
        plan.append(("16", ARGS.extra_refine))
    for qb, refine in plan:
        setting = dict(quality_block=qb, refine=refine, cell=cells[qb],
                       extra=refine not in REFINES)
        options = ["CODEC=FIXED_QUALITY", f"MODEL={calibration}", f"TARGET_PSNR={target}",
                   f"QUALITY_BLOCK={qb}", f"REFINE={refine}"]
        measured, stored, partial = [], [], []
        payloads, files, enc_s, sse_total, count_total, image_psnr = [], [], 0.0, 0.0, 0, []
        aux_problems = []
        failed = False
        for image in images:
            try:
                enc_s += encode(image, options, dst)
                decoded, payload, file_bpp = decode(dst, image)
                aux, names = read_stored(dst)
            except RuntimeError as error:
                record_failure(key, f"FIXED_QUALITY QUALITY_BLOCK={qb} REFINE={refine} "
                                    f"{image['name']}", str(error).strip())
                failed = True
                break
            finally:
                unlink(dst)
            psnr, part = block_psnr(image, decoded, cells[qb])
            expected_names = [f"band {f + 1}" if c == 1 else f"bands {f + 1}-{f + c}"
                              for f, c in image["groups"]]
            if aux.shape != psnr.shape:
                aux_problems.append(f"{image['name']}: NSAT_AUX shape {aux.shape}, "
                                    f"expected {psnr.shape}")
                aux = np.full(psnr.shape, np.nan)
            elif names != expected_names:
                aux_problems.append(f"{image['name']}: NSAT_AUX bands {names}, expected {expected_names}")
            measured.append(psnr)
            stored.append(aux)
            partial.append(part)
            payloads.append(payload)
            files.append(file_bpp)
            sse, count = image_sse(image, decoded)
            sse_total += sse
            count_total += count
            image_psnr.append(psnr_of(sse, count, image["peak"]))
        if failed:
            setting["failed"] = True
            info["settings"].append(setting)
            continue
        m, s, p = flat(measured), flat(stored), flat(partial).astype(bool)
        cls = classes[qb]["cls"]
        valid = np.isfinite(m)
        err = m - target
        ctrl = valid & (cls == "controllable")
        diff = np.abs(s - m)
        full = valid & ~p & np.isfinite(s)
        part_ok = valid & p & np.isfinite(s)
        setting.update(
            blocks=int(valid.sum()),
            fraction=dict(controllable=float(np.mean(cls[valid] == "controllable")),
                          unreachable=float(np.mean(cls[valid] == "unreachable")),
                          over=float(np.mean(cls[valid] == "over"))),
            nonmonotone_blocks=classes[qb]["nonmonotone"],
            controllable=error_stats(err[ctrl]),
            robust=error_stats(err[valid & classes[qb]["robust"]]),
            ctrl_misses=int(np.sum(ctrl & (err < -WITHIN_DB))),
            ctrl_misses_marginal=int(np.sum(ctrl & (err < -WITHIN_DB)
                                            & (classes[qb]["high_margin"] < WITHIN_DB))),
            all=error_stats(err[valid]),
            unreachable=error_stats(err[valid & (cls == "unreachable")]),
            over=error_stats(err[valid & (cls == "over")]),
            capped_blocks=int(np.sum(m[valid] >= PSNR_CAP)),
            payload_bpp=float(np.mean(payloads)), file_bpp=float(np.mean(files)),
            mean_block_psnr=float(np.nanmean(m)),
            image_psnr_mean=float(np.mean(image_psnr)),
            pooled_psnr=psnr_of(sse_total, count_total, images[0]["peak"]),
            stored_max_abs_diff=float(diff[full].max()) if full.any() else None,
            # + 1e-4: the stored values are float32 (61.35 reads back as 61.349998...)
            stored_blocks_over_tolerance=int(np.sum(diff[full] > STORED_TOLERANCE + 1e-4)),
            stored_checked_blocks=int(full.sum()),
            stored_missing=int(np.sum(valid & ~np.isfinite(s))),
            stored_partial_max_abs_diff=float(diff[part_ok].max()) if part_ok.any() else None,
            stored_partial_blocks=int(part_ok.sum()),
            aux_problems=aux_problems[:5],
            enc_s=enc_s, multirate_enc_s=mr_time,
            enc_time_ratio=enc_s / mr_time if mr_time > 0 else None)
        setting["verdict"] = verdict(refine, setting["controllable"])
        match = match_uniform(curves[qb], setting["mean_block_psnr"])
        if match["in_range"]:
            match["payload_cost_pct"] = 100.0 * (setting["payload_bpp"] / match["payload_bpp"] - 1)
            match["file_cost_pct"] = 100.0 * (setting["file_bpp"] / match["file_bpp"] - 1)
        setting["uniform_match"] = match
        pooled = match_uniform(pooled_curve, setting["pooled_psnr"])
        if pooled["in_range"]:
            pooled["payload_cost_pct"] = 100.0 * (setting["payload_bpp"] / pooled["payload_bpp"] - 1)
        setting["uniform_match_pooled"] = pooled
        if qb == "16":
            setting["hist_controllable"] = histogram(err[ctrl])[0]
            setting["hist_all"] = histogram(err[valid])[0]
            setting["_err_ctrl"] = err[ctrl]
            setting["_err_all"] = err[valid]
        info["settings"].append(setting)
        c = setting["controllable"]
        log(f"  FQ {qb:>6} REFINE={refine}: ctrl {100 * setting['fraction']['controllable']:.0f}% "
            f"mean {fmt(c['mean'], 2)} std {fmt(c['std'], 2)} within {fmt(c['within'], 1)}%; "
            f"payload {setting['payload_bpp']:.4f} bpp; stored-measured max "
            f"{fmt(setting['stored_max_abs_diff'], 3)}; {time.perf_counter() - t_start:.0f} s")
    # Side-info check: TARGET_PSNR=1 / 140 put every block at lambda_min / lambda_max (the
    # codec's level 0 / 255), so the payload difference to uniform MULTIRATE at that lambda is
    # FIXED_QUALITY's own overhead (lambda and PSNR maps, 16 px blocks).
    info["side_info_check"] = []
    for target_psnr, index in ((1.0, 0), (140.0, -1)):
        payloads = []
        try:
            for image in images:
                encode(image, ["CODEC=FIXED_QUALITY", f"MODEL={calibration}",
                               f"TARGET_PSNR={target_psnr}", "QUALITY_BLOCK=16", "REFINE=0"], dst)
                payloads.append(decode(dst, image)[1])
                unlink(dst)
        except RuntimeError as error:
            unlink(dst)
            record_failure(key, f"side-info check TARGET_PSNR={target_psnr}", str(error).strip())
            continue
        reference = info["multirate"][index]
        fq = float(np.mean(payloads))
        info["side_info_check"].append(dict(
            target_psnr=target_psnr, lam=reference["lam"], fq_payload_bpp=fq,
            multirate_payload_bpp=reference["payload_bpp"],
            overhead_bpp=fq - reference["payload_bpp"],
            overhead_pct=100.0 * (fq / reference["payload_bpp"] - 1)))
    info["elapsed_s"] = time.perf_counter() - t_start


# ---------------------------------------------------------------------------------------------
# Output.

def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return model, os.cpu_count()


def git_state():
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=False).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def signed(value, digits=2):
    return "n/a" if value is None else f"{value:+.{digits}f}"


def plot_histograms(results, out, which):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in DATASET_KEYS if k in results["datasets"]]
    if not keys:
        return None
    cols = 2 if len(keys) > 2 else len(keys)
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    edges = np.arange(HIST_RANGE[0], HIST_RANGE[1] + HIST_STEP / 2, HIST_STEP)
    for ax, key in zip(axes.ravel(), keys):
        info = results["datasets"][key]
        ax.set_title(f"{key}" + (f", target {info['target']} dB" if "target" in info else ""),
                     fontsize=9)
        ax.set_xlabel("achieved - target PSNR (dB), 16 px blocks", fontsize=8)
        ax.tick_params(labelsize=7)
        settings = [s for s in info.get("settings", []) if s["quality_block"] == "16"
                    and s["refine"] in REFINES and not s.get("failed")]
        if not settings:
            reason = info.get("skipped_short", info.get("skipped", ""))
            ax.text(0.5, 0.5, "no FIXED_QUALITY result\n" + "\n".join(
                    reason[i:i + 60] for i in range(0, min(len(reason), 240), 60)),
                    ha="center", va="center", fontsize=7, transform=ax.transAxes)
            continue
        for s, colour in zip(settings, ["tab:orange", "tab:blue"]):
            err = s["_err_ctrl"] if which == "controllable" else s["_err_all"]
            if err.size == 0:
                continue
            weights = np.full(err.size, 100.0 / err.size)
            label = "open loop (REFINE=0)" if s["refine"] == 0 else f"REFINE={s['refine']}"
            ax.hist(np.clip(err, edges[0] + 1e-9, edges[-1] - 1e-9), bins=edges, weights=weights,
                    histtype="stepfilled" if s["refine"] == 0 else "step", alpha=0.5 if s["refine"] == 0 else 1,
                    color=colour, linewidth=1.5, label=f"{label}: n={err.size}, "
                    f"mean {err.mean():+.2f}, std {err.std():.2f}")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.axvline(-WITHIN_DB, color="grey", linewidth=0.8, linestyle="--")
        ax.set_ylabel("% of blocks", fontsize=8)
        ax.legend(fontsize=6, loc="upper left")
    title = ("controllable blocks (PSNR(lambda_min) <= target <= PSNR(lambda_max))"
             if which == "controllable" else "all blocks")
    fig.suptitle(f"FIXED_QUALITY, QUALITY_BLOCK=16: block PSNR error, {title};\n"
                 f"values beyond +-3 dB in the edge bins; dashed: target - 0.5 dB", fontsize=9)
    fig.tight_layout()
    name = f"hist_16px_{which}.png"
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


def write_report(results, out, plots):
    meta = results["meta"]
    blocksize, threads = meta["blocksize"], meta["threads"]
    extra_refine = meta.get("extra_refine")
    if extra_refine is None:  # results.json written before meta had it
        extra_refine = max([x["refine"] for info in results["datasets"].values()
                            for x in info.get("settings", []) if x.get("extra")], default=0)
    lines = []
    add = lines.append
    add("# NSAT FIXED_QUALITY benchmark (Table II of Mijares i Verdu et al. 2024, extended)")
    add("")
    if meta["quick"]:
        add(f"**Quick smoke-test run (--quick): {QUICK_IMAGES} EuroSAT RGB images, "
            f"{QUICK_MS_IMAGES} EuroSAT MS image, {QUICK_WINDOW}x{QUICK_WINDOW} windows of the "
            f"scenes, {QUICK_LAMBDAS} lambdas. Not representative.**")
        add("")
    add(f"- Date: {meta['date']}")
    add(f"- Machine: {meta['cpu']}, {meta['cores']} cores. Load average at start "
        f"{meta['load_start']}, at the end {meta['load_end']} (other jobs shared the machine: "
        f"timings are indicative).")
    add(f"- GDAL {meta['gdal']}, numpy {meta['numpy']}, Python {meta['python']}. Repository at "
        f"{meta['git']}. Plugin: `{meta['plugin']}`.")
    add(f"- Command: `{meta['command']}`")
    add(f"- Wall time: {meta['elapsed_s']:.0f} s.")
    add("")
    add("## Method")
    add("")
    add("- Each image is written with `gdal.Translate(..., format='NSAT')` to /vsimem/, options "
        f"`OVERVIEWS=NONE BLOCKSIZE={blocksize} NUM_THREADS={threads}` plus "
        "`CODEC=FIXED_QUALITY TARGET_PSNR=t QUALITY_BLOCK=q REFINE=r` or "
        "`CODEC=MULTIRATE MODEL=m LAMBDA=l SPECTRAL_TRANSFORM=NONE` (band groups coded one by one, "
        "as FIXED_QUALITY codes them; m is the model the calibration is for), reopened and decoded "
        "with `ReadAsArray`.")
    add("- Block PSNR is measured by this script from the decoded pixels: MSE over the bands of "
        "the block's band group (Byte: bands 1-3 together, others alone; 16-bit: each band "
        "alone), nodata samples left out, peak 255 (Byte) or 65535 (16-bit); MSE 0 is counted "
        f"as {PSNR_CAP:.0f} dB like the codec. Blocks are the QUALITY_BLOCK cells of the tile grid "
        f"(GLOBAL: one {blocksize} px tile, i.e. the whole image for 64x64 EuroSAT); edge "
        "cells are cropped to the image.")
    add("- Error = achieved - target. 'within' = % of blocks with achieved >= target - 0.5 dB.")
    add("- Classes from uniform MULTIRATE encodings at lambda_min and lambda_max on the same "
        "block grid: unreachable = PSNR(lambda_max) < target; over = PSNR(lambda_min) > "
        "target; controllable = the rest. 'all' = every block with a valid sample. 'robust ctrl' "
        f"= controllable with {WITHIN_DB} dB to spare on both sides (PSNR(lambda_min) <= target - "
        f"{WITHIN_DB} and PSNR(lambda_max) >= target + {WITHIN_DB}): in a FIXED_QUALITY file a "
        "block's neighbours use other lambdas than in the uniform encodings, which moves its "
        "reachable range a little, so blocks at the edge of the range can be misclassified.")
    add("- Target per dataset = median over 16 px blocks of (PSNR(lambda_min) + "
        "PSNR(lambda_max)) / 2, rounded to 0.1 dB; the same target for every block size.")
    add("- Rate: payload bpp = `NSAT_BITS_PER_PIXEL` (level 0, all bands, FIXED_QUALITY side "
        "info included); file bpp = 8 x file bytes / pixels (includes the header, which "
        "dominates for 64x64 images). Means over images.")
    add("- Rate cost: MULTIRATE at uniform lambdas log-spaced over [lambda_min, lambda_max]; the "
        "uniform lambda with the **same mean block PSNR (all blocks, same block grid, pooled "
        "over the images)** as the FIXED_QUALITY encoding is found by piecewise-linear "
        "interpolation of log(lambda) and log(bpp) in mean block PSNR (no encoding at the "
        "interpolated lambda). Cost = bpp(FQ) / bpp(MULTIRATE) - 1. 'out of range' = the FQ "
        "mean PSNR lies outside the uniform-lambda range (no extrapolation). The same is done "
        "against the pooled PSNR (MSE over every valid sample of the dataset) as a second view.")
    add("- Side-info check: FIXED_QUALITY at QUALITY_BLOCK=16 with TARGET_PSNR=1 (every block "
        "at lambda_min) and TARGET_PSNR=140 (every block at lambda_max) against MULTIRATE at "
        "that lambda: the payload difference is FIXED_QUALITY's own overhead (maps), so the "
        "rest of the rate cost comes from how the lambdas are allocated.")
    add("- Encode time: wall time of all `gdal.Translate` calls of the setting over the dataset, "
        "divided by the same for MULTIRATE at the grid lambda nearest the geometric middle.")
    add(f"- Issue targets (controllable blocks): REFINE=0 |mean| <= {OPEN_LOOP_GOAL['mean']} dB "
        f"and std <= {OPEN_LOOP_GOAL['std']} dB; REFINE={REFINES[1]} |mean| <= {REFINED_GOAL['mean']} dB, "
        f"std <= {REFINED_GOAL['std']} dB, within >= {REFINED_GOAL['within']:.0f} %. The issue "
        "states them for 16 px blocks (the rows in bold); the other rows get the same check "
        f"for information (REFINE >= 1: the REFINE={REFINES[1]} targets).")
    if extra_refine > 0 and extra_refine not in REFINES:
        add(f"- Extra row (not in the issue): QUALITY_BLOCK=16 REFINE={extra_refine}, to see "
            "whether more closed-loop passes close the gap at 16 px.")
    add("")
    add("## Datasets and targets")
    add("")
    add("| dataset | description | calibration on model | lambda range | target dB | median 16 px PSNR at lambda_min / lambda_max | median span (p10-p90) dB |")
    add("|---|---|---|---|---|---|---|")
    for key in DATASET_KEYS:
        info = results["datasets"].get(key)
        if info is None:
            continue
        if "target" not in info:
            add(f"| {key} | {info.get('description', '')} | {info.get('model', '')} | | "
                f"skipped: {info.get('skipped', '')} | | |")
            continue
        span = info["psnr16_span_p10_p90"]
        add(f"| {key} | {info['description']} | {info['calibration']} on {info['model']} | "
            f"{info['lambda_min']:g} - {info['lambda_max']:g} | {info['target']:.1f}"
            f"{' (set)' if info['target_overridden'] else ''}"
            f"{'' if 'settings' in info else ' (FIXED_QUALITY not run)'} | "
            f"{info['psnr16_lambda_min_median']:.2f} / {info['psnr16_lambda_max_median']:.2f} | "
            f"{info['psnr16_span_median']:.2f} ({span[0]:.2f}-{span[1]:.2f}) |")
    add("")
    for key in DATASET_KEYS:
        info = results["datasets"].get(key)
        if info is None:
            continue
        add(f"## {key}")
        add("")
        if "settings" not in info:
            add(f"Skipped: {info.get('skipped', 'unknown reason')}")
            add("")
            continue
        add(f"Target {info['target']:.1f} dB, {info['images']} image(s), peak {info['peak']:.0f}.")
        add("")
        add("### Accuracy (achieved - target, dB)")
        add("")
        add("| QUALITY_BLOCK | REFINE | blocks | ctrl / unreach / over % | ctrl mean | ctrl std | ctrl within % | all mean | all std | all within % | issue target (ctrl) | robust ctrl: % of blocks, mean, std, within % | stored-measured max dB |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in info["settings"]:
            if s.get("failed"):
                add(f"| {s['quality_block']} | {s['refine']} | failed | | | | | | | | | | |")
                continue
            c, a, f, r = s["controllable"], s["all"], s["fraction"], s["robust"]
            b = "**" if s["quality_block"] == "16" and not s["extra"] else ""
            add(f"| {b}{s['quality_block']}{b} | {b}{s['refine']}{b} | {s['blocks']} | "
                f"{100 * f['controllable']:.0f} / {100 * f['unreachable']:.0f} / {100 * f['over']:.0f} | "
                f"{signed(c['mean'])} | {fmt(c['std'], 2)} | {fmt(c['within'], 1)} | "
                f"{signed(a['mean'])} | {fmt(a['std'], 2)} | {fmt(a['within'], 1)} | "
                f"{b}{s['verdict']}{b} | {100 * r['n'] / max(s['blocks'], 1):.0f}, {signed(r['mean'])}, "
                f"{fmt(r['std'], 2)}, {fmt(r['within'], 1)} | {fmt(s['stored_max_abs_diff'], 4)} |")
        add("")
        add("### Rate, cost against uniform-lambda MULTIRATE at the same mean block PSNR, encode time")
        add("")
        add("| QUALITY_BLOCK | REFINE | payload bpp | file bpp | mean block PSNR | uniform lambda | MULTIRATE payload bpp | payload cost % | file cost % | pooled PSNR | payload cost % at same pooled PSNR | encode s | time / MULTIRATE |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in info["settings"]:
            if s.get("failed"):
                continue
            m = s["uniform_match"]
            if m["in_range"]:
                match = (f"{m['lam']:.4g} | {m['payload_bpp']:.4f} | {m['payload_cost_pct']:+.1f} | "
                         f"{m['file_cost_pct']:+.1f}")
            else:
                match = (f"out of range ({m['psnr_range'][0]:.2f}-{m['psnr_range'][1]:.2f}) | | | ")
            pm = s["uniform_match_pooled"]
            pooled = f"{pm['payload_cost_pct']:+.1f}" if pm["in_range"] else "out of range"
            add(f"| {s['quality_block']} | {s['refine']} | {s['payload_bpp']:.4f} | {s['file_bpp']:.4f} | "
                f"{s['mean_block_psnr']:.2f} | {match} | {s['pooled_psnr']:.2f} | {pooled} | {s['enc_s']:.2f} | "
                f"{fmt(s['enc_time_ratio'], 2)} |")
        add("")
        add(f"Uniform-lambda MULTIRATE grid (encode time at LAMBDA={info['timing_lambda']:.4g} is the "
            "time reference):")
        add("")
        add("| LAMBDA | payload bpp | file bpp | mean block PSNR GLOBAL / 64 / 32 / 16 | image PSNR (mean) | pooled PSNR | encode s |")
        add("|---|---|---|---|---|---|---|")
        for row in info["multirate"]:
            mb = row["mean_block_psnr"]
            add(f"| {row['lam']:.4g} | {row['payload_bpp']:.4f} | {row['file_bpp']:.4f} | "
                f"{mb['GLOBAL']:.2f} / {mb['64']:.2f} / {mb['32']:.2f} / {mb['16']:.2f} | "
                f"{row['image_psnr_mean']:.2f} | {row['pooled_psnr']:.2f} | {row['enc_s']:.2f} |")
        add("")
        for check in info.get("side_info_check", []):
            add(f"Side-info check: FIXED_QUALITY QUALITY_BLOCK=16 TARGET_PSNR={check['target_psnr']:g} "
                f"(every block at LAMBDA={check['lam']:.4g}) {check['fq_payload_bpp']:.4f} bpp against "
                f"MULTIRATE at that lambda {check['multirate_payload_bpp']:.4f} bpp: "
                f"{check['overhead_bpp']:+.4f} bpp ({check['overhead_pct']:+.1f}%).")
            add("")
        notes = []
        for s in info["settings"]:
            if s.get("failed"):
                continue
            tag = f"QUALITY_BLOCK={s['quality_block']} REFINE={s['refine']}"
            if s["stored_blocks_over_tolerance"]:
                notes.append(f"{tag}: {s['stored_blocks_over_tolerance']} of {s['stored_checked_blocks']} "
                             f"blocks have |stored - measured| > {STORED_TOLERANCE} dB.")
            if s["stored_missing"]:
                notes.append(f"{tag}: {s['stored_missing']} measured blocks have no stored value (NaN).")
            if s["stored_partial_blocks"]:
                notes.append(f"{tag}: {s['stored_partial_blocks']} blocks contain nodata; the codec "
                             "measures them over all pixels, this script over the valid ones only: "
                             f"max |stored - measured| there {fmt(s['stored_partial_max_abs_diff'], 2)} dB "
                             "(not in the column above).")
            if s["ctrl_misses"] and s["refine"] > 0:
                notes.append(f"{tag}: {s['ctrl_misses']} controllable blocks end more than "
                             f"{WITHIN_DB} dB below target; {s['ctrl_misses_marginal']} of them reach "
                             f"less than target + {WITHIN_DB} dB even at uniform lambda_max (marginal).")
            if s["capped_blocks"]:
                notes.append(f"{tag}: {s['capped_blocks']} blocks were lossless ({PSNR_CAP:.0f} dB).")
            if s["nonmonotone_blocks"] and s["refine"] == REFINES[0]:
                notes.append(f"QUALITY_BLOCK={s['quality_block']}: {s['nonmonotone_blocks']} blocks have "
                             "PSNR(lambda_min) > PSNR(lambda_max) (classified by the definitions above).")
            for problem in s["aux_problems"]:
                notes.append(f"{tag}: {problem}")
        if notes:
            add("Notes:")
            add("")
            for note in notes:
                add(f"- {note}")
            add("")
    add("## Histograms (Fig. 4 of the paper)")
    add("")
    for name in plots:
        if name:
            add(f"![{name}]({name})")
            add("")
    add("## Driver messages and failures")
    add("")
    messages, failures = results.get("driver_messages", []), results.get("failures", [])
    if not messages and not failures:
        add("None: no GDAL warning or error was emitted.")
    for m in sorted(messages, key=lambda m: (m["level"], m["text"])):
        add(f"- GDAL {m['level']} (x{m['count']}): `{m['text']}`")
    for failure in failures:
        add(f"- FAILED {failure['dataset']} {failure['what']}: `{failure['message']}`")
    add("")
    add("## Discussion (generated from the numbers above)")
    add("")
    for paragraph in discussion(results):
        add(f"- {paragraph}")
    add("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))


def find_setting(info, qb, refine):
    for s in info.get("settings", []):
        if s["quality_block"] == qb and s["refine"] == refine and not s.get("failed"):
            return s
    return None


def meta_blocksize(results):
    return results.get("meta", {}).get("blocksize", "")


def discussion(results):
    """Plain statements derived from the results (no hand-written numbers)."""
    out = []
    done = {k: v for k, v in results["datasets"].items() if v.get("settings")}
    skipped = {k: v for k, v in results["datasets"].items() if not v.get("settings")}
    if skipped:
        out.append("No FIXED_QUALITY result: " + "; ".join(
            f"{k} ({v.get('skipped_short', v.get('skipped', 'no result'))})"
                                                for k, v in skipped.items()) + ".")
    spans = [f"{k} {v['psnr16_span_median']:.2f} dB (p10-p90 {v['psnr16_span_p10_p90'][0]:.2f}-"
             f"{v['psnr16_span_p10_p90'][1]:.2f})" for k, v in results["datasets"].items()
             if "psnr16_span_median" in v]
    if spans:
        out.append("Range of the model: between LAMBDA=lambda_min and lambda_max a 16 px block's "
                   "PSNR moves by a median of " + ", ".join(spans) + ". Blocks whose PSNR range "
                   "does not contain the target cannot be controlled by any lambda: "
                   "'unreachable' ones end at lambda_max below the target (negative error), "
                   "'over' ones at lambda_min above it (positive error). Closed-loop REFINE "
                   "passes cannot move them, so the 'all blocks' statistics mostly measure the "
                   "model's range, the 'controllable' ones the codec's control.")
    for key, info in done.items():
        s0, s2 = find_setting(info, "16", 0), find_setting(info, "16", REFINES[1])
        parts = []
        if s0 and s2:
            c0, c2 = s0["controllable"], s2["controllable"]
            parts.append(f"{100 * s2['fraction']['controllable']:.0f}% of the 16 px blocks are "
                         f"controllable ({100 * s2['fraction']['unreachable']:.0f}% unreachable, "
                         f"{100 * s2['fraction']['over']:.0f}% over) at target {info['target']:.1f} dB")
            if c0["n"] and c2["n"]:
                parts.append(f"on them the open loop gives {c0['mean']:+.2f} +- {c0['std']:.2f} dB "
                             f"({c0['within']:.0f}% within 0.5 dB below target or better; issue "
                             f"target {s0['verdict']}) and REFINE={REFINES[1]} {c2['mean']:+.2f} +- "
                             f"{c2['std']:.2f} dB ({c2['within']:.0f}%; {s2['verdict']})")
            a2 = s2["all"]
            if a2["n"]:
                parts.append(f"over all blocks REFINE={REFINES[1]} gives {a2['mean']:+.2f} +- {a2['std']:.2f} dB "
                             f"({a2['within']:.0f}% within)")
        costs = []
        for qb in QUALITY_BLOCKS:
            s = find_setting(info, qb, REFINES[1])
            if s and s["uniform_match"]["in_range"]:
                costs.append(f"{qb} {s['uniform_match']['payload_cost_pct']:+.1f}%")
            elif s:
                costs.append(f"{qb} out of range")
        if costs:
            parts.append(f"payload rate against uniform lambda at the same mean block PSNR (REFINE={REFINES[1]}): "
                         + ", ".join(costs))
        s4 = next((s for s in info["settings"] if s.get("extra") and not s.get("failed")), None)
        if s4 and s4["controllable"]["n"]:
            c4 = s4["controllable"]
            parts.append(f"with REFINE={s4['refine']} at 16 px the controllable blocks get "
                         f"{c4['mean']:+.2f} +- {c4['std']:.2f} dB ({c4['within']:.0f}%; {s4['verdict']}) "
                         f"for {s4['payload_bpp']:.4f} bpp")
        ratios = [s["enc_time_ratio"] for s in info["settings"] if s.get("enc_time_ratio")]
        if ratios:
            parts.append(f"encoding takes {min(ratios):.1f}x to {max(ratios):.1f}x the time of "
                         "one uniform-lambda MULTIRATE encoding")
        if parts:
            out.append(f"{key}: " + "; ".join(parts) + ".")
    costs16 = [f"{k} {s['uniform_match']['payload_cost_pct']:+.0f}%" for k, info in done.items()
               for s in [find_setting(info, "16", REFINES[1])] if s and s["uniform_match"]["in_range"]]
    if costs16:
        out.append(f"Rate cost (16 px, REFINE={REFINES[1]}, same mean block PSNR): " + ", ".join(costs16) +
                   ". Uniform lambda is the rate-distortion optimum for total squared error; "
                   "FIXED_QUALITY instead gives lambda_max to the blocks that are below target "
                   "(where extra bits buy little PSNR) and lambda_min to those above, so at an "
                   "equal mean PSNR it needs more bits by design; the side information below "
                   "adds to that. The cost is smaller against the pooled PSNR (see the tables).")
    for k, info in done.items():
        s = find_setting(info, "16", 0)
        if s and s.get("nonmonotone_blocks"):
            share = 100.0 * s["nonmonotone_blocks"] / max(s["blocks"], 1)
            if share >= 1:
                out.append(f"{k}: {s['nonmonotone_blocks']} of the {s['blocks']} 16 px blocks "
                           f"({share:.0f}%) have a lower PSNR at uniform lambda_max than at "
                           "lambda_min: per block, PSNR is not monotone in lambda for this "
                           "model, which also limits what per-block lambda control can do.")
        partial = [x for x in info["settings"] if x.get("stored_partial_blocks")]
        if partial:
            worst = max(x["stored_partial_max_abs_diff"] or 0 for x in partial)
            out.append(f"{k}: blocks that mix nodata (or fill) and data are controlled by the "
                       "codec on all their pixels (its block MSE counts every pixel; see the dataset "
                       "table for whether the file declares nodata), so their stored PSNR "
                       f"differs from the PSNR of their valid pixels by up to {worst:.1f} dB and "
                       "their real-data quality is not what the target asks for.")
        g = find_setting(info, "GLOBAL", REFINES[1])
        if g and g["blocks"] > info["images"] * len(info["groups"]):  # several tiles per image
            mid = info["multirate"][len(info["multirate"]) // 2]["mean_block_psnr"]
            lower = mid["GLOBAL"] < mid["16"]
            out.append(f"{k}: GLOBAL here is one lambda per {meta_blocksize(results)} px tile. The "
                       "target was chosen on 16 px blocks" + (
                           f" and a tile's PSNR is lower than its blocks' (uniform lambda "
                           f"{mid['GLOBAL']:.2f} against {mid['16']:.2f} dB on average)"
                           if lower else "") +
                       f": {100 * g['fraction']['unreachable']:.0f}% of the tiles are "
                       f"unreachable and the GLOBAL rows rest on {g['controllable']['n']} "
                       "controllable tile(s).")
    checks = [f"{k} {c['overhead_bpp']:+.4f} bpp ({c['overhead_pct']:+.1f}%) at LAMBDA={c['lam']:.4g}"
              for k, info in done.items() for c in info.get("side_info_check", [])]
    if checks:
        out.append("Side information at 16 px (FIXED_QUALITY with every block at one lambda "
                   "against MULTIRATE at that lambda): " + ", ".join(checks) + ". With a "
                   "constant lambda map the lambda residuals are all zero, so this overhead is "
                   "probably mostly the stored per-block PSNR map (0.1 dB steps), which the "
                   "paper does not have; it is part of every FIXED_QUALITY rate cost above.")
    diffs = [s["stored_max_abs_diff"] for info in done.values() for s in info["settings"]
             if s.get("stored_max_abs_diff") is not None]
    over = sum(s.get("stored_blocks_over_tolerance", 0) for info in done.values() for s in info["settings"])
    if diffs:
        out.append(f"Stored block PSNR (NSAT_AUX) against the measurement: max |difference| "
                   f"{max(diffs):.4f} dB over all settings, {over} block(s) above "
                   f"{STORED_TOLERANCE} dB (blocks containing nodata are compared separately).")
    if any(info["images"] > 1 for info in done.values()):
        out.append("For the 64x64 EuroSAT images the file bpp is dominated by the container "
                   "header; the payload bpp is the meaningful rate there. GLOBAL and 64 coincide "
                   "for them (one 64x64 block per image).")
    return out


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def main():
    t0 = time.perf_counter()
    out = os.path.abspath(ARGS.out)
    if ARGS.report_only:
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        plots = [name for name in ("hist_16px_controllable.png", "hist_16px_all.png")
                 if os.path.exists(os.path.join(out, name))]
        write_report(results, out, plots)
        log(f"rewrote {out}/report.md from results.json")
        return
    os.makedirs(out, exist_ok=True)
    gdal.PushErrorHandler(gdal_handler)
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit(f"the NSAT driver is not registered (GDAL_DRIVER_PATH={os.environ['GDAL_DRIVER_PATH']})")
    cpu, cores = machine()
    keys = [k.strip() for k in ARGS.datasets.split(",") if k.strip()]
    for k in keys:
        if k not in DATASET_KEYS:
            sys.exit(f"unknown dataset {k}; expected some of {DATASET_KEYS}")
    results = dict(meta=dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        cpu=cpu, cores=cores, load_start="/".join(f"{v:.2f}" for v in os.getloadavg()),
        gdal=gdal.__version__, numpy=np.__version__, python=platform.python_version(),
        git=git_state(), plugin=os.path.join(os.environ["GDAL_DRIVER_PATH"], "gdal_NSAT.so"),
        command=shlex.join(["/usr/bin/python3", os.path.relpath(os.path.abspath(sys.argv[0]), os.getcwd())]
                           + sys.argv[1:]),
        quick=ARGS.quick, blocksize=ARGS.blocksize, threads=ARGS.threads,
        extra_refine=ARGS.extra_refine,
        psnr_cap=PSNR_CAP, hist_range=list(HIST_RANGE), hist_step=HIST_STEP), datasets={})
    for key in keys:
        try:
            run_dataset(key, results)
        except Exception as error:  # noqa: BLE001 - one dataset failing must not lose the others
            record_failure(key, "unexpected", f"{type(error).__name__}: {error}")
            results["datasets"].setdefault(key, {})["skipped"] = f"unexpected error: {error}"
    results["meta"]["elapsed_s"] = time.perf_counter() - t0
    results["meta"]["load_end"] = "/".join(f"{v:.2f}" for v in os.getloadavg())
    plots = [plot_histograms(results, out, "controllable"), plot_histograms(results, out, "all")]
    results["driver_messages"] = [dict(level=l, text=t, count=c) for (l, t), c in DRIVER_MESSAGES.items()]
    results["failures"] = FAILURES
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(jsonable(results), f, indent=1)
    write_report(results, out, plots)
    log(f"wrote {out}/report.md, results.json, plots ({results['meta']['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
