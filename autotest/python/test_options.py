"""One declaration per option (issue 14): the driver's option list, the README's tables,
the strict parsers and the "ignored option" warnings all come from it; errors carry the
class their kind maps to, also when the learned-codec module raised them."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from osgeo import gdal

from conftest import PLUGIN_DIR, ROOT, data, last_error_after

sys.path.insert(0, str(ROOT / "scripts"))
import options_table  # noqa: E402

CODECS = ["LOSSLESS", "JPEG", "RDIC", "MULTIRATE", "FIXED_QUALITY", "VQ", "DIFFUSION"]
SCENE = data("eurosat_rgb_forest.jpg")  # 64 x 64 RGB


def creation_options(nsat_driver):
    return ET.fromstring(nsat_driver.GetMetadataItem("DMD_CREATIONOPTIONLIST")).findall("Option")


def readers_of(option):
    """The codecs whose declaration of this option its description names ("JPEG: ...")."""
    text = option.get("description")
    return [codec for codec in CODECS if f"{codec}:" in text or f"{codec} (default" in text]


def translate_error(tmp_path, options, source=SCENE):
    return last_error_after(lambda: gdal.Translate(
        str(tmp_path / "out.nsat"), source, format="NSAT", creationOptions=options))


def test_the_readme_tables_are_the_drivers():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert options_table.render(readme) == readme, \
        "run /usr/bin/python3 scripts/options_table.py --write README.md"


def test_codec_lists_only_codecs_that_exist(nsat_driver):
    codec = next(o for o in creation_options(nsat_driver) if o.get("name") == "CODEC")
    assert [value.text for value in codec.findall("Value")] == CODECS


def test_every_listed_codec_writes_a_file(tmp_path):
    extra = {"FIXED_QUALITY": ["TARGET_PSNR=30"]}
    for codec in CODECS:
        target = tmp_path / f"{codec}.nsat"
        gdal.Translate(str(target), SCENE, format="NSAT",
                       creationOptions=[f"CODEC={codec}", "BLOCKSIZE=32", *extra.get(codec, [])])
        opened = gdal.Open(str(target))
        assert opened.GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == codec


@pytest.mark.parametrize("codec", ["CONDITIONAL"])
def test_a_codec_that_does_not_exist_is_refused_without_loading_the_module(tmp_path, codec):
    number, message = translate_error(tmp_path, [f"CODEC={codec}"])
    assert number == gdal.CPLE_IllegalArg and "unknown" in message
    # Same with no module at all: the name is refused before any module is looked for.
    env = dict(os.environ, GDAL_DRIVER_PATH=str(PLUGIN_DIR), NSAT_LEARNED_MODULE="/nonexistent.so")
    result = subprocess.run(["gdal_translate", "-q", "-of", "NSAT", "-co", f"CODEC={codec}", SCENE,
                             str(tmp_path / "x.nsat")], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "unknown" in result.stderr
    assert "module" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def bad_values(option):
    kind = option.get("type")
    if kind == "int":
        return ["abc", "7.5", str(int(float(option.get("max") or 1e9)) + 1)]
    if kind == "string-select":
        return ["BOGUS"]
    if kind == "float":
        return ["abc", "1e999"]
    return []


def test_every_declared_value_check_is_an_illegal_argument(tmp_path, nsat_driver):
    checked = 0
    for option in creation_options(nsat_driver):
        name = option.get("name")
        if name == "CODEC":
            continue
        codec = (readers_of(option) or ["LOSSLESS"])[0]
        required = ["TARGET_PSNR=30"] if codec == "FIXED_QUALITY" and name != "TARGET_PSNR" else []
        if name == "TARGET_MSE":
            required = []
        for value in bad_values(option):
            number, message = translate_error(
                tmp_path, [f"CODEC={codec}", f"{name}={value}", *required])
            assert number == gdal.CPLE_IllegalArg, (name, value, message)
            assert name in message, (name, value, message)
            checked += 1
    assert checked >= 30
    assert list(tmp_path.iterdir()) == []


def test_an_option_of_another_codec_is_ignored_with_a_warning(tmp_path):
    warnings = []
    gdal.PushErrorHandler(lambda level, number, message: warnings.append((level, number, message)))
    try:
        gdal.Translate(str(tmp_path / "a.nsat"), SCENE, format="NSAT",
                       creationOptions=["CODEC=JPEG", "ZSTD_LEVEL=3", "TARGET_PSNR=40"])
    finally:
        gdal.PopErrorHandler()
    ignored = [m for level, number, m in warnings
               if level == gdal.CE_Warning and number == gdal.CPLE_NotSupported]
    assert any("ZSTD_LEVEL" in m and "CODEC=JPEG" in m for m in ignored)
    assert any("TARGET_PSNR" in m and "CODEC=JPEG" in m for m in ignored)


def test_errors_raised_in_the_learned_module_keep_their_class(tmp_path):
    number, message = translate_error(tmp_path, ["CODEC=MULTIRATE", "LAMBDA=1000"])
    assert number == gdal.CPLE_IllegalArg and "LAMBDA" in message
    number, message = translate_error(tmp_path, ["CODEC=MULTIRATE", "QUALITY=5", "LAMBDA=0.01"])
    assert number == gdal.CPLE_IllegalArg and "only one" in message
    number, message = translate_error(tmp_path, ["CODEC=FIXED_QUALITY"])
    assert number == gdal.CPLE_IllegalArg and "TARGET_PSNR" in message
    number, message = translate_error(tmp_path, ["CODEC=MULTIRATE", "MODEL=../etc"])
    assert number == gdal.CPLE_IllegalArg
    number, message = translate_error(tmp_path, ["CODEC=MULTIRATE", "MODEL=multirate-ms16"])
    assert number == gdal.CPLE_IllegalArg and "multirate-ms16" in message
    float64 = "/vsimem/options_float64.tif"
    gdal.Translate(float64, data("s1_grd_vv_db_float32.tif"), outputType=gdal.GDT_Float64)
    try:
        number, message = translate_error(tmp_path, ["CODEC=MULTIRATE"], float64)
    finally:
        gdal.Unlink(float64)
    assert number == gdal.CPLE_NotSupported and "Float64" in message
    assert list(tmp_path.iterdir()) == []


def test_a_bad_open_option_is_an_illegal_argument(tmp_path):
    path = tmp_path / "a.nsat"
    gdal.Translate(str(path), SCENE, format="NSAT")
    number, message = last_error_after(
        lambda: gdal.OpenEx(str(path), open_options=["NUM_THREADS=many"]))
    assert number == gdal.CPLE_IllegalArg and "NUM_THREADS" in message


def test_a_file_that_is_not_nsat_inside_fails_to_open_as_open_failed(tmp_path):
    path = tmp_path / "fake.nsat"
    path.write_bytes(b"\x89NSAT\r\n\x1a" + b"\x01\x00" + b"\x00" * 50)
    number, message = last_error_after(lambda: gdal.Open(str(path)))
    assert number == gdal.CPLE_OpenFailed


def test_a_strict_copy_refuses_an_option_its_codec_ignores(tmp_path):
    number, message = last_error_after(lambda: gdal.Translate(
        str(tmp_path / "a.nsat"), SCENE, format="NSAT", strict=True,
        creationOptions=["CODEC=JPEG", "ZSTD_LEVEL=3"]))
    assert number == gdal.CPLE_IllegalArg and "ZSTD_LEVEL" in message and "strict" in message
    assert list(tmp_path.iterdir()) == []
    gdal.Translate(str(tmp_path / "b.nsat"), SCENE, format="NSAT", strict=True,
                   creationOptions=["CODEC=JPEG", "QUALITY=80"])
    assert (tmp_path / "b.nsat").exists()
