"""DIFFUSION end to end through GDAL and rasterio on real scenes: the base codec's payload
refined on decode by a flow model conditioned on the scene's metadata. The same pixels on
every decode, REFINEMENT=NO as the base codec's decode, the condition extracted from real
files (Landsat scene id, GCPs, none at all) and shown by gdalinfo, and the errors a user
can cause."""
import pathlib
import sys

import numpy as np
import pytest
from osgeo import gdal

from conftest import data, failures_of, nsat_failure, run_gdal
from test_multirate import card_sha256
from test_roundtrip import read_all
from test_vq import psnr

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
from image_metrics import high_frequency_energy  # noqa: E402

DEFAULT_MODEL, DEFAULT_BASE = "diffusion-vq-rgb8-v3", "vq-rgb8-v2"
MULTIRATE_MODEL, MULTIRATE_BASE = "diffusion-rgb8-v1", "multirate-rgb8-v4"
NAIP_RGB_WINDOW = [600, 200, 300, 260]  # 3 x 3 tiles of 128 px, the last ones partial


def diffusion(source, target, *options, window=None, bands=None):
    gdal.Translate(str(target), source, format="NSAT", srcWin=window, bandList=bands,
                   creationOptions=["CODEC=DIFFUSION", *options])
    return str(target)


def condition(path):
    metadata = gdal.Open(str(path)).GetMetadata("IMAGE_STRUCTURE")
    return {key[len("NSAT_CONDITION_"):]: value for key, value in metadata.items()
            if key.startswith("NSAT_CONDITION_")}


def byte_rgb(source, target, **kwargs):
    """A 3-band Byte copy of a one-band scene (stretched), with its metadata and georeferencing."""
    gdal.Translate(str(target), source, outputType=gdal.GDT_Byte, bandList=[1, 1, 1],
                   scaleParams=[[]], **kwargs)
    return str(target)


@pytest.fixture(scope="module")
def naip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diffusion")
    return folder, diffusion(data("naip_4band_byte.tif"), folder / "naip.nsat", "BLOCKSIZE=128",
                             "LEVELS=1", window=NAIP_RGB_WINDOW, bands=[1, 2, 3])


def test_round_trip_through_rasterio_keeps_georeferencing_and_names_both_models(naip):
    import rasterio
    _, target = naip
    original = gdal.Open(data("naip_4band_byte.tif")).ReadAsArray(*NAIP_RGB_WINDOW)[:3]
    with rasterio.open(target) as dataset:
        decoded = dataset.read()
        assert dataset.crs is not None
    assert decoded.shape == original.shape
    assert psnr(original, decoded, 255.0) > 29.0
    info = gdal.Open(target)
    assert info.GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == "DIFFUSION"
    assert info.GetMetadataItem("NSAT_MODELS", "IMAGE_STRUCTURE") == (
        f"{DEFAULT_BASE}:{card_sha256(DEFAULT_BASE)},{DEFAULT_MODEL}:{card_sha256(DEFAULT_MODEL)}")
    shown = condition(target)
    assert shown["GSD"].startswith("5.002 (PROJ from geotransform")
    assert shown["CENTER_LAT"].startswith("47.0")
    assert shown["ACQUISITION_DAY_OF_YEAR"] == "unknown"


def test_refinement_no_is_the_base_codecs_decode(naip, tmp_path):
    folder, target = naip
    vq = str(tmp_path / "vq.nsat")
    gdal.Translate(vq, data("naip_4band_byte.tif"), format="NSAT", srcWin=NAIP_RGB_WINDOW,
                   bandList=[1, 2, 3], creationOptions=["CODEC=VQ", "LEVELS=1", "BLOCKSIZE=128"])
    unrefined = read_all(gdal.OpenEx(target, open_options=["REFINEMENT=NO"]))
    assert np.array_equal(unrefined, read_all(gdal.Open(vq)))
    refined = read_all(gdal.Open(target))
    assert not np.array_equal(refined, unrefined)
    original = gdal.Open(data("naip_4band_byte.tif")).ReadAsArray(*NAIP_RGB_WINDOW)[:3]
    assert psnr(original, refined, 255.0) > psnr(original, unrefined, 255.0) - 1.0

    multirate_based = diffusion(data("eurosat_rgb_river.jpg"), tmp_path / "mr.nsat",
                                f"MODEL={MULTIRATE_MODEL}", "QUALITY=50", "GSD=10")
    plain = str(tmp_path / "plain.nsat")
    gdal.Translate(plain, data("eurosat_rgb_river.jpg"), format="NSAT",
                   creationOptions=["CODEC=MULTIRATE", "QUALITY=50", f"MODEL={MULTIRATE_BASE}"])
    assert np.array_equal(read_all(gdal.OpenEx(multirate_based, open_options=["REFINEMENT=NO"])),
                          read_all(gdal.Open(plain)))
    assert f"{MULTIRATE_BASE}:" in gdal.Open(multirate_based).GetMetadataItem("NSAT_MODELS",
                                                                              "IMAGE_STRUCTURE")


