"""Copy or symlink a selection of photos into one folder, never overwriting or touching sources."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from aescore.errors import UsageError
from aescore.fsutil import atomic_path, file_sha256

__all__ = ["MaterialiseMode", "materialise"]

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


def _candidates(name: str) -> Iterable[str]:
    """``IMG_1.JPG``, ``IMG_1-1.JPG``, ``IMG_1-2.JPG``, ... (the suffix is kept last)."""
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


def materialise(
    paths: Iterable[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    mode: MaterialiseMode,
    dry_run: bool = False,
) -> list[tuple[Path, Path]]:
    """Copy (``mode="copy"``) or symlink (``mode="link"``) each photo into ``dest``.

    Returns ``(source, destination)`` for every distinct source, in input order — including
    sources already present at their destination (an identical copy: same size and sha256; or a
    symlink to the same file), which are skipped rather than written again, so re-running is
    idempotent.

    Name collisions (two ``IMG_1.JPG`` from different folders) are resolved deterministically in
    input order: ``IMG_1.JPG``, ``IMG_1-1.JPG``, ``IMG_1-2.JPG``... A name already used in ``dest``
    by a different file is never overwritten; the next free name is taken. Names are compared
    case-insensitively within one run so the result is the same on case-insensitive file systems.
    Copies keep metadata (``shutil.copy2``) and are written atomically; links point at the
    source's absolute, resolved path. ``dry_run`` creates nothing and returns the same pairs.
    Sources are only read, never modified, moved or deleted.
    """
    if mode not in ("copy", "link"):
        raise UsageError(f"unknown materialise mode {mode!r} (use 'copy' or 'link')")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a folder")
    if not dry_run:
        dest.mkdir(parents=True, exist_ok=True)

    pairs: list[tuple[Path, Path]] = []
    done: dict[Path, Path] = {}  # resolved source -> its destination (duplicate inputs)
    used: set[str] = set()  # casefolded names claimed in this run
    for raw in paths:
        src = Path(raw)
        real = Path(os.path.realpath(src))
        if real in done:
            continue
        for name in _candidates(src.name):
            key = name.casefold()
            if key in used:
                continue
            dst = dest / name
            if os.path.lexists(dst):
                same = _links_to(dst, real) if mode == "link" else _same_content(real, dst)
                if not same:
                    continue  # someone else's file: leave it alone, try the next name
            elif not dry_run:
                if mode == "link":
                    os.symlink(real, dst)  # fails rather than overwrite if dst appeared meanwhile
                else:
                    _copy_atomic(real, dst)
            used.add(key)
            done[real] = dst
            pairs.append((src, dst))
            break
    return pairs
