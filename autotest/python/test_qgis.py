"""Headless QGIS test: QGIS's GDAL provider opens .nsat files through the NSAT
plugin, reports the right georeferencing, and renders them like the source
GeoTIFF.

Needs the Debian packages python3-qgis and qgis-providers (scripts/install_deps.sh
--with-qgis); the module is skipped when `qgis` cannot be imported. Runs with
QT_QPA_PLATFORM=offscreen, so no X server (xvfb) is needed.

conftest.py has already set GDAL_DRIVER_PATH to the plugin's directory, and
QGIS's GDAL provider registers the drivers found there when it initialises.
"""
import gc
import os
import re
import shutil

import numpy as np
import pytest

from conftest import data, run_gdal

# Must be set before QtGui / qgis are imported.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

try:
    from qgis.core import (
        QgsApplication,
        QgsContrastEnhancement,
        QgsMapRendererSequentialJob,
        QgsMapSettings,
        QgsMultiBandColorRenderer,
        QgsProviderRegistry,
        QgsRasterLayer,
    )
    from qgis.PyQt.QtCore import QCoreApplication, QSize
    from qgis.PyQt.QtGui import QColor, QImage
except ImportError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"QGIS Python bindings not importable ({exc}); "
                "install the Debian packages python3-qgis and qgis-providers",
                allow_module_level=True)

SOURCE = "landsat7_rgb_byte.tif"   # 791x718, 3-band Byte, EPSG:32618, nodata 0
OUT_SIZE = (400, 360)

# Render of the lossless .nsat vs the same-resolution GeoTIFF reference, mean
# absolute difference over the RGB channels (0..255). Measured: 0.0 (the images
# are pixel-identical) in every case below; 1 is the limit asked for.
LOSSLESS_MAX_MEAN_DIFF = 1.0
# JPEG QUALITY=90 (4:2:0), same comparison. Measured 2.19 at 400x360 (overview
# level) and 2.29 at 791x718 (full resolution), max per-channel diff 62 / 137 at
# the nodata border; 4 leaves headroom for libjpeg differences but still fails
# for a one-pixel shift (9.9) or red/blue swapped bands (13.1).
JPEG_MAX_MEAN_DIFF = 4.0
# A real Landsat render (dark land/sea plus white nodata background) has an RGB
# standard deviation of about 100; a blank or single-colour image has ~0.
MIN_RENDER_STD = 20.0


# Kept referenced until the interpreter exits: see qgs_app.
_APP = None


@pytest.fixture(scope="module")
def qgs_app():
    """One QgsApplication (no GUI), initialised once.

    exitQgis() is deliberately never called. Measured with QGIS 3.22.16 /
    GDAL 3.6.2: (1) exitQgis() tears down GDAL's driver manager in this shared
    process, so every later test module (test_roundtrip.py) then fails with
    "No driver registered" / "the NSAT plugin did not register"; (2) with a
    QgsRasterLayer wrapper still alive, exitQgis() makes the interpreter
    segfault at exit (status 139). Leaving the application initialised until
    the process ends exits cleanly (status 0) in both cases.
    """
    global _APP
    if _APP is None:
        existing = QCoreApplication.instance()
        if isinstance(existing, QgsApplication):
            _APP = existing
        else:
            _APP = QgsApplication([], False)
            _APP.initQgis()
    yield _APP
    gc.collect()   # drop this module's layers before other modules run


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The source GeoTIFF and its conversions, made once for the module."""
    d = tmp_path_factory.mktemp("qgis_nsat")
    # Copies, so QGIS never writes .aux.xml statistics next to autotest/data.
    src = d / "source.tif"
    shutil.copy(data(SOURCE), src)
    # Same scene with GDAL's own average overviews: the reference for renders
    # that QGIS draws from the .nsat's internal (AVERAGE) overviews.
    src_ovr = d / "source_avg_overviews.tif"
    shutil.copy(data(SOURCE), src_ovr)
    run_gdal("gdaladdo", "-q", "-r", "average", src_ovr, "2", "4")
    files = {"source": src, "source_ovr": src_ovr}
    for key, opts in {
        "lossless": ["-co", "CODEC=LOSSLESS"],
        "lossless_noovr": ["-co", "CODEC=LOSSLESS", "-co", "OVERVIEWS=NONE"],
        "jpeg": ["-co", "CODEC=JPEG", "-co", "QUALITY=90"],
    }.items():
        files[key] = d / f"{key}.nsat"
        run_gdal("gdal_translate", "-q", "-of", "NSAT", *opts, data(SOURCE), files[key])
    return files


def _layer(path) -> "QgsRasterLayer":
    layer = QgsRasterLayer(str(path), path.stem, "gdal")
    # (layer.error().summary() segfaults in QGIS 3.22's bindings: not used.)
    assert layer.isValid(), f"QGIS could not open {path} with the gdal provider"
    return layer


def _set_fixed_rgb_renderer(layer):
    """Bands 1,2,3 as RGB, each stretched 0..255: the same rendering for every
    layer, whatever statistics QGIS computes or finds (the source GeoTIFF
    carries STATISTICS_MINIMUM=0, the .nsat gets 1 from QGIS's own estimate)."""
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, 1, 2, 3)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for band, setter in zip((1, 2, 3), setters):
        ce = QgsContrastEnhancement(provider.dataType(band))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        ce.setMinimumValue(0)
        ce.setMaximumValue(255)
        setter(ce)
    layer.setRenderer(renderer)


