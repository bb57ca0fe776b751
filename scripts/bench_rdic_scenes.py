#!/usr/bin/python3
"""RDIC on large scenes: land-cover map agreement at equal bytes (issue 19).

Each scene (8-bit RGB; UInt16/Int16 scenes are stretched to 8 bits, below) is coded with
NSAT CODEC=RDIC RELEVANCE_WINDOW=64 (each 64 px window explained for its own class, each
window's map normalised) with RELEVANCE_SHARE settings, BLOCKSIZE 256 and OVERVIEWS=NONE, and
with NSAT CODEC=JPEG (same BLOCKSIZE) at the quality whose whole-file size is closest to the
RDIC file's (binary search over 1..100). The land-cover map of a decoded scene is the label of
each complete 64 px window (a grid from the top-left corner) by a classifier; agreement is the
share of windows whose label on the decoded scene equals the label on the original. Two
classifiers: the analysis model (models/rdic-classifier-rgb8-v2, whose relevance RDIC uses)
and the second classifier of scripts/bench_rdic.py (maxpool). RDIC and JPEG are compared per
window with an exact McNemar test on "label kept" (windows of one scene are not independent,
so the p-values are optimistic).

For each relevance setting the codec's own LRP runs once (ROI 100, BG 50); the other
ROI/BG qualities reuse its cells through ROI_MASK (read back from NSAT_AUX), which only
changes the JPEG qualities (checked byte-identical on the first scene).

Scenes (paths under --data):
  naip      geotiff/opengeos_naip/m_4709963_se_14_1_20090818.tif bands 1-3, 934x724, 5 m
  aerial    aerial/deepforest/5dded5bc0140b80006d2e565_23.tif, 2048x2048, 0.1 m (JPEG q75
            inside its GeoTIFF already: the reference is its decoded pixels)
  landsat8  geotiff/landsat8_rio-pansharpen/.../LC81070352015122LGN00_B{4,3,2}.tif, centre
            1024x1024 (no nodata there), 150 m, UInt16 stretched
  sentinel2 sentinel2/sen1floods11/Spain_7370579_S2Hand.tif B4/B3/B2, 512x512, 10 m (the
            GSD EuroSAT has), Int16 stretched
  Stretch: per band, linear from the scene's 2nd/98th percentile to EuroSAT RGB's (train
  split sample), clipped to 0..255 and rounded.

Writes scenes.json (and scenes_maps.png) in --out; `scripts/bench_rdic.py --report-only`
puts them into report.md / results.json.

Usage: /usr/bin/python3 scripts/bench_rdic_scenes.py [--out scripts/results/rdic]
    [--settings SHARE:ROI:BG,...; default the 9 of report.md] [--scenes naip,aerial,...]
    [--second-model PATH] [--wait-second S] [--blocksize 256] [--threads 1]
"""
import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECOND_DEFAULT = os.path.join(REPO, "scripts", "learned", "eval_models", "landcover-maxpool",
                              "classifier.pt")
SECOND_FALLBACK = os.path.join(REPO, "runs", "classifier-maxpool", "export", "classifier.pt")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data")))
    p.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "rdic"))
    p.add_argument("--settings", default="0.5:100:50,0.5:95:70,0.5:90:70,0.7:100:50,0.7:95:70,0.7:90:70,0.9:100:50,0.9:95:70,0.9:90:70",
                   help="RELEVANCE_SHARE:ROI_QUALITY:BG_QUALITY triples (the first of each share "
                        "runs the codec's LRP; the others reuse its cells)")
    p.add_argument("--scenes", default="naip,aerial,landsat8,sentinel2")
    p.add_argument("--blocksize", type=int, default=256)
    p.add_argument("--window", type=int, default=64, help="RELEVANCE_WINDOW and map window (64)")
    p.add_argument("--model", default="rdic-classifier-rgb8-v2")
    p.add_argument("--second-model", default=None)
    p.add_argument("--wait-second", type=float, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="512x512 centre crops")
    return p.parse_args()


ARGS = parse_args()
os.environ.setdefault("GDAL_DRIVER_PATH", os.path.join(REPO, "build"))
os.environ["GDAL_PAM_ENABLED"] = "NO"
os.environ["GDAL_NUM_THREADS"] = str(ARGS.threads)

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402
import torch  # noqa: E402

gdal.UseExceptions()
torch.set_num_threads(ARGS.threads)
VSI = "/vsimem/bench_rdic_scenes"
CELL = 16
MODELS = ("analysis", "second")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import file_sha256, mcnemar_p  # noqa: E402


