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

Sampling is seeded and reproducible: ``BatchStream`` draws indices, crops, flips and
rotations from one ``numpy.random.Generator`` whose state goes into the training
checkpoint, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

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
    raise ValueError("bands must be 3 (EuroSAT RGB) or 1 (EuroSAT MS, band by band)")


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
