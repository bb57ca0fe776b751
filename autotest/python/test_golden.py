"""Golden files: .nsat files written by an earlier build must decode to the same
pixels, bit for bit, forever (scripts/make_golden.py wrote them)."""
import hashlib
import json
import pathlib

import numpy as np
import pytest

from conftest import data, gdal

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[1] / "golden"
MANIFEST = json.loads((GOLDEN_DIR / "golden.json").read_text())


def pixel_md5(dataset):
    """Same digest as scripts/make_golden.py: every band, then its overviews."""
    digest = hashlib.md5()
    for index in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(index)
        digest.update(band.ReadRaster())
        for level in range(band.GetOverviewCount()):
            digest.update(band.GetOverview(level).ReadRaster())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_file_decodes_to_recorded_pixels(name):
    entry = MANIFEST[name]
    dataset = gdal.Open(str(GOLDEN_DIR / name))
    assert dataset.GetDriver().ShortName == "NSAT"
    assert pixel_md5(dataset) == entry["pixels_md5"]


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if "CODEC=LOSSLESS" in MANIFEST[n]["options"]))
def test_lossless_golden_file_equals_its_source(name):
    entry = MANIFEST[name]
    source = gdal.Open(data(entry["source"]))
    x, y, width, height = entry["window"] or [0, 0, source.RasterXSize, source.RasterYSize]
    expected = source.ReadAsArray(x, y, width, height)
    actual = gdal.Open(str(GOLDEN_DIR / name)).ReadAsArray()
    np.testing.assert_array_equal(actual, expected)
