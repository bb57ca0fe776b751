"""Bad options and PAM edits get the behaviour and CPLError class a GDAL user expects
(issue 14's first items: each of these failed before its fix)."""
import shutil

import pytest
from osgeo import gdal

from conftest import data, last_error_after, translate_nsat


@pytest.mark.parametrize("value", ["256abc", "", "0x100", "99999999999"])
def test_a_malformed_blocksize_is_an_illegal_argument(tmp_path, value):
    target = tmp_path / "out.nsat"
    number, message = last_error_after(lambda: gdal.Translate(
        str(target), data("eurosat_rgb_forest.jpg"), format="NSAT", creationOptions=[f"BLOCKSIZE={value}"]))
    assert number == gdal.CPLE_IllegalArg
    assert "BLOCKSIZE" in message
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_codec_is_an_illegal_argument_and_a_bad_type_is_not_supported(tmp_path):
    number, message = last_error_after(lambda: gdal.Translate(
        str(tmp_path / "a.nsat"), data("eurosat_rgb_forest.jpg"), format="NSAT",
        creationOptions=["CODEC=NOPE"]))
    assert number == gdal.CPLE_IllegalArg and "NOPE" in message
    number, message = last_error_after(lambda: gdal.Translate(
        str(tmp_path / "b.nsat"), data("landsat8_b4_uint16.tif"), format="NSAT",
        creationOptions=["CODEC=JPEG"]))
    assert number == gdal.CPLE_NotSupported and "JPEG" in message
    assert list(tmp_path.iterdir()) == []


def test_set_nodata_value_goes_to_pam_and_takes_effect(tmp_path):
    path = translate_nsat(data("eurosat_rgb_forest.jpg"), tmp_path / "forest.nsat", ["CODEC=LOSSLESS"])
    dataset = gdal.Open(path)
    assert dataset.GetRasterBand(1).GetNoDataValue() is None
    assert dataset.GetRasterBand(1).SetNoDataValue(7) == gdal.CE_None
    assert dataset.GetRasterBand(1).GetNoDataValue() == 7
    dataset = None
    reopened = gdal.Open(path)
    assert reopened.GetRasterBand(1).GetNoDataValue() == 7       # from forest.nsat.aux.xml
    assert reopened.GetRasterBand(2).GetNoDataValue() is None
    # The header's own nodata still applies where PAM says nothing.
    collar = translate_nsat(data("landsat7_rgb_byte.tif"), tmp_path / "l7.nsat", ["CODEC=LOSSLESS"])
    collar_dataset = gdal.Open(collar)
    assert collar_dataset.GetRasterBand(1).GetNoDataValue() == 0
    shutil.rmtree(tmp_path)
