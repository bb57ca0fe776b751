#!/usr/bin/python3
"""Benchmark of NSAT CODEC=VQ (vector-quantised codebook indices, rANS-coded under a context
model) against NSAT CODEC=MULTIRATE and GDAL's JP2OpenJPEG, on the held-out test images of the
VQ models.

Why: the VQ issue sets a floor, "at CR 20 on 16-bit 4-band: SSIM >= 0.962 and above
JP2OpenJPEG's at the same CR", and asks what the entropy coder saves over fixed-length
indices and how fast VQ decodes next to MULTIRATE. This script measures all three in one run.

Datasets (images from scripts/learned/datasets.py, vq_test_images; numpy arrays, coded without
georeferencing, one file per image, NSAT default BLOCKSIZE 256, so one tile per image)
  s2_rgbn16   source s2-rgbn: the 24 EuroSAT MS test chips, B2, B3, B4, B8, 4 x UInt16 64x64;
              VQ model vq-rgbn16-v1. PSNR peak 65535, fixed-range SSIM range 10000.
  rgb8        source rgb8: 200 EuroSAT RGB test images, 3 x Byte 64x64; VQ model vq-rgb8-v2.
              PSNR peak 255, fixed-range SSIM range 255.
  naip_rgbn8  source rgbn8: 128x128 crops of the held-out NAIP columns (>= 700), 4 x Byte;
              VQ model vq-rgbn8-v1. Same peaks as rgb8.
  naip_strip  the whole held-out strip naip[:, :, 700:] of
              geotiff/opengeos_naip/m_4709963_se_14_1_20090818.tif (bands 1-4) as one image,
              BLOCKSIZE=256; VQ model vq-rgbn8-v1.
  A dataset whose VQ model is not installed is skipped, with a note in the report.

Codecs (every file written with gdal.Translate to /vsimem/, reopened, ReadAsArray, deleted)
  VQ           -co CODEC=VQ -co MODEL=<id> -co LEVELS=1|2|3 -co OVERVIEWS=NONE
  MULTIRATE    -co CODEC=MULTIRATE -co QUALITY=q -co OVERVIEWS=NONE (its default model per
               data type; 4-band 16-bit gets the KLT automatically)
  JP2OpenJPEG  -co QUALITY=r -co REVERSIBLE=NO -co GMLJP2=NO -co RESOLUTIONS=k (r = % of the
               raw size; k = floor(log2(min side)) - 2, between 1 and 6: 4 for 64 px chips)

Metrics per image, averaged per setting (mean of per-image values; CR = raw bytes total / file
bytes total): compression ratio on the whole file; PSNR over all bands (peak = the type's max,
255 or 65535); SSIM own-range (image_metrics.ssim_bands: per band, data range = that band's
max - min in the original); SSIM fixed-range (image_metrics.ssim_fixed_range, range 10000 for
Sentinel-2 reflectance, 255 for Byte, mean over bands). Every curve is interpolated at CR 20
and CR 32 (linear in log CR between the bracketing settings; "out of range" otherwise).

Entropy coding saving (VQ files): fixed-length bits of a file = sum over its tiles of
ceil(w/4) x ceil(h/4) latent positions x levels x groups x log2(entries) x band groups (from the
model's card.json); saving = 1 - payload bits / fixed bits, payload bits = NSAT_BITS_PER_PIXEL x
pixels (tiles only, no header), and the same with the whole file's bits.

Decode speed: 512x512 mosaics of the 64 px test images (8 x 8, images cycled when there are
fewer than 64) and the NAIP strip, written to a real temporary folder as VQ LEVELS=2,
MULTIRATE QUALITY=75 and JP2OpenJPEG at VQ's file size; one warm-up decode, then --speed-repeats
times: open, time ReadAsArray, close; median, as ms per megapixel.

Usage, from the repository root (one process, one thread: the machine may be shared):
    /usr/bin/python3 scripts/bench_vq.py [--models-dir DIR] [--plugin-dir build]
        [--data ../shared/data] [--out scripts/results/vq] [--limit N] [--threads 1]

Outputs in --out: report.md, results.json, rd_<dataset>.png.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")),
                        help="data folder (default: ../shared/data from the repository root)")
    parser.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "vq"),
                        help="output folder (default: scripts/results/vq)")
    parser.add_argument("--models-dir", default=None,
                        help="sets NSAT_MODELS_DIR (default: unset, i.e. the repository's models/)")
    parser.add_argument("--plugin-dir", default=os.path.join(REPO, "build"),
                        help="folder holding gdal_NSAT.so, used as GDAL_DRIVER_PATH (default: build/)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N images per dataset (default: all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="NSAT NUM_THREADS, JP2OpenJPEG NUM_THREADS and GDAL_NUM_THREADS (default 1)")
    parser.add_argument("--speed-repeats", type=int, default=5,
                        help="timed decodes per file in the speed test, median reported (default 5)")
    return parser.parse_args()


ARGS = parse_args()
# The environment must be set before osgeo is imported: GDAL scans GDAL_DRIVER_PATH once, and
# the plugin reads NSAT_MODELS_DIR when it loads a model.
if ARGS.models_dir:
    os.environ["NSAT_MODELS_DIR"] = os.path.abspath(ARGS.models_dir)
else:
    os.environ.pop("NSAT_MODELS_DIR", None)
os.environ["GDAL_DRIVER_PATH"] = os.path.abspath(ARGS.plugin_dir)
os.environ["GDAL_PAM_ENABLED"] = "NO"
os.environ["GDAL_NUM_THREADS"] = str(ARGS.threads)

sys.path.insert(0, SCRIPTS)
sys.path.insert(0, os.path.join(SCRIPTS, "learned"))
import bench_common  # noqa: E402

bm = bench_common.bench_multirate_module(ARGS.threads)  # psnr, psnr_at_rate, fmt, jsonable, ...
import datasets  # noqa: E402  (scripts/learned/datasets.py)
import image_metrics  # noqa: E402  (scripts/image_metrics.py)

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
gdal.SetConfigOption("GDAL_NUM_THREADS", str(ARGS.threads))

fmt = bm.fmt
VSI = "/vsimem/bench_vq"
VQ, MR, JP2 = "VQ", "MULTIRATE", "JP2OpenJPEG"
CODECS = [VQ, MR, JP2]
SETTINGS = {
    VQ: ([1, 2, 3], "LEVELS"),
    MR: ([10, 30, 50, 75, 90, 100], "QUALITY"),
    JP2: ([0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6.5, 8, 10, 12.5], "QUALITY (% of the raw size)"),
}
CR_TARGETS = (20.0, 32.0)
FLOOR = dict(dataset="s2_rgbn16", cr=20.0, ssim=0.962)   # the floor
SPEED_VQ_LEVELS = 2
SPEED_MR_QUALITY = 75
MOSAIC_GRID = 8          # 8 x 8 images of 64 px: 512 x 512
STRIP_BLOCKSIZE = 256

DATASETS = {
    "s2_rgbn16": dict(source="s2-rgbn", model="vq-rgbn16-v1", peak=65535.0, fixed_range=10000.0,
                      description="Sentinel-2 B2, B3, B4, B8 (EuroSAT MS test chips), 4 x UInt16 64x64"),
    "rgb8": dict(source="rgb8", model="vq-rgb8-v2", peak=255.0, fixed_range=255.0,
                 description="EuroSAT RGB test images, 3 x Byte 64x64"),
    "naip_rgbn8": dict(source="rgbn8", model="vq-rgbn8-v1", peak=255.0, fixed_range=255.0,
                       description="NAIP 4-band (RGB + NIR) Byte, 128x128 crops of the held-out "
                                   f"columns >= {datasets.VQ_NAIP_TEST_COLUMN}"),
    "naip_strip": dict(source=None, model="vq-rgbn8-v1", peak=255.0, fixed_range=255.0,
                       blocksize=STRIP_BLOCKSIZE,
                       description="NAIP 4-band Byte, the whole held-out strip (columns >= "
                                   f"{datasets.VQ_NAIP_TEST_COLUMN}) as one image, BLOCKSIZE=256"),
}


log = bench_common.log


FAILURES = {}   # (dataset, codec, setting) -> {"count", "message"}
SKIPS = []      # {"dataset", "reason"}
MODELS_SEEN = {}  # model id -> set of card sha256 named by the written files (NSAT_MODELS)


def record_failure(dataset, codec, setting, message):
    bench_common.record_failure(FAILURES, dataset, codec, setting, message)


# ---------------------------------------------------------------------------------------------
# Models.

def model_roots():
    """The plugin's model search path (codecs/learned/model_store.cpp): NSAT_MODELS_DIR, the
    source tree's models/, the installed models."""
    roots = [os.environ["NSAT_MODELS_DIR"]] if os.environ.get("NSAT_MODELS_DIR") else []
    return roots + [os.path.join(REPO, "models"), "/usr/local/share/nsat/models"]


