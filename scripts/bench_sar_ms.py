#!/usr/bin/python3
"""Rate-distortion benchmark of NSAT CODEC=MULTIRATE on Sentinel-1 backscatter in dB (Float32)
and on 16-bit multispectral stacks, against GDAL's JP2OpenJPEG and GTiff LERC.

SAR (each held-out plane of the SAR model, coded as a 1-band file, BLOCKSIZE default 256)
  pyrosar       sar/pyrosar/S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif (whole)
  sen1floods11  sar/sen1floods11/Spain_7370579_S1Hand.tif, VV and VH, last quarter of the rows
  bigearthnet   sar/bigearthnet/<patch>/<patch>_{VV,VH}.tif, the last two patches by name
  These are exactly the parts that scripts/learned/datasets.py keeps out of the SAR training.
  Codecs: MULTIRATE (MODEL=--sar-model) at several QUALITY values; JP2OpenJPEG on a UInt16
  version of the dB plane, q = round((dB - dBmin) * 2^k) with the largest k <= 11 for which the
  plane's range fits 16 bits (step 1/2048 dB where it fits, else 1/1024 dB ...), decoded and
  mapped back to dB; GTiff COMPRESS=LERC and LERC_ZSTD with MAX_Z_ERROR in dB, on the Float32.
  Metrics over the valid pixels (nodata -99 / NaN excluded): PSNR on dB with peak = the plane's
  valid range (max - min), RMSE (dB), the mean absolute error of window means of 8x8 and 32x32
  non-overlapping windows (means of 10^(dB/10), compared as 10 log10), ENL = mean^2 / var of
  linear intensity over the 10 % of the 16x16 windows with the lowest coefficient of variation
  in the original (same windows in the decoded plane). Rate: file bytes * 8 / all pixels.

Multispectral
  eurosat_ms    EuroSAT MS 13 x UInt16 64x64, the `test` rows of eurosat_ms_splits.csv, each
                image one file, NSAT BLOCKSIZE=64
  s2_4band      sentinel2/sen1floods11/Spain_7370579_S2Hand.tif bands 2, 3, 4, 8 (B2, B3, B4,
                B8), Int16 512x512, NSAT BLOCKSIZE=256
  Codecs: MULTIRATE (MODEL=--ms-model) with SPECTRAL_TRANSFORM=AUTO (KLT) and NONE (band by band),
  JP2OpenJPEG (all bands in one file, lossy). PSNR with peak 65535 and with peak = the image's
  max, SSIM (Gaussian window 11 / sigma 1.5, data range = the image's max, mean over bands),
  compression ratio = raw bytes / file bytes (and / NSAT tile payload bytes).

BD-rates: Bjontegaard (bench_multirate.bd_rate: cubic fit of log rate against PSNR over the
overlapping PSNR range), on all points and on the Pareto-optimal points of each curve.

Every NSAT file is written with OVERVIEWS=NONE. JP2OpenJPEG is written with REVERSIBLE=NO and
GMLJP2=NO (the GeoJP2 box still carries the georeferencing).

Usage, from the repository root:
    nice -n 10 /usr/bin/python3 scripts/bench_sar_ms.py [--models-dir DIR]
        [--ms-model multirate-ms16-v3] [--sar-model multirate-sar-db-v3] [--quick]
        [--data ../shared/data] [--out scripts/results/sar_ms] [--threads 2]

Outputs in --out (default scripts/results/sar_ms; /tmp/bench_sar_ms_quick with --quick):
report.md, results.json, rd_*.png.
"""
import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")),
                        help="data folder (default: ../shared/data from the repository root)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: scripts/results/sar_ms; with --quick: "
                             "/tmp/bench_sar_ms_quick, so a smoke test never replaces the report)")
    parser.add_argument("--models-dir", default=None,
                        help="sets NSAT_MODELS_DIR for the runs (default: unset, i.e. the "
                             "repository's models/)")
    parser.add_argument("--ms-model", default="multirate-ms16-v3",
                        help="MULTIRATE model for the 16-bit stacks (default %(default)s, "
                             "the driver's default)")
    parser.add_argument("--sar-model", default="multirate-sar-db-v3",
                        help="MULTIRATE model for the Float32 dB planes (default %(default)s, "
                             "the driver's default)")
    parser.add_argument("--eurosat-images", type=int, default=40,
                        help="at most this many EuroSAT MS test images (default 40; the split "
                             "has 24)")
    parser.add_argument("--threads", type=int, default=2,
                        help="NSAT NUM_THREADS and GDAL_NUM_THREADS (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 3 SAR planes, 5 EuroSAT images, a 256x256 window of "
                             "the S2 stack, 3 settings per codec")
    return parser.parse_args()


ARGS = parse_args()
if ARGS.out is None:
    ARGS.out = "/tmp/bench_sar_ms_quick" if ARGS.quick else os.path.join(REPO, "scripts", "results", "sar_ms")
# The environment must be set before osgeo is imported (GDAL scans GDAL_DRIVER_PATH once; the
# plugin reads NSAT_MODELS_DIR when it loads a model).
if ARGS.models_dir:
    os.environ["NSAT_MODELS_DIR"] = os.path.abspath(ARGS.models_dir)
else:
    os.environ.pop("NSAT_MODELS_DIR", None)
os.environ.setdefault("GDAL_DRIVER_PATH", os.path.join(REPO, "build"))
os.environ["GDAL_PAM_ENABLED"] = "NO"
os.environ["GDAL_NUM_THREADS"] = str(ARGS.threads)

sys.path.insert(0, SCRIPTS)
import bench_common  # noqa: E402

bm = bench_common.bench_multirate_module(ARGS.threads)  # bd_rate, psnr, SSIM pieces, fmt, jsonable

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
gdal.SetConfigOption("GDAL_NUM_THREADS", str(ARGS.threads))

VSI = "/vsimem/bench_sar_ms"
fmt = bm.fmt

MR = "MULTIRATE"
MR_KLT = "MULTIRATE KLT"
MR_NONE = "MULTIRATE NONE"
JP2 = "JP2OpenJPEG"
LERC = "LERC"
LERC_ZSTD = "LERC_ZSTD"

SETTINGS = {
    # codec: (full run, --quick, label)
    MR: ([1, 10, 25, 40, 55, 70, 85, 100], [1, 50, 100], "QUALITY"),
    "JP2_SAR": ([0.5, 1, 2, 3, 5, 8, 12, 20, 30], [1, 5, 20], "QUALITY (% of the UInt16 raw size)"),
    LERC: ([0.1, 0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8], [0.5, 2, 4], "MAX_Z_ERROR (dB)"),
    "JP2_MS": ([0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 20], [1, 4, 12], "QUALITY (% of the raw size)"),
}
SAR_CODECS = [MR, JP2, LERC, LERC_ZSTD]
MS_CODECS = [MR_KLT, MR_NONE, JP2]
SAR_BD_PAIRS = [(JP2, MR), (LERC, MR), (LERC_ZSTD, MR)]          # (anchor, test)
MS_BD_PAIRS = [(JP2, MR_KLT), (MR_NONE, MR_KLT), (JP2, MR_NONE)]
JP2_SAR_MAX_SHIFT = 11    # at most 2048 steps per dB
ENL_WINDOW = 16
ENL_FRACTION = 0.10
NARROW_OVERLAP_DB = 1.0   # BD-rates over a narrower PSNR overlap are flagged
MEAN_WINDOWS = (8, 32)
CR_TARGET = 20.0
QUICK_EUROSAT = 5
QUICK_S2_WINDOW = 256


def settings(kind):
    full, quick, _ = SETTINGS[kind]
    return quick if ARGS.quick else full


log = bench_common.log


FAILURES = {}   # (dataset, codec, setting) -> {"count", "message"}


def record_failure(dataset, codec, setting, message):
    bench_common.record_failure(FAILURES, dataset, codec, setting, message)


MODEL_SHAS_SEEN = {}   # model id -> set of model_sha256 found in written NSAT files


# ---------------------------------------------------------------------------------------------
# Encode / decode.

def nsat_options(quality, model, blocksize=None, spectral=None):
    options = ["CODEC=MULTIRATE", f"QUALITY={quality}", f"MODEL={model}", "OVERVIEWS=NONE",
               f"NUM_THREADS={ARGS.threads}"]
    if blocksize:
        options.append(f"BLOCKSIZE={blocksize}")
    if spectral:
        options.append(f"SPECTRAL_TRANSFORM={spectral}")
    return options


def jp2_options(rate):
    return [f"QUALITY={rate}", "REVERSIBLE=NO", "GMLJP2=NO"]


