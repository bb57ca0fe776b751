"""Round trips through the GDAL command-line tools: gdal_translate to .nsat and back,
on the real scenes in autotest/data, for both codecs."""
import pathlib
import re

import numpy as np
import pytest
from osgeo import gdal

from conftest import data, run_gdal


# ---------------------------------------------------------------- helpers


def read_all(dataset):
    """All bands as a (bands, rows, columns) array."""
    return np.stack([dataset.GetRasterBand(i + 1).ReadAsArray()
                     for i in range(dataset.RasterCount)])


def assert_pixels_equal(expected, actual):
    """Bit-exact comparison; NaN equals NaN for floating-point data."""
    assert expected.shape == actual.shape
    assert expected.dtype == actual.dtype
    if expected.dtype.kind == "f":
        # NaN-aware: NaNs must sit at the same positions; every other sample must
        # have the same bit pattern (so -0.0 vs 0.0 is caught too).
        nan = np.isnan(expected)
        assert np.array_equal(nan, np.isnan(actual)), "NaN positions differ"
        bits = f"u{expected.itemsize}"
        mismatches = np.count_nonzero(expected[~nan].view(bits) != actual[~nan].view(bits))
        assert mismatches == 0, f"{mismatches} samples differ"
    else:
        mismatches = np.count_nonzero(expected != actual)
        assert mismatches == 0, f"{mismatches} samples differ"


def same_srs(a, b):
    if a is None or b is None:
        return a is None and b is None
    return bool(a.IsSame(b))


def gcp_tuples(dataset):
    return [(g.Id, g.Info, g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY, g.GCPZ)
            for g in dataset.GetGCPs()]


def band_description(band):
    return {
        "description": band.GetDescription(),
        "color": band.GetColorInterpretation(),
        "nodata": band.GetNoDataValue(),
        "type": band.DataType,
        "scale": band.GetScale(),
        "offset": band.GetOffset(),
        "unit": band.GetUnitType(),
        # The driver drops STATISTICS_* items on purpose (they would be stale for a
        # lossy copy; GDAL recomputes them on demand).
        "metadata": {key: value for key, value in band.GetMetadata().items()
                     if not key.startswith("STATISTICS_")},
    }


def nodata_equal(a, b):
    if a is None or b is None:
        return a is None and b is None
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return a == b


def assert_same_scene(source, copy, *, pixels=True):
    """Georeferencing, GCPs, bands, metadata and (optionally) pixels all equal."""
    assert (copy.RasterXSize, copy.RasterYSize, copy.RasterCount) == \
        (source.RasterXSize, source.RasterYSize, source.RasterCount)
    assert same_srs(source.GetSpatialRef(), copy.GetSpatialRef())
    assert copy.GetGeoTransform(can_return_null=True) == \
        source.GetGeoTransform(can_return_null=True)
    assert copy.GetGCPCount() == source.GetGCPCount()
    assert gcp_tuples(copy) == gcp_tuples(source)
    assert same_srs(source.GetGCPSpatialRef(), copy.GetGCPSpatialRef())
    assert copy.GetMetadata() == source.GetMetadata()
    for index in range(1, source.RasterCount + 1):
        expected = band_description(source.GetRasterBand(index))
        actual = band_description(copy.GetRasterBand(index))
        assert nodata_equal(expected.pop("nodata"), actual.pop("nodata")), f"band {index}"
        assert actual == expected, f"band {index}"
    if pixels:
        assert_pixels_equal(read_all(source), read_all(copy))


def no_leftovers(directory, stem):
    """Files in `directory` whose name starts with `stem` (target, .partial, ...)."""
    return sorted(p.name for p in pathlib.Path(directory).iterdir() if p.name.startswith(stem))


def psnr(reference, decoded, valid, peak=255.0):
    diff = reference[:, valid].astype(np.float64) - decoded[:, valid].astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


# ---------------------------------------------------------------- LOSSLESS round trips

