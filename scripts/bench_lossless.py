#!/usr/bin/python3
"""Compression benchmark: NSAT against GTiff baselines, measured in one process.

Lossless: NSAT CODEC=LOSSLESS (ZSTD_LEVEL default and 3) against GTiff
COMPRESS=DEFLATE / ZSTD / LZW with a predictor (2 for integers, 3 for floats),
all tiled 256x256, NSAT with OVERVIEWS=NONE so that both sides store the same
pixels. Reported per scene: size (bits per sample), compression ratio against
the raw samples, encode time (gdal.Translate from an in-memory copy of the
scene, so the source read is not timed) and decode time (open + full
ReadAsArray of a freshly opened dataset, so every tile is really decoded),
median of --repeat runs, plus NSAT/baseline ratios. The NSAT lossless decode is
asserted to be bit-exact.

Lossy: NSAT CODEC=JPEG QUALITY=75/90 against GTiff COMPRESS=JPEG with the same
JPEG_QUALITY (PHOTOMETRIC=YCBCR for 3 bands) on the Byte RGB scenes: size and
PSNR over the valid (not nodata) pixels.

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_lossless.py [--out scripts/results/lossless_benchmark.md]
        [--plugin-dir build] [--data autotest/data] [--repeat 3]
"""
import argparse
import datetime
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOSSLESS_SCENES = [
    "landsat7_rgb_byte.tif",
    "landsat8_b4_uint16.tif",
    "naip_4band_byte.tif",
    "s1_grd_vv_db_float32.tif",
    "landsat_int16_custom_crs.tif",
    "s1_grd_gcps_uint16.tif",
]
# (file, bands to use): the Byte scenes with RGB in their first three bands.
JPEG_SCENES = [
    ("landsat7_rgb_byte.tif", [1, 2, 3]),
    ("naip_4band_byte.tif", [1, 2, 3]),
]
JPEG_QUALITIES = [75, 90]
LOAD_AT_START = (0.0, 0.0, 0.0)
TILING = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join("scripts", "results", "lossless_benchmark.md"))
    parser.add_argument("--plugin-dir", default=os.path.join(REPO, "build"),
                        help="directory holding gdal_NSAT.so (default: build/)")
    parser.add_argument("--data", default=os.path.join(REPO, "autotest", "data"))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs before the timed ones (first runs pay page faults)")
    parser.add_argument("--tmpdir", default=None, help="where the encoded files go (default: system temp)")
    return parser.parse_args()


ARGS = parse_args()
# Must be set before osgeo is imported: GDAL scans GDAL_DRIVER_PATH on first registration.
os.environ["GDAL_DRIVER_PATH"] = os.path.abspath(ARGS.plugin_dir)
os.environ["GDAL_NUM_THREADS"] = "1"
os.environ.setdefault("GDAL_PAM_ENABLED", "NO")  # no .aux.xml side files

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
gdal.SetConfigOption("GDAL_NUM_THREADS", "1")
gdal.SetConfigOption("GDAL_CACHEMAX", "64")  # MB; datasets are reopened per decode run anyway


def remove_dataset(path):
    if os.path.exists(path):
        try:
            gdal.GetDriverByName("GTiff" if path.endswith(".tif") else "NSAT").Delete(path)
        except RuntimeError:
            pass
    for leftover in (path, path + ".aux.xml", path + ".ovr"):
        if os.path.exists(leftover):
            os.remove(leftover)


def timed_encode(src, path, fmt, options):
    """Seconds and output bytes of one gdal.Translate(src -> path), closing included."""
    remove_dataset(path)
    t0 = time.perf_counter()
    ds = gdal.Translate(path, src, format=fmt, creationOptions=options)
    ds = None  # flush and close inside the timed region
    seconds = time.perf_counter() - t0
    return seconds, os.path.getsize(path)


def timed_decode(path):
    """Seconds of open + full ReadAsArray on a freshly opened dataset, and the array."""
    t0 = time.perf_counter()
    ds = gdal.Open(path)
    array = ds.ReadAsArray()
    ds = None
    seconds = time.perf_counter() - t0
    if array.ndim == 2:
        array = array[np.newaxis]
    return seconds, array


