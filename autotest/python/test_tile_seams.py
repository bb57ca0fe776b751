"""MULTIRATE's OVERLAP (issue 12, tile seams): each tile is coded with the pixels of its
neighbours around it, so that the synthesis sees across tile edges and tiles meet without a
seam, while every tile still decodes from its own payload. The seam is measured as in
scripts/bench_multirate.py: the 4 px strips along every interior tile edge, here against the
same strips of the scene coded as one tile (so the content of the strips cancels)."""
import json

import numpy as np
import pytest
from osgeo import gdal

from conftest import data, run_gdal
from test_multirate import translate
from test_roundtrip import psnr, read_all

STRIP_HALF = 4
# The default OVERLAP must leave the strips within this of the one-tile coding (measured
# with multirate-rgb8-v5 at QUALITY=75 in 512 px tiles: 0.00 dB on the demo scene, 0.03 on
# NAIP RGB), and OVERLAP=0 must show a seam of at least SEAM_WITHOUT_OVERLAP_DB (measured
# 1.83 and 0.63 dB), so that the measurement can see one.
MAX_SEAM_WITH_OVERLAP_DB = 0.2
SEAM_WITHOUT_OVERLAP_DB = 0.4
SCENES = ["landsat7_rgb_byte.tif", "naip_4band_byte.tif"]


def strip_mask(height, width, tile):
    """Pixels within STRIP_HALF of an interior tile edge (columns and rows)."""
    def near_edge(size):
        position = np.arange(size)
        offset = position % tile
        near = (offset < STRIP_HALF) | (offset >= tile - STRIP_HALF)
        near &= (position >= tile - STRIP_HALF) & (position < (size - 1) // tile * tile + STRIP_HALF)
        return near
    return near_edge(height)[:, None] | near_edge(width)[None, :]


def rgb_strip_psnr(reference, path, tile):
    decoded = read_all(gdal.Open(str(path)))[:3]
    valid = np.all(reference[:3] != 0, axis=0) & strip_mask(*reference.shape[1:], tile)
    return psnr(reference[:3], decoded, valid)


def block_size(path):
    # The dataset must outlive its band: GDAL's bindings do not keep it alive for the band.
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).GetBlockSize()[0]


@pytest.fixture(scope="module", params=SCENES)
def coded(request, tmp_path_factory):
    """The scene at QUALITY=75 with the default OVERLAP and BLOCKSIZE, with OVERLAP=0 and as
    one tile."""
    folder = tmp_path_factory.mktemp("seams")
    source = data(request.param)
    dataset = gdal.Open(source)
    one_tile = (max(dataset.RasterXSize, dataset.RasterYSize) + 15) // 16 * 16
    return {
        "source": source,
        "default": translate(source, folder / "default.nsat", "QUALITY=75"),
        "none": translate(source, folder / "none.nsat", "QUALITY=75", "OVERLAP=0"),
        "one_tile": translate(source, folder / "one.nsat", "QUALITY=75", f"BLOCKSIZE={one_tile}"),
    }


def test_the_default_tile_is_512_and_smaller_than_the_image(coded):
    """MULTIRATE's own BLOCKSIZE default, so that the margins cost half what they would at
    the driver's 256; both scenes still have interior tile edges to measure."""
    assert block_size(coded["default"]) == 512
    dataset = gdal.Open(coded["source"])
    assert min(dataset.RasterXSize, dataset.RasterYSize) > 512


def test_overlap_removes_the_tile_seam(coded):
    reference = read_all(gdal.Open(coded["source"]))
    tile = block_size(coded["default"])
    untiled = rgb_strip_psnr(reference, coded["one_tile"], tile)
    with_overlap = rgb_strip_psnr(reference, coded["default"], tile)
    without = rgb_strip_psnr(reference, coded["none"], tile)
    assert untiled - with_overlap <= MAX_SEAM_WITH_OVERLAP_DB, (untiled, with_overlap)
    assert untiled - without >= SEAM_WITHOUT_OVERLAP_DB, (untiled, without)


def test_each_tile_still_decodes_alone(coded):
    """A read of one interior tile, and of one overview tile, in a fresh dataset gives
    the pixels of the full read: the decoder crops each window to its tile."""
    full = gdal.Open(str(coded["default"]))
    whole = read_all(full)
    tile = block_size(coded["default"])
    width, height = full.RasterXSize - tile, min(tile, full.RasterYSize)  # the second tile
    alone = gdal.Open(str(coded["default"])).ReadAsArray(tile, 0, width, height)
    np.testing.assert_array_equal(alone, whole[:, :height, tile:])
    overview = [full.GetRasterBand(b + 1).GetOverview(0).ReadAsArray() for b in range(full.RasterCount)]
    fresh = gdal.Open(str(coded["default"]))
    again = [fresh.GetRasterBand(b + 1).GetOverview(0).ReadAsArray(0, 0, 64, 64)
             for b in range(fresh.RasterCount)]
    for band, tile in enumerate(again):
        np.testing.assert_array_equal(tile, overview[band][:64, :64])


def test_nodata_stays_exact_next_to_the_overlap(coded):
    source = gdal.Open(coded["source"])
    nodata = source.GetRasterBand(1).GetNoDataValue()
    reference = read_all(source)
    decoded = read_all(gdal.Open(str(coded["default"])))
    np.testing.assert_array_equal(decoded == nodata, reference == nodata)


def codec_parameters(path):
    text = gdal.Open(str(path)).GetMetadataItem("NSAT_CODEC_PARAMETERS", "IMAGE_STRUCTURE")
    return json.loads(text)


def test_the_header_says_whether_tiles_overlap(coded):
    """Overlapping payloads have their own payload versions (3, 4), which a reader from
    before OVERLAP refuses instead of decoding garbage; OVERLAP=0 writes the files of before."""
    default = codec_parameters(coded["default"])
    assert default["overlap"] == 8 and default["payload_version"] == 3
    none = codec_parameters(coded["none"])
    assert "overlap" not in none and none["payload_version"] == 1


@pytest.mark.parametrize("value", ["-1", "65", "four"])
def test_a_bad_overlap_is_refused(tmp_path, value):
    result = run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=MULTIRATE", "-co",
                      f"OVERLAP={value}", data("landsat7_rgb_byte.tif"), str(tmp_path / "bad.nsat"),
                      check=False)
    assert result.returncode != 0
    assert f"OVERLAP={value} is invalid" in result.stderr
    assert not (tmp_path / "bad.nsat").exists()


def test_an_image_of_one_tile_gets_no_overlap_unless_asked(tmp_path):
    """A 64 x 64 chip has no neighbours: the default leaves OVERLAP out (a file that readers
    from before OVERLAP open); an explicit OVERLAP is kept as given."""
    chip = data("eurosat_rgb_forest.jpg")
    default = codec_parameters(translate(chip, tmp_path / "chip.nsat"))
    assert "overlap" not in default and default["payload_version"] == 1
    asked = codec_parameters(translate(chip, tmp_path / "asked.nsat", "OVERLAP=8"))
    assert asked["overlap"] == 8 and asked["payload_version"] == 3
