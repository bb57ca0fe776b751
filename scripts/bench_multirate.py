#!/usr/bin/python3
"""Rate-distortion and speed benchmark: NSAT CODEC=MULTIRATE against GDAL's JPEG, WEBP and
JP2OpenJPEG drivers, all written with gdal.Translate (the same code path as gdal_translate).

Datasets (every codec of a dataset is measured in the same run)
  eurosat   the first N images of the `test` split of <data>/eurosat_rgb_splits.csv
            (64x64 RGB Byte JPEGs, each first copied to an in-memory GTiff so every codec
            gets the same Byte input); metrics averaged over the images per setting.
  landsat8  <data>/geotiff/landsat8_rio-pansharpen/LC81070352015122LGN00/*_B4.tif
            (1 band UInt16; nodata masked out if the file declares one).
  naip      <data>/geotiff/opengeos_naip/m_4709963_se_14_1_20090818.tif
            (4 x Byte, nodata 0; pixels where any band is nodata are left out of the metrics).
  landsat7  <repo>/autotest/data/landsat7_rgb_byte.tif, the demo scene (3 x Byte, Landsat 7
            ETM+ with clouds, nodata collar 0: metrics over the valid pixels).
  aerial    <data>/aerial/deepforest/OSBS_029.tif (NEON 0.1 m RGB tile, 3 x Byte, held out of
            training).
  dota      <data>/aerial/dota/unlabeled/mmrotate_dota_demo.jpg (3 x Byte, held out of
            training; the source is itself a JPEG).
  sentinel2 <data>/sentinel2/sen1floods11/Spain_7370579_S2Hand.tif (Sentinel-2 L1C, 13 x Int16,
            512x512): bands B2, B3, B4, B8 (the 10 m bands) stacked to a 4 x UInt16 /vsimem/
            GTiff (all its samples are >= 0), nodata 0.

Metrics per point: file bpp = 8 * file bytes / (width * height) (bits per pixel, all bands),
NSAT payload bpp (NSAT_BITS_PER_PIXEL: full-resolution tiles only), PSNR over all bands
(peak 255 for Byte; peak 65535 and peak = max valid value for UInt16), MS-SSIM (Wang et al.
2003, Gaussian window 11 / sigma 1.5, standard weights, as many scales as fit, per band then
averaged). BD-rate (PSNR based, cubic fit of log rate against PSNR) of every MULTIRATE curve
against each baseline. Speed: encode / decode megapixels per second of MULTIRATE QUALITY=75
and of JP2OpenJPEG at the same file rate, best of 3, on the Landsat 8 and NAIP scenes.

Also (issue 12): tile seams of MULTIRATE QUALITY=75 at the default BLOCKSIZE on the NAIP and
Landsat 7 scenes (PSNR of the 8 px strips across interior tile boundaries against the PSNR of
the tile interiors, and against the same strips coded with OVERLAP=0 and as one tile, and a
crop across a tile corner, seam_<dataset>.png); the demo-scene
table (JPEG at QUALITY 50/75/90 against MULTIRATE interpolated at the same file size); and a
"Floors (issue 12)" section whose verdicts are computed from the measurements.

--model ID (repeatable) adds a MULTIRATE curve per model (-co MODEL=ID, rows "MULTIRATE ID");
a model is run only on the data types it codes (Byte for multirate-rgb8*, UInt16/Int16 for
multirate-ms16*, Float32 for multirate-sar-db; from its card). Without --model one curve,
"NSAT MULTIRATE", uses the codec's default model for each data type.

Every NSAT file is written with OVERVIEWS=NONE, so its size is header + full-resolution tiles.

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_multirate.py [--data ../shared/data]
        [--out scripts/results/multirate] [--eurosat-images 200] [--threads 2] [--quick]
        [--model multirate-rgb8 --model multirate-rgb8-v3 ...]

The NSAT plugin is taken from GDAL_DRIVER_PATH (default: <repo>/build); the models from
NSAT_MODELS_DIR as the plugin resolves it. Outputs in --out: rd_<dataset>.png,
seam_<dataset>.png, results.json, report.md.
"""
import argparse
import csv
import datetime
import glob
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")),
                        help="data folder (default: ../shared/data from the repository root)")
    parser.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "multirate"),
                        help="output folder (default: scripts/results/multirate)")
    parser.add_argument("--eurosat-images", type=int, default=200,
                        help="first N images of the EuroSAT RGB test split (default 200)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads: NSAT NUM_THREADS, JP2OpenJPEG NUM_THREADS where the driver "
                             "has it, GDAL_NUM_THREADS (default 2)")
    parser.add_argument("--model", action="append", default=[], metavar="ID",
                        help="MULTIRATE model id (a folder of models/), repeatable: one MULTIRATE "
                             "curve per model, run on the data types the model codes (default: "
                             "one curve with the codec's default model)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 5 EuroSAT images, 3 settings per codec, 512x512 windows "
                             "of the scenes, 1 speed repeat")
    return parser.parse_args()


ARGS = parse_args()
# Must be set before osgeo is imported: GDAL scans GDAL_DRIVER_PATH when it registers drivers.
os.environ.setdefault("GDAL_DRIVER_PATH", os.path.join(REPO, "build"))
os.environ["GDAL_PAM_ENABLED"] = "NO"  # no .aux.xml side files
os.environ["GDAL_NUM_THREADS"] = str(ARGS.threads)

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

from image_metrics import msssim, msssim_band  # noqa: E402,F401  (bench_sar_ms uses msssim_band)

gdal.UseExceptions()
gdal.SetConfigOption("GDAL_NUM_THREADS", str(ARGS.threads))
gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")

VSI = "/vsimem/bench_multirate"
NSAT = "NSAT MULTIRATE"
QUICK_EUROSAT = 5
QUICK_WINDOW = 512
SPEED_REPEATS = 1 if ARGS.quick else 3
SPEED_QUALITY = 75
SEAM_QUALITY = 75           # MULTIRATE setting of the tile-seam measurement
SEAM_HALF = 4               # strip: 4 px each side of an interior tile boundary
SEAM_FLOOR_DB = 0.5         # issue 12: interior PSNR - strip PSNR <= 0.5 dB
SEAM_CROP = 128             # seam_<dataset>.png: crop side (px) across one interior tile corner
SEAM_SCALE = 3              # nearest-neighbour upscaling of the crop
DEMO_DATASET = "landsat7"
DEMO_JPEG_QUALITIES = [50, 75, 90]  # demo-scene floor: MULTIRATE >= JPEG at these file sizes
EUROSAT_FLOOR_BPP = [0.5, 1.0]
EUROSAT_FLOOR_DB = 1.5      # MULTIRATE PSNR >= WebP PSNR + 1.5 dB at those rates
MOSAIC_COLUMNS = 10         # EuroSAT mosaic: the images as 64 px tiles of one NSAT file, at
                            # most this many across (a divisor of the count: no padding tiles)
MOSAIC_LABEL = "one mosaic file"
LANDSAT8_BD_RANGE = (0.1, 2.0)
JP2_LOW_SETTINGS_16BIT = dict(settings=[0.1, 0.25, 0.5], quick=[0.25])  # added on non-Byte data

MR_SPEC = dict(driver="NSAT", ext=".nsat", settings=[1, 10, 25, 50, 75, 90, 100],
               quick=[10, 50, 90], label="QUALITY")
# name -> driver, extension, settings (full run), settings (--quick), label of the setting;
# the MULTIRATE curves (one per --model) come first, then the baselines.
CODECS = {}
MR_CODECS = []  # labels of the MULTIRATE curves
for _model in dict.fromkeys(ARGS.model) or [None]:
    _label = NSAT if _model is None else f"MULTIRATE {_model}"
    CODECS[_label] = dict(MR_SPEC, model=_model)
    MR_CODECS.append(_label)
CODECS.update({
    "JPEG": dict(driver="JPEG", ext=".jpg", settings=[10, 20, 30, 50, 70, 85, 95],
                 quick=[20, 50, 85], label="QUALITY"),
    "WEBP": dict(driver="WEBP", ext=".webp", settings=[5, 10, 20, 35, 50, 70, 85, 95],
                 quick=[20, 50, 85], label="QUALITY"),
    "JP2OpenJPEG": dict(driver="JP2OpenJPEG", ext=".jp2", settings=[1, 2, 3, 5, 8, 12, 20, 30, 50],
                        quick=[2, 5, 15], label="QUALITY (% of raw size)"),
})
BASELINES = ["JPEG", "WEBP", "JP2OpenJPEG"]



def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Failures and skips: logged once per key, counted, never fatal.

FAILURES = {}  # (dataset, codec, setting) -> {"count": n, "message": first message}
SKIPS = []     # {"dataset", "codec", "reason"}


def record_failure(dataset, codec, setting, message):
    key = (dataset, codec, str(setting))
    entry = FAILURES.get(key)
    if entry is None:
        FAILURES[key] = {"count": 1, "message": message}
        log(f"  FAILED {dataset} {codec} {setting}: {message}")
    else:
        entry["count"] += 1


# ---------------------------------------------------------------------------------------------
# MULTIRATE models.

def models_dir():
    return os.environ.get("NSAT_MODELS_DIR") or os.path.join(REPO, "models")


def model_card(model):
    """A MULTIRATE model's card.json. Raises when the model folder or its card is missing."""
    with open(os.path.join(models_dir(), model, "card.json")) as f:
        return json.load(f)


def model_data_types(model, card):
    """Data types a MULTIRATE model codes, from its card: Float32 when the card's sample
    domain is Float32 (the SAR dB model), else Byte when its synthesis clamps to [0, 255],
    else UInt16/Int16."""
    if card.get("codec") != "MULTIRATE":
        raise ValueError(f"{model} is a {card.get('codec')} model, not MULTIRATE")
    domain = str((card.get("data") or {}).get("sample_domain", ""))
    if "Float32" in domain:
        return ("Float32",)
    synthesis = str((card.get("interface") or {}).get("synthesis.pt", ""))
    match = re.search(r"clamped to \[0, ([0-9.]+)\]", synthesis)
    if match and float(match.group(1)) <= 255.0:
        return ("Byte",)
    return ("UInt16", "Int16")


MODEL_TYPES = {}  # model id -> data types it codes
MODEL_BANDS = {}  # model id -> bands it codes jointly
for _model in ARGS.model:
    try:
        _card = model_card(_model)
        MODEL_TYPES[_model] = model_data_types(_model, _card)
        MODEL_BANDS[_model] = int(_card["architecture"]["bands"])
    except (OSError, ValueError) as _error:
        sys.exit(f"--model {_model}: {_error}")


def is_multirate(codec):
    return codec in MR_CODECS


