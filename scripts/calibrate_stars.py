"""Calibrate the absolute star scale of a model (:data:`aescore.inference.stars.STAR_SCALES`).

Data: the project's validation-only photographs, ``scripts/validation-photos.txt`` — 30 real
photos from Debian wallpaper packages (never trained on; never committed). Obtain them with

    apt-get install -y mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers

(the 16.04-era files of the list come with ``lomiri-wallpapers`` too; or ``apt-get download`` +
``dpkg -x`` as the list's header says, then ``--root DIR/usr/share``). Each photo is downscaled
to a shorter edge of ``--shorter`` px (2,000: CPU time) and written as a JPEG (quality 95) with
four faulty copies made here by fixed, simple code: Gaussian blur (radius 3 px), darkening by
1.5 EV (on linearised values), Gaussian noise (sigma 0.04) and JPEG quality 15. Every file is
scored by ``aescore score --jsonl --no-cache`` (the public command, the default runtime).

Thresholds, from the measured scores, on a 0.01 grid:

* ``flawed`` (below it: at most 2 stars): the cut-off between originals and faulty copies with
  the best balanced accuracy (mean of "originals at or above" and "faulty copies below"); ties
  go to the higher cut-off;
* ``four`` (from it: up to 4 stars): the larger of ``flawed`` and the 95th percentile of the
  faulty copies' scores rounded up — at most 1 in 20 faulty copies can reach 4 stars;
* ``five`` (from it: up to 5 stars): the larger of ``four`` and the 97.5th percentile of the
  faulty copies' scores rounded up — at most 1 in 40 faulty copies can reach 5 stars.

Prints one JSON object: the data, counts, scores per kind, the thresholds and how the originals
and faulty copies fall into the bands. Nothing is trained; no file outside ``--work`` is written.

    .venv/bin/python scripts/calibrate_stars.py --work /tmp/stars-calibration > calibration.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

FAULTS = ("blur", "dark", "noise", "jpeg")
"""The faulty copies made of every original, see :func:`make_fault`."""


def read_list(path: Path) -> list[str]:
    """The photo paths of ``validation-photos.txt`` (relative to the packages' ``usr/share``)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            out.append(line.split("\t")[0])
    return out


def load(path: Path, shorter: int) -> Image.Image:
    """The photo as RGB, downscaled (Lanczos) so its shorter edge is at most ``shorter`` px."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = shorter / min(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        return im


def make_fault(im: Image.Image, kind: str, seed: int) -> Image.Image:
    """One faulty copy of ``im``: ``blur``, ``dark``, ``noise`` or ``jpeg`` (see the module doc)."""
    if kind == "blur":
        return im.filter(ImageFilter.GaussianBlur(3))
    if kind == "jpeg":
        return im  # written at quality 15 by the caller
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if kind == "dark":
        arr = np.power(np.power(arr, 2.2) * 2.0 ** -1.5, 1 / 2.2)
    elif kind == "noise":
        arr = arr + np.random.default_rng(seed).normal(0.0, 0.04, arr.shape).astype(np.float32)
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))


def score_files(files: list[Path], model: str | None) -> dict[str, float]:
    """Scores by ``aescore score --jsonl --no-cache``, keyed by the path as given."""
    cmd = [sys.executable, "-m", "aescore", "score", "--jsonl", "--no-cache", *(["--model", model] if model else []), *map(str, files)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"aescore score failed ({done.returncode}): {done.stderr[-2000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {os.path.abspath(r["path"]): float(r["score"]) for r in rows}


def ceil2(x: float) -> float:
    """``x`` rounded up to 2 decimals."""
    return math.ceil(x * 100 - 1e-9) / 100


def best_cutoff(good: list[float], bad: list[float]) -> tuple[float, float]:
    """(cut-off, balanced accuracy) on a 0.01 grid: good >= cut-off, bad < cut-off; ties: the higher."""
    best = (0.0, -1.0)
    for k in range(1, 100):
        t = k / 100
        acc = (np.mean([g >= t for g in good]) + np.mean([b < t for b in bad])) / 2
        if acc >= best[1]:
            best = (t, float(acc))
    return best


def band_counts(scores: list[float], flawed: float, four: float, five: float) -> dict[str, int]:
    """How many of ``scores`` fall in each cap band."""
    caps = [5 if s >= five else 4 if s >= four else 3 if s >= flawed else 2 for s in scores]
    return {f"cap{c}": caps.count(c) for c in (5, 4, 3, 2)}


def main() -> None:
    """Make the copies, score them, print the calibration as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", type=Path, default=Path(__file__).with_name("validation-photos.txt"))
    ap.add_argument("--root", type=Path, default=Path("/usr/share"), help="folder the list's paths are relative to")
    ap.add_argument("--work", type=Path, required=True, help="folder for the downscaled photos and copies")
    ap.add_argument("--shorter", type=int, default=2000)
    ap.add_argument("--model", default=None, help="model name (default: aescore's default model)")
    a = ap.parse_args()

    a.work.mkdir(parents=True, exist_ok=True)
    names = read_list(a.list)
    missing = [n for n in names if not (a.root / n).is_file()]
    kinds: dict[str, list[Path]] = {"original": [], **{f: [] for f in FAULTS}}
    for i, name in enumerate(n for n in names if n not in missing):
        im = load(a.root / name, a.shorter)
        stem = f"{i:02d}_{Path(name).stem}"
        path = a.work / f"{stem}_original.jpg"
        im.save(path, quality=95)
        kinds["original"].append(path)
        for kind in FAULTS:
            path = a.work / f"{stem}_{kind}.jpg"
            make_fault(im, kind, seed=i).save(path, quality=15 if kind == "jpeg" else 95)
            kinds[kind].append(path)
    all_files = [p for ps in kinds.values() for p in ps]
    scores = score_files(all_files, a.model)
    by_kind = {k: [scores[os.path.abspath(p)] for p in ps] for k, ps in kinds.items()}
    good = by_kind["original"]
    bad = [s for f in FAULTS for s in by_kind[f]]
    flawed, balanced = best_cutoff(good, bad)
    four = max(flawed, ceil2(float(np.percentile(bad, 95))))
    five = max(four, ceil2(float(np.percentile(bad, 97.5))))
    print(json.dumps({
        "data": f"{a.list.name}: {len(names) - len(missing)} photos found under {a.root} ({len(missing)} missing)",
        "missing": missing,
        "model": a.model or "default",
        "counts": {k: len(v) for k, v in by_kind.items()},
        "thresholds": {"flawed": flawed, "four": round(four, 2), "five": round(five, 2)},
        "balanced_accuracy_at_flawed": round(balanced, 4),
        "originals_at_or_above_flawed": sum(s >= flawed for s in good),
        "faulty_below_flawed": {f: sum(s < flawed for s in by_kind[f]) for f in FAULTS},
        "at_0.5": {"originals_at_or_above": sum(s >= 0.5 for s in good), "faulty_below": sum(s < 0.5 for s in bad)},
        "bands": {k: band_counts(v, flawed, four, five) for k, v in by_kind.items()},
        "scores": {k: {"min": round(min(v), 4), "median": round(float(np.median(v)), 4), "max": round(max(v), 4)} for k, v in by_kind.items()},
        "per_photo": {os.path.basename(p): round(scores[os.path.abspath(p)], 4) for p in all_files},
    }, indent=1))


if __name__ == "__main__":
    main()
