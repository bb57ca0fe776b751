#!/usr/bin/python3
"""Converts an archive of rasters to NSAT on a Dask cluster, resumably.

    nsat_batch.py IN OUT [--workers N] [--scheduler ADDRESS] [-co KEY=VALUE ...] [--retries K]

IN is a folder (rasters found by extension, --recursive to descend), a text file listing
paths (one a line, '#' comments; relative paths are relative to the list file's folder) or a
single raster. OUT is a folder; each scene becomes OUT/<relative folder>/<stem>.nsat (two
scenes with the same stem in one folder, e.g. a.tif and a.jp2, become a_tif.nsat and
a_jp2.nsat).

Each scene is one Dask task: gdal.Translate into OUT/.../.<stem>.nsat.<uuid>.tmp, then a
verification that opens that file and reads every block of every band and overview (the
NSAT driver checks each tile's CRC-32), then os.replace onto the final name. A final output
that already verifies (same size, band count and codec) is skipped; one that does not is
redone. Stale temporary files are removed when a run starts and ends. A failed scene is
retried --retries times, then reported with its error; the exit status is 1 if any scene
failed, 2 for a usage or set-up error.

By default a LocalCluster of --workers processes (one thread each) runs the tasks;
--scheduler tcp://HOST:8786 uses an existing cluster (`dask scheduler`, `dask worker`).
OUT must then be the same path on the client and on every worker (a shared file system).
"""
import argparse
import json
import os
import re
import socket
import sys
import time
import uuid

EXTENSIONS = (".tif", ".tiff", ".jp2", ".img", ".vrt", ".png", ".jpg")
# .<name>.nsat.<uuid>.tmp and the driver's own <target>.<pid>.partial of it.
TMP_RE = re.compile(r"^\..+\.nsat\.[0-9a-f]{32}\.tmp(\.\d+\.partial)?$")
LOCK_NAME = ".nsat_batch.lock"
# Environment that the workers get from the client, where the path exists on the worker.
FORWARDED_ENV = ("NSAT_MODELS_DIR", "NSAT_LEARNED_MODULE")
REPO_BUILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build")


# ------------------------------------------------------------------ scenes and output names


def fail(message):
    """A usage or set-up error: exit status 2."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def find_scenes(source, recursive=False):
    """(scenes, base): absolute input paths and the folder their output names are relative to."""
    if os.path.isdir(source):
        base = os.path.abspath(source)
        scenes = []
        for folder, subfolders, files in os.walk(base):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if recursive else []
            scenes += [os.path.join(folder, f) for f in sorted(files)
                       if not f.startswith(".") and os.path.splitext(f)[1].lower() in EXTENSIONS]
        return sorted(scenes), base
    if not os.path.isfile(source):
        fail(f"nsat_batch: {source}: no such folder or file")
    if os.path.splitext(source)[1].lower() in EXTENSIONS:
        path = os.path.abspath(source)
        return [path], os.path.dirname(path)
    list_folder = os.path.dirname(os.path.abspath(source))
    scenes = []
    with open(source, encoding="utf-8") as listing:
        for line in listing:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("/vsi"):
                scenes.append(line)
            else:
                scenes.append(os.path.normpath(os.path.join(list_folder, os.path.expanduser(line))))
    unique = list(dict.fromkeys(scenes))
    local = [os.path.dirname(s) for s in unique if not s.startswith("/vsi")]
    base = os.path.commonpath(local) if local else list_folder
    return unique, base


def output_names(scenes, base):
    """Relative output path per scene: sub-folders kept, <stem>.nsat; equal stems in one
    folder get the extension added (a_tif.nsat, a_jp2.nsat), then a counter if needed."""
    def relative(scene):
        if scene.startswith("/vsi"):
            return os.path.basename(scene.rstrip("/"))
        return os.path.relpath(scene, base)

    wanted = {}
    for scene in scenes:
        stem, _ = os.path.splitext(relative(scene))
        wanted.setdefault(stem.lower(), []).append(scene)
    names, taken = {}, set()
    for scene in scenes:
        rel = relative(scene)
        stem, ext = os.path.splitext(rel)
        name = stem + ".nsat"
        if len(wanted[stem.lower()]) > 1:
            name = f"{stem}_{ext.lstrip('.').lower()}.nsat"
        candidate, counter = name, 1
        while candidate.lower() in taken:
            counter += 1
            candidate = f"{name[:-5]}_{counter}.nsat"
        taken.add(candidate.lower())
        names[scene] = candidate
    return names


def stale_temporaries(out_dir):
    found = []
    for folder, _, files in os.walk(out_dir):
        found += [os.path.join(folder, f) for f in files if TMP_RE.match(f)]
    return found


def remove_files(paths):
    removed = 0
    for path in paths:
        try:
            os.remove(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


# ------------------------------------------------------------------ the task (runs on workers)


def _gdal_for_task(job):
    """Imports GDAL in the worker with the NSAT plugin and the job's thread settings."""
    plugin_dir = job.get("plugin_dir")
    if plugin_dir and os.path.isfile(os.path.join(plugin_dir, "gdal_NSAT.so")):
        os.environ["GDAL_DRIVER_PATH"] = plugin_dir
    for key, value in job.get("env", {}).items():
        if key in FORWARDED_ENV and not os.path.exists(value):
            continue  # the client's path is not on this worker: keep the worker's own
        os.environ[key] = value
    from osgeo import gdal
    gdal.UseExceptions()
    if gdal.GetDriverByName("NSAT") is None:
        if os.environ.get("GDAL_DRIVER_PATH"):
            gdal.SetConfigOption("GDAL_DRIVER_PATH", os.environ["GDAL_DRIVER_PATH"])
        gdal.AllRegister()
    if gdal.GetDriverByName("NSAT") is None:
        raise RuntimeError(
            f"the NSAT GDAL driver is not available on worker {socket.gethostname()} "
            f"(GDAL_DRIVER_PATH={os.environ.get('GDAL_DRIVER_PATH')!r}, --plugin-dir={plugin_dir!r}): "
            "install the plugin on every worker")
    return gdal