# ---------------------------------------------------------------------------------------------
# Codec support and one encode/decode round trip.

def creation_options(codec, setting, threads=None):
    threads = ARGS.threads if threads is None else threads
    if is_multirate(codec):
        options = ["CODEC=MULTIRATE", f"QUALITY={setting}", "OVERVIEWS=NONE", f"NUM_THREADS={threads}"]
        if CODECS[codec]["model"]:
            options.append(f"MODEL={CODECS[codec]['model']}")
        return options
    if codec == "JP2OpenJPEG":
        options = [f"QUALITY={setting}", "REVERSIBLE=NO"]
        if driver_has_option("JP2OpenJPEG", "NUM_THREADS"):
            options.append(f"NUM_THREADS={threads}")
        return options
    return [f"QUALITY={setting}"]


def driver_has_option(driver_name, option):
    driver = gdal.GetDriverByName(driver_name)
    if driver is None:
        return False
    options = driver.GetMetadataItem(gdal.DMD_CREATIONOPTIONLIST) or ""
    return f"name='{option}'" in options or f'name="{option}"' in options


def support(codec, dtype_name, bands):
    """None when the codec is run on this input, else the reason it is skipped."""
    driver_name = CODECS[codec]["driver"]
    driver = gdal.GetDriverByName(driver_name)
    if driver is None:
        return f"GDAL driver {driver_name} is not available"
    model = CODECS[codec].get("model")
    if model and dtype_name not in MODEL_TYPES[model]:
        return (f"model {model} codes {'/'.join(MODEL_TYPES[model])} only, this dataset is "
                f"{dtype_name}")
    if model and MODEL_BANDS[model] == 4 and bands != 4:
        return f"model {model} codes R, G, B, NIR (4 bands), this dataset has {bands}"
    if codec == "JPEG":
        if dtype_name != "Byte":
            return ("JPEG is benchmarked on Byte only (GDAL's 12-bit JPEG for UInt16 cannot hold "
                    "values above 4095)")
        if bands not in (1, 3, 4):
            return f"GDAL JPEG writes 1, 3 or 4 bands, not {bands}"
    if codec == "WEBP":
        if dtype_name != "Byte":
            return f"GDAL WEBP writes Byte only, not {dtype_name}"
        if bands not in (3, 4):
            return f"GDAL WEBP writes 3 (RGB) or 4 (RGBA) bands only, not {bands}"
    types = (driver.GetMetadataItem(gdal.DMD_CREATIONDATATYPES) or "").split()
    if types and dtype_name not in types:
        return f"GDAL {driver_name} does not write {dtype_name} (writes {' '.join(types)})"
    return None


def unlink_all(prefix):
    """Removes every /vsimem/ file whose path starts with prefix."""
    listing = gdal.ReadDirRecursive(VSI) or []
    for name in listing:
        full = f"{VSI}/{name}"
        if full.startswith(prefix) and not name.endswith("/"):
            gdal.Unlink(full)


def read_all(path, codec, bands):
    """Fresh open + full ReadAsArray; returns (bands, H, W) array, NSAT payload bpp and a dict
    with the block size of band 1 and, for NSAT, the model(s) the file names (NSAT_MODELS)."""
    cmyk = codec == "JPEG" and bands == 4
    if cmyk:
        # 4-band JPEGs are CMYK: keep the 4 coded components instead of converting to RGB.
        # (Only for 4 bands: with this option a 3-band JPEG would be returned as YCbCr.)
        gdal.SetConfigOption("GDAL_JPEG_TO_RGB", "NO")
    try:
        ds = gdal.Open(path)
        array = ds.ReadAsArray()
        payload = None
        meta = dict(block=list(ds.GetRasterBand(1).GetBlockSize()))
        if is_multirate(codec):
            value = ds.GetMetadataItem("NSAT_BITS_PER_PIXEL", "IMAGE_STRUCTURE")
            payload = float(value) if value not in (None, "") else None
            meta["models"] = ds.GetMetadataItem("NSAT_MODELS", "IMAGE_STRUCTURE")
        ds = None
    finally:
        if cmyk:
            gdal.SetConfigOption("GDAL_JPEG_TO_RGB", None)
    if array.ndim == 2:
        array = array[np.newaxis]
    return array, payload, meta


def round_trip(src, codec, setting, stem, extra_options=()):
    """Encodes src with codec/setting (and extra_options) to /vsimem/, decodes it, deletes it.
    Returns (file bytes, NSAT payload bpp or None, decoded array, read_all's dict)."""
    spec = CODECS[codec]
    path = f"{VSI}/{stem}{spec['ext']}"
    try:
        out = gdal.Translate(path, src, format=spec["driver"],
                             creationOptions=creation_options(codec, setting) + list(extra_options))
        if out is None:
            raise RuntimeError(gdal.GetLastErrorMsg() or "gdal.Translate returned None")
        out = None
        stat = gdal.VSIStatL(path)
        if stat is None:
            raise RuntimeError("no output file was written")
        size = stat.size
        decoded, payload, meta = read_all(path, codec, src.RasterCount)
    finally:
        unlink_all(path)
    return size, payload, decoded, meta


def model_name(models):
    """'multirate-rgb8-v3' from NSAT_MODELS 'multirate-rgb8-v3:<sha256>' (several: comma list)."""
    if not models:
        return None
    return ",".join(item.split(":", 1)[0] for item in models.split(","))


# ---------------------------------------------------------------------------------------------
# Metrics.

def valid_mask(ds):
    """True where every band's GDAL mask says valid (nodata excluded)."""
    valid = np.ones((ds.RasterYSize, ds.RasterXSize), dtype=bool)
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        if band.GetMaskFlags() & gdal.GMF_ALL_VALID:
            continue
        valid &= band.GetMaskBand().ReadAsArray() != 0
    return valid


def psnr(reference, decoded, valid, peak):
    """PSNR (dB) over all bands of the valid pixels."""
    if not valid.any():
        return float("nan")
    diff = reference.astype(np.float64)[:, valid] - decoded.astype(np.float64)[:, valid]
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def measure_point(reference, decoded, valid, peak, max_peak, pixels, size, payload):
    if decoded.shape != reference.shape:
        raise RuntimeError(f"decoded shape {decoded.shape} differs from source {reference.shape}")
    point = dict(file_bytes=int(size), file_bpp=8.0 * size / pixels, payload_bpp=payload,
                 psnr=psnr(reference, decoded, valid, peak))
    if max_peak is not None:
        point["psnr_maxpeak"] = psnr(reference, decoded, valid, max_peak)
    point["msssim"], point["msssim_scales"] = msssim(reference, decoded, valid, peak)
    return point


# ---------------------------------------------------------------------------------------------
# BD-rate.

def bd_rate(anchor, test):
    """Bjontegaard delta rate (%) of `test` against `anchor`; each a list of (rate, psnr).
    log(rate) is fitted as a polynomial of PSNR (cubic; lower degree when a curve has fewer
    than 4 points), both fits are integrated over the overlapping PSNR interval and the mean
    log-rate difference is turned into a percentage (negative: test needs fewer bits).
    Returns (value or None, info dict)."""
    def clean(points):
        seen = {}
        for rate, quality in points:
            if rate is None or quality is None or not (rate > 0) or not math.isfinite(quality):
                continue
            seen.setdefault(round(quality, 9), (rate, quality))
        return sorted(seen.values(), key=lambda p: p[1])

    a, t = clean(anchor), clean(test)
    info = dict(points_anchor=len(a), points_test=len(t))
    if len(a) < 2 or len(t) < 2:
        info["why"] = "fewer than 2 points"
        return None, info
    lo = max(a[0][1], t[0][1])
    hi = min(a[-1][1], t[-1][1])
    info.update(overlap_db=[lo, hi])
    if hi <= lo:
        info["why"] = "PSNR ranges do not overlap"
        return None, info
    integrals = []
    degrees = []
    for curve in (a, t):
        q = np.array([p[1] for p in curve])
        lr = np.log(np.array([p[0] for p in curve]))
        degree = min(3, len(curve) - 1)
        degrees.append(degree)
        poly = np.polyint(np.polyfit(q, lr, degree))
        integrals.append(np.polyval(poly, hi) - np.polyval(poly, lo))
    info["degrees"] = degrees
    mean_diff = (integrals[1] - integrals[0]) / (hi - lo)
    return float((math.exp(mean_diff) - 1.0) * 100.0), info


def clip_curve(points, lo, hi):
    """A (rate, psnr) curve restricted to lo <= rate <= hi: the points inside, plus points at
    lo and hi interpolated (PSNR linear in log rate) where the curve crosses them."""
    curve = sorted((r, q) for r, q in points
                   if r is not None and q is not None and r > 0 and math.isfinite(q))
    out = [(r, q) for r, q in curve if lo <= r <= hi]
    for bound in (lo, hi):
        for (r0, q0), (r1, q1) in zip(curve, curve[1:]):
            if r0 < bound < r1:
                t = (math.log(bound) - math.log(r0)) / (math.log(r1) - math.log(r0))
                out.append((bound, q0 + t * (q1 - q0)))
                break
    return sorted(set(out))


