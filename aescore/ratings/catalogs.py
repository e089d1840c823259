"""Ratings from Lightroom Classic catalogs, digiKam databases and CSV files — read-only.

Nothing is ever created or changed beside a catalog (no journal, no ``-wal`` or ``-shm`` file),
so a catalog on read-only media is read as well:

* a catalog in rollback-journal mode (Lightroom's) is opened with ``mode=ro``; when a running
  application holds it locked it is read again with ``immutable=1``, as it is on disk without
  taking locks (changes the application has not written yet are not seen);
* a catalog in WAL mode (``PRAGMA journal_mode=WAL``) without a ``-wal`` file beside it is
  opened with ``immutable=1``: SQLite would otherwise create ``-wal`` and ``-shm`` files next to
  it just to read it;
* a catalog in WAL mode with a non-empty ``-wal`` file (its application is running, or stopped
  without tidying up) is copied with that file into a temporary folder and read there, so the
  changes committed to the ``-wal`` are seen.

A catalog value that is not a whole number (a fraction, infinity, text) is no rating
(:func:`aescore.ratings.values.whole_rating`); text that is not UTF-8 is read with the bytes
kept as surrogate escapes, as file names are.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path
from typing import Iterator

from aescore.errors import DataError, UsageError
from aescore.inference.xmp import whole_rating
from aescore.ratings.xmp import read_regular_file

#: Largest --ratings CSV read.
MAX_CSV_BYTES = 64 * 1024 * 1024
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _named(what: str, path: str | os.PathLike[str]) -> str:
    """``what`` and ``path`` for the start of a one-line message (the path as terminals show it)."""
    from aescore.termtext import display_path

    return f"{what} {display_path(os.fspath(path))}"


def _source_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` of a ratings source (``~`` expanded); UsageError for a name that no file can
    have (a NUL byte), before anything is opened."""
    text = os.fsdecode(os.fspath(path))
    if "\0" in text:
        raise UsageError(f"{_named(what, text)}: a file name cannot contain a NUL byte")
    return Path(text).expanduser()