def log(message):
    print(message, file=sys.stderr, flush=True)


def eurosat_percentiles():
    """EuroSAT RGB per-band 2nd/98th percentiles, from every 20th train image."""
    import csv
    files = []
    with open(os.path.join(ARGS.data, "eurosat_rgb_splits.csv"), newline="") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): (v or "").strip() for k, v in row.items()}
            if row["split"] == "train":
                files.append(os.path.join(ARGS.data, "eurosat_rgb", row["class"], os.path.basename(row["file"])))
    files = files[::20]
    pixels = np.stack([gdal.Open(p).ReadAsArray() for p in files]).astype(np.float64)
    return [np.percentile(pixels[:, c], [2, 98]).tolist() for c in range(3)], len(files)


def stretch(bands, target):
    out = []
    for b, (t_lo, t_hi) in zip(bands, target):
        b = b.astype(np.float64)
        valid = b > 0
        lo, hi = np.percentile(b[valid], [2, 98])
        y = t_lo + (b - lo) * (t_hi - t_lo) / (hi - lo)
        out.append(np.clip(np.round(y), 0, 255).astype(np.uint8))
    return np.stack(out)


def centre(array, size):
    h, w = array.shape[-2:]
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return array[..., y0:y0 + size, x0:x0 + size], (x0, y0)


def load_scene(name, target):
    d = ARGS.data
    if name == "naip":
        path = os.path.join(d, "geotiff/opengeos_naip/m_4709963_se_14_1_20090818.tif")
        ds = gdal.Open(path)
        rgb = np.stack([ds.GetRasterBand(b).ReadAsArray() for b in (1, 2, 3)])
        info = dict(description="NAIP 2009 quarter-quad, bands 1-3 (R, G, B), resampled to 5 m",
                    gsd="5 m", source=os.path.relpath(path, d))
    elif name == "aerial":
        path = os.path.join(d, "aerial/deepforest/5dded5bc0140b80006d2e565_23.tif")
        rgb = gdal.Open(path).ReadAsArray()
        info = dict(description="0.1 m aerial tile (Brazil, bare fields; stored as JPEG q75 in its GeoTIFF)",
                    gsd="0.1 m", source=os.path.relpath(path, d))
    elif name == "landsat8":
        pattern = os.path.join(d, "geotiff/landsat8_rio-pansharpen/LC81070352015122LGN00/LC81070352015122LGN00_B{}.tif")
        raw = np.stack([gdal.Open(pattern.format(b)).ReadAsArray() for b in (4, 3, 2)])
        raw, (x0, y0) = centre(raw, 1024)
        rgb = stretch(raw, target)
        info = dict(description=f"Landsat 8 OLI B4/B3/B2 (Kanto, 2015-05-02) at 150 m, centre 1024x1024 "
                                f"crop (x {x0}, y {y0}), UInt16 stretched to 8 bits",
                    gsd="150 m", source=os.path.relpath(pattern.format("{4,3,2}"), d))
    elif name == "sentinel2":
        path = os.path.join(d, "sentinel2/sen1floods11/Spain_7370579_S2Hand.tif")
        ds = gdal.Open(path)
        raw = np.stack([ds.GetRasterBand(b).ReadAsArray() for b in (4, 3, 2)])
        rgb = stretch(raw, target)
        info = dict(description="Sentinel-2 L1C B4/B3/B2 (SE Spain floods, Sen1Floods11), Int16 "
                                "stretched to 8 bits", gsd="10 m", source=os.path.relpath(path, d))
    else:
        raise ValueError(name)
    if ARGS.quick:
        rgb, _ = centre(rgb, 512)
    return np.ascontiguousarray(rgb), info


def to_vsi(rgb, path):
    ds = gdal.GetDriverByName("GTiff").Create(path, rgb.shape[2], rgb.shape[1], 3, gdal.GDT_Byte)
    for i in range(3):
        ds.GetRasterBand(i + 1).WriteArray(rgb[i])
    ds = None
    return gdal.Open(path)


