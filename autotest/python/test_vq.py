"""VQ, the vector-quantised learned codec, end to end through GDAL and rasterio on real
scenes: round trips for each shipped model, the codebook indices as the NSAT_LATENT
subdataset, and the errors a user can cause."""
import json
import os

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, data, failures_of, nsat_failure
from test_multirate import card_sha256
from test_roundtrip import read_all

MODELS = ROOT / "models"
# (source in autotest/data, window or None, default model, PSNR floor in dB at LEVELS=2
# against the type's peak: the shipped weights' 40.5, 33.9 and 58.6 dB less about 1 dB)
CASES = {
    "rgb8": ("eurosat_rgb_river.jpg", None, "vq-rgb8-v2", 39.5),
    "rgbn8": ("naip_4band_byte.tif", [704, 256, 230, 256], "vq-rgbn8-v1", 33.0),
    "rgbn16": ("eurosat_ms_residential_rgbn.tif", None, "vq-rgbn16-v1", 57.5),
}


def psnr(reference, decoded, peak):
    diff = reference.astype(np.float64) - decoded.astype(np.float64)
    return float(10 * np.log10(peak * peak / np.mean(diff * diff)))


def vq_translate(source, target, *options, window=None):
    gdal.Translate(str(target), source, format="NSAT", srcWin=window,
                   creationOptions=["CODEC=VQ", *options])
    return target


def source_array(source, window):
    dataset = gdal.Open(source)
    if window:
        return dataset.ReadAsArray(*window)
    return read_all(dataset)


@pytest.fixture(scope="module", params=sorted(CASES))
def coded(request, tmp_path_factory):
    name, window, model, floor = CASES[request.param]
    target = tmp_path_factory.mktemp("vq") / f"{request.param}.nsat"
    vq_translate(data(name), target, window=window)
    return request.param, target


def test_each_model_round_trips_through_rasterio(coded):
    import rasterio
    case, target = coded
    name, window, model, floor = CASES[case]
    original = source_array(data(name), window)
    with rasterio.open(target) as dataset:
        decoded = dataset.read()
        assert dataset.dtypes[0] == str(original.dtype)
        assert dataset.count == original.shape[0]
    assert decoded.shape == original.shape
    peak = 255.0 if original.dtype == np.uint8 else 65535.0
    assert psnr(original, decoded, peak) > floor
    info = gdal.Open(str(target))
    assert info.GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == "VQ"
    assert info.GetMetadataItem("NSAT_MODELS", "IMAGE_STRUCTURE") == f"{model}:{card_sha256(model)}"


def test_georeferencing_is_kept(coded):
    case, target = coded
    name, window, _, _ = CASES[case]
    source = gdal.Open(data(name))
    decoded = gdal.Open(str(target))
    if source.GetSpatialRef() is None:
        pytest.skip("source not georeferenced")
    assert decoded.GetSpatialRef().IsSame(source.GetSpatialRef())
    expected = list(source.GetGeoTransform())
    if window:
        expected[0] += window[0] * expected[1]
        expected[3] += window[1] * expected[5]
    assert np.allclose(decoded.GetGeoTransform(), expected)


def test_levels_trade_bytes_for_quality(tmp_path):
    name, _, _, _ = CASES["rgbn16"]
    original = read_all(gdal.Open(data(name)))
    sizes, qualities = [], []
    for levels in (1, 2, 3):
        target = vq_translate(data(name), tmp_path / f"l{levels}.nsat", f"LEVELS={levels}")
        sizes.append(os.path.getsize(target))
        qualities.append(psnr(original, read_all(gdal.Open(str(target))), 65535.0))
    assert sizes[0] < sizes[1] < sizes[2], sizes
    assert qualities[0] < qualities[1] < qualities[2], qualities