def _verify(gdal, path, expect=None):
    """Opens an NSAT file and reads every block of every band and overview (each tile's
    CRC-32 is checked by the driver). Raises on any problem; returns a description."""
    dataset = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_READONLY, allowed_drivers=["NSAT"])
    if dataset is None or dataset.GetDriver().ShortName != "NSAT":
        raise RuntimeError(f"{path}: not an NSAT file")
    structure = dataset.GetMetadata("IMAGE_STRUCTURE") or {}
    info = {"width": dataset.RasterXSize, "height": dataset.RasterYSize,
            "bands": dataset.RasterCount, "codec": structure.get("NSAT_CODEC", "")}
    if expect:
        for key, value in expect.items():
            if value is not None and info[key] != value:
                raise RuntimeError(f"{path}: {key} is {info[key]}, expected {value}")
    bands = [dataset.GetRasterBand(i + 1) for i in range(dataset.RasterCount)]
    if not bands:
        raise RuntimeError(f"{path}: no bands")
    levels = [bands] + [[band.GetOverview(k) for band in bands]
                        for k in range(bands[0].GetOverviewCount())]
    blocks = 0
    for level in levels:
        block_x, block_y = level[0].GetBlockSize()
        width, height = level[0].XSize, level[0].YSize
        for y in range(0, height, block_y):
            for x in range(0, width, block_x):
                w, h = min(block_x, width - x), min(block_y, height - y)
                for band in level:   # every band of a tile is decoded together: keep it hot
                    if band.ReadRaster(x, y, w, h) is None:
                        raise RuntimeError(f"{path}: reading block ({x}, {y}) failed")
                blocks += 1
    info["blocks"] = blocks
    info["levels"] = len(levels)
    dataset = None
    return info


