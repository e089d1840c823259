"""Measure what a personal head gains from seeing the base model's faults (issue 25): held-out
pairwise accuracy of the generic model, of a head on the embedding and generic score (the head
before issue 25, ``aescore learn --no-faults``), and of the head that also reads the fault
probabilities (``aescore learn``), on simulated photographers of several kinds
(docs/models.md, "Personal models").

Photos: the ImageNet photos of ``scripts/heldout-photos.txt`` (132 of ../shared/photos, ~500 x
375 px) that the default model never trained on. Each is used four times: as it is (**clean**),
**blurred** (Gaussian blur, sigma 1.5-3 px), **dark** (a low-key tone curve: ``0.6-0.8 *
x ** 1.8-2.4``) and **grainy** (Gaussian noise, sigma 4-7 % of full scale, per pixel and
channel), made by this script's own few lines of PIL/NumPy — not by aescore's fault generators,
which trained the default model (a figure measured on faults made by the code that trained the
model would say little). Seeded per photo; written as JPEG (quality 95) to a scratch folder.
The four versions of a scene, and three scenes at a time, form a pseudo-shoot of 12 photos (the
photos have no capture dates; held-out folds are whole shoots, so a scene is never on both sides).

Photographers (-1 rejected, 1-5 stars; "a or b": a seeded coin per photo):

* content: animals (ImageNet classes 0-397) 4 or 5, everything else 1 or 2; ignores the faults.
* faults: ignores content; clean 4 or 5, grainy 3, blurred and dark rejected.
* content+faults: rejects blurred and dark frames, rates the rest as the content photographer.
* likes grain: grainy 4 or 5, clean and dark 2 or 3, blurred rejected; ignores content.
* likes low key: dark 4 or 5, clean and grainy 2 or 3, blurred rejected; ignores content.

For each photographer and number of rated photos n (``--sizes``; all 528 at most), ``--draws``
random subsets of n photos (one draw for all of them) are rated and evaluated as `aescore learn`
evaluates (aescore.learn.evaluate.held_out: 5 folds of whole shoots, penalties chosen on inner
shoots, the generic score as an input), with and without the fault probabilities, on the same
draws and folds. Cells: means over draws; "judged better": how often the gate (95 % interval of
the gain over the generic model above 0) said so for the head with faults.

Usage: python scripts/measure_learn_faults.py [--photos ../shared/photos] [--draws 5] [--sizes 100,250,528] [--json OUT]
The base model's outputs come through the score cache (one pass over the 528 photos).
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

HERE = Path(__file__).resolve().parent
ANIMAL_CLASSES = 398  # ImageNet classes 0..397 are animals; the photo files sort in class order
VERSIONS = ("clean", "blurred", "dark", "grainy")
SCENES_PER_SHOOT = 3
KINDS = ("content", "faults", "content+faults", "likes grain", "likes low key")


def make_version(img: "object", version: str, rng: np.random.Generator) -> "object":
    """``img`` (a PIL RGB image) as ``version``: this script's own code, independent of aescore."""
    from PIL import Image, ImageFilter

    if version == "clean":
        return img
    if version == "blurred":
        return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 3.0))))  # type: ignore[attr-defined]
    x = np.asarray(img, dtype=np.float64) / 255.0
    if version == "dark":
        x = rng.uniform(0.6, 0.8) * x ** rng.uniform(1.8, 2.4)
    elif version == "grainy":
        x = x + rng.normal(0.0, rng.uniform(0.04, 0.07), x.shape)
    else:
        raise ValueError(version)
    return Image.fromarray(np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8))


