#!/usr/bin/python3
"""Rate-distortion and speed benchmark: NSAT CODEC=MULTIRATE against GDAL's JPEG, WEBP and
JP2OpenJPEG drivers, all written with gdal.Translate (the same code path as gdal_translate).

Datasets
  eurosat   the first N images of the `test` split of <data>/eurosat_rgb_splits.csv
            (64x64 RGB Byte JPEGs, each first copied to an in-memory GTiff so every codec
            gets the same Byte input); metrics averaged over the images per setting.
  landsat8  <data>/geotiff/landsat8_rio-pansharpen/LC81070352015122LGN00/*_B4.tif
            (1 band UInt16; nodata masked out if the file declares one).
  naip      <data>/geotiff/opengeos_naip/m_4709963_se_14_1_20090818.tif
            (4 x Byte, nodata 0; pixels where any band is nodata are left out of the metrics).

Metrics per point: file bpp = 8 * file bytes / (width * height) (bits per pixel, all bands),
NSAT payload bpp (NSAT_BITS_PER_PIXEL: full-resolution tiles only), PSNR over all bands
(peak 255 for Byte; peak 65535 and peak = max valid value for UInt16), MS-SSIM (Wang et al.
2003, Gaussian window 11 / sigma 1.5, standard weights, as many scales as fit, per band then
averaged). BD-rate (PSNR based, cubic fit of log rate against PSNR) of MULTIRATE against each
baseline. Speed: encode / decode megapixels per second of MULTIRATE QUALITY=75 and of
JP2OpenJPEG at the same file rate, best of 3, on the Landsat 8 and NAIP scenes.

Every NSAT file is written with OVERVIEWS=NONE, so its size is header + full-resolution tiles.

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_multirate.py [--data ../shared/data]
        [--out scripts/results/multirate] [--eurosat-images 200] [--threads 2] [--quick]

The NSAT plugin is taken from GDAL_DRIVER_PATH (default: <repo>/build); the models from
NSAT_MODELS_DIR as the plugin resolves it. Outputs in --out: rd_<dataset>.png, results.json,
report.md.
"""
import argparse
import csv
import datetime
import glob
import json
import math
import os
import platform
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
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 5 EuroSAT images, 3 settings per codec, 512x512 windows "
                             "of the scenes")
    return parser.parse_args()


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

VSI = "/vsimem/bench_multirate"
NSAT = "NSAT MULTIRATE"
QUICK_EUROSAT = 5
QUICK_WINDOW = 512
SPEED_REPEATS = 3
SPEED_QUALITY = 75

# name -> driver, extension, settings (full run), settings (--quick), label of the setting
CODECS = {
    NSAT: dict(driver="NSAT", ext=".nsat", settings=[1, 10, 25, 50, 75, 90, 100],
               quick=[10, 50, 90], label="QUALITY"),
    "JPEG": dict(driver="JPEG", ext=".jpg", settings=[5, 10, 20, 30, 50, 70, 85, 95],
                 quick=[20, 50, 85], label="QUALITY"),
    "WEBP": dict(driver="WEBP", ext=".webp", settings=[5, 10, 20, 35, 50, 70, 85, 95],
                 quick=[20, 50, 85], label="QUALITY"),
    "JP2OpenJPEG": dict(driver="JP2OpenJPEG", ext=".jp2", settings=[1, 2, 3, 5, 8, 12, 20, 30, 50],
                        quick=[2, 5, 15], label="QUALITY (% of raw size)"),
}
BASELINES = ["JPEG", "WEBP", "JP2OpenJPEG"]

MSSSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
MSSSIM_WINDOW = 11
MSSSIM_SIGMA = 1.5


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
# Codec support and one encode/decode round trip.

