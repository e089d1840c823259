"""One's own scored photos from CSV files.

``root`` is a CSV file, or a folder holding ``train.csv`` (and optionally ``val.csv`` and
``test.csv``). A ``train.csv`` given as a file also picks up a ``val.csv``/``test.csv`` beside it.
Columns (header required, names case-insensitive, any order)::

    path,score[,group]     a number per photo -> regression (classification if a threshold is given)
    path,label[,group]     0 or 1 per photo   -> classification (a score column may sit beside it)

Paths are relative to the CSV's folder (absolute paths are kept). The sample id is the path as
written, in POSIX form. Rows sharing a non-empty ``group`` (e.g. degraded copies of one source
photo) always land in the same split.

Splits: a ``test.csv`` is the test set, else 10% of the rows (at least one) are held out for test;
a ``val.csv`` is the validation set, else ``val_size`` (default 10% of all rows) is held out of
the remaining training rows. Both hold-outs are seeded and order-independent
(:func:`aescore.data.splits.seeded_holdout`).

Labels for regression data without a threshold (used only for classification-style metrics):
``score >= 0.5`` when every score lies in [0, 1], else ``score >= (min + max) / 2`` of the scores.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from aescore.data.ava import is_positive, stat_check
from aescore.data.splits import (
    DataSplits,
    Sample,
    SkipLog,
    Task,
    capped_splits,
    check_disjoint,
    check_groups_disjoint,
    seeded_holdout,
)
from aescore.errors import DataError

CSV_LAYOUT = "expected a CSV file with header path,score or path,label (+ optional group), or a folder with train.csv"
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class CsvRow:
    """One parsed CSV row (before the task's labels are decided)."""

    id: str
    path: Path
    score: float | None
    label: int | None
    group: str | None


def find_csv_files(root: Path) -> dict[str, Path | None]:
    """Locate the train / val / test CSVs for ``root`` (file or folder); DataError if there are none."""
    root = Path(root)
    if root.is_file():
        folder = root.parent
        train = root
        beside = root.name.lower() == "train.csv"
    elif root.is_dir():
        folder = root
        train = root / "train.csv"
        beside = True
        if not train.is_file():
            raise DataError(f"{root} has no train.csv ({CSV_LAYOUT})")
    else:
        raise DataError(f"{root} does not exist ({CSV_LAYOUT})")
    found: dict[str, Path | None] = {"train": train, "val": None, "test": None}
    if beside:
        for name in ("val", "test"):
            p = folder / f"{name}.csv"
            found[name] = p if p.is_file() else None
    return found


def _parse_label(value: str, where: str) -> int:
    try:
        num = float(value)
    except ValueError:
        num = float("nan")
    if num not in (0.0, 1.0):
        raise DataError(f"{where}: label must be 0 or 1, got {value!r}")
    return int(num)


def _parse_score(value: str, where: str) -> float:
    try:
        num = float(value)
    except ValueError:
        raise DataError(f"{where}: score {value!r} is not a number") from None
    if not math.isfinite(num):
        raise DataError(f"{where}: score {value!r} is not finite")
    return num


def read_csv(path: Path) -> tuple[list[CsvRow], set[str]]:
    """Parse one CSV into rows and its set of (lower-cased) column names."""
    folder = path.parent
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets often write a BOM
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty ({CSV_LAYOUT})")
        cols = [h.strip().lower() for h in header]
        if "path" not in cols or not ({"score", "label"} & set(cols)):
            raise DataError(f"{path}: header {','.join(header)!r} lacks path and score/label ({CSV_LAYOUT})")
        idx = {name: cols.index(name) for name in ("path", "score", "label", "group") if name in cols}
        rows: list[CsvRow] = []
        for lineno, rec in enumerate(reader, start=2):
            if not rec or all(not f.strip() for f in rec):
                continue
            where = f"{path.name} line {lineno}"
            if len(rec) < len(cols):
                raise DataError(f"{where}: expected {len(cols)} fields, found {len(rec)}")
            raw = rec[idx["path"]].strip()
            if not raw:
                raise DataError(f"{where}: empty path")
            rel = Path(raw)
            score = _parse_score(rec[idx["score"]].strip(), where) if "score" in idx else None
            label = _parse_label(rec[idx["label"]].strip(), where) if "label" in idx else None
            group = rec[idx["group"]].strip() or None if "group" in idx else None
            path_ = rel if rel.is_absolute() else folder / rel
            rows.append(CsvRow(rel.as_posix(), path_, score, label, group))
    return rows, set(cols)


def _label_rule(task: Task, scores: list[float], threshold: float | None) -> float | None:
    if threshold is not None:
        return float(threshold)
    if task == "classification" or not scores:
        return None
    if min(scores) >= 0.0 and max(scores) <= 1.0:
        return 0.5
    return (min(scores) + max(scores)) / 2.0


def load_csv(
    root: Path,
    *,
    threshold: float | None = None,
    threshold_inclusive: bool = False,
    val_size: int | float | None = None,
    seed: int = 0,
    max_items: int | None = None,
) -> DataSplits:
    """Index CSV-listed photos into train / validation / test splits (see the module docstring).

    ``threshold`` turns a score-only CSV into classification: label = score > threshold (or >=
    with ``threshold_inclusive``). Missing or empty image files are skipped and counted.
    """
    files = find_csv_files(Path(root))
    parsed: dict[str, list[CsvRow]] = {}
    columns: dict[str, set[str]] = {}
    for split, path in files.items():
        if path is not None:
            parsed[split], columns[split] = read_csv(path)
    has_label = "label" in columns["train"]
    task: Task = "classification" if has_label or threshold is not None else "regression"
    for split, cols in columns.items():
        need = "label" if has_label else "score"
        if need not in cols:
            raise DataError(f"{files[split]} has no {need} column, unlike {files['train']}")
    all_scores = [r.score for rows in parsed.values() for r in rows if r.score is not None]
    thr = _label_rule(task, all_scores, threshold)
    inclusive = threshold_inclusive if threshold is not None else True

    log = SkipLog()
    samples: dict[str, list[Sample]] = {}
    for split, rows in parsed.items():
        out: list[Sample] = []
        seen: set[str] = set()
        for r in rows:
            if not log.admit(r.id, split, seen, stat_check(r.path)):
                continue
            if r.label is not None and (threshold is None or r.score is None):
                label = r.label
            else:
                assert r.score is not None and thr is not None  # guaranteed by the column checks
                label = is_positive(r.score, thr, inclusive)
            target = r.score if r.score is not None else float(label)
            out.append(Sample(r.id, r.path, target, label, group=r.group))
        samples[split] = out

    pool = samples["train"]
    n_total = sum(len(v) for v in samples.values())
    if "test" not in samples:
        if len(pool) < 3:
            raise DataError(f"{files['train']}: need at least 3 usable photos to split, found {len(pool)}")
        pool, samples["test"] = seeded_holdout(pool, max(1, round(DEFAULT_TEST_FRACTION * n_total)), seed, group_key=_group)
    if "val" not in samples:
        if val_size is None:
            val_size = max(1, round(DEFAULT_VAL_FRACTION * n_total))
        elif isinstance(val_size, float) and not val_size.is_integer():
            val_size = max(1, round(val_size * n_total))
        pool, samples["val"] = seeded_holdout(pool, val_size, seed, group_key=_group)
    samples["train"] = pool
    named = {k: samples[k] for k in ("train", "val", "test")}
    check_disjoint(named)
    check_groups_disjoint(named)
    if not named["train"]:
        raise DataError(f"{files['train']}: no usable training photos")
    return capped_splits(
        named["train"], named["val"], named["test"], log, max_items=max_items, seed=seed, task=task,
        threshold=thr, kind="csv", root=Path(root), threshold_inclusive=inclusive,
    )


def _group(s: Sample) -> str | None:
    return s.group
