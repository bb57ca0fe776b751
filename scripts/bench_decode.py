#!/usr/bin/python3
"""Decode-side benchmark of the learned codecs: open cost, full-scene decode, window
reads, a QGIS render and peak memory, each next to JP2OpenJPEG and GTiff JPEG on the
same scene and, for the decode, next to an older NSAT build (the baseline) in the same
run; plus the synthesis kernels' GMAC/s against this core's measured FMA peak.

Scenes (real imagery, from --data):
  rgb4096   a 4096 x 4096 RGB mosaic of the NAIP scene's R, G, B bands (the scene
            repeated, so the texture is real aerial imagery)
  naip      the NAIP 4-band 5 m scene as it is (934 x 724)
  rgb10k    10240 x 10240, the same mosaic, for peak memory only

Every command runs in a fresh process; times are medians of --repeats runs. With
--pause-pid (e.g. a training run), those processes are stopped while measuring.

Usage, from the repository root:
    /usr/bin/python3 scripts/bench_decode.py --baseline-plugin-dir DIR [--pause-pid PID]
DIR holds gdal_NSAT.so and nsat_learned.so of the build to compare with (e.g. the
previous commit built into /tmp/nsat-base). Outputs in --out: results.json, report.md,
decode_speed.png.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_common import REPO, machine, paused, run_timed  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")))
    p.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "decode"))
    p.add_argument("--plugin-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--baseline-plugin-dir", required=True)
    p.add_argument("--baseline-name", default="baseline", help="how the report names the baseline")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--windows", type=int, default=20, help="512 x 512 window reads")
    p.add_argument("--pause-pid", type=int, action="append", default=[])
    p.add_argument("--skip-10k", action="store_true", help="skip the 10240^2 peak-memory run")
    p.add_argument("--work", default=None,
                   help="folder for the test files; files already there are reused (default: a new temp folder)")
    return p.parse_args()


ARGS = parse_args()
os.environ["GDAL_DRIVER_PATH"] = ARGS.plugin_dir
os.environ["GDAL_PAM_ENABLED"] = "NO"
import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
NAIP = os.path.join(ARGS.data, "geotiff", "opengeos_naip", "m_4709963_se_14_1_20090818.tif")


def env_for(plugin_dir, threads):
    env = {**os.environ, "GDAL_DRIVER_PATH": plugin_dir, "GDAL_NUM_THREADS": str(threads)}
    # The baseline build read its decoder threads from this variable.
    env["NSAT_DECODE_THREADS"] = str(threads)
    return env


def mosaic(path, size):
    if os.path.exists(path):
        return path
    source = gdal.Open(NAIP)
    rgb = source.ReadAsArray(band_list=[1, 2, 3])
    reps = (1, -(-size // rgb.shape[1]), -(-size // rgb.shape[2]))
    tiled = np.tile(rgb, reps)[:, :size, :size]
    out = gdal.GetDriverByName("GTiff").Create(path, size, size, 3, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=ZSTD"])
    out.SetProjection(source.GetProjection())
    out.SetGeoTransform(source.GetGeoTransform())
    out.WriteRaster(0, 0, size, size, tiled.tobytes())
    out = None
    return path


def translate(source, target, fmt, options, env=None):
    if os.path.exists(target):
        return target
    command = ["gdal_translate", "-q", "-of", fmt, source, target]
    for option in options:
        command[5:5] = ["-co", option]
    subprocess.run(command, check=True, env=env or os.environ.copy())
    return target


def megapixels(path):
    d = gdal.Open(path)
    return d.RasterXSize * d.RasterYSize / 1e6


def window_script(path, count, size=512, seed=3):
    return ("import random,time,sys\nfrom osgeo import gdal\nd=gdal.Open(sys.argv[1])\n"
            f"r=random.Random({seed});t=time.perf_counter()\n"
            f"for _ in range({count}):\n"
            f"  x=r.randrange(0,d.RasterXSize-{size});y=r.randrange(0,d.RasterYSize-{size})\n"
            f"  d.ReadAsArray(x,y,{size},{size})\n"
            f"print((time.perf_counter()-t)/{count})")


QGIS_RENDER = r"""
import os, sys, time
from qgis.core import QgsApplication, QgsRasterLayer, QgsMapSettings, QgsMapRendererSequentialJob
from qgis.PyQt.QtCore import QSize
app = QgsApplication([], False); app.initQgis()
layer = QgsRasterLayer(sys.argv[1], "scene", "gdal")
assert layer.isValid()
settings = QgsMapSettings(); settings.setLayers([layer]); settings.setOutputSize(QSize(1024, 1024))
settings.setExtent(layer.extent()); settings.setDestinationCrs(layer.crs())
start = time.perf_counter()
job = QgsMapRendererSequentialJob(settings); job.start(); job.waitForFinished()
print(time.perf_counter() - start, flush=True)
os._exit(0)  # exitQgis() tears down GDAL's drivers and crashes at exit (see test_qgis.py)
"""


def python_seconds(code, path, env):
    result = subprocess.run(["/usr/bin/python3", "-c", code, path], capture_output=True, text=True,
                            env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return float(result.stdout.strip().splitlines()[-1])


def main():
    os.makedirs(ARGS.out, exist_ok=True)
    work = ARGS.work or tempfile.mkdtemp(prefix="bench_decode_")
    os.makedirs(work, exist_ok=True)
    new, base = ARGS.plugin_dir, ARGS.baseline_plugin_dir
    results = {"machine": machine(), "baseline": ARGS.baseline_name, "repeats": ARGS.repeats}

    rgb = mosaic(os.path.join(work, "rgb4096.tif"), 4096)
    files = {
        "rgb4096": {
            "NSAT MULTIRATE": translate(rgb, os.path.join(work, "rgb.nsat"), "NSAT", ["CODEC=MULTIRATE", "QUALITY=75"]),
            "NSAT LOSSLESS": translate(rgb, os.path.join(work, "rgb_lossless.nsat"), "NSAT", ["CODEC=LOSSLESS"]),
            "JP2OpenJPEG": translate(rgb, os.path.join(work, "rgb.jp2"), "JP2OpenJPEG", ["QUALITY=10", "RESOLUTIONS=6"]),
            "GTiff JPEG": translate(rgb, os.path.join(work, "rgb_jpeg.tif"), "GTiff",
                                    ["COMPRESS=JPEG", "TILED=YES", "JPEG_QUALITY=85"]),
        },
        "naip": {
            "NSAT MULTIRATE": translate(NAIP, os.path.join(work, "naip.nsat"), "NSAT", ["CODEC=MULTIRATE", "QUALITY=75"]),
            "NSAT FIXED_QUALITY": translate(NAIP, os.path.join(work, "naip_fq.nsat"), "NSAT",
                                            ["CODEC=FIXED_QUALITY", "TARGET_PSNR=30"]),
            "NSAT LOSSLESS": translate(NAIP, os.path.join(work, "naip_lossless.nsat"), "NSAT", ["CODEC=LOSSLESS"]),
            "JP2OpenJPEG": translate(NAIP, os.path.join(work, "naip.jp2"), "JP2OpenJPEG", ["QUALITY=10"]),
            "GTiff JPEG": translate(NAIP, os.path.join(work, "naip_jpeg.tif"), "GTiff",
                                    ["COMPRESS=JPEG", "TILED=YES", "JPEG_QUALITY=85"]),
        },
    }
    if not ARGS.skip_10k:
        big = mosaic(os.path.join(work, "rgb10k.tif"), 10240)
        files["rgb10k"] = {"NSAT MULTIRATE": translate(big, os.path.join(work, "rgb10k.nsat"), "NSAT",
                                                       ["CODEC=MULTIRATE", "QUALITY=75"])}

    out_tif = os.path.join(work, "decoded.tif")
    with paused(ARGS.pause_pid):
        # Open cost: gdalinfo, this build (and the baseline for the learned files).
        info = {}
        for scene in ("naip", "rgb4096"):
            for name, path in files[scene].items():
                seconds, rss = run_timed(["gdalinfo", path], env_for(new, 2), ARGS.repeats)
                info[f"{scene} {name}"] = {"seconds": seconds, "peak_rss_mib": rss}
                if name.startswith("NSAT") and name != "NSAT LOSSLESS":
                    seconds, rss = run_timed(["gdalinfo", path], env_for(base, 2), ARGS.repeats)
                    info[f"{scene} {name} ({ARGS.baseline_name})"] = {"seconds": seconds, "peak_rss_mib": rss}
        results["gdalinfo"] = info

        # Full decode to an uncompressed GTiff.
        decode = {}
        for scene in ("rgb4096", "naip"):
            for name, path in files[scene].items():
                builds = [("", new)] + ([(f" ({ARGS.baseline_name})", base)]
                                        if name in ("NSAT MULTIRATE", "NSAT FIXED_QUALITY") else [])
                for suffix, plugin in builds:
                    for threads in (1, 2):
                        seconds, rss = run_timed(["gdal_translate", "-q", "-of", "GTiff", path, out_tif],
                                                 env_for(plugin, threads), ARGS.repeats)
                        decode[f"{scene} {name}{suffix} threads={threads}"] = {
                            "seconds": seconds, "mp_per_s": megapixels(path) / seconds,
                            "peak_rss_mib": rss}
        results["decode"] = decode

        # 512^2 windows at random positions, fresh process, 2 threads.
        windows = {}
        for name, path in files["rgb4096"].items():
            windows[name] = python_seconds(window_script(path, ARGS.windows), path, env_for(new, 2))
        windows[f"NSAT MULTIRATE ({ARGS.baseline_name})"] = python_seconds(
            window_script(files["rgb4096"]["NSAT MULTIRATE"], ARGS.windows),
            files["rgb4096"]["NSAT MULTIRATE"], env_for(base, 2))
        results["window_512_seconds"] = windows

        # QGIS: full extent into 1024 x 1024 (overviews used), 2 threads.
        qgis = {}
        env = {**env_for(new, 2), "QT_QPA_PLATFORM": "offscreen"}
        for name, path in files["rgb4096"].items():
            qgis[name] = python_seconds(QGIS_RENDER, path, env)
        results["qgis_render_seconds"] = qgis

        if "rgb10k" in files:
            # Peak memory with GDAL's block cache capped at 64 MiB (by default it may grow
            # to 5 % of RAM with decoded blocks, whatever the driver does): the decoder's own
            # memory must not grow with the scene.
            big = {}
            for scene in ("rgb4096", "rgb10k"):
                path = files[scene]["NSAT MULTIRATE"]
                for t in (1, 2):
                    env = {**env_for(new, t), "GDAL_CACHEMAX": "64"}
                    seconds, rss = run_timed(["gdal_translate", "-q", "-of", "GTiff", path, out_tif],
                                             env, repeats=1)
                    big[f"{scene} threads={t}"] = {"seconds": seconds, "mp_per_s": megapixels(path) / seconds,
                                                   "peak_rss_mib": rss}
            results["cache64_decode"] = big

        kernel = subprocess.run([os.path.join(ARGS.plugin_dir, "nsat_kernel_bench"), "5"],
                                capture_output=True, text=True, check=True)
        results["kernels"] = json.loads(kernel.stdout)

    macs = subprocess.run(["/usr/bin/python3", "-c", MACS_SCRIPT, os.path.join(REPO, "models", "multirate-rgb8")],
                          capture_output=True, text=True)
    results["kmac_per_pixel"] = float(macs.stdout.strip()) / 1e3 if macs.returncode == 0 else None
    with open(os.path.join(ARGS.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_report(results)
    plot(results)
    print(json.dumps(results, indent=1))


# kMAC per output pixel of g_s from the synthesis weights' shapes (conv + inverse GDN).
MACS_SCRIPT = r"""
import sys, torch
m = torch.jit.load(sys.argv[1] + "/synthesis.pt")
p = dict(m.named_parameters())
total, scale = 0.0, 1 / 256
for i in (0, 3, 6, 9):
    w = p[f"g_s.{i}.weight"]
    total += scale * w.shape[0] * w.shape[1] * 9
    scale *= 4
    if i != 9:
        c = w.shape[0] // 4
        total += scale * c * c