def find_card(model_id):
    """dict(path, sha256, card) of the first card.json the plugin would use, or None."""
    for root in model_roots():
        path = os.path.join(root, model_id, "card.json")
        if os.path.isdir(os.path.join(root, model_id)) and os.path.exists(path):
            with open(path) as f:
                card = json.load(f)
            return dict(path=path, sha256=bench_common.file_sha256(path), card=card)
    return None


def probe_model(model_id, dtype, bands):
    """None when the plugin codes a small image with this VQ model, else the reason it cannot."""
    src = gdal.GetDriverByName("MEM").Create("", 16, 16, bands, dtype)
    path = f"{VSI}/probe.nsat"
    try:
        gdal.Translate(path, src, format="NSAT",
                       creationOptions=["CODEC=VQ", f"MODEL={model_id}", "LEVELS=1", "OVERVIEWS=NONE",
                                        "NUM_THREADS=1"])
        return None
    except RuntimeError as error:
        return str(error).strip()
    finally:
        if gdal.VSIStatL(path) is not None:
            gdal.Unlink(path)


def note_models(meta):
    """Collects the model ids and card sha256 a written NSAT file names."""
    for item in (meta.get("NSAT_MODELS") or "").split(","):
        if ":" in item:
            model_id, sha = item.split(":", 1)
            MODELS_SEEN.setdefault(model_id, set()).add(sha)


# ---------------------------------------------------------------------------------------------
# Encode / decode.

def jp2_resolutions(width, height):
    return max(1, min(6, int(math.floor(math.log2(min(width, height)))) - 2))


def creation_options(codec, setting, model=None, blocksize=None, width=64, height=64):
    if codec == VQ:
        options = ["CODEC=VQ", f"MODEL={model}", f"LEVELS={setting}", "OVERVIEWS=NONE",
                   f"NUM_THREADS={ARGS.threads}"]
    elif codec == MR:
        options = ["CODEC=MULTIRATE", f"QUALITY={setting}", "OVERVIEWS=NONE", f"NUM_THREADS={ARGS.threads}"]
    else:
        options = [f"QUALITY={setting}", "REVERSIBLE=NO", "GMLJP2=NO",
                   f"RESOLUTIONS={jp2_resolutions(width, height)}"]
        if bm.driver_has_option(JP2, "NUM_THREADS"):
            options.append(f"NUM_THREADS={ARGS.threads}")
        return options
    if blocksize:
        options.append(f"BLOCKSIZE={blocksize}")
    return options


