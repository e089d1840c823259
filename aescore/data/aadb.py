"""AADB (Kong et al., ECCV 2016): the three regression lists and their images.

Expected layout under ``root``::

    imgListTrainRegression_score.txt        <filename> <score in [0, 1]> per line (8,458)
    imgListValidationRegression_score.txt   (500)
    imgListTestNewRegression_score.txt      (1,000; the "TestNew" list, as RGNet uses)
    datasetImages_originalSize/<filename>   images; also looked for in images/ or root itself

The image folder is the first of ``datasetImages_originalSize/``, ``images/``, ``root`` that
holds the first listed image (falling back to the first that exists). The task is regression of
the score (MSE, Spearman's rho); the binary label, used only for classification-style metrics,
is ``score >= 0.5`` by default (see :func:`load_aadb`). The validation list is the validation
split, so a ``val_size`` is not used. An image listed in the test list and also in the train or
validation list is dropped from the latter and counted as "overlaps_test", so that the test
set never shares an image with training.
"""

from __future__ import annotations

import math
from pathlib import Path

from aescore.data.ava import is_positive, stat_check
from aescore.data.splits import DataSplits, Sample, SkipLog, capped_splits
from aescore.errors import DataError

LISTS = {
    "train": "imgListTrainRegression_score.txt",
    "val": "imgListValidationRegression_score.txt",
    "test": "imgListTestNewRegression_score.txt",
}
IMAGE_DIRS = ("datasetImages_originalSize", "images", ".")
AADB_LAYOUT = (
    "expected imgListTrainRegression_score.txt, imgListValidationRegression_score.txt, "
    "imgListTestNewRegression_score.txt and the images in datasetImages_originalSize/"
)
DEFAULT_THRESHOLD = 0.5


def parse_score_list(path: Path) -> list[tuple[str, float]]:
    """Parse ``<filename> <score>`` lines; DataError naming the line on a malformed one."""
    out: list[tuple[str, float]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise DataError(f"{path.name} line {lineno}: expected '<filename> <score>', got {line.strip()!r}")
            try:
                score = float(parts[1])
            except ValueError:
                raise DataError(f"{path.name} line {lineno}: score {parts[1]!r} is not a number") from None
            if not math.isfinite(score):
                raise DataError(f"{path.name} line {lineno}: score {parts[1]!r} is not finite")
            out.append((parts[0], score))
    return out


def find_image_dir(root: Path, first_name: str | None) -> Path:
    """The folder holding AADB's images (see the module docstring for the search order)."""
    candidates = [root / d for d in IMAGE_DIRS]
    if first_name is not None:
        for d in candidates:
            if (d / first_name).is_file():
                return d
    for d in candidates:
        if d.is_dir():
            return d
    return root


def _drop_overlap(samples: list[Sample], other: list[Sample], reason: str, log: SkipLog, split: str) -> list[Sample]:
    other_ids = {s.id for s in other}
    kept = []
    for s in samples:
        if s.id in other_ids:
            log.add(s.id, reason, split)
        else:
            kept.append(s)
    return kept


def load_aadb(
    root: Path,
    *,
    threshold: float | None = None,
    threshold_inclusive: bool = True,
    seed: int = 0,
    max_items: int | None = None,
) -> DataSplits:
    """Index an AADB folder: train / validation / TestNew lists, regression task.

    label = ``score >= threshold`` (default 0.5; ``score > threshold`` if not ``threshold_inclusive``).
    Missing or empty images are skipped and counted; ``max_items`` caps each split (seeded subset).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"AADB root {root} is not a folder ({AADB_LAYOUT})")
    missing = [name for name in LISTS.values() if not (root / name).is_file()]
    if missing:
        raise DataError(f"AADB root {root} lacks {', '.join(missing)} ({AADB_LAYOUT})")
    thr = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    entries = {split: parse_score_list(root / name) for split, name in LISTS.items()}
    first = next((e[0][0] for e in entries.values() if e), None)
    image_dir = find_image_dir(root, first)
    log = SkipLog()
    splits: dict[str, list[Sample]] = {}
    for split, items in entries.items():
        samples: list[Sample] = []
        seen: set[str] = set()
        for name, score in items:
            path = image_dir / name
            if log.admit(name, split, seen, stat_check(path)):
                samples.append(Sample(name, path, score, is_positive(score, thr, threshold_inclusive)))
        splits[split] = samples
    # Later lists win: an id in the test list is dropped from train/val, one in val from train.
    splits["val"] = _drop_overlap(splits["val"], splits["test"], "overlaps_test", log, "val")
    splits["train"] = _drop_overlap(splits["train"], splits["test"], "overlaps_test", log, "train")
    splits["train"] = _drop_overlap(splits["train"], splits["val"], "overlaps_val", log, "train")
    if not splits["train"]:
        raise DataError(f"AADB root {root}: no usable training images in {image_dir}")
    return capped_splits(
        splits["train"], splits["val"], splits["test"], log, max_items=max_items, seed=seed, task="regression",
        threshold=thr, kind="aadb", root=root, threshold_inclusive=threshold_inclusive,
    )