def psnr_at_rate(points, rate):
    """PSNR of a (rate, psnr) curve at `rate`, linear in log rate between the two measured
    points around it. Returns dict(where='in'|'below'|'above', psnr (None unless 'in'),
    min_rate, max_rate, psnr_at_max_rate)."""
    curve = sorted((r, q) for r, q in points
                   if r is not None and q is not None and r > 0 and math.isfinite(q))
    if not curve:
        return dict(where="none", psnr=None, min_rate=None, max_rate=None, psnr_at_max_rate=None)
    info = dict(min_rate=curve[0][0], max_rate=curve[-1][0], psnr_at_max_rate=curve[-1][1],
                psnr=None)
    if rate < curve[0][0]:
        return dict(info, where="below")
    if rate > curve[-1][0]:
        return dict(info, where="above")
    for (r0, q0), (r1, q1) in zip(curve, curve[1:]):
        if r0 <= rate <= r1:
            t = 0.0 if r1 == r0 else (math.log(rate) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return dict(info, where="in", psnr=q0 + t * (q1 - q0))
    return dict(info, where="in", psnr=curve[0][1])  # a single point exactly at `rate`


def at_rate_verdict(points, rate, required):
    """Whether a MULTIRATE curve reaches PSNR `required` at file rate `rate`. Inside its
    measured range: the interpolated PSNR. Below its smallest rate: not met (it cannot code
    that small). Above its largest rate: its PSNR at the largest rate (it cannot use more
    bits), so met only if that already reaches `required`. Returns (psnr or None, met, note)."""
    at = psnr_at_rate(points, rate)
    if at["where"] == "in":
        return at["psnr"], at["psnr"] >= required, ""
    if at["where"] == "below":
        return None, False, f"MULTIRATE's smallest file is {at['min_rate']:.3f} bpp"
    if at["where"] == "above":
        value = at["psnr_at_max_rate"]
        return value, value >= required, (f"MULTIRATE's largest file is {at['max_rate']:.3f} bpp; "
                                          f"its PSNR there is used")
    return None, False, "no MULTIRATE points"


# ---------------------------------------------------------------------------------------------
# Datasets.

def settings_for(codec):
    return CODECS[codec]["quick" if ARGS.quick else "settings"]


def eurosat_files():
    table = os.path.join(ARGS.data, "eurosat_rgb_splits.csv")
    files = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"].strip() != "test":
                continue
            name = row["file"].strip()
            path = os.path.join(ARGS.data, "eurosat_rgb", row["class"].strip(), os.path.basename(name))
            if not os.path.exists(path):
                alternative = os.path.join(ARGS.data, "eurosat_rgb", name)
                path = alternative if os.path.exists(alternative) else path
            files.append(path)
    count = QUICK_EUROSAT if ARGS.quick else ARGS.eurosat_images
    return files[:count]


def run_eurosat(results):
    files = eurosat_files()
    log(f"eurosat: {len(files)} images")
    info = dict(name="eurosat", description=f"EuroSAT RGB, first {len(files)} images of the test "
                f"split of eurosat_rgb_splits.csv, 64x64, 3 x Byte", images=len(files),
                dtype="Byte", bands=3, peak=255, skipped={}, per_image=[], points=[],
                source="<data>/eurosat_rgb/<Class>/<Class>_<n>.jpg, as listed in <data>/eurosat_rgb_splits.csv")
    results["datasets"]["eurosat"] = info
    codecs = []
    for codec in CODECS:
        reason = support(codec, "Byte", 3)
        if reason:
            info["skipped"][codec] = reason
            SKIPS.append(dict(dataset="eurosat", codec=codec, reason=reason))
            log(f"  skip {codec}: {reason}")
        else:
            codecs.append(codec)
    src_path = f"{VSI}/eurosat_src.tif"
    t0 = time.perf_counter()
    chips = []  # (reference, valid) of every image read, for the mosaic
    for index, path in enumerate(files):
        name = os.path.basename(path)
        try:
            copy = gdal.Translate(src_path, path, format="GTiff")
            del copy  # close: the GTiff is complete before it is reopened
            src = gdal.Open(src_path)
            reference = src.ReadAsArray()
            if reference.ndim == 2:
                reference = reference[np.newaxis]
            valid = valid_mask(src)
        except RuntimeError as error:
            record_failure("eurosat", "source", name, str(error))
            unlink_all(src_path)
            continue
        pixels = src.RasterXSize * src.RasterYSize
        chips.append((reference, valid))
        for codec in codecs:
            for setting in settings_for(codec):
                try:
                    size, payload, decoded, meta = round_trip(src, codec, setting, f"eurosat_{index}")
                    point = measure_point(reference, decoded, valid, 255.0, None, pixels, size, payload)
                except Exception as error:  # noqa: BLE001 - a failing point is logged, not fatal
                    record_failure("eurosat", codec, setting, str(error).strip())
                    continue
                point.update(image=name, codec=codec, setting=setting, model=meta.get("models"))
                info["per_image"].append(point)
        src = None
        unlink_all(src_path)
        if (index + 1) % 10 == 0 or index + 1 == len(files):
            log(f"  {index + 1}/{len(files)} images, {time.perf_counter() - t0:.0f} s")
    # Averages per codec and setting.
    for codec in codecs:
        for setting in settings_for(codec):
            rows = [p for p in info["per_image"] if p["codec"] == codec and p["setting"] == setting]
            if not rows:
                continue
            point = dict(codec=codec, setting=setting, n=len(rows), complete=len(rows) == len(files),
                         model=rows[0].get("model"))
            for key in ("file_bpp", "payload_bpp", "psnr", "msssim"):
                values = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
                point[key] = float(np.mean(values)) if values else None
                if key == "psnr" and len(values) != len(rows):
                    point["psnr_non_finite_images"] = len(rows) - len(values)
            point["msssim_scales"] = rows[0]["msssim_scales"]
            if is_multirate(codec) and point["complete"]:
                try:
                    point.update(eurosat_mosaic(chips, codec, setting))
                except Exception as error:  # noqa: BLE001 - logged, not fatal
                    record_failure("eurosat", codec, f"{setting} (mosaic)", str(error).strip())
            info["points"].append(point)


def eurosat_mosaic(chips, codec, setting):
    """The EuroSAT images as the 64 px tiles of one NSAT file (BLOCKSIZE=64), as an ML
    dataset may store them: one header for all. Each tile is coded on its own, so the pixels
    are those of the per-image files; returns the mosaic's bpp (file bytes / all pixels)
    and the mean PSNR over its tiles, which the report lists beside the per-image mean."""
    bands, side = chips[0][0].shape[:2]
    if any(reference.shape != chips[0][0].shape for reference, _ in chips):
        raise RuntimeError("mosaic: the images differ in size")
    columns = max(c for c in range(1, MOSAIC_COLUMNS + 1) if len(chips) % c == 0)
    mem = gdal.GetDriverByName("MEM").Create("", columns * side, len(chips) // columns * side, bands,
                                             gdal.GDT_Byte)
    for index, (reference, _) in enumerate(chips):
        y, x = divmod(index, columns)
        for band in range(bands):
            mem.GetRasterBand(band + 1).WriteArray(reference[band], x * side, y * side)
    path = f"{VSI}/eurosat_mosaic.nsat"
    try:
        out = gdal.Translate(path, mem, format="NSAT",
                             creationOptions=creation_options(codec, setting) + [f"BLOCKSIZE={side}", "OVERLAP=0"])
        out = None
        size = gdal.VSIStatL(path).size
        decoded, _, _ = read_all(path, codec, bands)
    finally:
        unlink_all(path)
    values = []
    for index, (reference, valid) in enumerate(chips):
        y, x = divmod(index, columns)
        tile = decoded[:, y * side:(y + 1) * side, x * side:(x + 1) * side]
        values.append(psnr(reference, tile, valid, 255.0))
    return dict(mosaic_bpp=8.0 * size / (len(chips) * side * side), mosaic_psnr=float(np.mean(values)))


def find_one(pattern):
    matches = sorted(glob.glob(pattern))
    return matches[0] if matches else None


def stack_sentinel2(path):
    """Bands B2, B3, B4, B8 of the Sen1Floods11 S2 scene (13 x Int16, B1..B12 with B8A) as a
    4 x UInt16 GTiff in /vsimem/ (its samples are all >= 0, so the cast is exact). Returns the
    /vsimem/ path, or None when the file is missing."""
    if path is None or not os.path.exists(path):
        return None
    ds = gdal.Open(path)
    names = [ds.GetRasterBand(b).GetDescription() for b in range(1, ds.RasterCount + 1)]
    wanted = ["B2", "B3", "B4", "B8"]
    bands = [names.index(n) + 1 if n in names else i for n, i in zip(wanted, (2, 3, 4, 8))]
    minimum = min(float(ds.GetRasterBand(b).ComputeRasterMinMax(False)[0]) for b in bands)
    ds = None
    if minimum < 0:
        raise RuntimeError(f"{path}: negative samples ({minimum}); not cast to UInt16")
    out = f"{VSI}/src_sentinel2.tif"
    copy = gdal.Translate(out, path, format="GTiff", bandList=bands, outputType=gdal.GDT_UInt16)
    del copy  # close: the GTiff is complete before it is opened again
    return out


def load_scene(path, key, description, drop_nodata=False, window=None):
    """MEM copy (`window` [x, y, w, h] if given, else a central one in --quick) of a scene,
    its reference array, valid mask and peaks.
    drop_nodata: the copy has no nodata value (every pixel is coded and measured)."""
    info = gdal.Info(path, format="json")
    width, height = info["size"]
    if window is None and ARGS.quick:
        w = min(QUICK_WINDOW, width)
        h = min(QUICK_WINDOW, height)
        window = [(width - w) // 2, (height - h) // 2, w, h]
    elif window is None:
        window = [0, 0, width, height]
    src = gdal.Translate("", path, format="MEM", srcWin=window,
                         **({"noData": "none"} if drop_nodata else {}))
    reference = src.ReadAsArray()
    if reference.ndim == 2:
        reference = reference[np.newaxis]
    valid = valid_mask(src)
    dtype = gdal.GetDataTypeName(src.GetRasterBand(1).DataType)
    nodata = [src.GetRasterBand(b).GetNoDataValue() for b in range(1, src.RasterCount + 1)]
    peak = 255.0 if dtype == "Byte" else float(2 ** gdal.GetDataTypeSize(src.GetRasterBand(1).DataType) - 1)
    max_valid = float(reference[:, valid].max()) if valid.any() else None
    scene = dict(name=key, description=description, path=path, full_size=[width, height],
                 window=window, dtype=dtype, bands=src.RasterCount, nodata=nodata,
                 valid_fraction=float(valid.mean()), peak=peak, max_valid=max_valid,
                 bits_per_sample=gdal.GetDataTypeSize(src.GetRasterBand(1).DataType))
    return src, reference, valid, scene


def scene_settings(scene, codec):
    """Settings of a codec on a scene: the usual ones, plus the demo-floor JPEG qualities on
    the demo scene and lower JP2OpenJPEG rates on 16-bit data (where 1 % of the raw size is
    already 0.16 bpp per band, above most of MULTIRATE's range)."""
    settings = list(settings_for(codec))
    if scene["name"] == DEMO_DATASET and codec == "JPEG":
        settings = sorted(set(settings) | set(DEMO_JPEG_QUALITIES))
    if codec == "JP2OpenJPEG" and scene["dtype"] != "Byte":
        settings = sorted(set(settings) | set(JP2_LOW_SETTINGS_16BIT["quick" if ARGS.quick else "settings"]))
    return settings


def run_scene(results, key, path, description, drop_nodata=False, window=None):
    if path is None or not os.path.exists(path) and not path.startswith("/vsimem/"):
        log(f"{key}: file not found, skipped")
        results["datasets"][key] = dict(name=key, description=description, missing=True,
                                        skipped={}, points=[])
        SKIPS.append(dict(dataset=key, codec="all", reason=f"file not found: {path}"))
        return None
    src, reference, valid, scene = load_scene(path, key, description, drop_nodata, window)
    log(f"{key}: {os.path.basename(path)} window {scene['window']} {scene['bands']} x {scene['dtype']}, "
        f"{scene['valid_fraction'] * 100:.1f}% valid")
    scene.update(skipped={}, points=[])
    results["datasets"][key] = scene
    pixels = src.RasterXSize * src.RasterYSize
    max_peak = scene["max_valid"] if scene["dtype"] != "Byte" else None
    for codec in CODECS:
        reason = support(codec, scene["dtype"], scene["bands"])
        if reason:
            scene["skipped"][codec] = reason
            SKIPS.append(dict(dataset=key, codec=codec, reason=reason))
            log(f"  skip {codec}: {reason}")
            continue
        for setting in scene_settings(scene, codec):
            t0 = time.perf_counter()
            try:
                size, payload, decoded, meta = round_trip(src, codec, setting, key)
                point = measure_point(reference, decoded, valid, scene["peak"], max_peak, pixels,
                                      size, payload)
            except Exception as error:  # noqa: BLE001
                record_failure(key, codec, setting, str(error).strip())
                continue
            point.update(codec=codec, setting=setting, n=1, complete=True, model=meta.get("models"))
            scene["points"].append(point)
            log(f"  {codec:12s} {setting:>4} {point['file_bpp']:7.3f} bpp  PSNR {point['psnr']:6.2f} dB  "
                f"MS-SSIM {point['msssim']:.4f}  ({time.perf_counter() - t0:.1f} s)")
    return src, scene, reference, valid


def scene_codecs(dataset, multirate_only=False):
    """Codecs run on a dataset (not skipped), in CODECS order."""
    skipped = dataset.get("skipped", {})
    return [c for c in CODECS if c not in skipped and not dataset.get("missing")
            and (is_multirate(c) or not multirate_only)]


# ---------------------------------------------------------------------------------------------
# Tile seams.

def interior_boundaries(size, block):
    """Pixel positions of the tile boundaries strictly inside [0, size)."""
    return list(range(block, size, block)) if block > 0 else []


def seam_strip_mask(height, width, block_x, block_y, half=SEAM_HALF):
    """True within `half` px on each side of every interior tile boundary (rows and columns)."""
    strip = np.zeros((height, width), dtype=bool)
    for x in interior_boundaries(width, block_x):
        strip[:, max(0, x - half):x + half] = True
    for y in interior_boundaries(height, block_y):
        strip[max(0, y - half):y + half, :] = True
    return strip


def seam_crop_window(valid, block_x, block_y, side=SEAM_CROP):
    """(x0, y0, side, corner_x, corner_y) of a side x side crop centred (as far as the image
    allows) on the interior tile corner whose crop has the most valid pixels; a boundary
    midpoint when there is only one direction of boundaries; None when there is none."""
    height, width = valid.shape
    side = min(side, height, width)
    xs = interior_boundaries(width, block_x) or [None]
    ys = interior_boundaries(height, block_y) or [None]
    if xs == [None] and ys == [None]:
        return None
    best = None
    for cx in xs:
        for cy in ys:
            x = width // 2 if cx is None else cx
            y = height // 2 if cy is None else cy
            x0 = min(max(x - side // 2, 0), width - side)
            y0 = min(max(y - side // 2, 0), height - side)
            score = float(valid[y0:y0 + side, x0:x0 + side].mean())
            if best is None or score > best[0]:
                best = (score, x0, y0, cx, cy)
    _, x0, y0, cx, cy = best
    return x0, y0, side, cx, cy


def to_rgb8(arrays, valid):
    """The first three bands (one band repeated) as uint8 H x W x 3; 16-bit data is stretched
    linearly between the 0.5th and 99.5th percentile of the first array's valid samples."""
    out = []
    first = arrays[0]
    bands = [0, 1, 2] if first.shape[0] >= 3 else [0, 0, 0]
    lo = hi = None
    if first.dtype != np.uint8:
        samples = first[bands][:, valid] if valid.any() else first[bands].reshape(3, -1)
        lo, hi = (float(v) for v in np.percentile(samples, (0.5, 99.5)))
        hi = max(hi, lo + 1.0)
    for array in arrays:
        rgb = array[bands].astype(np.float64)
        if lo is not None:
            rgb = np.clip(np.round(255.0 * (rgb - lo) / (hi - lo)), 0, 255)
        out.append(np.transpose(rgb, (1, 2, 0)).astype(np.uint8))
    return out


def render_seam_png(path, reference, decoded_list, valid, block_x, block_y):
    """Original | decoded (one panel per MULTIRATE curve), each a crop across one interior tile
    corner, nearest-neighbour upscaled SEAM_SCALE x, in a white frame whose red marks point at
    the tile boundaries. Pixels are written as they are (no resampling by a plotting library).
    Returns the crop window dict, or None when the image has no interior tile boundary."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image
    window = seam_crop_window(valid, block_x, block_y)
    if window is None:
        return None
    x0, y0, side, cx, cy = window
    crops = [a[:, y0:y0 + side, x0:x0 + side] for a in [reference] + list(decoded_list)]
    panels = to_rgb8(crops, valid[y0:y0 + side, x0:x0 + side])
    frame = 8
    gap = 8
    size = side * SEAM_SCALE
    canvas = np.full((size + 2 * frame, len(panels) * (size + 2 * frame + gap) - gap, 3), 255, np.uint8)
    red = np.array([220, 0, 0], np.uint8)
    for i, panel in enumerate(panels):
        big = np.repeat(np.repeat(panel, SEAM_SCALE, axis=0), SEAM_SCALE, axis=1)
        left = i * (size + 2 * frame + gap)
        canvas[frame:frame + size, left + frame:left + frame + size] = big
        if cx is not None:
            px = left + frame + (cx - x0) * SEAM_SCALE
            canvas[:frame - 2, px - 1:px + 1] = red
            canvas[frame + size + 2:, px - 1:px + 1] = red
        if cy is not None:
            py = frame + (cy - y0) * SEAM_SCALE
            canvas[py - 1:py + 1, left:left + frame - 2] = red
            canvas[py - 1:py + 1, left + frame + size + 2:left + size + 2 * frame] = red
    matplotlib.image.imsave(path, canvas)
    return dict(x0=x0, y0=y0, side=side, corner_x=cx, corner_y=cy, scale=SEAM_SCALE)


def run_seams(results, key, src, scene, reference, valid, out):
    """MULTIRATE QUALITY=SEAM_QUALITY at the default BLOCKSIZE: PSNR of the 8 px strips along
    the interior tile boundaries (block size from the decoded file) against the tile interiors."""
    codecs = scene_codecs(scene, multirate_only=True)
    if not codecs:
        return
    log(f"seams {key}: QUALITY={SEAM_QUALITY}, default BLOCKSIZE")
    decoded_list, labels, blocks = [], [], []
    for codec in codecs:
        row = dict(dataset=key, codec=codec, setting=SEAM_QUALITY, error=None)
        results["seams"].append(row)
        try:
            size, payload, decoded, meta = round_trip(src, codec, SEAM_QUALITY, f"seam_{key}")
        except Exception as error:  # noqa: BLE001
            row["error"] = str(error).strip()
            record_failure(f"seams {key}", codec, SEAM_QUALITY, row["error"])
            continue
        block_x, block_y = meta["block"]
        height, width = valid.shape
        strip = seam_strip_mask(height, width, block_x, block_y)
        row.update(block=[block_x, block_y], model=meta.get("models"),
                   file_bpp=8.0 * size / (width * height),
                   boundaries_x=interior_boundaries(width, block_x),
                   boundaries_y=interior_boundaries(height, block_y),
                   strip_pixels=int((valid & strip).sum()), interior_pixels=int((valid & ~strip).sum()),
                   psnr_strip=psnr(reference, decoded, valid & strip, scene["peak"]),
                   psnr_interior=psnr(reference, decoded, valid & ~strip, scene["peak"]))
        if row["strip_pixels"] and row["interior_pixels"]:
            row["difference_db"] = row["psnr_interior"] - row["psnr_strip"]
            row["met"] = bool(row["difference_db"] <= SEAM_FLOOR_DB)
        else:
            row["difference_db"], row["met"] = None, None
            row["error"] = "no interior tile boundary in the image" if not row["strip_pixels"] else "no interior pixels"
        # The seam itself: the same strips with OVERLAP=0, and coded as one tile (no seam at
        # all), so that what the strips' content costs cancels.
        for variant, options in (("no_overlap", ["OVERLAP=0"]),
                                 ("one_tile", [f"BLOCKSIZE={(max(width, height) + 15) // 16 * 16}"])):
            try:
                v_size, _, v_decoded, _ = round_trip(src, codec, SEAM_QUALITY, f"seam_{key}_{variant}",
                                                     options)
            except Exception as error:  # noqa: BLE001
                record_failure(f"seams {key} {variant}", codec, SEAM_QUALITY, str(error).strip())
                continue
            row[f"file_bpp_{variant}"] = 8.0 * v_size / (width * height)
            row[f"psnr_strip_{variant}"] = psnr(reference, v_decoded, valid & strip, scene["peak"])
            row[f"psnr_interior_{variant}"] = psnr(reference, v_decoded, valid & ~strip, scene["peak"])
        log(f"  {codec}: block {block_x}x{block_y}, strip {fmt(row['psnr_strip'], 2)} dB, interior "
            f"{fmt(row['psnr_interior'], 2)} dB, difference {fmt(row['difference_db'], 2)} dB; strip "
            f"with OVERLAP=0 {fmt(row.get('psnr_strip_no_overlap'), 2)} dB, as one tile "
            f"{fmt(row.get('psnr_strip_one_tile'), 2)} dB")
        decoded_list.append(decoded)
        labels.append(codec)
        blocks.append((block_x, block_y))
    if decoded_list:
        path = os.path.join(out, f"seam_{key}.png")
        try:
            crop = render_seam_png(path, reference, decoded_list, valid, *blocks[0])
        except Exception as error:  # noqa: BLE001
            crop = None
            record_failure(f"seams {key}", "png", "-", f"{type(error).__name__}: {error}")
        if crop is not None:
            crop.update(file=os.path.basename(path), panels=["original"] + labels, block=list(blocks[0]))
            results["seam_images"][key] = crop


# ---------------------------------------------------------------------------------------------
# Speed.

def timed_encode(src, codec, options, path):
    unlink_all(path)
    t0 = time.perf_counter()
    out = gdal.Translate(path, src, format=CODECS[codec]["driver"], creationOptions=options)
    if out is None:
        raise RuntimeError(gdal.GetLastErrorMsg() or "gdal.Translate returned None")
    out = None  # close (flush) inside the timed region
    seconds = time.perf_counter() - t0
    return seconds, gdal.VSIStatL(path).size


def timed_decode(path, codec, bands):
    t0 = time.perf_counter()
    read_all(path, codec, bands)
    return time.perf_counter() - t0


def run_speed(results, key, src, scene):
    if not scene_codecs(scene, multirate_only=True):
        results["speed_skipped"].append(dict(dataset=key, reason=f"no MULTIRATE curve for {scene['dtype']} in this run"))
        log(f"speed {key}: skipped, no MULTIRATE curve for {scene['dtype']}")
        return
    pixels = src.RasterXSize * src.RasterYSize
    mp = pixels / 1e6
    raw_bpp = scene["bands"] * scene["bits_per_sample"]
    entry = dict(dataset=key, window=scene["window"], megapixels=mp, threads=ARGS.threads,
                 repeats=SPEED_REPEATS, rows=[], ratios=[])
    results["speed"].append(entry)
    log(f"speed {key}: {mp:.2f} MP, {ARGS.threads} thread(s)")
    jp2_path = f"{VSI}/speed_{key}.jp2"
    nsat_rows = []
    for index, codec in enumerate(scene_codecs(scene, multirate_only=True)):
        nsat_rows.append(dict(codec=codec, setting=f"QUALITY={SPEED_QUALITY}", enc=[], dec=[], error=None,
                              path=f"{VSI}/speed_{key}_{index}.nsat",
                              options=creation_options(codec, SPEED_QUALITY)))
    jp2 = dict(codec="JP2OpenJPEG", enc=[], dec=[], error=None, path=jp2_path)
    # First NSAT encode of each curve: gives the rate that JP2OpenJPEG is matched to (that of the
    # first curve) and counts as a run.
    for row in nsat_rows:
        try:
            seconds, size = timed_encode(src, row["codec"], row["options"], row["path"])
            row["enc"].append(seconds)
            row["file_bpp"] = 8.0 * size / pixels
        except Exception as error:  # noqa: BLE001
            row["error"] = str(error).strip()
            record_failure(f"speed {key}", row["codec"], SPEED_QUALITY, row["error"])
    matched = next((row for row in nsat_rows if row["error"] is None), None)
    if matched is not None:
        jp2_quality = max(0.01, min(100.0, 100.0 * matched["file_bpp"] / raw_bpp))
        jp2["rate_source"] = f"matched to the {matched['codec']} file rate"
    else:
        jp2_quality = 10.0
        jp2["rate_source"] = "fallback QUALITY=10 (NSAT failed, no rate to match)"
    jp2["setting"] = f"QUALITY={jp2_quality:.3g}"
    jp2["options"] = creation_options("JP2OpenJPEG", f"{jp2_quality:.4g}")
    reason = support("JP2OpenJPEG", scene["dtype"], scene["bands"])
    if reason:
        jp2["error"] = reason
    for _ in range(SPEED_REPEATS):
        for row in nsat_rows:
            if row["error"] is None and len(row["enc"]) < SPEED_REPEATS:
                try:
                    seconds, _ = timed_encode(src, row["codec"], row["options"], row["path"])
                    row["enc"].append(seconds)
                except Exception as error:  # noqa: BLE001
                    row["error"] = str(error).strip()
        if jp2["error"] is None:
            try:
                seconds, size = timed_encode(src, "JP2OpenJPEG", jp2["options"], jp2_path)
                jp2["enc"].append(seconds)
                jp2["file_bpp"] = 8.0 * size / pixels
            except Exception as error:  # noqa: BLE001
                jp2["error"] = str(error).strip()
                record_failure(f"speed {key}", "JP2OpenJPEG", jp2["setting"], jp2["error"])
    for _ in range(SPEED_REPEATS):
        for row in nsat_rows + [jp2]:
            if row["error"] is None:
                try:
                    row["dec"].append(timed_decode(row["path"], row["codec"], src.RasterCount))
                except Exception as error:  # noqa: BLE001
                    row["error"] = str(error).strip()
    for row in nsat_rows + [jp2]:
        unlink_all(row.pop("path"))
        row.pop("options", None)
        row["encode_s"] = min(row["enc"]) if row["enc"] and row["error"] is None else None
        row["decode_s"] = min(row["dec"]) if row["dec"] and row["error"] is None else None
        row["encode_mps"] = mp / row["encode_s"] if row["encode_s"] else None
        row["decode_mps"] = mp / row["decode_s"] if row["decode_s"] else None
        entry["rows"].append(row)
        state = row["error"] or (f"encode {row['encode_mps']:.3f} MP/s, decode {row['decode_mps']:.3f} MP/s, "
                                 f"{row.get('file_bpp', float('nan')):.3f} bpp")
        log(f"  {row['codec']} {row['setting']}: {state}")
    for row in nsat_rows:
        ratio = dict(codec=row["codec"])
        for what in ("encode_mps", "decode_mps"):
            ratio[what] = (row[what] / jp2[what]) if row[what] and jp2[what] else None
        entry["ratios"].append(ratio)
    entry["jp2_encode_threads_note"] = (
        f"NUM_THREADS={ARGS.threads} creation option" if driver_has_option("JP2OpenJPEG", "NUM_THREADS")
        else "no NUM_THREADS creation option in this GDAL; GDAL_NUM_THREADS was set during encode")


# ---------------------------------------------------------------------------------------------
# Output.

def machine():
    model = "unknown"
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in text.splitlines():
            if line.strip().lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        cores = str(os.cpu_count())
    return model, cores


def fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def codec_points(dataset, codec, complete_only=True):
    points = [p for p in dataset["points"] if p["codec"] == codec and (p.get("complete") or not complete_only)]
    return sorted(points, key=lambda p: p["file_bpp"] if p["file_bpp"] is not None else 0)


def rd_curve(dataset, codec, rate="file_bpp"):
    """(rate, PSNR) points; rate "mosaic_bpp" (EuroSAT) pairs with the mosaic's own PSNR."""
    quality = "mosaic_psnr" if rate == "mosaic_bpp" else "psnr"
    return [(p[rate], p[quality]) for p in codec_points(dataset, codec) if p.get(rate) is not None]


def compute_bd(results):
    table = []
    for key, dataset in results["datasets"].items():
        tests = scene_codecs(dataset, multirate_only=True)
        if not tests:
            why = ("dataset not measured" if dataset.get("missing") else
                   f"no MULTIRATE curve for {dataset.get('dtype')} in this run")
            for baseline in BASELINES:
                table.append(dict(dataset=key, codec="-", baseline=baseline, bd_file=None,
                                  bd_payload=None, why=why))
            continue
        for codec in tests:
            for baseline in BASELINES:
                row = dict(dataset=key, codec=codec, baseline=baseline)
                if baseline in dataset.get("skipped", {}):
                    row.update(bd_file=None, bd_payload=None, why="baseline skipped")
                    table.append(row)
                    continue
                anchor_rd = rd_curve(dataset, baseline)
                row["bd_file"], row["info_file"] = bd_rate(anchor_rd, rd_curve(dataset, codec))
                row["bd_payload"], row["info_payload"] = bd_rate(anchor_rd, rd_curve(dataset, codec, "payload_bpp"))
                table.append(row)
    results["bd_rate"] = table


def compute_demo(results):
    """Demo scene: JPEG at DEMO_JPEG_QUALITIES against MULTIRATE at the same file bpp."""
    dataset = results["datasets"].get(DEMO_DATASET)
    demo = dict(dataset=DEMO_DATASET, rows=[], verdicts={})
    results["demo"] = demo
    if not dataset or dataset.get("missing"):
        demo["why"] = "dataset not measured"
        return
    jpeg = {p["setting"]: p for p in codec_points(dataset, "JPEG")}
    for codec in scene_codecs(dataset, multirate_only=True):
        curve = rd_curve(dataset, codec)
        verdict = True
        for quality in DEMO_JPEG_QUALITIES:
            point = jpeg.get(quality)
            row = dict(codec=codec, quality=quality)
            if point is None:
                row.update(met=None, note="JPEG point missing")
                verdict = None if verdict is not False else False
            else:
                value, met, note = at_rate_verdict(curve, point["file_bpp"], point["psnr"])
                row.update(file_bpp=point["file_bpp"], jpeg_psnr=point["psnr"], multirate_psnr=value,
                           met=met, note=note)
                if not met:
                    verdict = False
            demo["rows"].append(row)
        demo["verdicts"][codec] = verdict


def verdict_text(met):
    return "not evaluated" if met is None else ("met" if met else "not met")


def compute_floors(results):
    """Issue 12's floors, each with a verdict computed from the measurements."""
    floors = []
    datasets = results["datasets"]

    def add(floor, codec, measured, met, note="", payload=""):
        floors.append(dict(floor=floor, codec=codec, measured=measured, payload=payload, met=met,
                           verdict=verdict_text(met), note=note))

    def curves_or_note(key):
        dataset = datasets.get(key)
        if dataset is None or dataset.get("missing"):
            return dataset, [], f"dataset {key} not measured"
        codecs = scene_codecs(dataset, multirate_only=True)
        return dataset, codecs, "" if codecs else f"no MULTIRATE curve for {dataset['dtype']} in this run"

    # EuroSAT: PSNR at 0.5 and 1.0 bpp against WebP's.
    eurosat, codecs, why = curves_or_note("eurosat")
    for rate in EUROSAT_FLOOR_BPP:
        floor = f"EuroSAT RGB: PSNR at {rate:g} bpp >= WebP's + {EUROSAT_FLOOR_DB:g} dB"
        if why:
            add(floor, "-", "n/a", None, why)
            continue
        if "WEBP" in eurosat.get("skipped", {}):
            add(floor, "-", "n/a", None, "WEBP skipped")
            continue
        webp = psnr_at_rate(rd_curve(eurosat, "WEBP"), rate)
        if webp["where"] != "in":
            for codec in codecs:
                add(floor, codec, "n/a", None, f"{rate:g} bpp is outside WebP's measured range")
            continue
        required = webp["psnr"] + EUROSAT_FLOOR_DB
        for codec in codecs:
            value, met, note = at_rate_verdict(rd_curve(eurosat, codec), rate, required)
            p_value, p_met, _ = at_rate_verdict(rd_curve(eurosat, codec, "payload_bpp"), rate, required)
            add(floor, codec, f"{fmt(value, 2)} dB vs WebP {webp['psnr']:.2f} dB (needs {required:.2f})",
                met, note, f"{fmt(p_value, 2)} dB ({verdict_text(p_met)})")
            mosaic = rd_curve(eurosat, codec, "mosaic_bpp")
            if mosaic:
                value, met, note = at_rate_verdict(mosaic, rate, required)
                add(floor, f"{codec}, {MOSAIC_LABEL}",
                    f"{fmt(value, 2)} dB vs WebP {webp['psnr']:.2f} dB (needs {required:.2f})", met, note)

    def bd_floor(floor, key, baseline, limit, rate_range=None, mosaic=False):
        dataset, codecs, why = curves_or_note(key)
        if why:
            add(floor, "-", "n/a", None, why)
            return
        if baseline in dataset.get("skipped", {}):
            add(floor, "-", "n/a", None, f"{baseline} skipped")
            return
        for codec in codecs:
            values = {}
            for basis in ("file_bpp", "payload_bpp"):
                anchor = rd_curve(dataset, baseline)
                test = rd_curve(dataset, codec, basis)
                if rate_range:
                    anchor, test = clip_curve(anchor, *rate_range), clip_curve(test, *rate_range)
                values[basis] = bd_rate(anchor, test)
            (bd_file, info), (bd_payload, _) = values["file_bpp"], values["payload_bpp"]
            note = "" if bd_file is not None else f"BD-rate not measurable: {info.get('why')}"
            if rate_range and bd_file is not None:
                note = (f"curves cut to {rate_range[0]:g}-{rate_range[1]:g} bpp: "
                        f"{info['points_test']} MULTIRATE / {info['points_anchor']} {baseline} points")
            overlap = info.get("overlap_db")
            if bd_file is not None and overlap and overlap[1] - overlap[0] < 1.0:
                note = "; ".join(filter(None, [note, f"PSNR overlap only {overlap[1] - overlap[0]:.2f} dB"]))
            payload = "n/a" if bd_payload is None else f"{bd_payload:+.1f} % ({verdict_text(bd_payload <= limit)})"
            add(floor, codec, "n/a" if bd_file is None else f"{bd_file:+.1f} %",
                bd_file is not None and bd_file <= limit, note, payload)
            test = rd_curve(dataset, codec, "mosaic_bpp") if mosaic else []
            if test:
                bd_mosaic, info = bd_rate(rd_curve(dataset, baseline), test)
                add(floor, f"{codec}, {MOSAIC_LABEL}", "n/a" if bd_mosaic is None else f"{bd_mosaic:+.1f} %",
                    bd_mosaic is not None and bd_mosaic <= limit,
                    "" if bd_mosaic is not None else f"BD-rate not measurable: {info.get('why')}")

    bd_floor("EuroSAT RGB: BD-rate vs WebP <= -25 %", "eurosat", "WEBP", -25.0, mosaic=True)
    bd_floor("NAIP: BD-rate vs JP2OpenJPEG <= -20 %", "naip", "JP2OpenJPEG", -20.0)
    bd_floor("NAIP held-out columns: BD-rate vs JP2OpenJPEG <= -20 %", "naip_holdout", "JP2OpenJPEG", -20.0)
    bd_floor("Aerial OSBS_029: BD-rate vs JP2OpenJPEG <= -20 %", "aerial", "JP2OpenJPEG", -20.0)
    bd_floor("Aerial DOTA demo: BD-rate vs JP2OpenJPEG <= -20 %", "dota", "JP2OpenJPEG", -20.0)
    bd_floor(f"Landsat 8 UInt16: BD-rate vs JP2OpenJPEG over {LANDSAT8_BD_RANGE[0]:g}-"
             f"{LANDSAT8_BD_RANGE[1]:g} bpp <= -20 %", "landsat8", "JP2OpenJPEG", -20.0, LANDSAT8_BD_RANGE)

    # Demo scene.
    demo = results.get("demo", {})
    floor = (f"Demo scene landsat7_rgb_byte.tif: MULTIRATE >= JPEG at the file sizes of JPEG "
             f"QUALITY {'/'.join(map(str, DEMO_JPEG_QUALITIES))}")
    if not demo.get("verdicts"):
        add(floor, "-", "n/a", None, demo.get("why") or curves_or_note(DEMO_DATASET)[2])
    for codec, met in demo.get("verdicts", {}).items():
        rows = [r for r in demo["rows"] if r["codec"] == codec]
        measured = ", ".join(f"q{r['quality']}: {fmt(r.get('multirate_psnr'), 2)} vs {fmt(r.get('jpeg_psnr'), 2)}"
                             for r in rows)
        add(floor, codec, measured + " dB", met)

    # Tile seams.
    for key in ("naip", DEMO_DATASET):
        floor = f"Tile seams {key}: interior PSNR - seam-strip PSNR <= {SEAM_FLOOR_DB:g} dB"
        rows = [r for r in results["seams"] if r["dataset"] == key]
        if not rows:
            add(floor, "-", "n/a", None, curves_or_note(key)[2] or "not measured")
        for row in rows:
            if row.get("difference_db") is None:
                add(floor, row["codec"], "n/a", None, row.get("error") or "")
            else:
                add(floor, row["codec"], f"{row['difference_db']:+.2f} dB", row["met"],
                    f"QUALITY={row['setting']}, {row['block'][0]}x{row['block'][1]} tiles")
    results["floors"] = floors


def plot(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    styles = {"JPEG": "s-", "WEBP": "^-", "JP2OpenJPEG": "d-"}
    mr_markers = ["o-", "v-", "P-", "X-", "*-", "h-"]
    for index, codec in enumerate(MR_CODECS):
        styles[codec] = mr_markers[index % len(mr_markers)]
    for key, dataset in results["datasets"].items():
        if not dataset.get("points"):
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        for codec in CODECS:
            points = codec_points(dataset, codec, complete_only=False)
            if not points:
                continue
            x = [p["file_bpp"] for p in points]
            line, = axes[0].plot(x, [p["psnr"] for p in points], styles[codec], label=f"{codec} (file)")
            axes[1].plot(x, [p["msssim"] for p in points], styles[codec], color=line.get_color(),
                         label=f"{codec} (file)")
            if is_multirate(codec) and all(p["payload_bpp"] is not None for p in points):
                xp = [p["payload_bpp"] for p in points]
                dashed = styles[codec][0] + "--"
                colour = "grey" if len(MR_CODECS) == 1 else line.get_color()
                axes[0].plot(xp, [p["psnr"] for p in points], dashed, color=colour, alpha=0.7,
                             label=f"{codec} (payload only)")
                axes[1].plot(xp, [p["msssim"] for p in points], dashed, color=colour, alpha=0.7,
                             label=f"{codec} (payload only)")
            mosaic = [p for p in points if p.get("mosaic_bpp") is not None]
            if is_multirate(codec) and mosaic:
                axes[0].plot([p["mosaic_bpp"] for p in mosaic], [p["mosaic_psnr"] for p in mosaic],
                             styles[codec][0] + ":", color=line.get_color(), label=f"{codec} ({MOSAIC_LABEL})")
        peak = "65535" if dataset.get("dtype") not in (None, "Byte") else "255"
        axes[0].set_ylabel(f"PSNR (dB, peak {peak})")
        scales = sorted({p["msssim_scales"] for p in dataset["points"]})
        axes[1].set_ylabel(f"MS-SSIM ({'/'.join(map(str, scales))} scales)")
        for ax in axes:
            ax.set_xlabel("bits per pixel (all bands)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(dataset["description"], fontsize=10)
        fig.tight_layout()
        path = os.path.join(out, f"rd_{key}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(results, out):
    lines = []
    add = lines.append
    meta = results["meta"]
    add("# NSAT MULTIRATE rate-distortion and speed benchmark")
    add("")
    if ARGS.quick:
        add("**Quick smoke-test run (--quick): few images, few settings, 512x512 windows. "
            "Not a result.**")
        add("")
    add(f"- Date: {meta['date']}")
    add(f"- Machine: {meta['cpu']}, {meta['nproc']} cores (nproc). Load average at start: "
        f"{meta['load_at_start']}.")
    add(f"- GDAL {meta['gdal']}, numpy {meta['numpy']}, Python {meta['python']}.")
    add(f"- Plugin: `{meta['plugin']}`. Models: NSAT_MODELS_DIR=`{meta['models_dir']}`.")
    add(f"- Command: `{meta['command']}`")
    add(f"- Threads: {ARGS.threads} (NSAT NUM_THREADS, GDAL_NUM_THREADS).")
    if ARGS.model:
        add("- MULTIRATE curves: " + ", ".join(
            f"`{CODECS[c]['model']}` ({'/'.join(MODEL_TYPES[CODECS[c]['model']])})" for c in MR_CODECS)
            + " (`--model`; each run only on the data types it codes).")
    else:
        add("- MULTIRATE curve: `NSAT MULTIRATE`, the codec's default model for each data type "
            "(named in each dataset's section).")
    add(f"- Wall time: {meta['elapsed_s']:.0f} s.")
    add("")
    add("## Method")
    add("")
    add("- Every file is written with `gdal.Translate` to /vsimem/, read back with a fresh "
        "`gdal.Open` + `ReadAsArray`, then deleted.")
    add("- NSAT: `CODEC=MULTIRATE QUALITY=q OVERVIEWS=NONE`, plus `MODEL=<id>` for the rows "
        "`MULTIRATE <id>` (rows `NSAT MULTIRATE` use the codec's default model). JPEG and WEBP: "
        "`QUALITY=q`. JP2OpenJPEG: `QUALITY=q` (percent of the raw size) `REVERSIBLE=NO`. Other "
        "options are driver defaults (NSAT BLOCKSIZE 256).")
    add(f"- Settings per codec: `results.json` meta.codecs; in addition, JPEG at QUALITY "
        f"{'/'.join(map(str, DEMO_JPEG_QUALITIES))} on the {DEMO_DATASET} scene (demo-scene floor) and "
        f"JP2OpenJPEG at QUALITY {'/'.join(map(str, JP2_LOW_SETTINGS_16BIT['quick' if ARGS.quick else 'settings']))} "
        f"on 16-bit scenes (lower rates).")
    add("- file bpp = 8 x file bytes / (width x height), all bands. NSAT payload bpp = "
        "`NSAT_BITS_PER_PIXEL` (full-resolution tiles only, no header).")
    add("- PSNR over all bands of the valid pixels. Byte: peak 255. UInt16: peak 65535, and "
        "separately peak = the max valid value of the source.")
    add("- MS-SSIM: Wang et al. 2003, Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, "
        "weights 0.0448/0.2856/0.3001/0.2363/0.1333. Fewer scales when the image is small: the "
        "first weights are kept and renormalised. The coarsest scale uses the mean SSIM map. Computed "
        "per band, then averaged. Only windows with all pixels valid count; negative terms are "
        "clipped to 0.")
    add("- EuroSAT: bpp, PSNR and MS-SSIM are averaged over the images at each setting; every "
        "image is its own file, so its rate includes one NSAT header per 64x64 image. MULTIRATE "
        f"is also measured as {MOSAIC_LABEL} (columns 'mosaic'): the same images as the 64 px "
        f"tiles (BLOCKSIZE=64) of one NSAT file ({MOSAIC_COLUMNS} across), as an ML dataset may "
        "store them; its bpp is file bytes over all the images' pixels, its PSNR the mean over "
        "the tiles (each tile is coded on its own, so it equals the per-image mean). The floors "
        "are given for both.")
    add("- BD-rate: log(rate) fitted as a cubic in PSNR (lower degree with fewer than 4 points), "
        "integrated over the overlapping PSNR range. Negative: MULTIRATE needs fewer bits. "
        "Column 'file' uses file bpp on both sides. Column 'payload' uses NSAT payload bpp "
        "against the baseline's file bpp; it leaves out NSAT's header only, so it favours NSAT.")
    add(f"- Tile seams: MULTIRATE `QUALITY={SEAM_QUALITY}` at the default BLOCKSIZE; the tile size "
        f"is read back from the decoded file (`GetBlockSize()`). Strip = {SEAM_HALF} px on each "
        f"side of every interior tile boundary (columns and rows); interior = every other valid "
        f"pixel. Floor: interior PSNR - strip PSNR <= {SEAM_FLOOR_DB:g} dB.")
    add("- Values at a given rate (demo scene, EuroSAT floors): PSNR linear in log(bpp) between "
        "the two measured points around that rate. Below a MULTIRATE curve's smallest rate the "
        "floor is not met (it cannot code that small); above its largest rate its PSNR at the "
        "largest rate is used.")
    add("")

    for key, dataset in results["datasets"].items():
        add(f"## {key}")
        add("")
        add(f"{dataset['description']}.")
        if dataset.get("missing"):
            add("")
            add("File not found; skipped.")
            add("")
            continue
        if dataset.get("source"):
            add(f"File: `{dataset['source']}`.")
        if key != "eurosat":
            w = dataset["window"]
            add(f"Window (x, y, w, h) {w[0]}, {w[1]}, {w[2]}, {w[3]} of {dataset['full_size'][0]}x"
                f"{dataset['full_size'][1]}, {dataset['bands']} x {dataset['dtype']}. Nodata: "
                f"{dataset['nodata']}. Valid pixels: {dataset['valid_fraction'] * 100:.1f}%.")
            if dataset["dtype"] != "Byte":
                add(f"Max valid value: {fmt(dataset['max_valid'], 0)}.")
        used = {}
        for p in dataset["points"]:
            if is_multirate(p["codec"]) and p.get("model"):
                used.setdefault(p["codec"], set()).add(model_name(p["model"]))
        if used:
            add("MULTIRATE model in the files (NSAT_MODELS): " + "; ".join(
                f"{codec}: {', '.join(sorted(names))}" for codec, names in used.items()) + ".")
        add("")
        uint = dataset.get("dtype") not in (None, "Byte")
        header = "| codec | setting | n | file bpp | NSAT payload bpp | "
        if uint:
            header += (f"PSNR dB (peak 65535) | PSNR dB (peak {fmt(dataset['max_valid'], 0)} = max valid) | ")
        else:
            header += "PSNR dB (peak 255) | "
        header += "MS-SSIM | scales |"
        mosaic = key == "eurosat" and any(p.get("mosaic_bpp") is not None for p in dataset["points"])
        if mosaic:
            header += " mosaic bpp | mosaic PSNR dB |"
        add(header)
        add("|" + "---|" * (header.count("|") - 1))
        for codec in CODECS:
            for p in sorted((p for p in dataset["points"] if p["codec"] == codec), key=lambda p: p["setting"]):
                cells = [codec, str(p["setting"]), str(p.get("n", 1)) + ("" if p.get("complete", True) else " (incomplete)"),
                         fmt(p["file_bpp"]), fmt(p["payload_bpp"]), fmt(p["psnr"], 2)]
                if uint:
                    cells.append(fmt(p.get("psnr_maxpeak"), 2))
                cells += [fmt(p["msssim"], 4), str(p["msssim_scales"])]
                if mosaic:
                    cells += [fmt(p.get("mosaic_bpp")), fmt(p.get("mosaic_psnr"), 2)]
                add("| " + " | ".join(cells) + " |")
        if not dataset["points"]:
            add("| (no points) |")
        add("")
        if dataset.get("skipped"):
            for codec, reason in dataset["skipped"].items():
                add(f"- {codec} skipped: {reason}.")
            add("")
        if f"rd_{key}.png" in meta.get("plots", []):
            add(f"![rate-distortion {key}](rd_{key}.png)")
            add("")

    add("## BD-rate of MULTIRATE against each baseline (PSNR based)")
    add("")
    add("| dataset | MULTIRATE | baseline | BD-rate, file bpp | BD-rate, NSAT payload bpp | PSNR overlap dB | note |")
    add("|---|---|---|---|---|---|---|")
    for row in results["bd_rate"]:
        info = row.get("info_file", {})
        overlap = info.get("overlap_db")
        overlap_text = f"{overlap[0]:.2f} to {overlap[1]:.2f}" if overlap and overlap[1] > overlap[0] else "none"
        note = row.get("why") or info.get("why") or ""
        if not note and info.get("degrees") and min(info["degrees"]) < 3:
            note = f"fit degree {info['degrees']} (few points)"
        if overlap and 0 < overlap[1] - overlap[0] < 1.0:
            note = "; ".join(filter(None, [note, f"PSNR overlap only {overlap[1] - overlap[0]:.2f} dB"]))
        bd_file = "n/a" if row.get("bd_file") is None else f"{row['bd_file']:+.1f} %"
        bd_pay = "n/a" if row.get("bd_payload") is None else f"{row['bd_payload']:+.1f} %"
        add(f"| {row['dataset']} | {row['codec']} | {row['baseline']} | {bd_file} | {bd_pay} | {overlap_text} | {note} |")
    add("")

    demo = results.get("demo", {})
    add(f"## Demo scene ({DEMO_DATASET}): MULTIRATE against JPEG at the same file size")
    add("")
    add(f"JPEG at QUALITY {', '.join(map(str, DEMO_JPEG_QUALITIES))} on the {DEMO_DATASET} scene; "
        f"MULTIRATE's PSNR at JPEG's file bpp, interpolated between its measured points (see Method).")
    add("")
    if demo.get("rows"):
        add("| MULTIRATE | JPEG QUALITY | file bpp | JPEG PSNR dB | MULTIRATE PSNR dB at that bpp | MULTIRATE >= JPEG | note |")
        add("|---|---|---|---|---|---|---|")
        for row in demo["rows"]:
            ok = "n/a" if row.get("met") is None else ("yes" if row["met"] else "no")
            add(f"| {row['codec']} | {row['quality']} | {fmt(row.get('file_bpp'))} | {fmt(row.get('jpeg_psnr'), 2)} | "
                f"{fmt(row.get('multirate_psnr'), 2)} | {ok} | {row.get('note', '')} |")
    else:
        add(f"Not measured: {demo.get('why') or 'no MULTIRATE curve for this data type in this run'}.")
    add("")

    add(f"## Tile seams (MULTIRATE QUALITY={SEAM_QUALITY}, default BLOCKSIZE)")
    add("")
    if results["seams"]:
        add("| dataset | MULTIRATE | tile (from the file) | boundaries x / y | file bpp | strip pixels | "
            "strip PSNR dB | interior PSNR dB | interior - strip dB | <= 0.5 dB |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for row in results["seams"]:
            if row.get("block") is None:
                add(f"| {row['dataset']} | {row['codec']} | n/a | | | | | | | failed: {row.get('error')} |")
                continue
            ok = "n/a" if row.get("met") is None else ("yes" if row["met"] else "no")
            bounds = f"{','.join(map(str, row['boundaries_x'])) or '-'} / {','.join(map(str, row['boundaries_y'])) or '-'}"
            add(f"| {row['dataset']} | {row['codec']} | {row['block'][0]}x{row['block'][1]} | {bounds} | "
                f"{fmt(row['file_bpp'])} | {row['strip_pixels']} | {fmt(row['psnr_strip'], 2)} | "
                f"{fmt(row['psnr_interior'], 2)} | {fmt(row['difference_db'], 2)} | {ok} |")
        add("")
        add("Boundaries are pixel positions in the measured window.")
        add("")
        add("The seam itself, with what the strips' content costs cancelled: the same strips coded "
            "with `OVERLAP=0` (each tile coded alone, the files before OVERLAP) and as one tile "
            "(BLOCKSIZE = the image: no tile edge at all). Seam = one-tile strip PSNR - strip PSNR.")
        add("")
        add("| dataset | MULTIRATE | file bpp default / OVERLAP=0 / one tile | strip PSNR dB default / "
            "OVERLAP=0 / one tile | seam dB default / OVERLAP=0 |")
        add("|---|---|---|---|---|")
        for row in results["seams"]:
            if row.get("psnr_strip_one_tile") is None or row.get("psnr_strip") is None:
                continue
            one = row["psnr_strip_one_tile"]
            none = row.get("psnr_strip_no_overlap")
            add(f"| {row['dataset']} | {row['codec']} | {fmt(row['file_bpp'])} / "
                f"{fmt(row.get('file_bpp_no_overlap'))} / {fmt(row.get('file_bpp_one_tile'))} | "
                f"{fmt(row['psnr_strip'], 2)} / {fmt(none, 2)} / {fmt(one, 2)} | "
                f"{fmt(one - row['psnr_strip'], 2)} / {fmt(None if none is None else one - none, 2)} |")
        add("")
        for key, crop in results.get("seam_images", {}).items():
            corner = (f"tile corner ({crop['corner_x']}, {crop['corner_y']})" if crop["corner_x"] is not None
                      and crop["corner_y"] is not None else "tile boundary")
            add(f"`{crop['file']}`: {crop['side']}x{crop['side']} px crop at ({crop['x0']}, {crop['y0']}) "
                f"of the window, across the {corner}, upscaled {crop['scale']}x (nearest neighbour). "
                f"Panels, left to right: {', '.join(crop['panels'])}. Red marks on the frame point at "
                f"the tile boundaries. RGB bands only.")
            add("")
            add(f"![seams {key}]({crop['file']})")
            add("")
    else:
        add("Not measured (no MULTIRATE curve for these data types in this run, or the scenes are missing).")
        add("")

    add(f"## Speed ({ARGS.threads} thread(s), best of {SPEED_REPEATS})")
    add("")
    add(f"Encode: `gdal.Translate` from an in-memory (MEM) copy to /vsimem/, closing included. "
        f"Decode: fresh `gdal.Open` + full `ReadAsArray`, GDAL_NUM_THREADS={ARGS.threads}. "
        f"MULTIRATE at QUALITY={SPEED_QUALITY}; JP2OpenJPEG at the QUALITY that gives the same "
        f"file rate as the first MULTIRATE curve (QUALITY = 100 x NSAT file bpp / raw bpp).")
    add("")
    add("| dataset | MP | codec | setting | file bpp | encode MP/s | decode MP/s | note |")
    add("|---|---|---|---|---|---|---|---|")
    for entry in results["speed"]:
        for row in entry["rows"]:
            note = row["error"] or row.get("rate_source", "")
            add(f"| {entry['dataset']} | {entry['megapixels']:.2f} | {row['codec']} | {row['setting']} | "
                f"{fmt(row.get('file_bpp'))} | {fmt(row['encode_mps'])} | {fmt(row['decode_mps'])} | "
                f"{note.replace('|', '/')} |")
    add("")
    add("| dataset | MULTIRATE | encode NSAT/JP2 | decode NSAT/JP2 |")
    add("|---|---|---|---|")
    for entry in results["speed"]:
        for ratio in entry["ratios"]:
            add(f"| {entry['dataset']} | {ratio['codec']} | {fmt(ratio['encode_mps'], 2)} | "
                f"{fmt(ratio['decode_mps'], 2)} |")
    add("")
    if results["speed"]:
        add(f"JP2OpenJPEG encode threads: {results['speed'][0]['jp2_encode_threads_note']}.")
        add("")
    for skipped in results["speed_skipped"]:
        add(f"- {skipped['dataset']}: not timed, {skipped['reason']}.")
    if results["speed_skipped"]:
        add("")

    add("## Notes")
    add("")
    if SKIPS:
        for skip in SKIPS:
            add(f"- Skipped: {skip['codec']} on {skip['dataset']}: {skip['reason']}.")
    for codec in MR_CODECS:
        if not any(codec in scene_codecs(d, multirate_only=True) for d in results["datasets"].values()):
            add(f"- {codec}: no dataset of the data type(s) it codes in this benchmark; not measured.")
    if FAILURES:
        add("- Failed points (logged and left out):")
        for (dataset, codec, setting), entry in FAILURES.items():
            message = entry["message"].replace("\n", " ").replace("|", "/")
            add(f"  - {dataset}, {codec}, {setting}: {entry['count']} failure(s). First error: {message}")
    else:
        add("- No point failed.")
    add("- JPEG with 4 bands (NAIP) is written as a 4-component (CMYK-tagged) JPEG without colour "
        "transform; it is read back with GDAL_JPEG_TO_RGB=NO so the 4 coded bands are compared.")
    add("- WEBP with 4 bands (NAIP) codes band 4 (NIR) as the alpha channel, which libwebp "
        "compresses losslessly by default; its rate includes a lossless NIR band.")
    add("- Georeferencing boxes/headers are part of the file sizes (JP2OpenJPEG GeoJP2/GMLJP2, "
        "NSAT JSON header); JPEG and WEBP keep no georeferencing (PAM is disabled).")
    if any(d.get("dtype") == "UInt16" and not any(n is not None for n in d.get("nodata", [None]))
           for d in results["datasets"].values()):
        add("- The Landsat 8 band declares no nodata value: every pixel is measured, collar zeros "
            "included.")
    if "aerial" in results["datasets"] and not results["datasets"]["aerial"].get("missing"):
        add("- OSBS_029.tif declares nodata 255 on every band, but there 255 is saturation, not "
            "nodata: about 0.6 % of the pixels, scattered, with 250-254 as common. The benchmark "
            "drops the nodata value from its copy, so every codec codes (and is measured on) every "
            "pixel.")
    if "dota" in results["datasets"] and not results["datasets"]["dota"].get("missing"):
        add("- The DOTA demo image is itself a JPEG (re-encoded by mmrotate): its reference already "
            "carries JPEG artefacts, which may favour JPEG.")
    add("")

    add("## Floors (issue 12)")
    add("")
    add("Verdicts are computed from the tables above. Rate basis: file bpp (the whole file, NSAT "
        "header included); for EuroSAT these are per-image files of 64x64 px. The payload column "
        "repeats the test with NSAT payload bpp (header left out) for reference; the verdict uses "
        "the file rate.")
    add("")
    add("| floor | MULTIRATE | measured (file bpp) | verdict | payload bpp (reference) | note |")
    add("|---|---|---|---|---|---|")
    for row in results.get("floors", []):
        add(f"| {row['floor']} | {row['codec']} | {row['measured']} | **{row['verdict']}** | "
            f"{row['payload'] or ''} | {row['note'].replace('|', '/')} |")
    add("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------

def scene_list():
    """Every scene, in report order: key, path, description, and whether it gets the speed
    and tile-seam measurements, and whether its declared nodata value is dropped."""
    data = ARGS.data
    return [
        dict(key="landsat8", path=find_one(os.path.join(data, "geotiff", "landsat8_rio-pansharpen",
                                                        "LC81070352015122LGN00", "*_B4.tif")),
             description="Landsat 8 OLI band 4 (red), LC81070352015122LGN00, 1 x UInt16, 150 m",
             speed=True),
        dict(key="naip", path=os.path.join(data, "geotiff", "opengeos_naip", "m_4709963_se_14_1_20090818.tif"),
             description="NAIP m_4709963_se_14_1_20090818, 4 x Byte (R, G, B, NIR), nodata 0, 5 m",
             speed=True, seams=True),
        # The 4-band model multirate-rgbn8-v1 trained on this NAIP scene's columns < 700 (the
        # only 4-band Byte scene with NIR here); the RGB models trained on all of it.
        dict(key="naip_holdout", path=os.path.join(data, "geotiff", "opengeos_naip", "m_4709963_se_14_1_20090818.tif"),
             description="NAIP m_4709963_se_14_1_20090818 columns 700-933 (held out of "
             "multirate-rgbn8-v1's training), 234x724, 4 x Byte, nodata 0, 5 m",
             window=[700, 0, 234, 724]),
        dict(key="landsat7", path=os.path.join(REPO, "autotest", "data", "landsat7_rgb_byte.tif"),
             description="Landsat 7 ETM+ demo scene (Andros, Bahamas, clouds), 791x718, 3 x Byte "
             "(R, G, B), nodata 0 (rotated-footprint collar), 300 m", seams=True),
        dict(key="aerial", path=os.path.join(data, "aerial", "deepforest", "OSBS_029.tif"),
             description="NEON airborne RGB tile OSBS_029 (Ordway-Swisher, FL; held out of training), "
             "400x400, 3 x Byte, 0.1 m; its nodata tag (255) is dropped, see Notes", drop_nodata=True),
        dict(key="dota", path=os.path.join(data, "aerial", "dota", "unlabeled", "mmrotate_dota_demo.jpg"),
             description="DOTA demo image (parked buses; held out of training), 1616x1565, 3 x Byte, "
             "about 0.1-0.3 m; the file is a JPEG itself, see Notes"),
        dict(key="sentinel2", path=os.path.join(data, "sentinel2", "sen1floods11", "Spain_7370579_S2Hand.tif"),
             description="Sentinel-2 L1C, Sen1Floods11 Spain_7370579 (SE Spain floods), 512x512, "
             "EPSG:4326, about 10 m: bands B2, B3, B4, B8 (the 10 m bands) of its 13 Int16 bands, "
             "stacked to a 4 x UInt16 /vsimem/ GTiff (all samples >= 0), nodata 0", stack=True),
    ]


def relative_source(path):
    """A path as the report shows it: relative to --data or to the repository."""
    if path is None:
        return None
    for root, prefix in ((ARGS.data, "<data>/"), (REPO, "")):
        try:
            rel = os.path.relpath(path, root)
        except ValueError:
            continue
        if not rel.startswith(".."):
            return prefix + rel
    return path


def main():
    out = os.path.abspath(ARGS.out)
    os.makedirs(out, exist_ok=True)
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit(f"NSAT driver not found (GDAL_DRIVER_PATH={os.environ.get('GDAL_DRIVER_PATH')})")
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    start = time.perf_counter()
    cpu, cores = machine()
    results = dict(meta=dict(
        date=f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}",
        cpu=cpu, nproc=cores, load_at_start=load, gdal=gdal.VersionInfo("RELEASE_NAME"),
        numpy=np.__version__, python=platform.python_version(),
        plugin=os.path.join(os.environ["GDAL_DRIVER_PATH"], "gdal_NSAT.so"),
        models_dir=os.environ.get("NSAT_MODELS_DIR", "(unset)"),
        command=" ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
        quick=ARGS.quick, threads=ARGS.threads,
        models={c: dict(model=CODECS[c]["model"],
                        data_types=MODEL_TYPES.get(CODECS[c]["model"], "codec default")) for c in MR_CODECS},
        codecs={k: dict(driver=v["driver"], settings=settings_for(k), setting=v["label"]) for k, v in CODECS.items()}),
        datasets={}, speed=[], speed_skipped=[], seams=[], seam_images={})

    try:
        try:
            run_eurosat(results)
        except Exception as error:  # noqa: BLE001
            record_failure("eurosat", "dataset", "-", f"{type(error).__name__}: {error}")
        for spec in scene_list():
            key, path = spec["key"], spec["path"]
            try:
                if spec.get("stack"):
                    path = stack_sentinel2(path) or path
                loaded = run_scene(results, key, path, spec["description"], spec.get("drop_nodata", False),
                                   spec.get("window"))
            except Exception as error:  # noqa: BLE001
                record_failure(key, "dataset", "-", f"{type(error).__name__}: {error}")
                continue
            results["datasets"].setdefault(key, {})["source"] = relative_source(spec["path"])
            if loaded is None:
                continue
            src, scene, reference, valid = loaded
            if spec.get("seams"):
                try:
                    run_seams(results, key, src, scene, reference, valid, out)
                except Exception as error:  # noqa: BLE001
                    record_failure(f"seams {key}", "seams", "-", f"{type(error).__name__}: {error}")
            if spec.get("speed"):
                try:
                    run_speed(results, key, src, scene)
                except Exception as error:  # noqa: BLE001
                    record_failure(f"speed {key}", "speed", "-", f"{type(error).__name__}: {error}")
            src = None
    finally:
        unlink_all(VSI)

    compute_bd(results)
    compute_demo(results)
    compute_floors(results)
    results["meta"]["elapsed_s"] = time.perf_counter() - start
    results["skipped"] = SKIPS
    results["failures"] = [dict(dataset=k[0], codec=k[1], setting=k[2], **v) for k, v in FAILURES.items()]
    try:
        plots = plot(results, out)
    except Exception as error:  # noqa: BLE001
        plots = []
        log(f"plotting failed: {error}")
    results["meta"]["plots"] = [os.path.basename(p) for p in plots]
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(jsonable(results), f, indent=1)
    write_report(results, out)
    log(f"wrote {out}/report.md, results.json, {len(plots)} plot(s), {len(results['seam_images'])} "
        f"seam image(s) ({results['meta']['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