def lerc_options(compress, max_z_error):
    return [f"COMPRESS={compress}", f"MAX_Z_ERROR={max_z_error}"]


def round_trip(src, driver, options, name):
    """gdal.Translate src -> /vsimem/, fresh open + ReadAsArray, unlink.
    Returns dict(size, array (bands, H, W), nsat metadata or None, enc_s, dec_s)."""
    ext = {"NSAT": ".nsat", "JP2OpenJPEG": ".jp2", "GTiff": ".tif"}[driver]
    path = f"{VSI}/out_{name}{ext}"
    try:
        t0 = time.perf_counter()
        out = gdal.Translate(path, src, format=driver, creationOptions=options)
        if out is None:
            raise RuntimeError(gdal.GetLastErrorMsg() or "gdal.Translate returned None")
        out = None
        t1 = time.perf_counter()
        stat = gdal.VSIStatL(path)
        if stat is None:
            raise RuntimeError("no output file was written")
        ds = gdal.Open(path)
        array = ds.ReadAsArray()
        meta = None
        if driver == "NSAT":
            meta = ds.GetMetadata("IMAGE_STRUCTURE") or {}
        ds = None
        t2 = time.perf_counter()
    finally:
        if gdal.VSIStatL(path) is not None:
            gdal.Unlink(path)
    if array.ndim == 2:
        array = array[np.newaxis]
    return dict(size=stat.size, array=array, meta=meta, enc_s=t1 - t0, dec_s=t2 - t1)


def nsat_info(meta, pixels):
    """Payload bpp / bytes and codec parameters from the NSAT IMAGE_STRUCTURE metadata."""
    info = dict(payload_bpp=None, payload_bytes=None, params=None)
    if not meta:
        return info
    value = meta.get("NSAT_BITS_PER_PIXEL")
    if value not in (None, ""):
        info["payload_bpp"] = float(value)
        info["payload_bytes"] = float(value) * pixels / 8.0
    try:
        params = json.loads(meta.get("NSAT_CODEC_PARAMETERS") or "{}")
    except ValueError:
        params = {}
    info["params"] = params
    if params.get("model"):
        MODEL_SHAS_SEEN.setdefault(params["model"], set()).add(params.get("model_sha256"))
    return info


# ---------------------------------------------------------------------------------------------
# SAR metrics.

