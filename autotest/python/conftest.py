"""Shared fixtures: every test runs GDAL (Python bindings and command-line tools)
with the freshly built NSAT plugin, on the real scenes in autotest/data."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "autotest" / "data"
# scripts/test.sh points this at its build tree; default: ./build
PLUGIN_DIR = pathlib.Path(os.environ.get("NSAT_PLUGIN_DIR", ROOT / "build"))

if not (PLUGIN_DIR / "gdal_NSAT.so").exists():
    raise RuntimeError(f"gdal_NSAT.so not found in {PLUGIN_DIR}: build first or set NSAT_PLUGIN_DIR")

# Must be set before osgeo.gdal / rasterio load their drivers.
os.environ["GDAL_DRIVER_PATH"] = str(PLUGIN_DIR)
os.environ.setdefault("CPL_DEBUG", "OFF")

from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
gdal.AllRegister()


def data(name: str) -> str:
    return str(DATA / name)


def run_gdal(*args: str, check: bool = True, env=None) -> subprocess.CompletedProcess:
    """Runs a GDAL command-line tool with the plugin (in `env`, default this process's
    environment); returns stdout/stderr as text."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            env=env or os.environ.copy(), timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def failures_of(call):
    """(result of `call`, [(CPLE_* class, message) of every CE_Failure it raised]).

    Exceptions are off while it runs, so that the handler sees every error whatever the
    GDAL version: a failed block read is reported twice, by the driver and then by GDAL's
    "IReadBlock failed" wrapper, and the driver's error is the one to check."""
    failures = []

    def handler(level, number, message):
        if level == gdal.CE_Failure:
            failures.append((number, message))

    used_exceptions = gdal.GetUseExceptions()
    gdal.DontUseExceptions()
    gdal.PushErrorHandler(handler)
    try:
        result = call()
    finally:
        gdal.PopErrorHandler()
        if used_exceptions:
            gdal.UseExceptions()
    return result, failures


def nsat_failure(failures):
    """The one (class, message) that the NSAT driver itself reported among `failures`."""
    ours = [failure for failure in failures if failure[1].startswith("NSAT: ")]
    assert len(ours) == 1, failures
    return ours[0]


def last_error_after(call):
    """(CPLE_* class, message) of the last CE_Failure that `call`, which must fail, raised."""
    _, failures = failures_of(call)
    assert failures, "the call was expected to fail"
    return failures[-1]


def translate_nsat(source, target, options=(), args=()) -> str:
    """gdal_translate to NSAT with creation options `options` and extra arguments `args`."""
    command = ["gdal_translate", "-q", "-of", "NSAT", *args]
    for option in options:
        command += ["-co", option]
    run_gdal(*command, source, target)
    return str(target)


@pytest.fixture(scope="session")
def nsat_driver():
    driver = gdal.GetDriverByName("NSAT")
    assert driver is not None, "the NSAT plugin did not register"
    return driver
