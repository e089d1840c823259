"""AVA (Murray et al., CVPR 2012): parse ``AVA.txt`` and build the standard split.

Expected layout under ``root``::

    AVA.txt                                    15 space-separated columns per row
    images/<image id>.jpg
    aesthetics_image_lists/generic_test.jpgl   one image id per line (the test set)

Protocol (both papers): test = the ids of ``generic_test.jpgl``; train = every other row of
``AVA.txt``; validation = a seeded hold-out of 2,000 training images (RGNet). Ids listed in the
jpgl but absent from AVA.txt (about 70 of the 20,000 in the usual copies) cannot be used: they
are counted as skipped test items with reason ``not_in_ava_txt``. Rows with no votes, and images that are missing or
empty (``os.stat`` only — AVA has 255k files) are skipped and counted; undecodable images are
found on first decode by :class:`aescore.data.datasets.ImageDataset`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from aescore.data.splits import DataSplits, Sample, SkipLog, capped_splits, seeded_holdout
from aescore.errors import DataError

AVA_LAYOUT = "expected AVA.txt, images/<id>.jpg and aesthetics_image_lists/generic_test.jpgl"
DEFAULT_THRESHOLD = 5.0
DEFAULT_VAL_SIZE = 2000


@dataclass(frozen=True)
class AvaRow:
    """One row of AVA.txt: all 15 columns."""

    index: int
    image_id: str
    votes: tuple[int, ...]  # counts for ratings 1..10, in order — all ten of them
    tag1: int
    tag2: int
    challenge: int

    @property
    def n_votes(self) -> int:
        """Total number of votes."""
        return sum(self.votes)

    @property
    def mean(self) -> float:
        """Vote-weighted mean rating (1..10); NaN when there are no votes."""
        return mean_score(self.votes)


def mean_score(votes: tuple[int, ...] | list[int]) -> float:
    """Vote-weighted mean of ratings 1..10: sum_r r * votes[r-1] / sum_r votes[r-1] (NaN if no votes)."""
    if len(votes) != 10:
        raise ValueError(f"expected 10 vote counts, got {len(votes)}")
    total = sum(votes)
    if total == 0:
        return float("nan")
    return sum(r * v for r, v in enumerate(votes, start=1)) / total


def is_positive(mean: float, threshold: float = DEFAULT_THRESHOLD, inclusive: bool = False) -> int:
    """Binary label: ``mean > threshold`` (MPA) or ``mean >= threshold`` when ``inclusive`` (RGNet)."""
    return int(mean >= threshold) if inclusive else int(mean > threshold)


def parse_ava_line(line: str, lineno: int = 0) -> AvaRow:
    """Parse one AVA.txt row; DataError naming the line if it is not 15 integer columns."""
    parts = line.split()
    if len(parts) != 15:
        raise DataError(f"AVA.txt line {lineno}: expected 15 columns, found {len(parts)}")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise DataError(f"AVA.txt line {lineno}: non-integer column in {line.strip()!r}") from None
    votes = tuple(nums[2:12])  # columns 3..12 = ratings 1..10 (slicing to 11 would drop rating 10)
    if any(v < 0 for v in votes):
        raise DataError(f"AVA.txt line {lineno}: negative vote count")
    return AvaRow(index=nums[0], image_id=parts[1], votes=votes, tag1=nums[12], tag2=nums[13], challenge=nums[14])


def parse_ava_txt(path: Path) -> list[AvaRow]:
    """Parse every non-blank row of ``AVA.txt``."""
    rows: list[AvaRow] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                rows.append(parse_ava_line(line, lineno))
    return rows


def read_id_list(path: Path) -> list[str]:
    """Read a ``.jpgl`` id list: one id per line; blank lines ignored, a ``.jpg`` suffix tolerated."""
    ids: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            s = line.strip()
            if s:
                ids.append(s[:-4] if s.lower().endswith(".jpg") else s)
    return ids


def stat_check(path: Path) -> str | None:
    """Cheap index-time check: None if ``path`` is a non-empty file, else "missing" or "empty"."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "missing"
    return "empty" if st.st_size == 0 else None


def check_layout(root: Path) -> tuple[Path, Path, Path]:
    """Return (AVA.txt, images dir, generic_test.jpgl) or raise one DataError line naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"AVA root {root} is not a folder ({AVA_LAYOUT})")
    ava_txt = root / "AVA.txt"
    images = root / "images"
    test_list = root / "aesthetics_image_lists" / "generic_test.jpgl"
    missing = [str(p.relative_to(root)) for p in (ava_txt, images, test_list) if not p.exists()]
    if missing:
        raise DataError(f"AVA root {root} lacks {', '.join(missing)} ({AVA_LAYOUT})")
    return ava_txt, images, test_list


def load_ava(
    root: Path,
    *,
    threshold: float | None = None,
    threshold_inclusive: bool = False,
    val_size: int | float | None = None,
    seed: int = 0,
    max_items: int | None = None,
) -> DataSplits:
    """Index an AVA folder into the standard train / validation / test split.

    ``threshold`` (default 5.0): label = mean > threshold, or mean >= threshold when
    ``threshold_inclusive`` (RGNet). ``val_size``: validation hold-out from the training rows,
    a count or a fraction; default 2,000 (RGNet's protocol), or 10% of the training rows when
    there are fewer than 20,000 of them (small or partial copies). The hold-out is drawn from the
    usable training images, so it has exactly ``val_size`` of them. ``max_items`` caps each split
    (a seeded, order-independent subset taken after the split, so validation ids do not change).
    """
    ava_txt, images, test_list = check_layout(Path(root))
    thr = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    rows = parse_ava_txt(ava_txt)
    if not rows:
        raise DataError(f"{ava_txt} has no rows ({AVA_LAYOUT})")
    test_ids = set(read_id_list(test_list))
    log = SkipLog()
    seen: set[str] = set()
    train_pool: list[Sample] = []
    test: list[Sample] = []
    for row in rows:
        listed = "test" if row.image_id in test_ids else "train"
        path = images / f"{row.image_id}.jpg"
        problem = "no_votes" if row.n_votes == 0 else stat_check(path)
        if not log.admit(row.image_id, listed, seen, problem):
            continue
        mean = row.mean
        sample = Sample(row.image_id, path, mean, is_positive(mean, thr, threshold_inclusive), row.votes)
        (test if listed == "test" else train_pool).append(sample)
    for image_id in sorted(test_ids - {row.image_id for row in rows}):
        log.add(image_id, "not_in_ava_txt", "test")  # listed for testing, but AVA.txt has no votes for it
    if not train_pool:
        raise DataError(f"AVA root {root}: no usable training images under {images}")
    if val_size is None:
        val_size = DEFAULT_VAL_SIZE if len(train_pool) >= 20000 else max(1, round(0.1 * len(train_pool)))
    train, val = seeded_holdout(train_pool, val_size, seed)
    return capped_splits(
        train, val, test, log, max_items=max_items, seed=seed, task="classification", threshold=thr,
        kind="ava", root=Path(root), threshold_inclusive=threshold_inclusive,
    )
