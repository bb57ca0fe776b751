"""Seeds for autotest/fuzz/fuzz_learned_payloads.cpp from real .nsat files.

    /usr/bin/python3 autotest/fuzz/learned_seeds.py OUT_DIR FILE.nsat...

Every tile of every level of each MULTIRATE or FIXED_QUALITY file becomes one seed: the
harness's 4 selector bytes (codec and model, FIXED_QUALITY's quality block, MULTIRATE's
variant, data type, tile width - 1, height - 1, bands - 1, or bands - 2 with the spectral
transform) followed by the tile's codec payload, with the tile framing (flags byte,
nodata mask; container/FORMAT.md) stripped. MULTIRATE files of multirate-rgb8,
multirate-ms16, multirate-ms16-v2 and multirate-sar-db count, with or without
"spectral_transform": "KLT"
(payload version 2), Byte, UInt16, Int16 or Float32; the model's hash does not matter
(the harness decodes with the installed version: seeds of another version still give
its parsers real fields, and its mutator codes their symbols again). Tiles wider or
taller than 256 px, EMPTY tiles, band counts the harness cannot select (above 4; 2 to 17
with the spectral transform) and files of other codecs or models are skipped, with the
reason. Prints how many seeds each file gave.

With ``--vq`` (``learned_seeds.py --vq OUT_DIR FILE.nsat...``) the seeds are for
autotest/fuzz/fuzz_vq_payloads.cpp instead, from VQ files (and DIFFUSION files on a VQ
base, whose payload is VQ's) of one band group: model index,
levels - 1, tile width - 1, height - 1, then the payload.
"""
import hashlib
import pathlib
import struct
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from nsat_layout import NsatLayout  # noqa: E402

FQ_MODELS = {"multirate-rgb8": 0, "multirate-ms16": 1}  # bit 0 of the selector
MS16_V2 = 32  # bit 5: multirate-ms16-v2 where the selector names multirate-ms16 (MULTIRATE)
FQ_LINEAR_LEVELS = 32  # bit 5 of a FIXED_QUALITY selector: payload version 1
MODELS = dict(FQ_MODELS, **{"multirate-ms16-v2": 1 | MS16_V2})
QUALITY_BLOCKS = {16: 0, 32: 1, 64: 2, 0: 3}
# MULTIRATE's variants (selector bits 2-3) other than 0 (bit 0 the model): by model and
# spectral transform, with the model's bit 5; in them bit 0 is set for integer samples,
# clear for Float32.
VARIANTS = {("multirate-sar-db", False): (1, 0), ("multirate-ms16", True): (2, 0),
            ("multirate-ms16-v2", True): (2, MS16_V2), ("multirate-sar-db", True): (3, 0)}
MAX_BANDS, SPECTRAL_BANDS = 4, range(2, 18)
FLAG_MASK, FLAG_EMPTY = 1, 2


def selection(codec, header):
    """(selector byte 0, selector byte 3), or a reason why the harness cannot select it."""
    parameters = codec["parameters"]
    data_type = header["raster"]["data_type"]
    bands = header["raster"]["bands"]
    spectral = codec["name"] == "MULTIRATE" and parameters.get("spectral_transform") == "KLT"
    if codec["name"] == "MULTIRATE":
        model = parameters["model"]
        if not spectral and model in MODELS and data_type != "Float32":
            value = MODELS[model]
        elif (model, spectral) in VARIANTS:
            variant, bits = VARIANTS[model, spectral]
            value = variant << 2 | bits | (0 if data_type == "Float32" else 1)
        else:
            return f"model {model} ({data_type}{', KLT' if spectral else ''}) is not fuzzed"
    else:
        if parameters["base_model"] not in FQ_MODELS:
            return f"FIXED_QUALITY on {parameters['base_model']} is not fuzzed"
        value = FQ_MODELS[parameters["base_model"]] | 2 | QUALITY_BLOCKS[parameters["quality_block"]] << 2
        if parameters["payload_version"] == 1:
            value |= FQ_LINEAR_LEVELS
    if data_type == "Int16":
        value |= 16
    if spectral:
        if bands not in SPECTRAL_BANDS:
            return f"{bands} bands (the harness fuzzes the transform on 2 to 17)"
        return value, bands - 2
    if bands > MAX_BANDS:
        return f"{bands} bands (the harness fuzzes 1 to {MAX_BANDS})"
    return value, bands - 1


def codec_bytes(payload):
    flags = payload[0]
    if flags & FLAG_EMPTY:
        return None
    offset = 1
    if flags & FLAG_MASK:
        mask_size, = struct.unpack_from("<I", payload, 1)
        offset = 5 + mask_size
    return payload[offset:]


VQ_MODELS = {"vq-rgb8-v1": (0, 3), "vq-rgbn8-v1": (1, 4), "vq-rgbn16-v1": (2, 4),
             "vq-rgb8-v2": (3, 3), "diffusion-vq-rgb8-v1": (4, 3), "diffusion-vq-rgb8-v2": (5, 3),
             "diffusion-vq-rgb8-v3": (6, 3)}


def vq_selection(codec, header):
    """The selector bytes before width and height, or why the VQ harness cannot select it.
    A DIFFUSION file on a VQ base stores the VQ payload: its levels are its base's."""
    parameters = codec["parameters"]
    model = parameters.get("model")
    if codec["name"] not in ("VQ", "DIFFUSION") or model not in VQ_MODELS:
        return f"codec {codec['name']} {model or ''}"
    index, bands = VQ_MODELS[model]
    if header["raster"]["bands"] != bands:
        return f"{header['raster']['bands']} bands (the harness fuzzes one band group)"
    levels = parameters["base"]["levels"] if codec["name"] == "DIFFUSION" else parameters["levels"]
    return bytes([index, levels - 1])


def seeds_of(path, vq=False):
    """The seeds of one file, and why it gave none (or None)."""
    layout = NsatLayout(path)
    codec = layout.header["codec"]
    if vq:
        selected = vq_selection(codec, layout.header)
        if isinstance(selected, str):
            return [], selected
    elif codec["name"] not in ("MULTIRATE", "FIXED_QUALITY"):
        return [], f"codec {codec['name']}"
    else:
        selected = selection(codec, layout.header)
        if isinstance(selected, str):
            return [], selected
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
        if vq:
            seeds.append(selected + bytes([width - 1, height - 1]) + payload)
        else:
            first, band_byte = selected
            seeds.append(bytes([first, width - 1, height - 1, band_byte]) + payload)
    return seeds, None


def main():
    arguments = sys.argv[1:]
    vq = arguments[:1] == ["--vq"]
    if vq:
        arguments = arguments[1:]
    out = pathlib.Path(arguments[0])
    out.mkdir(parents=True, exist_ok=True)
    for path in arguments[1:]:
        seeds, skipped = seeds_of(path, vq)
        for seed in seeds:
            (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        print(f"{path}: {len(seeds)} seeds" + (f" (skipped: {skipped})" if skipped else ""))


if __name__ == "__main__":
    main()
