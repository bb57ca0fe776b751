"""Bounded writes (issue 14): CreateCopy reads the source in windows of tiles, codes them
on every thread even for a one-tile-wide image, makes overview level k from level k-1
(kept in a temporary GTiff) and writes the tiles in file order.

Checked here: the bytes do not depend on NUM_THREADS; a one-tile-wide image is coded on
several threads; overviews match gdaladdo's on a GTiff; the temporary copies go to
CPL_TMPDIR and never outlive the write; the peak memory of a wide 13-band image stays far
below one tile row of it (what the strip pipeline before held)."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, data, run_gdal, translate_nsat

sys.path.insert(0, str(ROOT / "scripts"))
from bench_createcopy_memory import write_repeat_vrt  # noqa: E402

EUROSAT_MS = data("eurosat_ms_residential.tif")      # 64 x 64, 13 bands UInt16 (Sentinel-2)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Real scenes as they are, and VRTs that repeat one across or down."""
    folder = tmp_path_factory.mktemp("sources")
    repeated = {
        # 3 tiles of 4096 px across, each larger than a read window: windows of one tile
        "wide 13-band": (EUROSAT_MS, 9000, 300),
        # one tile of 256 px across, 32 down: two windows of whole tile rows
        "narrow 13-band": (EUROSAT_MS, 256, 8192),
        # one tile of 256 px across (the left of the Landsat 7 scene, repeated down)
        "narrow RGB": (data("landsat7_rgb_byte.tif"), 256, 4096),
    }
    paths = {"landsat8": data("landsat8_b4_uint16.tif"), "landsat7": data("landsat7_rgb_byte.tif")}
    for name, (scene, width, height) in repeated.items():
        paths[name] = str(folder / (name.replace(" ", "_") + ".vrt"))
        write_repeat_vrt(paths[name], scene, width, height)
    return paths


