#!/usr/bin/python3
"""Peak memory and wall time of writing NSAT (gdal_translate -of NSAT, i.e. CreateCopy)
on two large images, next to GTiff ZSTD of the same source and, when given, an older
NSAT build (the baseline), all in the same run.

Images (VRTs over real imagery, so nothing large lands on disk but the output):
  ms13   100000 x 2000, 13 bands UInt16: a 1024 x 960 mosaic of the 240 EuroSAT MS
         patches (Sentinel-2, all 13 bands), repeated across the width
  rgb    10000 x 10000 RGB Byte: a 2000 x 2000 mosaic of 25 NEON 0.1 m aerial tiles
         (DeepForest: Harvard Forest, Ordway-Swisher, San Joaquin), repeated 5 x 5
  rgbmr  the same mosaic at --multirate-size (default 4000 x 4000) for CODEC=MULTIRATE,
         whose encoder is far slower than LOSSLESS on two cores

Every command runs in a fresh process under GNU time (peak RSS = its ru_maxrss), with
GDAL_CACHEMAX fixed (--cachemax) so that GDAL's block cache, which every run shares,
does not hide the writer's own memory. Each output is deleted after it is measured.

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_createcopy_memory.py --plugin-dir build-encoder \
        [--baseline-plugin-dir DIR] [--pause-pid PID]
DIR holds gdal_NSAT.so and nsat_learned.so of the build to compare with. Outputs in
--out: results.json, report.md.
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_common import REPO, machine, paused, run_timed  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")))
    p.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "createcopy"))
    p.add_argument("--plugin-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--name", default="new", help="how the report names --plugin-dir's build")
    p.add_argument("--baseline-plugin-dir", default=None)
    p.add_argument("--baseline-name", default="old")
    p.add_argument("--multirate-size", type=int, default=4000)
    p.add_argument("--cachemax", default="64", help="GDAL_CACHEMAX (MiB) of every run")
    p.add_argument("--only", action="append", default=[],
                   help="run only the cases whose name contains this (repeatable)")
    p.add_argument("--skip-gtiff", action="store_true", help="skip the GTiff ZSTD runs")
    p.add_argument("--pause-pid", type=int, action="append", default=[])
    p.add_argument("--work", default=None, help="folder for sources and outputs (default: a new "
                   "temporary folder next to --out, removed at the end)")
    return p.parse_args()


import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
ARGS = None  # parse_args() of main(); the helpers above main() are imported by autotest


def write_mosaic(path, patches, across, down):
    """A GTiff of `patches` (file names, all the same size) laid out `across` x `down`."""
    first = gdal.Open(patches[0])
    width, height, bands = first.RasterXSize, first.RasterYSize, first.RasterCount
    gdal_type = first.GetRasterBand(1).DataType
    pixels = np.zeros((bands, height * down, width * across),
                      dtype=first.GetRasterBand(1).ReadAsArray().dtype)
    for i, patch in enumerate(patches[:across * down]):
        y, x = divmod(i, across)
        pixels[:, y * height:(y + 1) * height, x * width:(x + 1) * width] = gdal.Open(patch).ReadAsArray()
    out = gdal.GetDriverByName("GTiff").Create(path, width * across, height * down, bands, gdal_type,
                                               ["TILED=YES", "INTERLEAVE=BAND"])
    out.WriteRaster(0, 0, width * across, height * down, pixels.tobytes())
    out = None


def write_repeat_vrt(path, tile_path, width, height):
    """A VRT of `width` x `height` that repeats the raster `tile_path` across and down."""
    tile = gdal.Open(tile_path)
    tw, th, bands = tile.RasterXSize, tile.RasterYSize, tile.RasterCount
    type_name = gdal.GetDataTypeName(tile.GetRasterBand(1).DataType)
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    for band in range(1, bands + 1):
        lines.append(f'  <VRTRasterBand dataType="{type_name}" band="{band}">')
        for y in range(0, height, th):
            for x in range(0, width, tw):
                w, h = min(tw, width - x), min(th, height - y)
                lines.append(
                    f'    <SimpleSource><SourceFilename relativeToVRT="0">{tile_path}</SourceFilename>'
                    f'<SourceBand>{band}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                    f'<DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/></SimpleSource>')
        lines.append('  </VRTRasterBand>')
    lines.append('</VRTDataset>')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_sources(work):
    ms_patches = sorted(glob.glob(os.path.join(ARGS.data, "eurosat_ms", "*", "*.tif")))
    neon = [p for p in sorted(glob.glob(os.path.join(ARGS.data, "aerial", "deepforest", "*_0*.tif")))
            if (lambda d: (d.RasterXSize, d.RasterYSize, d.RasterCount) == (400, 400, 3))(gdal.Open(p))]
    ms_tile, rgb_tile = os.path.join(work, "ms13_mosaic.tif"), os.path.join(work, "rgb_mosaic.tif")
    write_mosaic(ms_tile, ms_patches, 16, 15)
    write_mosaic(rgb_tile, neon, 5, 5)
    sources = {"ms13": (100000, 2000, ms_tile), "rgb": (10000, 10000, rgb_tile),
               "rgbmr": (ARGS.multirate_size, ARGS.multirate_size, rgb_tile)}
    paths = {}
    for name, (width, height, tile) in sources.items():
        paths[name] = os.path.join(work, f"{name}.vrt")
        write_repeat_vrt(paths[name], tile, width, height)
    return paths


def cases():
    """(name, image, output format, creation options)"""
    out = []
    for image in ("ms13", "rgb"):
        for block in (256, 4096):
            out.append((f"{image} LOSSLESS {block}", image, "NSAT", ["CODEC=LOSSLESS", f"BLOCKSIZE={block}"]))
    for block in (256, 4096):
        out.append((f"rgbmr MULTIRATE {block}", "rgbmr", "NSAT", ["CODEC=MULTIRATE", f"BLOCKSIZE={block}"]))
    if not ARGS.skip_gtiff:
        for image in ("ms13", "rgb"):
            out.append((f"{image} GTiff ZSTD", image, "GTiff", ["COMPRESS=ZSTD", "TILED=YES", "BIGTIFF=YES"]))
    if ARGS.only:
        out = [c for c in out if any(word in c[0] for word in ARGS.only)]
    return out


def plugin_env(plugin_dir):
    return {**os.environ, "GDAL_DRIVER_PATH": os.path.abspath(plugin_dir), "GDAL_CACHEMAX": ARGS.cachemax,
            "GDAL_PAM_ENABLED": "NO",
            "NSAT_LEARNED_MODULE": os.path.join(os.path.abspath(plugin_dir), "nsat_learned.so")}


def measure(source, target, output_format, options, plugin_dir):
    command = ["gdal_translate", "-q", "-of", output_format, source, target]
    for option in options:
        command += ["-co", option]
    try:
        wall, peak = run_timed(command, env=plugin_env(plugin_dir), repeats=1)
        size = sum(os.path.getsize(p) for p in glob.glob(target + "*"))
        return {"wall_s": round(wall, 1), "peak_rss_mib": round(peak, 1), "output_mib": round(size / 2**20, 1)}
    finally:
        for path in glob.glob(target + "*"):
            os.remove(path)


def report(results, sizes):
    lines = ["# CreateCopy memory: peak RSS and wall time of gdal_translate", "",
             f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores "
             f"(shared with other work), {results['machine']['memory_gib']} GiB; GDAL {gdal.__version__}; "
             f"GDAL_CACHEMAX={ARGS.cachemax} MiB; NUM_THREADS default (ALL_CPUS). One run per cell, "
             "so wall times on shared cores are rough; peak RSS is what this benchmark is for.", "",
             "Images: " + "; ".join(f"{k} {w} x {h}" for k, (w, h) in sizes.items()) +
             " (see the script's docstring for the data). NSAT runs build overviews (OVERVIEWS=AUTO, "
             "AVERAGE); GTiff ZSTD (TILED=YES) is a plain copy without overviews.", "",
             f"* CODEC=MULTIRATE runs on {ARGS.multirate_size} x {ARGS.multirate_size} (rgbmr), not "
             "10000 x 10000: its encoder is far slower than LOSSLESS, and at BLOCKSIZE=4096 each "
             "tile in flight needs gigabytes of encoder scratch (the codec's, outside the "
             "writer's bound), so the full size would take minutes and about twice that memory.",
             "* ms13 repeats the 240 EuroSAT patches about 200 times: LOSSLESS finds those repeats "
             "inside 4096 px tiles, so its ratios and speed there are not those of a real scene.",
             "* load: other engineers' jobs shared the two cores during the run "
             f"(load average at the start {results['load_average']}), so wall times are rough.", ""]
    builds = [b for b in (ARGS.baseline_name if ARGS.baseline_plugin_dir else None, ARGS.name) if b]
    header = "| case | " + " | ".join(f"{b} peak RSS MiB | {b} wall s" for b in builds) + " | output MiB |"
    lines += [header, "|" + "---|" * (2 + 2 * len(builds))]
    for row in results["rows"]:
        cells = []
        for b in builds:
            r = row.get(b)
            cells += [f"{r['peak_rss_mib']:.0f}", f"{r['wall_s']:.0f}"] if r else ["-", "-"]
        size = next((row[b]["output_mib"] for b in reversed(builds) if row.get(b)), 0)
        lines.append(f"| {row['case']} | " + " | ".join(cells) + f" | {size:.0f} |")
    lines.append("")
    return "\n".join(lines)


def main():
    global ARGS
    ARGS = parse_args()
    os.makedirs(ARGS.out, exist_ok=True)
    work = ARGS.work or tempfile.mkdtemp(prefix="createcopy_bench_", dir=ARGS.out)
    os.makedirs(work, exist_ok=True)
    started = time.perf_counter()
    load_average = [round(x, 1) for x in os.getloadavg()]
    try:
        sources = make_sources(work)
        sizes = {name: (gdal.Open(p).RasterXSize, gdal.Open(p).RasterYSize) for name, p in sources.items()}
        builds = [(ARGS.name, ARGS.plugin_dir)]
        if ARGS.baseline_plugin_dir:
            builds.insert(0, (ARGS.baseline_name, ARGS.baseline_plugin_dir))
        rows = []
        with paused(ARGS.pause_pid):
            for name, image, output_format, options in cases():
                row = {"case": name, "image": image, "format": output_format, "options": options}
                for build, plugin_dir in (builds if output_format == "NSAT" else builds[-1:]):
                    target = os.path.join(work, f"out.{output_format.lower()}")
                    row[build] = measure(sources[image], target, output_format, options, plugin_dir)
                    print(name, build, row[build], flush=True)
                rows.append(row)
        results = {"machine": machine(), "gdal": gdal.__version__, "cachemax_mib": ARGS.cachemax,
                   "load_average": load_average,
                   "sizes": sizes, "builds": dict(builds), "rows": rows,
                   "total_s": round(time.perf_counter() - started)}
        with open(os.path.join(ARGS.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(ARGS.out, "report.md"), "w") as f:
            f.write(report(results, sizes))
    finally:
        if not ARGS.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
