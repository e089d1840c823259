"""SQLite score cache: re-runs over a big library score only new or changed files.

A row is keyed by the file's resolved absolute path, the weights' sha256 and the scoring recipe
(e.g. ``"full"`` or ``"tta15"``), and is valid only while the file's size and ``mtime_ns`` match.
Storing one row per (path, weights, recipe) means a changed file replaces its row instead of
piling up stale ones. Files that could not be decoded are recorded too (table ``failures``), so
a re-run skips them without loading the model.

Safe with several runs at once: WAL journal (readers never block the writer), a busy timeout,
and short transactions (one ``executemany`` per batch of results). The cache is an accelerator
only: when it is unusable (corrupt, locked for too long, unwritable folder) the run goes on
without it after one warning line. A corrupt file — found when opening it, or later when a
read or write fails and SQLite's integrity check confirms the damage (e.g. a few zeroed pages) —
is renamed ``<name>.corrupt-<timestamp>`` and a fresh cache is built in its place, with one
warning line; ``cache clear`` deletes those renamed copies.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from aescore.termtext import say

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    path      TEXT    NOT NULL,
    weights   TEXT    NOT NULL,
    recipe    TEXT    NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    score     REAL    NOT NULL,
    embedding BLOB,
    updated   REAL    NOT NULL,
    faults    BLOB,
    PRIMARY KEY (path, weights, recipe)
) WITHOUT ROWID
"""
# ``faults`` (a reasons head's fault probabilities, float32 bytes: what `learn` reads beside the
# embedding) came later: a cache made before has the column added when it is opened (_add_columns).
# Files that could not be decoded, so a re-run does not load the model just to fail on them
# again. Valid while size and mtime_ns match and for the same ``decoder`` (aescore and Pillow
# versions: an upgrade may read a file the old one could not).
_FAILURES_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (
    path      TEXT    NOT NULL PRIMARY KEY,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    decoder   TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    updated   REAL    NOT NULL
) WITHOUT ROWID
"""
# Fields of per-photo checks (aescore.checks), one row per (path, check key): the key holds the
# check's name and version, and for model-dependent checks the weights and recipe.
_CHECKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    path      TEXT    NOT NULL,
    check_key TEXT    NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    fields    TEXT    NOT NULL,
    updated   REAL    NOT NULL,
    PRIMARY KEY (path, check_key)
) WITHOUT ROWID
"""
# Keep each IN (...) list well under SQLite's host-parameter limit (32766 since 3.32, 999 before).
_CHUNK = 900


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/aescore/scores.sqlite``, default ``~/.cache/aescore/scores.sqlite``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aescore" / "scores.sqlite"


@dataclass(frozen=True)
class CacheKey:
    """Identity of one file version: resolved absolute path, size in bytes, mtime in ns."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class CachedScore:
    """A cached result: the score and, if they were computed, the embedding and the fault
    probabilities as float32 bytes."""

    score: float
    embedding: bytes | None
    faults: bytes | None = None


def _add_columns(conn: sqlite3.Connection) -> None:
    """Add the ``faults`` column to a ``scores`` table made before it existed (another process may
    add it at the same moment: then it is there)."""
    if "faults" in {row[1] for row in conn.execute("PRAGMA table_info(scores)").fetchall()}:
        return
    try:
        conn.execute("ALTER TABLE scores ADD COLUMN faults BLOB")
    except sqlite3.OperationalError as err:
        if "duplicate column" not in str(err).lower():
            raise


def _db_path(path: str) -> str | bytes:
    """The ``path`` column value: the text itself, or its raw bytes when it is not valid Unicode.

    A file name that is not valid UTF-8 reaches Python as a str with surrogate escapes, which
    SQLite's TEXT cannot hold; its exact bytes go into the column as a BLOB instead (a BLOB never
    equals a TEXT, so the two kinds of key cannot collide).
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _warn(message: str) -> None:
    say(f"aescore: warning: {message}")


