"""The Ray engine (issue 27): the same rows as the local engine, decode failures as skipped rows,
a killed worker loses and doubles nothing, Ctrl-C keeps what was cached, one line without Ray.

One local Ray (2 CPUs, no dashboard, a small object store) serves the whole module; its workers
get this module's own XDG folders, so no actor touches the user's caches. The tests that need
Ray are skipped where it is not installed (``pip install 'aescore[ray]'``; ``make test`` installs
it); the refusals run everywhere. Under pytest-xdist the Ray tests share one worker
(``xdist_group``, with ``--dist loadgroup``) so that only one Ray starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from aescore import cull
from aescore.checks.base import Check, Field, FieldKind, Needs, PhotoData
from aescore.cull import Engine, RayOptions
from aescore.errors import ConfigError, WeightsError

import helpers
from helpers import BAD, GOOD
from test_score_cli import cli

REPO = Path(__file__).resolve().parent.parent
ray_group = pytest.mark.xdist_group("ray")
finds_workers = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds Ray's workers in /proc (Linux)")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Ray for the module: 2 CPUs, no dashboard, an 80 MB object store."""
    ray = pytest.importorskip("ray")
    home = tmp_path_factory.mktemp("ray-home")
    env = {var: str(home / sub) for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"))}
    # address="local": a Ray of its own, whatever RAY_ADDRESS or a `ray start` cluster of the machine says.
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 << 20,
             logging_level=logging.ERROR, runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """40 small JPEGs: enough one-photo batches for a job that is still running after its first."""
    folder = tmp_path_factory.mktemp("many")
    paths = []
    for i in range(40):
        path = folder / f"p{i:02d}.jpg"
        Image.fromarray(helpers.pattern(96, 72, 100 + i)).save(path, quality=90)
        paths.append(path)
    return paths


def settings(weights: Path | None, cache: Path, engine: Engine, **kw: Any) -> cull.Settings:
    return cull.Settings(model=str(weights) if weights else None, device="cpu", cache_path=str(cache), engine=engine, **kw)


def assert_close(a: Any, b: Any, where: str) -> None:
    """``a`` and ``b`` equal, numbers within 1e-5 (also inside dicts, lists and arrays)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=where)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    else:
        assert a == b, where


def assert_same_photos(a: list[cull.Photo], b: list[cull.Photo]) -> None:
    """The same rows: paths in the same order; scores, fields and embeddings within 1e-5."""
    assert [p.path for p in a] == [p.path for p in b]
    for pa, pb in zip(a, b):
        assert pa.score == pytest.approx(pb.score, abs=1e-5), pa.path
        assert_close(pa.fields, pb.fields, pa.path)
        assert_close(pa.embedding, pb.embedding, f"{pa.path} embedding")


def map_workers() -> list[int]:
    """The Ray Data actors of this process's Ray (descendants of this process named ray::MapWorker)."""
    children: dict[int, list[int]] = {}
    titles: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                titles[int(entry)] = fh.read()
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if titles.get(child, b"").startswith(b"ray::MapWorker"):
                found.append(child)
    return found


def cached_scores(cache: Path, paths: list[Path]) -> int:
    """How many of ``paths`` have a score row in ``cache`` (any model)."""
    keys = {(os.path.realpath(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths}
    with contextlib.closing(sqlite3.connect(cache)) as db:
        rows = db.execute("SELECT path, size, mtime_ns FROM scores").fetchall()
    return len(keys & {tuple(r) for r in rows})


# --------------------------------------------------------------------------- same rows as locally


@ray_group
def test_ray_gives_the_local_engines_rows_and_skips(local_ray: Any, tiny_faultnet: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    photos = helpers.make_photo_folder(tmp_path / "lib")
    checks = ["reasons", "thumbnail"]  # network outputs, and pixels sent back from the actors
    local = cull.score_photos([tmp_path / "lib"], settings(tiny_faultnet, tmp_path / "a.sqlite", Engine.local, workers=0),
                              checks, with_embeddings=True)
    on_ray = cull.score_photos([tmp_path / "lib"], settings(tiny_faultnet, tmp_path / "b.sqlite", Engine.ray, workers=2),
                               checks, with_embeddings=True)
    assert len(local.photos) == len(GOOD) and local.computed == len(GOOD)
    assert_same_photos(on_ray.photos, local.photos)
    assert on_ray.computed == local.computed
    # A photo that fails to decode is a skipped row with its reason, as locally.
    assert sorted(on_ray.skipped) == sorted(local.skipped)
    assert sorted(s.path for s in on_ray.skipped) == sorted(str(photos[n]) for n in BAD)

    # The driver wrote the cache: a re-run sends nothing to Ray (cached photos and recorded failures).
    def no_ray(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cached photo went to Ray")

    monkeypatch.setattr("aescore.cull.ray_engine.ray_infer", no_ray)
    again = cull.score_photos([tmp_path / "lib"], settings(tiny_faultnet, tmp_path / "b.sqlite", Engine.ray), checks,
                              with_embeddings=True)
    assert (again.computed, again.from_cache, len(again.skipped)) == (0, len(GOOD), len(BAD))
    assert_same_photos(again.photos, local.photos)


@ray_group
@finds_workers
def test_rank_with_the_ray_engine_ranks_as_the_local_engine(local_ray: Any, shipped_models_only: None) -> None:
    samples = REPO / "samples"
    local = cli(["rank", samples, "--jsonl", "--no-cache"])
    # A worker killed as soon as it appears: Ray restarts it and prints a note of its own, which
    # must not reach stdout (the results only).
    stop, killed = threading.Event(), []

    def kill_first_worker() -> None:
        while not stop.is_set() and not killed:
            for pid in map_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    try:
        on_ray = cli(["rank", samples, "--jsonl", "--no-cache", "--engine", "ray", "--workers", "2", "--batch-size", "1"])
    finally:
        stop.set()
        killer.join()
    assert killed
    assert local.code == on_ray.code == 0, on_ray.err
    rows, expected = on_ray.rows(), local.rows()
    assert len(rows) == len(list(samples.glob("*.jpg"))) > 0
    assert [r["path"] for r in rows] == [r["path"] for r in expected]
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert on_ray.summary() == local.summary()


def _head_over_the_default(folder: Path) -> Path:
    """A head-only personal model (random head, faults read) over the bundled default model."""
    from aescore.models.personal_head import PersonalHead
    from aescore.weights import default_weights_path, read_card, save_head

    base = default_weights_path()
    base_card = read_card(base)
    rng = np.random.default_rng(5)
    d, f = 1280, 10  # EfficientNet-Lite0's pooled features; the ten fault kinds
    head = PersonalHead(rng.normal(size=d) * 0.1, rng.random(d) + 0.5, rng.normal(size=d) * 0.05, 0.7, -0.3, 1.3,
                        rng.normal(size=f), rng.normal(size=f) * 3, rng.random(f) + 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    save_head(head, folder / "mine.safetensors", {"name": "mine", "training": {"dataset": "none"}}, base_card=base_card,
              base_name=str(base_card["name"]), base_path=base)
    return folder / "mine.safetensors"


@ray_group
def test_a_head_only_personal_model_runs_on_ray_as_locally(local_ray: Any, tmp_path: Path, shipped_models_only: None) -> None:
    """The runtime is judged on the network that runs (the head's base, which has an ONNX
    program), on the driver as in the local engine: the same runtime, the same scores."""
    from aescore.inference.loading import find_model, model_runtime
    from aescore.inference.onnx_runtime import Runtime

    mine = _head_over_the_default(tmp_path / "models")
    assert model_runtime(find_model(mine), Runtime.auto, "cpu", frozenset({"p_high"}), None) is Runtime.onnx
    samples = REPO / "samples"
    local = cli(["rank", samples, "--jsonl", "--no-cache", "--model", mine])
    on_ray = cli(["rank", samples, "--jsonl", "--no-cache", "--model", mine, "--engine", "ray", "--workers", "2"])
    assert local.code == on_ray.code == 0, on_ray.err
    rows, expected = on_ray.rows(), local.rows()
    assert [r["path"] for r in rows] == [r["path"] for r in expected] and rows
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in expected], abs=1e-5)


# --------------------------------------------------------------------------- faults


@ray_group
@finds_workers
def test_a_killed_worker_loses_and_doubles_no_photo(local_ray: Any, tiny_weights: Path, many_photos: list[Path],
                                                     tmp_path: Path) -> None:
    killed: list[int] = []

    def progress(total: int, done: int) -> Callable[[int], None]:
        def advance(n: int) -> None:
            if not killed:  # after the first batch came back: the job is running
                workers = map_workers()
                assert workers, "no Ray Data actor found"
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])

        return advance

    cache = tmp_path / "ray.sqlite"
    run = cull.score_photos(many_photos, settings(tiny_weights, cache, Engine.ray, workers=2, batch_size=1), progress=progress)
    assert killed
    assert [p.path for p in run.photos] == [str(p) for p in many_photos]  # each once, in input order
    assert (run.computed, run.skipped) == (len(many_photos), [])
    assert cached_scores(cache, many_photos) == len(many_photos)
    local = cull.score_photos(many_photos, settings(tiny_weights, tmp_path / "local.sqlite", Engine.local, workers=0))
    assert_same_photos(run.photos, local.photos)


class _Interrupting(Check):
    """A check that raises KeyboardInterrupt on its third photo: Ctrl-C while the driver writes rows."""

    name = "interrupt_test"
    needs = Needs(outputs=frozenset({"p_high"}))
    fields = (Field("seen", FieldKind.HIDDEN, "test only"),)
    cached = False

    def __init__(self) -> None:
        self.calls = 0

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return {"seen": True}


@ray_group
@finds_workers
@pytest.mark.parametrize("where", ["waiting for results", "writing rows"])
def test_ctrl_c_stops_the_job_and_keeps_the_cached_rows(local_ray: Any, tiny_weights: Path, many_photos: list[Path],
                                                        tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def progress(total: int, done: int) -> Callable[[int], None]:
        def advance(n: int) -> None:  # called by the engine while the job runs
            seen.append(n)
            if where == "waiting for results" and sum(seen) >= 3:
                raise KeyboardInterrupt

        return advance

    import aescore.cull.ray_engine as ray_engine

    stopped: list[bool] = []
    real = ray_engine.ray_infer

    def tracking(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from real(*args, **kwargs)
        finally:
            stopped.append(True)

    monkeypatch.setattr(ray_engine, "ray_infer", tracking)
    cache = tmp_path / "ray.sqlite"
    checks = [_Interrupting()] if where == "writing rows" else []
    with pytest.raises(KeyboardInterrupt) as interrupted:
        cull.score_photos(many_photos, settings(tiny_weights, cache, Engine.ray, workers=1, batch_size=1), checks,
                          progress=progress)
    # Stopped before the interrupt reached the caller, not when its traceback (still held here) goes.
    assert stopped == [True] and interrupted.traceback
    kept = cached_scores(cache, many_photos)
    assert kept == (3 if where == "writing rows" else sum(seen)) and 3 <= kept < len(many_photos)
    # The job stopped at once: its actor goes (Ray Data ends the pool when its executor shuts down).
    start = time.monotonic()
    while map_workers() and time.monotonic() < start + 5:
        time.sleep(0.1)
    assert map_workers() == []
    # The rows written stay: a re-run computes only the rest.
    rest = cull.score_photos(many_photos, settings(tiny_weights, cache, Engine.local, workers=0))
    assert (rest.from_cache, rest.computed) == (kept, len(many_photos) - kept)


def test_an_actor_refuses_weights_other_than_the_drivers(tiny_weights: Path) -> None:
    from aescore.cull.ray_engine import ActorSpec, ScoringActor
    from aescore.inference.onnx_runtime import Runtime

    spec = ActorSpec(str(tiny_weights), None, "0" * 64, "full", "cpu", Runtime.torch, frozenset({"p_high"}), None, 4, True, True)
    with pytest.raises(WeightsError, match="other weights"):
        ScoringActor(spec)


# --------------------------------------------------------------------------- refusals (no Ray needed)


def main_line(args: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``aescore ARGS`` in-process through ``main()`` (which prints the one error line): exit status, stderr."""
    from aescore.cli.main import main

    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return int(done.value.code or 0), capsys.readouterr().err


def test_without_ray_the_engine_is_one_line_exit_2(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    photo = tmp_path / "a.jpg"
    Image.fromarray(helpers.pattern(64, 48, 1)).save(photo)
    code, err = main_line(["rank", photo, "--model", tiny_weights, "--engine", "ray"], capsys)
    assert (code, err) == (2, "aescore: error: --engine ray needs Ray: pip install 'aescore[ray]'\n")
    with pytest.raises(ConfigError, match="needs Ray"):
        cull.Settings(engine=Engine.ray)


def test_ray_options_need_the_ray_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main_line(["score", tmp_path, "--ray-address", "10.0.0.1:6379", "--gpus-per-worker", "1"], capsys)
    assert (code, err) == (2, "aescore: error: --ray-address and --gpus-per-worker need --engine ray\n")


def test_an_unreachable_cluster_is_one_line_at_once() -> None:
    pytest.importorskip("ray")
    from aescore.cull.ray_engine import RayJobError, _check_reachable

    with pytest.raises(RayJobError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1: "):
        _check_reachable("127.0.0.1:1")  # Ray itself would retry for minutes


def test_a_cuda_device_on_ray_needs_gpus_per_worker(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "ray" else real(name, *a))
    code, err = main_line(["score", ".", "--engine", "ray", "--device", "cuda"], capsys)
    assert (code, err) == (2, "aescore: error: --gpus-per-worker must be > 0 for device cuda under the ray engine\n")
    with pytest.raises(ConfigError, match="runtime onnx: runs on the CPU only"):
        cull.Settings(runtime="onnx", engine=Engine.ray, ray=RayOptions(gpus_per_worker=1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="workers must be >= 1 under the ray engine"):
        cull.Settings(engine=Engine.ray, workers=0)
