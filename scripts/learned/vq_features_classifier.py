"""Are the codebook indices of a CODEC=VQ file useful features? (CORSA's claim, checked on EuroSAT.)

CORSA argues that a vector-quantised compressed archive is also a feature store: the
codebook indices can feed an analysis model directly, with no pixel decoding. This
script measures that claim on EuroSAT RGB with few labels, reading everything from
``.nsat`` files the way a user would:

1. A seeded, stratified 10 % of the train split's labels (1,890 images) is the only
   labelled data; the test split (all 3,050 images by default) is the evaluation set.
2. Every used image is encoded with ``gdal.Translate(out, jpeg, format="NSAT",
   creationOptions=["CODEC=VQ", "LEVELS=2"])``; its indices are read with **rasterio**
   from the ``NSAT_LATENT:<file>`` subdataset (one UInt16 band per (level, group), on the
   latent grid = image / 4) and turned into the 32-channel latent embedding with the
   model's ``vq_tables.json`` codebooks: for each group, the sum over the levels read of
   ``codebooks[level][group][index]``; the groups concatenated. The same file is also
   read normally (decoded pixels) for the optional "pixel CNN on VQ pixels" row.
3. Classifiers, each trained from scratch with Adam for the same fixed number of
   epochs, with the same augmentation (random horizontal / vertical flips), per seed:

   * feature CNN on the 32x16x16 embedding grid: conv 32->64 3x3, ReLU, conv 64->64 3x3
     stride 2, ReLU, global average pool, linear 10;
   * pixel CNN on the 64x64 RGB pixels: conv 3->16, 16->32 s2, 32->64 s2, 64->64 s2 (all
     3x3, ReLU), global average pool, linear 10: its last two convolutions match the
     feature CNN's layers, so the comparison is "VQ encoder (trained without labels) as
     the stem" against "a stem learnt from the 1,890 labels";
   * linear probes (logistic regression on global mean + std pooling) of the embeddings
     and, as the trivial colour baseline, of the pixels.

The report (``report.md``) and all numbers (``results.json``) go to ``--out``.

Usage (GDAL_DRIVER_PATH must point at a build of the plugin):

    GDAL_DRIVER_PATH=build /usr/bin/python3 scripts/learned/vq_features_classifier.py \\
        --out scripts/results/vq_features
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="data root (default: datasets.DEFAULT_DATA)")
    p.add_argument("--models-dir", default=None,
                   help="NSAT models folder (sets NSAT_MODELS_DIR); default: the repository's models/")
    p.add_argument("--model", default="vq-rgb8-v1", help="model id whose vq_tables.json holds the codebooks")
    p.add_argument("--levels", type=int, default=2, help="LEVELS creation option (levels stored and used)")
    p.add_argument("--fraction", type=float, default=0.10, help="fraction of the train labels used")
    p.add_argument("--test-count", type=int, default=0,
                   help="stratified seeded test subset size (0 = the whole test split)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the label / test subsets")
    p.add_argument("--no-decoded", action="store_true", help="skip the pixel CNN on decoded VQ pixels")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite report.md from an existing results.json in --out and exit")
    p.add_argument("--out", default=os.path.join(REPO, "scripts", "results", "vq_features"))
    return p.parse_args()


ARGS = parse_args()
if ARGS.models_dir:
    os.environ["NSAT_MODELS_DIR"] = os.path.abspath(ARGS.models_dir)
MODELS_DIR = os.environ.get("NSAT_MODELS_DIR") or os.path.join(REPO, "models")

import rasterio  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from osgeo import gdal, osr  # noqa: E402

import datasets  # noqa: E402
from bench_common import file_sha256, machine, mcnemar_p  # noqa: E402

gdal.UseExceptions()
# The EuroSAT JPEGs carry no georeferencing; rasterio warns about that on every file.
warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
gdal.SetConfigOption("GDAL_NUM_THREADS", "1")
torch.set_num_threads(1)


# ------------------------------------------------------------------------------ data

def stratified(rows, fraction=None, count=None, seed=0):
    """Seeded stratified subset of split rows: `fraction` of each class, or `count` in all
    (classes in proportion). Returns sorted indices into rows."""
    rng = np.random.default_rng(seed)
    by_class = {}
    for i, (cls, _) in enumerate(rows):
        by_class.setdefault(cls, []).append(i)
    if count is not None:
        fraction = count / len(rows)
    chosen = []
    for cls in sorted(by_class):
        members = np.array(by_class[cls])
        take = int(round(len(members) * fraction))
        chosen.extend(rng.permutation(members)[:take].tolist())
    return sorted(chosen)


def load_codebooks(models_dir, model):
    path = os.path.join(models_dir, model, "vq_tables.json")
    with open(path) as f:
        tables = json.load(f)
    books = np.asarray(tables["codebooks"], dtype=np.float32)  # [level, group, entry, channel]
    return books, path


def band_levels_groups(descriptions):
    """(level, group), 0-based, of each NSAT_LATENT band from its description
    ('level1_group2' ...)."""
    out = []
    for d in descriptions:
        m = re.fullmatch(r"level(\d+)_group(\d+)", d or "")
        if not m:
            raise ValueError(f"unexpected NSAT_LATENT band description {d!r}")
        out.append((int(m.group(1)) - 1, int(m.group(2)) - 1))
    return out


def embed(indices, layout, books):
    """[bands, h, w] UInt16 indices -> [groups * channels, h, w] float32 embedding."""
    levels, groups, _, channels = books.shape
    h, w = indices.shape[1:]
    emb = np.zeros((groups, h, w, channels), np.float32)
    for band, (level, group) in enumerate(layout):
        emb[group] += books[level, group][indices[band]]
    return emb.transpose(0, 3, 1, 2).reshape(groups * channels, h, w)


class Encoder:
    """Encodes EuroSAT JPEGs to .nsat (CODEC=VQ) in a temp dir and reads them back."""

    def __init__(self, levels, books, tmp):
        self.options = ["CODEC=VQ", f"LEVELS={levels}"]
        self.books = books
        self.tmp = tmp
        self.reader = "rasterio"
        self.notes = []
        self.bytes = []
        self.models = collections.Counter()   # NSAT_MODELS metadata of the files written

    def latent(self, path):
        name = "NSAT_LATENT:" + path
        if self.reader == "rasterio":
            try:
                with rasterio.open(name) as ds:
                    return ds.read(), ds.descriptions, ds.transform, ds.res
            except Exception as err:  # fall back to GDAL and say so in the report
                self.reader = "osgeo.gdal"
                self.notes.append(f"rasterio could not open {name}: {err}; read with osgeo.gdal")
        ds = gdal.Open(name)
        desc = tuple(ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount))
        gt = ds.GetGeoTransform()
        return ds.ReadAsArray(), desc, gt, (gt[1], -gt[5])

    def run(self, src_path, want_pixels):
        out = os.path.join(self.tmp, "img.nsat")
        gdal.Translate(out, src_path, format="NSAT", creationOptions=self.options)
        self.bytes.append(os.path.getsize(out))
        self.models[gdal.Open(out).GetMetadataItem("NSAT_MODELS", "IMAGE_STRUCTURE")] += 1
        idx, desc, _, _ = self.latent(out)
        emb = embed(idx, band_levels_groups(desc), self.books)
        pixels = None
        if want_pixels:
            with rasterio.open(out) as ds:
                pixels = ds.read()
        os.remove(out)
        return idx, emb, pixels


def check_latent_georeferencing(tmp, levels):
    """Encodes one georeferenced MEM image and checks the latent grid's geotransform
    (cell = 4 pixels) and CRS as rasterio reports them; also reads the file's metadata."""
    mem = gdal.GetDriverByName("MEM").Create("", 64, 64, 3, gdal.GDT_Byte)
    mem.SetGeoTransform((500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    mem.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(0)
    for b in range(3):
        mem.GetRasterBand(b + 1).WriteArray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    out = os.path.join(tmp, "geo.nsat")
    gdal.Translate(out, mem, format="NSAT", creationOptions=["CODEC=VQ", f"LEVELS={levels}"])
    meta = gdal.Open(out).GetMetadata("IMAGE_STRUCTURE")
    with rasterio.open("NSAT_LATENT:" + out) as ds:
        geo = {"size": [ds.width, ds.height], "bands": ds.count, "dtype": ds.dtypes[0],
               "transform": list(ds.transform)[:6], "crs": str(ds.crs),
               "descriptions": list(ds.descriptions), "tags": ds.tags()}
    geo["ok"] = (geo["size"] == [16, 16] and abs(geo["transform"][0] - 40.0) < 1e-9
                 and abs(geo["transform"][4] + 40.0) < 1e-9 and geo["crs"] == "EPSG:32631")
    os.remove(out)
    return geo, meta


def build_features(data, rows_idx, encoder, root, want_pixels, label):
    ds_rows = data.rows
    embs, pixels, decoded, labels = [], [], [], []
    start = time.perf_counter()
    for k, i in enumerate(rows_idx):
        cls, name = ds_rows[i]
        path = os.path.join(root, cls, name)
        _, emb, dec = encoder.run(path, want_pixels)
        embs.append(emb)
        pixels.append(data.raw(i))
        if want_pixels:
            decoded.append(dec)
        labels.append(CLASSES.index(cls))
        if (k + 1) % 500 == 0:
            print(f"  {label}: {k + 1}/{len(rows_idx)} encoded ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return (np.stack(embs), np.stack(pixels), np.stack(decoded) if want_pixels else None,
            np.array(labels), time.perf_counter() - start)


# ------------------------------------------------------------------------------ models

class FeatureCNN(nn.Module):
    def __init__(self, cin=32, classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, 64, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


class PixelCNN(nn.Module):
    def __init__(self, cin=3, classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def params(model):
    return sum(p.numel() for p in model.parameters())


def macs(model, shape):
    """Multiply-accumulates per image of the convolutions and linear layers."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += output.numel() * k
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total[0]


def standardise(train, test):
    """Per-channel standardisation with the labelled training images' statistics."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    f = lambda a: torch.from_numpy(((a - mean) / std).astype(np.float32))  # noqa: E731
    return f(train), f(test)


def flip(x, gen):
    """Random horizontal and vertical flips, independently per sample."""
    n = x.shape[0]
    h = torch.rand(n, generator=gen) < 0.5
    v = torch.rand(n, generator=gen) < 0.5
    x = x.clone()
    x[h] = x[h].flip(3)
    x[v] = x[v].flip(2)
    return x


def predict(model, x, batch=256):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def train_cnn(make, x_train, y_train, x_test, seed, epochs, batch, lr):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    y = torch.from_numpy(y_train)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        losses = []
        for i in range(0, len(order), batch):
            sel = order[i:i + batch]
            loss = F.cross_entropy(model(flip(x_train[sel], gen)), y[sel])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        sched.step()
    seconds = time.perf_counter() - start
    train_acc = float((predict(model, x_train) == y).float().mean())
    return predict(model, x_test).numpy(), seconds, float(np.mean(losses)), train_acc


def pooled(a):
    """Global mean + std per channel: [N, C, H, W] -> [N, 2C]."""
    a = a.astype(np.float32)
    return np.concatenate([a.mean(axis=(2, 3)), a.std(axis=(2, 3))], axis=1)


def train_probe(f_train, y_train, f_test, seed, steps=500, lr=0.05, weight_decay=1e-4):
    """Multinomial logistic regression (full batch Adam) on standardised pooled features."""
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    xt = torch.from_numpy((f_train - mean) / std)
    xs = torch.from_numpy((f_test - mean) / std)
    y = torch.from_numpy(y_train)
    torch.manual_seed(seed)
    model = nn.Linear(xt.shape[1], len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(xt), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    return predict(model, xs).numpy(), seconds, params(model), model.in_features * len(CLASSES)


CLASSES = sorted(["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                  "Pasture", "PermanentCrop", "River", "Residential", "SeaLake"])


# ------------------------------------------------------------------------------ main

LOAD_AT_START = os.getloadavg()


def main():
    wall = time.perf_counter()
    os.makedirs(ARGS.out, exist_ok=True)
    if gdal.GetDriverByName("NSAT") is None:
        sys.exit("NSAT driver not found: set GDAL_DRIVER_PATH to the plugin's build folder")
    data_root = ARGS.data or datasets.DEFAULT_DATA
    train = datasets.EuroSatRgb(data_root, "train")
    test = datasets.EuroSatRgb(data_root, "test")
    train_idx = stratified(train.rows, fraction=ARGS.fraction, seed=ARGS.subset_seed)
    test_idx = (list(range(len(test))) if ARGS.test_count <= 0
                else stratified(test.rows, count=ARGS.test_count, seed=ARGS.subset_seed + 1))
    # The model folder may be replaced while this runs (a training exports into it): hash
    # the card and the tables now, check every file's NSAT_MODELS against the card and
    # check the hashes again at the end.
    card_path = os.path.join(MODELS_DIR, ARGS.model, "card.json")
    with open(card_path, "rb") as f:
        card_bytes = f.read()
    card = json.loads(card_bytes)
    card_sha = hashlib.sha256(card_bytes).hexdigest()
    books, tables_path = load_codebooks(MODELS_DIR, ARGS.model)
    tables_sha = file_sha256(tables_path)
    print(f"{len(train_idx)} labelled train images, {len(test_idx)} test images; "
          f"codebooks {books.shape} from {tables_path}", flush=True)

    want_pixels = not ARGS.no_decoded
    tmp = tempfile.mkdtemp(prefix="vq_features_")
    try:
        geo, file_meta = check_latent_georeferencing(tmp, ARGS.levels)
        encoder = Encoder(ARGS.levels, books, tmp)
        e_tr, p_tr, d_tr, y_tr, t_enc_tr = build_features(train, train_idx, encoder, train.root,
                                                          want_pixels, "train")
        e_te, p_te, d_te, y_te, t_enc_te = build_features(test, test_idx, encoder, test.root,
                                                          want_pixels, "test")
    finally:
        shutil.rmtree(tmp)
    print(f"encoded + read in {t_enc_tr + t_enc_te:.0f} s (latent read with {encoder.reader})", flush=True)

    models_meta = dict(item.split(":", 1) for item in file_meta.get("NSAT_MODELS", "").split(",") if item)
    notes = list(encoder.notes)
    if set(encoder.models) != {f"{ARGS.model}:{card_sha}"}:
        notes.append(f"the files name other models than {ARGS.model}:{card_sha} (the card read at the "
                     f"start): {dict(encoder.models)}")
    if file_sha256(card_path) != card_sha or file_sha256(tables_path) != tables_sha:
        notes.append("the model's card.json or vq_tables.json changed on disk during the run (the "
                     "hashes reported are those read at the start, with the codebooks)")

    ef_tr, ef_te = standardise(e_tr, e_te)
    pf_tr, pf_te = standardise(p_tr.astype(np.float32) / 255, p_te.astype(np.float32) / 255)
    inputs = {"embedding": (ef_tr, ef_te), "pixels": (pf_tr, pf_te)}
    if want_pixels:
        inputs["decoded VQ pixels"] = standardise(d_tr.astype(np.float32) / 255,
                                                  d_te.astype(np.float32) / 255)

    runs = [("feature CNN", "embedding", lambda: FeatureCNN(), (32, 16, 16)),
            ("pixel CNN", "pixels", lambda: PixelCNN(), (3, 64, 64))]
    if want_pixels:
        runs.append(("pixel CNN", "decoded VQ pixels", lambda: PixelCNN(), (3, 64, 64)))

    results, predictions = [], {}
    for name, inp, make, shape in runs:
        accs, times, fits = [], [], []
        for seed in ARGS.seeds:
            x_tr, x_te = inputs[inp]
            pred, sec, loss, train_acc = train_cnn(make, x_tr, y_tr, x_te, seed, ARGS.epochs,
                                                   ARGS.batch, ARGS.lr)
            accs.append(float((pred == y_te).mean()))
            times.append(sec)
            fits.append({"last_epoch_loss": loss, "train_accuracy": train_acc})
            predictions[(name, inp, seed)] = pred
            print(f"{name} on {inp}, seed {seed}: test {accs[-1]:.4f}, train {train_acc:.4f}, "
                  f"loss {loss:.3f} ({sec:.0f} s)", flush=True)
        model = make()
        results.append({"classifier": name, "input": inp, "params": params(model),
                        "macs": macs(model, shape), "accuracy": accs, "train_seconds": times,
                        "fit": fits})

    for name, inp, feats in [("linear probe (mean+std)", "embedding", (pooled(e_tr), pooled(e_te))),
                             ("linear probe (mean+std)", "pixels", (pooled(p_tr / 255.0), pooled(p_te / 255.0)))]:
        accs, times = [], []
        for seed in ARGS.seeds:
            pred, sec, n_params, n_macs = train_probe(feats[0], y_tr, feats[1], seed)
            accs.append(float((pred == y_te).mean()))
            times.append(sec)
            predictions[(name, inp, seed)] = pred
        print(f"{name} on {inp}: {statistics.mean(accs):.4f}", flush=True)
        # MACs of the pooling itself (2 per value: sum and sum of squares) plus the matrix.
        c, h, w = (e_tr if inp == "embedding" else p_tr).shape[1:]
        results.append({"classifier": name, "input": inp, "params": n_params,
                        "macs": n_macs + 2 * c * h * w, "accuracy": accs, "train_seconds": times})

    # Paired test on the first seed: feature CNN vs pixel CNN on the same test images.
    s = ARGS.seeds[0]
    a = predictions[("feature CNN", "embedding", s)] == y_te
    b = predictions[("pixel CNN", "pixels", s)] == y_te
    paired = {"seed": s, "feature_right_pixel_wrong": int((a & ~b).sum()),
              "pixel_right_feature_wrong": int((~a & b).sum()),
              "mcnemar_p": mcnemar_p(int((a & ~b).sum()), int((~a & b).sum()))}
    per_class = {}
    for name, inp in [("feature CNN", "embedding"), ("pixel CNN", "pixels")]:
        pred = predictions[(name, inp, s)]
        per_class[f"{name} / {inp}"] = {c: float((pred[y_te == k] == k).mean()) for k, c in enumerate(CLASSES)}

    for r in results:
        r["accuracy_mean"] = statistics.mean(r["accuracy"])
        r["accuracy_std"] = statistics.stdev(r["accuracy"]) if len(r["accuracy"]) > 1 else 0.0
        r["train_seconds_mean"] = statistics.mean(r["train_seconds"])

    analysis_macs = card.get("architecture", {}).get("analysis_macs_per_pixel")
    report = {
        "setup": {"train_labels": len(train_idx), "train_split": len(train), "fraction": ARGS.fraction,
                  "subset_seed": ARGS.subset_seed, "test_images": len(test_idx), "test_split": len(test),
                  "test_subset": "whole test split" if ARGS.test_count <= 0 else f"stratified {ARGS.test_count}",
                  "epochs": ARGS.epochs, "batch": ARGS.batch, "lr": ARGS.lr, "optimizer": "Adam + cosine",
                  "augmentation": "random horizontal and vertical flips (CNNs)", "seeds": ARGS.seeds,
                  "levels": ARGS.levels, "model": ARGS.model, "models_dir": MODELS_DIR,
                  "creation_options": encoder.options},
        "latent_reader": encoder.reader, "notes": notes,
        "latent_georeferencing_check": geo,
        "file_metadata": {k: file_meta[k] for k in ("NSAT_CODEC_PARAMETERS", "NSAT_MODELS") if k in file_meta},
        "card_sha256_from_file": models_meta.get(ARGS.model),
        "card_sha256_at_start": card_sha,
        "files_nsat_models": dict(encoder.models),
        "card_status": card.get("status"),
        "vq_tables_sha256": tables_sha,
        "vq_tables_sha256_in_card": card.get("files", {}).get("vq_tables.json"),
        "nsat_bytes_per_image_mean": float(np.mean(encoder.bytes)),
        "encode_read_seconds": {"train": t_enc_tr, "test": t_enc_te,
                                "per_image": (t_enc_tr + t_enc_te) / (len(train_idx) + len(test_idx))},
        "analysis_macs_per_image": analysis_macs * 64 * 64 if analysis_macs else None,
        "results": results, "paired_first_seed": paired, "per_class_first_seed": per_class,
        "machine": machine(), "load_average_at_start": LOAD_AT_START, "gdal": gdal.VersionInfo("RELEASE_NAME"), "rasterio": rasterio.__version__,
        "rasterio_gdal": rasterio.__gdal_version__, "torch": torch.__version__, "torch_threads": 1,
        "command": "GDAL_DRIVER_PATH=<plugin build> /usr/bin/python3 " + " ".join(
            [os.path.relpath(os.path.abspath(__file__), REPO)] + sys.argv[1:]),
    }
    report["total_seconds"] = time.perf_counter() - wall
    with open(os.path.join(ARGS.out, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    write_markdown(report, os.path.join(ARGS.out, "report.md"))
    print(f"done in {report['total_seconds']:.0f} s -> {ARGS.out}")


def write_markdown(r, path):
    s = r["setup"]
    lines = [
        f"# VQ codebook indices as land-cover features (EuroSAT RGB, {s['fraction']:.0%} of the labels)",
        "",
        "Written by `scripts/learned/vq_features_classifier.py`; numbers in `results.json`.",
        "",
        "## Setup",
        "",
        f"* Labels: a stratified {s['fraction']:.0%} of the train split, seed {s['subset_seed']} "
        f"({s['train_labels']} of {s['train_split']} images). Test: {s['test_subset']} "
        f"({s['test_images']} images).",
        f"* Files: each image's JPEG encoded with `gdal.Translate(..., format=\"NSAT\", "
        f"creationOptions={s['creation_options']})` (model `{s['model']}`, mean "
        f"{r['nsat_bytes_per_image_mean']:.0f} bytes per 64x64 file); indices read from "
        f"`NSAT_LATENT:<file>` with **{r['latent_reader']}**, embedded with the codebooks of "
        f"`{s['model']}/vq_tables.json` (per group, sum over the {s['levels']} levels; groups "
        "concatenated: 32 x 16 x 16). Decoded pixels read from the same file with rasterio. "
        f"Encode + read: {r['encode_read_seconds']['per_image'] * 1000:.0f} ms per image.",
        f"* Training: every CNN from scratch, Adam (lr {s['lr']}, cosine decay), batch {s['batch']}, "
        f"{s['epochs']} epochs, random horizontal / vertical flips, inputs standardised per channel "
        f"with the labelled images' statistics; seeds {s['seeds']}; accuracy after the last epoch "
        "(no model selection on the test set). Linear probes: logistic regression (full-batch Adam, "
        "500 steps) on global mean + std per channel.",
        "* Feature CNN: conv 32->64 3x3, ReLU, conv 64->64 3x3 s2, ReLU, global average pool, "
        "linear 10. Pixel CNN: conv 3->16, 16->32 s2, 32->64 s2, 64->64 s2 (3x3, ReLU), global "
        "average pool, linear 10 (its last two convolutions have the feature CNN's shapes).",
        "",
        "## Results",
        "",
        "| classifier | input | params | MACs / image | test accuracy (mean ± std) | train time / seed |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for x in r["results"]:
        lines.append(f"| {x['classifier']} | {x['input']} | {x['params']:,} | {x['macs'] / 1e6:.2f} M | "
                     f"{100 * x['accuracy_mean']:.1f} ± {100 * x['accuracy_std']:.1f} % | "
                     f"{x['train_seconds_mean']:.1f} s |")
    p = r["paired_first_seed"]
    by = {(x["classifier"], x["input"]): x for x in r["results"]}
    fc, pc = by[("feature CNN", "embedding")], by[("pixel CNN", "pixels")]
    lines += [
        "",
        f"Feature CNN minus pixel CNN: {100 * (fc['accuracy_mean'] - pc['accuracy_mean']):+.1f} "
        f"accuracy points, with {fc['macs'] / pc['macs']:.2f}x the classifier MACs and "
        f"{fc['train_seconds_mean'] / pc['train_seconds_mean']:.2f}x the training time.",
        "",
        f"Per-seed accuracies are in `results.json`. Paired on seed {p['seed']} (same test images): "
        f"the feature CNN is right where the pixel CNN is wrong on {p['feature_right_pixel_wrong']} "
        f"images, the reverse on {p['pixel_right_feature_wrong']}; exact McNemar p = {p['mcnemar_p']:.2g}.",
        "",
        "MACs count the classifier only. The features themselves come with the file: the VQ "
        "analysis transform that produced them costs "
        + (f"{r['analysis_macs_per_image'] / 1e6:.1f} M MACs per 64x64 image" if r["analysis_macs_per_image"]
           else "(unknown)")
        + " at compression time, and reading them needs no pixel decoding (an index lookup and "
        "a sum of codewords per position).",
        "",
        "Per-class accuracy (seed %d):" % p["seed"],
        "",
        "| class | " + " | ".join(r["per_class_first_seed"]) + " |",
        "|---|" + "---:|" * len(r["per_class_first_seed"]),
    ]
    classes = list(next(iter(r["per_class_first_seed"].values())))
    for c in classes:
        lines.append(f"| {c} | " + " | ".join(f"{100 * v[c]:.1f} %" for v in r["per_class_first_seed"].values()) + " |")
    m = r["machine"]
    g = r["latent_georeferencing_check"]
    lines += [
        "",
        "## Machine",
        "",
        f"{m['cpu']}, {m['cores']} cores ({', '.join(m['simd'])}), {m['memory_gib']} GiB; "
        f"{m['system']}; Python {m['python']}; GDAL {r['gdal']}; rasterio {r['rasterio']} (built against GDAL {r['rasterio_gdal']}); "
        f"torch {r['torch']}, {r['torch_threads']} thread (GDAL_NUM_THREADS=1). Load average at the "
        f"start: {r['load_average_at_start'][0]:.1f} (other jobs share the CPUs, so times are "
        f"indicative). Whole run: {r['total_seconds'] / 60:.1f} min.",
        "",
        "## Reproduce",
        "",
        "```",
        r["command"],
        "```",
        "",
        "## Caveats",
        "",
        f"* Model: `{s['model']}` from `{s['models_dir']}` (card status: "
        f"\"{r['card_status']}\"). Card sha256 recorded in the files' `NSAT_MODELS` metadata: `{r['card_sha256_from_file']}` "
        f"(card.json read at the start: `{r['card_sha256_at_start']}`; all "
        f"{sum(r['files_nsat_models'].values())} encoded files name "
        f"{', '.join('`%s`' % k for k in r['files_nsat_models'])}); vq_tables.json sha256 "
        f"`{r['vq_tables_sha256']}` (card lists `{r['vq_tables_sha256_in_card']}`): a model with "
        "other weights has another card hash, so these numbers belong to exactly this one.",
        "* The VQ autoencoder was trained, without labels, on the EuroSAT RGB train images (all of "
        "them, not only the 10 % labelled here) plus other scenes; the test split was not used "
        "for it. The comparison is therefore \"unsupervised pre-training on the archive + few "
        "labels\" against \"few labels only\", which is CORSA's setting.",
        "* Flips of the 16x16 embedding grid approximate, but are not exactly, the embeddings of "
        "flipped images (the encoder is not flip-equivariant).",
        "* One small architecture per input, a fixed epoch budget and no tuning: the numbers "
        "compare like with like, not the best either input can reach. Accuracy on the "
        "labelled training images at the end: "
        + ", ".join(f"{x['classifier']} on {x['input']} "
                    f"{100 * statistics.mean(f['train_accuracy'] for f in x['fit']):.1f} %"
                    for x in r["results"] if x.get("fit"))
        + " (no augmentation, eval mode), close to the test accuracy: at this budget the CNNs "
        "still underfit, so longer training may move both numbers and the gap.",
        f"* Latent georeferencing (checked on a georeferenced MEM image, via rasterio): "
        f"size {g['size']}, transform {g['transform']}, CRS {g['crs']} -> "
        f"{'as documented (cell = 4 pixels)' if g['ok'] else 'NOT as expected'}. The EuroSAT JPEGs "
        "carry no georeferencing, so their latents have none either (rasterio warns).",
    ]
    lines += [f"* {n}" for n in r["notes"]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if ARGS.report_only:
        with open(os.path.join(ARGS.out, "results.json")) as f:
            write_markdown(json.load(f), os.path.join(ARGS.out, "report.md"))
    else:
        main()
