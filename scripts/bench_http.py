#!/usr/bin/python3
"""Cloud reads: requests and bytes that GDAL's /vsicurl/ needs to read NSAT and COG files
from an HTTP server, measured in one run.

The files are served by autotest/python/http_range_server.py (threaded HTTP/1.1 with
byte ranges, on 127.0.0.1 only), which logs every request. Per scene (Landsat 7 RGB,
NAIP 4 bands) and per format (NSAT LOSSLESS and JPEG; COG DEFLATE with predictor and
COG JPEG, written by GDAL's COG driver; all 256 px tiles with two overview levels):

* gdalinfo: `gdal.Info` of the URL (open, metadata; no pixels)
* window:   one 256 x 256 window at a tile corner (1 tile) and one straddling tile
            edges (4 tiles), after the open
* overview: the 2x overview (all bands; the level both formats have), after the open
* full:     every pixel of the full-resolution level, after the open

Each case starts from an empty /vsicurl/ cache (gdal.VSICurlClearCache) and a freshly
opened dataset; the open's own requests are counted in "gdalinfo" only. "needed" is the
payload bytes of the tiles a read covers (NSAT: the tile index, parsed by
autotest/python/nsat_layout.py; COG: the TIFF tags), so fetched / needed shows what
/vsicurl/'s chunking adds; "from_open" is the bytes a read fetched that the open had
fetched already. The pixels read over HTTP are checked against the local file. Options: GDAL_DISABLE_READDIR_ON_OPEN=
EMPTY_DIR, CPL_VSIL_CURL_ALLOWED_EXTENSIONS=.nsat,.tif, VSI_CACHE=FALSE, GDAL's default
chunk size (16 KiB) unless --chunk-size, GDAL_NUM_THREADS=1 (GTiff decodes on one
thread by default too). More tables: NSAT with its default decoding threads (ALL_CPUS;
3 runs), whose range GETs are checked against those of one thread, and gdalinfo as a
program, also without EMPTY_DIR (GDAL then lists the folder and looks for sibling
files).

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_http.py [--out scripts/results/http] [--plugin-dir build]
        [--chunk-size 16384]
"""
import argparse
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "autotest", "python"))

SCENES = {"landsat7": "landsat7_rgb_byte.tif", "naip": "naip_4band_byte.tif"}
FORMATS = [
    ("NSAT LOSSLESS", "NSAT", ".nsat", ["CODEC=LOSSLESS", "BLOCKSIZE=256"]),
    ("NSAT JPEG q75", "NSAT", ".nsat", ["CODEC=JPEG", "QUALITY=75", "BLOCKSIZE=256"]),
    ("COG DEFLATE", "COG", ".tif", ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BLOCKSIZE=256",
                                     "OVERVIEW_COUNT=2", "OVERVIEW_RESAMPLING=AVERAGE"]),
    ("COG JPEG q75", "COG", ".tif", ["COMPRESS=JPEG", "QUALITY=75", "BLOCKSIZE=256",
                                      "OVERVIEW_COUNT=2", "OVERVIEW_RESAMPLING=AVERAGE"]),
]
WINDOWS = {"window, 1 tile": (256, 256, 256, 256), "window, 4 tiles": (100, 200, 256, 256)}
OPERATIONS = ["gdalinfo", *WINDOWS, "overview", "full"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "http"))
    parser.add_argument("--plugin-dir", default=os.path.join(REPO, "build"))
    parser.add_argument("--data", default=os.path.join(REPO, "autotest", "data"))
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="CPL_VSIL_CURL_CHUNK_SIZE (default: GDAL's, 16384)")
    return parser.parse_args()


ARGS = parse_args()
os.environ["GDAL_DRIVER_PATH"] = ARGS.plugin_dir
HTTP_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
                "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".nsat,.tif",
                "VSI_CACHE": "FALSE"}
THREAD_RUNS = 3
if ARGS.chunk_size:
    HTTP_OPTIONS["CPL_VSIL_CURL_CHUNK_SIZE"] = str(ARGS.chunk_size)

from osgeo import gdal  # noqa: E402

from bench_common import machine  # noqa: E402
from http_range_server import RangeServer  # noqa: E402
from nsat_layout import (NsatLayout, fetched, level_tiles, merge, subtract,  # noqa: E402
                         tile_intervals, total, window_tiles)

gdal.UseExceptions()
gdal.AllRegister()
for key, value in HTTP_OPTIONS.items():
    gdal.SetConfigOption(key, value)
gdal.SetConfigOption("GDAL_NUM_THREADS", "1")


# ---------------------------------------------------------------- tile byte ranges


def nsat_tiles(path):
    """{(level, tx, ty): (offset, size)} and the end of header + index (FORMAT.md)."""
    layout = NsatLayout(path)
    return layout.tiles, layout.index_end