def _render_png(path, png_path, extent, size=OUT_SIZE) -> np.ndarray:
    """Renders the raster at `path` over `extent` into a PNG; returns the PNG's
    pixels read back, as an (h, w, 4) uint8 array in B, G, R, A order."""
    layer = _layer(path)
    _set_fixed_rgb_renderer(layer)
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(*size))
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setOutputImageFormat(QImage.Format_ARGB32)
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    errors = [e.message for e in job.errors()]
    image = job.renderedImage()
    del job, settings, layer
    assert not errors, f"rendering {path}: {errors}"
    assert image.save(str(png_path), "PNG"), f"could not write {png_path}"

    loaded = QImage(str(png_path)).convertToFormat(QImage.Format_ARGB32)
    assert (loaded.width(), loaded.height()) == size
    bits = loaded.constBits()
    bits.setsize(loaded.height() * loaded.bytesPerLine())
    rows = np.frombuffer(bits, np.uint8).reshape(loaded.height(), loaded.bytesPerLine())
    return rows[:, :loaded.width() * 4].reshape(loaded.height(), loaded.width(), 4).copy()


def _source_extent(work):
    layer = _layer(work["source"])
    extent = layer.extent()
    del layer
    return extent


def _mean_rgb_diff(a, b) -> float:
    return float(np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)).mean())


def _check_not_blank(pixels, what):
    std = float(pixels[..., :3].std())
    assert std > MIN_RENDER_STD, f"{what} looks blank: RGB std {std:.1f}"
    # Part of the scene is nodata (0): drawn transparent, i.e. the white
    # background. If nodata were lost it would be black instead.
    white = float((pixels[..., :3] == 255).all(-1).mean())
    assert 0.05 < white < 0.8, f"{what}: {white:.0%} of pixels are background"


def test_gdal_file_filter_lists_nsat(qgs_app):
    filters = QgsProviderRegistry.instance().fileRasterFilters()
    assert "*.nsat" in filters.lower(), "QGIS's raster file filter has no *.nsat entry"
    assert any("nsat" in f.lower() and "*.nsat" in f.lower()
               for f in filters.split(";;") if not f.lower().startswith("all ")), \
        "no dedicated NSAT entry in QGIS's raster file filter"


def test_layer_properties(qgs_app, work):
    src = _layer(work["source"])
    layer = _layer(work["lossless"])
    try:
        assert layer.crs().authid() == "EPSG:32618"
        assert (layer.width(), layer.height()) == (791, 718)
        assert layer.bandCount() == 3
        ext, src_ext = layer.extent(), src.extent()
        for got, want in ((ext.xMinimum(), src_ext.xMinimum()), (ext.yMinimum(), src_ext.yMinimum()),
                          (ext.xMaximum(), src_ext.xMaximum()), (ext.yMaximum(), src_ext.yMaximum())):
            assert got == pytest.approx(want, abs=1e-6), (ext.toString(), src_ext.toString())

        provider = layer.dataProvider()
        assert provider.name() == "gdal"
        for band in (1, 2, 3):
            assert provider.dataType(band) == src.dataProvider().dataType(band)
            assert provider.sourceHasNoDataValue(band)
            assert provider.sourceNoDataValue(band) == 0
        # QGIS 3.22 exposes no driver accessor to Python; its GDAL provider
        # names the driver in its metadata HTML.
        text = re.sub(r"<[^>]+>", " ", provider.htmlMetadata())
        match = re.search(r"GDAL Driver Description\s+(\S+)", text)
        assert match, "no driver description in the provider metadata"
        assert match.group(1) == "NSAT"
    finally:
        del layer, src