def _is_wal(path: Path) -> bool:
    """Whether the SQLite file ``path`` is in WAL mode (its header's format versions are 2)."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return head.startswith(_SQLITE_MAGIC) and 2 in head[18:20]


def _surrogate_text(data: bytes) -> str:
    """SQLite text as str; bytes that are not UTF-8 become surrogate escapes (as in file names)."""
    return data.decode("utf-8", "surrogateescape")


def _connect_read_only(p: Path, what: str, stack: contextlib.ExitStack) -> sqlite3.Connection:
    """An SQLite connection to ``p`` that creates and writes nothing beside it (the ways are in
    the module docstring), closed when ``stack`` closes; DataError with one line when unusable."""
    try:
        wal_file = Path(f"{p}-wal")
        if not _is_wal(p):
            attempts = [(p, "mode=ro"), (p, "mode=ro&immutable=1")]
        elif wal_file.is_file() and wal_file.stat().st_size > 0:
            copy = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aescore-catalog-"))) / "catalog"
            shutil.copyfile(p, copy)
            shutil.copyfile(wal_file, f"{copy}-wal")
            attempts = [(copy, "mode=ro")]
        else:
            attempts = [(p, "mode=ro&immutable=1")]
    except OSError as err:
        raise DataError(f"{_named(what, p)}: cannot be read ({err.strerror or err})") from None
    last: Exception | None = None
    for target, flags in attempts:
        uri = "file:" + urllib.parse.quote(os.fsencode(target.resolve())) + "?" + flags
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=2.0)
        except sqlite3.DatabaseError as err:
            last = err
            break
        conn.text_factory = _surrogate_text
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here if locked or not SQLite
        except sqlite3.DatabaseError as err:  # OperationalError (locked) is a subclass
            conn.close()
            last = err
            if "locked" in str(err) or "busy" in str(err):
                continue
            break
        stack.callback(conn.close)
        return conn
    raise DataError(f"{_named(what, p)}: cannot be read ({last})")


def _read_rows(path: str | os.PathLike[str], what: str, sql: str) -> list[tuple]:
    """Every row of ``sql`` on the database ``path``, opened read-only and closed again;
    DataError with one line when it cannot be read or lacks the tables the query names."""
    p = _source_path(path, what)
    if not p.is_file():
        raise DataError(f"{_named(what, p)}: not found (or not a regular file)")
    with contextlib.ExitStack() as stack:
        conn = _connect_read_only(p, what, stack)
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.DatabaseError as err:
            raise DataError(f"{_named(what, p)}: not the expected schema ({err})") from None


def lightroom_ratings(catalog: str | os.PathLike[str]) -> Iterator[tuple[str, int]]:
    """``(absolute path, rating)`` for each rated or rejected photo of a Lightroom Classic catalog.

    ``Adobe_images`` (rating, pick, rootFile) -> ``AgLibraryFile`` (baseName, extension, folder)
    -> ``AgLibraryFolder`` (pathFromRoot, rootFolder) -> ``AgLibraryRootFolder`` (absolutePath),
    joined on ``id_local``. ``pick = -1`` (rejected flag) gives -1 whatever the stars; rating
    NULL or 0 without a reject is unrated and left out. Virtual copies share their master's file:
    the first row per file wins.
    """
    rows = _read_rows(catalog, "Lightroom catalog", """
        SELECT r.absolutePath, fo.pathFromRoot, fi.baseName, fi.extension, i.rating, i.pick
        FROM Adobe_images i
        JOIN AgLibraryFile fi ON fi.id_local = i.rootFile
        JOIN AgLibraryFolder fo ON fo.id_local = fi.folder
        JOIN AgLibraryRootFolder r ON r.id_local = fo.rootFolder
        ORDER BY i.id_local
        """)
    for root, sub, base, ext, rating, pick in rows:
        name = f"{base}.{ext}" if ext else str(base)
        path = str(root or "") + str(sub or "") + name  # Lightroom stores folders with a trailing "/"
        stars = whole_rating(rating)
        if whole_rating(pick) == -1:
            yield path, -1
        elif stars is not None and 1 <= stars <= 5:
            yield path, stars


def digikam_ratings(database: str | os.PathLike[str]) -> Iterator[tuple[str, int]]:
    """``(absolute path, rating 0..5)`` for each rated photo of a digiKam database.

    ``Images`` (id, album, name) -> ``Albums`` (albumRoot, relativePath) -> ``AlbumRoots``
    (specificPath), and ``ImageInformation`` (imageid, rating). digiKam's -1 means unrated (not
    rejected) and is left out; 0 is an explicit zero-star rating and kept.
    """
    rows = _read_rows(database, "digiKam database", """
        SELECT ar.specificPath, a.relativePath, im.name, ii.rating
        FROM Images im
        JOIN ImageInformation ii ON ii.imageid = im.id
        JOIN Albums a ON a.id = im.album
        JOIN AlbumRoots ar ON ar.id = a.albumRoot
        ORDER BY im.id
        """)
    for root, rel, name, rating in rows:
        value = whole_rating(rating)
        if value is not None and 0 <= value <= 5:
            # relativePath is "/" for the root album, else "/sub/folder"
            folder = str(root or "").rstrip("/") + "/" + str(rel or "").strip("/")
            yield folder.rstrip("/") + "/" + str(name), value


def csv_ratings(path: str | os.PathLike[str]) -> Iterator[tuple[str, int]]:
    """``(path, rating)`` rows of a CSV file with columns ``path,rating`` (a header row is optional).

    ``rating`` is -1 (rejected) or 0..5 (0 = explicitly zero stars); an empty rating is unrated
    and skipped. Relative paths are relative to the CSV file's folder. DataError for a row that is
    not ``path,rating`` with such a number (naming its line).
    """
    p = _source_path(path, "ratings CSV")
    named = _named("ratings CSV", p)
    try:
        data = read_regular_file(p, MAX_CSV_BYTES)
    except OSError as err:
        raise DataError(f"{named}: cannot be read ({err.strerror or err})") from None
    text = data.decode("utf-8-sig", errors="surrogateescape")
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if lineno == 1 and row[0].strip().lower() == "path":
            continue
        where = f"{named}: line {lineno}"
        if len(row) < 2:
            raise DataError(f"{where}: expected path,rating")
        photo, value = row[0], row[1].strip()
        if not value:
            continue
        try:
            float(value)
        except ValueError:
            raise DataError(f"{where}: rating {value[:20]!r} is not a number") from None
        rating = whole_rating(value)
        if rating is None or not -1 <= rating <= 5:
            raise DataError(f"{where}: rating must be -1 (rejected) or 0..5, got {value[:20]}")
        full = photo if os.path.isabs(photo) else str(p.parent / photo)
        yield full, rating