def cog_tiles(path):
    """The same for a pixel-interleaved COG, from GDAL's TIFF metadata of each level."""
    dataset = gdal.Open(path)
    band = dataset.GetRasterBand(1)
    levels = [band] + [band.GetOverview(i) for i in range(band.GetOverviewCount())]
    tiles = {}
    for level, level_band in enumerate(levels):
        bw, bh = level_band.GetBlockSize()
        for ty in range(math.ceil(level_band.YSize / bh)):
            for tx in range(math.ceil(level_band.XSize / bw)):
                offset = int(level_band.GetMetadataItem(f"BLOCK_OFFSET_{tx}_{ty}", "TIFF") or 0)
                size = int(level_band.GetMetadataItem(f"BLOCK_SIZE_{tx}_{ty}", "TIFF") or 0)
                tiles[(level, tx, ty)] = (offset, size)
    first_tile = min(o for o, s in tiles.values() if s > 0)
    return tiles, first_tile


def read_entry(requests, tiles, keys, cached):
    """summary() of a read of the tiles `keys`, with the payload bytes of those tiles
    and the bytes fetched again that the open had fetched already (`cached`)."""
    got = merge(fetched(requests))
    return {**summary(requests), "tiles": len(keys), "needed": total(tile_intervals(tiles, keys)),
            "from_open": total(got) - total(subtract(got, cached))}


# ---------------------------------------------------------------- measuring


def summary(requests):
    gets = [r for r in requests if r.method == "GET"]
    return {"head": sum(r.method == "HEAD" for r in requests),
            "get": len(gets),
            "get_without_range": sum(r.range is None for r in gets),
            "other": sum(r.method not in ("GET", "HEAD") for r in requests),
            "not_found": sum(r.status == 404 for r in requests),
            "bytes": sum(r.bytes_sent for r in gets),
            "refetched": total(fetched(gets)) - total(merge(fetched(gets))),
            "paths": sorted({r.path for r in requests}),
            "ranges": [r.range for r in gets]}


def fresh(server):
    gdal.VSICurlClearCache()
    server.reset()


def open_remote(server, name, open_options=()):
    """A fresh open; returns the dataset and the byte intervals the open fetched."""
    fresh(server)
    dataset = gdal.OpenEx(server.vsicurl(name), gdal.OF_RASTER, open_options=list(open_options))
    cached = merge(fetched(server.requests()))
    server.reset()
    return dataset, cached


def measure_file(server, folder, name, tiles, header_end, open_options=()):
    """gdalinfo, then each read after a fresh open with `open_options`."""
    local = gdal.Open(os.path.join(folder, name))
    results = {}

    fresh(server)
    info = gdal.Info(server.vsicurl(name))
    assert ("NSAT_CODEC=" in info) == name.endswith(".nsat")
    results["gdalinfo"] = {**summary(server.requests()), "needed": header_end, "tiles": 0}

    for label, window in WINDOWS.items():
        dataset, cached = open_remote(server, name, open_options)
        pixels = dataset.ReadRaster(*window)
        assert pixels == local.ReadRaster(*window), f"{name} {label}: pixels differ"
        keys = window_tiles((256, 256), 0, *window)
        results[label] = read_entry(server.requests(), tiles, keys, cached)

    dataset, cached = open_remote(server, name, open_options)
    for band in range(1, dataset.RasterCount + 1):
        pixels = dataset.GetRasterBand(band).GetOverview(0).ReadRaster()
        assert pixels == local.GetRasterBand(band).GetOverview(0).ReadRaster()
    keys = level_tiles(tiles, 1)
    overview = dataset.GetRasterBand(1).GetOverview(0)
    results["overview"] = {**read_entry(server.requests(), tiles, keys, cached),
                           "size": [overview.XSize, overview.YSize]}

    dataset, cached = open_remote(server, name, open_options)
    assert dataset.ReadRaster() == local.ReadRaster(), f"{name} full read: pixels differ"
    keys = level_tiles(tiles, 0)
    results["full"] = read_entry(server.requests(), tiles, keys, cached)
    return results


def measure_threads(server, folder, name, tiles, header_end):
    """NSAT with its default decoding threads (NUM_THREADS=ALL_CPUS): every read,
    THREAD_RUNS times, to compare with the requests of one thread."""
    return [measure_file(server, folder, name, tiles, header_end, ["NUM_THREADS=ALL_CPUS"])
            for _ in range(THREAD_RUNS)]


