"""Faults (issue 14): a full disk during CreateCopy, a source that fails half-way, a file
cut short at every tile boundary, a server that drops the connection mid-file.

Each must end in a CPLError of the class that driver/nsat_errors.cpp maps the fault to,
never a crash, a hang or wrong pixels; a failed write must leave nothing behind: no
target and no `<target>.<pid>.partial` (container/container_file.cpp writes that file and
renames it on commit).

A full disk is simulated two ways: RLIMIT_FSIZE on a gdal_translate subprocess (writes
past the limit fail with EFBIG, as on a full disk; any user, any CI), and a real 2 MiB
tmpfs (ENOSPC; needs root and a kernel that lets us mount, skipped elsewhere).
"""
import contextlib
import math
import os
import re
import resource
import shutil
import signal
import subprocess

import pytest
from osgeo import gdal

import test_http_reads
from conftest import data, failures_of, nsat_failure, translate_nsat
from http_range_server import RangeServer
from nsat_layout import INDEX_ENTRY, MAGIC, PREAMBLE_SIZE, NsatLayout

SCENE = "landsat7_rgb_byte.tif"                     # 791 x 718 RGB, 58 tiles of 128 px
CODECS = {
    "LOSSLESS": ["CODEC=LOSSLESS", "BLOCKSIZE=128"],
    "JPEG": ["CODEC=JPEG", "QUALITY=85", "BLOCKSIZE=128"],
}


# ---------------------------------------------------------------- helpers


def stderr_failures(stderr):
    """[(CPLE_* class, message)] of the "ERROR n: ..." lines a GDAL tool printed."""
    lines = re.findall(r"^ERROR (\d+): (.*)$", stderr, re.M)
    return [(int(number), message) for number, message in lines]


def leftovers(folder, expected=()):
    """What a failed write left in `folder`, besides the files named in `expected`."""
    return sorted(path.name for path in folder.iterdir() if path.name not in expected)


def level_dataset(dataset, level):
    """The dataset of one internal level (0: full resolution)."""
    return dataset if level == 0 else dataset.GetRasterBand(1).GetOverview(level - 1).GetDataset()


def tile_window(layout, key):
    """(x, y, width, height) of tile `key` = (level, tx, ty), clipped to its level."""
    level, tx, ty = key
    (width, height), (bw, bh) = layout.levels[level], layout.block
    x, y = tx * bw, ty * bh
    return x, y, min(bw, width - x), min(bh, height - y)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The scene written without a fault with each codec: {codec: (path, layout)}."""
    folder = tmp_path_factory.mktemp("reference")
    written = {}
    for codec, options in CODECS.items():
        path = translate_nsat(data(SCENE), folder / f"l7_{codec.lower()}.nsat", options)
        written[codec] = (path, NsatLayout(path))
        assert len(written[codec][1].levels) == 3
    return written


# ---------------------------------------------------------------- a full disk


def gdal_translate_nsat(target, options, temporary_folder, file_size_limit=None):
    """gdal_translate of the scene to NSAT, as a user runs it, with the temporary copies
    of overview levels in `temporary_folder` (CPL_TMPDIR); its files may not grow past
    `file_size_limit` bytes when given. (Not in-process: the Python bindings may find
    another PROJ database, so another CRS WKT and other file sizes than the reference.)"""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    command = ["gdal_translate", "-q", "-of", "NSAT"]
    for option in options:
        command += ["-co", option]
    return subprocess.run(command + [data(SCENE), str(target)], capture_output=True, text=True,
                          env={**os.environ, "CPL_TMPDIR": str(temporary_folder)}, timeout=120,
                          preexec_fn=limit_file_size if file_size_limit is not None else None)


def write_failure(result, target):
    """The message of the CPLE_FileIO that gdal_translate exited with (an error, not a signal)."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    number, message = stderr_failures(result.stderr)[-1]
    assert number == gdal.CPLE_FileIO, result.stderr
    prefix = f"NSAT: {target} was not written: "
    assert message.startswith(prefix), message
    return message[len(prefix):]


DISK_FULL = "write failed (disk full or file system error)"
TEMPORARY_FULL = re.compile(r"(writing|cannot create) the temporary copy of overview level 1 "
                            r"\(.*\)( failed)?; set CPL_TMPDIR to a folder with room")

