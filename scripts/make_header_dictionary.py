#!/usr/bin/python3
"""Writes a header dictionary (container/header_dictionary_v<N>.txt), the zstd dictionary that
format-1.1 headers are compressed against (container/FORMAT.md, "Header encodings").

Each was made once with the plugin of its day (1 to 4 on 2026-12-01, 5 and 6 on 2026-12-02,
7 and 8 on 2026-12-03); the output is part of the file format: never rerun it over a committed file
(every file that uses it would stop opening). A later dictionary (new models, new codecs) is
a new file and a new header encoding number: `--extend` the newest one, which appends the
models it does not name yet and typical headers of the current default models (and of new
models named with MODEL=) to its bytes.

The dictionary is one typical header per line, in the compact form the writer produces
(sorted keys, no default band fields, CRS by EPSG code), made by coding real scenes with
every codec and every shipped model, then the models' ids and hashes, then common CRS
texts. zstd matches a new header against it, so a header that differs from one of these in
its sizes and numbers costs tens of bytes. The most common headers come last (zstd codes
recent matches more cheaply).
"""
import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "autotest" / "data"

# (source, creation options), least common first.
SAMPLES = [
    ("s1_grd_gcps_uint16.tif", ["CODEC=LOSSLESS"]),
    ("landsat_int16_custom_crs.tif", ["CODEC=LOSSLESS"]),
    ("s1_vv_vh_db_float32.tif", ["CODEC=MULTIRATE"]),
    ("s1_grd_vv_db_float32.tif", ["CODEC=LOSSLESS"]),
    ("eurosat_ms_residential.tif", ["CODEC=MULTIRATE", "MODEL=multirate-ms16"]),
    ("eurosat_ms_residential.tif", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=50"]),
    ("eurosat_ms_residential.tif", ["CODEC=MULTIRATE", "SPECTRAL_TRANSFORM=KLT"]),
    ("landsat8_b4_uint16.tif", ["CODEC=MULTIRATE"]),
    ("naip_4band_byte.tif", ["CODEC=MULTIRATE"]),
    ("naip_4band_byte.tif", ["CODEC=JPEG"]),
    ("landsat7_rgb_byte.tif", ["CODEC=RDIC", "MODEL=rdic-classifier-rgb8"]),
    ("landsat7_rgb_byte.tif", ["CODEC=RDIC"]),
    ("landsat7_rgb_byte.tif", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=35"]),
    ("landsat7_rgb_byte.tif", ["CODEC=MULTIRATE", "MODEL=multirate-rgb8"]),
    ("eurosat_ms_residential.tif", ["CODEC=LOSSLESS"]),
    ("eurosat_ms_residential.tif", ["CODEC=MULTIRATE"]),
    ("landsat7_rgb_byte.tif", ["CODEC=JPEG"]),
    ("landsat7_rgb_byte.tif", ["CODEC=LOSSLESS"]),
    ("landsat7_rgb_byte.tif", ["CODEC=MULTIRATE"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=LOSSLESS"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=JPEG"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE", "QUALITY=90"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE"]),
]
CRS_TEXTS = ["EPSG:4326", "EPSG:3857", "EPSG:32632", "EPSG:32733"]


def compact(header):
    """The writer's compact form of a format-1.0 header (what 1.1 writers store)."""
    for band in header.get("bands", []):
        for key, empty in (("description", ""), ("metadata", {})):
            if band.get(key) == empty:
                del band[key]
    return json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def read_header(path):
    sys.path.insert(0, str(ROOT / "autotest" / "python"))
    from nsat_layout import header_text  # every header encoding
    return json.loads(header_text(pathlib.Path(path).read_bytes()))


# --extend: typical headers of what each later dictionary adds (least common first), by
# the number of the dictionary being made (from --out's name).
EXTENSION_SAMPLES = {2: [
    ("s1_grd_gcps_uint16.tif", ["CODEC=MULTIRATE", "SAMPLE_TRANSFORM=AMPLITUDE_DB"]),
    ("s1_vv_vh_db_float32.tif", ["CODEC=MULTIRATE"]),
    ("eurosat_ms_residential.tif", ["CODEC=MULTIRATE", "SPECTRAL_TRANSFORM=NONE"]),
    ("landsat8_b4_uint16.tif", ["CODEC=MULTIRATE"]),
    ("eurosat_ms_residential.tif", ["CODEC=MULTIRATE"]),
    ("naip_4band_byte.tif", ["CODEC=MULTIRATE"]),
    ("landsat7_rgb_byte.tif", ["CODEC=MULTIRATE"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE", "QUALITY=90"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE"]),
], 3: [  # the VQ codec and its three models
    ("naip_4band_byte.tif", ["CODEC=VQ"]),
    ("eurosat_ms_residential_rgbn.tif", ["CODEC=VQ", "LEVELS=3"]),
    ("landsat7_rgb_byte.tif", ["CODEC=VQ", "MODEL=vq-rgb8-v1"]),
    ("landsat7_rgb_byte.tif", ["CODEC=VQ"]),
    ("eurosat_ms_residential_rgbn.tif", ["CODEC=VQ", "LEVELS=1"]),
    ("eurosat_ms_residential_rgbn.tif", ["CODEC=VQ"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=VQ", "LEVELS=3"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=VQ"]),
], 4: [  # the DIFFUSION codec and its two models
    ("landsat7_rgb_byte.tif", ["CODEC=DIFFUSION", "MODEL=diffusion-rgb8-v1"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "MODEL=diffusion-rgb8-v1"]),
    ("naip_4band_byte.tif", ["CODEC=DIFFUSION", "-b", "1", "-b", "2", "-b", "3"]),
    ("landsat7_rgb_byte.tif", ["CODEC=DIFFUSION"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "LEVELS=3"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "GSD=10"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION"]),
], 5: [  # diffusion-vq-rgb8-v2, the new DIFFUSION default (named: the same header)
    ("landsat7_rgb_byte.tif", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v2"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v2", "LEVELS=3"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v2", "GSD=10"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v2"]),
], 6: [  # FIXED_QUALITY on the default models (payload version 2), diffusion-vq-rgb8-v3
    ("naip_4band_byte.tif", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=33"]),
    ("landsat8_b4_uint16.tif", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=38", "QUALITY_BLOCK=16"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=34"]),
    ("landsat7_rgb_byte.tif", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v3"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v3", "LEVELS=3"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v3", "GSD=10"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=DIFFUSION", "MODEL=diffusion-vq-rgb8-v3"]),
], 7: [  # the SAR default on an 8 px latent grid (Float32 dB, amplitude in dB), named so
    # that a plugin of the day before, which builds without this dictionary, writes them
    ("s1_grd_gcps_uint16.tif", ["CODEC=MULTIRATE", "SAMPLE_TRANSFORM=AMPLITUDE_DB",
                                "MODEL=multirate-sar-db-v3"]),
    ("s1_grd_vv_db_float32.tif", ["CODEC=MULTIRATE", "MODEL=multirate-sar-db-v3"]),
    ("s1_vv_vh_db_float32.tif", ["CODEC=MULTIRATE", "MODEL=multirate-sar-db-v3"]),
], 8: [  # the Byte default on an 8 px latent grid (multirate-rgb8-v5) and its FIXED_QUALITY
    # calibration, named as for 7
    ("naip_4band_byte.tif", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=33",
                             "MODEL=fixed-quality-rgb8-v3"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=34",
                                "MODEL=fixed-quality-rgb8-v3"]),
    ("naip_4band_byte.tif", ["CODEC=MULTIRATE", "MODEL=multirate-rgb8-v5"]),
    ("landsat7_rgb_byte.tif", ["CODEC=MULTIRATE", "MODEL=multirate-rgb8-v5"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE", "QUALITY=90", "MODEL=multirate-rgb8-v5"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE", "MODEL=multirate-rgb8-v5"]),
], 9: [  # OVERLAP (payload versions 3 and 4, MULTIRATE's 512 px tiles), multirate-rgb8-v6 and
    # its FIXED_QUALITY calibration (named as for 7), 2026-12-03
    ("naip_4band_byte.tif", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=33",
                             "MODEL=fixed-quality-rgb8-v4"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=FIXED_QUALITY", "TARGET_PSNR=34",
                                "MODEL=fixed-quality-rgb8-v4"]),
    ("naip_4band_byte.tif", ["CODEC=MULTIRATE", "MODEL=multirate-rgb8-v6"]),
    ("landsat7_rgb_byte.tif", ["CODEC=MULTIRATE", "MODEL=multirate-rgb8-v6"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE", "QUALITY=90", "MODEL=multirate-rgb8-v6"]),
    ("eurosat_rgb_forest.jpg", ["CODEC=MULTIRATE", "MODEL=multirate-rgb8-v6"]),
    ("landsat8_b4_uint16.tif", ["CODEC=MULTIRATE"]),
    ("eurosat_ms_residential.tif", ["CODEC=MULTIRATE"]),
    ("s1_vv_vh_db_float32.tif", ["CODEC=MULTIRATE"]),
], 10: [  # the 16-bit default on the 8 px grid, multirate-ms16-v6, 2026-12-04: 16-bit
    # scenes and chips (one band, 4 bands through the KLT) at the defaults
    ("eurosat_ms_residential_rgbn.tif", ["CODEC=MULTIRATE"]),
    ("eurosat_ms_residential.tif", ["CODEC=MULTIRATE"]),
    ("landsat8_b4_uint16.tif", ["CODEC=MULTIRATE", "QUALITY=90"]),
    ("landsat8_b4_uint16.tif", ["CODEC=MULTIRATE"]),
]}


def dictionary_number(path):
    """N of a path header_dictionary_v<N>.txt."""
    return int(pathlib.Path(path).stem.rsplit("_v", 1)[1])


def sample_header(tmp, index, source, options, env):
    """The compact header a conversion of `source` with `options` gets."""
    target = os.path.join(tmp, f"{index}.nsat")
    command = ["gdal_translate", "-q", "-of", "NSAT", str(DATA / source), target]
    arguments = iter(options + ["OVERVIEWS=NONE"])
    for option in arguments:  # creation options, or gdal_translate's own ("-b", "1")
        command += [option, next(arguments)] if option.startswith("-") else ["-co", option]
    subprocess.run(command, env=env, check=True)
    header = read_header(target)
    geo = header.get("georeferencing", {})
    if "gcps" in geo:
        geo["gcps"] = geo["gcps"][:2]  # their shape, not hundreds of numbers
    if "crs_wkt" in geo:
        # 1.1 writers store an EPSG CRS by its code (metadata/scene_description.cpp).
        code = geo["crs_wkt"].rsplit('ID["EPSG",', 1)[1:]
        if code:
            geo.pop("crs_wkt")
            geo["crs"] = "EPSG:" + code[0].split("]")[0]
    return compact(header)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the dictionary")
    parser.add_argument("--plugin-dir", default=str(ROOT / "build"))
    parser.add_argument("--extend", metavar="DICTIONARY",
                        help="start from this dictionary's bytes and append what it lacks")
    args = parser.parse_args()
    env = dict(os.environ, GDAL_DRIVER_PATH=args.plugin_dir)
    if args.extend:
        base = pathlib.Path(args.extend).read_text(encoding="utf-8")
        added = []
        with tempfile.TemporaryDirectory() as tmp:
            for card in sorted((ROOT / "models").glob("*/card.json")):
                if f'"id":"{card.parent.name}"' not in base:
                    digest = hashlib.sha256(card.read_bytes()).hexdigest()
                    added.append(json.dumps({"id": card.parent.name, "sha256": digest},
                                            separators=(",", ":")))
            for i, (source, options) in enumerate(EXTENSION_SAMPLES[dictionary_number(args.out)]):
                added.append(sample_header(tmp, i, source, options, env))
        pathlib.Path(args.out).write_text(base + "\n".join(added) + "\n", encoding="utf-8")
        print(f"{args.out}: {pathlib.Path(args.out).stat().st_size} bytes")
        return
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for crs in CRS_TEXTS:
            wkt = subprocess.run(["gdalsrsinfo", "-o", "wkt2_2019", "--single-line", crs],
                                 capture_output=True, text=True, check=True).stdout.strip()
            lines.append(json.dumps({"georeferencing": {"crs": crs, "crs_wkt": wkt}},
                                    separators=(",", ":")))
        for card in sorted((ROOT / "models").glob("*/card.json")):
            digest = hashlib.sha256(card.read_bytes()).hexdigest()
            lines.append(json.dumps({"id": card.parent.name, "sha256": digest},
                                    separators=(",", ":")))
        for i, (source, options) in enumerate(SAMPLES):
            lines.append(sample_header(tmp, i, source, options, env))
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(lines)} lines, {pathlib.Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