class ScoreCache:
    """The score cache at ``path`` (default :func:`default_cache_path`).

    ``warn`` receives one-line warnings (default: print to stderr as ``aescore: warning: ...``).
    After a failure the instance is disabled: lookups miss and writes are dropped.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, warn: Callable[[str], None] = _warn) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._warn = warn
        self._conn: sqlite3.Connection | None = None
        self.enabled = True

    # -- connection -----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None or not self.enabled:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._open()
        except sqlite3.DatabaseError as err:
            if _is_corruption(err):
                self._conn = self._rebuild(err)
            else:
                self._disable(f"score cache {self.path} unusable ({err}); continuing without it")
        except OSError as err:
            self._disable(f"score cache folder {self.path.parent} unusable ({err.strerror}); continuing without it")
        return self._conn

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves to keep transactions short.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough for a cache; much faster in WAL
            conn.execute(_SCHEMA)
            conn.execute(_FAILURES_SCHEMA)
            conn.execute(_CHECKS_SCHEMA)
            _add_columns(conn)
            conn.execute("SELECT 1 FROM scores LIMIT 1").fetchall()  # touches the table's pages
        except BaseException:
            conn.close()
            raise
        return conn

    def _rebuild(self, err: Exception) -> sqlite3.Connection | None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        k = 0
        while aside.exists():  # a second rebuild within the same second keeps the first copy
            k += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{k}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):  # a stale WAL would be replayed into the new file
                side = Path(str(self.path) + suffix)
                if side.exists():
                    os.replace(side, Path(str(aside) + suffix))
            conn = self._open()
        except (OSError, sqlite3.DatabaseError) as err2:
            self._disable(f"score cache {self.path} is corrupt ({err}) and could not be rebuilt ({err2})")
            return None
        self._warn(f"score cache {self.path} was corrupt ({err}); moved it to {aside.name} and started a new one")
        return conn

    def _damaged(self, err: sqlite3.DatabaseError) -> bool:
        """Whether ``err`` (raised by a read or write) means the file is damaged.

        "malformed" / "not a database" say so directly; for other errors (e.g. an I/O error) SQLite's
        ``quick_check`` decides. A lock or permission problem is not damage.
        """
        if _is_corruption(err):
            return True
        text = str(err).lower()
        if "locked" in text or "busy" in text or "readonly" in text or "permission" in text:
            return False
        conn = self._conn
        if conn is None:
            return False
        try:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        except sqlite3.DatabaseError as check_err:
            return _is_corruption(check_err)
        return rows != [("ok",)]

    def _recover(self, err: sqlite3.DatabaseError, what: str) -> sqlite3.Connection | None:
        """After a failed read or write: rebuild a damaged cache (one warning), else disable it.

        Returns the new connection, or None when the cache is now off.
        """
        if self.enabled and self._damaged(err):
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
            self._conn = self._rebuild(err)
            return self._conn
        self._disable(f"score cache {what} failed ({err}); continuing without it")
        return None

    def _disable(self, message: str) -> None:
        if self.enabled:
            self._warn(message)
        self.enabled = False
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite when the last one closes)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scores ---------------------------------------------------------------------------------
    def get_many(
        self, keys: Sequence[CacheKey], weights: str, recipe: str, need_embedding: bool = False, need_faults: bool = False,
    ) -> dict[str, CachedScore]:
        """Cached results for ``keys`` (by path) whose size and mtime_ns still match.

        With ``need_embedding`` (``need_faults``), rows cached without an embedding (fault
        probabilities) count as misses.
        """
        rows = self._valid_rows(
            keys,
            "SELECT path, size, mtime_ns, score, embedding, faults FROM scores WHERE weights = ? AND recipe = ? AND path IN ({marks})",
            (weights, recipe),
        )
        return {
            key.path: CachedScore(float(score), emb, faults)
            for key, (score, emb, faults) in rows
            if (emb is not None or not need_embedding) and (faults is not None or not need_faults)
        }

    def put_many(self, rows: Iterable[tuple[Any, ...]], weights: str, recipe: str) -> None:
        """Store ``(key, score, embedding bytes or None[, fault probabilities' bytes or None])``
        rows in one short transaction."""
        now = time.time()
        self._insert_many(
            "INSERT OR REPLACE INTO scores (path, weights, recipe, size, mtime_ns, score, embedding, faults, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((_db_path(k.path), weights, recipe, k.size, k.mtime_ns, float(s), e, rest[0] if rest else None, now)
             for k, s, e, *rest in rows),
        )

    # -- files that could not be decoded ------------------------------------------------------
    def get_failures(self, keys: Sequence[CacheKey], decoder: str) -> dict[str, str]:
        """Recorded decode failures for ``keys`` (path -> reason) whose size and mtime_ns still match."""
        rows = self._valid_rows(
            keys, "SELECT path, size, mtime_ns, reason FROM failures WHERE decoder = ? AND path IN ({marks})", (decoder,)
        )
        return {key.path: str(reason) for key, (reason,) in rows}

    def put_failures(self, rows: Iterable[tuple[CacheKey, str]], decoder: str) -> None:
        """Record ``(key, reason)`` decode failures in one short transaction.

        Record only failures that recur for the same bytes
        (:func:`aescore.data.images.is_lasting_failure`), and pass a ``decoder`` tag naming
        everything the failure depends on (aescore and Pillow versions, the preprocessing recipe):
        :meth:`get_failures` serves a failure only for the same tag.
        """
        now = time.time()
        self._insert_many(
            "INSERT OR REPLACE INTO failures (path, size, mtime_ns, decoder, reason, updated) VALUES (?, ?, ?, ?, ?, ?)",
            ((_db_path(k.path), k.size, k.mtime_ns, decoder, reason, now) for k, reason in rows),
        )

    # -- fields of per-photo checks -------------------------------------------------------------
    def get_checks(self, keys: Sequence[CacheKey], check_key: str) -> dict[str, dict[str, Any]]:
        """Cached fields of the check ``check_key`` for ``keys`` (by path) whose size and mtime_ns still match."""
        import json

        rows = self._valid_rows(
            keys, "SELECT path, size, mtime_ns, fields FROM checks WHERE check_key = ? AND path IN ({marks})", (check_key,)
        )
        out: dict[str, dict[str, Any]] = {}
        for key, (text,) in rows:
            try:
                value = json.loads(text)
            except ValueError:
                continue  # an unreadable row is a miss; the next write replaces it
            if isinstance(value, dict):
                out[key.path] = value
        return out

    def put_checks(self, rows: Iterable[tuple[CacheKey, dict[str, Any]]], check_key: str) -> None:
        """Store ``(key, fields)`` rows of the check ``check_key`` in one short transaction."""
        import json

        now = time.time()
        self._insert_many(
            "INSERT OR REPLACE INTO checks (path, check_key, size, mtime_ns, fields, updated) VALUES (?, ?, ?, ?, ?, ?)",
            ((_db_path(k.path), check_key, k.size, k.mtime_ns, json.dumps(f, allow_nan=False), now) for k, f in rows),
        )

    # -- shared by the tables ---------------------------------------------------------------
    def _valid_rows(self, keys: Sequence[CacheKey], select: str, args: tuple[object, ...]) -> list[tuple[CacheKey, list[Any]]]:
        """``(key, remaining columns)`` for each row of ``select`` whose file still has the key's size and mtime_ns.

        ``select`` returns ``path, size, mtime_ns, ...`` and ends in ``path IN ({marks})``; it runs with
        ``args`` and one chunk of the keys' paths at a time. Empty when the cache is off or unreadable
        (it is then disabled, with one warning).
        """
        conn = self._connect()
        if conn is None or not keys:
            return []
        wanted = {_db_path(k.path): k for k in keys}
        paths = list(wanted)
        found: list[tuple[CacheKey, list[Any]]] = []
        try:
            for start in range(0, len(paths), _CHUNK):
                chunk = paths[start : start + _CHUNK]
                sql = select.format(marks=",".join("?" * len(chunk)))
                for path, size, mtime_ns, *rest in conn.execute(sql, (*args, *chunk)).fetchall():
                    key = wanted[path]
                    if size == key.size and mtime_ns == key.mtime_ns:
                        found.append((key, rest))
        except sqlite3.DatabaseError as err:
            self._recover(err, "read")  # a rebuilt cache is empty: every key is a miss
            return []
        return found

    def _insert_many(self, sql: str, params: Iterable[tuple[object, ...]]) -> None:
        """Run ``sql`` for every parameter tuple in one short transaction (nothing when there are none)."""
        conn = self._connect()
        if conn is None:
            return
        batch = list(params)
        if not batch:
            return
        for attempt in range(2):  # a second time into a cache rebuilt after damage
            try:
                _write(conn, sql, batch)
                return
            except sqlite3.DatabaseError as err:
                conn = self._recover(err, "write") if attempt == 0 else None
                if conn is None:
                    if attempt:
                        self._disable(f"score cache write failed ({err}); continuing without it")
                    return

    # -- management -----------------------------------------------------------------------------
    def corrupt_copies(self) -> list[Path]:
        """Damaged cache files moved aside earlier (``<name>.corrupt-<timestamp>``), oldest first."""
        return sorted(
            p for p in self.path.parent.glob(f"{glob_escape(self.path.name)}.corrupt-*")
            if not p.name.endswith(("-wal", "-shm"))
        )

    def info(self) -> dict[str, Any]:
        """Path, bytes on disk (database + WAL), row count, rows per (weights, recipe), the
        number of files recorded as undecodable, and the damaged copies moved aside.

        A damaged cache is moved aside and rebuilt (one warning), then reported empty.
        """
        result: dict[str, Any] = {
            "path": str(self.path), "exists": self.path.exists(), "bytes": 0, "rows": 0, "by_weights": [], "failures": 0,
            "corrupt_copies": [],
        }
        counted = self._twice("read", _count_rows) if self.path.exists() else None
        if counted is not None:
            groups, result["failures"] = counted
            result["rows"] = sum(g[2] for g in groups)
            result["by_weights"] = [{"weights": w, "recipe": r, "rows": n, "last_used": t} for w, r, n, t in groups]
        files = [self.path, Path(str(self.path) + "-wal")]
        result["bytes"] = sum(p.stat().st_size for p in files if p.exists())
        result["corrupt_copies"] = [str(p) for p in self.corrupt_copies()]
        return result

    def clear(self) -> int:
        """Delete every row (other runs may hold the file open, so it is emptied, not unlinked).

        Returns the number of scores deleted (recorded decode failures are deleted too). Works on
        a damaged cache too: it is moved aside (one warning) and a fresh one started; see
        :meth:`remove_corrupt_copies` for deleting such copies.
        """
        n = self._twice("clear", _delete_rows) if self.path.exists() else None
        return int(n or 0)

    def _twice(self, what: str, action: Callable[[sqlite3.Connection], Any]) -> Any:
        """``action(connection)``, and once more on the rebuilt cache if the first try found the
        file damaged; None when the cache is off or the second try fails too."""
        for attempt in range(2):
            conn = self._connect()
            if conn is None:
                return None
            try:
                return action(conn)
            except sqlite3.DatabaseError as err:
                if attempt or self._recover(err, what) is None:
                    return None
        return None

    def remove_corrupt_copies(self) -> int:
        """Delete the damaged copies moved aside earlier (with their WAL files); returns how many."""
        copies = self.corrupt_copies()
        for copy in copies:
            for side in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
                side.unlink(missing_ok=True)
        return len(copies)


def _count_rows(conn: sqlite3.Connection) -> tuple[list[Any], int]:
    """Rows per (weights, recipe) with their last use, and the number of recorded failures."""
    groups = conn.execute(
        "SELECT weights, recipe, COUNT(*), MAX(updated) FROM scores GROUP BY weights, recipe ORDER BY COUNT(*) DESC"
    ).fetchall()
    return groups, conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0]


def _delete_rows(conn: sqlite3.Connection) -> int:
    """Empty every table in one transaction, then give the space back; the scores deleted."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = conn.execute("DELETE FROM scores").rowcount
        conn.execute("DELETE FROM failures")
        conn.execute("DELETE FROM checks")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(n)


def _write(conn: sqlite3.Connection, sql: str, batch: list[tuple[object, ...]]) -> None:
    """``executemany`` in one short transaction, rolled back on any failure."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass  # the failure already ended the transaction
        raise


def _is_corruption(err: sqlite3.DatabaseError) -> bool:
    """True for "not a database" / "malformed" errors (not for locks or permission problems)."""
    if isinstance(err, sqlite3.OperationalError):
        text = str(err).lower()
        return "malformed" in text or "not a database" in text
    return True
