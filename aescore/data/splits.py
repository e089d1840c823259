"""Samples, train/validation/test splits, seeded hold-outs and split fingerprints.

Everything here is pure Python (no torch) so that indexing a dataset stays cheap and testable.
Splits are deterministic functions of the sample *ids* and a seed — never of file order — so the
same dataset gives the same split on every machine, and its fingerprint can be stored in
checkpoints and model cards and compared later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Mapping, Sequence, TypeVar

from aescore.errors import DataError

T = TypeVar("T")

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    ``id``: dataset-unique id (AVA image id, AADB file name, CSV path as written in the CSV).
    ``target``: the human score — the vote-weighted mean 1..10 for AVA, the [0, 1] score for AADB,
    the ``score`` column (or the 0/1 label when only a label is given) for CSV data.
    ``label``: the binary "high aesthetics" label (see each loader for its threshold).
    ``votes``: AVA's ten vote counts for ratings 1..10, else None.
    ``group``: samples sharing a group (e.g. degraded copies of one photo) never straddle splits.
    """

    id: str
    path: Path
    target: float
    label: int
    votes: tuple[int, ...] | None = None
    group: str | None = None


@dataclass
class DataSplits:
    """A dataset's three splits plus what was skipped while indexing it.

    ``n_skipped`` maps a reason ("missing", "empty", "no_votes", "duplicate") to its count;
    ``skipped`` lists ``(id or path, reason)``. ``n_skipped_by_split`` holds the same counts per
    split the skipped item was listed for ("test" for AVA's ``generic_test.jpgl`` or a
    ``test.csv``; "train" for the training pool that the validation hold-out is later drawn from).
    ``fingerprints`` maps "train", "val", "test" to :func:`split_fingerprint` of that split's ids
    (after skipping).
    """

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    task: Task
    threshold: float | None
    n_skipped: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    root: Path | None = None
    threshold_inclusive: bool = False
    n_skipped_by_split: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.fingerprints:
            self.refresh_fingerprints()

    def refresh_fingerprints(self) -> None:
        """Recompute ``fingerprints`` from the current split contents."""
        self.fingerprints = {
            name: split_fingerprint(s.id for s in getattr(self, name)) for name in ("train", "val", "test")
        }

    @property
    def total_skipped(self) -> int:
        """Number of images skipped at index time (all reasons)."""
        return sum(self.n_skipped.values())

    def skipped_in(self, split: str) -> dict[str, int]:
        """Index-time skips (reason -> count) of the items listed for ``split``; see the class docstring."""
        return dict(self.n_skipped_by_split.get(split, {}))


class SkipLog:
    """Collects skipped items and per-reason counts while a loader builds its index."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.items: list[tuple[str, str]] = []
        self.by_split: dict[str, dict[str, int]] = {}

    def add(self, item: str, reason: str, split: str | None = None) -> None:
        """Record that ``item`` (an id or path), listed for ``split`` if known, was skipped for ``reason``."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.items.append((item, reason))
        if split is not None:
            per = self.by_split.setdefault(split, {})
            per[reason] = per.get(reason, 0) + 1

    def admit(self, item: str, split: str, seen: set[str], problem: str | None) -> bool:
        """Whether ``item``, listed for ``split``, enters the index; if not, the reason is recorded.

        The loaders' common rule: a repeat of an id already in ``seen`` is a "duplicate" (the first
        listing wins); otherwise the id joins ``seen`` and is skipped for ``problem`` if the loader
        found one ("missing", "empty", AVA's "no_votes", ...).
        """
        if item in seen:
            self.add(item, "duplicate", split)
            return False
        seen.add(item)
        if problem is not None:
            self.add(item, problem, split)
            return False
        return True


def split_fingerprint(ids: Iterable[str]) -> str:
    """SHA-256 hex digest identifying a set of sample ids, independent of their order.

    Exact form: ``sha256("\\n".join(sorted(str(i) for i in ids)).encode("utf-8")).hexdigest()`` —
    ids sorted as strings (code-point order), joined by a single newline, no trailing newline.
    The empty split hashes the empty string.
    """
    joined = "\n".join(sorted(str(i) for i in ids))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _rank(seed: int, key: str) -> str:
    # A keyed hash gives each id a pseudo-random rank that depends only on (seed, id): the hold-out
    # is then independent of input order and of Python's random-module implementation.
    return hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).hexdigest()


