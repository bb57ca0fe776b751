"""The byte layout of a .nsat file, parsed here independently of the driver
(container/FORMAT.md), and byte-interval arithmetic for counting what an HTTP reader
fetched. Shared by autotest/python/test_http_reads.py and scripts/bench_http.py.

Intervals are half-open byte ranges ``(start, end)``; lists of them are kept sorted and
merged where a result says so.
"""
import json
import math
import pathlib
import struct

import zstandard

MAGIC = b"\x89NSAT\r\n\x1a"
PREAMBLE_SIZE = 32
INDEX_ENTRY = struct.Struct("<QII")               # offset, size, CRC-32 of one tile
CONTAINER = pathlib.Path(__file__).resolve().parents[2] / "container"


def header_text(raw):
    """The header JSON text of a whole file's bytes: plain (encoding 0, format 1.0 and
    1.1) or a zstd frame against header dictionary N (encoding N, preamble byte 24)."""
    header_size, = struct.unpack_from("<I", raw, 12)
    stored = raw[PREAMBLE_SIZE:PREAMBLE_SIZE + header_size]
    encoding = raw[24]
    if encoding == 0:
        return stored.decode("utf-8")
    path = CONTAINER / f"header_dictionary_v{encoding}.txt"
    assert path.exists(), f"unknown header encoding {encoding}"
    dictionary = zstandard.ZstdCompressionDict(path.read_bytes(),
                                               dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    decoder = zstandard.ZstdDecompressor(dict_data=dictionary).decompressobj()
    text = decoder.decompress(stored)
    assert not decoder.unused_data.strip(b"\0"), "bytes after the header frame"
    return text.decode("utf-8")


def read_header(path):
    """The header of a .nsat file as a dict."""
    return json.loads(header_text(pathlib.Path(path).read_bytes()))


class NsatLayout:
    """Preamble, header and tile index of a .nsat file, parsed per FORMAT.md."""

    def __init__(self, path):
        raw = pathlib.Path(path).read_bytes()
        assert raw[:8] == MAGIC, f"{path}: not a .nsat file"
        header_size, = struct.unpack_from("<I", raw, 12)
        self.header = json.loads(header_text(raw))
        self.size = len(raw)
        self.block = (self.header["raster"]["block_width"], self.header["raster"]["block_height"])
        self.levels = [tuple(level) for level in self.header["levels"]]
        offset = PREAMBLE_SIZE + header_size
        self.tiles = {}                              # (level, tx, ty) -> (offset, size)
        for level, (width, height) in enumerate(self.levels):  # level, row, column order
            for ty in range(math.ceil(height / self.block[1])):
                for tx in range(math.ceil(width / self.block[0])):
                    tile_offset, tile_size, _ = INDEX_ENTRY.unpack_from(raw, offset)
                    self.tiles[(level, tx, ty)] = (tile_offset, tile_size)
                    offset += INDEX_ENTRY.size
        self.index_end = offset                      # header and index: bytes [0, index_end)

    def window_tiles(self, level, x, y, width, height):
        return window_tiles(self.block, level, x, y, width, height)

    def level_tiles(self, level):
        return level_tiles(self.tiles, level)

    def intervals(self, keys):
        """Half-open byte intervals [start, end) of these tiles' payloads, merged."""
        return tile_intervals(self.tiles, keys)


def window_tiles(block, level, x, y, width, height):
    """Keys (level, tx, ty) of the tiles of `block` = (width, height) that a window covers."""
    bw, bh = block
    return [(level, tx, ty) for ty in range(y // bh, (y + height - 1) // bh + 1)
            for tx in range(x // bw, (x + width - 1) // bw + 1)]


def level_tiles(tiles, level):
    return [key for key in tiles if key[0] == level]


def tile_intervals(tiles, keys):
    """Merged byte intervals of the tiles `keys` of `tiles` = {key: (offset, size)}."""
    return merge([(tiles[k][0], tiles[k][0] + tiles[k][1]) for k in keys])


def merge(intervals):
    out = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(intervals, holes):
    out = []
    for start, end in intervals:
        pieces = [(start, end)]
        for hole_start, hole_end in holes:
            pieces = [p for a, b in pieces
                      for p in ((a, min(b, hole_start)), (max(a, hole_end), b)) if p[0] < p[1]]
        out += pieces
    return merge(out)


def total(intervals):
    return sum(end - start for start, end in intervals)


def fetched(requests):
    """Half-open byte intervals of the GET bodies (http_range_server.Request), in request
    order, not merged."""
    return [(r.start, r.start + r.bytes_sent) for r in requests
            if r.method == "GET" and r.bytes_sent > 0]