def creation_options(codec, setting, threads=None):
    threads = ARGS.threads if threads is None else threads
    if codec == NSAT:
        return ["CODEC=MULTIRATE", f"QUALITY={setting}", "OVERVIEWS=NONE", f"NUM_THREADS={threads}"]
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
    """Fresh open + full ReadAsArray; returns (bands, H, W) array and NSAT payload bpp."""
    cmyk = codec == "JPEG" and bands == 4
    if cmyk:
        # 4-band JPEGs are CMYK: keep the 4 coded components instead of converting to RGB.
        # (Only for 4 bands: with this option a 3-band JPEG would be returned as YCbCr.)
        gdal.SetConfigOption("GDAL_JPEG_TO_RGB", "NO")
    try:
        ds = gdal.Open(path)
        array = ds.ReadAsArray()
        payload = None
        if codec == NSAT:
            value = ds.GetMetadataItem("NSAT_BITS_PER_PIXEL", "IMAGE_STRUCTURE")
            payload = float(value) if value not in (None, "") else None
        ds = None
    finally:
        if cmyk:
            gdal.SetConfigOption("GDAL_JPEG_TO_RGB", None)
    if array.ndim == 2:
        array = array[np.newaxis]
    return array, payload


def round_trip(src, codec, setting, stem):
    """Encodes src with codec/setting to /vsimem/, decodes it, deletes it.
    Returns (file bytes, NSAT payload bpp or None, decoded array)."""
    spec = CODECS[codec]
    path = f"{VSI}/{stem}{spec['ext']}"
    try:
        out = gdal.Translate(path, src, format=spec["driver"],
                             creationOptions=creation_options(codec, setting))
        if out is None:
            raise RuntimeError(gdal.GetLastErrorMsg() or "gdal.Translate returned None")
        out = None
        stat = gdal.VSIStatL(path)
        if stat is None:
            raise RuntimeError("no output file was written")
        size = stat.size
        decoded, payload = read_all(path, codec, src.RasterCount)
    finally:
        unlink_all(path)
    return size, payload, decoded


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


def gaussian_window(size=MSSSIM_WINDOW, sigma=MSSSIM_SIGMA):
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter_valid(image, taps):
    """Separable correlation with a 1-D kernel along both axes, 'valid' region only."""
    k = len(taps)
    h, w = image.shape
    rows = taps[0] * image[0:h - k + 1, :]
    for i in range(1, k):
        rows = rows + taps[i] * image[i:h - k + 1 + i, :]
    out = taps[0] * rows[:, 0:w - k + 1]
    for j in range(1, k):
        out = out + taps[j] * rows[:, j:w - k + 1 + j]
    return out


def downsample(image):
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def downsample_mask(mask):
    h, w = mask.shape[0] // 2 * 2, mask.shape[1] // 2 * 2
    return mask[:h, :w].reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3))


def msssim_scales(height, width):
    """Number of scales (at most 5) whose image still holds one full window."""
    side = min(height, width)
    if side < MSSSIM_WINDOW:
        return 0
    scales = 1
    while scales < len(MSSSIM_WEIGHTS) and side // 2 >= MSSSIM_WINDOW:
        side //= 2
        scales += 1
    return scales


def msssim_band(x, y, valid, peak, scales):
    """MS-SSIM of one band (Wang, Simoncelli, Bovik 2003). Only windows whose pixels are all
    valid are averaged; a coarser pixel is valid when its 2x2 parents are. With fewer than 5
    scales the first `scales` standard weights are used, renormalised to sum to 1. Negative
    terms are clipped to 0."""
    taps = gaussian_window()
    box = np.ones(MSSSIM_WINDOW)
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    weights = MSSSIM_WEIGHTS[:scales] / MSSSIM_WEIGHTS[:scales].sum()
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    result = 1.0
    for j in range(scales):
        ok = filter_valid((~valid).astype(np.float64), box) < 0.5
        if not ok.any():
            return float("nan")
        mx = filter_valid(x, taps)
        my = filter_valid(y, taps)
        sxx = filter_valid(x * x, taps) - mx * mx
        syy = filter_valid(y * y, taps) - my * my
        sxy = filter_valid(x * y, taps) - mx * my
        cs_map = (2.0 * sxy + c2) / (sxx + syy + c2)
        if j < scales - 1:
            result *= max(float(np.mean(cs_map[ok])), 0.0) ** weights[j]
            x, y, valid = downsample(x), downsample(y), downsample_mask(valid)
        else:
            # Coarsest scale: the mean SSIM map (luminance x contrast-structure), as in the
            # reference implementation, so that one scale gives plain SSIM.
            ssim_map = cs_map * (2.0 * mx * my + c1) / (mx * mx + my * my + c1)
            result *= max(float(np.mean(ssim_map[ok])), 0.0) ** weights[j]
    return result