def driver_of(codec):
    return (JP2, ".jp2") if codec == JP2 else ("NSAT", ".nsat")


def mem_dataset(array):
    """A MEM dataset holding a (bands, H, W) uint8 / uint16 array."""
    dtype = {np.dtype(np.uint8): gdal.GDT_Byte, np.dtype(np.uint16): gdal.GDT_UInt16}[array.dtype]
    bands, height, width = array.shape
    ds = gdal.GetDriverByName("MEM").Create("", width, height, bands, dtype)
    for b in range(bands):
        ds.GetRasterBand(b + 1).WriteArray(array[b])
    return ds


def round_trip(src, codec, options):
    """Encodes src to /vsimem/, reopens and decodes it, deletes it.
    Returns dict(size, array (bands, H, W), meta = NSAT IMAGE_STRUCTURE metadata or {})."""
    driver, ext = driver_of(codec)
    path = f"{VSI}/rt{ext}"
    try:
        out = gdal.Translate(path, src, format=driver, creationOptions=options)
        if out is None:
            raise RuntimeError(gdal.GetLastErrorMsg() or "gdal.Translate returned None")
        out = None
        size = gdal.VSIStatL(path).size
        ds = gdal.Open(path)
        array = ds.ReadAsArray()
        meta = (ds.GetMetadata("IMAGE_STRUCTURE") or {}) if driver == "NSAT" else {}
        ds = None
    finally:
        if gdal.VSIStatL(path) is not None:
            gdal.Unlink(path)
    if array.ndim == 2:
        array = array[np.newaxis]
    if meta:
        note_models(meta)
    return dict(size=size, array=array, meta=meta)


# ---------------------------------------------------------------------------------------------
# Metrics.

def fixed_length_bits(width, height, blocksize, levels, card):
    """Bits of the same VQ indices stored fixed-length: per tile (edge tiles are cropped,
    container/header.cpp) ceil(w/s) x ceil(h/s) positions x levels x groups x log2(entries) x
    band groups, s = the model's downsampling."""
    arch = card["architecture"]
    s = int(arch.get("downsampling", 4))
    per_position = levels * int(arch["groups"]) * math.log2(int(arch["entries"]))
    positions = 0
    for y in range(0, height, blocksize):
        for x in range(0, width, blocksize):
            w, h = min(blocksize, width - x), min(blocksize, height - y)
            positions += math.ceil(w / s) * math.ceil(h / s)
    return positions, positions * per_position


def measure(reference, rt, spec):
    decoded = rt["array"]
    if decoded.shape != reference.shape:
        raise RuntimeError(f"decoded shape {decoded.shape} differs from source {reference.shape}")
    valid = np.ones(reference.shape[1:], dtype=bool)
    return dict(file_bytes=int(rt["size"]), raw_bytes=int(reference.nbytes),
                psnr=bm.psnr(reference, decoded, valid, spec["peak"]),
                ssim_own=image_metrics.ssim_bands(reference, decoded),
                ssim_fixed=image_metrics.ssim_fixed_range(reference, decoded, spec["fixed_range"]))


def vq_extra(point, rt, reference, level, blocksize, card):
    """Payload bits, fixed-length bits and model of a VQ file."""
    bands, height, width = reference.shape
    value = rt["meta"].get("NSAT_BITS_PER_PIXEL")
    point["payload_bits"] = float(value) * width * height if value not in (None, "") else None
    point["model"] = rt["meta"].get("NSAT_MODELS")
    if card is not None:
        band_groups = bands // int(card["architecture"]["bands"])
        positions, bits = fixed_length_bits(width, height, blocksize, level, card)
        point["positions"] = positions * band_groups
        point["fixed_bits"] = bits * band_groups


# ---------------------------------------------------------------------------------------------
# Datasets.

def naip_strip(data):
    path = os.path.join(data, datasets.NAIP_TRAIN)
    ds = gdal.Open(path)
    array = np.stack([ds.GetRasterBand(b).ReadAsArray() for b in (1, 2, 3, 4)])
    ds = None
    return [np.ascontiguousarray(array[:, :, datasets.VQ_NAIP_TEST_COLUMN:])]


def load_images(key):
    spec = DATASETS[key]
    images = naip_strip(ARGS.data) if spec["source"] is None else datasets.vq_test_images(ARGS.data, spec["source"])
    images = [np.ascontiguousarray(im) for im in images]
    return images[:ARGS.limit] if ARGS.limit else images


def jobs(max_levels):
    out = []
    for codec in CODECS:
        for setting in SETTINGS[codec][0]:
            if codec == VQ and setting > max_levels:
                continue
            out.append((codec, setting))
    return out


