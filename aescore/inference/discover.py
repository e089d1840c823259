"""Find the photos to score: files, folders (recursive) and path lists, each real file once.

Order is deterministic: inputs in the order given, the entries of every folder sorted by name
(depth first). A file reached twice — named twice, through a symlink, or via a folder that
links back to one of its ancestors — is kept at its first position only. Symlinked folders are
followed, but a folder already visited (same device and inode) is never entered again, so a
link loop terminates. The thumbnail folder of an aescore contact sheet (it holds
:data:`PAGE_FILES_MARKER`) is never searched, so a page written inside the ranked folder does not
add its thumbnails to the next run.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from aescore.data.images import HEIF_EXTENSIONS, PILLOW_EXTENSIONS, RAW_EXTENSIONS

#: Every extension ``aescore`` tries to decode (lower case); other files in folders are ignored.
IMAGE_EXTENSIONS = PILLOW_EXTENSIONS | HEIF_EXTENSIONS | RAW_EXTENSIONS

#: The file that marks a folder as a contact sheet's thumbnails (``cull_files/.aescore-report``).
PAGE_FILES_MARKER = ".aescore-report"

_NOT_REGULAR = "not a regular file (a FIFO, socket or device)"


@dataclass(frozen=True)
class FoundFile:
    """A photo to score: the path as the user reached it, its resolved path and cache-key stat."""

    path: str
    real: str
    size: int
    mtime_ns: int


@dataclass
class Discovery:
    """What :func:`discover` found: files to score, and named inputs that could not be used."""

    files: list[FoundFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (input as given, reason)


def is_image_name(name: str) -> bool:
    """True if ``name`` has an extension aescore decodes (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def read_path_list(stream: BinaryIO, from0: bool = False) -> list[str]:
    """Paths from a ``--files-from`` stream: one per line, or NUL-separated when ``from0``.

    Bytes are decoded with the file-system encoding (``os.fsdecode``), so names that are not
    valid UTF-8 survive. Empty entries are dropped; with line separation a trailing ``\\r`` is too.
    """
    data = stream.read()
    if from0:
        parts = data.split(b"\0")
    else:
        parts = [p[:-1] if p.endswith(b"\r") else p for p in data.split(b"\n")]
    return [os.fsdecode(p) for p in parts if p]


def discover(inputs: Iterable[str | os.PathLike[str]], include_hidden: bool = False) -> Discovery:
    """Expand files and folders into the photos to score (see the module docstring for order).

    Named files are kept if their extension is a supported image type (others are ignored, as in
    folders). Named inputs that do not exist or cannot be named at all (a NUL byte, e.g. from a
    newline-separated ``--files-from`` list fed NUL-separated names) come back in ``problems``,
    and so does anything with a photo's extension that is not a regular file (a FIFO or device
    named ``x.jpg``, named or inside a folder: reading it could block or never end). Inside
    folders, names starting with ``.`` (e.g. macOS ``._IMG_1.JPG`` resource forks,
    ``.thumbnails``) are skipped unless ``include_hidden``, and so are the thumbnail folders of
    aescore's contact sheets (a folder named as an input is searched all the same).
    """
    found = Discovery()
    seen_files: set[tuple[int, int]] = set()
    seen_dirs: set[tuple[int, int]] = set()

    def add_file(path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            return
        seen_files.add(key)
        found.files.append(FoundFile(path, os.path.realpath(path), st.st_size, st.st_mtime_ns))

    def walk(folder: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return  # a symlink loop or a second link to a folder already searched
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return  # unreadable folder: nothing we can score in it
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            try:
                est = entry.stat()  # follows symlinks
            except OSError:
                continue  # dangling symlink
            if stat.S_ISDIR(est.st_mode):
                if not os.path.lexists(os.path.join(entry.path, PAGE_FILES_MARKER)):
                    walk(entry.path, est)
            elif is_image_name(entry.name):
                if stat.S_ISREG(est.st_mode):
                    add_file(entry.path, est)
                else:
                    found.problems.append((entry.path, _NOT_REGULAR))

    for item in inputs:
        path = os.fspath(item)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            found.problems.append((path, "no such file or directory"))
            continue
        except OSError as err:
            found.problems.append((path, err.strerror or str(err)))
            continue
        except ValueError:  # "embedded null byte": no file can have this name
            found.problems.append((path, "the name contains a NUL byte (use --from0 for NUL-separated lists)"))
            continue
        if stat.S_ISDIR(st.st_mode):
            walk(path, st)
        elif is_image_name(path):
            if stat.S_ISREG(st.st_mode):
                add_file(path, st)
            else:
                found.problems.append((path, _NOT_REGULAR))
    return found


def shard(files: list[FoundFile], index: int, count: int) -> list[FoundFile]:
    """The ``index``-th (1-based) of ``count`` deterministic parts of ``files``.

    Files are ordered by resolved path and dealt out round-robin, so the parts are disjoint,
    balanced, independent of the input order, and together are exactly ``files``; each part keeps
    the input order of its members.
    """
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: need 1 <= I <= N")
    order = sorted(range(len(files)), key=lambda i: files[i].real)
    chosen = set(order[index - 1 :: count])
    return [f for i, f in enumerate(files) if i in chosen]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (1-based) into ``(I, N)``; ValueError with a readable message if invalid."""
    try:
        left, right = text.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: need 1 <= I <= N")
    return index, count
