"""Measure `aescore learn` on simulated photographers: held-out pairwise accuracy of the personal
model vs the generic model, against the number of rated photos (docs/models.md, "Personal models").
The head here reads the embedding and the generic score, not the fault probabilities (the head
before issue 25, `aescore learn --no-faults`); scripts/measure_learn_faults.py compares the two.

Photos: the 1,000 photographs of ../shared/photos (one per ImageNet class). A seeded 40 % of them
are replaced by a copy with one technical fault (aescore.data.degrade: a random kind of the ten,
severity 1-3), written to a scratch folder; the rest are used as they are. Each photo is put in one
of 50 pseudo-shoots of 20 photos at random (the photos carry no capture dates), so held-out folds
are whole shoots as in `aescore learn`.

Photographers (ratings -1 = rejected, 1..5 stars; noise from a seeded generator):

* content: likes animals (ImageNet classes 0-397: 4 or 5 stars), is lukewarm about everything
  else (1 or 2 stars); ignores technical faults.
* content+faults: the content photographer who also rejects (-1) every photo with a fault of
  severity 2 or 3.
* faults: ignores content; clean photos 4 or 5 stars, severity 1: 3 stars, severity 2: 2 stars,
  severity 3: rejected.
* content, consistent: the content photographer without the coin flip (animals 5 stars, everything
  else 2): every pair with different ratings can be ordered, where the coin flip of the first
  makes about a third of them a matter of chance (its ceiling is about 0.82, docs/models.md).

For each photographer and each number of rated photos n (50, 100, 300, 1,000), ``--draws`` random
subsets of n photos are rated and evaluated exactly as `aescore learn` does (aescore.learn.evaluate
.held_out: 5 folds of whole shoots, the head's L2 strength chosen on inner shoots, the generic score
as an input); the table gives the mean over draws of the held-out pairwise accuracy of each model,
and how often the personal model was judged better (the gate: 95 % interval of the gain above 0).

Usage: python scripts/measure_learn.py [--photos ../shared/photos] [--draws 5] [--json OUT] [--model M]
Embeddings come from the default model through the score cache (one pass of ~1,000 photos).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ANIMAL_CLASSES = 398  # ImageNet classes 0..397 are animals
FAULT_SHARE = 0.4
SHOOTS = 50


def build_photo_set(photos: Path, scratch: Path, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Paths (originals or degraded copies), animal flag and fault severity (0 = clean) per photo."""
    from PIL import Image

    from aescore.data.degrade import ALL_KINDS, degrade

    names = sorted(p.name for p in photos.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    rng = np.random.default_rng(seed)
    paths, animal, severity = [], [], []
    for index, name in enumerate(names):
        src = photos / name
        faulty = rng.random() < FAULT_SHARE
        kind = ALL_KINDS[int(rng.integers(len(ALL_KINDS)))]
        sev = int(rng.integers(1, 4))
        if faulty:
            out = scratch / f"{Path(name).stem}.{kind}{sev}.jpg"
            if not out.exists():
                with Image.open(src) as img:
                    degrade(img.convert("RGB"), kind, sev, np.random.default_rng([seed, index])).save(out, quality=95)
            paths.append(str(out))
        else:
            paths.append(str(src))
        animal.append(index < ANIMAL_CLASSES)  # files sort in ImageNet class order (n01..., n02...)
        severity.append(sev if faulty else 0)
    return paths, np.array(animal), np.array(severity)


def rate(kind: str, animal: np.ndarray, severity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The simulated photographer ``kind``'s ratings (see the module docstring)."""
    coin = rng.integers(0, 2, len(animal))
    content = np.where(animal, 4 + coin, 1 + coin)
    if kind == "content":
        return content
    if kind == "content+faults":
        return np.where(severity >= 2, -1, content)
    if kind == "faults":
        return np.select([severity == 0, severity == 1, severity == 2], [4 + coin, 3, 2], -1)
    if kind == "content, consistent":
        return np.where(animal, 5, 2)
    raise ValueError(kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared" / "photos"))
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--sizes", default="50,100,300,1000")
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "aescore-measure-learn"))
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--model", default=None, help="base model (name or file; default: the default model)")
    args = parser.parse_args()

    from aescore.learn.evaluate import held_out, single_threaded_blas
    from aescore.learn.features import embed_photos

    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths, animal, severity = build_photo_set(Path(args.photos), scratch, seed=0)
    print(f"photos: {len(paths)} ({int((severity > 0).sum())} with a fault, {int(animal.sum())} animals) in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    t0 = time.perf_counter()
    emb = embed_photos(paths, args.model, device="cpu")
    print(f"embeddings: {len(emb.paths)} in {time.perf_counter() - t0:.0f}s, skipped {len(emb.skipped)}", file=sys.stderr)
    keep = {p: i for i, p in enumerate(paths)}
    idx = np.array([keep[p] for p in emb.paths])
    animal, severity = animal[idx], severity[idx]
    shoot_rng = np.random.default_rng(1)
    shoots_all = np.array([f"shoot{k}" for k in shoot_rng.permutation(np.arange(len(idx)) % SHOOTS)])

    results = []
    sizes = [int(s) for s in args.sizes.split(",")]
    for kind in ("content", "content+faults", "faults", "content, consistent"):
        for n in sizes:
            n = min(n, len(idx))
            rows = []
            for draw in range(args.draws if n < len(idx) else 1):
                rng = np.random.default_rng([7, n, draw])
                pick = rng.choice(len(idx), size=n, replace=False)
                r = rate(kind, animal[pick], severity[pick], rng)
                t = time.perf_counter()
                with single_threaded_blas():
                    h = held_out(emb.embeddings[pick], emb.generic[pick], r, list(shoots_all[pick]), np.zeros(n), seed=draw)
                rows.append((h.personal_accuracy.value, h.generic_accuracy.value, h.beats_generic, time.perf_counter() - t))
            res = {
                "photographer": kind,
                "rated": n,
                "draws": len(rows),
                "personal": float(np.mean([x[0] for x in rows])),
                "generic": float(np.mean([x[1] for x in rows])),
                "judged_better": int(sum(x[2] for x in rows)),
                "seconds": float(np.mean([x[3] for x in rows])),
            }
            results.append(res)
            print(json.dumps(res), file=sys.stderr)

    print("| photographer | rated photos | personal | generic | judged better |")
    print("|---|---:|---:|---:|---:|")
    for res in results:
        print(f"| {res['photographer']} | {res['rated']} | {res['personal']:.3f} | {res['generic']:.3f} | {res['judged_better']} of {res['draws']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
