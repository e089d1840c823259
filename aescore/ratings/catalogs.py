"""Ratings from Lightroom Classic catalogs, digiKam databases and CSV files — read-only.

SQLite files are opened with ``mode=ro`` (never written, no journal created). A catalog that a
running application holds locked is retried with ``immutable=1``, which reads the file as it is
on disk without taking locks (changes the application has not checkpointed yet are not seen);
if that fails too, one clear error.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Iterator

from aescore.errors import DataError
from aescore.ratings.xmp import read_regular_file

#: Largest --ratings CSV read.
MAX_CSV_BYTES = 64 * 1024 * 1024


def _connect_read_only(path: str | os.PathLike[str], what: str) -> sqlite3.Connection:
    """An SQLite connection that cannot write ``path``; DataError with one line when unusable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{what} {p}: not found (or not a regular file)")
    uri = "file:" + urllib.parse.quote(str(p.resolve()))
    last: Exception | None = None
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(f"{uri}?{flags}", uri=True, timeout=2.0)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here if locked or not SQLite
            return conn
        except sqlite3.DatabaseError as err:  # OperationalError (locked) is a subclass
            last = err
            if "locked" not in str(err) and "busy" not in str(err):
                break
    raise DataError(f"{what} {p}: cannot be read ({last})")


def _read_rows(path: str | os.PathLike[str], what: str, sql: str) -> list[tuple]:
    """Every row of ``sql`` on the database ``path``, opened read-only and closed again;
    DataError with one line when it cannot be read or lacks the tables the query names."""
    conn = _connect_read_only(path, what)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.DatabaseError as err:
        raise DataError(f"{what} {path}: not the expected schema ({err})") from None
    finally:
        conn.close()


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
        try:
            if pick is not None and float(pick) == -1:
                yield path, -1
            elif rating is not None and 1 <= int(float(rating)) <= 5:
                yield path, int(float(rating))
        except (TypeError, ValueError):
            continue


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
        try:
            value = int(float(rating))
        except (TypeError, ValueError):
            continue
        if 0 <= value <= 5:
            # relativePath is "/" for the root album, else "/sub/folder"
            folder = str(root or "").rstrip("/") + "/" + str(rel or "").strip("/")
            yield folder.rstrip("/") + "/" + str(name), value


def csv_ratings(path: str | os.PathLike[str]) -> Iterator[tuple[str, int]]:
    """``(path, rating)`` rows of a CSV file with columns ``path,rating`` (a header row is optional).

    ``rating`` is -1 (rejected) or 0..5 (0 = explicitly zero stars); an empty rating is unrated
    and skipped. Relative paths are relative to the CSV file's folder. DataError for a row that is
    not ``path,rating`` with such a number (naming its line).
    """
    p = Path(path).expanduser()
    try:
        data = read_regular_file(p, MAX_CSV_BYTES)
    except OSError as err:
        raise DataError(f"ratings CSV {p}: cannot be read ({err.strerror or err})") from None
    text = data.decode("utf-8-sig", errors="surrogateescape")
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if lineno == 1 and row[0].strip().lower() == "path":
            continue
        if len(row) < 2:
            raise DataError(f"ratings CSV {p}: line {lineno}: expected path,rating")
        photo, value = row[0], row[1].strip()
        if not value:
            continue
        try:
            rating = float(value)
        except ValueError:
            raise DataError(f"ratings CSV {p}: line {lineno}: rating {value[:20]!r} is not a number") from None
        if rating != int(rating) or not -1 <= rating <= 5:
            raise DataError(f"ratings CSV {p}: line {lineno}: rating must be -1 (rejected) or 0..5, got {value[:20]}")
        full = photo if os.path.isabs(photo) else str(p.parent / photo)
        yield full, int(rating)