def measure(src, configs, tmp, prefix):
    """Encodes and decodes every config in interleaved rounds (so machine drift hits
    all configs alike): ARGS.warmup untimed rounds, then ARGS.repeat timed ones.
    Returns, per config, median encode/decode seconds, size and the decoded array."""
    out = []
    for name, fmt, ext, options in configs:
        path = os.path.join(tmp, prefix + "_" + "".join(c if c.isalnum() else "_" for c in name) + ext)
        out.append(dict(name=name, fmt=fmt, options=options, path=path, enc=[], dec=[], sizes=set()))
    # Encode rounds first, then decode rounds on the last written files.
    for round_index in range(ARGS.warmup + ARGS.repeat):
        for entry in out:
            enc_s, size = timed_encode(src, entry["path"], entry["fmt"], entry["options"])
            entry["sizes"].add(size)
            if round_index >= ARGS.warmup:
                entry["enc"].append(enc_s)
    for round_index in range(ARGS.warmup + ARGS.repeat):
        for entry in out:
            dec_s, entry["array"] = timed_decode(entry["path"])
            if round_index >= ARGS.warmup:
                entry["dec"].append(dec_s)
    for entry in out:
        remove_dataset(entry["path"])
        if len(entry["sizes"]) != 1:
            print(f"WARNING: {prefix} {entry['name']}: output size differs between runs: "
                  f"{sorted(entry['sizes'])}", file=sys.stderr)
        entry["size"] = max(entry["sizes"])
        entry["enc"] = statistics.median(entry["enc"])
        entry["dec"] = statistics.median(entry["dec"])
    return out


