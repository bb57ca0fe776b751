"""scripts/nsat_batch.py: an archive converted on a 2-worker Dask LocalCluster, on real
scenes from autotest/data (LOSSLESS and JPEG only: the learned codecs are slow).
Every command runs under a timeout."""
import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from osgeo import gdal

from conftest import DATA, PLUGIN_DIR, ROOT, data

pytest.importorskip("distributed", reason="python3-distributed (scripts/install_deps.sh)")
psutil = pytest.importorskip("psutil")

SCRIPT = ROOT / "scripts" / "nsat_batch.py"
LEFTOVER = re.compile(r"(\.tmp|\.partial|\.lock)$")
TIMEOUT = 90


def load_script():
    spec = importlib.util.spec_from_file_location("nsat_batch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch_command(source, out, *args, summary=None):
    command = [sys.executable, str(SCRIPT), str(source), str(out), "--workers", "2",
               "--plugin-dir", str(PLUGIN_DIR), *map(str, args)]
    if summary is not None:
        command += ["--summary-json", str(summary)]
    return command


def run_batch(source, out, *args, env=None, timeout=TIMEOUT):
    """Runs the CLI; returns (CompletedProcess, summary dict)."""
    summary = pathlib.Path(str(out) + ".summary.json")
    result = subprocess.run(batch_command(source, out, *args, summary=summary),
                            capture_output=True, text=True, timeout=timeout,
                            env=env or os.environ.copy())
    assert summary.exists(), f"no summary:\n{result.stdout}\n{result.stderr}"
    return result, json.loads(summary.read_text())


def link_scenes(folder, names):
    """IN folder with symbolic links to scenes in autotest/data ('sub/x' keeps sub-folders)."""
    for name in names:
        link = folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(DATA / pathlib.Path(name).name)
    return folder


def leftovers(out):
    return sorted(str(p.relative_to(out)) for p in pathlib.Path(out).rglob("*")
                  if p.is_file() and (LEFTOVER.search(p.name) or p.name.startswith(".")))


def outputs(out):
    return sorted(str(p.relative_to(out)) for p in pathlib.Path(out).rglob("*.nsat"))


def read_all(dataset):
    return np.stack([dataset.GetRasterBand(i + 1).ReadAsArray()
                     for i in range(dataset.RasterCount)])


def assert_georeferencing_kept(source, copy):
    assert (copy.RasterXSize, copy.RasterYSize, copy.RasterCount) == \
        (source.RasterXSize, source.RasterYSize, source.RasterCount)
    assert copy.GetGeoTransform(can_return_null=True) == source.GetGeoTransform(can_return_null=True)
    for get in ("GetSpatialRef", "GetGCPSpatialRef"):
        a, b = getattr(source, get)(), getattr(copy, get)()
        assert (a is None and b is None) or (a is not None and b is not None and a.IsSame(b)), get
    assert [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY, g.GCPZ) for g in copy.GetGCPs()] == \
        [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY, g.GCPZ) for g in source.GetGCPs()]
    for index in range(1, source.RasterCount + 1):
        assert copy.GetRasterBand(index).GetNoDataValue() == \
            source.GetRasterBand(index).GetNoDataValue()
        assert copy.GetRasterBand(index).DataType == source.GetRasterBand(index).DataType


def assert_bit_exact(source_path, output_path):
    source, copy = gdal.Open(str(source_path)), gdal.Open(str(output_path))
    assert copy.GetDriver().ShortName == "NSAT"
    assert copy.GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == "LOSSLESS"
    assert_georeferencing_kept(source, copy)
    assert np.array_equal(read_all(source), read_all(copy)), f"{output_path}: pixels differ"


def by_source(summary):
    return {pathlib.Path(s["src"]).name: s for s in summary["scenes"]}


# ------------------------------------------------------------------ naming (no cluster)


def test_scene_discovery_and_output_names(tmp_path):
    batch = load_script()
    source = tmp_path / "in"
    for name in ("a.tif", "a.jp2", "B.PNG", "sub/a.tif", "sub/deeper/c.vrt", ".hidden.tif",
                 "notes.txt", "x.tif.aux.xml", ".cache/d.tif"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"")
    scenes, base = batch.find_scenes(str(source))
    assert [os.path.relpath(s, base) for s in scenes] == ["B.PNG", "a.jp2", "a.tif"]
    scenes, base = batch.find_scenes(str(source), recursive=True)
    names = batch.output_names(scenes, base)
    assert sorted(names.values()) == ["B.nsat", "a_jp2.nsat", "a_tif.nsat",
                                      "sub/a.nsat", "sub/deeper/c.nsat"]

    listing = tmp_path / "lists" / "scenes.txt"
    listing.parent.mkdir()
    listing.write_text(f"# two folders\n{source / 'a.tif'}\n\n../in/sub/a.tif\n{source / 'a.tif'}\n")
    scenes, base = batch.find_scenes(str(listing))
    assert scenes == [str(source / "a.tif"), str(source / "sub" / "a.tif")]   # relative to the list
    assert sorted(batch.output_names(scenes, base).values()) == ["a.nsat", "sub/a.nsat"]