def window_view(array, w):
    h, width = array.shape[0] // w * w, array.shape[1] // w * w
    return array[:h, :width].reshape(h // w, w, width // w, w)


def window_mean_error(ref_lin, dec_lin, valid, w):
    """Mean |10 log10(mean dec) - 10 log10(mean ref)| over the w x w windows that are all valid
    (means of linear intensity). Returns (value or None, number of windows)."""
    ok = window_view(valid, w).all(axis=(1, 3))
    if not ok.any():
        return None, 0
    mr = window_view(ref_lin, w).mean(axis=(1, 3))[ok]
    md = window_view(dec_lin, w).mean(axis=(1, 3))[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(10.0 * np.log10(md) - 10.0 * np.log10(mr))
    return float(np.mean(err)), int(ok.sum())


def homogeneous_windows(ref_lin, valid):
    """Indices (flat) of the ENL_FRACTION of the all-valid 16x16 windows with the lowest
    coefficient of variation of linear intensity in the original."""
    ok = window_view(valid, ENL_WINDOW).all(axis=(1, 3)).ravel()
    view = window_view(ref_lin, ENL_WINDOW)
    mean = view.mean(axis=(1, 3)).ravel()
    std = view.std(axis=(1, 3)).ravel()
    candidates = np.flatnonzero(ok & (mean > 0))
    if candidates.size == 0:
        return candidates, 0
    cv = std[candidates] / mean[candidates]
    count = max(1, int(round(ENL_FRACTION * candidates.size)))
    return candidates[np.argsort(cv)[:count]], int(candidates.size)


def enl(lin, windows):
    """Median over the given windows of mean^2 / var (inf for a window that is constant to
    1e-12 relative: a decoder that flattens a window removes its speckle entirely)."""
    if len(windows) == 0:
        return None
    view = window_view(lin, ENL_WINDOW)
    mean = view.mean(axis=(1, 3)).ravel()[windows]
    var = view.var(axis=(1, 3)).ravel()[windows]
    flat = var <= 1e-24 * mean * mean
    values = np.where(flat, np.inf, mean * mean / np.where(flat, 1.0, var))
    return float(np.median(values))


def sar_point(plane, decoded_db, size):
    ref, valid = plane["ref"], plane["valid"]
    dec = decoded_db.astype(np.float64)
    finite = np.isfinite(dec) & valid
    nonfinite = int(valid.sum() - finite.sum())
    diff = dec[finite] - ref[finite]
    mse = float(np.mean(diff * diff)) if diff.size else float("nan")
    peak = plane["peak"]
    point = dict(file_bytes=int(size), file_bpp=8.0 * size / plane["pixels"],
                 rmse_db=math.sqrt(mse) if math.isfinite(mse) else None,
                 psnr=(float("inf") if mse == 0 else 10.0 * math.log10(peak * peak / mse)),
                 nonfinite_valid=nonfinite)
    dv = dec[finite]
    point["dec_min"] = float(dv.min()) if dv.size else None
    point["dec_max"] = float(dv.max()) if dv.size else None
    point["outside_range"] = int(np.sum((dv < plane["min"]) | (dv > plane["max"])))
    point["outside_range_by_1db"] = int(np.sum((dv < plane["min"] - 1) | (dv > plane["max"] + 1)))
    dec_lin = 10.0 ** (np.where(finite, dec, 0.0) / 10.0)
    for w in MEAN_WINDOWS:
        value, count = window_mean_error(plane["lin"], dec_lin, finite, w)
        point[f"mean{w}_mae_db"] = value
        point[f"mean{w}_windows"] = count
    point["enl_orig"] = plane["enl_orig"]
    point["enl_dec"] = enl(dec_lin, plane["enl_windows"])
    point["enl_dec_is_inf"] = bool(point["enl_dec"] is not None and math.isinf(point["enl_dec"]))
    return point


# ---------------------------------------------------------------------------------------------
# SAR planes.

def sar_plane_specs():
    data = ARGS.data
    specs = [dict(key="pyrosar_VV", group="pyrosar", band=1, window=None,
                  path=os.path.join(data, "sar", "pyrosar",
                                    "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"),
                  description="pyroSAR S1A IW GRD VV, geocoded, terrain-flattened dB (whole scene)")]
    floods = os.path.join(data, "sar", "sen1floods11", "Spain_7370579_S1Hand.tif")
    if os.path.exists(floods):
        info = gdal.Info(floods, format="json")
        width, height = info["size"]
        cut = height - height // 4
        for band, pol in ((1, "VV"), (2, "VH")):
            specs.append(dict(key=f"sen1floods11_{pol}", group="sen1floods11", band=band,
                              window=[0, cut, width, height - cut], path=floods,
                              description=f"Sen1Floods11 Spain_7370579 S1 {pol} dB, rows {cut}..{height - 1}"))
    root = os.path.join(data, "sar", "bigearthnet")
    patches = sorted(os.listdir(root))[-2:] if os.path.isdir(root) else []
    for patch in patches:
        for pol in ("VV", "VH"):
            specs.append(dict(key=f"ben_{patch.split('_')[-2]}_{patch.split('_')[-1]}_{pol}",
                              group="bigearthnet", band=1, window=None,
                              path=os.path.join(root, patch, f"{patch}_{pol}.tif"),
                              description=f"BigEarthNet-S1 {patch} {pol} dB (120x120)"))
    if ARGS.quick:
        keep = {"pyrosar_VV", "sen1floods11_VV"}
        first_ben = next((s["key"] for s in specs if s["group"] == "bigearthnet"), None)
        specs = [s for s in specs if s["key"] in keep or s["key"] == first_ben]
    return specs


def load_sar_plane(spec, index):
    """1-band Float32 GTiff copy of the plane in /vsimem/ (srcWin crop), with its arrays."""
    path = f"{VSI}/sar_src_{index}.tif"
    kwargs = dict(format="GTiff", bandList=[spec["band"]])
    if spec["window"]:
        kwargs["srcWin"] = spec["window"]
    gdal.Translate(path, spec["path"], **kwargs)
    ds = gdal.Open(path, gdal.GA_Update)
    band = ds.GetRasterBand(1)
    ref = band.ReadAsArray().astype(np.float64)
    nodata = band.GetNoDataValue()
    valid = np.isfinite(ref)
    if nodata is not None and math.isfinite(nodata):
        valid &= ref != nodata
    note = None
    if nodata is None and not valid.all():
        band.SetNoDataValue(float("nan"))
        nodata = float("nan")
        note = "non-finite samples without a nodata value: nodata set to NaN on the copy"
    dtype = gdal.GetDataTypeName(band.DataType)
    ds = None
    if not valid.any():
        raise RuntimeError("no valid pixel")
    low, high = float(ref[valid].min()), float(ref[valid].max())
    lin = 10.0 ** (np.where(valid, ref, 0.0) / 10.0)
    windows, candidates = homogeneous_windows(lin, valid)
    plane = dict(spec, src=path, ref=ref, valid=valid, lin=lin, pixels=ref.size,
                 width=ref.shape[1], height=ref.shape[0], dtype=dtype, nodata=nodata,
                 min=low, max=high, peak=high - low, valid_fraction=float(valid.mean()),
                 enl_windows=windows, enl_candidates=candidates, note=note)
    plane["enl_orig"] = enl(lin, windows)
    # UInt16 version for JP2OpenJPEG: the largest step 2^-k dB (k <= 11) whose range fits.
    shift = JP2_SAR_MAX_SHIFT
    while shift > -8 and (high - low) * 2.0 ** shift > 65535:
        shift -= 1
    scale = 2.0 ** shift
    q = np.clip(np.round((ref - low) * scale), 0, 65535)
    fill = float(np.median(q[valid]))
    q = np.where(valid, q, fill).astype(np.uint16)
    qpath = f"{VSI}/sar_q16_{index}.tif"
    src = gdal.Open(path)
    qds = gdal.GetDriverByName("GTiff").Create(qpath, ref.shape[1], ref.shape[0], 1, gdal.GDT_UInt16)
    qds.SetGeoTransform(src.GetGeoTransform())
    qds.SetProjection(src.GetProjection())
    qds.GetRasterBand(1).WriteArray(q)
    qds = None
    src = None
    plane.update(q16=qpath, q16_scale=scale, q16_step_db=1.0 / scale, q16_fill=fill,
                 q16_max=int(q.max()))
    return plane


def run_sar(results):
    specs = sar_plane_specs()
    log(f"SAR: {len(specs)} held-out plane(s), model {ARGS.sar_model}")
    for index, spec in enumerate(specs):
        if not os.path.exists(spec["path"]):
            record_failure(spec["key"], "source", "-", f"file not found: {spec['path']}")
            continue
        try:
            plane = load_sar_plane(spec, index)
        except Exception as error:  # noqa: BLE001
            record_failure(spec["key"], "source", "-", f"{type(error).__name__}: {error}")
            continue
        entry = {k: plane[k] for k in ("key", "group", "description", "path", "band", "window",
                                       "width", "height", "dtype", "nodata", "min", "max", "peak",
                                       "valid_fraction", "enl_orig", "enl_candidates", "note",
                                       "q16_step_db", "q16_fill", "q16_max")}
        entry["enl_windows"] = int(len(plane["enl_windows"]))
        entry["points"] = []
        results["sar"][spec["key"]] = entry
        log(f" {spec['key']}: {plane['width']}x{plane['height']} {plane['dtype']}, "
            f"range {plane['min']:.2f}..{plane['max']:.2f} dB, valid {plane['valid_fraction'] * 100:.1f}%, "
            f"JP2 step 1/{plane['q16_scale']:.0f} dB")
        jobs = [(MR, q, plane["src"], "NSAT", nsat_options(q, ARGS.sar_model)) for q in settings(MR)]
        jobs += [(JP2, r, plane["q16"], "JP2OpenJPEG", jp2_options(r)) for r in settings("JP2_SAR")]
        for codec in (LERC, LERC_ZSTD):
            jobs += [(codec, e, plane["src"], "GTiff", lerc_options(codec, e)) for e in settings(LERC)]
        for codec, setting, src, driver, options in jobs:
            try:
                rt = round_trip(src, driver, options, f"sar{index}")
                decoded = rt["array"][0].astype(np.float64)
                if codec == JP2:
                    decoded = decoded / plane["q16_scale"] + plane["min"]
                point = sar_point(plane, decoded, rt["size"])
            except Exception as error:  # noqa: BLE001
                record_failure(spec["key"], codec, setting, f"{type(error).__name__}: {str(error).strip()}")
                continue
            point.update(codec=codec, setting=setting, enc_s=rt["enc_s"], dec_s=rt["dec_s"])
            if codec == MR:
                info = nsat_info(rt["meta"], plane["pixels"])
                point.update(payload_bpp=info["payload_bpp"], payload_bytes=info["payload_bytes"],
                             nsat_params=info["params"])
            entry["points"].append(point)
            log(f"  {codec:10s} {setting:>6} {point['file_bpp']:7.3f} bpp  PSNR {point['psnr']:6.2f}  "
                f"RMSE {fmt(point['rmse_db'])} dB  mean32 {fmt(point['mean32_mae_db'])} dB  "
                f"ENL {fmt(point['enl_orig'], 1)}->{fmt(point['enl_dec'], 1)}")
        for path in (plane["src"], plane["q16"]):
            gdal.Unlink(path)


def nodata_checks(results):
    """NSAT MULTIRATE round trips of a held-out plane with a block of NaN (nodata NaN), of -99
    (nodata -99), and of NaN without a nodata value (should be refused)."""
    checks = []
    results["nodata_checks"] = checks
    floods = os.path.join(ARGS.data, "sar", "sen1floods11", "Spain_7370579_S1Hand.tif")
    if not os.path.exists(floods):
        return
    ds = gdal.Open(floods)
    height = ds.RasterYSize
    cut = height - height // 4
    array = ds.GetRasterBand(1).ReadAsArray(0, cut, min(256, ds.RasterXSize), height - cut)
    ds = None
    hole = np.zeros(array.shape, dtype=bool)
    hole[10:40, 100:180] = True
    for label, fill, nodata in (("NaN block, nodata NaN", np.nan, np.nan),
                                ("-99 block, nodata -99", -99.0, -99.0),
                                ("NaN block, no nodata value", np.nan, None)):
        src_path = f"{VSI}/nodata_src.tif"
        data = array.copy()
        data[hole] = fill
        src = gdal.GetDriverByName("GTiff").Create(src_path, data.shape[1], data.shape[0], 1,
                                                   gdal.GDT_Float32)
        src.GetRasterBand(1).WriteArray(data)
        if nodata is not None:
            src.GetRasterBand(1).SetNoDataValue(nodata)
        src = None
        check = dict(case=label, quality=75)
        try:
            rt = round_trip(src_path, "NSAT", nsat_options(75, ARGS.sar_model), "nodata")
            dec = rt["array"][0].astype(np.float64)
            inside = dec[hole]
            check.update(
                written=True,
                nodata_kept=bool(np.all(np.isnan(inside)) if fill != fill else np.all(inside == fill)),
                valid_nonfinite=int((~np.isfinite(dec[~hole])).sum()),
                valid_dec_range=[float(np.nanmin(dec[~hole])), float(np.nanmax(dec[~hole]))],
                valid_orig_range=[float(data[~hole].min()), float(data[~hole].max())])
        except Exception as error:  # noqa: BLE001
            check.update(written=False, error=f"{type(error).__name__}: {str(error).strip()}")
        gdal.Unlink(src_path)
        checks.append(check)
        log(f" nodata check {label}: {check}")


# ---------------------------------------------------------------------------------------------
# Multispectral.

def ssim(reference, decoded, valid, peak):
    """Mean over bands of single-scale SSIM (bench_multirate.msssim_band with one scale:
    Gaussian 11 / 1.5, K1 0.01, K2 0.03, data range `peak`)."""
    values = [bm.msssim_band(reference[b], decoded[b], valid, peak, 1)
              for b in range(reference.shape[0])]
    return float(np.mean(values))


def ms_point(reference, valid, maxpeak, rt, raw_bytes, pixels):
    decoded = rt["array"]
    if decoded.shape != reference.shape:
        raise RuntimeError(f"decoded shape {decoded.shape} differs from source {reference.shape}")
    point = dict(file_bytes=int(rt["size"]), file_bpp=8.0 * rt["size"] / pixels,
                 cr_file=raw_bytes / rt["size"],
                 psnr_65535=bm.psnr(reference, decoded, valid, 65535.0),
                 psnr_max=bm.psnr(reference, decoded, valid, maxpeak),
                 ssim=ssim(reference, decoded, valid, maxpeak),
                 enc_s=rt["enc_s"], dec_s=rt["dec_s"])
    return point


def ms_jobs(blocksize):
    jobs = []
    for codec, spectral in ((MR_KLT, "AUTO"), (MR_NONE, "NONE")):
        jobs += [(codec, q, "NSAT", nsat_options(q, ARGS.ms_model, blocksize, spectral))
                 for q in settings(MR)]
    jobs += [(JP2, r, "JP2OpenJPEG", jp2_options(r)) for r in settings("JP2_MS")]
    return jobs


def code_ms_image(src, name, blocksize, dataset, sink):
    reference = src.ReadAsArray()
    if reference.ndim == 2:
        reference = reference[np.newaxis]
    valid = bm.valid_mask(src)
    maxpeak = float(reference[:, valid].max())
    pixels = src.RasterXSize * src.RasterYSize
    raw_bytes = reference.size * gdal.GetDataTypeSize(src.GetRasterBand(1).DataType) // 8
    for codec, setting, driver, options in ms_jobs(blocksize):
        try:
            rt = round_trip(src, driver, options, "ms")
            point = ms_point(reference, valid, maxpeak, rt, raw_bytes, pixels)
        except Exception as error:  # noqa: BLE001
            record_failure(dataset, codec, setting, f"{type(error).__name__}: {str(error).strip()}")
            continue
        point.update(image=name, codec=codec, setting=setting, maxpeak=maxpeak, raw_bytes=raw_bytes)
        if driver == "NSAT":
            info = nsat_info(rt["meta"], pixels)
            point.update(payload_bpp=info["payload_bpp"], payload_bytes=info["payload_bytes"],
                         cr_payload=(raw_bytes / info["payload_bytes"]) if info["payload_bytes"] else None,
                         spectral_transform=(info["params"] or {}).get("spectral_transform", "none"),
                         nsat_params=info["params"])
            if point["spectral_transform"] == "KLT" and info["payload_bytes"]:
                # The per-tile KLT is stored as bands x bands int8 weights, plus the band count
                # (codecs/learned/spectral_transform.h, SpectralTransform::payloadBytes).
                tiles = math.ceil(src.RasterXSize / blocksize) * math.ceil(src.RasterYSize / blocksize)
                bands = reference.shape[0]
                side = tiles * (bands * bands + 1)
                point["klt_side_bytes"] = side
                point["payload_bpp_ex_klt"] = 8.0 * (info["payload_bytes"] - side) / pixels
        sink.append(point)
    return reference, valid


def average_points(per_image, images):
    points = []
    for codec in MS_CODECS:
        for setting in sorted({p["setting"] for p in per_image if p["codec"] == codec}):
            rows = [p for p in per_image if p["codec"] == codec and p["setting"] == setting]
            point = dict(codec=codec, setting=setting, n=len(rows), complete=len(rows) == images)
            for key in ("file_bpp", "payload_bpp", "payload_bpp_ex_klt", "klt_side_bytes", "psnr_65535",
                        "psnr_max", "ssim", "file_bytes", "payload_bytes", "enc_s", "dec_s"):
                values = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
                point[key] = float(np.mean(values)) if values else None
            raw = sum(r["raw_bytes"] for r in rows)
            point["cr_file"] = raw / sum(r["file_bytes"] for r in rows)
            if all(r.get("payload_bytes") for r in rows):
                point["cr_payload"] = raw / sum(r["payload_bytes"] for r in rows)
            else:
                point["cr_payload"] = None
            transforms = sorted({r.get("spectral_transform") for r in rows if r.get("spectral_transform")})
            if transforms:
                point["spectral_transform"] = "/".join(transforms)
            points.append(point)
    return points


def eurosat_files():
    files = []
    with open(os.path.join(ARGS.data, "eurosat_ms_splits.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if row["split"].strip() == "test":
                files.append(os.path.join(ARGS.data, "eurosat_ms", row["class"].strip(),
                                          os.path.basename(row["file"].strip())))
    return files[:QUICK_EUROSAT if ARGS.quick else ARGS.eurosat_images]


def run_eurosat(results):
    files = eurosat_files()
    log(f"eurosat_ms: {len(files)} test images, model {ARGS.ms_model}")
    entry = dict(description=f"EuroSAT MS, {len(files)} images of the test split of "
                 f"eurosat_ms_splits.csv, 64x64, 13 x UInt16, NSAT BLOCKSIZE=64",
                 images=len(files), files=[os.path.basename(f) for f in files], blocksize=64,
                 bands=13, dtype="UInt16", per_image=[], points=[])
    results["ms"]["eurosat_ms"] = entry
    t0 = time.perf_counter()
    for index, path in enumerate(files):
        try:
            src = gdal.Open(path)
        except RuntimeError as error:
            record_failure("eurosat_ms", "source", os.path.basename(path), str(error))
            continue
        code_ms_image(src, os.path.basename(path), 64, "eurosat_ms", entry["per_image"])
        src = None
        if (index + 1) % 5 == 0 or index + 1 == len(files):
            log(f"  {index + 1}/{len(files)} images, {time.perf_counter() - t0:.0f} s")
    entry["points"] = average_points(entry["per_image"], len(files))


def run_s2(results):
    path = os.path.join(ARGS.data, "sentinel2", "sen1floods11", "Spain_7370579_S2Hand.tif")
    if not os.path.exists(path):
        record_failure("s2_4band", "source", "-", f"file not found: {path}")
        return
    info = gdal.Info(path, format="json")
    width, height = info["size"]
    window = [0, 0, width, height]
    if ARGS.quick:
        w, h = min(QUICK_S2_WINDOW, width), min(QUICK_S2_WINDOW, height)
        window = [(width - w) // 2, (height - h) // 2, w, h]
    src_path = f"{VSI}/s2_src.tif"
    gdal.Translate(src_path, path, format="GTiff", bandList=[2, 3, 4, 8], srcWin=window)
    src = gdal.Open(src_path)
    names = [src.GetRasterBand(b).GetDescription() for b in range(1, 5)]
    dtype = gdal.GetDataTypeName(src.GetRasterBand(1).DataType)
    entry = dict(description=f"Sen1Floods11 Spain_7370579 Sentinel-2 L1C, bands 2, 3, 4, 8 "
                 f"({', '.join(names)}), {dtype}, window {window} of {width}x{height}, NSAT BLOCKSIZE=256",
                 images=1, window=window, bands=4, band_names=names, dtype=dtype, blocksize=256,
                 nodata=src.GetRasterBand(1).GetNoDataValue(), per_image=[], points=[])
    results["ms"]["s2_4band"] = entry
    log(f"s2_4band: {entry['description']}")
    reference, valid = code_ms_image(src, "Spain_7370579_S2Hand", 256, "s2_4band", entry["per_image"])
    entry["valid_fraction"] = float(valid.mean())
    entry["max"] = float(reference[:, valid].max())
    src = None
    gdal.Unlink(src_path)
    entry["points"] = average_points(entry["per_image"], 1)
    for p in entry["points"]:
        log(f"  {p['codec']:15s} {p['setting']:>5} {fmt(p['file_bpp'])} bpp  CR {fmt(p['cr_file'], 1)}  "
            f"PSNR(max) {fmt(p['psnr_max'], 2)}  SSIM {fmt(p['ssim'], 4)}")


# ---------------------------------------------------------------------------------------------
# BD-rates, CR 20.

def pareto(points):
    """Points not dominated (another point with lower-or-equal rate and higher quality)."""
    kept = []
    best = -math.inf
    for rate, quality in sorted(points):
        if quality > best:
            kept.append((rate, quality))
            best = quality
    return kept


def monotone(points):
    ordered = sorted(points)
    return all(b[1] > a[1] for a, b in zip(ordered, ordered[1:]))


def clean_rd(points):
    return [(r, q) for r, q in points
            if r is not None and q is not None and r > 0 and math.isfinite(q)]


def bd_row(anchor_points, test_points, label):
    a, t = clean_rd(anchor_points), clean_rd(test_points)
    row = dict(label=label, monotone_anchor=monotone(a), monotone_test=monotone(t))
    row["bd_all"], row["info_all"] = bm.bd_rate(a, t)
    pa, pt = pareto(a), pareto(t)
    row["pareto_dropped"] = [len(a) - len(pa), len(t) - len(pt)]
    row["bd_pareto"], row["info_pareto"] = bm.bd_rate(pa, pt)
    for kind in ("all", "pareto"):
        overlap = row[f"info_{kind}"].get("overlap_db")
        row[f"narrow_{kind}"] = bool(overlap and 0 < overlap[1] - overlap[0] < NARROW_OVERLAP_DB)
    return row


def compute_bd(results):
    rows = []
    for key, plane in results["sar"].items():
        for anchor, test in SAR_BD_PAIRS:
            pa = [p for p in plane["points"] if p["codec"] == anchor]
            pt = [p for p in plane["points"] if p["codec"] == test]
            a_rd = [(p["file_bpp"], p["psnr"]) for p in pa]
            for rate in ("file_bpp", "payload_bpp"):
                row = bd_row(a_rd, [(p.get(rate), p["psnr"]) for p in pt], f"{test} vs {anchor}")
                row.update(dataset=key, anchor=anchor, test=test, test_rate=rate)
                rows.append(row)
    for key, entry in results["ms"].items():
        for anchor, test in MS_BD_PAIRS:
            pa = [p for p in entry["points"] if p["codec"] == anchor and p["complete"]]
            pt = [p for p in entry["points"] if p["codec"] == test and p["complete"]]
            rates = ("file_bpp", "payload_bpp") + (("payload_bpp_ex_klt",) if test == MR_KLT else ())
            for rate in rates:
                anchor_rate = "file_bpp" if anchor == JP2 else ("file_bpp" if rate == "file_bpp" else "payload_bpp")
                a_rd = [(p.get(anchor_rate), p["psnr_max"]) for p in pa]
                row = bd_row(a_rd, [(p.get(rate), p["psnr_max"]) for p in pt], f"{test} vs {anchor}")
                row.update(dataset=key, anchor=anchor, test=test, test_rate=rate,
                           anchor_rate=anchor_rate)
                rows.append(row)
    results["bd_rate"] = rows
    # SAR summary over the planes, Pareto points: the mean of log(1 + BD/100), i.e. the
    # geometric mean of the rate ratios, turned back into a percentage.
    summary = []
    for anchor, test in SAR_BD_PAIRS:
        for rate in ("file_bpp", "payload_bpp"):
            picked = [r for r in rows if r["dataset"] in results["sar"] and r["anchor"] == anchor
                      and r["test"] == test and r["test_rate"] == rate and r["bd_pareto"] is not None]
            values = [r["bd_pareto"] for r in picked]
            mean = (math.exp(float(np.mean([math.log1p(v / 100.0) for v in values]))) - 1.0) * 100.0 if values else None
            summary.append(dict(anchor=anchor, test=test, test_rate=rate, kind="bd_pareto",
                                planes=len(values), of=len(results["sar"]), mean=mean,
                                narrow=sum(1 for r in picked if r["narrow_pareto"]),
                                min=min(values) if values else None, max=max(values) if values else None))
    results["bd_sar_summary"] = summary


def cr20(results):
    table = []
    for key, entry in results["ms"].items():
        for codec in MS_CODECS:
            points = [p for p in entry["points"] if p["codec"] == codec and p["complete"]]
            for basis in ("cr_file", "cr_payload"):
                pts = [p for p in points if p.get(basis)]
                if not pts or (codec == JP2 and basis == "cr_payload"):
                    continue
                nearest = min(pts, key=lambda p: abs(math.log(p[basis] / CR_TARGET)))
                row = dict(dataset=key, codec=codec, basis=basis, setting=nearest["setting"],
                           cr=nearest[basis], ssim=nearest["ssim"], psnr_max=nearest["psnr_max"],
                           file_bpp=nearest["file_bpp"])
                # SSIM interpolated linearly in log(CR) between the points around CR 20.
                ordered = sorted(pts, key=lambda p: p[basis])
                row["ssim_at_20"] = None
                for lo, hi in zip(ordered, ordered[1:]):
                    if lo[basis] <= CR_TARGET <= hi[basis] and hi[basis] > lo[basis]:
                        f = (math.log(CR_TARGET) - math.log(lo[basis])) / (math.log(hi[basis]) - math.log(lo[basis]))
                        row["ssim_at_20"] = lo["ssim"] + f * (hi["ssim"] - lo["ssim"])
                        break
                row["cr_range"] = [ordered[0][basis], ordered[-1][basis]]
                table.append(row)
    results["cr20"] = table


# ---------------------------------------------------------------------------------------------
# Models, plots, report.

def model_card(model_id):
    candidates = []
    if os.environ.get("NSAT_MODELS_DIR"):
        candidates.append(os.path.join(os.environ["NSAT_MODELS_DIR"], model_id, "card.json"))
    candidates.append(os.path.join(REPO, "models", model_id, "card.json"))
    candidates.append(os.path.join("/usr/local/share/nsat/models", model_id, "card.json"))
    for path in candidates:
        if os.path.exists(path):
            with open(path, "rb") as f:
                raw = f.read()
            entry = dict(id=model_id, card=path, sha256=hashlib.sha256(raw).hexdigest())
            try:
                card = json.loads(raw)
                entry.update(status=card.get("status"), lambda_min=card.get("lambda_min"),
                             lambda_max=card.get("lambda_max"),
                             train=str((card.get("data") or {}).get("train", ""))[:300])
            except ValueError:
                entry["status"] = "card.json is not valid JSON"
            return entry
    return dict(id=model_id, card=None, sha256=None, status="card.json not found in " + ", ".join(candidates))


STYLES = {MR: "o-", JP2: "d-", LERC: "s-", LERC_ZSTD: "^-", MR_KLT: "o-", MR_NONE: "v-"}


def plot(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    planes = list(results["sar"].items())
    if planes:
        cols = min(4, len(planes))
        rows = int(math.ceil(len(planes) / cols))
        for name, ykey, ylabel, logy in (
                ("rd_sar_psnr.png", "psnr", "PSNR on dB (peak = plane range)", False),
                ("rd_sar_mean32.png", "mean32_mae_db", "MAE of 32x32 window means (dB)", True),
                ("rd_sar_mean8.png", "mean8_mae_db", "MAE of 8x8 window means (dB)", True),
                ("rd_sar_enl.png", "enl_ratio", "ENL decoded / ENL original", True)):
            fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
            for ax, (key, plane) in zip(axes.ravel(), planes):
                for codec in SAR_CODECS:
                    pts = sorted((p for p in plane["points"] if p["codec"] == codec), key=lambda p: p["file_bpp"])
                    if not pts:
                        continue
                    if ykey == "enl_ratio":
                        ys = [(p["enl_dec"] / p["enl_orig"]) if p.get("enl_dec") and p.get("enl_orig") else None for p in pts]
                    else:
                        ys = [p.get(ykey) for p in pts]
                    ax.plot([p["file_bpp"] for p in pts], [np.nan if y is None else y for y in ys],
                            STYLES[codec], label=codec, markersize=4)
                    if codec == MR and all(p.get("payload_bpp") for p in pts):
                        ax.plot([p["payload_bpp"] for p in pts], [np.nan if y is None else y for y in ys],
                                "o--", color="grey", label="MULTIRATE (payload)", markersize=3)
                ax.set_title(key, fontsize=9)
                ax.set_xlabel("bits per pixel")
                ax.set_xscale("log")
                if logy:
                    ax.set_yscale("log")
                ax.grid(True, alpha=0.3, which="both")
                ax.legend(fontsize=6)
            for ax in axes.ravel()[len(planes):]:
                ax.axis("off")
            fig.suptitle(f"SAR dB, held-out planes: {ylabel}", fontsize=10)
            fig.tight_layout()
            path = os.path.join(out, name)
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    for key, entry in results["ms"].items():
        if not entry["points"]:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
        for codec in MS_CODECS:
            pts = sorted((p for p in entry["points"] if p["codec"] == codec), key=lambda p: p["file_bpp"])
            if not pts:
                continue
            x = [p["file_bpp"] for p in pts]
            line, = axes[0].plot(x, [p["psnr_max"] for p in pts], STYLES[codec], label=codec)
            color = line.get_color()
            axes[1].plot(x, [p["ssim"] for p in pts], STYLES[codec], label=codec, color=color)
            axes[2].plot([p["cr_file"] for p in pts], [p["ssim"] for p in pts], STYLES[codec], label=codec,
                         color=color)
            if codec != JP2 and all(p.get("payload_bpp") for p in pts):
                xp = [p["payload_bpp"] for p in pts]
                style = dict(ls="--", marker=".", color=color, alpha=0.6, label=f"{codec} (payload)")
                axes[0].plot(xp, [p["psnr_max"] for p in pts], **style)
                axes[1].plot(xp, [p["ssim"] for p in pts], **style)
                axes[2].plot([p["cr_payload"] for p in pts], [p["ssim"] for p in pts], **style)
        axes[0].set_ylabel("PSNR (dB, peak = image max)")
        axes[1].set_ylabel("SSIM (mean over bands)")
        axes[2].set_ylabel("SSIM (mean over bands)")
        for ax in axes[:2]:
            ax.set_xlabel("bits per pixel (all bands)")
            ax.set_xscale("log")
        axes[2].set_xlabel("compression ratio (raw / coded bytes)")
        axes[2].set_xscale("log")
        axes[2].axvline(CR_TARGET, color="k", lw=0.8, ls=":")
        for ax in axes:
            ax.grid(True, alpha=0.3, which="both")
            ax.legend(fontsize=7)
        fig.suptitle(entry["description"], fontsize=9)
        fig.tight_layout()
        path = os.path.join(out, f"rd_{key}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def bd_notes(row):
    notes = []
    for kind in ("all", "pareto"):
        why = row[f"info_{kind}"].get("why")
        if why:
            notes.append(f"{kind}: {why}")
        elif row[f"narrow_{kind}"]:
            notes.append(f"{kind}: overlap < {NARROW_OVERLAP_DB:g} dB, extrapolation-sensitive")
    for side, flag in (("anchor", row["monotone_anchor"]), ("test", row["monotone_test"])):
        if not flag:
            notes.append(f"{side} curve not monotone")
    return notes


def bd_text(value):
    return "n/a" if value is None else f"{value:+.1f} %"


def bd_all_text(row):
    """BD-rate over all points, shown only where both curves are monotone (the fit of log rate
    as a function of PSNR is meaningless otherwise; the value stays in results.json)."""
    if not (row["monotone_anchor"] and row["monotone_test"]):
        return "n/a (not monotone)"
    return bd_text(row["bd_all"])


def overlap_text(info):
    overlap = info.get("overlap_db")
    if overlap and overlap[1] > overlap[0]:
        return f"{overlap[0]:.2f}..{overlap[1]:.2f}"
    return "empty" if overlap else "n/a"


def write_report(results, out):
    meta = results["meta"]
    lines = []
    add = lines.append
    add("# NSAT MULTIRATE on SAR backscatter (dB) and 16-bit multispectral stacks")
    add("")
    if ARGS.quick:
        add("**Quick smoke-test run (--quick): few planes, images and settings. Not a result.**")
        add("")
    m = meta["machine"]
    add(f"- Date: {meta['date']}")
    add(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, SIMD {'/'.join(m['simd']) or 'none'}, "
        f"{m['system']}, Python {m['python']}. Load average at start: {meta['load_at_start']} "
        f"(the machine was shared with other jobs; timings are not benchmarks).")
    add(f"- GDAL {meta['gdal']}, numpy {meta['numpy']}. Plugin: `{meta['plugin']}`.")
    add(f"- NSAT_MODELS_DIR: `{meta['models_dir']}`.")
    add(f"- Command: `{meta['command']}`")
    add(f"- Wall time: {meta['elapsed_s']:.0f} s (SAR {meta['sections_s'].get('sar', 0):.0f} s, "
        f"EuroSAT MS {meta['sections_s'].get('eurosat_ms', 0):.0f} s, S2 4-band "
        f"{meta['sections_s'].get('s2_4band', 0):.0f} s).")
    add("")
    add("## Models")
    add("")
    add("| role | id | card.json | sha256 of card.json | sha256 stored in the coded files | status | lambda range | training data |")
    add("|---|---|---|---|---|---|---|---|")
    for role, model in results["models"].items():
        seen = sorted(s for s in MODEL_SHAS_SEEN.get(model["id"], set()) if s)
        seen_text = ("same" if seen == [model["sha256"]] else ", ".join(seen) or "none (no file written)")
        lam = (f"{model.get('lambda_min')}..{model.get('lambda_max')}" if model.get("lambda_min") is not None else "")
        add(f"| {role} | `{model['id']}` | `{model['card']}` | `{model['sha256']}` | {seen_text} | "
            f"{model.get('status')} | {lam} | {(model.get('train') or '').replace('|', '/')[:160]} |")
    add("")

    add("## Method")
    add("")
    add("- Every file is written with `gdal.Translate` to /vsimem/, read back with a fresh `gdal.Open` + "
        "`ReadAsArray`, then deleted. NSAT: `CODEC=MULTIRATE QUALITY=q MODEL=<id> OVERVIEWS=NONE "
        f"NUM_THREADS={ARGS.threads}`; JP2OpenJPEG: `QUALITY=r REVERSIBLE=NO GMLJP2=NO` (r = rate in % "
        "of the raw size; the GeoJP2 box is kept, the 1.5-2 KB GMLJP2 box is not: it would dominate "
        "64x64 files); GTiff: `COMPRESS=LERC` or `LERC_ZSTD` with `MAX_Z_ERROR=e` (dB), defaults otherwise.")
    add("- Rates: file bpp = 8 x file bytes / (width x height), **all pixels** of the plane or image, "
        "all bands. NSAT payload bpp = `NSAT_BITS_PER_PIXEL` (the coded tiles only, no header): the "
        "NSAT header (JSON with the full WKT2 CRS, per-band entries, model ids) is a fixed cost of "
        "about 2-3.5 KB (measured per dataset under Reading), which on a 64x64 or 120x120 file is "
        "most of the file.")
    add("- SAR planes are the parts held out of the SAR model's training (scripts/learned/datasets.py): "
        "pyrosar (whole), Sen1Floods11 S1 rows of the last quarter, the last two BigEarthNet-S1 patches "
        "by folder name. Each plane is cropped with srcWin to a 1-band Float32 GTiff in /vsimem/ and "
        "coded on its own (default BLOCKSIZE 256).")
    add("- SAR JP2OpenJPEG input: q = round((dB - dBmin) x 2^k), clipped to 0..65535, with the largest "
        f"k <= {JP2_SAR_MAX_SHIFT} for which the plane's valid range fits 16 bits (step 1/2^k dB, in the "
        "table); nodata pixels are filled with the median q. Decoded as q / 2^k + dBmin.")
    add("- SAR metrics, over valid pixels only (nodata -99 / NaN excluded; the held-out planes happen to "
        "have none): PSNR on dB with peak = the plane's valid max - min; RMSE in dB; window-mean error: "
        "non-overlapping 8x8 and 32x32 windows that are all valid, mean of 10^(dB/10) per window in "
        "original and decoded, mean |10 log10(dec) - 10 log10(orig)| in dB; ENL = mean^2 / var of "
        f"linear intensity over the {ENL_FRACTION * 100:.0f} % of the all-valid 16x16 windows with the "
        "lowest coefficient of variation in the ORIGINAL (same windows for every decoded version), "
        "median over those windows (inf: the decoder made those windows constant). ENL above the "
        "original's means speckle was smoothed away, below means noise was added.")
    add("- Multispectral: PSNR over all bands with peak 65535 and with peak = the image's own max "
        "(all bands); SSIM = bench_multirate's SSIM at one scale (Gaussian 11x11, sigma 1.5, K1 0.01, "
        "K2 0.03) with data range = the image's max, per band, mean over bands; CR = raw bytes / "
        "file bytes (and raw / payload bytes for NSAT). EuroSAT values are means over the images "
        "(CR: total raw / total coded bytes). The S2 stack is Sen1Floods11's Spain_7370579 S2 L1C "
        "(512x512, 10 m bands B2, B3, B4, B8 = file bands 2, 3, 4, 8); what each model was trained on is "
        "in the Models table (card `data.train`).")
    add("- BD-rate: bench_multirate.bd_rate (log rate as a cubic of PSNR, integrated over the overlapping "
        "PSNR range; negative = the tested codec needs fewer bits). SAR on PSNR-on-dB; multispectral on "
        "PSNR with peak = image max. 'Pareto' (the main value) drops dominated points (a point "
        "with more bits and lower PSNR than another of the same codec), because the Bjontegaard fit "
        "assumes a monotone curve; 'all points' is shown only where both curves are monotone. An "
        f"overlap under {NARROW_OVERLAP_DB:g} dB is flagged: the value then rests on a sliver of the curves.")
    add("")

    # SAR tables
    add("## 1. SAR backscatter (dB), held-out planes")
    add("")
    add("| plane | size | valid dB range | JP2 step | ENL orig (windows) |")
    add("|---|---|---|---|---|")
    for key, plane in results["sar"].items():
        add(f"| {key} | {plane['width']}x{plane['height']} | {plane['min']:.2f} .. {plane['max']:.2f} "
            f"({plane['peak']:.2f}) | 1/{1 / plane['q16_step_db']:.0f} dB | {fmt(plane['enl_orig'], 2)} "
            f"({plane['enl_windows']} of {plane['enl_candidates']}) |")
    add("")
    for key, plane in results["sar"].items():
        add(f"### {key}")
        add("")
        add(f"{plane['description']}. Nodata: {plane['nodata']}. Valid: {plane['valid_fraction'] * 100:.1f} %."
            + (f" Note: {plane['note']}." if plane.get("note") else ""))
        add("")
        add("| codec | setting | file bpp | NSAT payload bpp | PSNR dB | RMSE dB | mean 8x8 err dB | "
            "mean 32x32 err dB | ENL dec (orig) | decoded min..max | outside orig range (>1 dB) |")
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for codec in SAR_CODECS:
            for p in sorted((p for p in plane["points"] if p["codec"] == codec), key=lambda p: p["setting"]):
                add(f"| {codec} | {p['setting']} | {fmt(p['file_bpp'])} | {fmt(p.get('payload_bpp'))} | "
                    f"{fmt(p['psnr'], 2)} | {fmt(p['rmse_db'])} | {fmt(p['mean8_mae_db'])} | "
                    f"{fmt(p['mean32_mae_db'])} | {fmt(p['enl_dec'], 2)} ({fmt(p['enl_orig'], 2)}) | "
                    f"{fmt(p['dec_min'], 2)}..{fmt(p['dec_max'], 2)} | {p['outside_range']} "
                    f"({p['outside_range_by_1db']}) |"
                    + (f" non-finite: {p['nonfinite_valid']}" if p["nonfinite_valid"] else ""))
        add("")
    add("### BD-rate, SAR (bpp vs PSNR on dB)")
    add("")
    add("| plane | MULTIRATE rate | vs | BD-rate (Pareto) | overlap dB (Pareto) | dropped (anchor, test) | BD-rate (all points) | overlap dB (all) | note |")
    add("|---|---|---|---|---|---|---|---|---|")
    for row in results["bd_rate"]:
        if row["dataset"] not in results["sar"]:
            continue
        note = "; ".join(bd_notes(row))
        add(f"| {row['dataset']} | {row['test_rate'].replace('_bpp', '')} | {row['anchor']} | {bd_text(row['bd_pareto'])} | "
            f"{overlap_text(row['info_pareto'])} | {row['pareto_dropped'][0]}, {row['pareto_dropped'][1]} | "
            f"{bd_all_text(row)} | {overlap_text(row['info_all'])} | {note} |")
    add("")
    add("Over the planes (Pareto points; mean = geometric mean of the rate ratios 1 + BD/100):")
    add("")
    add("| MULTIRATE rate | vs | mean BD-rate | min | max | planes with a value | of them with overlap < 1 dB |")
    add("|---|---|---|---|---|---|---|")
    for s in results["bd_sar_summary"]:
        add(f"| {s['test_rate'].replace('_bpp', '')} | {s['anchor']} | {bd_text(s['mean'])} | {bd_text(s['min'])} | "
            f"{bd_text(s['max'])} | {s['planes']} of {s['of']} | {s['narrow']} |")
    add("")
    if results.get("nodata_checks"):
        add("### Nodata round trips (NSAT MULTIRATE QUALITY=75, 256x128 of the Sen1Floods11 VV held-out rows, a 80x30 hole)")
        add("")
        add("| case | written | nodata kept exactly | non-finite decoded valid pixels | decoded valid range | original valid range | error |")
        add("|---|---|---|---|---|---|---|")
        for c in results["nodata_checks"]:
            rng = lambda r: f"{r[0]:.2f}..{r[1]:.2f}" if r else ""  # noqa: E731
            add(f"| {c['case']} | {c['written']} | {c.get('nodata_kept', '')} | {c.get('valid_nonfinite', '')} | "
                f"{rng(c.get('valid_dec_range'))} | {rng(c.get('valid_orig_range'))} | "
                f"{(c.get('error') or '').replace('|', '/')} |")
        add("")

    # MS tables
    add("## 2. Multispectral")
    add("")
    for key, entry in results["ms"].items():
        add(f"### {key}")
        add("")
        add(f"{entry['description']}.")
        add("")
        add("| codec | setting | n | file bpp | NSAT payload bpp | payload bpp less KLT side info | CR (file) | "
            "CR (payload) | PSNR peak 65535 | PSNR peak max | SSIM | file bytes | transform in file |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for codec in MS_CODECS:
            for p in sorted((p for p in entry["points"] if p["codec"] == codec), key=lambda p: p["setting"]):
                add(f"| {codec} | {p['setting']} | {p['n']}{'' if p['complete'] else ' (incomplete)'} | "
                    f"{fmt(p['file_bpp'])} | {fmt(p.get('payload_bpp'))} | {fmt(p.get('payload_bpp_ex_klt'))} | "
                    f"{fmt(p['cr_file'], 1)} | "
                    f"{fmt(p.get('cr_payload'), 1)} | {fmt(p['psnr_65535'], 2)} | {fmt(p['psnr_max'], 2)} | "
                    f"{fmt(p['ssim'], 4)} | {fmt(p['file_bytes'], 0)} | {p.get('spectral_transform', '')} |")
        add("")
    add("### BD-rate, multispectral (bpp vs PSNR with peak = image max)")
    add("")
    add("| dataset | test vs anchor | rates | BD-rate (Pareto) | overlap dB (Pareto) | dropped (anchor, test) | BD-rate (all points) | overlap dB (all) | note |")
    add("|---|---|---|---|---|---|---|---|---|")
    for row in results["bd_rate"]:
        if row["dataset"] not in results["ms"]:
            continue
        rates = f"{row['test_rate'].replace('_bpp', '')} / {row['anchor_rate'].replace('_bpp', '')}"
        note = "; ".join(bd_notes(row))
        add(f"| {row['dataset']} | {row['label']} | {rates} | {bd_text(row['bd_pareto'])} | {overlap_text(row['info_pareto'])} | "
            f"{row['pareto_dropped'][0]}, {row['pareto_dropped'][1]} | {bd_all_text(row)} | {overlap_text(row['info_all'])} | "
            f"{note} |")
    add("")
    add("'rates' = the rate of the tested codec / of the anchor: payload uses the NSAT tile payload "
        "(no header) and favours NSAT against JP2OpenJPEG, whose file bytes include its own headers. "
        "payload_ex_klt = the KLT payload less the stored transform (bands x bands int8 weights + 1 per "
        "tile, from codecs/learned/spectral_transform.h; computed, not read from the file): what the "
        "KLT would give if its side information were free.")
    add("")
    add(f"### At compression ratio {CR_TARGET:.0f}")
    add("")
    add("| dataset | codec | CR basis | nearest setting | its CR | SSIM there | PSNR (max) there | SSIM interpolated at CR 20 | CR range measured |")
    add("|---|---|---|---|---|---|---|---|---|")
    for row in results["cr20"]:
        add(f"| {row['dataset']} | {row['codec']} | {row['basis'].replace('cr_', '')} | {row['setting']} | "
            f"{fmt(row['cr'], 1)} | {fmt(row['ssim'], 4)} | {fmt(row['psnr_max'], 2)} | "
            f"{fmt(row['ssim_at_20'], 4) if row['ssim_at_20'] is not None else 'not bracketed'} | "
            f"{fmt(row['cr_range'][0], 1)}..{fmt(row['cr_range'][1], 1)} |")
    add("")
    add("## Reading")
    add("")
    for paragraph in reading(results):
        add(f"- {paragraph}")
    add("")
    add("## Failures")
    add("")
    if FAILURES:
        for (dataset, codec, setting), entry in FAILURES.items():
            message = entry["message"].replace("\n", " ").replace("|", "/")
            add(f"- {dataset}, {codec}, {setting}: {entry['count']} failure(s). First error: `{message}`")
    else:
        add("- No point failed.")
    add("")
    add(f"Plots: {', '.join(meta.get('plots', []))}. Raw points: results.json.")
    add("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def reading(results):
    """Short, data-driven statements (kept factual; the numbers are in the tables)."""
    out = []
    models = results["models"]
    for role, model in models.items():
        if model.get("status") and "of" in str(model.get("status")):
            out.append(f"{role} model `{model['id']}`: card status \"{model['status']}\".")
    bd = results["bd_rate"]

    def pick(dataset_in, test, anchor, rate, kind="bd_pareto"):
        return [r for r in bd if r["dataset"] in dataset_in and r["test"] == test and r["anchor"] == anchor
                and r["test_rate"] == rate]
    sar = results["sar"]
    if sar:
        for anchor in (JP2, LERC, LERC_ZSTD):
            rows = pick(sar, MR, anchor, "file_bpp")
            values = [r["bd_pareto"] for r in rows if r["bd_pareto"] is not None]
            empty = [r["dataset"] for r in rows if r["bd_pareto"] is None]
            text = f"SAR, MULTIRATE vs {anchor} (file bpp, Pareto points): "
            text += (f"BD-rate from {min(values):+.0f} % to {max(values):+.0f} % over {len(values)} plane(s)"
                     if values else "no BD-rate")
            narrow = [r["dataset"] for r in rows if r["bd_pareto"] is not None and r["narrow_pareto"]]
            if narrow:
                text += f"; overlap under {NARROW_OVERLAP_DB:g} dB on {', '.join(narrow)}"
            if empty:
                text += f"; no PSNR overlap (or too few points) on {', '.join(empty)}"
            out.append(text + ".")
        nonmono = sorted({r["dataset"] for r in bd if r["dataset"] in sar and r["test"] == MR and not r["monotone_test"]})
        if nonmono:
            out.append(f"The MULTIRATE SAR curve is not monotone (more bits, lower PSNR somewhere) on "
                       f"{', '.join(nonmono)}: raising QUALITY does not always improve the result with this model.")
        best = {}
        for key, plane in sar.items():
            pts = [p for p in plane["points"] if p["codec"] == MR and p["psnr"] is not None]
            if pts:
                top = max(pts, key=lambda p: p["psnr"])
                best[key] = top
        if best:
            out.append("Best MULTIRATE point per plane (PSNR dB / RMSE dB at file bpp): " + "; ".join(
                f"{k} {p['psnr']:.1f} / {p['rmse_db']:.2f} at {p['file_bpp']:.2f} (QUALITY {p['setting']})"
                for k, p in best.items()) + ".")
        spans = {}
        for codec in SAR_CODECS:
            widths = []
            for plane in sar.values():
                ps = [p["psnr"] for p in plane["points"] if p["codec"] == codec and math.isfinite(p["psnr"])]
                if ps:
                    widths.append((min(ps), max(ps)))
            if widths:
                spans[codec] = widths
        if MR in spans:
            text = "; ".join(f"{codec} {np.mean([w[0] for w in v]):.1f}..{np.mean([w[1] for w in v]):.1f} dB"
                             for codec, v in spans.items())
            out.append("PSNR reached per plane (mean over planes of the lowest..highest point): " + text +
                       ". BD-rates only measure the overlap of these ranges; outside it nothing is compared.")
        wins = total = 0
        for plane in sar.values():
            jp2 = [p for p in plane["points"] if p["codec"] == JP2]
            for p in (p for p in plane["points"] if p["codec"] == MR):
                if not jp2 or p.get("mean32_mae_db") is None:
                    continue
                q = min(jp2, key=lambda j: abs(math.log(j["file_bpp"] / p["file_bpp"])))
                if q.get("mean32_mae_db") is None:
                    continue
                total += 1
                wins += p["mean32_mae_db"] < q["mean32_mae_db"]
        if total:
            out.append(f"Mean backscatter (32x32 windows): at the JP2OpenJPEG point of nearest file rate, "
                       f"MULTIRATE has the smaller window-mean error in {wins} of {total} points.")
        parts = []
        for codec in SAR_CODECS:
            ratios = [p["enl_dec"] / plane["enl_orig"] for plane in sar.values() for p in plane["points"]
                      if p["codec"] == codec and p.get("enl_dec") is not None and plane.get("enl_orig")]
            if ratios:
                parts.append(f"{codec} {min(ratios):.2f}x..{max(ratios):.2f}x")
        if parts:
            out.append("Speckle, ENL decoded / ENL original over all points (above 1: speckle smoothed "
                       "away, below 1: noise added): " + "; ".join(parts) + ".")
        out_range = [(k, p) for k, plane in sar.items() for p in plane["points"]
                     if p["codec"] == MR and p["outside_range_by_1db"] > 0]
        if out_range:
            out.append(f"MULTIRATE decodes values more than 1 dB outside the original plane's range at "
                       f"{len(out_range)} point(s) (see 'outside orig range'): the decoder does not clamp a "
                       "Float32 tile to the min..max it was coded from.")
    ms = results["ms"]
    for key in ms:
        for test, anchor in ((MR_KLT, JP2), (MR_KLT, MR_NONE), (MR_NONE, JP2)):
            for rate in ("file_bpp", "payload_bpp", "payload_bpp_ex_klt"):
                rows = pick([key], test, anchor, rate)
                if rows:
                    r = rows[0]
                    why = r["info_pareto"].get("why")
                    extra = f"; overlap only {overlap_text(r['info_pareto'])} dB" if r["narrow_pareto"] else ""
                    out.append(f"{key}: {test} vs {anchor} ({rate.replace('_bpp', '')} rate): "
                               f"BD-rate {bd_text(r['bd_pareto'])}" + extra
                               + (f" - {why}" if why else "") + ".")
        spans = []
        for codec in MS_CODECS:
            ps = [p["psnr_max"] for p in ms[key]["points"] if p["codec"] == codec and p["psnr_max"] is not None]
            ss = [p["ssim"] for p in ms[key]["points"] if p["codec"] == codec and p["ssim"] is not None]
            if ps:
                spans.append(f"{codec} {min(ps):.1f}..{max(ps):.1f} dB, SSIM {min(ss):.3f}..{max(ss):.3f}")
        if spans:
            out.append(f"{key}: PSNR (peak max) reached: " + "; ".join(spans) + ".")
        klt = [p for p in ms[key]["points"] if p["codec"] == MR_KLT and p.get("klt_side_bytes") and p.get("payload_bytes")]
        if klt:
            side = np.mean([p["klt_side_bytes"] for p in klt])
            share = np.mean([p["klt_side_bytes"] / p["payload_bytes"] for p in klt])
            out.append(f"{key}: the stored KLT (int8 weights) is {side:.0f} bytes per image, "
                       f"{share * 100:.0f} % of the KLT payload on average.")
        for codec in (MR_KLT, MR_NONE):
            pts = [p for p in ms[key]["points"] if p["codec"] == codec and p.get("payload_bytes")]
            if pts:
                header = np.mean([p["file_bytes"] - p["payload_bytes"] for p in pts])
                share = np.mean([(p["file_bytes"] - p["payload_bytes"]) / p["file_bytes"] for p in pts])
                out.append(f"{key}, {codec}: file bytes - payload bytes = {header:.0f} bytes on average "
                           f"({share * 100:.0f} % of the file).")
    return out


# ---------------------------------------------------------------------------------------------

def cleanup_vsimem():
    for name in gdal.ReadDirRecursive(VSI) or []:
        if not name.endswith("/"):
            gdal.Unlink(f"{VSI}/{name}")


def main():
    out = os.path.abspath(ARGS.out)
    os.makedirs(out, exist_ok=True)
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit(f"NSAT driver not found (GDAL_DRIVER_PATH={os.environ.get('GDAL_DRIVER_PATH')})")
    start = time.perf_counter()
    results = dict(meta=dict(
        **bench_common.run_metadata(),
        quick=ARGS.quick, threads=ARGS.threads,
        settings={k: dict(values=settings(k), label=v[2]) for k, v in SETTINGS.items()},
        sections_s={}),
        models=dict(SAR=model_card(ARGS.sar_model), multispectral=model_card(ARGS.ms_model)),
        sar={}, ms={})
    try:
        for name, function in (("sar", run_sar), ("nodata_checks", nodata_checks),
                               ("eurosat_ms", run_eurosat), ("s2_4band", run_s2)):
            t0 = time.perf_counter()
            try:
                function(results)
            except Exception as error:  # noqa: BLE001
                record_failure(name, "section", "-", f"{type(error).__name__}: {error}")
            results["meta"]["sections_s"][name] = time.perf_counter() - t0
            log(f"{name}: {results['meta']['sections_s'][name]:.0f} s")
    finally:
        cleanup_vsimem()
    compute_bd(results)
    cr20(results)
    results["meta"]["elapsed_s"] = time.perf_counter() - start
    results["failures"] = [dict(dataset=k[0], codec=k[1], setting=k[2], **v) for k, v in FAILURES.items()]
    results["model_sha256_in_files"] = {k: sorted(s for s in v if s) for k, v in MODEL_SHAS_SEEN.items()}
    bench_common.save_results(results, out, plot, write_report, bm.jsonable)


if __name__ == "__main__":
    main()