def msssim(reference, decoded, valid, peak):
    """Mean over bands of the per-band MS-SSIM, and the number of scales used."""
    scales = msssim_scales(reference.shape[1], reference.shape[2])
    if scales == 0:
        return float("nan"), 0
    values = [msssim_band(reference[b], decoded[b], valid, peak, scales)
              for b in range(reference.shape[0])]
    return float(np.mean(values)), scales


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
                dtype="Byte", bands=3, peak=255, skipped={}, per_image=[], points=[])
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
        for codec in codecs:
            for setting in settings_for(codec):
                try:
                    size, payload, decoded = round_trip(src, codec, setting, f"eurosat_{index}")
                    point = measure_point(reference, decoded, valid, 255.0, None, pixels, size, payload)
                except Exception as error:  # noqa: BLE001 - a failing point is logged, not fatal
                    record_failure("eurosat", codec, setting, str(error).strip())
                    continue
                point.update(image=name, codec=codec, setting=setting)
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
            point = dict(codec=codec, setting=setting, n=len(rows), complete=len(rows) == len(files))
            for key in ("file_bpp", "payload_bpp", "psnr", "msssim"):
                values = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
                point[key] = float(np.mean(values)) if values else None
                if key == "psnr" and len(values) != len(rows):
                    point["psnr_non_finite_images"] = len(rows) - len(values)
            point["msssim_scales"] = rows[0]["msssim_scales"]
            info["points"].append(point)


def find_one(pattern):
    matches = sorted(glob.glob(pattern))
    return matches[0] if matches else None