def same_bits(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        unsigned = np.dtype("u%d" % a.dtype.itemsize)
        return np.array_equal(a.view(unsigned), b.view(unsigned))
    return np.array_equal(a, b)


def load_in_memory(path, bands=None):
    return gdal.Translate("", path, format="MEM", bandList=bands)


def predictor_for(data_type):
    return "3" if data_type in (gdal.GDT_Float32, gdal.GDT_Float64) else "2"


def lossless_configs(data_type):
    """(name, driver, extension, creation options)"""
    pred = predictor_for(data_type)
    nsat = ["CODEC=LOSSLESS", "OVERVIEWS=NONE", "NUM_THREADS=1", "BLOCKSIZE=256"]
    return [
        ("NSAT LOSSLESS (ZSTD_LEVEL default)", "NSAT", ".nsat", nsat),
        ("NSAT LOSSLESS ZSTD_LEVEL=3", "NSAT", ".nsat", nsat + ["ZSTD_LEVEL=3"]),
        (f"GTiff DEFLATE PREDICTOR={pred}", "GTiff", ".tif",
         TILING + ["COMPRESS=DEFLATE", f"PREDICTOR={pred}"]),
        (f"GTiff ZSTD PREDICTOR={pred}", "GTiff", ".tif",
         TILING + ["COMPRESS=ZSTD", f"PREDICTOR={pred}"]),
        (f"GTiff LZW PREDICTOR={pred}", "GTiff", ".tif",
         TILING + ["COMPRESS=LZW", f"PREDICTOR={pred}"]),
    ]


def psnr_valid(reference, decoded, valid):
    """PSNR (dB, peak 255) over all bands of the pixels where `valid` is true."""
    ref = reference.astype(np.float64)[:, valid]
    dec = decoded.astype(np.float64)[:, valid]
    mse = float(np.mean((ref - dec) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def valid_mask(ds):
    """True where every band's GDAL mask says valid (nodata excluded)."""
    valid = np.ones((ds.RasterYSize, ds.RasterXSize), dtype=bool)
    for b in range(1, ds.RasterCount + 1):
        valid &= ds.GetRasterBand(b).GetMaskBand().ReadAsArray() != 0
    return valid


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_lossless(tmp, log):
    results = {}  # scene -> list of rows
    for scene in LOSSLESS_SCENES:
        src = load_in_memory(os.path.join(ARGS.data, scene))
        reference = src.ReadAsArray()
        if reference.ndim == 2:
            reference = reference[np.newaxis]
        data_type = src.GetRasterBand(1).DataType
        samples = src.RasterXSize * src.RasterYSize * src.RasterCount
        raw_bytes = samples * gdal.GetDataTypeSize(data_type) // 8
        rows = []
        for m in measure(src, lossless_configs(data_type), tmp, os.path.splitext(scene)[0]):
            exact = same_bits(reference, m["array"])
            if m["fmt"] == "NSAT":
                assert exact, f"{m['name']} on {scene}: lossless decode is not bit-exact"
            size = m["size"]
            rows.append(dict(name=m["name"], fmt=m["fmt"], size=size, bps=size * 8 / samples,
                             cr=raw_bytes / size, enc=m["enc"], dec=m["dec"], exact=exact))
            log(f"  {scene:30s} {m['name']:36s} {size:9d} B  {size * 8 / samples:6.3f} b/s  "
                f"enc {m['enc'] * 1e3:7.1f} ms  dec {m['dec'] * 1e3:7.1f} ms  exact={exact}")
        results[scene] = dict(rows=rows, type=gdal.GetDataTypeName(data_type),
                              size=(src.RasterXSize, src.RasterYSize, src.RasterCount),
                              raw=raw_bytes)
        src = None
    return results


def run_jpeg(tmp, log):
    results = []
    for scene, bands in JPEG_SCENES:
        src = load_in_memory(os.path.join(ARGS.data, scene), bands)
        reference = src.ReadAsArray()
        valid = valid_mask(src)
        samples = src.RasterXSize * src.RasterYSize * src.RasterCount
        for quality in JPEG_QUALITIES:
            configs = [
                ("NSAT JPEG", "NSAT", ".nsat",
                 ["CODEC=JPEG", f"QUALITY={quality}", "OVERVIEWS=NONE", "NUM_THREADS=1"]),
                ("GTiff JPEG YCbCr", "GTiff", ".tif",
                 TILING + ["COMPRESS=JPEG", f"JPEG_QUALITY={quality}", "PHOTOMETRIC=YCBCR"]),
            ]
            prefix = f"{os.path.splitext(scene)[0]}_q{quality}"
            for m in measure(src, configs, tmp, prefix):
                psnr = psnr_valid(reference, m["array"], valid)
                size = m["size"]
                results.append(dict(scene=scene, bands=bands, quality=quality, name=m["name"],
                                    size=size, bps=size * 8 / samples, psnr=psnr, enc=m["enc"],
                                    dec=m["dec"], valid_fraction=float(valid.mean())))
                log(f"  {scene:24s} q={quality} {m['name']:18s} {size:8d} B  "
                    f"{size * 8 / samples:6.3f} b/s  PSNR {psnr:6.2f} dB")
        src = None
    return results


def fmt_ms(seconds):
    return f"{seconds * 1e3:.1f}"


def write_markdown(lossless, jpeg, elapsed, out):
    lines = []
    add = lines.append
    add("# NSAT compression benchmark: lossless and JPEG against GTiff")
    add("")
    add(f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}")
    add(f"- Machine: {os.cpu_count()} cores (nproc), CPU: {cpu_model()}, {platform.system()} {platform.release()}")
    add(f"- GDAL {gdal.VersionInfo('RELEASE_NAME')} (Python bindings), numpy {np.__version__}, "
        f"Python {platform.python_version()}")
    add(f"- Plugin: `{os.path.join(os.environ['GDAL_DRIVER_PATH'], 'gdal_NSAT.so')}`")
    add("- Load average at start (1/5/15 min): " + "/".join(f"{x:.2f}" for x in LOAD_AT_START) +
        " (the machine may be shared; timings are noisier when it is not ~0)")
    add("- Threads: 1 (GDAL_NUM_THREADS=1, NSAT NUM_THREADS=1; GTiff compresses single-threaded)")
    add(f"- Timings: median of {ARGS.repeat} runs after {ARGS.warmup} untimed warm-up run(s), in process; the configs of a scene are run in interleaved rounds so that machine drift hits them alike (all encode rounds, then all decode rounds). Encode = `gdal.Translate` from an "
        "in-memory (MEM) copy of the scene to a file, including closing it. Decode = `gdal.Open` + "
        "full `ReadAsArray()` on a freshly opened dataset (so every tile is decoded; "
        "GDAL_CACHEMAX=64 MB).")
    add("- All outputs tiled 256x256; NSAT with `OVERVIEWS=NONE`. GTiff predictor 2 for integer "
        "types, 3 for Float32 (applied to DEFLATE, ZSTD and LZW alike). Library defaults otherwise: "
        "NSAT ZSTD_LEVEL=9, GTiff ZSTD_LEVEL=9, GTiff ZLEVEL (DEFLATE) 6.")
    add("- bits/sample = file size x 8 / (width x height x bands); CR = raw sample bytes / file size. "
        "File sizes include headers/metadata (these scenes are small, so that overhead is visible).")
    add(f"- Total benchmark wall time: {elapsed:.0f} s")
    add("")

    add("## Lossless")
    add("")
    add("Every NSAT lossless decode was asserted bit-exact against the source "
        "(float compared bit for bit).")
    add("")
    for scene, result in lossless.items():
        w, h, b = result["size"]
        add(f"### {scene} — {w}x{h}, {b} band(s), {result['type']}, raw {result['raw']} bytes")
        add("")
        add("| Config | bytes | bits/sample | CR vs raw | encode ms | decode ms | bit-exact |")
        add("|---|---:|---:|---:|---:|---:|:---:|")
        for r in result["rows"]:
            add(f"| {r['name']} | {r['size']} | {r['bps']:.3f} | {r['cr']:.3f} | {fmt_ms(r['enc'])} | "
                f"{fmt_ms(r['dec'])} | {'yes' if r['exact'] else 'NO'} |")
        add("")

    baseline_kinds = ["DEFLATE", "ZSTD", "LZW"]
    for variant_index, variant in enumerate(["NSAT LOSSLESS (ZSTD_LEVEL default)",
                                             "NSAT LOSSLESS ZSTD_LEVEL=3"]):
        add(f"### Ratios: {variant} ÷ GTiff baseline (< 1 means NSAT smaller / faster)")
        add("")
        header = "| Scene | " + " | ".join(f"size ÷ {k}" for k in baseline_kinds) + " | " + \
                 " | ".join(f"encode ÷ {k}" for k in baseline_kinds) + " | " + \
                 " | ".join(f"decode ÷ {k}" for k in baseline_kinds) + " |"
        add(header)
        add("|---|" + "---:|" * (3 * len(baseline_kinds)))
        collected = {(m, k): [] for m in ("size", "enc", "dec") for k in baseline_kinds}
        for scene, result in lossless.items():
            rows = result["rows"]
            nsat = rows[variant_index]
            cells = []
            for metric in ("size", "enc", "dec"):
                for kind in baseline_kinds:
                    base = next(r for r in rows if r["fmt"] == "GTiff" and f" {kind} " in f" {r['name']} ")
                    value = nsat[metric] / base[metric]
                    collected[(metric, kind)].append(value)
                    cells.append(f"{value:.3f}")
            add(f"| {scene} | " + " | ".join(cells) + " |")
        add("| **geometric mean** | " + " | ".join(
            f"**{geomean(collected[(m, k)]):.3f}**" for m in ("size", "enc", "dec") for k in baseline_kinds) + " |")
        add("")

    add("## JPEG (lossy)")
    add("")
    add("NSAT `CODEC=JPEG QUALITY=q` (default CHROMA_SUBSAMPLING=420, `OVERVIEWS=NONE`) against GTiff "
        "`COMPRESS=JPEG JPEG_QUALITY=q PHOTOMETRIC=YCBCR` (4:2:0), tiled 256x256, on the RGB bands. "
        "PSNR (peak 255) over all bands of the pixels that are valid in every band of the source "
        "(GDAL mask band, i.e. nodata excluded).")
    add("")
    add("| Scene (bands) | q | Config | bytes | bits/sample | PSNR dB | encode ms | decode ms | size ÷ GTiff | PSNR − GTiff dB |")
    add("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in jpeg:
        base = next(x for x in jpeg if x["scene"] == r["scene"] and x["quality"] == r["quality"]
                    and x["name"].startswith("GTiff"))
        add(f"| {r['scene']} ({','.join(map(str, r['bands']))}; {r['valid_fraction'] * 100:.0f}% valid) | "
            f"{r['quality']} | {r['name']} | {r['size']} | {r['bps']:.3f} | {r['psnr']:.2f} | "
            f"{fmt_ms(r['enc'])} | {fmt_ms(r['dec'])} | {r['size'] / base['size']:.3f} | "
            f"{r['psnr'] - base['psnr']:+.2f} |")
    add("")

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit(f"NSAT driver not found in GDAL_DRIVER_PATH={os.environ['GDAL_DRIVER_PATH']}")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()
    start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="nsat_bench_", dir=ARGS.tmpdir)
    try:
        log("lossless:")
        lossless = run_lossless(tmp, log)
        log("jpeg:")
        jpeg = run_jpeg(tmp, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - start
    write_markdown(lossless, jpeg, elapsed, ARGS.out)
    log(f"wrote {ARGS.out} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