LOSSLESS_SCENES = [
    "landsat7_rgb_byte.tif",          # 3 x Byte, nodata 0 rotated collar
    "landsat8_b4_uint16.tif",         # UInt16, AREA_OR_POINT=Point
    "eurosat_ms_residential.tif",     # 13 x UInt16, 64 x 64
    "eurosat_ms_annualcrop_1601.tif",
    "s1_grd_vv_db_float32.tif",       # Float32 dB, nodata -99
    "s1_grd_gcps_uint16.tif",         # UInt16, 210 GCPs, no geotransform
    "landsat_int16_custom_crs.tif",   # 3 x Int16, custom CRS, nodata -9999
]


@pytest.mark.parametrize("scene", LOSSLESS_SCENES)
def test_lossless_round_trip(scene, tmp_path, nsat_driver):
    target = tmp_path / "copy.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=LOSSLESS", data(scene), target)
    source = gdal.Open(data(scene))
    copy = gdal.Open(str(target))
    assert copy.GetDriver().ShortName == "NSAT"
    assert copy.GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == "LOSSLESS"
    assert_same_scene(source, copy)

    # ... and back to GeoTIFF with the CLI.
    back = tmp_path / "back.tif"
    run_gdal("gdal_translate", "-q", target, back)
    back_dataset = gdal.Open(str(back))
    assert back_dataset.GetDriver().ShortName == "GTiff"
    assert_same_scene(source, back_dataset)


def test_lossless_float_nodata_and_nan_pixels(tmp_path):
    """Float32 dB scene (declared nodata -99, but no such sample in the file): with
    -99, NaN and -0.0 samples written into it, all survive bit-exactly."""
    source = gdal.Open(data("s1_grd_vv_db_float32.tif"))
    pixels = source.GetRasterBand(1).ReadAsArray().copy()
    pixels[10:20, 30:40] = np.nan
    pixels[100:140, 0:50] = -99
    pixels[0, 0] = -0.0
    with_special = tmp_path / "special.tif"
    dataset = gdal.Translate(str(with_special), source)
    dataset.GetRasterBand(1).WriteArray(pixels)
    dataset = None
    target = tmp_path / "special.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", with_special, target)
    copy = gdal.Open(str(target))  # keep the dataset alive while its band is used
    decoded = copy.GetRasterBand(1).ReadAsArray()
    assert_pixels_equal(pixels, decoded)
    assert np.signbit(decoded[0, 0])
    assert np.count_nonzero(decoded == -99) == 40 * 50
    assert copy.GetRasterBand(1).GetNoDataValue() == -99


def test_lossless_collar_nodata_exact(tmp_path):
    """Landsat 7: the nodata collar is exactly the source's collar on every band."""
    target = tmp_path / "l7.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", data("landsat7_rgb_byte.tif"), target)
    source = read_all(gdal.Open(data("landsat7_rgb_byte.tif")))
    decoded = read_all(gdal.Open(str(target)))
    assert np.count_nonzero(source == 0) > 10000, "collar expected in the source"
    assert np.array_equal(source == 0, decoded == 0)


@pytest.mark.parametrize("scene, data_type", [
    ("landsat_int16_custom_crs.tif", "Int32"),
    ("landsat8_b4_uint16.tif", "UInt32"),
    ("s1_grd_vv_db_float32.tif", "Float64"),
])
def test_lossless_wider_data_types(scene, data_type, tmp_path):
    """The types no bundled scene has, converted from real scenes with -ot."""
    converted = tmp_path / "converted.tif"
    run_gdal("gdal_translate", "-q", "-ot", data_type, data(scene), converted)
    target = tmp_path / "wide.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "BLOCKSIZE=128", converted, target)
    source = gdal.Open(str(converted))
    copy = gdal.Open(str(target))
    assert gdal.GetDataTypeName(copy.GetRasterBand(1).DataType) == data_type
    assert_same_scene(source, copy)


@pytest.mark.parametrize("data_type", ["Int64", "UInt64", "CFloat32"])
def test_unsupported_data_types_fail_cleanly(data_type, tmp_path):
    converted = tmp_path / "converted.tif"
    run_gdal("gdal_translate", "-q", "-ot", data_type, data("eurosat_rgb_river.jpg"), converted)
    result = run_gdal("gdal_translate", "-of", "NSAT", converted, tmp_path / "out.nsat",
                      check=False)
    assert result.returncode != 0
    assert data_type in result.stderr and "not supported" in result.stderr, result.stderr
    assert no_leftovers(tmp_path, "out") == []


