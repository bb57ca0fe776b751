"""Learned files open without LibTorch, and decode in parallel to the same pixels
whatever the thread count, instruction set or way of reading (GDAL, rasterio, band by
band, windows, gdalwarp -multi)."""
import json
import os
import subprocess

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, data, run_gdal
from test_multirate import pixel_md5, translate

GOLDEN = ROOT / "autotest" / "golden"
GOLDEN_MANIFEST = json.loads((GOLDEN / "golden.json").read_text())
LEARNED_GOLDEN = sorted(name for name, entry in GOLDEN_MANIFEST.items()
                        if any(o in entry["options"] for o in ("CODEC=MULTIRATE", "CODEC=FIXED_QUALITY")))

MAPS_LIBTORCH = ("import sys\nfrom osgeo import gdal\nd=gdal.Open(sys.argv[1])\n"
                 "print(d.GetMetadataItem('NSAT_CODEC','IMAGE_STRUCTURE'), d.RasterXSize,"
                 " 'libtorch' in open('/proc/self/maps').read())\n"
                 "d.GetRasterBand(1).Checksum()\n"
                 "print('libtorch' in open('/proc/self/maps').read())")


@pytest.fixture(scope="module")
def naip_multirate(tmp_path_factory):
    """NAIP 4 bands, 128 px tiles: 8 x 6 tiles, so a full read is many tiles."""
    target = tmp_path_factory.mktemp("parallel") / "naip.nsat"
    return translate(data("naip_4band_byte.tif"), target, "QUALITY=60", "BLOCKSIZE=128")


