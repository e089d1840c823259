"""Copy or symlink a selection of photos into one folder, never overwriting or touching sources.

Re-runs are idempotent: what is already in the folder is recognised (by content for copies, by
target for links) and reported as "already there" rather than copied again.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aescore.errors import UsageError
from aescore.fsutil import atomic_path, file_sha256

__all__ = ["MaterialiseMode", "MaterialiseResult", "Placement", "candidate_names", "materialise", "materialise_result"]

MaterialiseMode = Literal["copy", "link"]


def _same_content(src: Path, dst: Path) -> bool:
    """Whether ``dst`` is a regular file (not a link) with the same size and sha256 as ``src``."""
    if dst.is_symlink() or not dst.is_file():
        return False
    if dst.stat().st_size != src.stat().st_size:
        return False
    return file_sha256(dst) == file_sha256(src)


def _links_to(dst: Path, target: Path) -> bool:
    """Whether ``dst`` is a symlink that resolves to ``target``."""
    return dst.is_symlink() and Path(os.path.realpath(dst)) == target


def candidate_names(name: str) -> Iterable[str]:
    """``IMG_1.JPG``, ``IMG_1-1.JPG``, ``IMG_1-2.JPG``, ... (the suffix is kept last): the names a
    file placed in a folder tries in turn (``--copy-to``, ``--link-to``, ``--thumbs``)."""
    stem, suffix = os.path.splitext(name)
    yield name
    k = 1
    while True:
        yield f"{stem}-{k}{suffix}"
        k += 1


def _copy_atomic(src: Path, dst: Path) -> None:
    """shutil.copy2 to a temporary name in ``dst``'s folder, then rename into place.

    Readers never see a half-copied photo; the final rename is refused if ``dst`` appeared
    meanwhile (checked just before), so an existing file is not overwritten.
    """
    # copy2 gives the copy the photo's mode; passing it on keeps atomic_path from resetting it.
    # No fsync: like cp, leave flushing many photos to the OS.
    mode = stat.S_IMODE(src.stat().st_mode)
    with atomic_path(dst, mode, fsync=False, overwrite=False) as tmp:
        shutil.copy2(src, tmp)


Outcome = Literal["created", "renamed", "already-there"]


@dataclass(frozen=True)
class Placement:
    """One source photo and where it is in the destination folder.

    ``outcome``: ``created`` (copied or linked under its own name), ``renamed`` (copied or linked
    under the next free name, ``IMG_1-1.JPG``, because its own was taken by a different file),
    ``already-there`` (the destination already held it: an identical copy, a link to it, or the
    photo itself when it lives in the destination folder; nothing was written).
    """

    source: Path
    destination: Path
    outcome: Outcome


@dataclass(frozen=True)
class MaterialiseResult:
    """What :func:`materialise_result` did (or, with ``dry_run``, would do), in input order."""

    mode: MaterialiseMode
    dry_run: bool
    placements: list[Placement] = field(default_factory=list)

    def _with(self, outcome: Outcome) -> list[Placement]:
        return [p for p in self.placements if p.outcome == outcome]

    @property
    def created(self) -> list[Placement]:
        """Placed under their own name."""
        return self._with("created")

    @property
    def renamed(self) -> list[Placement]:
        """Placed under a new name (their own was taken)."""
        return self._with("renamed")

    @property
    def already_there(self) -> list[Placement]:
        """Found in place; nothing written."""
        return self._with("already-there")

    @property
    def pairs(self) -> list[tuple[Path, Path]]:
        """``(source, destination)`` for every placement (what :func:`materialise` returns)."""
        return [(p.source, p.destination) for p in self.placements]

    def summary(self) -> str:
        """E.g. ``"3 copied, 2 already there, 1 renamed"`` (disjoint counts; ``linked`` in link mode)."""
        verb = "copied" if self.mode == "copy" else "linked"
        return f"{len(self.created)} {verb}, {len(self.already_there)} already there, {len(self.renamed)} renamed"


def materialise_result(
    paths: Iterable[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    mode: MaterialiseMode,
    dry_run: bool = False,
) -> MaterialiseResult:
    """Copy (``mode="copy"``) or symlink (``mode="link"``) each photo into ``dest``; say what happened.

    Every distinct source gets one :class:`Placement`, in input order (a source named twice, or
    reached through two paths, counts once). Re-running is idempotent: a source already present
    is ``already-there`` and nothing is written — an identical file (same size and sha256) at its
    name or at a name a previous run gave it (``IMG_1-1.JPG``), a symlink resolving to it, or the
    photo itself when it lives in ``dest`` (``--copy-to`` a folder that is being ranked, or a
    subfolder of it, copies nothing twice). Two different sources with identical bytes share one
    copy.

    Name collisions (two ``IMG_1.JPG`` from different folders) are resolved deterministically in
    input order: ``IMG_1.JPG``, ``IMG_1-1.JPG``, ``IMG_1-2.JPG``... A name already used in ``dest``
    by a different file is never overwritten; the next free name is taken (``renamed``). Names
    are compared case-insensitively within one run so the result is the same on case-insensitive
    file systems. Copies keep metadata (``shutil.copy2``) and are written atomically; links point
    at the source's absolute, resolved path. ``dry_run`` creates nothing and reports the same
    placements. Sources are only read, never modified, moved or deleted.
    """
    if mode not in ("copy", "link"):
        raise UsageError(f"unknown materialise mode {mode!r} (use 'copy' or 'link')")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a folder")
    if not dry_run:
        dest.mkdir(parents=True, exist_ok=True)
    dest_real = Path(os.path.realpath(dest))

    result = MaterialiseResult(mode, dry_run)
    done: set[Path] = set()  # resolved sources already placed (duplicate inputs)
    claimed: dict[str, Path] = {}  # casefolded name -> resolved source placed there in this run
    for raw in paths:
        src = Path(raw)
        real = Path(os.path.realpath(src))
        if real in done:
            continue
        done.add(real)
        if real.parent == dest_real:  # the photo already lives in the destination folder
            result.placements.append(Placement(src, dest / real.name, "already-there"))
            claimed.setdefault(real.name.casefold(), real)
            continue
        for k, name in enumerate(candidate_names(src.name)):
            key = name.casefold()
            dst = dest / name
            if os.path.lexists(dst):
                same = _links_to(dst, real) if mode == "link" else _same_content(real, dst)
                if not same:
                    continue  # someone else's file: leave it alone, try the next name
                outcome: Outcome = "already-there"
            elif key in claimed:
                # Taken earlier in this run (in a dry run it is not on disk): the same bytes?
                if mode == "link" or not _same_content(real, claimed[key]):
                    continue
                outcome = "already-there"
            else:
                if not dry_run:
                    if mode == "link":
                        os.symlink(real, dst)  # fails rather than overwrite if dst appeared meanwhile
                    else:
                        _copy_atomic(real, dst)
                outcome = "created" if k == 0 else "renamed"
            claimed.setdefault(key, real)
            result.placements.append(Placement(src, dst, outcome))
            break
    return result


def materialise(
    paths: Iterable[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    mode: MaterialiseMode,
    dry_run: bool = False,
) -> list[tuple[Path, Path]]:
    """:func:`materialise_result`, returning only ``(source, destination)`` pairs in input order."""
    return materialise_result(paths, dest, mode, dry_run).pairs