def digest(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- thread count


# name: (source, creation options); every case has internal overviews (OVERVIEWS=AUTO).
THREAD_CASES = {
    "landsat8 LOSSLESS": ("landsat8", ["BLOCKSIZE=256"]),
    "landsat7 JPEG collar": ("landsat7", ["CODEC=JPEG", "QUALITY=85", "BLOCKSIZE=128"]),
    "wide 13-band LOSSLESS 4096": ("wide 13-band", ["BLOCKSIZE=4096"]),
    "narrow 13-band LOSSLESS": ("narrow 13-band", ["BLOCKSIZE=256"]),
    "narrow RGB MULTIRATE": ("narrow RGB", ["CODEC=MULTIRATE", "QUALITY=60", "BLOCKSIZE=256"]),
}


@pytest.mark.parametrize("case", THREAD_CASES)
def test_the_bytes_do_not_depend_on_the_thread_count(sources, tmp_path, case):
    source, options = THREAD_CASES[case]
    digests = {threads: digest(translate_nsat(sources[source], tmp_path / f"{threads}.nsat",
                                              [*options, f"NUM_THREADS={threads}"]))
               for threads in (1, 2, 4)}
    assert len(set(digests.values())) == 1, digests
    one_thread = gdal.Open(str(tmp_path / "1.nsat"))
    assert one_thread.GetRasterBand(1).GetOverviewCount() >= 2


# The per-thread CPU time of a gdal_translate run in a fresh process: the pool's threads
# outlive CreateCopy, so /proc/self/task still lists each with what it did.
THREAD_CPU = """
import json, os, sys
from osgeo import gdal
gdal.UseExceptions()
gdal.Translate(sys.argv[2], sys.argv[1], format="NSAT", creationOptions=sys.argv[3:])
ticks = []
for task in os.listdir("/proc/self/task"):
    fields = open(f"/proc/self/task/{task}/stat").read().rsplit(")", 1)[1].split()
    ticks.append(int(fields[11]) + int(fields[12]))   # utime + stime
print(json.dumps(sorted(ticks, reverse=True)))
"""


def test_a_one_tile_wide_image_is_coded_on_several_threads(sources, tmp_path):
    """Before, tiles were coded in parallel across one tile row only: a one-tile-wide image
    used one thread. Asserted on the CPU time each thread spent, never on wall time."""
    options = ["CODEC=MULTIRATE", "QUALITY=60", "BLOCKSIZE=256", "NUM_THREADS=4"]
    result = subprocess.run(["/usr/bin/python3", "-c", THREAD_CPU, sources["narrow RGB"],
                             str(tmp_path / "narrow.nsat"), *options],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stderr
    ticks = json.loads(result.stdout)
    # The busiest thread is the main one, which also imported GDAL and loaded LibTorch (on
    # Debian 13's LibTorch 2.6 about half of all ticks): count the others that did a share.
    busy = [t for t in ticks[1:] if t >= 0.05 * sum(ticks)]
    print(f"CPU ticks per thread (NUM_THREADS=4, 256 x 4096, 16 tiles at level 0): {ticks}")
    assert len(busy) >= 2, ticks


# ---------------------------------------------------------------- overviews


# gdaladdo makes each level from the previous one, as CreateCopy does, with the same
# resampling code (GDAL's overview kernels behind RasterIO): measured equal (difference 0)
# at every level of these scenes with AVERAGE, BILINEAR, CUBIC, CUBICSPLINE, LANCZOS, MODE,
# GAUSS and RMS; the tolerance leaves room for a rounding. (NEAREST differs: RasterIO
# takes the pixel under each centre, gdaladdo the top-left one. A source with overviews of
# its own, as naip_4band_byte.tif, differs too: RasterIO reads level 1 from those.)
OVERVIEW_MAX_ABS_DIFF = 1
OVERVIEW_MAX_MEAN_ABS_DIFF = 0.01


@pytest.mark.parametrize("scene, resampling", [("landsat8_b4_uint16.tif", "AVERAGE"),
                                               ("landsat8_b4_uint16.tif", "CUBIC"),
                                               ("landsat7_rgb_byte.tif", "AVERAGE"),
                                               ("landsat7_rgb_byte.tif", "LANCZOS")])
def test_overviews_match_gdaladdo_on_a_gtiff(tmp_path, scene, resampling):
    target = translate_nsat(data(scene), tmp_path / "scene.nsat",
                            [f"OVERVIEW_RESAMPLING={resampling}", "BLOCKSIZE=128"])
    dataset = gdal.Open(target)
    levels = dataset.GetRasterBand(1).GetOverviewCount()
    assert levels >= 2
    reference_path = tmp_path / "reference.tif"
    run_gdal("gdal_translate", "-q", data(scene), reference_path)
    run_gdal("gdaladdo", "-q", "-ro", "-r", resampling.lower(), reference_path,
             *[str(2 ** (level + 1)) for level in range(levels)])
    reference = gdal.Open(str(reference_path))
    for index in range(1, dataset.RasterCount + 1):
        band, reference_band = dataset.GetRasterBand(index), reference.GetRasterBand(index)
        for level in range(levels):
            overview, expected = band.GetOverview(level), reference_band.GetOverview(level)
            assert (overview.XSize, overview.YSize) == (expected.XSize, expected.YSize)
            difference = np.abs(overview.ReadAsArray().astype(np.int64) -
                                expected.ReadAsArray().astype(np.int64))
            assert difference.max() <= OVERVIEW_MAX_ABS_DIFF, (index, level, difference.max())
            assert difference.mean() <= OVERVIEW_MAX_MEAN_ABS_DIFF, (index, level, difference.mean())


# ---------------------------------------------------------------- temporary files


def translate_watching(folder, target, stop_at=None):
    """gdal.Translate of Landsat 8 (levels 0 to 3) with CPL_TMPDIR=`folder`;
    returns the names seen in `folder` at each progress call. Cancels at `stop_at`."""
    seen = []

    def progress(complete, message, user_data):
        seen.extend(path.name for path in folder.iterdir())
        return 0 if stop_at is not None and complete >= stop_at else 1

    gdal.SetConfigOption("CPL_TMPDIR", str(folder))   # GDAL 3.6 has no gdal.config_options
    try:
        gdal.Translate(str(target), data("landsat8_b4_uint16.tif"), format="NSAT",
                       creationOptions=["BLOCKSIZE=128"], callback=progress)
    finally:
        gdal.SetConfigOption("CPL_TMPDIR", None)
    return seen


def test_temporary_levels_go_to_cpl_tmpdir_and_are_removed(tmp_path):
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    seen = translate_watching(temporary, tmp_path / "out.nsat")
    # Levels 1 and 2 wait there while the next level is made; level 3, the last, needs no
    # copy, nor does level 0 (level 1 reads the source).
    for level in (1, 2):
        assert any(name.startswith(f"nsat_level{level}_{os.getpid()}_") and name.endswith(".tif")
                   for name in seen), seen
    assert not any(name.startswith(("nsat_level0_", "nsat_level3_")) for name in seen), seen
    assert list(temporary.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.nsat", "temporary"]


def test_a_cancelled_write_removes_its_temporary_levels(tmp_path):
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    with pytest.raises(RuntimeError, match="(?i)cancel|interrupt"):
        translate_watching(temporary, tmp_path / "out.nsat", stop_at=0.9)
    assert list(temporary.iterdir()) == []
    assert [path.name for path in tmp_path.iterdir()] == ["temporary"]


# ---------------------------------------------------------------- memory


# ru_maxrss (KiB) of gdal_translate, measured in a fresh process so that no other child
# of pytest counts.
PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_peak_memory_of_a_wide_13_band_image_is_far_below_one_strip(tmp_path):
    """60000 x 512, 13 bands UInt16, BLOCKSIZE=512: one tile row, the strip the pipeline
    before held for level 0, is 762 MiB (it peaked at 897 MiB). Now two rounds of read
    windows (2 x 32 MiB), their payloads and GDAL_CACHEMAX=64: measured 209 MiB, of which
    64 MiB is gdal_translate opening the VRT."""
    width, height, bands, block = 60000, 512, 13, 512
    # Two levels of VRT: a single one with 97,500 sources would take 300 MiB by itself.
    write_repeat_vrt(str(tmp_path / "row.vrt"), EUROSAT_MS, 4096, height)
    source = str(tmp_path / "wide.vrt")
    write_repeat_vrt(source, str(tmp_path / "row.vrt"), width, height)
    strip_mib = width * block * bands * 2 / 2**20
    command = ["gdal_translate", "-q", "-of", "NSAT", "-co", f"BLOCKSIZE={block}",
               "-co", "NUM_THREADS=2", source, str(tmp_path / "wide.nsat")]
    result = subprocess.run(["/usr/bin/python3", "-c", PEAK_RSS, *command], capture_output=True,
                            text=True, env={**os.environ, "GDAL_CACHEMAX": "64"}, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout) / 1024
    print(f"peak RSS {peak_mib:.0f} MiB; one strip {strip_mib:.0f} MiB")
    assert peak_mib < 0.5 * strip_mib, (peak_mib, strip_mib)
    written = gdal.Open(str(tmp_path / "wide.nsat"))
    assert (written.RasterXSize, written.RasterYSize, written.RasterCount) == (width, height, bands)
    original = gdal.Open(source)
    assert written.GetRasterBand(13).ReadRaster(59000, 0, 1000, 512) == \
        original.GetRasterBand(13).ReadRaster(59000, 0, 1000, 512)
