"""Decisions exported from the contact sheet, and writing them into XMP sidecars (``aescore apply``).

The page's "Export decisions" downloads a JSON file::

    {"format": "aescore-decisions", "version": 1, "model": "3f2a9c1b7d4e", "title": "...",
     "exported": "2025-05-01T10:00:00.000Z",
     "decisions": [{"path": "/photos/IMG_1.jpg", "rating": 4, "pick": false, "score": 0.8123}, ...]}

``rating`` is the ``xmp:Rating`` to write: -1 rejected, 0 unrated, 1-5 stars. A *pick* ("keep
this one") carries the suggested stars (at least 1) and ``"pick": true``; it is applied without
replacing a rating the sidecar already has (your earlier rating of a photo you keep stands), while
a star key or a reject replaces it. Every rating written is recorded as the user's own
(``aescore:RatingSource="user"``), so ``aescore learn`` learns from it; a pick that keeps the
sidecar's rating leaves that rating's provenance as it was. ``score`` is recorded as
``aescore:Score``, as ``--write-xmp`` does. Everything else in a sidecar is kept (see :func:`aescore.inference.xmp.write_rating_sidecar`).

Sidecars are written only for image files aescore scores, by the rules of ``--write-xmp``
(:func:`aescore.inference.xmp.write_rating_sidecars`): a sidecar name shared by several photos
(``pair.jpg`` + ``pair.png`` -> ``pair.xmp``) is written for one of them only, and a sidecar that is
a symlink to a file outside the photo's folder is refused.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from aescore.errors import UsageError
from aescore.fsutil import read_regular_file
from aescore.inference.discover import is_image_name
from aescore.inference.xmp import (
    RatingToWrite,
    SidecarChange,
    XmpStyle,
    write_rating_sidecars,
)

__all__ = [
    "DECISIONS_FORMAT",
    "DECISIONS_VERSION",
    "MAX_DECISIONS_BYTES",
    "Decision",
    "DecisionOutcome",
    "DecisionsError",
    "DecisionsFile",
    "apply_decisions",
    "load_decisions",
]

DECISIONS_FORMAT = "aescore-decisions"
DECISIONS_VERSION = 1
MAX_DECISIONS_BYTES = 32 << 20
"""A decisions file is at most 32 MiB (about 200,000 decisions)."""


class DecisionsError(UsageError):
    """The decisions file as a whole cannot be used (missing, too large, not JSON, wrong format)."""


@dataclass(frozen=True)
class Decision:
    """One photo's decision: ``rating`` -1..5 for ``xmp:Rating``, the report's ``score``, and whether it was a pick."""

    path: str
    rating: int
    score: float
    pick: bool = False


@dataclass(frozen=True)
class DecisionsFile:
    """A validated decisions file: the usable decisions, one line per entry left out, the model tag."""

    decisions: list[Decision]
    problems: list[str]
    model: str | None


@dataclass(frozen=True)
class DecisionOutcome:
    """What applying one decision did to one sidecar: the change, or why it was left alone
    (a photo with sidecars in both styles has one outcome for each)."""

    decision: Decision
    change: SidecarChange | None
    error: str | None = None


def load_decisions(path: str | os.PathLike[str]) -> DecisionsFile:
    """Read and validate a decisions file exported by the contact sheet.

    The file must be a regular file of at most :data:`MAX_DECISIONS_BYTES` holding the format
    above (else DecisionsError). Each entry needs ``path`` (a string; relative paths are taken
    from the current folder), ``rating`` (integer -1..5), ``score`` (a number from 0 to 1) and
    optionally ``pick`` (true/false); its photo must be an image file aescore scores (by its
    extension, as photo discovery decides) and exist as a regular file. A bad entry is left out
    with one line in ``problems``; a photo decided twice keeps its first decision.
    """
    data = _read_capped(Path(path))
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DecisionsError(f"{path}: not a JSON decisions file ({str(err)[:120]})") from None
    if not isinstance(doc, dict) or doc.get("format") != DECISIONS_FORMAT:
        raise DecisionsError(f"{path}: not an aescore decisions file (no \"format\": \"{DECISIONS_FORMAT}\")")
    if doc.get("version") != DECISIONS_VERSION:
        raise DecisionsError(f"{path}: decisions format version {doc.get('version')!r} is not supported (expected {DECISIONS_VERSION})")
    entries = doc.get("decisions")
    if not isinstance(entries, list):
        raise DecisionsError(f"{path}: \"decisions\" must be a list")
    model = doc.get("model")
    if model is not None and (not isinstance(model, str) or not model or len(model) > 200):
        raise DecisionsError(f"{path}: \"model\" must be a short string or null")

    decisions: list[Decision] = []
    problems: list[str] = []
    first_entry: dict[str, int] = {}
    for n, entry in enumerate(entries, start=1):
        decision, problem = _check_entry(entry)
        if problem is not None:
            problems.append(f"entry {n}{_shown(entry)}: {problem}")
            continue
        assert decision is not None
        key = os.path.normcase(os.path.abspath(decision.path))
        if key in first_entry:
            problems.append(f"entry {n}{_shown(entry)}: already decided by entry {first_entry[key]}; left out")
            continue
        first_entry[key] = n
        decisions.append(decision)
    return DecisionsFile(decisions=decisions, problems=problems, model=model)


def apply_decisions(
    decisions: Iterable[Decision],
    style: XmpStyle = "lightroom",
    dry_run: bool = False,
    model: str | None = None,
) -> list[DecisionOutcome]:
    """Write each decision's rating (and score, and ``model`` as ``aescore:Model``) into its sidecar.

    Same naming, merge, shared-name and atomic-write rules as ``--write-xmp``
    (:func:`~aescore.inference.xmp.write_rating_sidecars`); a rating already in the sidecar is
    replaced, except by a pick, and recorded as the user's (``by_user``). The sidecars a photo already has are written, both alike where it
    has both styles; one in ``style`` is created only when it has none; one outcome per sidecar,
    in decision order. ``dry_run`` writes nothing. A sidecar aescore refuses to change
    (malformed, declaring entities, a link out of the photo's folder, shared with another photo)
    or cannot write is reported in the outcome's ``error``; the others are still applied. Photos
    are never opened.
    """
    decisions = list(decisions)
    results = write_rating_sidecars(
        [RatingToWrite(d.path, d.rating, d.score, overwrite_rating=not d.pick, by_user=True) for d in decisions],
        style=style, dry_run=dry_run, model=model,
    )
    return [DecisionOutcome(decisions[i], change, error) for i, change, error in results]


# --------------------------------------------------------------------------- helpers


def _read_capped(path: Path) -> bytes:
    """The bytes of ``path``, a regular file of at most MAX_DECISIONS_BYTES (else DecisionsError).

    A FIFO, device or folder is refused before it is opened (opening a FIFO would wait forever).
    """
    try:
        data = read_regular_file(path, MAX_DECISIONS_BYTES)
    except OSError as err:
        raise DecisionsError(f"{_display(path)}: cannot read the decisions file ({err.strerror or err})") from None
    if data is None:
        raise DecisionsError(f"{_display(path)}: not a regular file")
    if len(data) > MAX_DECISIONS_BYTES:
        raise DecisionsError(f"{_display(path)}: larger than {MAX_DECISIONS_BYTES >> 20} MiB; not a decisions file")
    return data


def _display(path: str | os.PathLike[str]) -> str:
    """``path`` for a one-line message (:func:`aescore.termtext.display_path`)."""
    from aescore.termtext import display_path

    return display_path(os.fspath(path))


def _shown(entry: Any) -> str:
    """`` (NAME)`` for a problem line when the entry has a usable path, else nothing."""
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        return f" ({_display(entry['path'])})"
    return ""


def _is_int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _probability(x: Any) -> float | None:
    """``x`` as a float if it is a JSON number from 0 to 1, else None (also for NaN, infinities
    and integers too large for a float)."""
    if not (_is_int(x) or isinstance(x, float)):
        return None
    try:
        value = float(x)
    except OverflowError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def _check_entry(entry: Any) -> tuple[Decision | None, str | None]:
    """A Decision for a valid entry, else (None, what is wrong with it)."""
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    path, rating, score, pick = entry.get("path"), entry.get("rating"), entry.get("score"), entry.get("pick", False)
    if not isinstance(path, str) or not path or "\0" in path:
        return None, "\"path\" must be a non-empty string"
    if not _is_int(rating) or not -1 <= rating <= 5:
        return None, f"\"rating\" must be an integer from -1 to 5, got {json.dumps(rating)[:40]}"
    value = _probability(score)
    if value is None:
        return None, f"\"score\" must be a finite number from 0 to 1, got {json.dumps(score)[:40]}"
    if not isinstance(pick, bool):
        return None, "\"pick\" must be true or false"
    if Path(path).suffix.lower() == ".xmp":
        return None, "is a sidecar, not a photo"
    if not is_image_name(os.path.basename(path)):
        return None, "not a photo aescore scores (no image file extension); no sidecar written for it"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, "no such file"
    except OSError as err:
        return None, f"cannot read it ({err.strerror or err})"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    return Decision(path=path, rating=int(rating), score=value, pick=pick), None