# Where the writes start to fail, in bytes of the finished file. The writer's stdio buffer
# may carry the first ones up to the first tile's write; the last byte fails at commit.
WRITE_LIMITS = {
    "in the preamble": lambda layout: 16,
    "in the tile index": lambda layout: layout.index_end - INDEX_ENTRY.size,
    "in the first tile": lambda layout: layout.index_end + 1,
    "half-way through the tiles": lambda layout: layout.size // 2,
    "at the last byte (commit)": lambda layout: layout.size - 1,
}


@pytest.mark.parametrize("where", WRITE_LIMITS)
@pytest.mark.parametrize("codec", CODECS)
def test_a_write_that_fails_is_a_file_io_error_and_leaves_nothing(
        reference, tmp_path, codec, where):
    """RLIMIT_FSIZE: the temporary copies stay in /vsimem/, so the limit hits the target alone."""
    target = tmp_path / "out.nsat"
    limit = WRITE_LIMITS[where](reference[codec][1])
    result = gdal_translate_nsat(target, CODECS[codec], "/vsimem", limit)
    assert write_failure(result, target) == DISK_FULL
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", CODECS)
def test_a_file_size_limit_of_exactly_the_file_is_enough(reference, tmp_path, codec):
    """The control for the test above: its limits are where the writes fail, not noise."""
    path, layout = reference[codec]
    result = gdal_translate_nsat(tmp_path / "out.nsat", CODECS[codec], "/vsimem", layout.size)
    assert result.returncode == 0, result.stderr
    assert leftovers(tmp_path) == ["out.nsat"]
    assert gdal.Open(str(tmp_path / "out.nsat")).ReadRaster() == gdal.Open(path).ReadRaster()


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    """A real 2 MiB file system (tmpfs), so that a write fails with ENOSPC."""
    folder = tmp_path_factory.mktemp("tmpfs")
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE tests cover a full disk)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@contextlib.contextmanager
def pages_left_free(folder, pages):
    """Fills the file system of `folder` until only `pages` pages are free."""
    filler = folder / "filler"
    stats = os.statvfs(folder)
    filler.write_bytes(bytes((stats.f_bavail - pages) * stats.f_frsize))
    assert os.statvfs(folder).f_bavail == pages
    try:
        yield
    finally:
        for path in folder.iterdir():
            path.unlink()


# Free pages of the tmpfs, given the pages the finished file needs.
FREE_PAGES = {
    "no room at all": lambda pages: 0,
    "room for the header only": lambda pages: 1,
    "room for half the tiles": lambda pages: pages // 2,
    "all but the last page": lambda pages: pages - 1,
}


@pytest.mark.parametrize("room", FREE_PAGES)
@pytest.mark.parametrize("codec", CODECS)
def test_a_full_disk_is_a_file_io_error_and_leaves_nothing(
        reference, small_disk, tmp_path, codec, room):
    pages = math.ceil(reference[codec][1].size / os.statvfs(small_disk).f_frsize)
    target = small_disk / "out.nsat"
    with pages_left_free(small_disk, FREE_PAGES[room](pages)):
        result = gdal_translate_nsat(target, CODECS[codec], tmp_path)
        assert write_failure(result, target) == DISK_FULL
        assert leftovers(small_disk, ["filler"]) == [] and leftovers(tmp_path) == []
    # Exactly the room the file needs is enough: the limits above are where it fails.
    with pages_left_free(small_disk, pages):
        result = gdal_translate_nsat(target, CODECS[codec], tmp_path)
        assert result.returncode == 0, result.stderr
        assert leftovers(small_disk, ["filler"]) == ["out.nsat"] and leftovers(tmp_path) == []


@pytest.mark.parametrize("free_pages", [0, 16])
def test_a_full_temporary_folder_is_a_file_io_error_and_leaves_nothing(
        small_disk, tmp_path, free_pages):
    """CreateCopy keeps overview level 1 in a temporary GTiff (CPL_TMPDIR) while it makes
    level 2; here that folder is the full disk, the target's folder is not."""
    target = tmp_path / "out.nsat"
    with pages_left_free(small_disk, free_pages):
        message = write_failure(gdal_translate_nsat(target, CODECS["LOSSLESS"], small_disk), target)
        assert TEMPORARY_FULL.fullmatch(message), message
        assert leftovers(small_disk, ["filler"]) == [] and leftovers(tmp_path) == []


