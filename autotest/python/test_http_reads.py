"""Cloud reads: `.nsat` files over a real HTTP server through GDAL's /vsicurl/.

FORMAT.md promises that opening a remote file costs one or two range reads (header and
tile index come first) and that a window read then fetches only the payloads of the
tiles it covers. These tests serve real scenes (LOSSLESS and JPEG, 256 px and smaller
tiles, internal overviews) from `http_range_server.RangeServer` on 127.0.0.1, count the
requests it logs, and check them against the tile index that nsat_layout.py parses
independently of the driver (container/FORMAT.md).

GDAL's /vsicurl/ reads in chunks (CPL_VSIL_CURL_CHUNK_SIZE, set to 4 KiB here so that
the counts say something about tiles of a few KiB) and sends one HEAD first, for the file
size (counted apart from the range GETs). When one read follows on from the previous one
it takes them for sequential and doubles the download: reading a window's tiles one by
one would then fetch tiles the window does not cover. The driver reads the tiles of a
window (or of a level) with one VSIFReadMultiRangeL call instead, which fetches their
exact byte ranges; a single tile is one read, rounded to chunks.
"""
import os
import subprocess
import http.client

import numpy as np
import pytest
from osgeo import gdal

from conftest import data, translate_nsat
from http_range_server import RangeServer
from nsat_layout import NsatLayout, fetched, merge, subtract, total

CHUNK = 4096
HTTP_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",   # no directory listing, no sibling probes
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".nsat,.tif",
    "VSI_CACHE": "FALSE",
    "CPL_VSIL_CURL_CHUNK_SIZE": str(CHUNK),       # read once, at the first /vsicurl/ use
    "GDAL_HTTP_MAX_RETRY": "0",
}

# name: (scene, creation options). Internal overviews everywhere (OVERVIEWS=AUTO).
FILES = {
    "l7_jpeg_256.nsat": ("landsat7_rgb_byte.tif", ["CODEC=JPEG", "QUALITY=85", "BLOCKSIZE=256"]),
    "l7_lossless_128.nsat": ("landsat7_rgb_byte.tif", ["CODEC=LOSSLESS", "BLOCKSIZE=128"]),
    "naip_lossless_256.nsat": ("naip_4band_byte.tif", ["CODEC=LOSSLESS", "BLOCKSIZE=256"]),
    "naip_jpeg_128.nsat": ("naip_4band_byte.tif", ["CODEC=JPEG", "QUALITY=75", "BLOCKSIZE=128"]),
    # 16 px tiles: a 57 KiB tile index, larger than one chunk.
    "naip_lossless_16.nsat": ("naip_4band_byte.tif", ["CODEC=LOSSLESS", "BLOCKSIZE=16"]),
}
READ_FILES = [name for name in FILES if not name.endswith("_16.nsat")]

# 256 x 256 windows: one at a tile corner (one 256 px tile, four 128 px tiles) and one
# straddling tile edges (four 256 px tiles, nine 128 px tiles).
WINDOWS = {"aligned": (256, 256, 256, 256), "straddling": (100, 200, 256, 256)}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def http_config():
    """The options above for this module only (config options are process-wide)."""
    saved = {key: gdal.GetConfigOption(key) for key in HTTP_OPTIONS}
    for key, value in HTTP_OPTIONS.items():
        gdal.SetConfigOption(key, value)
    yield
    for key, value in saved.items():
        gdal.SetConfigOption(key, value)
    gdal.VSICurlClearCache()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("http")
    for name, (scene, options) in FILES.items():
        translate_nsat(data(scene), folder / name, options)
    layouts = {name: NsatLayout(folder / name) for name in FILES}
    assert all(len(layout.levels) >= 3 for layout in layouts.values())
    with RangeServer(folder) as server:
        yield server, folder, layouts


@pytest.fixture
def server(served):
    server, _, _ = served
    gdal.VSICurlClearCache()
    server.drop_after(None)
    server.reset()
    yield server
    server.drop_after(None)
    gdal.VSICurlClearCache()


def open_remote(server, name, threads=None):
    """Opens over HTTP; returns the dataset and the byte intervals the open fetched."""
    options = [f"NUM_THREADS={threads}"] if threads else []
    dataset = gdal.OpenEx(server.vsicurl(name), gdal.OF_RASTER, open_options=options)
    assert dataset.GetDriver().ShortName == "NSAT"
    opened = server.requests(f"/{name}")
    server.reset()
    return dataset, merge(fetched(opened)), opened


def chunk_size_seen(opened):
    """The chunk size GDAL really uses: the first GET of an open asks for chunk 0."""
    first = next(r for r in opened if r.method == "GET")
    assert first.start == 0
    if first.end + 1 != CHUNK:
        # GDAL reads CPL_VSIL_CURL_CHUNK_SIZE once, at the first /vsicurl/ use in the
        # process; the bounds here are for 4 KiB chunks.
        pytest.skip(f"/vsicurl/ chunk size was fixed at {first.end + 1} before this module "
                    "ran: run test_http_reads.py in its own process")
    return CHUNK


# ---------------------------------------------------------------- the server itself


