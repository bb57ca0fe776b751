#!/usr/bin/python3
"""Prints size, bits per pixel and PSNR (over valid pixels) of NSAT files against a source.

Usage: compare.py SOURCE.tif FILE.nsat [FILE.nsat ...]
"""
import os
import sys

import numpy as np
from osgeo import gdal

gdal.UseExceptions()


def valid_mask(dataset, pixels):
    """True where no band holds its nodata value."""
    valid = np.ones(pixels.shape[1:], dtype=bool)
    for index in range(dataset.RasterCount):
        nodata = dataset.GetRasterBand(index + 1).GetNoDataValue()
        if nodata is not None:
            valid &= pixels[index] != nodata
    return valid


def psnr(reference, decoded, valid, peak):
    diff = reference[:, valid].astype(np.float64) - decoded[:, valid].astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def main(source_path, nsat_paths):
    source = gdal.Open(source_path)
    reference = source.ReadAsArray().reshape(source.RasterCount, source.RasterYSize, -1)
    valid = valid_mask(source, reference)
    peak = float(np.iinfo(reference.dtype).max) if reference.dtype.kind in "ui" else 1.0
    pixels = source.RasterXSize * source.RasterYSize
    # file bpp counts everything (header, internal overviews); payload bpp only the
    # full-resolution tiles, as gdalinfo's NSAT_BITS_PER_PIXEL reports it.
    print(f"{'file':32s} {'bytes':>10s} {'file bpp':>9s} {'payload bpp':>11s} "
          f"{'ratio':>7s} {'PSNR dB':>8s}  codec")
    print(f"{os.path.basename(source_path):32s} {os.path.getsize(source_path):10d}")
    for path in nsat_paths:
        dataset = gdal.Open(path)
        decoded = dataset.ReadAsArray().reshape(reference.shape)
        structure = dataset.GetMetadata("IMAGE_STRUCTURE")
        size = os.path.getsize(path)
        value = psnr(reference, decoded, valid, peak)
        shown = "lossless" if value == float("inf") else f"{value:8.2f}"
        raw = reference.nbytes
        print(f"{os.path.basename(path):32s} {size:10d} {8 * size / pixels:9.3f} "
              f"{float(structure['NSAT_BITS_PER_PIXEL']):11.3f} "
              f"{raw / size:7.2f} {shown:>8s}  {structure.get('NSAT_CODEC')} "
              f"{structure.get('NSAT_CODEC_PARAMETERS')}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
