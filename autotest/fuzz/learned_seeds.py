"""Seeds for autotest/fuzz/fuzz_learned_payloads.cpp from real .nsat files.

    python3 autotest/fuzz/learned_seeds.py OUT_DIR FILE.nsat...

Every tile of every level of each MULTIRATE or FIXED_QUALITY file becomes one seed: the
harness's 4 selector bytes (codec and model, FIXED_QUALITY's quality block, data type,
tile width - 1, height - 1, bands - 1) followed by the tile's codec payload, with the
tile framing (flags byte, nodata mask; container/FORMAT.md) stripped. Tiles wider or
taller than 256 px, EMPTY tiles and band counts above 4 are skipped; so are files of
other codecs. Prints how many seeds each file gave.
"""
import hashlib
import pathlib
import struct
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from nsat_layout import NsatLayout  # noqa: E402

MODELS = {"multirate-rgb8": 0, "multirate-ms16": 1}
QUALITY_BLOCKS = {16: 0, 32: 1, 64: 2, 0: 3}
FLAG_MASK, FLAG_EMPTY = 1, 2


def selector_byte(codec, header):
    parameters = codec["parameters"]
    if codec["name"] == "MULTIRATE":
        value = MODELS[parameters["model"]]
    else:
        value = MODELS[parameters["base_model"]] | 2 | QUALITY_BLOCKS[parameters["quality_block"]] << 2
    if header["raster"]["data_type"] == "Int16":
        value |= 16
    return value


def codec_bytes(payload):
    flags = payload[0]
    if flags & FLAG_EMPTY:
        return None
    offset = 1
    if flags & FLAG_MASK:
        mask_size, = struct.unpack_from("<I", payload, 1)
        offset = 5 + mask_size
    return payload[offset:]


def seeds_of(path):
    layout = NsatLayout(path)
    codec = layout.header["codec"]
    if codec["name"] not in ("MULTIRATE", "FIXED_QUALITY"):
        return []
    bands = layout.header["raster"]["bands"]
    if bands > 4:
        return []
    first = selector_byte(codec, layout.header)
    raw = pathlib.Path(path).read_bytes()
    block_width, block_height = layout.block
    seeds = []
    for (level, tx, ty), (offset, size) in layout.tiles.items():
        level_width, level_height = layout.levels[level]
        width = min(block_width, level_width - tx * block_width)
        height = min(block_height, level_height - ty * block_height)
        if width > 256 or height > 256:
            continue
        payload = codec_bytes(raw[offset:offset + size])
        if payload is None:
            continue
        seeds.append(bytes([first, width - 1, height - 1, bands - 1]) + payload)
    return seeds


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for path in sys.argv[2:]:
        seeds = seeds_of(path)
        for seed in seeds:
            (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        print(f"{path}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