def test_range_server_semantics(served):
    server, folder, _ = served
    body = (folder / "l7_jpeg_256.nsat").read_bytes()
    server.reset()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        cases = [("bytes=0-99", 206, f"bytes 0-99/{len(body)}", body[:100]),
                 ("bytes=100-", 206, f"bytes 100-{len(body) - 1}/{len(body)}", body[100:]),
                 ("bytes=-10", 206, f"bytes {len(body) - 10}-{len(body) - 1}/{len(body)}", body[-10:]),
                 (f"bytes={len(body)}-", 416, f"bytes */{len(body)}", b""),
                 (None, 200, None, body)]
        for header, status, content_range, expected in cases:
            connection.request("GET", "/l7_jpeg_256.nsat", headers={"Range": header} if header else {})
            response = connection.getresponse()
            assert (response.status, response.getheader("Content-Range")) == (status, content_range)
            assert response.getheader("Accept-Ranges") == "bytes"
            assert response.read() == expected
            assert int(response.getheader("Content-Length")) == len(expected)
        connection.request("HEAD", "/l7_jpeg_256.nsat")
        response = connection.getresponse()
        assert response.read() == b"" and int(response.getheader("Content-Length")) == len(body)
        connection.request("GET", "/../conftest.py")
        assert connection.getresponse().status == 404
    finally:
        connection.close()
    log = server.requests()
    assert [r.status for r in log] == [206, 206, 206, 416, 200, 200, 404]
    assert log[0].bytes_sent == 100 and log[3].bytes_sent == 0 and log[5].method == "HEAD"
    assert server.url().startswith("http://127.0.0.1:")


# ---------------------------------------------------------------- gdalinfo


