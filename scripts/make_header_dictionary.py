#!/usr/bin/python3
"""Writes header dictionary 1 (container/header_dictionary_v1.txt), the zstd dictionary that
format-1.1 headers are compressed against (container/FORMAT.md, "Header encodings").

Run once, on 2026-12-01, with the plugin of that day's main. Its output is part of the file
format: never rerun it over the committed file (every 1.1 file would stop opening). A later
dictionary (new models, new codecs) is a new file and a new header encoding number.

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
import struct
import subprocess
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
    raw = pathlib.Path(path).read_bytes()
    size, = struct.unpack_from("<I", raw, 12)
    return json.loads(raw[32:32 + size])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the dictionary")
    parser.add_argument("--plugin-dir", default=str(ROOT / "build"))
    args = parser.parse_args()
    env = dict(os.environ, GDAL_DRIVER_PATH=args.plugin_dir)
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
            target = os.path.join(tmp, f"{i}.nsat")
            command = ["gdal_translate", "-q", "-of", "NSAT", str(DATA / source), target]
            for option in options + ["OVERVIEWS=NONE"]:
                command += ["-co", option]
            subprocess.run(command, env=env, check=True)
            header = read_header(target)
            geo = header.get("georeferencing", {})
            if "gcps" in geo:
                geo["gcps"] = geo["gcps"][:2]  # their shape, not hundreds of numbers
            if "crs_wkt" in header.get("georeferencing", {}):
                # 1.1 writers store an EPSG CRS by its code (metadata/scene_description.cpp).
                wkt = header["georeferencing"]["crs_wkt"]
                code = [part for part in wkt.rsplit('ID["EPSG",', 1)[1:]]
                if code:
                    header["georeferencing"].pop("crs_wkt")
                    header["georeferencing"]["crs"] = "EPSG:" + code[0].split("]")[0]
            lines.append(compact(header))
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(lines)} lines, {pathlib.Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