def load_scene(path, key, description):
    """MEM copy (window in --quick) of a scene, its reference array, valid mask and peaks."""
    info = gdal.Info(path, format="json")
    width, height = info["size"]
    if ARGS.quick:
        w = min(QUICK_WINDOW, width)
        h = min(QUICK_WINDOW, height)
        window = [(width - w) // 2, (height - h) // 2, w, h]
    else:
        window = [0, 0, width, height]
    src = gdal.Translate("", path, format="MEM", srcWin=window)
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


def run_scene(results, key, path, description):
    if path is None or not os.path.exists(path):
        log(f"{key}: file not found, skipped")
        results["datasets"][key] = dict(name=key, description=description, missing=True,
                                        skipped={}, points=[])
        SKIPS.append(dict(dataset=key, codec="all", reason=f"file not found: {path}"))
        return None
    src, reference, valid, scene = load_scene(path, key, description)
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
        for setting in settings_for(codec):
            t0 = time.perf_counter()
            try:
                size, payload, decoded = round_trip(src, codec, setting, key)
                point = measure_point(reference, decoded, valid, scene["peak"], max_peak, pixels,
                                      size, payload)
            except Exception as error:  # noqa: BLE001
                record_failure(key, codec, setting, str(error).strip())
                continue
            point.update(codec=codec, setting=setting, n=1, complete=True)
            scene["points"].append(point)
            log(f"  {codec:12s} {setting:>4} {point['file_bpp']:7.3f} bpp  PSNR {point['psnr']:6.2f} dB  "
                f"MS-SSIM {point['msssim']:.4f}  ({time.perf_counter() - t0:.1f} s)")
    return src, scene


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
    pixels = src.RasterXSize * src.RasterYSize
    mp = pixels / 1e6
    raw_bpp = scene["bands"] * scene["bits_per_sample"]
    entry = dict(dataset=key, window=scene["window"], megapixels=mp, threads=ARGS.threads,
                 repeats=SPEED_REPEATS, rows=[])
    results["speed"].append(entry)
    log(f"speed {key}: {mp:.2f} MP, {ARGS.threads} thread(s)")
    nsat_path = f"{VSI}/speed_{key}.nsat"
    jp2_path = f"{VSI}/speed_{key}.jp2"
    nsat_opts = creation_options(NSAT, SPEED_QUALITY)
    nsat = dict(codec=NSAT, setting=f"QUALITY={SPEED_QUALITY}", enc=[], dec=[], error=None)
    jp2 = dict(codec="JP2OpenJPEG", enc=[], dec=[], error=None)
    # First NSAT encode: gives the rate that JP2OpenJPEG is matched to (and counts as a run).
    try:
        seconds, size = timed_encode(src, NSAT, nsat_opts, nsat_path)
        nsat["enc"].append(seconds)
        nsat["file_bpp"] = 8.0 * size / pixels
        jp2_quality = max(0.01, min(100.0, 100.0 * nsat["file_bpp"] / raw_bpp))
        jp2["rate_source"] = "matched to the NSAT file rate"
    except Exception as error:  # noqa: BLE001
        nsat["error"] = str(error).strip()
        record_failure(f"speed {key}", NSAT, SPEED_QUALITY, nsat["error"])
        jp2_quality = 10.0
        jp2["rate_source"] = "fallback QUALITY=10 (NSAT failed, no rate to match)"
    jp2["setting"] = f"QUALITY={jp2_quality:.3g}"
    jp2_opts = creation_options("JP2OpenJPEG", f"{jp2_quality:.4g}")
    reason = support("JP2OpenJPEG", scene["dtype"], scene["bands"])
    if reason:
        jp2["error"] = reason
    for _ in range(SPEED_REPEATS):
        if nsat["error"] is None and len(nsat["enc"]) < SPEED_REPEATS:
            try:
                seconds, _ = timed_encode(src, NSAT, nsat_opts, nsat_path)
                nsat["enc"].append(seconds)
            except Exception as error:  # noqa: BLE001
                nsat["error"] = str(error).strip()
        if jp2["error"] is None:
            try:
                seconds, size = timed_encode(src, "JP2OpenJPEG", jp2_opts, jp2_path)
                jp2["enc"].append(seconds)
                jp2["file_bpp"] = 8.0 * size / pixels
            except Exception as error:  # noqa: BLE001
                jp2["error"] = str(error).strip()
                record_failure(f"speed {key}", "JP2OpenJPEG", jp2["setting"], jp2["error"])
    for _ in range(SPEED_REPEATS):
        for row, path in ((nsat, nsat_path), (jp2, jp2_path)):
            if row["error"] is None:
                try:
                    row["dec"].append(timed_decode(path, row["codec"], src.RasterCount))
                except Exception as error:  # noqa: BLE001
                    row["error"] = str(error).strip()
    unlink_all(nsat_path)
    unlink_all(jp2_path)
    for row in (nsat, jp2):
        row["encode_s"] = min(row["enc"]) if row["enc"] and row["error"] is None else None
        row["decode_s"] = min(row["dec"]) if row["dec"] and row["error"] is None else None
        row["encode_mps"] = mp / row["encode_s"] if row["encode_s"] else None
        row["decode_mps"] = mp / row["decode_s"] if row["decode_s"] else None
        entry["rows"].append(row)
        state = row["error"] or (f"encode {row['encode_mps']:.3f} MP/s, decode {row['decode_mps']:.3f} MP/s, "
                                 f"{row.get('file_bpp', float('nan')):.3f} bpp")
        log(f"  {row['codec']} {row['setting']}: {state}")
    for what in ("encode_mps", "decode_mps"):
        entry[f"ratio_{what}"] = (nsat[what] / jp2[what]) if nsat[what] and jp2[what] else None
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
    return value


def codec_points(dataset, codec, complete_only=True):
    points = [p for p in dataset["points"] if p["codec"] == codec and (p.get("complete") or not complete_only)]
    return sorted(points, key=lambda p: p["file_bpp"] if p["file_bpp"] is not None else 0)


def compute_bd(results):
    table = []
    for key, dataset in results["datasets"].items():
        test = codec_points(dataset, NSAT)
        for baseline in BASELINES:
            row = dict(dataset=key, baseline=baseline)
            if baseline in dataset.get("skipped", {}):
                row.update(bd_file=None, bd_payload=None, why="baseline skipped")
                table.append(row)
                continue
            anchor = codec_points(dataset, baseline)
            anchor_rd = [(p["file_bpp"], p["psnr"]) for p in anchor]
            row["bd_file"], row["info_file"] = bd_rate(anchor_rd, [(p["file_bpp"], p["psnr"]) for p in test])
            row["bd_payload"], row["info_payload"] = bd_rate(anchor_rd, [(p["payload_bpp"], p["psnr"]) for p in test])
            table.append(row)
    results["bd_rate"] = table


def plot(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    styles = {NSAT: "o-", "JPEG": "s-", "WEBP": "^-", "JP2OpenJPEG": "d-"}
    for key, dataset in results["datasets"].items():
        if not dataset.get("points"):
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        for codec in CODECS:
            points = codec_points(dataset, codec, complete_only=False)
            if not points:
                continue
            x = [p["file_bpp"] for p in points]
            axes[0].plot(x, [p["psnr"] for p in points], styles[codec], label=f"{codec} (file)")
            axes[1].plot(x, [p["msssim"] for p in points], styles[codec], label=f"{codec} (file)")
            if codec == NSAT and all(p["payload_bpp"] is not None for p in points):
                xp = [p["payload_bpp"] for p in points]
                axes[0].plot(xp, [p["psnr"] for p in points], "o--", color="grey",
                             label=f"{codec} (payload only)")
                axes[1].plot(xp, [p["msssim"] for p in points], "o--", color="grey",
                             label=f"{codec} (payload only)")
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
    add(f"- Wall time: {meta['elapsed_s']:.0f} s.")
    add("")
    add("## Method")
    add("")
    add("- Every file is written with `gdal.Translate` to /vsimem/, read back with a fresh "
        "`gdal.Open` + `ReadAsArray`, then deleted.")
    add("- NSAT: `CODEC=MULTIRATE QUALITY=q OVERVIEWS=NONE`. JPEG and WEBP: `QUALITY=q`. "
        "JP2OpenJPEG: `QUALITY=q` (percent of the raw size) `REVERSIBLE=NO`. Other options are "
        "driver defaults.")
    add("- file bpp = 8 x file bytes / (width x height), all bands. NSAT payload bpp = "
        "`NSAT_BITS_PER_PIXEL` (full-resolution tiles only, no header).")
    add("- PSNR over all bands of the valid pixels. Byte: peak 255. UInt16: peak 65535, and "
        "separately peak = the max valid value of the source.")
    add("- MS-SSIM: Wang et al. 2003, Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, "
        "weights 0.0448/0.2856/0.3001/0.2363/0.1333. Fewer scales when the image is small: the "
        "first weights are kept and renormalised. The coarsest scale uses the mean SSIM map. Computed "
        "per band, then averaged. Only windows with all pixels valid count; negative terms are "
        "clipped to 0.")
    add("- EuroSAT: bpp, PSNR and MS-SSIM are averaged over the images at each setting.")
    add("- BD-rate: log(rate) fitted as a cubic in PSNR (lower degree with fewer than 4 points), "
        "integrated over the overlapping PSNR range. Negative: MULTIRATE needs fewer bits. "
        "Column 'file' uses file bpp on both sides. Column 'payload' uses NSAT payload bpp "
        "against the baseline's file bpp; it leaves out NSAT's header only, so it favours NSAT.")
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
        if key != "eurosat":
            w = dataset["window"]
            add(f"Window (x, y, w, h) {w[0]}, {w[1]}, {w[2]}, {w[3]} of {dataset['full_size'][0]}x"
                f"{dataset['full_size'][1]}. Nodata: {dataset['nodata']}. Valid pixels: "
                f"{dataset['valid_fraction'] * 100:.1f}%.")
            if dataset["dtype"] != "Byte":
                add(f"Max valid value: {fmt(dataset['max_valid'], 0)}.")
        add("")
        uint = dataset.get("dtype") not in (None, "Byte")
        header = "| codec | setting | n | file bpp | NSAT payload bpp | "
        if uint:
            header += (f"PSNR dB (peak 65535) | PSNR dB (peak {fmt(dataset['max_valid'], 0)} = max valid) | ")
        else:
            header += "PSNR dB (peak 255) | "
        header += "MS-SSIM | scales |"
        add(header)
        add("|" + "---|" * (header.count("|") - 1))
        for codec in CODECS:
            for p in sorted((p for p in dataset["points"] if p["codec"] == codec), key=lambda p: p["setting"]):
                cells = [codec, str(p["setting"]), str(p.get("n", 1)) + ("" if p.get("complete", True) else " (incomplete)"),
                         fmt(p["file_bpp"]), fmt(p["payload_bpp"]), fmt(p["psnr"], 2)]
                if uint:
                    cells.append(fmt(p.get("psnr_maxpeak"), 2))
                cells += [fmt(p["msssim"], 4), str(p["msssim_scales"])]
                add("| " + " | ".join(cells) + " |")
        if not dataset["points"]:
            add("| (no points) |")
        add("")
        if dataset.get("skipped"):
            for codec, reason in dataset["skipped"].items():
                add(f"- {codec} skipped: {reason}.")
            add("")

    add("## BD-rate of MULTIRATE against each baseline (PSNR based)")
    add("")
    add("| dataset | baseline | BD-rate, file bpp | BD-rate, NSAT payload bpp | PSNR overlap dB | note |")
    add("|---|---|---|---|---|---|")
    for row in results["bd_rate"]:
        info = row.get("info_file", {})
        overlap = info.get("overlap_db")
        overlap_text = f"{overlap[0]:.2f} to {overlap[1]:.2f}" if overlap and overlap[1] > overlap[0] else "none"
        note = row.get("why") or info.get("why") or ""
        if not note and info.get("degrees") and min(info["degrees"]) < 3:
            note = f"fit degree {info['degrees']} (few points)"
        bd_file = "n/a" if row.get("bd_file") is None else f"{row['bd_file']:+.1f} %"
        bd_pay = "n/a" if row.get("bd_payload") is None else f"{row['bd_payload']:+.1f} %"
        add(f"| {row['dataset']} | {row['baseline']} | {bd_file} | {bd_pay} | {overlap_text} | {note} |")
    add("")

    add(f"## Speed ({ARGS.threads} thread(s), best of {SPEED_REPEATS})")
    add("")
    add(f"Encode: `gdal.Translate` from an in-memory (MEM) copy to /vsimem/, closing included. "
        f"Decode: fresh `gdal.Open` + full `ReadAsArray`, GDAL_NUM_THREADS={ARGS.threads}. "
        f"MULTIRATE at QUALITY={SPEED_QUALITY}; JP2OpenJPEG at the QUALITY that gives the same "
        f"file rate (QUALITY = 100 x NSAT file bpp / raw bpp).")
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
    add("| dataset | encode NSAT/JP2 | decode NSAT/JP2 |")
    add("|---|---|---|")
    for entry in results["speed"]:
        add(f"| {entry['dataset']} | {fmt(entry['ratio_encode_mps'], 2)} | {fmt(entry['ratio_decode_mps'], 2)} |")
    add("")
    if results["speed"]:
        add(f"JP2OpenJPEG encode threads: {results['speed'][0]['jp2_encode_threads_note']}.")
        add("")

    add("## Notes")
    add("")
    if SKIPS:
        for skip in SKIPS:
            add(f"- Skipped: {skip['codec']} on {skip['dataset']}: {skip['reason']}.")
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
    add("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------

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
        codecs={k: dict(driver=v["driver"], settings=settings_for(k), setting=v["label"]) for k, v in CODECS.items()}),
        datasets={}, speed=[])

    try:
        try:
            run_eurosat(results)
        except Exception as error:  # noqa: BLE001
            record_failure("eurosat", "dataset", "-", f"{type(error).__name__}: {error}")
        scenes = [
            ("landsat8", find_one(os.path.join(ARGS.data, "geotiff", "landsat8_rio-pansharpen",
                                               "LC81070352015122LGN00", "*_B4.tif")),
             "Landsat 8 OLI band 4 (red), LC81070352015122LGN00, 1 x UInt16, 150 m"),
            ("naip", find_one(os.path.join(ARGS.data, "geotiff", "opengeos_naip",
                                           "m_4709963_se_14_1_20090818.tif")),
             "NAIP m_4709963_se_14_1_20090818, 4 x Byte (R, G, B, NIR), nodata 0, 5 m"),
        ]
        for key, path, description in scenes:
            try:
                loaded = run_scene(results, key, path, description)
            except Exception as error:  # noqa: BLE001
                record_failure(key, "dataset", "-", f"{type(error).__name__}: {error}")
                continue
            if loaded is None:
                continue
            src, scene = loaded
            try:
                run_speed(results, key, src, scene)
            except Exception as error:  # noqa: BLE001
                record_failure(f"speed {key}", "speed", "-", f"{type(error).__name__}: {error}")
            src = None
    finally:
        unlink_all(VSI)

    compute_bd(results)
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
    log(f"wrote {out}/report.md, results.json, {len(plots)} plot(s) ({results['meta']['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