def test_band_descriptions_scale_unit_and_domains_round_trip(tmp_path):
    """Sentinel-2 band names, scale/offset/unit, band metadata and extra metadata
    domains set on a copy of the EuroSAT scene survive NSAT and the way back."""
    described = tmp_path / "described.tif"
    dataset = gdal.Translate(str(described), data("eurosat_ms_residential.tif"))
    names = ["B01 coastal", "B02 blue", "B03 green", "B04 red", "B05 red edge 1",
             "B06 red edge 2", "B07 red edge 3", "B08 NIR", "B08A narrow NIR",
             "B09 water vapour", "B10 SWIR cirrus", "B11 SWIR 1", "B12 SWIR 2"]
    for index, name in enumerate(names):
        band = dataset.GetRasterBand(index + 1)
        band.SetDescription(name)
        band.SetScale(0.0001)
        band.SetOffset(-0.1 * index)
        band.SetUnitType("reflectance")
        band.SetMetadataItem("CENTRAL_WAVELENGTH_NM", str(443 + 60 * index))
        band.SetMetadataItem("SOURCE", "L1C", "PROCESSING")
    dataset.SetMetadataItem("SPACECRAFT_NAME", "Sentinel-2A")
    dataset.SetMetadataItem("NOTE", 'ünïcödé "quoted" <xml> & = sign')
    dataset.SetMetadataItem("PROCESSING_BASELINE", "02.04", "PRODUCT")
    dataset = None

    source = gdal.Open(str(described))
    target = tmp_path / "described.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", described, target)
    copy = gdal.Open(str(target))
    assert_same_scene(source, copy)
    assert copy.GetRasterBand(8).GetDescription() == "B08 NIR"
    assert copy.GetMetadata("PRODUCT") == {"PROCESSING_BASELINE": "02.04"}
    for index in range(1, 14):
        assert copy.GetRasterBand(index).GetMetadata("PROCESSING") == {"SOURCE": "L1C"}

    back = tmp_path / "back.tif"
    run_gdal("gdal_translate", "-q", target, back)
    assert_same_scene(source, gdal.Open(str(back)))


def _palette_source(tmp_path, colour_interpretation):
    """One band of the EuroSAT river JPEG with a 256-entry colour table."""
    memory = gdal.Translate("", data("eurosat_rgb_river.jpg"), format="MEM", bandList=[1])
    table = gdal.ColorTable()
    for i in range(256):
        table.SetColorEntry(i, (i, 255 - i, (7 * i) % 256, 255))
    band = memory.GetRasterBand(1)
    band.SetColorTable(table)
    band.SetColorInterpretation(colour_interpretation)
    path = tmp_path / "palette.tif"
    gdal.Translate(str(path), memory)
    return path


def test_colour_table_round_trip(tmp_path):
    source_path = _palette_source(tmp_path, gdal.GCI_PaletteIndex)
    target = tmp_path / "palette.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", source_path, target)
    source = gdal.Open(str(source_path))
    copy = gdal.Open(str(target))
    assert copy.GetRasterBand(1).GetColorInterpretation() == gdal.GCI_PaletteIndex
    expected = source.GetRasterBand(1).GetColorTable()
    actual = copy.GetRasterBand(1).GetColorTable()
    assert actual is not None and actual.GetCount() == expected.GetCount() == 256
    assert [actual.GetColorEntry(i) for i in range(256)] == \
        [expected.GetColorEntry(i) for i in range(256)]
    assert_same_scene(source, copy)