def encode(src, driver, options, stem, aux=False):
    ext = {"NSAT": ".nsat", "PNG": ".png"}[driver]
    path = f"{VSI}/{stem}{ext}"
    opts = list(options) + (["OVERVIEWS=NONE", f"NUM_THREADS={ARGS.threads}"] if driver == "NSAT" else [])
    start = time.perf_counter()
    gdal.Translate(path, src, format=driver, creationOptions=opts)
    seconds = time.perf_counter() - start
    size = gdal.VSIStatL(path).size
    ds = gdal.Open(path)
    decoded = ds.ReadAsArray()
    cells = None
    payload = None
    if driver == "NSAT":
        payload = float(ds.GetMetadataItem("NSAT_BITS_PER_PIXEL", "IMAGE_STRUCTURE")) * \
            ds.RasterXSize * ds.RasterYSize / 8
    if aux:
        cells = gdal.Open(f"NSAT_AUX:{path}").ReadAsArray().astype(np.float32)
    ds = None
    gdal.Unlink(path)
    return dict(file_bytes=size, payload_bytes=payload, decoded=decoded, cells=cells, seconds=seconds)


def write_mask(cells, width, height, path):
    pixels = np.kron(cells.astype(np.uint8), np.ones((CELL, CELL), np.uint8))[:height, :width]
    ds = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal.GDT_Byte)
    ds.GetRasterBand(1).WriteArray(pixels)
    ds = None


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def windows(rgb, w):
    """Complete w x w windows on a grid from the top-left corner: (N, 3, w, w)."""
    _, h, wd = rgb.shape
    ny, nx = h // w, wd // w
    x = rgb[:, :ny * w, :nx * w].reshape(3, ny, w, nx, w).transpose(1, 3, 0, 2, 4)
    return np.ascontiguousarray(x.reshape(ny * nx, 3, w, w)), (ny, nx)


def predictor(path, classes):
    module = torch.jit.load(path, map_location="cpu").eval()
    card_path = os.path.join(os.path.dirname(path), "card.json")
    card = json.load(open(card_path)) if os.path.exists(card_path) else {}
    own = card.get("classes", classes)
    remap = np.array([classes.index(c) for c in own])

    def predict(batch):
        with torch.no_grad():
            out = [module(torch.from_numpy(batch[i:i + 256]).float()).argmax(1).numpy()
                   for i in range(0, len(batch), 256)]
        return remap[np.concatenate(out)]
    return predict, card


def second_path(wait):
    candidates = [ARGS.second_model] if ARGS.second_model else [SECOND_DEFAULT, SECOND_FALLBACK]
    deadline = time.time() + wait
    while True:
        for p in candidates:
            if os.path.exists(p) and (ARGS.second_model or os.path.exists(os.path.join(os.path.dirname(p), "card.json"))):
                size = os.path.getsize(p)
                time.sleep(2)
                if os.path.getsize(p) == size:
                    return p
        if time.time() >= deadline:
            return None
        time.sleep(20)


def jpeg_at(src, target, stem):
    """NSAT JPEG whose whole-file size is closest to target bytes (binary search on quality)."""
    done = {}

    def get(q):
        if q not in done:
            done[q] = encode(src, "NSAT", ["CODEC=JPEG", f"QUALITY={q}", f"BLOCKSIZE={ARGS.blocksize}"],
                             f"{stem}_j{q}")
        return done[q]
    lo, hi = 1, 100
    if get(hi)["file_bytes"] <= target:
        q = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if get(mid)["file_bytes"] <= target:
                lo = mid
            else:
                hi = mid
        if get(lo)["file_bytes"] > target:
            q = lo
        else:
            q = lo if target - get(lo)["file_bytes"] <= get(hi)["file_bytes"] - target else hi
    return dict(get(q), quality=q)


def settings():
    out = []
    for triple in ARGS.settings.split(","):
        share, roi, bg = triple.split(":")
        out.append((float(share), int(roi), int(bg)))
    return out


def setting_key(share, roi, bg):
    return f"rdic_s{int(round(100 * share)):02d}" + ("" if roi == 100 else f"_roi{roi}") + \
        ("" if bg == 50 else f"_bg{bg}")


