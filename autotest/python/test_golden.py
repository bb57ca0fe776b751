"""Golden files: .nsat files written by an earlier build must decode to the same
pixels, bit for bit, forever (scripts/make_golden.py wrote them)."""
import json
import sys

import numpy as np
import pytest

from conftest import ROOT, data, gdal

sys.path.insert(0, str(ROOT / "scripts"))
from make_golden import pixel_md5  # noqa: E402  (the digest the golden files were made with)

GOLDEN_DIR = ROOT / "autotest" / "golden"
MANIFEST = json.loads((GOLDEN_DIR / "golden.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_file_decodes_to_recorded_pixels(name):
    entry = MANIFEST[name]
    dataset = gdal.Open(str(GOLDEN_DIR / name))
    assert dataset.GetDriver().ShortName == "NSAT"
    assert pixel_md5(str(GOLDEN_DIR / name)) == entry["pixels_md5"]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_file_keeps_the_source_georeferencing(name):
    entry = MANIFEST[name]
    source = gdal.Open(data(entry["source"]))
    golden = gdal.Open(str(GOLDEN_DIR / name))
    x, y = (entry["window"] or [0, 0])[:2]
    if source.GetSpatialRef() is None:
        assert golden.GetSpatialRef() is None
    else:
        assert golden.GetSpatialRef().IsSame(source.GetSpatialRef())
        t = source.GetGeoTransform()
        expected = (t[0] + x * t[1] + y * t[2], t[1], t[2], t[3] + x * t[4] + y * t[5], t[4], t[5])
        assert golden.GetGeoTransform() == pytest.approx(expected, rel=1e-12)
    if entry["window"] is None:
        assert golden.GetGCPCount() == source.GetGCPCount()


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if "CODEC=LOSSLESS" in MANIFEST[n]["options"]))
def test_lossless_golden_file_equals_its_source(name):
    entry = MANIFEST[name]
    source = gdal.Open(data(entry["source"]))
    x, y, width, height = entry["window"] or [0, 0, source.RasterXSize, source.RasterYSize]
    expected = source.ReadAsArray(x, y, width, height)
    actual = gdal.Open(str(GOLDEN_DIR / name)).ReadAsArray()
    np.testing.assert_array_equal(actual, expected)