def test_opening_a_learned_file_loads_no_libtorch_until_a_pixel_is_read(naip_multirate):
    result = subprocess.run(["/usr/bin/python3", "-c", MAPS_LIBTORCH, str(naip_multirate)],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()
    assert first.split() == ["MULTIRATE", str(gdal.Open(data("naip_4band_byte.tif")).RasterXSize),
                             "False"]
    assert second == "True"


def test_gdalinfo_works_without_the_learned_module_and_reading_names_it(naip_multirate):
    env = {**os.environ, "NSAT_LEARNED_MODULE": "/nonexistent/nsat_learned.so"}
    info = subprocess.run(["gdalinfo", str(naip_multirate)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert info.returncode == 0, info.stderr
    for expected in ("NSAT_CODEC=MULTIRATE", "NSAT_MODELS=multirate-rgb8-v6:", "NSAT_BITS_PER_PIXEL=",
                     "Coordinate System is:", "Size is 934, 724"):
        assert expected in info.stdout
    read = subprocess.run(["gdal_translate", "-q", str(naip_multirate), "/vsimem/out.tif"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert read.returncode != 0
    assert "/nonexistent/nsat_learned.so" in read.stderr


@pytest.mark.parametrize("threads", ["1", "2", "3", "ALL_CPUS"])
def test_pixels_are_the_same_for_any_thread_count(naip_multirate, threads):
    reference = pixel_md5(naip_multirate, {**os.environ, "GDAL_NUM_THREADS": "1"})
    assert pixel_md5(naip_multirate, {**os.environ, "GDAL_NUM_THREADS": threads}) == reference
    serial = gdal.OpenEx(str(naip_multirate), open_options=["NUM_THREADS=1"]).ReadAsArray()
    parallel = gdal.OpenEx(str(naip_multirate), open_options=[f"NUM_THREADS={threads}"]).ReadAsArray()
    np.testing.assert_array_equal(parallel, serial)


def test_band_by_band_and_window_reads_equal_a_full_read(naip_multirate):
    full = gdal.OpenEx(str(naip_multirate), open_options=["NUM_THREADS=1"]).ReadAsArray()
    dataset = gdal.OpenEx(str(naip_multirate), open_options=["NUM_THREADS=2"])
    for band in range(dataset.RasterCount):  # as QGIS reads
        np.testing.assert_array_equal(dataset.GetRasterBand(band + 1).ReadAsArray(), full[band])
    for x, y, w, h in ((0, 0, 934, 724), (100, 50, 400, 300), (127, 127, 2, 2), (900, 700, 34, 24)):
        fresh = gdal.OpenEx(str(naip_multirate), open_options=["NUM_THREADS=2"])
        np.testing.assert_array_equal(fresh.ReadAsArray(x, y, w, h), full[:, y:y + h, x:x + w])
    rasterio = pytest.importorskip("rasterio")
    from rasterio.windows import Window
    with rasterio.open(str(naip_multirate), NUM_THREADS="2") as source:
        np.testing.assert_array_equal(source.read(window=Window(130, 260, 500, 400)),
                                      full[:, 260:660, 130:630])


def test_a_one_tile_wide_image_decodes_the_same_in_parallel(tmp_path):
    strip = translate(data("naip_4band_byte.tif"), tmp_path / "strip.nsat", "BLOCKSIZE=256",
                      env={**os.environ})
    column = tmp_path / "column.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-srcwin", "0", "0", "200", "724",
             "-co", "CODEC=MULTIRATE", "-co", "BLOCKSIZE=256", str(strip), str(column))
    one = gdal.OpenEx(str(column), open_options=["NUM_THREADS=1"]).ReadAsArray()
    two = gdal.OpenEx(str(column), open_options=["NUM_THREADS=2"]).ReadAsArray()
    np.testing.assert_array_equal(one, two)


def test_gdalwarp_multi_gives_the_serial_result(naip_multirate, tmp_path):
    outputs = {}
    for name, args in (("serial", ["--config", "GDAL_NUM_THREADS", "1"]),
                       ("multi", ["-multi", "-wo", "NUM_THREADS=2"])):
        target = tmp_path / f"{name}.tif"
        run_gdal("gdalwarp", "-q", *args, "-t_srs", "EPSG:4326", "-r", "bilinear",
                 str(naip_multirate), str(target))
        outputs[name] = gdal.Open(str(target)).ReadAsArray()
    np.testing.assert_array_equal(outputs["multi"], outputs["serial"])


def test_a_bad_thread_count_is_an_illegal_argument(naip_multirate):
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        with pytest.raises(RuntimeError, match="NUM_THREADS=2abc"):
            gdal.OpenEx(str(naip_multirate), open_options=["NUM_THREADS=2abc"])
        assert gdal.GetLastErrorNo() == gdal.CPLE_IllegalArg
    finally:
        gdal.PopErrorHandler()


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_every_instruction_set_decodes_the_golden_files_bit_exactly(isa):
    """The synthesis kernels of each instruction set (the widest the CPU has by default)
    give the recorded pixels of the golden learned files."""
    env = {**os.environ, "NSAT_SYNTHESIS_KERNEL": isa, "GDAL_NUM_THREADS": "2"}
    # The digest the golden files were made with.
    code = ("import sys\nsys.path.insert(0, sys.argv[1])\nfrom make_golden import pixel_md5\n"
            "print(pixel_md5(sys.argv[2]))")
    for name in LEARNED_GOLDEN:
        result = subprocess.run(["/usr/bin/python3", "-c", code, str(ROOT / "scripts"),
                                 str(GOLDEN / name)], capture_output=True, text=True, env=env,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == GOLDEN_MANIFEST[name]["pixels_md5"], name


def test_threads_with_their_own_handles_read_the_serial_pixels(naip_multirate):
    """Several application threads, each with its own dataset, share the decoder's pool:
    random windows give the pixels of a serial read."""
    import random
    import threading
    full = gdal.OpenEx(str(naip_multirate), open_options=["NUM_THREADS=1"]).ReadAsArray()
    failures = []

    def reader(seed):
        try:
            rng = random.Random(seed)
            dataset = gdal.OpenEx(str(naip_multirate), open_options=["NUM_THREADS=2"])
            for _ in range(6):
                w, h = rng.randrange(1, 400), rng.randrange(1, 300)
                x, y = rng.randrange(0, 934 - w), rng.randrange(0, 724 - h)
                if not np.array_equal(dataset.ReadAsArray(x, y, w, h), full[:, y:y + h, x:x + w]):
                    failures.append((seed, x, y, w, h))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append((seed, repr(error)))

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


WARM_START = ROOT / "scripts" / "learned" / "warm_start"


@pytest.mark.skipif(not (WARM_START / "multirate-rgb8-v2" / "card.json").exists(),
                    reason="no in-training model committed")
def test_fused_multiply_add_models_decode_the_same_on_every_instruction_set(tmp_path):
    """Models exported now declare fused-multiply-add synthesis: the in-training RGB model
    (not shipped, loaded from its warm-start folder) gives the same pixels with the scalar
    std::fma path, AVX2 and AVX-512."""
    env = {**os.environ, "NSAT_MODELS_DIR": str(WARM_START)}
    card = json.loads((WARM_START / "multirate-rgb8-v2" / "card.json").read_text())
    assert card["architecture"]["synthesis_arithmetic"] == "fused-multiply-add"
    target = translate(data("landsat7_rgb_byte.tif"), tmp_path / "v2.nsat", "MODEL=multirate-rgb8-v2",
                       "QUALITY=50", "BLOCKSIZE=128", env=env)
    digests = {isa: pixel_md5(target, {**env, "NSAT_SYNTHESIS_KERNEL": isa})
               for isa in ("scalar", "avx2", "avx512")}
    assert len(set(digests.values())) == 1, digests