def _resolve_size(size: int | float, total: int) -> int:
    """A hold-out size as a count: ints are counts, floats in (0, 1) are fractions of ``total``."""
    if isinstance(size, float) and not size.is_integer():
        if not 0.0 < size < 1.0:
            raise DataError(f"hold-out fraction must be in (0, 1), got {size}")
        return max(1, round(size * total)) if total else 0
    n = int(size)
    if n < 0:
        raise DataError(f"hold-out size must be >= 0, got {n}")
    return n


def seeded_holdout(
    items: Sequence[T],
    size: int | float,
    seed: int,
    *,
    key: Callable[[T], str] = lambda s: s.id,  # type: ignore[attr-defined]
    group_key: Callable[[T], str | None] | None = None,
) -> tuple[list[T], list[T]]:
    """Split ``items`` into ``(kept, held_out)`` deterministically.

    ``size``: an int count or a float fraction in (0, 1) of ``items``. Items (or whole groups,
    when ``group_key`` returns a group for them) are ordered by a seeded hash of their key, so the
    result depends only on the set of keys and ``seed`` — not on input order. With groups, whole
    groups are taken until at least ``size`` items are held out, so the count may exceed ``size``
    by less than one group; a group never straddles the two parts. Both parts are returned sorted
    by key. Raises DataError if ``size`` leaves nothing to keep.
    """
    n = _resolve_size(size, len(items))
    if n == 0:
        return sorted(items, key=key), []
    if n >= len(items):
        raise DataError(f"cannot hold out {n} of {len(items)} items: nothing would be left")
    buckets: dict[str, list[T]] = {}
    for it in items:
        g = group_key(it) if group_key is not None else None
        # Ungrouped items form singleton buckets; the prefix keeps them apart from group names.
        bucket = f"g:{g}" if g is not None else f"i:{key(it)}"
        buckets.setdefault(bucket, []).append(it)
    order = sorted(buckets, key=lambda b: (_rank(seed, b), b))
    held: list[T] = []
    for b in order:
        if len(held) >= n:
            break
        held.extend(buckets[b])
    if len(held) >= len(items):
        raise DataError(f"cannot hold out {n} of {len(items)} items without splitting a group")
    held_set = {id(x) for x in held}
    kept = [it for it in items if id(it) not in held_set]
    return sorted(kept, key=key), sorted(held, key=key)


def cap_items(items: Sequence[T], max_items: int | None, seed: int, *, key: Callable[[T], str] = lambda s: s.id) -> list[T]:  # type: ignore[attr-defined]
    """A seeded, order-independent subset of at most ``max_items`` items (all of them if None)."""
    if max_items is None or len(items) <= max_items:
        return sorted(items, key=key)
    chosen = sorted(items, key=lambda it: (_rank(seed, "cap:" + key(it)), key(it)))[:max_items]
    return sorted(chosen, key=key)


def capped_splits(
    train: Sequence[Sample],
    val: Sequence[Sample],
    test: Sequence[Sample],
    log: SkipLog,
    *,
    max_items: int | None,
    seed: int,
    task: Task,
    threshold: float | None,
    kind: str,
    root: Path,
    threshold_inclusive: bool,
) -> DataSplits:
    """A loader's result: each split passed through :func:`cap_items`, plus ``log``'s skip records."""
    return DataSplits(
        train=cap_items(train, max_items, seed),
        val=cap_items(val, max_items, seed),
        test=cap_items(test, max_items, seed),
        task=task,
        threshold=threshold,
        n_skipped=dict(log.counts),
        skipped=list(log.items),
        n_skipped_by_split=log.by_split,
        kind=kind,
        root=root,
        threshold_inclusive=threshold_inclusive,
    )


def check_disjoint(splits: Mapping[str, Sequence[Sample]]) -> None:
    """Raise DataError if any two splits share an id (e.g. a train.csv/test.csv overlap)."""
    names = list(splits)
    for i, a in enumerate(names):
        ids_a = {s.id for s in splits[a]}
        for b in names[i + 1 :]:
            shared = ids_a & {s.id for s in splits[b]}
            if shared:
                example = sorted(shared)[0]
                raise DataError(f"the {a} and {b} splits share {len(shared)} id(s), e.g. {example!r}")


def check_groups_disjoint(splits: Mapping[str, Sequence[Sample]]) -> None:
    """Raise DataError if a group appears in more than one split."""
    seen: dict[str, str] = {}
    for name, samples in splits.items():
        for s in samples:
            if s.group is None:
                continue
            other = seen.setdefault(s.group, name)
            if other != name:
                raise DataError(f"group {s.group!r} appears in both the {other} and {name} splits")
