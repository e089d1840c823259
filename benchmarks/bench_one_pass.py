"""Benchmark: one pass computes everything (issue 25).

Generates ``--photos`` (default 200; 16 with ``--quick``) camera-sized synthetic JPEGs, then,
through the culling API with one isolated score cache, times in order:

1. ``rank``: a plain ranking (the first pass: score, embedding, fault probabilities, and the
   checks computed from them are cached);
2. ``rank --reasons``;
3. ``report``'s scoring step (the contact sheet's checks: exif, thumbnail, regions, reasons);
4. ``learn``'s embedding step (``score_photos(..., with_embeddings=True)``, as aescore.learn does).

For each step it reports the seconds, the photos decoded (jobs handed to the decoder, counted by
wrapping :func:`aescore.inference.core.infer`) and the photos that went through the network. It also
times a plain ``rank`` and a ``rank`` that makes thumbnails too, each on a cold cache, to show what
making the report's thumbnails in the first pass would cost.

Usage: python benchmarks/bench_one_pass.py [--photos 200] [--quick] [--model NAME] [--workdir DIR]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import default_workdir, emit, log, machine_info, synthetic_photo, write_jpeg  # noqa: E402


def make_photos(folder: Path, n: int) -> None:
    """``n`` 1600x1067 synthetic JPEGs in ``folder`` (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(folder.glob("*.jpg"))
    if len(have) == n:
        return
    for p in have:
        p.unlink()
    log(f"generating {n} photos in {folder}")
    for i in range(n):
        write_jpeg(synthetic_photo(1600, 1067, seed=i), folder / f"IMG_{i:04d}.jpg")


class DecodeCounter:
    """Counts the photos handed to the decoder (each job of :func:`aescore.inference.core.infer` is
    decoded exactly once), in this process, whatever the runtime or the number of workers."""

    def __init__(self) -> None:
        import aescore.inference.core as core

        self.n = 0
        self._core = core
        self._real: Callable[..., Any] = core.infer

        def counting(model: Any, jobs: Any, *args: Any, **kwargs: Any) -> Any:
            jobs = list(jobs)
            self.n += len(jobs)
            return self._real(model, jobs, *args, **kwargs)

        core.infer = counting  # type: ignore[assignment]

    def take(self) -> int:
        """The photos decoded since the last call."""
        n, self.n = self.n, 0
        return n


def step(name: str, counter: DecodeCounter, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` (a scoring call returning a ScoreRun); its time, decodes and network passes."""
    counter.take()
    t0 = time.perf_counter()
    run = fn()
    seconds = time.perf_counter() - t0
    row = {"step": name, "seconds": round(seconds, 3), "decoded": counter.take(),
           "computed": run.computed, "cached": run.from_cache, "photos": len(run.photos)}
    log(f"{name}: {row}")
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and prints) the result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="16 photos (a smoke run)")
    ap.add_argument("--model", default=None, help="model name or weights file (default: the default model)")
    ap.add_argument("--workdir", type=Path, default=default_workdir("one_pass"))
    args = ap.parse_args(argv)
    n = 16 if args.quick else args.photos

    from aescore import cull
    from aescore.checks import available_checks

    folder = args.workdir / f"photos{n}"
    make_photos(folder, n)
    counter = DecodeCounter()

    def settings(cache: Path) -> cull.Settings:
        return cull.Settings(model=args.model, cache_path=str(cache))

    cache = args.workdir / "cache.sqlite"
    for side in (cache, Path(f"{cache}-wal"), Path(f"{cache}-shm")):
        side.unlink(missing_ok=True)
    page_checks = [c for c in available_checks() if c.report]
    steps = [
        step("rank", counter, lambda: cull.score_photos([folder], settings(cache))),
        step("rank --reasons", counter, lambda: cull.score_photos([folder], settings(cache), ["reasons"])),
        step("report (scoring step)", counter,
             lambda: cull.score_photos([folder], settings(cache), optional_checks=page_checks)),
        step("learn (embedding step)", counter,
             lambda: cull.score_photos([folder], settings(cache), with_embeddings=True)),
    ]
    # What making the thumbnails in the first pass would cost: plain rank vs rank + thumbnails, cold caches.
    cold = args.workdir / "cold"
    shutil.rmtree(cold, ignore_errors=True)
    cold.mkdir(parents=True)
    plain = step("cold rank", counter, lambda: cull.score_photos([folder], settings(cold / "a.sqlite")))
    thumbs = step("cold rank + thumbnails", counter,
                  lambda: cull.score_photos([folder], settings(cold / "b.sqlite"), ["thumbnail"]))
    shutil.rmtree(cold, ignore_errors=True)
    extra = (thumbs["seconds"] - plain["seconds"]) / plain["seconds"] if plain["seconds"] else None
    return emit({
        "benchmark": "one_pass", "photos": n, "model": args.model or "default", "steps": steps,
        "thumbnails_in_first_pass": {"rank_s": plain["seconds"], "rank_with_thumbnails_s": thumbs["seconds"],
                                     "extra_fraction": round(extra, 3) if extra is not None else None},
        "machine": machine_info(),
    })


if __name__ == "__main__":
    main()