def run_dataset(results, key):
    spec = DATASETS[key]
    images = load_images(key)
    entry = dict(description=spec["description"], model=spec["model"], images=len(images),
                 peak=spec["peak"], fixed_range=spec["fixed_range"], per_image=[], points=[])
    results["datasets"][key] = entry
    if not images:
        entry["skipped"] = "no images"
        SKIPS.append(dict(dataset=key, reason="no images"))
        return
    bands, height, width = images[0].shape
    dtype = gdal.GDT_Byte if images[0].dtype == np.uint8 else gdal.GDT_UInt16
    entry.update(bands=bands, dtype=gdal.GetDataTypeName(dtype), size=[width, height])
    reason = probe_model(spec["model"], dtype, bands)
    if reason:
        entry["skipped"] = f"VQ model {spec['model']} unavailable: {reason}"
        SKIPS.append(dict(dataset=key, reason=entry["skipped"]))
        log(f"{key}: skipped ({entry['skipped']})")
        return
    card = find_card(spec["model"])
    entry["card"] = None if card is None else dict(path=card["path"], sha256=card["sha256"])
    max_levels = int(card["card"]["architecture"].get("levels", 3)) if card else 3
    blocksize = spec.get("blocksize", 256)
    log(f"{key}: {len(images)} images {bands} x {entry['dtype']} {width}x{height}, model {spec['model']}")
    t0 = time.perf_counter()
    for index, image in enumerate(images):
        src = mem_dataset(image)
        h, w = image.shape[1:]
        for codec, setting in jobs(max_levels):
            options = creation_options(codec, setting, spec["model"], spec.get("blocksize"), w, h)
            try:
                rt = round_trip(src, codec, options)
                point = measure(image, rt, spec)
            except Exception as error:  # noqa: BLE001 - a failing point is logged, not fatal
                record_failure(key, codec, setting, f"{type(error).__name__}: {str(error).strip()}")
                continue
            point.update(image=index, codec=codec, setting=setting)
            if codec == VQ:
                vq_extra(point, rt, image, setting, blocksize, card["card"] if card else None)
            elif codec == MR:
                point["model"] = rt["meta"].get("NSAT_MODELS")
            entry["per_image"].append(point)
        src = None
        if (index + 1) % 25 == 0 or index + 1 == len(images):
            log(f"  {index + 1}/{len(images)} images, {time.perf_counter() - t0:.0f} s")
    entry["points"] = average_points(entry["per_image"], len(images))
    entry["at_cr"] = interpolate_all(entry["points"])
    for p in entry["points"]:
        log(f"  {p['codec']:12s} {p['setting']:>5} CR {fmt(p['cr'], 1):>6}  PSNR {fmt(p['psnr'], 2)}  "
            f"SSIM own {fmt(p['ssim_own'], 4)}  fixed {fmt(p['ssim_fixed'], 4)}")


def average_points(per_image, images):
    points = []
    for codec in CODECS:
        for setting in SETTINGS[codec][0]:
            rows = [r for r in per_image if r["codec"] == codec and r["setting"] == setting]
            if not rows:
                continue
            raw = sum(r["raw_bytes"] for r in rows)
            point = dict(codec=codec, setting=setting, n=len(rows), complete=len(rows) == images,
                         cr=raw / sum(r["file_bytes"] for r in rows),
                         file_bytes=float(np.mean([r["file_bytes"] for r in rows])))
            for key in ("psnr", "ssim_own", "ssim_fixed"):
                values = [r[key] for r in rows if math.isfinite(r[key])]
                point[key] = float(np.mean(values)) if values else None
            models = sorted({r["model"] for r in rows if r.get("model")})
            point["model"] = ",".join(models) or None
            if codec == VQ and all(r.get("payload_bits") for r in rows):
                payload = sum(r["payload_bits"] for r in rows)
                point["cr_payload"] = raw * 8.0 / payload
                if all(r.get("fixed_bits") for r in rows):
                    fixed = sum(r["fixed_bits"] for r in rows)
                    positions = sum(r["positions"] for r in rows)
                    file_bits = 8.0 * sum(r["file_bytes"] for r in rows)
                    point["header_bytes"] = (file_bits - payload) / 8.0 / len(rows)
                    point.update(fixed_bits_per_position=fixed / positions,
                                 payload_bits_per_position=payload / positions,
                                 file_bits_per_position=file_bits / positions,
                                 saving_payload=1.0 - payload / fixed, saving_file=1.0 - file_bits / fixed,
                                 cr_fixed=raw * 8.0 / fixed)
            points.append(point)
    return points


# ---------------------------------------------------------------------------------------------
# Curves at CR 20 / 32.

def at_cr(points, metric, target):
    """A metric of one codec's curve at compression ratio `target`, linear in log CR between
    the two settings around it (bench_multirate.psnr_at_rate on (CR, metric) pairs)."""
    pairs = [(p["cr"], p[metric]) for p in points if p.get(metric) is not None]
    found = bm.psnr_at_rate(pairs, target)
    return dict(value=found["psnr"], where=found["where"], cr_min=found["min_rate"], cr_max=found["max_rate"])


def interpolate_all(points):
    table = {}
    for codec in CODECS:
        curve = [p for p in points if p["codec"] == codec and p["complete"]]
        if not curve:
            continue
        for target in CR_TARGETS:
            table[f"{codec}@{target:g}"] = dict(
                codec=codec, cr=target,
                **{metric: at_cr(curve, metric, target) for metric in ("ssim_own", "ssim_fixed", "psnr")})
    return table