@pytest.mark.parametrize("source, window", [("landsat7_rgb_byte.tif", [100, 100, 384, 384]),
                                            ("naip_4band_byte.tif", [500, 200, 384, 384])],
                         ids=["landsat7", "naip"])
@pytest.mark.parametrize("levels", [1, 2])
def test_default_refiner_restores_detail_at_almost_no_psnr_cost(tmp_path, source, window, levels):
    """The default refiner's purpose (diffusion-vq-rgb8-v3, NOISE 0.03; fixed weights, fixed
    data: exact thresholds, the PSNR one inside issue 16's 0.5 dB). Measured: Landsat 7
    +0.27 / +0.37 dB and detail 0.16 -> 0.39 / 0.36 -> 0.57 of the original's; NAIP
    -0.25 / -0.13 dB and 0.48 -> 0.73 / 0.67 -> 0.83 (v2: -0.15 / -0.10 dB, 0.60 / 0.75)."""
    target = diffusion(data(source), tmp_path / "scene.nsat", f"LEVELS={levels}", window=window,
                       bands=[1, 2, 3])
    original = gdal.Open(data(source)).ReadAsArray(*window)[:3].astype(np.float64)
    refined = read_all(gdal.Open(target)).astype(np.float64)
    base = read_all(gdal.OpenEx(target, open_options=["REFINEMENT=NO"])).astype(np.float64)
    assert psnr(original, refined, 255.0) > psnr(original, base, 255.0) - 0.4
    detail = [high_frequency_energy(image) / high_frequency_energy(original) for image in (base, refined)]
    assert detail[0] + 0.1 < detail[1] < 1.15


def test_same_pixels_on_every_decode_and_in_overviews(naip):
    _, target = naip
    first = read_all(gdal.OpenEx(target, open_options=["NUM_THREADS=1"]))
    assert np.array_equal(first, read_all(gdal.OpenEx(target, open_options=["NUM_THREADS=2"])))
    assert np.array_equal(first, read_all(gdal.Open(target)))
    window = gdal.Open(target).ReadAsArray(130, 70, 100, 90)  # across tile corners
    assert np.array_equal(window, first[:, 70:160, 130:230])
    datasets = [gdal.OpenEx(target, open_options=[f"NUM_THREADS={n}"]) for n in (1, 2)]
    overviews = [dataset.GetRasterBand(1).GetOverview(0) for dataset in datasets]
    assert overviews[0] is not None
    assert np.array_equal(overviews[0].ReadAsArray(), overviews[1].ReadAsArray())


def test_landsat_scene_id_in_the_file_name_gives_the_date(tmp_path):
    source = byte_rgb(data("landsat8_b4_uint16.tif"), tmp_path / "LC81070352015122LGN00_red.tif",
                      srcWin=[500, 500, 128, 128])
    shown = condition(diffusion(source, tmp_path / "l8.nsat"))
    assert shown["ACQUISITION_YEAR"].startswith("2015 (Landsat scene id")
    assert shown["ACQUISITION_DAY_OF_YEAR"].startswith("122.5")  # 2 May 2015, date only
    assert shown["CENTER_LAT"].startswith("36.")


def test_gcp_only_scene_gives_its_position(tmp_path):
    source = byte_rgb(data("s1_grd_gcps_uint16.tif"), tmp_path / "gcps.tif")
    assert gdal.Open(source).GetGCPCount() > 0 and gdal.Open(source).GetGeoTransform(can_return_null=True) is None
    shown = condition(diffusion(source, tmp_path / "gcps.nsat", "LEVELS=1"))
    assert shown["CENTER_LAT"].startswith("10.2") and "GCPs" in shown["CENTER_LAT"]
    assert shown["CENTER_LON"].startswith("76.89")
    assert float(shown["GSD"].split()[0]) == pytest.approx(202, rel=0.05)


