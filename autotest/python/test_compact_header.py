"""Format 1.1's compact header (container/FORMAT.md, "Header encodings"): ML datasets store
one 64 x 64 chip per file, where a 1.0 header was several times the payload. Every file
here is checked against the layout parsed independently of the driver (nsat_layout.py)."""
import numpy as np
import pytest

from conftest import data, gdal
from nsat_layout import NsatLayout

CHIP = "eurosat_rgb_forest.jpg"


def overhead(path):
    """Bytes of the file that are not tile payloads: preamble, header, index."""
    layout = NsatLayout(path)
    return layout.size - sum(size for _, size in layout.tiles.values())


def translate(tmp_path, source, name, options):
    target = str(tmp_path / name)
    gdal.Translate(target, data(source), format="NSAT", creationOptions=options)
    return target


@pytest.mark.parametrize("codec", [["CODEC=MULTIRATE"], ["CODEC=FIXED_QUALITY", "TARGET_PSNR=35"],
                                   ["CODEC=RDIC"], ["CODEC=JPEG"], ["CODEC=LOSSLESS"], ["CODEC=VQ"],
                                   ["CODEC=DIFFUSION", "GSD=10"]],
                         ids=lambda options: options[0][6:])
def test_a_chip_file_carries_at_most_150_bytes_besides_its_payload(tmp_path, codec):
    path = translate(tmp_path, CHIP, "chip.nsat", codec)
    raw = open(path, "rb").read()
    assert raw[8:12] == b"\x01\x00\x01\x00" and raw[24] == 10  # format 1.1, zstd + dictionary 10
    assert overhead(path) <= 150
    decoded = gdal.Open(path)
    assert decoded.GetMetadataItem("NSAT_FORMAT_VERSION", "IMAGE_STRUCTURE") == "1.1"
    assert decoded.ReadAsArray().shape == (3, 64, 64)


def test_a_georeferenced_chip_stores_its_crs_by_epsg_code(tmp_path):
    source = gdal.Open(data("eurosat_ms_residential.tif"))
    path = translate(tmp_path, "eurosat_ms_residential.tif", "ms.nsat", ["CODEC=MULTIRATE"])
    georeferencing = NsatLayout(path).header["georeferencing"]
    assert georeferencing["crs"] == "EPSG:32632" and "crs_wkt" not in georeferencing
    decoded = gdal.Open(path)
    assert decoded.GetSpatialRef().IsSame(source.GetSpatialRef())
    assert decoded.GetSpatialRef().GetAuthorityCode(None) == "32632"
    assert decoded.GetGeoTransform() == source.GetGeoTransform()
    # 13 bands, EPSG CRS and geotransform: still a few hundred bytes, not 3.4 KB.
    assert overhead(path) <= 300


def test_a_crs_without_an_epsg_equivalent_is_kept_as_wkt2(tmp_path):
    source = gdal.Open(data("landsat_int16_custom_crs.tif"))
    path = translate(tmp_path, "landsat_int16_custom_crs.tif", "custom.nsat", ["CODEC=LOSSLESS"])
    georeferencing = NsatLayout(path).header["georeferencing"]
    assert "crs" not in georeferencing and georeferencing["crs_wkt"].startswith("PROJCRS[")
    assert gdal.Open(path).GetSpatialRef().IsSame(source.GetSpatialRef())


def test_gcps_and_their_crs_survive(tmp_path):
    source = gdal.Open(data("s1_grd_gcps_uint16.tif"))
    path = translate(tmp_path, "s1_grd_gcps_uint16.tif", "gcps.nsat", ["CODEC=LOSSLESS"])
    georeferencing = NsatLayout(path).header["georeferencing"]
    assert georeferencing["gcp_crs"] == "EPSG:4326"
    decoded = gdal.Open(path)
    assert decoded.GetGCPSpatialRef().IsSame(source.GetGCPSpatialRef())
    assert [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in decoded.GetGCPs()] == \
        [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in source.GetGCPs()]


def test_band_fields_at_their_default_are_left_out_and_others_kept(tmp_path):
    source = gdal.Open(data("s1_vv_vh_db_float32.tif"))
    path = translate(tmp_path, "s1_vv_vh_db_float32.tif", "s1.nsat", ["CODEC=LOSSLESS"])
    bands = NsatLayout(path).header["bands"]
    decoded = gdal.Open(path)
    for index, entry in enumerate(bands, start=1):
        want, got = source.GetRasterBand(index), decoded.GetRasterBand(index)
        assert ("description" in entry) == bool(want.GetDescription())
        assert got.GetDescription() == want.GetDescription()
        assert got.GetMetadata() == want.GetMetadata()


def test_a_large_file_gets_its_auxiliary_summary_in_the_reserved_room(tmp_path):
    """Past 4 MiB of tiles the writer streams: the header is stored first with the
    auxiliary summary at its widest numbers, then rewritten in place."""
    rng = np.random.default_rng(7)
    noise = str(tmp_path / "noise.tif")
    image = gdal.GetDriverByName("GTiff").Create(noise, 2048, 2048, 3, gdal.GDT_Byte)
    image.WriteArray(rng.integers(0, 256, (3, 2048, 2048), dtype=np.uint8))
    image = None
    mask = str(tmp_path / "mask.tif")
    roi = gdal.GetDriverByName("GTiff").Create(mask, 2048, 2048, 1, gdal.GDT_Byte)
    roi.WriteArray(np.where(np.arange(2048)[None, :] < 1536, 1, 0).astype(np.uint8).repeat(2048, 0))
    roi = None
    path = str(tmp_path / "large.nsat")
    gdal.Translate(path, noise, format="NSAT",
                   creationOptions=["CODEC=RDIC", f"ROI_MASK={mask}", "ROI_QUALITY=100",
                                    "OVERVIEWS=NONE"])
    layout = NsatLayout(path)
    assert sum(size for _, size in layout.tiles.values()) > 4 << 20
    summary = layout.header["auxiliary"]
    assert summary["cells"] == 128 * 128
    assert summary["mean"] == pytest.approx(0.75, abs=1e-6)
    assert (summary["min"], summary["max"]) == (0, 1)
    metadata = gdal.Open(path).GetMetadata()
    assert [value for key, value in metadata.items() if key.endswith("_MEAN")] == ["0.75"]


def test_format_1_0_files_still_open():
    """The golden files were written as format 1.0 (plain JSON headers)."""
    from conftest import ROOT
    path = str(ROOT / "autotest" / "golden" / "landsat7_collar_jpeg.nsat")
    raw = open(path, "rb").read(32)
    assert raw[10:12] == b"\x00\x00" and raw[24] == 0
    dataset = gdal.Open(path)
    assert dataset.GetMetadataItem("NSAT_FORMAT_VERSION", "IMAGE_STRUCTURE") == "1.0"
    assert dataset.GetSpatialRef() is not None