def floor_check(results):
    """The issue's floor on the 16-bit 4-band set, for each SSIM definition."""
    entry = results["datasets"].get(FLOOR["dataset"]) or {}
    table = entry.get("at_cr") or {}
    vq = table.get(f"{VQ}@{FLOOR['cr']:g}")
    jp2 = table.get(f"{JP2}@{FLOOR['cr']:g}")
    checks = []
    for metric in ("ssim_own", "ssim_fixed"):
        row = dict(metric=metric, vq=None, jp2=None, met=None, why="")
        if vq is None or jp2 is None:
            row["why"] = "dataset not measured"
        else:
            row["vq"], row["jp2"] = vq[metric]["value"], jp2[metric]["value"]
            if row["vq"] is None:
                row.update(met=False, why=f"VQ's curve does not bracket CR {FLOOR['cr']:g} "
                                          f"(CR {fmt(vq[metric]['cr_min'], 1)}..{fmt(vq[metric]['cr_max'], 1)})")
            elif row["jp2"] is None:
                row.update(met=row["vq"] >= FLOOR["ssim"],
                           why="JP2OpenJPEG's curve does not bracket the CR; only the absolute floor checked")
            else:
                row["met"] = row["vq"] >= FLOOR["ssim"] and row["vq"] > row["jp2"]
        checks.append(row)
    results["floor"] = dict(FLOOR, checks=checks)


# ---------------------------------------------------------------------------------------------
# Decode speed.

def mosaic(images, grid=MOSAIC_GRID):
    """A grid x grid mosaic of equally sized images (cycled when there are fewer)."""
    rows = []
    for r in range(grid):
        rows.append(np.concatenate([images[(r * grid + c) % len(images)] for c in range(grid)], axis=2))
    return np.ascontiguousarray(np.concatenate(rows, axis=1))


def speed_images(results):
    """(key, description, array, VQ model, blocksize) for the decode-speed test."""
    out = []
    for key in ("s2_rgbn16", "rgb8"):
        entry = results["datasets"].get(key)
        if not entry or entry.get("skipped"):
            continue
        images = load_images(key)
        n = min(len(images), MOSAIC_GRID * MOSAIC_GRID)
        out.append((f"{key}_mosaic", f"{MOSAIC_GRID}x{MOSAIC_GRID} mosaic of {n} distinct "
                    f"{DATASETS[key]['description']}", mosaic(images), DATASETS[key]["model"], None))
    entry = results["datasets"].get("naip_strip")
    if entry and not entry.get("skipped"):
        out.append(("naip_strip", DATASETS["naip_strip"]["description"], naip_strip(ARGS.data)[0],
                    DATASETS["naip_strip"]["model"], STRIP_BLOCKSIZE))
    return out


def timed_decodes(path, repeats):
    """Warm-up open + ReadAsArray, then `repeats` x (open, timed ReadAsArray, close).
    Returns (median read s, median open s)."""
    ds = gdal.Open(path)
    ds.ReadAsArray()
    ds = None
    reads, opens = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds = gdal.Open(path)
        t1 = time.perf_counter()
        ds.ReadAsArray()
        t2 = time.perf_counter()
        ds = None
        opens.append(t1 - t0)
        reads.append(t2 - t1)
    return statistics.median(reads), statistics.median(opens)


def run_speed(results, workdir):
    rows = []
    results["speed"] = rows
    for key, description, array, model, blocksize in speed_images(results):
        src = mem_dataset(array)
        bands, height, width = array.shape
        log(f"speed {key}: {width}x{height} x {bands}")
        vq_quality = None
        for codec in CODECS:
            if codec == VQ:
                setting = SPEED_VQ_LEVELS
            elif codec == MR:
                setting = SPEED_MR_QUALITY
            else:
                if vq_quality is None:
                    continue
                setting = vq_quality
            driver, ext = driver_of(codec)
            path = os.path.join(workdir, f"speed_{key}{ext}")
            try:
                t0 = time.perf_counter()
                gdal.Translate(path, src, format=driver,
                               creationOptions=creation_options(codec, setting, model, blocksize, width, height))
                encode_s = time.perf_counter() - t0
                size = os.path.getsize(path)
                read_s, open_s = timed_decodes(path, ARGS.speed_repeats)
            except Exception as error:  # noqa: BLE001
                record_failure(f"speed {key}", codec, setting, f"{type(error).__name__}: {str(error).strip()}")
                continue
            if codec == VQ:
                # JP2OpenJPEG at VQ's file size (QUALITY = % of the raw size).
                vq_quality = round(100.0 * size / array.nbytes, 3)
            megapixels = width * height / 1e6
            row = dict(image=key, description=description, codec=codec, setting=setting, width=width,
                       height=height, bands=bands, file_bytes=size, cr=array.nbytes / size,
                       encode_s=encode_s, read_s=read_s, open_s=open_s,
                       ms_per_mp=1000.0 * read_s / megapixels, repeats=ARGS.speed_repeats)
            rows.append(row)
            log(f"  {codec:12s} {setting}: CR {row['cr']:.1f}, decode {row['ms_per_mp']:.0f} ms/MP "
                f"(open {open_s * 1000:.1f} ms), encode {encode_s:.2f} s")
            os.remove(path)
        src = None
    for key in dict.fromkeys(r["image"] for r in rows):
        by_codec = {r["codec"]: r for r in rows if r["image"] == key}
        if VQ in by_codec and MR in by_codec:
            by_codec[VQ]["ratio_to_multirate"] = by_codec[VQ]["ms_per_mp"] / by_codec[MR]["ms_per_mp"]


# ---------------------------------------------------------------------------------------------
# Plots.

STYLES = {VQ: "o-", MR: "s-", JP2: "d-"}