def gdalinfo_default_options(server, name):
    """gdalinfo in its own process, with GDAL's defaults (no EMPTY_DIR)."""
    env = {key: value for key, value in os.environ.items() if key not in HTTP_OPTIONS}
    fresh(server)
    result = subprocess.run(["gdalinfo", server.vsicurl(name)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return summary(server.requests())


def gdalinfo_command(server, name):
    """gdalinfo in its own process with the options above."""
    env = {**os.environ, **HTTP_OPTIONS}
    fresh(server)
    result = subprocess.run(["gdalinfo", server.vsicurl(name)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return summary(server.requests())


# ---------------------------------------------------------------- report


def kib(n):
    return f"{n / 1024:.1f}"


def cell(entry, operation):
    if operation == "gdalinfo":
        return f"{entry['head']} + {entry['get']}, {kib(entry['bytes'])} ({kib(entry['needed'])})"
    return f"{entry['get']}, {kib(entry['bytes'])} ({kib(entry['needed'])})"


def write_report(out, meta, files, results, threads, cli, defaults):
    lines = [
        "# Cloud reads over HTTP (/vsicurl/): NSAT and COG",
        "",
        f"Generated by `scripts/bench_http.py` on {meta['date']}: {meta['machine']['cpu']}, "
        f"{meta['machine']['cores']} cores, {meta['machine']['system']}, GDAL {meta['gdal']}, "
        f"Python {meta['machine']['python']}.",
        "",
        "Server: `autotest/python/http_range_server.py` on 127.0.0.1 (HTTP/1.1, byte ranges), "
        "which logs every request. GDAL options: "
        + ", ".join(f"`{k}={v}`" for k, v in HTTP_OPTIONS.items())
        + f", `GDAL_NUM_THREADS=1`; /vsicurl/ chunk size {meta['chunk_size']} bytes. Every "
        "case starts with an empty /vsicurl/ cache and a fresh open; the open's requests are "
        "counted under *gdalinfo* only. Every pixel read over HTTP equalled the local file's.",
        "",
        "Cells: *requests, KiB fetched (KiB needed)*. gdalinfo: HEAD + range GETs, and in "
        "brackets the bytes before the first tile (NSAT: preamble, header, tile index; COG: "
        "TIFF header and IFDs). Reads: range GETs (no HEAD), and in brackets the payload bytes "
        "of the tiles the read covers. Windows are "
        "256 × 256: *1 tile* at (256, 256), *4 tiles* at (100, 200). *overview*: every band of "
        "the 2× overview. *full*: every band of the full resolution.",
        "",
    ]
    for scene, source in SCENES.items():
        lines += [f"## {scene} ({source})", "",
                  "| format | file KiB | " + " | ".join(OPERATIONS) + " |",
                  "|---|---:|" + "---|" * len(OPERATIONS)]
        for label, *_ in FORMATS:
            key = f"{scene} {label}"
            row = [label, kib(files[key]["size"])]
            row += [cell(results[key][op], op) for op in OPERATIONS]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")

    reads = OPERATIONS[1:]
    lines += ["## NSAT with its default decoding threads", "",
              f"`NUM_THREADS=ALL_CPUS` ({meta['machine']['cores']} here), {THREAD_RUNS} runs: "
              "cells as above, from the first run; last column: whether every run sent exactly "
              "the range GETs (same ranges, same order) of the one-thread run above, for every "
              "read.", "",
              "| file | " + " | ".join(reads) + " | same GETs as 1 thread |",
              "|---|" + "---|" * (len(reads) + 1)]
    for key, runs in threads.items():
        same = all(run[op]["ranges"] == results[key][op]["ranges"] for run in runs for op in reads)
        lines.append(f"| {key} | " + " | ".join(cell(runs[0][op], op) for op in reads)
                     + f" | {'yes' if same else 'no'} |")
    lines.append("")

    lines += ["## gdalinfo as a program", "",
              "`gdalinfo /vsicurl/http://127.0.0.1:PORT/<file>` in its own process: with the "
              "options above, and with GDAL's defaults (no `GDAL_DISABLE_READDIR_ON_OPEN`, no "
              "`CPL_VSIL_CURL_ALLOWED_EXTENSIONS`), where GDAL first lists the folder and looks "
              "for sibling files (`.aux.xml`, `.ovr`, `.msk`, ...).", "",
              "| file | with the options | GDAL defaults |", "|---|---|---|"]
    for key in cli:
        a, b = cli[key], defaults[key]
        lines.append(f"| {key} | {a['head']} HEAD + {a['get']} GET, {kib(a['bytes'])} KiB | "
                     f"{b['head']} HEAD + {b['get']} GET ({b['not_found']} answered 404), "
                     f"{kib(b['bytes'])} KiB |")
    lines.append("")

    nsat_keys = [k for k in results if " NSAT " in k]
    cog_keys = [k for k in results if " COG " in k]

    def ratio(keys, op):
        values = [results[k][op]["bytes"] / results[k][op]["needed"] for k in keys
                  if results[k][op]["needed"]]
        return f"{min(values):.2f}–{max(values):.2f}"

    def again(keys):
        cases = [(op, results[k][op]["from_open"]) for k in keys for op in OPERATIONS[1:]
                 if results[k][op]["from_open"]]
        if not cases:
            return "none"
        values = [v for _, v in cases]
        return (f"{kib(min(values))}–{kib(max(values))} KiB in "
                + ", ".join(dict.fromkeys(f"*{op}*" for op, _ in cases)))

    info = {(results[k]["gdalinfo"]["head"], results[k]["gdalinfo"]["get"]) for k in results}
    lines += ["## Reading the tables", "",
              "* Open / gdalinfo: " + ", ".join(f"{h} HEAD + {g} range GET" for h, g in sorted(info))
              + " for every file: NSAT's header and tile index fit in the first chunk, as a "
              "COG's IFDs do.",
              f"* Window of 1 tile, fetched ÷ needed: NSAT {ratio(nsat_keys, 'window, 1 tile')}, "
              f"COG {ratio(cog_keys, 'window, 1 tile')}: one read, rounded out to /vsicurl/ "
              "chunks, in both formats.",
              f"* Window of 4 tiles, fetched ÷ needed: NSAT {ratio(nsat_keys, 'window, 4 tiles')}, "
              f"COG {ratio(cog_keys, 'window, 4 tiles')}. Both drivers hand /vsicurl/ the exact "
              "byte ranges of a read's tiles at once (VSIFReadMultiRangeL), which merges "
              "adjacent ones into one GET per row of tiles.",
              f"* 2× overview: NSAT {ratio(nsat_keys, 'overview')}, COG "
              f"{ratio(cog_keys, 'overview')}; full read: NSAT {ratio(nsat_keys, 'full')}, COG "
              f"{ratio(cog_keys, 'full')}: NSAT reads a whole level with one VSIFReadMultiRangeL "
              "call too, so it fetches nothing of another level.",
              "* Bytes of the open's first chunk that a read fetched again: NSAT "
              + again(nsat_keys) + "; COG " + again(cog_keys) + ". NSAT's first full-resolution "
              "tile starts in that chunk, and a VSIFReadMultiRangeL call does not look in the "
              "/vsicurl/ cache. A COG's single reads do, so a COG read fetches less than its "
              "tiles (÷ below 1) where the open's chunk held some of them (its overviews come "
              "first in the file).",
              "* Bytes fetched twice within one case, all cases: "
              f"{sum(results[k][op]['refetched'] for k in results for op in OPERATIONS)}.", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    os.makedirs(ARGS.out, exist_ok=True)
    meta = {"date": datetime.date.today().isoformat(), "machine": machine(),
            "gdal": gdal.__version__, "plugin_dir": ARGS.plugin_dir,
            "chunk_size": ARGS.chunk_size or 16384, "options": HTTP_OPTIONS,
            "gdal_num_threads": 1, "windows": WINDOWS}
    files, results, threads, cli, defaults = {}, {}, {}, {}, {}
    folder = tempfile.mkdtemp(prefix="nsat_bench_http_")
    try:
        layouts = {}
        for scene, source in SCENES.items():
            for label, driver, extension, options in FORMATS:
                name = f"{scene}_{label.split()[0].lower()}_{label.split()[1].lower()}{extension}"
                path = os.path.join(folder, name)
                gdal.Translate(path, os.path.join(ARGS.data, source), format=driver,
                               creationOptions=options)
                layouts[name] = (nsat_tiles if driver == "NSAT" else cog_tiles)(path)
                written = gdal.Open(path)             # kept alive while its band is used
                levels = written.GetRasterBand(1).GetOverviewCount()
                written = None
                files[f"{scene} {label}"] = {"name": name, "size": os.path.getsize(path),
                                             "options": options, "header_bytes": layouts[name][1],
                                             "tiles": len(layouts[name][0]),
                                             "overview_levels": levels}
        with RangeServer(folder) as server:
            for key, entry in files.items():
                tiles, header_end = layouts[entry["name"]]
                results[key] = measure_file(server, folder, entry["name"], tiles, header_end)
                print(key, {op: cell(results[key][op], op) for op in OPERATIONS}, flush=True)
                if " NSAT " in key:
                    threads[key] = measure_threads(server, folder, entry["name"], tiles,
                                                   header_end)
            for key in ("landsat7 NSAT JPEG q75", "landsat7 COG JPEG q75"):
                cli[key] = gdalinfo_command(server, files[key]["name"])
                defaults[key] = gdalinfo_default_options(server, files[key]["name"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with open(os.path.join(ARGS.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "files": files, "results": results,
                   "nsat_default_threads": threads, "gdalinfo_program": cli,
                   "gdalinfo_program_gdal_defaults": defaults}, f, indent=1)
    write_report(ARGS.out, meta, files, results, threads, cli, defaults)
    print("wrote", os.path.join(ARGS.out, "report.md"))


if __name__ == "__main__":
    main()
