"""Benchmark 7: what the ``faces`` check costs a ``rank`` run, side by side in one run (issue 24).

Times ``aescore rank DIR`` without the faces check and with it (``--check faces``), as whole
processes in alternating rounds (the order flips every round), each from scratch (``--no-cache``),
on one folder of camera-size JPEGs — wall time, and the CPU time the process used (user + system,
from ``getrusage``: on a shared machine it moves less with the neighbours' load than wall time does):

* the synthetic camera photos of ``bench_rank.py`` (8-24 MP, no faces: detection only), and
* as many *people* photos: synthetic scenes with the public-domain portrait of
  ``tests/data/astronaut.jpg`` enlarged into them, one to four people per frame, the faces 4-30 %
  of the frame's height (detection, then landmarks, eyes and focus on every face big enough);
* optionally (``--real DIR``) photos of people from a folder of real photographs (those that
  ``scripts/validate_faces_labels.json`` lists with a face, e.g. ``/work/shared/photos``), enlarged
  to camera size. They are written under ``--workdir`` only, never into the repository.

The decision rule of issue 24: when the faces check costs at most 20 % of a rank run
(``overhead = with / without - 1``, on the median wall time), it is part of ``rank`` and ``report``
by default. ``decision`` in the JSON says which way the measured median ratio points.

Usage: python benchmarks/bench_faces.py [--photos 24] [--rounds 3] [--real DIR [--real-count 12]] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_rank import CAMERA_SIZES, QUICK_SIZES, make_folder  # noqa: E402
from common import (  # noqa: E402
    REPO, emit, log, machine_info, rank_once, rank_round_options, rank_round_sizes, rank_setup, ratio, synthetic_photo, write_jpeg,
)

PORTRAIT = REPO / "tests" / "data" / "astronaut.jpg"
LABELS = REPO / "scripts" / "validate_faces_labels.json"
#: The largest overhead (with / without - 1) at which faces run by default (issue 24).
DEFAULT_IF_AT_MOST = 0.20


def people_photo(width: int, height: int, seed: int) -> Any:
    """A synthetic scene with one to four copies of the portrait in it (faces 4-30 % of the height)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1000 + seed)
    scene = synthetic_photo(width, height, seed=1000 + seed)
    people = 1 + seed % 4
    with Image.open(PORTRAIT) as src:
        portrait = src.convert("RGB")
    # The portrait's face is about a third of its height: a face of share s needs a copy of 3 s.
    share = float(rng.uniform(0.08, 0.30)) / max(1.0, people / 2)
    side = max(64, round(3 * share * height))
    copy = portrait.resize((side, side), Image.BICUBIC)
    step = width // (people + 1)
    for k in range(people):
        left = max(0, min(width - side, (k + 1) * step - side // 2))
        top = max(0, min(height - side, height // 2 - side // 2 + int(rng.integers(-height // 10, height // 10 + 1))))
        scene.paste(copy, (left, top))
    arr = np.asarray(scene).astype(np.float32)
    arr += rng.normal(0.0, 4.0, size=arr.shape[:2] + (1,)).astype(np.float32)  # grain over the pasted people too
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_people(folder: Path, n: int, quick: bool) -> list[Path]:
    """``n`` people photos (reused when present; file ``i`` depends only on ``i``)."""
    sizes = QUICK_SIZES if quick else CAMERA_SIZES
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        path = folder / f"PEOPLE_{i:04d}_{w}x{h}.jpg"
        if not path.is_file():
            log(f"generating {path.name}")
            write_jpeg(people_photo(w, h, i), path, when=f"2024:06:01 13:{i // 60 % 60:02d}:{i % 60:02d}")
        paths.append(path)
    return paths


def make_real(source: Path, folder: Path, n: int, quick: bool) -> list[Path]:
    """Up to ``n`` photos of ``source`` that the faces labels list with a face, enlarged to camera size."""
    from PIL import Image, ImageOps

    names = sorted({f["file"] for f in json.loads(LABELS.read_text())["faces"]})
    sizes = QUICK_SIZES if quick else CAMERA_SIZES
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(n for n in names if (source / n).is_file()):
        if len(paths) >= n:
            break
        path = folder / f"REAL_{Path(name).stem}.jpg"
        if not path.is_file():
            w, h = sizes[i % len(sizes)]
            with Image.open(source / name) as src:
                img = ImageOps.exif_transpose(src).convert("RGB")
            scale = max(w, h) / max(img.size)
            write_jpeg(img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC), path)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rank_round_options(ap, "synthetic photos without faces, and as many with (default 24 each; 2 with --quick)")
    ap.add_argument("--real", type=Path, default=None, help="also photos of people from this folder, enlarged to camera size")
    ap.add_argument("--real-count", type=int, default=12, help="how many of --real's photos (default 12)")
    args = ap.parse_args(argv)
    machine = machine_info()
    n, rounds, workdir = rank_round_sizes(args, "faces")
    plain = make_folder(workdir / "photos", n, args.quick)
    people = make_people(workdir / "people", n, args.quick)
    real = make_real(args.real, workdir / "real", args.real_count, args.quick) if args.real else []
    paths = [*plain, *people, *real]
    file_list, env = rank_setup(workdir, paths)
    log(f"{len(plain)} photos without faces, {len(people)} synthetic people photos, {len(real)} real ones")
    times: dict[str, list[float]] = {"without_faces": [], "with_faces": [], "without_faces_cpu": [], "with_faces_cpu": []}
    summaries: dict[str, str] = {}
    rank_once(file_list, env)  # warm-up: page cache, the model's sha256 remembered
    for r in range(rounds):
        for faces in ((False, True) if r % 2 == 0 else (True, False)):
            key = "with_faces" if faces else "without_faces"
            wall, cpu, summaries[key] = rank_once(file_list, env, ["--check", "faces"] if faces else [])
            times[key].append(round(wall, 3))
            times[key + "_cpu"].append(round(cpu, 3))
            log(f"round {r + 1}/{rounds}: {key} {wall:.2f}s wall, {cpu:.2f}s CPU")
    med = {k: round(statistics.median(v), 3) for k, v in times.items() if v}
    overhead = ratio(med["with_faces"] - med["without_faces"], med["without_faces"])
    overhead_cpu = ratio(med["with_faces_cpu"] - med["without_faces_cpu"], med["without_faces_cpu"])
    per_photo_ms = round(1000 * (med["with_faces"] - med["without_faces"]) / len(paths), 1)
    per_photo_cpu_ms = round(1000 * (med["with_faces_cpu"] - med["without_faces_cpu"]) / len(paths), 1)
    return emit({
        "benchmark": "faces",
        "quick": args.quick,
        "machine": machine,
        "setup": {
            "photos": len(paths),
            "without_faces": len(plain),
            "synthetic_people": len(people),
            "real_people": len(real),
            "sizes_mp": sorted({round(w * h / 1e6, 1) for w, h in (QUICK_SIZES if args.quick else CAMERA_SIZES)}),
            "rounds": rounds,
            "runtime": "auto (the CLI's default)",
        },
        "seconds": times,
        "median_seconds": med,
        "overhead_of_faces": overhead,
        "overhead_of_faces_cpu": overhead_cpu,
        "faces_ms_per_photo": per_photo_ms,
        "faces_cpu_ms_per_photo": per_photo_cpu_ms,
        "default_if_overhead_at_most": DEFAULT_IF_AT_MOST,
        "decision": ("default" if overhead is not None and overhead <= DEFAULT_IF_AT_MOST else "opt-in"),
        "summaries": summaries,
    })


if __name__ == "__main__":
    main()
