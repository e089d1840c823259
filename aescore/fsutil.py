"""Atomic file writes: readers see either the old file or the complete new one, never half of one.

Every file aescore writes (weights, model cards, checkpoints, training-id lists, XMP sidecars,
copied photos, generated data sets) goes through :func:`atomic_path`: the data is written to a
temporary file in the destination's own folder (so the final ``os.replace`` is a rename on one
file system, atomic on POSIX and Windows), then renamed over the destination. A failure at any
point leaves the destination as it was and removes the temporary file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "default_file_mode", "file_sha256", "read_regular_file"]


def _umask() -> int:
    """The process umask.

    Linux reports it in ``/proc/self/status``; reading it there avoids ``os.umask``'s set-and-restore,
    during which another thread's new files would get the temporary mask.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the most private value for the instant before it is restored
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Permissions an ordinary ``open(path, "w")`` would give a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    mode: int | None = None,
    *,
    fsync: bool = True,
    overwrite: bool = True,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it replaces ``path``.

    The caller writes the new contents to the yielded path (by name: writers such as safetensors or
    ``shutil.copy2`` may delete and recreate it). Then the temporary file gets ``mode`` — by default
    :func:`default_file_mode`, since ``mkstemp`` creates files private (0600); pass the old file's
    mode to keep it — is flushed to disk unless ``fsync`` is false (for bulk output that can be
    regenerated), and renamed over ``path`` with ``os.replace``. With ``overwrite=False`` an existing
    ``path`` (or a link there) is not replaced: :class:`FileExistsError` instead. On any exception,
    including KeyboardInterrupt, the temporary file is removed and ``path`` is untouched.

    ``path``'s folder must exist. The temporary name is ``.NAME.XXXXXXXX.tmp`` (hidden, and ending in
    ``.tmp`` so that a leftover from a killed process is easy to recognise).
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # chmod after the writer: it may have recreated the file with its own permissions.
        os.chmod(tmp, default_file_mode() if mode is None else mode)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        if not overwrite and os.path.lexists(target):
            raise FileExistsError(f"{target} appeared while writing it; not overwriting it")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # a no-op after a successful replace


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path` for ``mode`` and ``fsync``)."""
    with atomic_path(path, mode, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int | None = None, *, fsync: bool = True) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically, ``\\n`` kept as is on every platform (see :func:`atomic_path`)."""
    with atomic_path(path, mode, fsync=fsync) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """The first ``limit + 1`` bytes of ``path`` if it is a regular file, else None; never blocks.

    The type is checked with ``os.stat`` before opening (opening a FIFO waits for a writer, a
    device may never end) and again on the open file, which is opened ``O_NONBLOCK`` in case the
    path was swapped for a FIFO meanwhile. A caller tells "too large" by ``len(data) > limit``.
    OSError (missing, unreadable) is the caller's to report.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        return None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        return fh.read(limit + 1)