def test_colour_interpretation_kept_alongside_colour_table(tmp_path):
    """A band that GeoTIFF reports as Red while carrying a colour table (what
    `gdal_translate -b 1` of an RGB JPEG + SetColorTable gives): the copy must report
    the same interpretation as the source, as gdal_translate to GTiff does."""
    memory = gdal.Translate("", data("eurosat_rgb_river.jpg"), format="MEM", bandList=[1])
    source_path = tmp_path / "red_with_table.tif"
    dataset = gdal.Translate(str(source_path), memory)
    table = gdal.ColorTable()
    for i in range(256):
        table.SetColorEntry(i, (i, 255 - i, (7 * i) % 256, 255))
    dataset.GetRasterBand(1).SetColorTable(table)
    dataset = None
    source = gdal.Open(str(source_path))
    assert source.GetRasterBand(1).GetColorInterpretation() == gdal.GCI_RedBand
    assert source.GetRasterBand(1).GetColorTable() is not None

    gtiff_copy = tmp_path / "gtiff_copy.tif"
    run_gdal("gdal_translate", "-q", source_path, gtiff_copy)
    gtiff_dataset = gdal.Open(str(gtiff_copy))
    assert gtiff_dataset.GetRasterBand(1).GetColorInterpretation() == gdal.GCI_RedBand

    target = tmp_path / "red_with_table.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", source_path, target)
    copy = gdal.Open(str(target))
    assert copy.GetRasterBand(1).GetColorTable() is not None
    assert copy.GetRasterBand(1).GetColorInterpretation() == gdal.GCI_RedBand, \
        gdal.GetColorInterpretationName(copy.GetRasterBand(1).GetColorInterpretation())


# ---------------------------------------------------------------- JPEG

# PSNR over the valid pixels (peak 255), libjpeg-turbo of Debian bookworm.
# landsat7_rgb_byte.tif, QUALITY=85, 4:2:0: measured 31.92 dB (GDAL's own GTiff
# COMPRESS=JPEG JPEG_QUALITY=85 PHOTOMETRIC=YCBCR: 31.87 dB; a 300 m scene is busy).
JPEG85_MIN_PSNR_DB = 31.5
# naip_4band_byte.tif, QUALITY=85, one grey stream per band: measured 39.10 dB.
NAIP_JPEG85_MIN_PSNR_DB = 38.5


@pytest.fixture(scope="module")
def landsat7_jpeg85(tmp_path_factory):
    target = tmp_path_factory.mktemp("jpeg") / "l7_q85.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=JPEG", "-co", "QUALITY=85",
             data("landsat7_rgb_byte.tif"), target)
    return target


@pytest.mark.parametrize("blocksize", [None, 64, 16])
def test_jpeg_nodata_exact_both_ways(blocksize, landsat7_jpeg85, tmp_path):
    """Small blocks add tiles that are entirely collar, and 4:2:0 edge tiles of odd
    sizes (791 = 49 x 16 + 7)."""
    path = landsat7_jpeg85
    if blocksize:
        path = tmp_path / f"b{blocksize}.nsat"
        run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=JPEG",
                 "-co", "QUALITY=85", "-co", f"BLOCKSIZE={blocksize}",
                 data("landsat7_rgb_byte.tif"), path)
    source = read_all(gdal.Open(data("landsat7_rgb_byte.tif")))
    dataset = gdal.Open(str(path))
    assert dataset.GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == "JPEG"
    decoded = read_all(dataset)
    for band in range(source.shape[0]):
        source_nodata = source[band] == 0
        decoded_nodata = decoded[band] == 0
        assert np.count_nonzero(source_nodata & ~decoded_nodata) == 0, \
            f"band {band + 1}: nodata samples decoded as valid"
        assert np.count_nonzero(~source_nodata & decoded_nodata) == 0, \
            f"band {band + 1}: valid samples decoded as nodata"
    for index in range(1, 4):
        assert dataset.GetRasterBand(index).GetNoDataValue() == 0


def test_jpeg_psnr(landsat7_jpeg85):
    source_dataset = gdal.Open(data("landsat7_rgb_byte.tif"))
    source = read_all(source_dataset)
    decoded = read_all(gdal.Open(str(landsat7_jpeg85)))
    valid = np.all(source != 0, axis=0)
    value = psnr(source, decoded, valid)
    assert JPEG85_MIN_PSNR_DB < value < float("inf"), f"PSNR {value:.2f} dB"


