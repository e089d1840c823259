"""Measure what `--similarity` compares: the cosine similarity of a model's embeddings for two
frames of one scene (re-framed by a few per cent, brighter by 30 %, slightly blurred) against two
different photographs (docs/models.md, "Its embedding is ImageNet's").

    PYTHONPATH=. python scripts/measure_burst_similarity.py --photos ../shared/photos [--model M ...]

Takes every 50th photo (20 of the 1,000), writes the variants to a scratch folder, and prints per
model the smallest and median similarity of each variant to its original and the largest and
median similarity between different originals.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from aescore.learn.features import embed_photos

VARIANTS = ("shift", "bright", "blur")


def variants(img: Image.Image) -> list[Image.Image]:
    """The original and its three same-scene variants, in the order of :data:`VARIANTS`."""
    w, h = img.size
    return [img, img.crop((int(0.06 * w), int(0.04 * h), w, h)), ImageEnhance.Brightness(img).enhance(1.3),
            img.filter(ImageFilter.GaussianBlur(1.5))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--model", action="append", help="model name or file (repeatable; default: the default model)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="aescore-similarity-"))
    groups = []
    for i, src in enumerate(sorted(args.photos.glob("*.JPEG"))[::50][:20]):
        with Image.open(src) as im:
            frames = variants(im.convert("RGB"))
        paths = []
        for name, frame in zip(("orig", *VARIANTS), frames):
            path = scratch / f"{i:02d}_{name}.jpg"
            frame.save(path, quality=92)
            paths.append(str(path))
        groups.append(paths)
    for model in args.model or [None]:
        e = embed_photos([p for g in groups for p in g], model, device="cpu", use_cache=False).embeddings
        e = (e / np.linalg.norm(e, axis=1, keepdims=True)).reshape(len(groups), 1 + len(VARIANTS), -1)
        same = {k: [float(e[i, 0] @ e[i, j + 1]) for i in range(len(groups))] for j, k in enumerate(VARIANTS)}
        other = [float(e[i, 0] @ e[j, 0]) for i in range(len(groups)) for j in range(i + 1, len(groups))]
        print(json.dumps({"model": model or "default",
                          "same_scene_min_median": {k: [round(min(v), 3), round(float(np.median(v)), 3)] for k, v in same.items()},
                          "different_photos_max_median": [round(max(other), 3), round(float(np.median(other)), 3)]}))


if __name__ == "__main__":
    main()