def test_scene_without_metadata_codes_with_unknowns_and_overrides_are_shown(tmp_path):
    png = str(tmp_path / "chip.png")
    gdal.Translate(png, data("eurosat_rgb_river.jpg"), format="PNG")
    plain = diffusion(png, tmp_path / "plain.nsat")
    shown = condition(plain)
    for key in ("GSD", "CENTER_LAT", "CENTER_LON", "ACQUISITION_DAY_OF_YEAR", "SUN_ELEVATION"):
        assert shown[key] == "unknown", key
    original = gdal.Open(png).ReadAsArray()
    assert psnr(original, read_all(gdal.Open(plain)), 255.0) > 33.0
    told = diffusion(png, tmp_path / "told.nsat", "GSD=10", "CENTER_LAT=48.1", "CENTER_LON=11.6",
                     "ACQUISITION_DATETIME=2017-06-13T10:10:31Z")
    shown = condition(told)
    assert shown["GSD"] == "10 (creation option GSD)"
    assert shown["ACQUISITION_DAY_OF_YEAR"].startswith("164.42")
    assert "computed" in shown["SUN_ELEVATION"] and float(shown["SUN_ELEVATION"].split()[0]) > 55
    # The condition reaches the refiner: another GSD, other pixels from the same payload.
    assert not np.array_equal(read_all(gdal.Open(told)), read_all(gdal.Open(plain)))


def test_gdalinfo_shows_the_condition_and_the_open_option(naip):
    _, target = naip
    info = run_gdal("gdalinfo", target).stdout
    assert "NSAT_CONDITION_GSD=5.00" in info and "NSAT_CODEC=DIFFUSION" in info
    assert "REFINEMENT" in run_gdal("gdalinfo", "--format", "NSAT").stdout


def test_bad_options_fail_cleanly_and_leave_no_file(tmp_path):
    target = tmp_path / "bad.nsat"
    cases = [
        (data("naip_4band_byte.tif"), ["CODEC=DIFFUSION"], gdal.CPLE_NotSupported, "3-band (RGB) Byte"),
        (data("eurosat_rgb_river.jpg"), ["CODEC=DIFFUSION", "NOISE=0.5"], gdal.CPLE_IllegalArg, "NOISE"),
        (data("eurosat_rgb_river.jpg"), ["CODEC=DIFFUSION", "QUALITY=50"], gdal.CPLE_IllegalArg,
         "give LEVELS"),
        (data("eurosat_rgb_river.jpg"), ["CODEC=DIFFUSION", "SUN_ELEVATION=100"], gdal.CPLE_IllegalArg,
         "SUN_ELEVATION"),
        (data("eurosat_rgb_river.jpg"), ["CODEC=DIFFUSION", "MODEL=diffusion-none"], None, "diffusion-none"),
    ]
    for source, options, expected, words in cases:
        result, failures = failures_of(
            lambda: gdal.Translate(str(target), source, format="NSAT", creationOptions=options))
        assert result is None, options
        number, message = nsat_failure(failures)
        assert expected is None or number == expected, (options, number, message)
        assert words in message, (options, message)
        assert not target.exists(), options


def test_refinement_open_option_is_checked(naip, tmp_path):
    _, target = naip
    result, failures = failures_of(lambda: gdal.OpenEx(target, open_options=["REFINEMENT=MAYBE"]))
    assert result is None
    number, message = nsat_failure(failures)
    assert number == gdal.CPLE_IllegalArg and "REFINEMENT" in message
    jpeg = str(tmp_path / "jpeg.nsat")
    gdal.Translate(jpeg, data("eurosat_rgb_river.jpg"), format="NSAT", creationOptions=["CODEC=JPEG"])
    warnings = []
    gdal.PushErrorHandler(lambda level, number, message: warnings.append(message))
    try:
        dataset = gdal.OpenEx(jpeg, open_options=["REFINEMENT=NO"])
    finally:
        gdal.PopErrorHandler()
    assert dataset is not None and dataset.ReadAsArray() is not None
    assert any("REFINEMENT is ignored by NSAT_CODEC=JPEG" in w for w in warnings), warnings