def test_jpeg_psnr_on_par_with_gtiff_jpeg(landsat7_jpeg85, tmp_path):
    """Same libjpeg, same quality: NSAT's JPEG tiles must not be noticeably worse than
    GDAL's own JPEG-in-TIFF (measured: NSAT 31.92 dB, GTiff 31.87 dB)."""
    reference = tmp_path / "gtiff_jpeg85.tif"
    run_gdal("gdal_translate", "-q", "-co", "COMPRESS=JPEG", "-co", "JPEG_QUALITY=85",
             "-co", "PHOTOMETRIC=YCBCR", "-co", "TILED=YES",
             data("landsat7_rgb_byte.tif"), reference)
    source = read_all(gdal.Open(data("landsat7_rgb_byte.tif")))
    valid = np.all(source != 0, axis=0)
    nsat_psnr = psnr(source, read_all(gdal.Open(str(landsat7_jpeg85))), valid)
    gtiff_psnr = psnr(source, read_all(gdal.Open(str(reference))), valid)
    assert nsat_psnr > gtiff_psnr - 0.5, (nsat_psnr, gtiff_psnr)


def test_jpeg_georeferencing_kept(landsat7_jpeg85):
    source = gdal.Open(data("landsat7_rgb_byte.tif"))
    assert_same_scene(source, gdal.Open(str(landsat7_jpeg85)), pixels=False)


def test_jpeg_quality_monotone_in_size(tmp_path):
    sizes = {}
    for quality in (30, 60, 90):
        target = tmp_path / f"q{quality}.nsat"
        run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=JPEG",
                 "-co", f"QUALITY={quality}", data("landsat7_rgb_byte.tif"), target)
        sizes[quality] = target.stat().st_size
        bpp = float(gdal.Open(str(target)).GetMetadataItem("NSAT_BITS_PER_PIXEL",
                                                            "IMAGE_STRUCTURE"))
        assert bpp > 0
    assert sizes[30] < sizes[60] < sizes[90], sizes


def test_jpeg_naip_4_bands(tmp_path):
    target = tmp_path / "naip.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=JPEG", "-co", "QUALITY=85",
             data("naip_4band_byte.tif"), target)
    source_dataset = gdal.Open(data("naip_4band_byte.tif"))
    dataset = gdal.Open(str(target))
    assert dataset.RasterCount == 4
    assert_same_scene(source_dataset, dataset, pixels=False)
    source = read_all(source_dataset)
    decoded = read_all(dataset)
    assert np.array_equal(source == 0, decoded == 0)
    valid = np.all(source != 0, axis=0)
    value = psnr(source, decoded, valid)
    assert NAIP_JPEG85_MIN_PSNR_DB < value < float("inf"), f"PSNR {value:.2f} dB"


def test_jpeg_chroma_444_larger_than_420(tmp_path):
    sizes = {}
    for mode in ("420", "444"):
        target = tmp_path / f"c{mode}.nsat"
        run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=JPEG",
                 "-co", f"CHROMA_SUBSAMPLING={mode}", data("landsat7_rgb_byte.tif"), target)
        sizes[mode] = target.stat().st_size
    assert sizes["420"] < sizes["444"], sizes


# ---------------------------------------------------------------- failures