def run_scene(name, rgb, info, classes, analysis_predict, verify):
    stem = f"s_{name}"
    src_path, mask_path = f"{VSI}/{stem}.tif", f"{VSI}/{stem}_mask.tif"
    src = to_vsi(rgb, src_path)
    _, height, width = rgb.shape
    entry = dict(info, width=width, height=height, blocksize=ARGS.blocksize, rows={}, checks=[])
    decoded = {"original": rgb}
    png = encode(src, "PNG", [], stem)
    entry["rows"]["png"] = dict(label="PNG", file_bytes=png["file_bytes"])
    lrp_cells = {}
    for share, roi, bg in settings():
        key = setting_key(share, roi, bg)
        base = ["CODEC=RDIC", f"BLOCKSIZE={ARGS.blocksize}", f"RELEVANCE_WINDOW={ARGS.window}"]
        qual = [f"ROI_QUALITY={roi}", f"BG_QUALITY={bg}"]
        if share not in lrp_cells:
            r = encode(src, "NSAT", base + [f"RELEVANCE_SHARE={share:g}"] + qual, f"{stem}_{key}", aux=True)
            lrp_cells[share] = r["cells"]
            how = "codec LRP"
        else:
            write_mask(lrp_cells[share], width, height, mask_path)
            r = encode(src, "NSAT", ["CODEC=RDIC", f"BLOCKSIZE={ARGS.blocksize}", f"ROI_MASK={mask_path}"] + qual,
                       f"{stem}_{key}", aux=True)
            if not np.array_equal(r["cells"], lrp_cells[share]):
                raise RuntimeError(f"{key}: NSAT_AUX cells differ from the ROI_MASK given")
            how = "cells of the LRP row via ROI_MASK"
            if verify:
                direct = encode(src, "NSAT", base + [f"RELEVANCE_SHARE={share:g}"] + qual, f"{stem}_{key}_v", aux=True)
                entry["checks"].append(dict(row=key, file_bytes_lrp=direct["file_bytes"],
                                            file_bytes_mask=r["file_bytes"],
                                            payload_lrp=direct["payload_bytes"], payload_mask=r["payload_bytes"],
                                            pixels_equal=bool(np.array_equal(direct["decoded"], r["decoded"])),
                                            cells_equal=bool(np.array_equal(direct["cells"], r["cells"]))))
                verify = False
        j = jpeg_at(src, r["file_bytes"], f"{stem}_{key}")
        decoded[key], decoded[f"jpeg_at_{key}"] = r["decoded"], j["decoded"]
        entry["rows"][key] = dict(
            label=f"RDIC RELEVANCE_SHARE={share:g} ROI {roi} BG {bg}", options=base[1:] + [f"RELEVANCE_SHARE={share:g}"] + qual,
            how=how, file_bytes=r["file_bytes"], relevant_cells=float(np.nanmean(r["cells"])),
            payload_bytes=r["payload_bytes"], encode_s=r["seconds"], psnr=psnr(rgb, r["decoded"]))
        entry["rows"][f"jpeg_at_{key}"] = dict(
            label=f"&nbsp;&nbsp;JPEG q{j['quality']} at its file bytes", quality=j["quality"],
            file_bytes=j["file_bytes"], payload_bytes=j["payload_bytes"], psnr=psnr(rgb, j["decoded"]))
        log(f"  {name} {key}: {r['file_bytes']} B ({100 * r['file_bytes'] / png['file_bytes']:.1f} % of PNG, "
            f"{100 * entry['rows'][key]['relevant_cells']:.0f} % cells, {r['seconds']:.0f} s), JPEG q{j['quality']} "
            f"{j['file_bytes']} B")
    for k, r in entry["rows"].items():
        r["percent_png"] = 100.0 * r["file_bytes"] / png["file_bytes"]
        r["bpp"] = 8.0 * r["file_bytes"] / (width * height)
    src = None
    for p in (src_path, mask_path):
        if gdal.VSIStatL(p) is not None:
            gdal.Unlink(p)
    wins, grid = {}, None
    for k, img in decoded.items():
        wins[k], grid = windows(img, ARGS.window)
    entry["windows_valid"] = int(len(wins["original"]))
    entry["grid"] = list(grid)
    labels = {"analysis": {k: analysis_predict(v) for k, v in wins.items()}}
    return entry, wins, labels, lrp_cells


def agreement(entry, labels):
    for m, lab in labels.items():
        ref = lab["original"]
        for k in entry["rows"]:
            if k == "png":
                continue
            entry["rows"][k].setdefault("agreement", {})[m] = float(np.mean(lab[k] == ref))
        entry.setdefault("paired", {})[m] = {}
        for k in entry["rows"]:
            if k.startswith("rdic"):
                a, b = lab[k] == ref, lab[f"jpeg_at_{k}"] == ref
                only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
                entry["paired"][m][f"{k}|jpeg_at_{k}"] = dict(only_a=only_a, only_b=only_b,
                                                              p=mcnemar_p(only_a, only_b))
        entry.setdefault("labels", {})[m] = {k: "".join(map(str, v.tolist())) for k, v in lab.items()}


