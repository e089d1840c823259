"""Benchmark: the Ray engine against the local engine on the same photos (issue 27).

Generates ``--photos`` (default 160; 8 with ``--quick``) camera-sized synthetic JPEGs, starts one
local Ray (this machine's usable cores, no dashboard), then scores the folder through the culling
API, each run on a cold cache of its own, ``--rounds`` times in alternation:

1. ``local``: the local engine (decode workers by default: one per core);
2. ``ray-1``: the Ray engine with 1 worker (1 CPU);
3. ``ray-2``: the Ray engine with 2 workers (1 CPU each).

For each run: the wall time, the time to the first result (Ray: the actors start and load the
model first), photos per second over the whole run and after the first result (steady state),
and the CPU seconds used per photo by this process (the driver: listing, the dataset, unpickling
results, cache writes, Ray Data's executor threads) and by Ray's own processes on this machine
(raylet, GCS, agents, Ray Data's small actors; not the scoring actors): the driver's overhead.
For the local engine the driver's CPU includes the network's forward passes (its decode workers
are other processes, not counted). It also checks that every run gave the same scores (within
1e-5) as the local engine's first run.

Usage: python benchmarks/bench_ray.py [--photos 160] [--rounds 2] [--runtime torch] [--quick] [--workdir DIR]
Prints one JSON object (``{"skipped": ...}`` where Ray is not installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import default_workdir, emit, log, machine_info, synthetic_photo, usable_cores, write_jpeg  # noqa: E402


def make_photos(folder: Path, n: int) -> list[Path]:
    """``n`` 1600x1067 synthetic JPEGs in ``folder`` (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"IMG_{i:04d}.jpg" for i in range(n)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        log(f"generating {len(missing)} photos in {folder}")
    for i, p in enumerate(paths):
        if not p.is_file():
            write_jpeg(synthetic_photo(1600, 1067, seed=i), p)
    return paths


def driver_cpu() -> float:
    """CPU seconds of this process so far (all its threads)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def ray_processes() -> dict[int, float]:
    """CPU seconds so far of each of Ray's processes under this one that is not a worker (raylet,
    GCS, agents, Ray Data's own small actors): pid -> seconds (Linux /proc; empty elsewhere)."""
    if not os.path.isdir("/proc"):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    names: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                names[int(entry)] = fh.read()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    found: dict[int, float] = {}
    todo = [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if not names.get(child, b"").startswith((b"ray::MapWorker", b"ray::IDLE")):
                found[child] = cpu.get(child, 0.0)
    return found


def ray_system_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds Ray's non-worker processes used between two :func:`ray_processes` snapshots."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def one_run(name: str, photos: list[Path], settings: Any) -> dict[str, Any]:
    """Score ``photos`` once with ``settings`` (a cold cache); timings and the scores."""
    from aescore import cull

    first: list[float] = []

    def progress(total: int, done: int) -> Any:
        def advance(n: int) -> None:
            if not first:
                first.append(time.perf_counter())

        return advance

    cpu0, sys0 = driver_cpu(), ray_processes()
    t0 = time.perf_counter()
    run = cull.score_photos(photos, settings, progress=progress)
    wall = time.perf_counter() - t0
    cpu, system = driver_cpu() - cpu0, ray_system_cpu(sys0, ray_processes())
    n = len(run.photos)
    to_first = (first[0] - t0) if first else None
    steady = (n / (wall - to_first)) if to_first is not None and wall > to_first else None
    row = {
        "engine": name, "photos": n, "computed": run.computed, "wall_s": round(wall, 3),
        "first_result_s": round(to_first, 3) if to_first is not None else None,
        "photos_per_s": round(n / wall, 3), "steady_photos_per_s": round(steady, 3) if steady else None,
        "driver_cpu_s": round(cpu, 3), "driver_cpu_ms_per_photo": round(1000 * cpu / n, 2),
        "ray_system_cpu_ms_per_photo": round(1000 * system / n, 2),
    }
    log(f"{name}: {row}")
    row["_scores"] = [p.score for p in run.photos]
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and prints) the result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of the three runs")
    ap.add_argument("--runtime", default="torch", choices=["torch", "onnx", "auto"])
    ap.add_argument("--quick", action="store_true", help="8 photos, one round (a smoke run)")
    ap.add_argument("--model", default=None, help="model name or weights file (default: the default model)")
    ap.add_argument("--workdir", type=Path, default=default_workdir("ray"))
    args = ap.parse_args(argv)
    n, rounds = (8, 1) if args.quick else (args.photos, args.rounds)
    if importlib.util.find_spec("ray") is None:
        return emit({"benchmark": "ray", "quick": args.quick, "skipped": "Ray is not installed: pip install 'aescore[ray]'"})

    import logging

    import ray

    from aescore import cull
    from aescore.sysinfo import prefer_passive_openmp

    prefer_passive_openmp()  # as the CLI does, before torch loads (here and, inherited, in the actors)
    photos = make_photos(args.workdir / f"photos{n}", n)
    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, logging_level=logging.WARNING)
    ray_start = time.perf_counter() - t0
    caches = args.workdir / "caches"
    configs = [("local", cull.Engine.local, None), ("ray-1", cull.Engine.ray, 1), ("ray-2", cull.Engine.ray, 2)]
    rows: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            for name, engine, workers in configs:
                shutil.rmtree(caches, ignore_errors=True)
                caches.mkdir(parents=True)
                settings = cull.Settings(model=args.model, cache_path=str(caches / "scores.sqlite"), runtime=args.runtime,
                                         engine=engine, workers=workers)
                rows.append({"round": r + 1, **one_run(name, photos, settings)})
    finally:
        shutil.rmtree(caches, ignore_errors=True)
        if started:
            ray.shutdown()
    reference = rows[0]["_scores"]
    worst = max(max(abs(a - b) for a, b in zip(row["_scores"], reference)) for row in rows)
    for row in rows:
        del row["_scores"]

    def median(name: str, key: str) -> float | None:
        values = [row[key] for row in rows if row["engine"] == name and row[key] is not None]
        return round(statistics.median(values), 3) if values else None

    summary = {name: {key: median(name, key) for key in ("wall_s", "first_result_s", "photos_per_s", "steady_photos_per_s",
                                                         "driver_cpu_ms_per_photo", "ray_system_cpu_ms_per_photo")}
               for name, _, _ in configs}
    return emit({
        "benchmark": "ray", "quick": args.quick, "photos": n, "rounds": rounds, "runtime": args.runtime,
        "model": args.model or "default", "ray_version": ray.__version__, "ray_start_s": round(ray_start, 3),
        "runs": rows, "median": summary, "max_abs_score_difference_vs_local": worst,
        "same_scores_within_1e-5": worst <= 1e-5, "machine": machine_info(),
    })


if __name__ == "__main__":
    main()