print(total)
"""


def write_report(r):
    d, base = r["decode"], r["baseline"]
    lines = ["# Decode benchmark (learned codecs)", "",
             f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, SIMD {', '.join(r['machine']['simd'])}, "
             f"{r['machine']['memory_gib']} GiB; medians of {r['repeats']} runs, each in a fresh process; "
             f"baseline = {base}, run in the same session.", ""]
    lines += ["## Full decode (gdal_translate to GTiff)", "", "| scene, codec | threads | s | MP/s | peak RSS MiB |",
              "|---|---|---|---|---|"]
    for key, value in d.items():
        scene_codec, threads = key.rsplit(" threads=", 1)
        lines.append(f"| {scene_codec} | {threads} | {value['seconds']:.2f} | {value['mp_per_s']:.2f} | "
                     f"{value['peak_rss_mib']:.0f} |")
    for scene in ("rgb4096", "naip"):
        new2 = d.get(f"{scene} NSAT MULTIRATE threads=2")
        old2 = d.get(f"{scene} NSAT MULTIRATE ({base}) threads=2")
        new1 = d.get(f"{scene} NSAT MULTIRATE threads=1")
        if new2 and old2 and new1:
            lines += ["", f"- {scene} MULTIRATE: {old2['seconds'] / new2['seconds']:.2f}x faster than {base} "
                      f"on 2 threads; 2 threads vs 1: {new1['seconds'] / new2['seconds']:.2f}x."]
    lines += ["", "## gdalinfo", "", "| file | s | peak RSS MiB |", "|---|---|---|"]
    for key, value in r["gdalinfo"].items():
        lines.append(f"| {key} | {value['seconds']:.3f} | {value['peak_rss_mib']:.0f} |")
    info = r["gdalinfo"]
    for scene in ("naip", "rgb4096"):
        lossless = info[f"{scene} NSAT LOSSLESS"]["seconds"]
        lines.append(f"\n- {scene}: MULTIRATE gdalinfo / LOSSLESS gdalinfo = "
                     f"{info[f'{scene} NSAT MULTIRATE']['seconds'] / lossless:.2f}")
    lines += ["", "## 512 x 512 windows at random positions (rgb4096, 2 threads, fresh process)", "",
              "| file | s per window |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in r["window_512_seconds"].items()]
    lines += ["", "## QGIS render of the full extent into 1024 x 1024 (rgb4096)", "", "| file | s |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in r["qgis_render_seconds"].items()]
    if "cache64_decode" in r:
        lines += ["", "## MULTIRATE decode with GDAL_CACHEMAX=64: memory against scene size", "",
                  "| scene | threads | s | MP/s | peak RSS MiB |", "|---|---|---|---|---|"]
        for key, v in r["cache64_decode"].items():
            scene, threads = key.split(" threads=")
            lines.append(f"| {scene} | {threads} | {v['seconds']:.2f} | {v['mp_per_s']:.2f} | {v['peak_rss_mib']:.0f} |")
    k = r["kernels"]
    lines += ["", "## Synthesis kernels (one thread, layer shapes of a 256 px RGB tile)", "",
              f"Measured FMA peak of one core: AVX2 {k['fma_peak_gmacs_avx2']:.1f} GMAC/s"
              + (f", AVX-512 {k['fma_peak_gmacs_avx512']:.1f} GMAC/s" if "fma_peak_gmacs_avx512" in k else ""), "",
              "| instruction set | arithmetic | GMAC/s | % of that set's FMA peak |", "|---|---|---|---|"]
    for kernel in k["kernels"]:
        peak = k.get(f"fma_peak_gmacs_{kernel['isa']}", k["fma_peak_gmacs_avx2"])
        lines.append(f"| {kernel['isa']} | {kernel['arithmetic']} | {kernel['gmacs']:.1f} | "
                     f"{100 * kernel['gmacs'] / peak:.0f} % |")
    if r.get("kmac_per_pixel"):
        one = d.get("rgb4096 NSAT MULTIRATE threads=1")
        lines += ["", f"g_s costs {r['kmac_per_pixel']:.2f} kMAC per pixel; the whole decode on one thread "
                  f"(entropy decoding, hyper-synthesis, I/O included) runs at {one['mp_per_s']:.2f} MP/s = "
                  f"{one['mp_per_s'] * r['kmac_per_pixel']:.1f} GMAC/s of synthesis."]
    with open(os.path.join(ARGS.out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(r):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in r["decode"] if k.startswith("rgb4096")]
    values = [r["decode"][k]["mp_per_s"] for k in keys]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(keys) + 1))
    ax.barh(range(len(keys)), values, color=["C0" if "NSAT" in k else "C7" for k in keys])
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([k.replace("rgb4096 ", "") for k in keys], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("full decode, MP/s (log scale)")
    ax.set_title(f"4096² RGB decode, {r['machine']['cpu']}")
    fig.tight_layout()
    fig.savefig(os.path.join(ARGS.out, "decode_speed.png"), dpi=110)


if __name__ == "__main__":
    main()