def plot(results, images, cells, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    scenes = [s for s in results["scenes"] if "error" not in results["scenes"][s]]
    if not scenes:
        return None
    key = results["figure_setting"]
    fig, axes = plt.subplots(len(scenes), 4, figsize=(16, 4 * len(scenes)), squeeze=False)
    cmap = ListedColormap(plt.cm.tab10.colors)
    for row, name in zip(axes, scenes):
        e = results["scenes"][name]
        rgb = np.transpose(images[name], (1, 2, 0))
        ny, nx = e["grid"]
        w = ARGS.window
        row[0].imshow(rgb)
        row[0].set_title(f"{name}: {e['width']}x{e['height']}, GSD {e['gsd']}", fontsize=9)
        c = cells[name]
        mask = np.kron(c, np.ones((CELL, CELL)))[:e["height"], :e["width"]]
        row[1].imshow((rgb * (0.3 + 0.7 * mask[:, :, None])).astype(np.uint8))
        row[1].set_title(f"RDIC mask of {key} ({100 * np.nanmean(c):.0f} % of cells bright)", fontsize=9)
        lab = np.array([int(ch) for ch in e["labels"]["analysis"]["original"]]).reshape(ny, nx)
        row[2].imshow(rgb)
        row[2].imshow(np.kron(lab, np.ones((w, w))), cmap=cmap, vmin=-0.5, vmax=9.5, alpha=0.5,
                      extent=(0, nx * w, ny * w, 0))
        present = sorted(set(lab.ravel().tolist()))
        from matplotlib.patches import Patch
        row[2].legend(handles=[Patch(color=cmap(i), label=results["classes"][i]) for i in present],
                      fontsize=6, loc="lower left", framealpha=0.8)
        row[2].set_title("analysis model's land-cover map on the original", fontsize=9)
        changed_r = np.array([a != b for a, b in zip(e["labels"]["analysis"][key], e["labels"]["analysis"]["original"])]).reshape(ny, nx)
        changed_j = np.array([a != b for a, b in zip(e["labels"]["analysis"][f"jpeg_at_{key}"], e["labels"]["analysis"]["original"])]).reshape(ny, nx)
        code = changed_r * 1 + changed_j * 2
        row[3].imshow(rgb, alpha=0.5)
        row[3].imshow(np.kron(code, np.ones((w, w))), cmap=ListedColormap([(0, 0, 0, 0), "red", "blue", "purple"]),
                      vmin=-0.5, vmax=3.5, extent=(0, nx * w, ny * w, 0), alpha=0.7)
        row[3].set_title(f"label changed: red RDIC only, blue JPEG only, purple both\n"
                         f"(RDIC {changed_r.sum()}, JPEG q{e['rows']['jpeg_at_' + key]['quality']} "
                         f"{changed_j.sum()} of {ny * nx} windows)", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = os.path.join(out, "scenes_maps.png")
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def main():
    start = time.perf_counter()
    out = os.path.abspath(ARGS.out)
    os.makedirs(out, exist_ok=True)
    import subprocess
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    model_dir = os.path.join(REPO, "models", ARGS.model)
    card = json.load(open(os.path.join(model_dir, "card.json")))
    classes = card["classes"]
    analysis_predict, _ = predictor(os.path.join(model_dir, "classifier.pt"), classes)
    target, n_eurosat = eurosat_percentiles()
    results = dict(meta=dict(
        date=f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}", cpu=cpu,
        command=" ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
        load_at_start="/".join(f"{x:.2f}" for x in os.getloadavg()),
        analysis=dict(path=os.path.relpath(os.path.join(model_dir, "classifier.pt"), REPO),
                      sha256=file_sha256(os.path.join(model_dir, "classifier.pt"))),
        stretch_target=dict(percentiles_2_98=target, eurosat_train_images=n_eurosat),
        method=(f"RDIC: CODEC=RDIC RELEVANCE_WINDOW={ARGS.window} BLOCKSIZE={ARGS.blocksize} OVERVIEWS=NONE; "
                "JPEG: NSAT CODEC=JPEG, same BLOCKSIZE, quality whose whole-file size is closest to "
                f"the RDIC file's. Agreement: share of complete {ARGS.window} px windows whose label "
                "on the decoded scene equals the label on the original; p: exact McNemar on "
                "windows (RDIC vs JPEG), optimistic since neighbouring windows are correlated.")),
        classes=classes, scenes={})
    images, cells, all_wins, all_labels = {}, {}, {}, {}
    first = True
    for name in ARGS.scenes.split(","):
        try:
            rgb, info = load_scene(name, target)
            log(f"scene {name}: {rgb.shape[2]}x{rgb.shape[1]}")
            entry, wins, labels, lrp = run_scene(name, rgb, info, classes, analysis_predict, verify=first)
            first = False
            results["scenes"][name] = entry
            images[name] = rgb
            cells[name] = lrp[settings()[0][0]]
            all_wins[name], all_labels[name] = wins, labels
        except Exception as error:  # noqa: BLE001
            log(f"  FAILED scene {name}: {type(error).__name__}: {error}")
            results["scenes"][name] = dict(error=f"{type(error).__name__}: {error}")
    path = second_path(ARGS.wait_second)
    if path:
        second_predict, second_card = predictor(path, classes)
        results["meta"]["second"] = dict(path=os.path.relpath(path, REPO), name=second_card.get("id"),
                                         sha256=file_sha256(path))
        for name, wins in all_wins.items():
            all_labels[name]["second"] = {k: second_predict(v) for k, v in wins.items()}
    else:
        results["meta"]["second"] = dict(error="no second classifier found")
    for name, labels in all_labels.items():
        agreement(results["scenes"][name], labels)
    # Pooled over every scene's windows.
    overall = {}
    keys = [setting_key(*s) for s in settings()]
    for k in keys + [f"jpeg_at_{k}" for k in keys]:
        overall[k] = {}
        for m in MODELS:
            agree = total = 0
            for name, labels in all_labels.items():
                if m in labels:
                    agree += int(np.sum(labels[m][k] == labels[m]["original"]))
                    total += len(labels[m]["original"])
            if total:
                overall[k][m] = dict(agreement=agree / total, windows=total)
    results["overall"] = overall
    results["figure_setting"] = keys[0]
    notes = [
        "GSD: the classifiers were trained on EuroSAT (Sentinel-2, 10 m, 64 px = 640 m). Only the "
        "Sentinel-2 scene has that GSD; NAIP (5 m) is near it; Landsat 8 here is 150 m (a 64 px "
        "window is 9.6 km) and the aerial tile 0.1 m (6.4 m windows), so their labels are not "
        "meaningful land-cover classes. Agreement still measures how much of the classifier's "
        "decision the codec keeps, which is what the floor asks.",
        f"Stretch of the 16-bit scenes: per band linearly from the scene's 2nd/98th percentile to "
        f"EuroSAT RGB's ({', '.join(f'{lo:.0f}/{hi:.0f}' for lo, hi in target)} for R, G, B; every "
        f"20th train image), clipped to 0..255.",
        "Sizes are whole files (OVERVIEWS=NONE), header included; PNG is GDAL PNG (ZLEVEL 6).",
        "The aerial tile is stored as JPEG q75 in its GeoTIFF: NSAT JPEG re-codes those pixels on "
        "the same 8x8 grid and reaches > 50 dB at equal bytes, which favours JPEG on that scene. "
        "It also has most of the pooled windows (1024 of the total); see the per-scene rows.",
    ]
    for name, e in results["scenes"].items():
        for c in e.get("checks", []):
            notes.append(f"Check on {name}: `{c['row']}` through ROI_MASK against the codec's own LRP "
                         f"with the same options: payload {c['payload_mask']:.0f} vs {c['payload_lrp']:.0f} B, "
                         f"pixels {'identical' if c['pixels_equal'] else 'differ'}, cells "
                         f"{'identical' if c['cells_equal'] else 'differ'}; whole file {c['file_bytes_mask']} vs "
                         f"{c['file_bytes_lrp']} B (the header names the mask instead of the model).")
    results["notes"] = notes
    try:
        p = plot(results, images, cells, out)
        results["meta"]["plot"] = os.path.basename(p) if p else None
    except Exception as error:  # noqa: BLE001
        log(f"plot failed: {type(error).__name__}: {error}")
    results["meta"]["elapsed_s"] = time.perf_counter() - start
    results["meta"]["load_at_end"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    for e in results["scenes"].values():
        for r in e.get("rows", {}).values():
            if isinstance(r.get("psnr"), float) and not math.isfinite(r["psnr"]):
                r["psnr"] = None
    with open(os.path.join(out, "scenes.json"), "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {out}/scenes.json ({results['meta']['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