def plot(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for key, entry in results["datasets"].items():
        if not entry.get("points"):
            continue
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
        for codec in CODECS:
            pts = sorted((p for p in entry["points"] if p["codec"] == codec), key=lambda p: p["cr"])
            if not pts:
                continue
            x = [p["cr"] for p in pts]
            for ax, metric in zip(axes, ("psnr", "ssim_own", "ssim_fixed")):
                ax.plot(x, [np.nan if p[metric] is None else p[metric] for p in pts], STYLES[codec],
                        label=codec, markersize=4)
            if codec == VQ:
                for p in pts:
                    axes[0].annotate(f"L{p['setting']}", (p["cr"], p["psnr"]), fontsize=7,
                                     textcoords="offset points", xytext=(3, 3))
        peak = f"{entry['peak']:.0f}"
        axes[0].set_ylabel(f"PSNR (dB, peak {peak})")
        axes[1].set_ylabel("SSIM, own range per band (ssim_bands)")
        axes[2].set_ylabel(f"SSIM, fixed range {entry['fixed_range']:.0f}")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("compression ratio (raw bytes / file bytes)")
            for target in CR_TARGETS:
                ax.axvline(target, color="k", lw=0.7, ls=":")
            ax.grid(True, alpha=0.3, which="both")
            ax.legend(fontsize=8)
        if key == FLOOR["dataset"]:
            for ax in axes[1:]:
                ax.axhline(FLOOR["ssim"], color="r", lw=0.7, ls="--")
        fig.suptitle(f"{key}: {entry['description']} ({entry['images']} image(s))", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out, f"rd_{key}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Report.

def at_text(cell, digits):
    if cell["value"] is not None:
        return fmt(cell["value"], digits)
    if cell["where"] == "none":
        return "n/a"
    return f"out of range (CR {fmt(cell['cr_min'], 1)}..{fmt(cell['cr_max'], 1)})"


def verdict(met):
    return "n/a" if met is None else ("**met**" if met else "**not met**")


def report_header(results, add):
    meta = results["meta"]
    m = meta["machine"]
    add("# NSAT CODEC=VQ: rate-distortion, entropy coding saving, decode speed")
    add("")
    add(f"- Date: {meta['date']}")
    add(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, SIMD "
        f"{'/'.join(m['simd']) or 'none'}, {m['system']}, Python {m['python']}. Load average at start "
        f"{meta['load_at_start']}, at end {meta['load_at_end']} (shared with other jobs: timings are indicative).")
    add(f"- GDAL {meta['gdal']}, numpy {meta['numpy']}. Plugin: `{meta['plugin']}`. "
        f"NSAT_MODELS_DIR: `{meta['models_dir']}`. Threads: {meta['threads']}.")
    add(f"- Command: `{meta['command']}` (from the repository root). With the final models in models/ and "
        "the plugin in build/: `/usr/bin/python3 scripts/bench_vq.py`.")
    add(f"- Wall time: {meta['elapsed_s']:.0f} s"
        + "".join(f", {k} {v:.0f} s" for k, v in meta["sections_s"].items()) + ".")
    add("")


def report_method(results, add):
    add("## Method")
    add("")
    add("- Images: `scripts/learned/datasets.py` `vq_test_images(data, source)` (the VQ models' hold-outs), "
        "as numpy arrays in MEM datasets (no georeferencing), one file per image, written with `gdal.Translate` to "
        "/vsimem/ (checked: NSAT writes and reads /vsimem/ files, byte-identical to files on disk), reopened, "
        "`ReadAsArray`, deleted.")
    add(f"- VQ: `CODEC=VQ MODEL=<id> LEVELS=1|2|3 OVERVIEWS=NONE NUM_THREADS={ARGS.threads}`. MULTIRATE: "
        f"`CODEC=MULTIRATE QUALITY=q OVERVIEWS=NONE` (q in {SETTINGS[MR][0]}; default model per type, KLT "
        f"automatic on 4-band 16-bit). JP2OpenJPEG: `QUALITY=r REVERSIBLE=NO GMLJP2=NO RESOLUTIONS=k` (r in "
        f"{SETTINGS[JP2][0]} % of the raw size; k = floor(log2(min side)) - 2 in 1..6: 4 for 64 px, 5 for "
        "128 px and the strip).")
    add("- CR = raw sample bytes / whole file bytes, per setting as total raw / total file bytes. PSNR over all "
        "bands with peak = the type's max (255, 65535); SSIM own = `image_metrics.ssim_bands` (per band, range "
        "= that band's max - min in the original, mean over bands); SSIM fixed = `image_metrics.ssim_fixed_range` with "
        "range 10000 (Sentinel-2 reflectance x 10000) or 255 (Byte), mean over bands. Quality values are means "
        "of per-image values.")
    add("- At CR 20 / 32: each curve's value linear in log CR between the two settings around the target; "
        "'out of range' gives the curve's measured CR range.")
    add("")


def report_models(results, add):
    add("## Models")
    add("")
    add("| model | named by files (id:sha256 of card.json) | card.json used for the fixed-length count | its sha256 | match |")
    add("|---|---|---|---|---|")
    for model_id, shas in sorted(results["models_seen"].items()):
        card = find_card(model_id)
        path = card["path"] if card else "not found"
        sha = card["sha256"] if card else "n/a"
        add(f"| `{model_id}` | {', '.join(f'`{s}`' for s in shas)} | `{path}` | `{sha}` | "
            f"{'yes' if card and shas == [card['sha256']] else 'NO'} |")
    add("")
    for key, entry in results["datasets"].items():
        if entry.get("skipped"):
            add(f"- **{key} skipped**: {entry['skipped']}")
    if any(e.get("skipped") for e in results["datasets"].values()):
        add("")


def report_floor(results, add):
    floor = results["floor"]
    add(f"## Floor check (issue): CR {floor['cr']:g} on {floor['dataset']}, SSIM >= {floor['ssim']} and above JP2OpenJPEG's")
    add("")
    add("| SSIM definition | VQ at CR 20 | JP2OpenJPEG at CR 20 | verdict | note |")
    add("|---|---|---|---|---|")
    names = {"ssim_own": "own range per band (ssim_bands)", "ssim_fixed": "fixed range 10000"}
    for row in floor["checks"]:
        add(f"| {names[row['metric']]} | {fmt(row['vq'], 4)} | {fmt(row['jp2'], 4)} | {verdict(row['met'])} | {row['why']} |")
    add("")
    add("Plainly: " + floor_sentence(floor, names))
    add("")


def floor_sentence(floor, names):
    measured = [r for r in floor["checks"] if r["met"] is not None]
    if not measured:
        return "the floor could not be checked (the 16-bit 4-band set was not measured)."
    if all(r["met"] for r in measured):
        head = "the floor is met with both SSIM definitions."
    elif not any(r["met"] for r in measured):
        head = "the floor is NOT met with either SSIM definition."
    else:
        head = "the floor is met with one SSIM definition only."
    details = [f"{names[r['metric']]}: VQ {fmt(r['vq'], 4)} against >= {floor['ssim']} and JP2OpenJPEG "
               f"{fmt(r['jp2'], 4)} ({'met' if r['met'] else 'not met'})" for r in measured]
    return head + " " + "; ".join(details) + "."


def report_at_cr(results, add):
    add("## Quality at CR 20 and CR 32 (interpolated)")
    add("")
    add("| dataset | codec | CR | SSIM own | SSIM fixed | PSNR (dB) |")
    add("|---|---|---|---|---|---|")
    for key, entry in results["datasets"].items():
        for cell in (entry.get("at_cr") or {}).values():
            add(f"| {key} | {cell['codec']} | {cell['cr']:g} | {at_text(cell['ssim_own'], 4)} | "
                f"{at_text(cell['ssim_fixed'], 4)} | {at_text(cell['psnr'], 2)} |")
    add("")


def report_points(results, add):
    add("## All settings")
    add("")
    for key, entry in results["datasets"].items():
        if not entry.get("points"):
            continue
        add(f"### {key}: {entry['description']}, {entry['images']} image(s)")
        add("")
        add("| codec | setting | n | CR (file) | CR (VQ payload) | mean file bytes | PSNR | SSIM own | SSIM fixed | model |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for p in entry["points"]:
            add(f"| {p['codec']} | {p['setting']} | {p['n']}{'' if p['complete'] else ' (incomplete)'} | "
                f"{fmt(p['cr'], 2)} | {fmt(p.get('cr_payload'), 2)} | {fmt(p['file_bytes'], 0)} | {fmt(p['psnr'], 2)} | "
                f"{fmt(p['ssim_own'], 4)} | {fmt(p['ssim_fixed'], 4)} | {(p.get('model') or '').split(':')[0]} |")
        add("")


def report_entropy(results, add):
    add("## Entropy coding saving (VQ)")
    add("")
    add("Fixed-length bits = latent positions (ceil(w/4) x ceil(h/4) per tile) x levels x groups x "
        "log2(entries) x band groups, from the model card. Payload = `NSAT_BITS_PER_PIXEL` x pixels (tiles "
        "only); file = whole file. Card: the model card's own held-out estimate (`entropy_report.saving_over_fixed_length`).")
    add("")
    add("| dataset | LEVELS | fixed bits/position | payload bits/position | file bits/position | saving (payload) | "
        "saving (whole file) | card's estimate | mean header bytes | CR fixed-length indices | CR payload | CR file |")
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, entry in results["datasets"].items():
        card = find_card(entry["model"]) if entry.get("points") else None
        claims = ((card or {}).get("card") or {}).get("entropy_report", {}).get("saving_over_fixed_length") or []
        for p in entry.get("points", []):
            if p["codec"] != VQ or p.get("saving_payload") is None:
                continue
            claim = claims[p["setting"] - 1] if len(claims) >= p["setting"] else None
            add(f"| {key} | {p['setting']} | {fmt(p['fixed_bits_per_position'], 1)} | {fmt(p['payload_bits_per_position'], 2)} | "
                f"{fmt(p['file_bits_per_position'], 2)} | {fmt(100 * p['saving_payload'], 1)} % | "
                f"{fmt(100 * p['saving_file'], 1)} % | {fmt(None if claim is None else 100 * claim, 1)} % | "
                f"{fmt(p['header_bytes'], 0)} | {fmt(p['cr_fixed'], 2)} | {fmt(p['cr_payload'], 2)} | {fmt(p['cr'], 2)} |")
    add("")
    add("The whole-file saving is lower because the NSAT header (here without georeferencing; the header-bytes "
        "column = file bytes - payload bytes) is a fixed cost per file that is a sizeable share of a 64 px "
        "chip's file; it can even turn negative at LEVELS=1.")
    add("")


def report_speed(results, add):
    add("## Decode speed")
    add("")
    add(f"Open, then time `ReadAsArray` of the whole image (full resolution), close; one warm-up, median of "
        f"{ARGS.speed_repeats}; GDAL_NUM_THREADS={ARGS.threads}, files on disk in a temporary folder. JP2OpenJPEG "
        "is written at VQ's file size (QUALITY = VQ's bytes as % of the raw size).")
    add("")
    add("| image | size | codec | setting | CR | decode ms/MP | decode ms | open ms | encode s (1 run) | VQ / MULTIRATE |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for r in results.get("speed", []):
        ratio = fmt(r.get("ratio_to_multirate"), 2) if r["codec"] == VQ else ""
        add(f"| {r['image']} | {r['width']}x{r['height']}x{r['bands']} | {r['codec']} | {r['setting']} | {fmt(r['cr'], 1)} | "
            f"{fmt(r['ms_per_mp'], 0)} | {fmt(1000 * r['read_s'], 1)} | {fmt(1000 * r['open_s'], 1)} | "
            f"{fmt(r['encode_s'], 2)} | {ratio} |")
    add("")
    for desc in dict.fromkeys(f"{r['image']}: {r['description']}" for r in results.get("speed", [])):
        add(f"- {desc}")
    add("")


def report_caveats(results, add):
    add("## Caveats")
    add("")
    add("- SSIM definitions differ a lot on 16-bit data: the own-range SSIM (`ssim_bands`, the one the VQ model "
        "cards report) divides by each band's own max - min, often a few hundred to a few thousand DN on a 64 px "
        "chip, so its constants C1, C2 are small and it is strict; the fixed-range SSIM (range 10000) is "
        "much more lenient. The issue's 0.962 does not say which one; both are checked above.")
    add("- PSNR on 16-bit data uses peak 65535 while the reflectances fill a few thousand DN, so 16-bit PSNRs look "
        "high: 20 log10(65535 / image max) dB above a PSNR with the image's own peak.")
    add("- Files carry no georeferencing (the images are arrays), so the NSAT header is small (the header-bytes "
        "column above). A georeferenced header carries the WKT2 CRS (about 2-3 KB according to "
        "scripts/results/sar_ms), which on a 64x64 chip would be about as large as the payload: the file CRs "
        "here are those of bare rasters. JP2OpenJPEG is written with GMLJP2=NO.")
    for key, entry in results["datasets"].items():
        sizes = {}
        for p in entry.get("points", []):
            if p["codec"] == JP2:
                sizes.setdefault(round(p["file_bytes"], 1), []).append(p["setting"])
        same = [v for v in sizes.values() if len(v) > 1]
        if same:
            add(f"- {key}: JP2OpenJPEG QUALITY " + "; ".join("/".join(map(str, v)) for v in same)
                + " give files of the same size (OpenJPEG's smallest codestream for these images): "
                  "duplicate points on the curve.")
    add("- Speed mosaics are coded with the default BLOCKSIZE 256, so one MULTIRATE tile (and its per-tile KLT "
        "on 16-bit data) spans 16 unrelated chips with hard edges between them: MULTIRATE QUALITY=75 then "
        "reaches a much lower CR there than on the single chips, which the speed table's CR column shows. "
        "The speed numbers compare decoders, not equal rates (except JP2OpenJPEG, set to VQ's size).")
    add("- MULTIRATE's largest QUALITY (100) may not reach a CR as low as 20 on these chips; then its CR 20 "
        "value is 'out of range' rather than extrapolated.")
    add("- The machine was shared with training jobs (see load average); decode timings are single-threaded "
        "medians and indicative only.")
    seen = results["models_seen"]
    add("- Models named by the written files (NSAT_MODELS): "
        + "; ".join(f"`{k}` card sha256 `{', '.join(v)}`" for k, v in sorted(seen.items())) + ".")
    add("")


def report_failures(add):
    add("## Failures")
    add("")
    if FAILURES:
        for (dataset, codec, setting), entry in FAILURES.items():
            message = entry["message"].replace("\n", " ").replace("|", "/")
            add(f"- {dataset}, {codec}, {setting}: {entry['count']} failure(s). First: `{message[:400]}`")
    else:
        add("- No point failed.")
    add("")


def write_report(results, out):
    lines = []
    add = lines.append
    report_header(results, add)
    report_floor(results, add)
    report_at_cr(results, add)
    report_entropy(results, add)
    report_speed(results, add)
    report_models(results, add)
    report_method(results, add)
    report_points(results, add)
    report_caveats(results, add)
    report_failures(add)
    add(f"Plots: {', '.join(results['meta'].get('plots', []))}. Raw points: results.json.")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------

def main():
    out = os.path.abspath(ARGS.out)
    os.makedirs(out, exist_ok=True)
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit(f"NSAT driver not found (GDAL_DRIVER_PATH={os.environ.get('GDAL_DRIVER_PATH')})")
    start = time.perf_counter()
    results = dict(meta=dict(
        **bench_common.run_metadata(),
        threads=ARGS.threads, limit=ARGS.limit,
        settings={k: dict(values=v[0], label=v[1]) for k, v in SETTINGS.items()}, sections_s={}),
        datasets={})
    workdir = tempfile.mkdtemp(prefix="bench_vq_")
    try:
        for key in DATASETS:
            t0 = time.perf_counter()
            try:
                run_dataset(results, key)
            except Exception as error:  # noqa: BLE001
                record_failure(key, "dataset", "-", f"{type(error).__name__}: {error}")
            results["meta"]["sections_s"][key] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            run_speed(results, workdir)
        except Exception as error:  # noqa: BLE001
            record_failure("speed", "section", "-", f"{type(error).__name__}: {error}")
        results["meta"]["sections_s"]["speed"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for name in gdal.ReadDirRecursive(VSI) or []:
            if not name.endswith("/"):
                gdal.Unlink(f"{VSI}/{name}")
    floor_check(results)
    results["models_seen"] = {k: sorted(v) for k, v in MODELS_SEEN.items()}
    results["skips"] = SKIPS
    results["failures"] = [dict(dataset=k[0], codec=k[1], setting=k[2], **v) for k, v in FAILURES.items()]
    results["meta"]["load_at_end"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    results["meta"]["elapsed_s"] = time.perf_counter() - start
    bench_common.save_results(results, out, plot, write_report, bm.jsonable)


if __name__ == "__main__":
    main()
