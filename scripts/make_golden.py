#!/usr/bin/python3
"""Writes the golden .nsat files in autotest/golden/ and the MD5 of their decoded pixels.

Run only when the format version changes on purpose, or with --only for a file that is
new: the golden files prove that every later build still reads, bit for bit, what
earlier builds wrote.
Usage: NSAT_PLUGIN_DIR=build scripts/make_golden.py [--only NAME ...]
"""
import argparse
import hashlib
import json
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ["GDAL_DRIVER_PATH"] = os.environ.get("NSAT_PLUGIN_DIR", str(ROOT / "build"))
from osgeo import gdal  # noqa: E402

gdal.UseExceptions()

# name: (source in autotest/data, source window [x, y, w, h] or None, creation options)
GOLDEN = {
    "eurosat_ms_lossless.nsat": ("eurosat_ms_residential.tif", None,
                                 ["CODEC=LOSSLESS", "BLOCKSIZE=32"]),
    "landsat7_collar_jpeg.nsat": ("landsat7_rgb_byte.tif", [0, 0, 300, 200],
                                  ["CODEC=JPEG", "QUALITY=80", "BLOCKSIZE=128"]),
    "s1_db_float32_lossless.nsat": ("s1_grd_vv_db_float32.tif", None,
                                    ["CODEC=LOSSLESS", "BLOCKSIZE=64"]),
    "s1_gcps_overviews_lossless.nsat": ("s1_grd_gcps_uint16.tif", [0, 0, 700, 600],
                                        ["CODEC=LOSSLESS", "BLOCKSIZE=256"]),
    # Learned: these also pin the models (their SHA-256 is in the file) and the
    # decoder's arithmetic: a machine or change that decodes differently fails.
    "landsat7_multirate.nsat": ("landsat7_rgb_byte.tif", [200, 150, 300, 200],
                                ["CODEC=MULTIRATE", "QUALITY=60", "BLOCKSIZE=128"]),
    "landsat8_uint16_multirate.nsat": ("landsat8_b4_uint16.tif", [600, 600, 256, 256],
                                       ["CODEC=MULTIRATE", "QUALITY=80", "BLOCKSIZE=256",
                                        "OVERVIEWS=NONE"]),
    "naip_fixed_quality.nsat": ("naip_4band_byte.tif", [300, 200, 256, 192],
                                ["CODEC=FIXED_QUALITY", "TARGET_PSNR=29.5", "QUALITY_BLOCK=32",
                                 "BLOCKSIZE=128", "OVERVIEWS=NONE", "MODEL=fixed-quality-rgb8"]),
    # FIXED_QUALITY payload version 2 (log-spaced lambda levels) on the default models.
    "naip_fixed_quality_rgb8_v2.nsat": ("naip_4band_byte.tif", [300, 200, 256, 192],
                                        ["CODEC=FIXED_QUALITY", "TARGET_PSNR=32.3",
                                         "QUALITY_BLOCK=32", "BLOCKSIZE=128", "OVERVIEWS=NONE",
                                         "MODEL=fixed-quality-rgb8-v2"]),
    "naip_fixed_quality_rgb8_v3.nsat": ("naip_4band_byte.tif", [300, 200, 256, 192],
                                        ["CODEC=FIXED_QUALITY", "TARGET_PSNR=34",
                                         "QUALITY_BLOCK=16", "BLOCKSIZE=128", "OVERVIEWS=NONE",
                                         "MODEL=fixed-quality-rgb8-v3"]),
    "naip_fixed_quality_rgb8_v4.nsat": ("naip_4band_byte.tif", [300, 200, 256, 192],
                                        ["CODEC=FIXED_QUALITY", "TARGET_PSNR=34",
                                         "QUALITY_BLOCK=32", "BLOCKSIZE=128", "OVERVIEWS=NONE",
                                         "MODEL=fixed-quality-rgb8-v4"]),
    "landsat8_fixed_quality_ms16_v2.nsat": ("landsat8_b4_uint16.tif", [600, 600, 256, 256],
                                            ["CODEC=FIXED_QUALITY", "TARGET_PSNR=38",
                                             "QUALITY_BLOCK=16", "REFINE=1", "OVERVIEWS=NONE",
                                             "MODEL=fixed-quality-ms16-v2"]),
    "eurosat_river_rdic.nsat": ("eurosat_rgb_river.jpg", None, ["CODEC=RDIC", "BLOCKSIZE=64"]),
    # Float32 backscatter in dB (the SAR model, NaN nodata) and a 13-band stack through
    # the spectral transform (payload version 2).
    "s1_vv_vh_sar_multirate.nsat": ("s1_vv_vh_db_float32.tif", None,
                                    ["CODEC=MULTIRATE", "QUALITY=80", "BLOCKSIZE=64"]),
    "eurosat_ms_klt_multirate.nsat": ("eurosat_ms_residential.tif", None,
                                      ["CODEC=MULTIRATE", "QUALITY=80", "BLOCKSIZE=32"]),
    # Format 1.1: compressed headers (header dictionary 1), the CRS by EPSG code.
    "eurosat_forest_chip_multirate_v11.nsat": ("eurosat_rgb_forest.jpg", None,
                                               ["CODEC=MULTIRATE", "QUALITY=75"]),
    "eurosat_ms_epsg_lossless_v11.nsat": ("eurosat_ms_residential.tif", None,
                                          ["CODEC=LOSSLESS", "BLOCKSIZE=32"]),
    # UInt16 SAR amplitude coded in dB by the SAR model (sample_transform AMPLITUDE_DB).
    "s1_grd_amplitude_db_multirate_v11.nsat": ("s1_grd_gcps_uint16.tif", [768, 0, 256, 256],
                                               ["CODEC=MULTIRATE", "QUALITY=60",
                                                "SAMPLE_TRANSFORM=AMPLITUDE_DB",
                                                "MODEL=multirate-sar-db", "BLOCKSIZE=128"]),
    # Tied-gain models (card "demodulation": "inverse_of_modulation"): RGB+NIR, 16-bit, SAR.
    "naip_multirate_rgb8_v4.nsat": ("naip_4band_byte.tif", [300, 200, 256, 192],
                                    ["CODEC=MULTIRATE", "QUALITY=60", "BLOCKSIZE=128",
                                     "OVERVIEWS=NONE", "MODEL=multirate-rgb8-v4"]),
    "landsat8_multirate_ms16_v3.nsat": ("landsat8_b4_uint16.tif", [600, 600, 256, 256],
                                        ["CODEC=MULTIRATE", "QUALITY=80", "OVERVIEWS=NONE",
                                         "MODEL=multirate-ms16-v3"]),
    "s1_vv_vh_multirate_sar_db_v2.nsat": ("s1_vv_vh_db_float32.tif", None,
                                          ["CODEC=MULTIRATE", "QUALITY=80", "BLOCKSIZE=64",
                                           "MODEL=multirate-sar-db-v2"]),
    # The 8 px latent grid (multirate-sar-db-v3): VV + VH, and 61 x 45 px edge tiles.
    "s1_vv_vh_multirate_sar_db_v3.nsat": ("s1_vv_vh_db_float32.tif", None,
                                          ["CODEC=MULTIRATE", "QUALITY=80", "BLOCKSIZE=64",
                                           "MODEL=multirate-sar-db-v3"]),
    "s1_grd_odd_tiles_multirate_sar_db_v3.nsat": ("s1_grd_vv_db_float32.tif", [0, 0, 189, 173],
                                                  ["CODEC=MULTIRATE", "QUALITY=60",
                                                   "BLOCKSIZE=64", "MODEL=multirate-sar-db-v3"]),
    # The Byte default on the 8 px grid (multirate-rgb8-v5): RGB + NIR, 61 x 45 px edge tiles.
    "naip_multirate_rgb8_v5.nsat": ("naip_4band_byte.tif", [300, 200, 189, 173],
                                    ["CODEC=MULTIRATE", "QUALITY=60", "BLOCKSIZE=128",
                                     "OVERVIEWS=NONE", "MODEL=multirate-rgb8-v5"]),
    # multirate-rgb8-v6 with OVERLAP (8 px) in 64 px tiles, so that interior, edge (61 x 45)
    # and corner tiles all code their context windows, and overviews.
    "naip_multirate_rgb8_v6.nsat": ("naip_4band_byte.tif", [300, 200, 189, 173],
                                    ["CODEC=MULTIRATE", "QUALITY=60", "BLOCKSIZE=64",
                                     "OVERLAP=8", "MODEL=multirate-rgb8-v6"]),
    # OVERLAP (payload versions 3 and 4): tiles coded with 8 px of their neighbours, on the
    # 16 px grid of the 16-bit model with edge tiles, and 4 bands through the KLT.
    "landsat8_multirate_ms16_v3_overlap.nsat": ("landsat8_b4_uint16.tif", [600, 600, 189, 173],
                                                ["CODEC=MULTIRATE", "QUALITY=70", "BLOCKSIZE=64",
                                                 "OVERLAP=8", "MODEL=multirate-ms16-v3"]),
    "eurosat_rgbn_klt_multirate_overlap.nsat": ("eurosat_ms_residential_rgbn.tif", None,
                                                ["CODEC=MULTIRATE", "QUALITY=80", "BLOCKSIZE=32",
                                                 "OVERLAP=8", "SPECTRAL_TRANSFORM=KLT",
                                                 "MODEL=multirate-ms16-v3"]),
    # The 16-bit default on the 8 px grid (multirate-ms16-v6) with the default OVERLAP, edge
    # tiles and overviews.
    "landsat8_multirate_ms16_v6.nsat": ("landsat8_b4_uint16.tif", [600, 600, 189, 173],
                                        ["CODEC=MULTIRATE", "QUALITY=70", "BLOCKSIZE=64",
                                         "MODEL=multirate-ms16-v6"]),
    # VQ: every model, 1 to 3 levels, edge tiles, overviews, a multiple of the band count.
    "eurosat_rgb_vq_rgb8_v1.nsat": ("eurosat_rgb_river.jpg", None,
                                    ["CODEC=VQ", "LEVELS=3", "BLOCKSIZE=48", "MODEL=vq-rgb8-v1"]),
    "eurosat_rgb_vq_rgb8_v2.nsat": ("eurosat_rgb_forest.jpg", None,
                                    ["CODEC=VQ", "LEVELS=2", "BLOCKSIZE=32", "MODEL=vq-rgb8-v2"]),
    # DIFFUSION: the base payload plus the refiner's noise, condition and arithmetic.
    "landsat7_diffusion_vq_rgb8_v1.nsat": ("landsat7_rgb_byte.tif", [200, 150, 300, 200],
                                           ["CODEC=DIFFUSION", "LEVELS=2", "NOISE=0.02",
                                            "BLOCKSIZE=128", "MODEL=diffusion-vq-rgb8-v1"]),
    "eurosat_river_diffusion_vq_rgb8_v2.nsat": ("eurosat_rgb_river.jpg", None,
                                                ["CODEC=DIFFUSION", "LEVELS=1", "GSD=10",
                                                 "BLOCKSIZE=48", "MODEL=diffusion-vq-rgb8-v2"]),
    "landsat7_diffusion_vq_rgb8_v3.nsat": ("landsat7_rgb_byte.tif", [350, 100, 200, 150],
                                           ["CODEC=DIFFUSION", "LEVELS=2", "BLOCKSIZE=64",
                                            "OVERVIEWS=NONE", "MODEL=diffusion-vq-rgb8-v3"]),
    "eurosat_forest_diffusion_rgb8_v1.nsat": ("eurosat_rgb_forest.jpg", None,
                                              ["CODEC=DIFFUSION", "MODEL=diffusion-rgb8-v1",
                                               "QUALITY=60", "GSD=10", "BLOCKSIZE=32"]),
    "naip_vq_rgbn8_v1.nsat": ("naip_4band_byte.tif", [700, 300, 234, 200],
                              ["CODEC=VQ", "LEVELS=2", "BLOCKSIZE=128", "MODEL=vq-rgbn8-v1"]),
    "eurosat_ms_vq_rgbn16_v1.nsat": ("eurosat_ms_residential_rgbn.tif", None,
                                     ["CODEC=VQ", "LEVELS=1", "BLOCKSIZE=32",
                                      "MODEL=vq-rgbn16-v1"]),
}


def pixel_md5(path):
    """MD5 of every level's pixels (band-sequential, native types)."""
    dataset = gdal.Open(path)
    digest = hashlib.md5()
    for index in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(index)
        digest.update(band.ReadRaster())
        for level in range(band.GetOverviewCount()):
            digest.update(band.GetOverview(level).ReadRaster())
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="write only these files; keep the others and their digests")
    only = parser.parse_args().only
    out = ROOT / "autotest" / "golden"
    out.mkdir(exist_ok=True)
    manifest_path = out / "golden.json"
    manifest = json.loads(manifest_path.read_text()) if only and manifest_path.exists() else {}
    for name, (source, window, options) in GOLDEN.items():
        if only and name not in only:
            continue
        target = str(out / name)
        gdal.Translate(target, str(ROOT / "autotest" / "data" / source), format="NSAT",
                       srcWin=window, creationOptions=options)
        manifest[name] = {"source": source, "window": window, "options": options,
                          "pixels_md5": pixel_md5(target)}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