def convert_scene(job):
    """One scene: skip if its output verifies, else translate, verify, rename. Never raises
    for a scene's own problems: returns {'status': 'converted'|'skipped'|'failed', ...}."""
    started = time.time()
    result = {"src": job["src"], "dst": job["dst"], "attempt": job["attempt"],
              "worker": f"{socket.gethostname()}:{os.getpid()}", "note": "", "warnings": []}
    tmp = None
    try:
        gdal = _gdal_for_task(job)
        messages = []

        def handler(error_class, _number, message):
            if error_class == gdal.CE_Warning:
                messages.append(message)
        gdal.PushErrorHandler(handler)
        try:
            source = gdal.Open(job["src"])
            files = set(source.GetFileList() or [job["src"]])
            result["in_bytes"] = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
            result["pixels"] = source.RasterXSize * source.RasterYSize
            result["bands"] = source.RasterCount
            result["raw_bytes"] = result["pixels"] * sum(
                gdal.GetDataTypeSize(source.GetRasterBand(i + 1).DataType) // 8
                for i in range(source.RasterCount))
            expect = {"width": source.RasterXSize, "height": source.RasterYSize,
                      "bands": source.RasterCount, "codec": job.get("codec")}
            dst = job["dst"]
            if os.path.exists(dst):
                try:
                    _verify(gdal, dst, expect)
                    result.update(status="skipped", out_bytes=os.path.getsize(dst),
                                  seconds=time.time() - started)
                    return result
                except Exception as error:  # noqa: BLE001 - any failure means: redo it
                    result["note"] = f"previous output redone: {error}"
            folder, name = os.path.split(dst)
            os.makedirs(folder, exist_ok=True)
            # leftovers of this scene from a killed attempt
            remove_files(os.path.join(folder, f) for f in os.listdir(folder)
                         if TMP_RE.match(f) and f.startswith(f".{name}."))
            tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
            delay = float(job.get("test_delay") or 0)
            slept = []

            def progress(fraction, _message, _data):
                if delay and fraction > 0 and not slept:  # test hook: a slow task
                    slept.append(True)
                    time.sleep(delay)
                return 1
            gdal.Translate(tmp, source, format="NSAT", creationOptions=job["options"],
                           callback=progress)
            source = None
            info = _verify(gdal, tmp, expect)
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
            os.replace(tmp, dst)
            tmp = None
            result.update(status="converted", out_bytes=os.path.getsize(dst),
                          codec=info["codec"], seconds=time.time() - started)
        finally:
            gdal.PopErrorHandler()
            result["warnings"] = list(dict.fromkeys(messages))[:5]
    except Exception as error:  # noqa: BLE001 - reported to the client, which retries
        message = f"{type(error).__name__}: {error}".strip()
        if tmp is not None:  # name the scene's output, not the attempt's temporary file
            message = message.replace(tmp, job["dst"])
        result.update(status="failed", error=message, seconds=time.time() - started)
    finally:
        if tmp is not None:
            folder = os.path.dirname(tmp)
            base = os.path.basename(tmp)
            remove_files(os.path.join(folder, f) for f in os.listdir(folder)
                         if f == base or (f.startswith(base + ".") and f.endswith(".partial")))
    return result


def probe_worker(plugin_dir):
    """Run on every worker at start: can it see the NSAT driver?"""
    try:
        gdal = _gdal_for_task({"plugin_dir": plugin_dir})
        return {"ok": True, "gdal": gdal.__version__}
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "error": str(error)}


# ------------------------------------------------------------------ client side