def latent_embedding(model, indices):
    """The quantised latent from NSAT_LATENT's bands: for each codebook group, its codewords
    summed over the levels (bands are level-major, then group)."""
    tables = json.loads((MODELS / model / "vq_tables.json").read_text())
    books = np.array(tables["codebooks"], dtype=np.float32)  # [level][group][entry][channel]
    groups = books.shape[1]
    levels = indices.shape[0] // groups
    y = np.zeros((groups * books.shape[3],) + indices.shape[1:], dtype=np.float32)
    for level in range(levels):
        for group in range(groups):
            codewords = books[level, group][indices[level * groups + group]]  # h, w, channels
            y[group * books.shape[3]:(group + 1) * books.shape[3]] += np.moveaxis(codewords, -1, 0)
    return y


def test_latent_subdataset_holds_the_decoded_indices(coded):
    """NSAT_LATENT in rasterio: UInt16 bands on a grid 4 times coarser, georeferenced; the
    model's own TorchScript synthesis of those indices' codewords gives the pixels the
    plugin decodes, so they are the indices the file stores."""
    import rasterio
    import torch
    case, target = coded
    _, _, model, _ = CASES[case]
    with rasterio.open(target) as image, rasterio.open(f"NSAT_LATENT:{target}") as latent:
        indices = latent.read()
        assert latent.dtypes[0] == "uint16"
        assert (latent.width, latent.height) == (-(-image.width // 4), -(-image.height // 4))
        if image.crs:
            assert latent.crs == image.crs
            assert latent.transform.a == pytest.approx(image.transform.a * 4)
            assert latent.transform.e == pytest.approx(image.transform.e * 4)
        decoded = image.read().astype(np.float32)
        descriptions = latent.descriptions
    assert descriptions[0] == "level1_group1"
    synthesis = torch.jit.load(str(MODELS / model / "synthesis.pt"))
    with torch.no_grad():
        expected = synthesis(torch.from_numpy(latent_embedding(model, indices))[None])[0].numpy()
    expected = np.round(expected[:, :decoded.shape[1], :decoded.shape[2]])
    difference = np.abs(decoded - expected)
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.01


def test_gdalinfo_lists_the_latent_subdataset(coded):
    _, target = coded
    subdatasets = gdal.Open(str(target)).GetMetadata("SUBDATASETS")
    assert subdatasets["SUBDATASET_1_NAME"] == f"NSAT_LATENT:{target}"
    assert "VQ_INDEX" in subdatasets["SUBDATASET_1_DESC"]


def test_same_pixels_on_every_decode(tmp_path):
    name, window, _, _ = CASES["rgbn8"]
    target = vq_translate(data(name), tmp_path / "naip.nsat", "BLOCKSIZE=128", window=window)
    first = read_all(gdal.OpenEx(str(target), open_options=["NUM_THREADS=1"]))
    again = read_all(gdal.OpenEx(str(target), open_options=["NUM_THREADS=2"]))
    assert np.array_equal(first, again)
    assert np.array_equal(first, read_all(gdal.Open(str(target))))


def test_wrong_input_is_refused_and_leaves_no_file(tmp_path):
    target = tmp_path / "float.nsat"

    def call():
        return gdal.Translate(str(target), data("s1_grd_vv_db_float32.tif"), format="NSAT",
                              creationOptions=["CODEC=VQ"])

    result, failures = failures_of(call)
    assert result is None
    number, message = nsat_failure(failures)
    assert number == gdal.CPLE_NotSupported and "VQ codes Byte, UInt16 and Int16" in message
    assert not target.exists()

    def too_many_levels():
        return gdal.Translate(str(target), data("eurosat_rgb_river.jpg"), format="NSAT",
                              creationOptions=["CODEC=VQ", "LEVELS=5"])

    result, failures = failures_of(too_many_levels)
    assert result is None
    number, message = nsat_failure(failures)
    assert number == gdal.CPLE_IllegalArg and "LEVELS=5" in message
    assert not target.exists()


def test_latent_of_a_file_without_indices_is_refused(tmp_path):
    target = tmp_path / "lossless.nsat"
    gdal.Translate(str(target), data("eurosat_rgb_river.jpg"), format="NSAT",
                   creationOptions=["CODEC=LOSSLESS"])
    result, failures = failures_of(lambda: gdal.Open(f"NSAT_LATENT:{target}"))
    assert result is None
    number, message = nsat_failure(failures)
    assert "stores no latent indices" in message