def test_jpeg_on_uint16_fails_cleanly(tmp_path):
    target = tmp_path / "l8_jpeg.nsat"
    result = run_gdal("gdal_translate", "-of", "NSAT", "-co", "CODEC=JPEG",
                      data("landsat8_b4_uint16.tif"), target, check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "LOSSLESS" in message, message
    assert "UInt16" in message, message
    assert no_leftovers(tmp_path, "l8_jpeg") == []


def test_complex_type_fails_cleanly(tmp_path):
    target = tmp_path / "slc.nsat"
    result = run_gdal("gdal_translate", "-of", "NSAT", data("s1_slc_cint16.tif"), target,
                      check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "CInt16" in message and "not supported" in message, message
    assert no_leftovers(tmp_path, "slc") == []


@pytest.mark.parametrize("options, expected", [
    (["BLOCKSIZE=50"], "BLOCKSIZE=50 is invalid"),
    (["BLOCKSIZE=8192"], "BLOCKSIZE=8192 is invalid"),
    (["CODEC=WEBP"], "CODEC=WEBP is unknown"),
    (["NUM_THREADS=zero"], "NUM_THREADS=zero is invalid"),
    (["OVERVIEWS=YES"], "OVERVIEWS=YES is invalid"),
    (["OVERVIEW_RESAMPLING=SHARPEN"], "OVERVIEW_RESAMPLING=SHARPEN"),
    (["CODEC=JPEG", "QUALITY=101"], "QUALITY=101 is invalid"),
    (["CODEC=JPEG", "CHROMA_SUBSAMPLING=411"], "CHROMA_SUBSAMPLING=411 is invalid"),
    (["ZSTD_LEVEL=23"], "ZSTD_LEVEL=23 is invalid"),
])
def test_invalid_option_fails_cleanly(options, expected, tmp_path):
    target = tmp_path / "bad.nsat"
    co = [item for option in options for item in ("-co", option)]
    result = run_gdal("gdal_translate", "-of", "NSAT", *co, data("eurosat_rgb_forest.jpg"),
                      target, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert no_leftovers(tmp_path, "bad") == []


def test_option_of_other_codec_warns(tmp_path):
    target = tmp_path / "warn.nsat"
    result = run_gdal("gdal_translate", "-of", "NSAT", "-co", "CODEC=LOSSLESS",
                      "-co", "QUALITY=50", data("eurosat_rgb_forest.jpg"), target)
    assert "QUALITY is ignored by CODEC=LOSSLESS" in result.stderr, result.stderr
    source = gdal.Open(data("eurosat_rgb_forest.jpg"))
    assert_same_scene(source, gdal.Open(str(target)))


def test_codec_name_case_insensitive(tmp_path):
    target = tmp_path / "lower.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=jpeg",
             data("eurosat_rgb_forest.jpg"), target)
    assert gdal.Open(str(target)).GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == "JPEG"


def test_rpc_metadata_round_trip(tmp_path):
    """Rational polynomial coefficients (the RPC domain) travel with the scene, so
    gdalwarp -rpc keeps working on the .nsat copy."""
    with_rpc = tmp_path / "rpc.tif"
    dataset = gdal.Translate(str(with_rpc), data("s1_grd_gcps_uint16.tif"))
    rpc = {"LINE_OFF": "418", "SAMP_OFF": "640", "LAT_OFF": "45.1", "LONG_OFF": "7.2",
           "HEIGHT_OFF": "200", "LINE_SCALE": "419", "SAMP_SCALE": "641", "LAT_SCALE": "0.1",
           "LONG_SCALE": "0.1", "HEIGHT_SCALE": "500",
           "LINE_NUM_COEFF": " ".join(["0.01"] * 20),
           "LINE_DEN_COEFF": " ".join(["1"] + ["0"] * 19),
           "SAMP_NUM_COEFF": " ".join(["0.02"] * 20),
           "SAMP_DEN_COEFF": " ".join(["1"] + ["0"] * 19)}
    dataset.SetMetadata(rpc, "RPC")
    dataset = None
    target = tmp_path / "rpc.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", with_rpc, target)
    assert gdal.Open(str(target)).GetMetadata("RPC") == gdal.Open(str(with_rpc)).GetMetadata("RPC")


# ---------------------------------------------------------------- gdalinfo


def test_gdalinfo_shows_driver_and_codec(tmp_path):
    target = tmp_path / "forest.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", data("eurosat_rgb_forest.jpg"), target)
    info = run_gdal("gdalinfo", target).stdout
    assert re.search(r"^Driver: NSAT/", info, re.MULTILINE), info
    assert re.search(r"^\s+NSAT_CODEC=LOSSLESS$", info, re.MULTILINE), info
    match = re.search(r"^\s+NSAT_BITS_PER_PIXEL=([0-9.]+)$", info, re.MULTILINE)
    assert match, info
    # 3 x 8 bits uncompressed; lossless on a small natural image lands below that.
    assert 0 < float(match.group(1)) < 24