@pytest.mark.parametrize("name", list(FILES))
def test_gdalinfo_costs_one_head_and_at_most_two_range_gets(server, served, name):
    layout = served[2][name]
    info = gdal.Info(server.vsicurl(name))
    assert "NSAT_CODEC=" in info
    log = server.requests()
    assert {r.path for r in log} == {f"/{name}"}, "sibling files were probed"
    heads = [r for r in log if r.method == "HEAD"]
    gets = [r for r in log if r.method == "GET"]
    # GDAL's /vsicurl/ asks for the file size with a HEAD before the first read.
    assert len(heads) == 1
    assert all(r.range is not None and r.status == 206 for r in gets), "a GET without Range"
    assert 1 <= len(gets) <= 2
    # Only header and index: nothing starts past them (the last chunk may run on).
    chunk = chunk_size_seen(log)
    assert all(r.start < layout.index_end for r in gets)
    assert total(fetched(gets)) <= (layout.index_end // chunk + 1) * chunk
    if layout.index_end <= chunk:
        assert len(gets) == 1


def test_gdalinfo_command_line_over_http(server, served):
    """The gdalinfo program, in its own process, against the same server."""
    name = "naip_jpeg_128.nsat"
    env = {**os.environ, **HTTP_OPTIONS}
    result = subprocess.run(["gdalinfo", server.vsicurl(name)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Driver: NSAT/" in result.stdout and "NSAT_CODEC=JPEG" in result.stdout
    log = server.requests()
    assert [r.method for r in log] == ["HEAD", "GET"]
    assert log[1].range == f"bytes=0-{CHUNK - 1}"


# ---------------------------------------------------------------- windows


def assert_fetches_only(layout, cached, requests, keys, chunk):
    """FORMAT.md's promise for a read of the tiles `keys`: every byte of them arrives;
    nothing else does, beyond GDAL's chunk rounding of a read of a single tile (its start
    down and its end up to chunk boundaries: under two chunks; several
    tiles are read with one VSIFReadMultiRangeL call, which fetches their exact byte
    ranges, adjacent tiles merged into one GET); nothing is fetched twice but for at most
    a chunk that the open had cached already."""
    gets = [r for r in requests if r.method == "GET"]
    assert all(r.range is not None and r.status == 206 for r in gets)
    assert not [r for r in requests if r.method == "HEAD"], "a second HEAD"
    got = fetched(requests)
    tiles = layout.intervals(keys)
    assert not subtract(subtract(tiles, cached), merge(got)), "bytes of covered tiles were not fetched"
    outside = total(subtract(merge(got), merge(tiles + list(cached))))
    if len(keys) > 1:
        assert outside == 0, f"{outside} bytes fetched outside the tiles read"
        rows = {(level, ty) for level, _, ty in keys}
        assert len(gets) <= len(rows), "more than one GET per row of tiles"
    else:
        assert outside < 2 * chunk
    assert total(got) - total(merge(got)) == 0, "bytes fetched twice"
    assert total(got) - total(subtract(got, cached)) <= chunk


@pytest.mark.parametrize("threads", ["1", "ALL_CPUS"])
@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("name", READ_FILES)
def test_window_fetches_only_its_tiles(server, served, name, window, threads):
    layout = served[2][name]
    dataset, cached, opened = open_remote(server, name, threads)
    chunk = chunk_size_seen(opened)
    x, y, width, height = WINDOWS[window]
    keys = layout.window_tiles(0, x, y, width, height)
    dataset.ReadRaster(x, y, width, height)
    assert_fetches_only(layout, cached, server.requests(), keys, chunk)


def test_window_requests_are_the_same_for_any_thread_count(server, served):
    """The tiles are fetched before they are decoded, in file order, in one call: the
    requests do not depend on which thread decodes what."""
    name, (x, y, width, height) = "naip_jpeg_128.nsat", WINDOWS["straddling"]
    ranges = []
    for threads in ("1", "2", "ALL_CPUS"):
        gdal.VSICurlClearCache()
        dataset, _, _ = open_remote(server, name, threads)
        dataset.ReadRaster(x, y, width, height)
        ranges.append([r.range for r in server.requests() if r.method == "GET"])
    assert ranges[0] == ranges[1] == ranges[2]


# ---------------------------------------------------------------- overviews


@pytest.mark.parametrize("threads", ["1", "ALL_CPUS"])
@pytest.mark.parametrize("level", [1, -1])
@pytest.mark.parametrize("name", READ_FILES)
def test_overview_read_fetches_only_that_level(server, served, name, level, threads):
    """An overview read fetches its level's tiles only: never a byte of another level
    (the middle level is followed in the file by the smaller ones)."""
    layout = served[2][name]
    dataset, cached, opened = open_remote(server, name, threads)
    chunk = chunk_size_seen(opened)
    level = level % len(layout.levels)
    overview = dataset.GetRasterBand(1).GetOverview(level - 1)
    assert (overview.XSize, overview.YSize) == layout.levels[level]
    overview.ReadRaster()
    assert_fetches_only(layout, cached, server.requests(), layout.level_tiles(level), chunk)


# ---------------------------------------------------------------- pixels


@pytest.mark.parametrize("name", READ_FILES)
def test_pixels_over_http_equal_local_pixels(server, served, name):
    _, folder, layout = served
    local = gdal.Open(str(folder / name))
    remote, _, _ = open_remote(server, name)
    x, y, width, height = WINDOWS["straddling"]
    assert remote.ReadRaster(x, y, width, height) == local.ReadRaster(x, y, width, height)
    for i in range(local.GetRasterBand(1).GetOverviewCount()):
        for band in range(1, local.RasterCount + 1):
            assert (remote.GetRasterBand(band).GetOverview(i).ReadRaster()
                    == local.GetRasterBand(band).GetOverview(i).ReadRaster())
    assert remote.ReadRaster() == local.ReadRaster()
    # A full read after those: nothing beyond the file's size, and no byte fetched twice
    # but for the chunk-rounded reads of single tiles next to tiles read before.
    got = fetched(server.requests())
    assert total(merge(got)) <= layout[name].size
    assert total(got) - total(merge(got)) <= 4 * CHUNK


def test_rasterio_window_over_http(server, served):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.windows import Window
    _, folder, _ = served
    name = "l7_jpeg_256.nsat"
    x, y, width, height = WINDOWS["straddling"]
    with rasterio.Env(**HTTP_OPTIONS):
        with rasterio.open(server.vsicurl(name)) as remote, rasterio.open(folder / name) as local:
            assert remote.driver == "NSAT"
            window = Window(x, y, width, height)
            assert np.array_equal(remote.read(window=window), local.read(window=window))


# ---------------------------------------------------------------- a failing server


def test_connection_dropped_during_open_gives_an_error(server):
    server.drop_after(100)                           # the first chunk arrives cut short
    with pytest.raises(RuntimeError, match="NSAT|not recognized|truncated"):
        gdal.Open(server.vsicurl("naip_jpeg_128.nsat"))
    assert any(r.dropped for r in server.requests())


@pytest.mark.parametrize("threads", ["1", "ALL_CPUS"])
@pytest.mark.parametrize("name", ["naip_jpeg_128.nsat", "l7_lossless_128.nsat"])
def test_connection_dropped_mid_file_gives_a_clean_error(server, served, name, threads):
    _, folder, layouts = served
    remote, _, _ = open_remote(server, name, threads)
    server.drop_after(layouts[name].size // 3)       # a third of the file, then gone
    with pytest.raises(RuntimeError, match=r"NSAT: .*(truncated|cannot read the tile)"):
        remote.ReadRaster()
    assert any(r.dropped for r in server.requests())
    # GDAL keeps what it got in its cache, so the same dataset keeps failing (no stale or
    # wrong pixels); after clearing the cache, a healthy server gives the right pixels.
    server.drop_after(None)
    gdal.VSICurlClearCache()
    remote, _, _ = open_remote(server, name, threads)
    assert remote.ReadRaster() == gdal.Open(str(folder / name)).ReadRaster()


def test_gdal_translate_from_a_failing_server_exits_with_an_error(server, served, tmp_path):
    name = "naip_jpeg_128.nsat"
    server.drop_after(served[2][name].size // 2)
    env = {**os.environ, **HTTP_OPTIONS}
    result = subprocess.run(["gdal_translate", "-q", server.vsicurl(name), str(tmp_path / "out.tif")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr)  # an error, not a signal
    assert "NSAT" in result.stderr and ("truncated" in result.stderr or "tile" in result.stderr)
