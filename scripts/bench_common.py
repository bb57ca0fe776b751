"""What the benchmarks share: the machine they ran on, timing of commands in fresh
processes, pausing a background job (a training run) while they measure, file hashes, the
paired test of two classifiers, progress and failure logging and the writing of results."""
import json
import contextlib
import hashlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_multirate_module(threads):
    """bench_multirate, for its helpers (psnr, bd_rate, fmt, jsonable, ...): it parses its
    command line at import, so it is given one naming only the thread count."""
    saved = sys.argv
    sys.argv = [saved[0], "--threads", str(threads)]
    try:
        import bench_multirate
    finally:
        sys.argv = saved
    return bench_multirate


def run_metadata():
    """What a benchmark's results record about its run: date, machine, load, GDAL, numpy,
    Python, the plugin and models it used, and its command line."""
    import datetime
    import shlex

    import numpy as np
    from osgeo import gdal

    return dict(
        date=f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}",
        machine=machine(), load_at_start="/".join(f"{x:.2f}" for x in os.getloadavg()),
        gdal=gdal.VersionInfo("RELEASE_NAME"), numpy=np.__version__, python=platform.python_version(),
        plugin=os.path.join(os.environ["GDAL_DRIVER_PATH"], "gdal_NSAT.so"),
        models_dir=os.environ.get("NSAT_MODELS_DIR", "(unset: the repository's models/)"),
        command=" ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def file_sha256(path):
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def log(message):
    """Progress on stderr (stdout stays free for what a benchmark prints on purpose)."""
    print(message, file=sys.stderr, flush=True)


def record_failure(failures, dataset, codec, setting, message):
    """Counts a failed measurement in `failures` ((dataset, codec, setting) -> count and the
    first message) and logs the first of each kind."""
    key = (dataset, codec, str(setting))
    if key in failures:
        failures[key]["count"] += 1
        return
    failures[key] = {"count": 1, "message": message}
    log(f"  FAILED {dataset} {codec} {setting}: {message}")


def save_results(results, out, plot, write_report, jsonable, extra_files=()):
    """Plots (a failing plot is logged, the rest is still written), results.json and the
    report, in that order; `extra_files` (e.g. rendered crops) are listed with the plots."""
    try:
        plots = plot(results, out)
    except Exception as error:  # noqa: BLE001
        plots = []
        log(f"plotting failed: {type(error).__name__}: {error}")
    results["meta"]["plots"] = [os.path.basename(p) for p in plots] + list(extra_files)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(jsonable(results), f, indent=1)
    write_report(results, out)
    log(f"wrote {out}/report.md, results.json, {len(plots)} plot(s) ({results['meta']['elapsed_s']:.0f} s)")


def mcnemar_p(b, c):
    """Two-sided exact McNemar (binomial) p-value for the discordant counts b, c."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # Integers throughout: 2.0 ** n overflows a float beyond n = 1023 discordant images.
    tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)
    return min(1.0, 2.0 * tail)


def machine():
    flags = cpu_flags()
    return {"cpu": cpu_model(), "cores": os.cpu_count(),
            "simd": [name for name in ("avx2", "fma", "avx512f") if name in flags],
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def run_timed(command, env=None, repeats=3):
    """Median wall time (s) of `command`, each run in a fresh process, and the largest
    peak RSS (MiB) of those runs, from GNU time. Raises if a run fails."""
    times, peak = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, command)], env=env,
                                capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, command))} failed: {result.stderr[-2000:]}")
        peak = max(peak, int(result.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), peak


@contextlib.contextmanager
def paused(pids):
    """SIGSTOPs the given processes (e.g. a background training run) while measuring."""
    stopped = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        time.sleep(0.5)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