def build_photo_set(photos: Path, names: list[str], scratch: Path, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Paths of every version of every photo, animal flag, version index and pseudo-shoot per photo."""
    from PIL import Image

    order = sorted(p.name for p in photos.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    class_index = {name: i for i, name in enumerate(order)}
    shoot_of_scene = np.random.default_rng(seed).permutation(len(names)) // SCENES_PER_SHOOT
    paths, animal, version, shoots = [], [], [], []
    for s, name in enumerate(names):
        with Image.open(photos / name) as im:
            img = im.convert("RGB")
        for v, kind in enumerate(VERSIONS):
            out = scratch / f"{Path(name).stem}.{kind}.jpg"
            if not out.exists():
                make_version(img, kind, np.random.default_rng([seed, s, v])).save(out, quality=95)  # type: ignore[attr-defined]
            paths.append(str(out))
            animal.append(class_index[name] < ANIMAL_CLASSES)
            version.append(v)
            shoots.append(f"shoot{shoot_of_scene[s]}")
    return paths, np.array(animal), np.array(version), shoots


def rate(kind: str, animal: np.ndarray, version: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The simulated photographer ``kind``'s ratings (see the module docstring)."""
    coin = rng.integers(0, 2, len(animal))
    clean, blurred, dark, grainy = (version == VERSIONS.index(v) for v in VERSIONS)
    content = np.where(animal, 4 + coin, 1 + coin)
    if kind == "content":
        return content
    if kind == "faults":
        return np.select([clean, grainy], [4 + coin, 3], -1)
    if kind == "content+faults":
        return np.where(blurred | dark, -1, content)
    if kind == "likes grain":
        return np.select([grainy, blurred], [4 + coin, -1], 2 + coin)
    if kind == "likes low key":
        return np.select([dark, blurred], [4 + coin, -1], 2 + coin)
    raise ValueError(kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=str(HERE.parents[1] / "shared" / "photos"))
    parser.add_argument("--list", default=str(HERE / "heldout-photos.txt"), help="the photos to use (default: those the default model never trained on)")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--sizes", default="100,250,528")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "aescore-measure-learn-faults"))
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--model", default=None, help="base model (name or file; default: the default model)")
    args = parser.parse_args()

    from aescore.learn.evaluate import held_out, single_threaded_blas
    from aescore.learn.features import embed_photos

    names = [line.strip() for line in Path(args.list).read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths, animal, version, shoots = build_photo_set(Path(args.photos), names, scratch, seed=0)
    print(f"photos: {len(paths)} ({len(names)} scenes x {len(VERSIONS)}, {int(animal.sum()) // len(VERSIONS)} animal scenes) "
          f"in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    t0 = time.perf_counter()
    emb = embed_photos(paths, args.model, device="cpu")
    print(f"base outputs: {len(emb.paths)} in {time.perf_counter() - t0:.0f}s, skipped {len(emb.skipped)}", file=sys.stderr)
    if emb.faults is None:
        raise SystemExit("the base model has no reasons head: nothing to compare")
    index = {p: i for i, p in enumerate(paths)}
    idx = np.array([index[p] for p in emb.paths])
    animal, version = animal[idx], version[idx]
    shoot_all = np.array(shoots)[idx]

    results = []
    sizes = [int(s) for s in args.sizes.split(",")]
    for kind in args.kinds.split(","):
        for n in sizes:
            n = min(n, len(idx))
            rows = []
            for draw in range(args.draws if n < len(idx) else 1):
                rng = np.random.default_rng([11, n, draw])
                pick = np.sort(rng.choice(len(idx), size=n, replace=False))
                r = rate(kind, animal[pick], version[pick], rng)
                t = time.perf_counter()
                with single_threaded_blas():
                    common = (emb.embeddings[pick], emb.generic[pick], r, list(shoot_all[pick]), np.zeros(n))
                    plain = held_out(*common, seed=draw)
                    seen = held_out(*common, seed=draw, faults=emb.faults[pick])
                rows.append((plain.generic_accuracy.value, plain.personal_accuracy.value, seen.personal_accuracy.value,
                             plain.beats_generic, seen.beats_generic, time.perf_counter() - t))
            res = {
                "photographer": kind, "rated": n, "draws": len(rows),
                "generic": float(np.mean([x[0] for x in rows])),
                "embedding_head": float(np.mean([x[1] for x in rows])),
                "faults_head": float(np.mean([x[2] for x in rows])),
                "embedding_head_judged_better": int(sum(x[3] for x in rows)),
                "faults_head_judged_better": int(sum(x[4] for x in rows)),
                "seconds": float(np.mean([x[5] for x in rows])),
            }
            results.append(res)
            print(json.dumps(res), file=sys.stderr)

    print("| photographer | rated photos | generic | embedding head | head with faults | judged better (with faults / without) |")
    print("|---|---:|---:|---:|---:|---:|")
    for res in results:
        print(f"| {res['photographer']} | {res['rated']} | {res['generic']:.3f} | {res['embedding_head']:.3f} | "
              f"**{res['faults_head']:.3f}** | {res['faults_head_judged_better']} / {res['embedding_head_judged_better']} of {res['draws']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