def test_gdalinfo_format_lists_creation_options():
    info = run_gdal("gdalinfo", "--format", "NSAT").stdout
    assert "NSAT" in info
    for option in ("CODEC", "QUALITY", "CHROMA_SUBSAMPLING", "ZSTD_LEVEL", "BLOCKSIZE",
                   "OVERVIEWS", "OVERVIEW_RESAMPLING", "NUM_THREADS"):
        assert f"name='{option}'" in info or f'name="{option}"' in info, option
    for value in ("LOSSLESS", "JPEG", "AUTO", "NONE"):
        assert f"<Value>{value}</Value>" in info, value


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("scene, codec_options", [
    ("landsat8_b4_uint16.tif", ["-co", "CODEC=LOSSLESS"]),
    ("landsat7_rgb_byte.tif", ["-co", "CODEC=JPEG", "-co", "QUALITY=85"]),
])
def test_output_independent_of_thread_count(scene, codec_options, tmp_path):
    # Small blocks: many tiles per strip, so the worker threads really interleave.
    common = ["gdal_translate", "-q", "-of", "NSAT", "-co", "BLOCKSIZE=128", *codec_options]
    one = tmp_path / "t1.nsat"
    four = tmp_path / "t4.nsat"
    config = tmp_path / "cfg2.nsat"
    run_gdal(*common, "-co", "NUM_THREADS=1", data(scene), one)
    run_gdal(*common, "-co", "NUM_THREADS=4", data(scene), four)
    run_gdal(*common, "--config", "GDAL_NUM_THREADS", "2", data(scene), config)
    reference = one.read_bytes()
    assert four.read_bytes() == reference
    assert config.read_bytes() == reference


# ---------------------------------------------------------------- edge sizes


@pytest.mark.parametrize("scene, blocksize", [
    ("landsat7_rgb_byte.tif", 64),        # 791 x 718: 23 and 14 px edge tiles
    ("s1_grd_vv_db_float32.tif", 64),     # 268 x 217: 12 and 25 px edge tiles
    ("eurosat_ms_residential.tif", 48),   # 64 x 64: 16 px edge tiles
    ("eurosat_ms_residential.tif", 64),   # exactly one tile
    ("eurosat_rgb_river.jpg", 128),       # one tile larger than the image
    ("landsat_int16_custom_crs.tif", 16),  # smallest block, many tiles
])
def test_block_size_edges(scene, blocksize, tmp_path):
    target = tmp_path / "edges.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", f"BLOCKSIZE={blocksize}",
             data(scene), target)
    source = gdal.Open(data(scene))
    copy = gdal.Open(str(target))
    assert copy.GetRasterBand(1).GetBlockSize() == [blocksize, blocksize]
    assert_same_scene(source, copy)
    # Windows that straddle the last, cropped tiles, read band by band and all at once.
    width, height = source.RasterXSize, source.RasterYSize
    for x, y, w, h in [(width - 17, height - 9, 17, 9), (0, height - 1, width, 1),
                       (width - 1, 0, 1, height), (width // 3, height // 3, width // 2,
                                                            height // 2)]:
        expected = source.ReadAsArray(x, y, w, h)
        actual = copy.ReadAsArray(x, y, w, h)
        assert_pixels_equal(np.asarray(expected), np.asarray(actual))


def test_edge_block_size_overviews(tmp_path):
    """Internal overview levels of an image that is not a multiple of the block."""
    target = tmp_path / "ovr.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "BLOCKSIZE=64",
             data("landsat7_rgb_byte.tif"), target)
    dataset = gdal.Open(str(target))  # GDAL 3.6: a band does not keep its dataset alive
    band = dataset.GetRasterBand(1)
    sizes = [(band.GetOverview(i).XSize, band.GetOverview(i).YSize)
             for i in range(band.GetOverviewCount())]
    assert sizes == [(396, 359), (198, 180)]
    for i in range(band.GetOverviewCount()):
        pixels = band.GetOverview(i).ReadAsArray()
        assert pixels.shape == sizes[i][::-1]
        assert pixels.max() > 0


def test_learned_codec_without_its_module_names_the_module(tmp_path, monkeypatch):
    """The plugin never links LibTorch: a learned codec loads nsat_learned.so on first
    use, and a missing module is a clear error with no file written."""
    monkeypatch.setenv("NSAT_LEARNED_MODULE", str(tmp_path / "missing" / "nsat_learned.so"))
    target = tmp_path / "learned.nsat"
    result = run_gdal("gdal_translate", "-of", "NSAT", "-co", "CODEC=MULTIRATE",
                      data("eurosat_rgb_forest.jpg"), target, check=False)
    assert result.returncode != 0
    assert "nsat_learned.so" in result.stderr
    assert "missing" in result.stderr
    assert list(tmp_path.iterdir()) == []