class Progress:
    """A text bar on stderr: a redrawn line on a terminal, a line per ~5 % otherwise."""

    def __init__(self, total, enabled=True):
        self.total, self.enabled, self.started = total, enabled, time.time()
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 20)
        self.last_printed = -1

    def update(self, counts):
        if not self.enabled:
            return
        done = sum(counts.values())
        if not self.tty and done != self.total and done - self.last_printed < self.step:
            return
        self.last_printed = done
        width = 30
        filled = int(width * done / self.total) if self.total else width
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"converted {counts['converted']} skipped {counts['skipped']} "
                f"failed {counts['failed']}  {time.time() - self.started:.1f} s")
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if done == self.total else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def summary_table(results, seconds, workers, setup_seconds=0.0):
    rows = []
    for status in ("converted", "skipped", "failed", "total"):
        chosen = [r for r in results if status == "total" or r["status"] == status]
        with_output = [r for r in chosen if r["status"] != "failed"]
        in_bytes = sum(r.get("in_bytes", 0) for r in chosen)
        out_in = sum(r.get("in_bytes", 0) for r in with_output)
        out_bytes = sum(r.get("out_bytes", 0) for r in with_output)
        raw = sum(r.get("raw_bytes", 0) for r in with_output)
        pixels = sum(r.get("pixels", 0) for r in with_output)
        ratio = f"{out_in / out_bytes:.3f}" if out_bytes else "-"
        raw_ratio = f"{raw / out_bytes:.3f}" if out_bytes else "-"
        bpp = f"{8 * out_bytes / pixels:.3f}" if pixels else "-"
        rows.append((status, str(len(chosen)), human(in_bytes),
                     human(out_bytes) if with_output else "-", ratio, raw_ratio, bpp))
    header = ("", "scenes", "input", "output", "ratio", "raw ratio", "bits/pixel")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    lines = [f"nsat_batch: {len(results)} scenes in {seconds:.1f} s on {workers} worker(s) "
             f"({seconds - setup_seconds:.1f} s converting, {setup_seconds:.1f} s starting)"]
    for row in [header] + rows:
        lines.append("  " + "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                                      for i, cell in enumerate(row)))
    lines.append("  (over the scenes with an output: ratio = input file bytes / output bytes; raw "
                 "ratio = uncompressed samples / output bytes;\n   bits/pixel = output file bits "
                 "per full-resolution pixel, all bands)")
    notes = [r for r in results if r.get("note") and r["status"] != "failed"]
    for r in notes:
        lines.append(f"  redone: {r['src']}: {r['note']}")
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        lines.append(f"failed ({len(failed)}):")
        for r in failed:
            lines.append(f"  {r['src']} ({r['attempts']} attempt(s)): {r.get('error', '?')}")
    return "\n".join(lines)


class OutputLock:
    """OUT/.nsat_batch.lock: one run per output folder (stale locks of dead local runs are taken)."""

    def __init__(self, out_dir):
        self.path = os.path.join(out_dir, LOCK_NAME)
        self.held = False

    def acquire(self):
        me = f"{socket.gethostname()} {os.getpid()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8") as lock:
                        host, pid = lock.read().split()
                    alive = True
                    if host == socket.gethostname():
                        try:
                            os.kill(int(pid), 0)
                        except ProcessLookupError:
                            alive = False
                        except PermissionError:
                            pass
                except (OSError, ValueError):
                    host, pid, alive = "?", "?", False
                if alive:
                    fail(f"nsat_batch: {self.path}: another run ({host} pid {pid}) "
                                     "uses this output folder; delete the file if it is stale")
                os.remove(self.path)
                continue
            with os.fdopen(fd, "w") as lock:
                lock.write(me)
            self.held = True
            return
        fail(f"nsat_batch: could not take {self.path}")

    def release(self):
        if self.held:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            self.held = False


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="nsat_batch.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("input", metavar="IN", help="folder, list file or raster")
    parser.add_argument("output", metavar="OUT", help="output folder")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="LocalCluster worker processes, one thread each (default: CPU count)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="use an existing Dask cluster, e.g. tcp://host:8786")
    parser.add_argument("-co", dest="creation_options", action="append", default=[],
                        metavar="KEY=VALUE", help="NSAT creation option (repeatable)")
    parser.add_argument("--retries", type=int, default=2,
                        help="extra attempts for a failed scene (default 2)")
    parser.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders of IN")
    parser.add_argument("--plugin-dir", default=os.environ.get("GDAL_DRIVER_PATH") or (
        REPO_BUILD if os.path.isfile(os.path.join(REPO_BUILD, "gdal_NSAT.so")) else None),
        help="folder with gdal_NSAT.so for the workers (default: $GDAL_DRIVER_PATH, else the "
             "repository's build/ if built, else GDAL's installed plugins)")
    parser.add_argument("--gdal-threads", default="1",
                        help="GDAL_NUM_THREADS and NSAT_TORCH_THREADS in each task (default 1: "
                             "the workers are the parallelism)")
    parser.add_argument("--wait-workers", type=float, default=60,
                        help="seconds to wait for a worker of --scheduler (default 60)")
    parser.add_argument("--summary-json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--dry-run", action="store_true", help="list scene -> output and stop")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for option in args.creation_options:
        if "=" not in option:
            parser.error(f"-co {option}: expected KEY=VALUE")
    if args.workers < 1 or args.retries < 0:
        parser.error("--workers must be >= 1 and --retries >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    scenes, base = find_scenes(args.input, args.recursive)
    if not scenes:
        print(f"nsat_batch: no rasters ({' '.join(EXTENSIONS)}) in {args.input}"
              + ("" if args.recursive else " (sub-folders need --recursive)"), file=sys.stderr)
        return 2
    out_dir = os.path.abspath(args.output)
    names = output_names(scenes, base)
    if args.dry_run:
        for scene in scenes:
            print(f"{scene} -> {os.path.join(out_dir, names[scene])}")
        return 0

    codec = "LOSSLESS"
    for option in args.creation_options:
        key, value = option.split("=", 1)
        if key.strip().upper() == "CODEC":
            codec = value.strip().upper()
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    if not any(o.split("=", 1)[0].strip().upper() == "NUM_THREADS" for o in args.creation_options):
        env["GDAL_NUM_THREADS"] = str(args.gdal_threads)
        env.setdefault("NSAT_TORCH_THREADS", str(args.gdal_threads))
    plugin_dir = os.path.abspath(args.plugin_dir) if args.plugin_dir else None
    if plugin_dir:  # LocalCluster workers inherit it; remote ones get it per task
        os.environ["GDAL_DRIVER_PATH"] = plugin_dir
    test_delay = os.environ.get("NSAT_BATCH_TEST_DELAY", "")

    os.makedirs(out_dir, exist_ok=True)
    lock = OutputLock(out_dir)
    lock.acquire()
    cluster = client = None
    started = time.time()
    try:
        removed = remove_files(stale_temporaries(out_dir))
        if removed:
            print(f"nsat_batch: removed {removed} stale temporary file(s) in {out_dir}", file=sys.stderr)

        import logging
        from distributed import Client, LocalCluster, as_completed
        if args.scheduler:
            client = Client(args.scheduler, timeout=30)
            try:
                client.wait_for_workers(1, timeout=args.wait_workers)
            except Exception:  # noqa: BLE001 - distributed raises TimeoutError variants
                print(f"nsat_batch: no worker joined {args.scheduler} within {args.wait_workers:g} s",
                      file=sys.stderr)
                return 2
        else:
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
        probes = client.run(probe_worker, plugin_dir)
        broken = {w: p["error"] for w, p in probes.items() if not p["ok"]}
        if broken:
            for worker, error in broken.items():
                print(f"nsat_batch: worker {worker}: {error}", file=sys.stderr)
            return 2
        workers = len(probes)
        setup_seconds = time.time() - started

        def job(scene, attempt):
            return {"src": scene, "dst": os.path.join(out_dir, names[scene]), "attempt": attempt,
                    "options": list(args.creation_options), "codec": codec,
                    "plugin_dir": plugin_dir, "env": env, "test_delay": test_delay}

        futures = {}
        for scene in scenes:
            futures[client.submit(convert_scene, job(scene, 1), pure=False)] = (scene, 1)
        counts = {"converted": 0, "skipped": 0, "failed": 0}
        progress = Progress(len(scenes), enabled=not args.quiet)
        progress.update(counts)
        results, errors = {}, {}
        pending = as_completed(list(futures))
        for future in pending:
            scene, attempt = futures.pop(future)
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - e.g. KilledWorker: the task killed workers
                result = {"src": scene, "dst": os.path.join(out_dir, names[scene]),
                          "status": "failed", "error": f"{type(error).__name__}: {error}"}
            future.release()
            if result["status"] == "failed":
                errors.setdefault(scene, []).append(result.get("error", "?"))
                if attempt <= args.retries:
                    retry = client.submit(convert_scene, job(scene, attempt + 1), pure=False)
                    futures[retry] = (scene, attempt + 1)
                    pending.add(retry)
                    continue
            result["attempts"] = attempt
            result["errors"] = errors.get(scene, [])
            results[scene] = result
            counts[result["status"]] += 1
            progress.update(counts)
        seconds = time.time() - started
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        remove_files(stale_temporaries(out_dir))  # from attempts on workers that died
        lock.release()

    ordered = [results[s] for s in scenes]
    print(summary_table(ordered, seconds, workers, setup_seconds))
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as out:
            json.dump({"seconds": seconds, "setup_seconds": setup_seconds, "workers": workers,
                       "counts": counts,
                       "scenes": ordered}, out, indent=1)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