# ------------------------------------------------------------------ conversions


def test_folder_lossless_rerun_skips_corrupt_output_redone(tmp_path):
    source = link_scenes(tmp_path / "in", ["landsat7_rgb_byte.tif",          # nodata collar
                                           "landsat_int16_custom_crs.tif",   # custom CRS
                                           "s1_grd_gcps_uint16.tif",         # GCPs
                                           "sub/eurosat_rgb_forest.jpg"])
    out = tmp_path / "out"
    result, summary = run_batch(source, out, "--recursive", "-co", "CODEC=LOSSLESS")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["counts"] == {"converted": 4, "skipped": 0, "failed": 0}
    assert summary["workers"] == 2
    assert outputs(out) == ["landsat7_rgb_byte.nsat", "landsat_int16_custom_crs.nsat",
                            "s1_grd_gcps_uint16.nsat", "sub/eurosat_rgb_forest.nsat"]
    assert leftovers(out) == []
    for scene in summary["scenes"]:
        assert_bit_exact(scene["src"], scene["dst"])
        assert scene["out_bytes"] == os.path.getsize(scene["dst"]) and scene["in_bytes"] > 0
    for label in ("converted", "skipped", "failed", "total", "ratio", "bits/pixel"):
        assert label in result.stdout

    # Rerun: everything verifies, nothing is rewritten.
    stamps = {p: os.stat(out / p).st_ino for p in outputs(out)}
    result, summary = run_batch(source, out, "--recursive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["counts"] == {"converted": 0, "skipped": 4, "failed": 0}
    assert {p: os.stat(out / p).st_ino for p in outputs(out)} == stamps

    # A corrupted tile (the driver's CRC-32 catches it) and a stale temporary file from a
    # killed run: the one scene is redone, the rest skipped, the temporary file removed.
    damaged = out / "landsat7_rgb_byte.nsat"
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError):
        read_all(gdal.Open(str(damaged)))
    stale = out / "sub" / f".eurosat_rgb_forest.nsat.{'0' * 32}.tmp"
    stale.write_bytes(b"partial")
    result, summary = run_batch(source, out, "--recursive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["counts"] == {"converted": 1, "skipped": 3, "failed": 0}
    redone = by_source(summary)["landsat7_rgb_byte.tif"]
    assert redone["status"] == "converted" and "redone" in redone["note"]
    assert "redone" in result.stdout
    assert_bit_exact(redone["src"], damaged)
    assert leftovers(out) == []


def test_list_file_jpeg(tmp_path):
    listing = tmp_path / "scenes.txt"
    forest = os.path.relpath(data("eurosat_rgb_test100/Forest_1.jpg"), tmp_path)
    listing.write_text(f"# Byte scenes\n{data('landsat7_rgb_byte.tif')}\n"
                       f"{data('naip_4band_byte.tif')}\n{forest}\n")
    out = tmp_path / "out"
    result, summary = run_batch(listing, out, "-co", "CODEC=JPEG", "-co", "QUALITY=90")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["counts"] == {"converted": 3, "skipped": 0, "failed": 0}
    # output names relative to the scenes' common folder
    assert outputs(out) == ["eurosat_rgb_test100/Forest_1.nsat", "landsat7_rgb_byte.nsat",
                            "naip_4band_byte.nsat"]
    assert leftovers(out) == []
    for scene in summary["scenes"]:
        source, copy = gdal.Open(scene["src"]), gdal.Open(scene["dst"])
        assert copy.GetMetadataItem("NSAT_CODEC", "IMAGE_STRUCTURE") == "JPEG"
        assert_georeferencing_kept(source, copy)
        reference, decoded = read_all(source).astype(np.float64), read_all(copy).astype(np.float64)
        mse = float(np.mean((reference - decoded) ** 2))
        assert 0 < mse and 10 * np.log10(255 ** 2 / mse) > 30, scene["src"]
    # a rerun with another codec does not count the JPEG files as done
    result, summary = run_batch(listing, out, "-co", "CODEC=LOSSLESS")
    assert summary["counts"]["converted"] == 3, result.stdout


def test_bad_inputs_fail_after_retries(tmp_path):
    source = link_scenes(tmp_path / "in", ["eurosat_rgb_river.jpg", "s1_slc_cint16.tif"])
    (source / "not_a_raster.tif").write_text("this is a text file\n")
    out = tmp_path / "out"
    result, summary = run_batch(source, out, "--retries", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary["counts"] == {"converted": 1, "skipped": 0, "failed": 2}
    scenes = by_source(summary)
    for name, expected in (("not_a_raster.tif", "not recognized"), ("s1_slc_cint16.tif", "CInt16")):
        failure = scenes[name]
        assert failure["status"] == "failed" and failure["attempts"] == 2
        assert len(failure["errors"]) == 2 and expected in failure["error"]
        assert name in result.stdout and expected in result.stdout
    assert "failed (2)" in result.stdout
    assert outputs(out) == ["eurosat_rgb_river.nsat"]
    assert leftovers(out) == []


def test_worker_killed_mid_run(tmp_path):
    """SIGKILL a worker while it writes a scene: the nanny restarts it, Dask reruns the task,
    and every scene ends up converted once, verified, with no temporary file left."""
    names = ["AnnualCrop_11.jpg", "AnnualCrop_16.jpg", "Forest_1.jpg", "Forest_11.jpg"]
    source = tmp_path / "in"
    source.mkdir()
    for name in names:
        (source / name).symlink_to(DATA / "eurosat_rgb_test100" / name)
    out = tmp_path / "out"
    summary_path = tmp_path / "summary.json"
    env = dict(os.environ, NSAT_BATCH_TEST_DELAY="1.5")   # each task pauses mid-write
    log = open(tmp_path / "log.txt", "w+")
    cli = subprocess.Popen(batch_command(source, out, summary=summary_path),
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    killed = None
    try:
        deadline = time.time() + 45
        while killed is None and time.time() < deadline and cli.poll() is None:
            for partial in out.glob(".*.partial") if out.exists() else []:
                pid = int(partial.name.rsplit(".", 2)[-2])   # <target>.<pid>.partial
                descendants = {p.pid: p for p in psutil.Process(cli.pid).children(recursive=True)}
                if pid in descendants:   # a worker of this run, never anything else
                    descendants[pid].send_signal(signal.SIGKILL)
                    killed = (pid, partial.name)
                    break
            time.sleep(0.05)
        assert killed is not None, "no worker was caught writing"
        rc = cli.wait(timeout=TIMEOUT)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(timeout=10)
    log.seek(0)
    text = log.read()
    assert rc == 0, text
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == "zombie"
    summary = json.loads(summary_path.read_text())
    assert summary["counts"] == {"converted": 4, "skipped": 0, "failed": 0}, text
    assert sorted(pathlib.Path(s["src"]).name for s in summary["scenes"]) == sorted(names)
    assert all(not s["worker"].endswith(f":{killed[0]}") for s in summary["scenes"])
    assert outputs(out) == sorted(n.replace(".jpg", ".nsat") for n in names)
    assert leftovers(out) == []
    for scene in summary["scenes"]:
        assert_bit_exact(scene["src"], scene["dst"])


def test_existing_cluster_via_scheduler(tmp_path):
    """`dask scheduler` + `dask worker` (whose environment has no GDAL_DRIVER_PATH): the
    tasks bring --plugin-dir with them."""
    import shutil
    import socket
    dask_cli = shutil.which("dask")
    if dask_cli is None:
        pytest.skip("no `dask` command")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "GDAL_DRIVER_PATH"}
    logs = open(tmp_path / "cluster.txt", "w+")
    processes = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port",
                                   str(port), "--no-dashboard"], stdout=logs,
                                  stderr=subprocess.STDOUT, env=env, cwd=tmp_path)]
    try:
        processes.append(subprocess.Popen([dask_cli, "worker", address, "--nthreads", "1",
                                           "--no-dashboard", "--nworkers", "1"], stdout=logs,
                                          stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
        source = link_scenes(tmp_path / "in", ["landsat7_rgb_byte.tif", "eurosat_rgb_river.jpg"])
        out = tmp_path / "out"
        result, summary = run_batch(source, out, "--scheduler", address, "--wait-workers", "30",
                                    env=env)
        logs.seek(0)
        assert result.returncode == 0, result.stdout + result.stderr + logs.read()
        assert summary["workers"] == 1
        assert summary["counts"] == {"converted": 2, "skipped": 0, "failed": 0}
        assert leftovers(out) == []
        for scene in summary["scenes"]:
            assert_bit_exact(scene["src"], scene["dst"])
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