@pytest.mark.parametrize("nsat, reference, size", [
    # Default conversion: at 400x360 QGIS (GDAL RasterIO) reads the .nsat's
    # internal AVERAGE overview, so the reference is the GeoTIFF with GDAL's
    # average overviews. (Against the overview-less GeoTIFF, which is
    # decimated nearest-neighbour, the mean diff is 6.2: resampling, not loss.)
    ("lossless", "source_ovr", OUT_SIZE),
    # Without overviews both are decimated from full resolution.
    ("lossless_noovr", "source", OUT_SIZE),
    # Full resolution against the untouched source: no overview involved.
    ("lossless", "source", (791, 718)),
])
def test_lossless_render_matches_geotiff(qgs_app, work, tmp_path, nsat, reference, size):
    extent = _source_extent(work)
    want = _render_png(work[reference], tmp_path / f"{reference}.png", extent, size)
    got = _render_png(work[nsat], tmp_path / f"{nsat}.png", extent, size)
    _check_not_blank(want, reference)
    _check_not_blank(got, nsat)
    diff = _mean_rgb_diff(got, want)
    assert diff < LOSSLESS_MAX_MEAN_DIFF, f"{nsat} vs {reference} at {size}: mean |diff| {diff:.3f}"


@pytest.mark.parametrize("reference, size", [("source_ovr", OUT_SIZE), ("source", (791, 718))])
def test_jpeg_render_close_to_geotiff(qgs_app, work, tmp_path, reference, size):
    extent = _source_extent(work)
    want = _render_png(work[reference], tmp_path / f"{reference}.png", extent, size)
    got = _render_png(work["jpeg"], tmp_path / "jpeg.png", extent, size)
    _check_not_blank(got, "jpeg")
    diff = _mean_rgb_diff(got, want)
    assert diff < JPEG_MAX_MEAN_DIFF, f"jpeg vs {reference} at {size}: mean |diff| {diff:.3f}"


def test_vq_file_and_its_codebook_indices_open_as_layers(qgs_app, work, tmp_path):
    """A VQ file renders like its source, and its NSAT_LATENT subdataset is a layer of
    UInt16 index bands over the same extent (one cell per 4 x 4 px)."""
    from qgis.core import Qgis
    target = tmp_path / "vq.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=VQ", "-co", "LEVELS=3",
             work["source"], target)
    image = _layer(target)
    latent = QgsRasterLayer(f"NSAT_LATENT:{target}", "indices", "gdal")
    try:
        assert latent.isValid(), "QGIS could not open the NSAT_LATENT subdataset"
        assert latent.bandCount() == 3 * 2  # 3 levels x 2 codebook groups (vq-rgb8-v2)
        assert latent.dataProvider().dataType(1) == Qgis.DataType.UInt16
        assert latent.crs().authid() == image.crs().authid() == "EPSG:32618"
        assert (latent.width(), latent.height()) == (198, 180)  # ceil(791 / 4), ceil(718 / 4)
        cell = 4 * image.rasterUnitsPerPixelX()
        assert latent.extent().xMinimum() == pytest.approx(image.extent().xMinimum())
        assert latent.extent().yMaximum() == pytest.approx(image.extent().yMaximum())
        assert latent.extent().width() == pytest.approx(image.extent().width(), abs=cell)
        pixels = _render_png(target, tmp_path / "vq.png", _source_extent(work))
        source = _render_png(work["source_ovr"], tmp_path / "source.png", _source_extent(work))
        _check_not_blank(pixels, "VQ render")
        assert _mean_rgb_diff(pixels, source) < 12.0
    finally:
        del latent, image


def test_diffusion_file_renders_and_its_base_decode_too(qgs_app, work, tmp_path):
    """A DIFFUSION file renders like its source in QGIS, refined or (open option
    REFINEMENT=NO, as QGIS passes it in the layer URI's options) base-only."""
    target = tmp_path / "diffusion.nsat"
    run_gdal("gdal_translate", "-q", "-of", "NSAT", "-co", "CODEC=DIFFUSION", work["source"], target)
    source = _render_png(work["source_ovr"], tmp_path / "source.png", _source_extent(work))
    refined = _render_png(target, tmp_path / "refined.png", _source_extent(work))
    _check_not_blank(refined, "DIFFUSION render")
    assert _mean_rgb_diff(refined, source) < 12.0
    base = QgsRasterLayer(f"{target}|option:REFINEMENT=NO", "base", "gdal")
    try:
        assert base.isValid(), "QGIS could not open the file with REFINEMENT=NO"
        assert base.bandCount() == 3
    finally:
        del base