def test_a_target_folder_that_does_not_exist_is_a_file_io_error(tmp_path):
    target = tmp_path / "missing" / "out.nsat"
    result, failures = failures_of(lambda: gdal.Translate(str(target), data(SCENE), format="NSAT"))
    assert result is None
    number, message = failures[-1]
    assert number == gdal.CPLE_FileIO
    assert message.startswith(f"NSAT: {target} was not written: cannot create"), message
    assert leftovers(tmp_path) == []


def test_a_commit_that_cannot_rename_is_a_file_io_error_and_leaves_no_partial(tmp_path):
    """A folder already under the target name makes the final rename fail."""
    (tmp_path / "out.nsat" / "inside").mkdir(parents=True)
    result, failures = failures_of(lambda: gdal.Translate(
        str(tmp_path / "out.nsat"), data("eurosat_rgb_forest.jpg"), format="NSAT"))
    assert result is None
    number, message = failures[-1]
    assert number == gdal.CPLE_FileIO and "cannot rename" in message, failures
    assert leftovers(tmp_path) == ["out.nsat"] and (tmp_path / "out.nsat" / "inside").is_dir()


# ---------------------------------------------------------------- a source that fails


SOURCES = ["truncated.tif", "corrupt.tif", "truncated.vrt"]


@pytest.fixture(scope="module")
def failing_sources(tmp_path_factory):
    """Tiled GeoTIFFs of a real scene whose top reads and whose lower tiles cannot be
    read: cut short, with one tile's compressed bytes overwritten, and a VRT over the
    cut one."""
    folder = tmp_path_factory.mktemp("sources")
    tiled = str(folder / "naip_tiled.tif")
    gdal.Translate(tiled, data("naip_4band_byte.tif"),
                   creationOptions=["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128",
                                    "COMPRESS=DEFLATE"])
    dataset = gdal.Open(tiled)
    offset = int(dataset.GetRasterBand(1).GetMetadataItem("BLOCK_OFFSET_3_3", "TIFF"))
    size = int(dataset.GetRasterBand(1).GetMetadataItem("BLOCK_SIZE_3_3", "TIFF"))
    dataset = None
    raw = (folder / "naip_tiled.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(raw[:len(raw) * 6 // 10])
    (folder / "corrupt.tif").write_bytes(raw[:offset] + b"\xff" * size + raw[offset + size:])
    gdal.Translate(str(folder / "truncated.vrt"), str(folder / "truncated.tif"), format="VRT")
    sources = {name: str(folder / name) for name in SOURCES}
    for source in sources.values():                  # half-way: the first tile row reads
        dataset = gdal.Open(source)
        assert dataset.ReadRaster(0, 0, dataset.RasterXSize, 128) is not None
        assert failures_of(lambda: dataset.ReadRaster())[0] is None
    return sources


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("codec", CODECS)
def test_a_source_that_fails_half_way_is_a_file_io_error_and_leaves_nothing(
        failing_sources, tmp_path, codec, source):
    target = tmp_path / "out.nsat"
    result, failures = failures_of(lambda: gdal.Translate(
        str(target), failing_sources[source], format="NSAT", creationOptions=CODECS[codec]))
    assert result is None
    assert failures[-1] == (gdal.CPLE_FileIO,
                            f"NSAT: {target} was not written: reading the source image failed")
    # The source's own error comes first.
    assert any("IReadBlock failed" in message for _, message in failures[:-1])
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- a file cut short


def cuts(layout):
    """Sizes to cut the file to: inside the preamble, header and index, then at every
    tile's first byte and in the middle of every tile."""
    header_end = layout.index_end - INDEX_ENTRY.size * len(layout.tiles)
    inside = [0, 7, PREAMBLE_SIZE - 1, PREAMBLE_SIZE, (PREAMBLE_SIZE + header_end) // 2,
              header_end, layout.index_end - 1]
    tiles = [cut for offset, size in layout.tiles.values() for cut in (offset, offset + size // 2)]
    return sorted(set(inside + tiles))


@pytest.mark.parametrize("codec", CODECS)
def test_a_truncated_file_fails_to_open(reference, tmp_path, codec):
    """The reader checks every index entry against the file's size, so a file cut
    anywhere does not open (a cut tile is never reached)."""
    path, layout = reference[codec]
    raw = open(path, "rb").read()
    cut_file = tmp_path / "cut.nsat"
    cut_file.write_bytes(raw)
    for cut in reversed(cuts(layout)):                # shorten one file step by step
        os.truncate(cut_file, cut)
        result, failures = failures_of(lambda: gdal.Open(str(cut_file)))
        assert result is None, cut
        number, message = failures[-1]
        assert number == gdal.CPLE_OpenFailed, (cut, failures)
        if cut >= len(MAGIC):                         # shorter: not recognised as NSAT at all
            assert re.match(r"NSAT: cannot open .*: .*(truncated|corrupt)", message), (cut, message)


@pytest.mark.parametrize("codec", CODECS)
def test_a_file_truncated_after_open_fails_only_for_the_missing_tiles(reference, tmp_path, codec):
    """A file cut while open (another process, a network share): at every tile boundary
    and in every tile, each tile still whole reads the original's pixels, each tile cut
    off fails with CPLE_FileIO, and so does a read of a whole level that has one (never
    zeros or stale pixels in their place)."""
    path, layout = reference[codec]
    raw = open(path, "rb").read()
    original = gdal.Open(path)
    levels = range(len(layout.levels))
    expected_tiles = {key: level_dataset(original, key[0]).ReadRaster(*tile_window(layout, key))
                      for key in layout.tiles}
    expected_levels = [level_dataset(original, level).ReadRaster() for level in levels]
    cut_file = tmp_path / "cut.nsat"
    cut_file.write_bytes(raw)
    # The open reads the header and index through a stdio buffer, so bytes up to the end
    # of that buffer may still come from it after the cut: cut beyond it.
    block = os.stat(cut_file).st_blksize
    buffered_by_open = math.ceil(layout.index_end / block) * block
    for cut in cuts(layout):
        if cut < buffered_by_open:
            continue
        cut_file.write_bytes(raw)
        dataset = gdal.Open(str(cut_file))
        os.truncate(cut_file, cut)
        whole = {key: offset + size <= cut for key, (offset, size) in layout.tiles.items()}
        for level in levels:
            pixels, failures = failures_of(lambda: level_dataset(dataset, level).ReadRaster())
            if all(whole[key] for key in layout.level_tiles(level)):
                assert pixels == expected_levels[level], (cut, level)
            else:
                assert pixels is None, (cut, level)
                assert nsat_failure(failures)[0] == gdal.CPLE_FileIO, (cut, level, failures)
        for key in layout.tiles:
            pixels, failures = failures_of(lambda: level_dataset(dataset, key[0]).ReadRaster(
                *tile_window(layout, key)))
            if whole[key]:
                assert pixels == expected_tiles[key], (cut, key)
            else:
                assert pixels is None, (cut, key)
                number, message = nsat_failure(failures)
                assert number == gdal.CPLE_FileIO, (cut, key, message)
                assert "cannot read the tile" in message, (cut, key, message)
        dataset = None


@pytest.mark.parametrize("codec", CODECS)
def test_a_flipped_byte_in_a_tile_fails_its_crc_and_only_that_tile(reference, tmp_path, codec):
    """Damage that keeps the file's size: the first, a middle and the last tile in file
    order each get one byte flipped, and only that tile fails, with CPLE_AppDefined."""
    path, layout = reference[codec]
    original = gdal.Open(path)
    in_file_order = sorted(layout.tiles, key=lambda key: layout.tiles[key][0])
    for damaged in (in_file_order[0], in_file_order[len(in_file_order) // 2], in_file_order[-1]):
        raw = bytearray(open(path, "rb").read())
        offset, size = layout.tiles[damaged]
        raw[offset + size // 2] ^= 0xFF
        (tmp_path / "flipped.nsat").write_bytes(raw)
        dataset = gdal.Open(str(tmp_path / "flipped.nsat"))
        for key in layout.level_tiles(damaged[0]):
            window = tile_window(layout, key)
            pixels, failures = failures_of(
                lambda: level_dataset(dataset, key[0]).ReadRaster(*window))
            if key != damaged:
                assert pixels == level_dataset(original, key[0]).ReadRaster(*window), (damaged, key)
                continue
            assert pixels is None, damaged
            number, message = nsat_failure(failures)
            assert number == gdal.CPLE_AppDefined and "failed its CRC32 check" in message, message
        dataset = None


# ---------------------------------------------------------------- a server that drops


# test_http_reads.py's options (its 4 KiB chunks among them: GDAL reads the chunk size
# once per process, and that module counts requests), and a timeout against hangs.
HTTP_OPTIONS = {**test_http_reads.HTTP_OPTIONS, "GDAL_HTTP_TIMEOUT": "20"}


@pytest.fixture(scope="module")
def reference_server(reference):
    with RangeServer(os.path.dirname(reference["LOSSLESS"][0])) as server:
        yield server


@pytest.fixture
def server(reference_server):
    """The reference files over HTTP with the options above, the curl cache cleared
    before and after (config options are process-wide)."""
    saved = {key: gdal.GetConfigOption(key) for key in HTTP_OPTIONS}
    for key, value in HTTP_OPTIONS.items():
        gdal.SetConfigOption(key, value)
    gdal.VSICurlClearCache()
    reference_server.reset()
    yield reference_server
    reference_server.drop_after(None)
    for key, value in saved.items():
        gdal.SetConfigOption(key, value)
    gdal.VSICurlClearCache()


# Body bytes the server sends before it drops, for a drop during the open.
OPEN_DROPS = {
    "in the preamble": lambda layout: 16,
    "in the header": lambda layout: PREAMBLE_SIZE + 100,
    "in the tile index": lambda layout: layout.index_end - INDEX_ENTRY.size,
}


@pytest.mark.parametrize("where", OPEN_DROPS)
@pytest.mark.parametrize("codec", CODECS)
def test_a_connection_dropped_during_open_fails_to_open(reference, server, codec, where):
    path, layout = reference[codec]
    server.drop_after(OPEN_DROPS[where](layout))
    result, failures = failures_of(lambda: gdal.Open(server.vsicurl(os.path.basename(path))))
    assert result is None
    number, message = nsat_failure(failures)
    assert number == gdal.CPLE_OpenFailed and "file is truncated or unreadable" in message, failures
    assert any(request.dropped for request in server.requests())


def test_a_server_that_drops_before_answering_gives_gdal_s_http_error(reference, server):
    """The driver never sees the file: GDAL's /vsicurl/ reports the failed HEAD."""
    server.drop_after(0)
    name = os.path.basename(reference["JPEG"][0])
    result, failures = failures_of(lambda: gdal.Open(server.vsicurl(name)))
    assert result is None
    assert failures[-1][0] == gdal.CPLE_HttpResponse, failures


# Body bytes the server sends after the open before it drops, given the file's layout.
READ_DROPS = {
    "at once": lambda layout: 0,
    "after 4 KiB": lambda layout: 4096,
    "a third of the file on": lambda layout: layout.size // 3,
}


@pytest.mark.parametrize("where", READ_DROPS)
@pytest.mark.parametrize("codec", CODECS)
def test_a_connection_dropped_mid_file_fails_the_read(reference, server, codec, where):
    """Opened while the server was healthy; then a whole-image read fails with
    CPLE_FileIO (and GDAL's own /vsicurl/ error comes first)."""
    path, layout = reference[codec]
    dataset = gdal.Open(server.vsicurl(os.path.basename(path)))
    server.drop_after(READ_DROPS[where](layout))
    pixels, failures = failures_of(lambda: dataset.ReadRaster())
    assert pixels is None
    assert failures[-1] == nsat_failure(failures)
    number, message = failures[-1]
    assert number == gdal.CPLE_FileIO and "file is truncated or unreadable" in message, failures
    assert any(request.dropped for request in server.requests())


@pytest.mark.parametrize("codec", CODECS)
def test_a_connection_dropped_in_a_tile_fails_that_tile(reference, server, codec):
    """The last tile of the image (not in the chunks the open fetched) is cut half-way."""
    path, layout = reference[codec]
    dataset = gdal.Open(server.vsicurl(os.path.basename(path)))
    last_tile = max(layout.level_tiles(0), key=lambda key: layout.tiles[key][0])
    server.drop_after(layout.tiles[last_tile][1] // 2)
    pixels, failures = failures_of(lambda: dataset.ReadRaster(*tile_window(layout, last_tile)))
    assert pixels is None
    number, message = nsat_failure(failures)
    assert number == gdal.CPLE_FileIO and "cannot read the tile" in message, failures
    assert any(request.dropped for request in server.requests())
