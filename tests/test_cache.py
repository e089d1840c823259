"""The SQLite score cache: hits, invalidation, concurrency, corruption recovery."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
from pathlib import Path

import pytest

from aescore.inference.cache import CacheKey, ScoreCache, default_cache_path

W, R = "ab" * 32, "full@12345678"


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "aescore" / "scores.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "aescore" / "scores.sqlite"


def test_hit_miss_and_invalidation(tmp_path: Path) -> None:
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        k = CacheKey("/p/a.jpg", 10, 123)
        cache.put_many([(k, 0.75, None)], W, R)
        assert cache.get_many([k], W, R)["/p/a.jpg"].score == 0.75
        assert cache.get_many([CacheKey("/p/a.jpg", 10, 124)], W, R) == {}  # touched
        assert cache.get_many([CacheKey("/p/a.jpg", 11, 123)], W, R) == {}  # size changed
        assert cache.get_many([k], "cd" * 32, R) == {}  # other weights
        assert cache.get_many([k], W, "tta15@12345678") == {}  # other recipe
        assert cache.get_many([k], W, R, need_embedding=True) == {}  # no embedding stored
        cache.put_many([(CacheKey("/p/a.jpg", 10, 124), 0.5, b"\0" * 8)], W, R)  # replaces the stale row
        assert cache.info()["rows"] == 1
        assert cache.get_many([CacheKey("/p/a.jpg", 10, 124)], W, R, need_embedding=True)["/p/a.jpg"].embedding == b"\0" * 8


def test_non_utf8_file_names_are_cached(tmp_path: Path) -> None:
    odd = os.fsdecode(b"/p/bad\xffname.jpg")  # a surrogate-escaped str, as os.scandir gives it
    lookalike = "/p/bad\udcffname.jpg".encode("utf-8", "surrogateescape").decode("latin-1")
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([(CacheKey(odd, 1, 1), 0.25, None), (CacheKey(lookalike, 1, 1), 0.75, None)], W, R)
        hits = cache.get_many([CacheKey(odd, 1, 1), CacheKey(lookalike, 1, 1)], W, R)
        assert hits[odd].score == 0.25 and hits[lookalike].score == 0.75


def test_decode_failures_recorded_per_file_version_and_decoder(tmp_path: Path) -> None:
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        k = CacheKey("/p/bad.jpg", 10, 123)
        cache.put_failures([(k, "empty file")], "dec-1")
        assert cache.get_failures([k], "dec-1") == {"/p/bad.jpg": "empty file"}
        assert cache.get_failures([CacheKey("/p/bad.jpg", 10, 124)], "dec-1") == {}  # touched
        assert cache.get_failures([k], "dec-2") == {}  # newer decoder: try again
        assert cache.get_many([k], W, R) == {}  # not a score
        assert cache.info()["failures"] == 1
        cache.clear()
        assert cache.get_failures([k], "dec-1") == {} and cache.info()["failures"] == 0


def test_many_keys_cross_the_parameter_chunks(tmp_path: Path) -> None:
    keys = [CacheKey(f"/p/{i}.jpg", i, i) for i in range(2500)]
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([(k, i / 2500, None) for i, k in enumerate(keys)], W, R)
        assert len(cache.get_many(keys, W, R)) == 2500


def test_info_and_clear(tmp_path: Path) -> None:
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        assert cache.info()["rows"] == 0
        cache.put_many([(CacheKey(f"/{i}", 1, 1), 0.1, None) for i in range(3)], W, R)
        cache.put_many([(CacheKey("/x", 1, 1), 0.1, None)], "cd" * 32, R)
        info = cache.info()
        assert info["rows"] == 4 and info["bytes"] > 0
        assert [(g["weights"], g["rows"]) for g in info["by_weights"]] == [(W, 3), ("cd" * 32, 1)]
        assert cache.clear() == 4 and cache.info()["rows"] == 0


def test_corrupt_file_is_moved_aside_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    warnings: list[str] = []
    with ScoreCache(path, warn=warnings.append) as cache:
        cache.put_many([(CacheKey("/a", 1, 1), 0.3, None)], W, R)
        assert cache.get_many([CacheKey("/a", 1, 1)], W, R)["/a"].score == pytest.approx(0.3)
    assert len(warnings) == 1 and "corrupt" in warnings[0]
    aside = list(tmp_path.glob("c.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not sqlite")


def test_unusable_folder_disables_cache_with_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    warnings: list[str] = []
    cache = ScoreCache(blocker / "sub" / "c.sqlite", warn=warnings.append)
    assert cache.get_many([CacheKey("/a", 1, 1)], W, R) == {}
    cache.put_many([(CacheKey("/a", 1, 1), 0.3, None)], W, R)
    assert len(warnings) == 1 and not cache.enabled


def test_wal_mode(tmp_path: Path) -> None:
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([(CacheKey("/a", 1, 1), 0.3, None)], W, R)
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def _writer(path: str, worker: int) -> None:
    with ScoreCache(path, warn=lambda m: (_ for _ in ()).throw(AssertionError(m))) as cache:
        for batch in range(20):
            rows = [(CacheKey(f"/w{worker}/{batch}/{i}", 1, 1), 0.5, b"\1" * 64) for i in range(25)]
            cache.put_many(rows, W, R)
            cache.get_many([k for k, _, _ in rows], W, R)


def test_concurrent_writers_do_not_corrupt(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with ScoreCache(path) as cache:
        assert cache.info()["rows"] == 4 * 20 * 25
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# --------------------------------------------------------------------------- damaged pages (issue 15)


def _damaged_cache(path: Path, rows: int = 3000) -> list[CacheKey]:
    """A real cache with ``rows`` scores (about 250 pages), then a few of its pages zeroed (dd-style)."""
    keys = [CacheKey(f"/photos/{i:05d}.jpg", 1000 + i, 10**9 + i) for i in range(rows)]
    with ScoreCache(path) as cache:
        cache.put_many([(k, 0.5, os.urandom(256)) for k in keys], W, R)
        cache.put_failures([(k, "bad") for k in keys[:50]], "dec-1")
    pages = path.stat().st_size // 4096
    assert pages > 100
    with open(path, "r+b") as fh:
        for page in (pages // 2, pages // 2 + 1, pages - 3):
            fh.seek(page * 4096)
            fh.write(b"\0" * 4096)
    return keys


def test_zeroed_pages_are_found_on_read_moved_aside_and_rebuilt_once(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    keys = _damaged_cache(path)
    warnings: list[str] = []
    with ScoreCache(path, warn=warnings.append) as cache:
        assert cache.get_many(keys, W, R) == {}  # the damaged file cannot answer: all misses
        assert len(warnings) == 1 and "corrupt" in warnings[0]
        cache.put_many([(keys[0], 0.7, None)], W, R)  # the rebuilt cache is in use at once
        assert cache.get_many(keys[:5], W, R)[keys[0].path].score == pytest.approx(0.7)
    assert len(warnings) == 1 and cache.enabled
    assert len(list(tmp_path.glob("scores.sqlite.corrupt-*"))) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    # the next run uses the new cache without a word
    later: list[str] = []
    with ScoreCache(path, warn=later.append) as cache:
        assert len(cache.get_many(keys, W, R)) == 1 and later == []


def test_write_into_a_damaged_cache_rebuilds_it(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    keys = _damaged_cache(path)
    warnings: list[str] = []
    with ScoreCache(path, warn=warnings.append) as cache:
        cache.put_many([(k, 0.25, os.urandom(256)) for k in keys], W, R)
        assert len(cache.get_many(keys, W, R)) == len(keys)
    assert len(warnings) == 1 and "corrupt" in warnings[0]


def test_info_and_clear_work_on_a_damaged_cache(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    _damaged_cache(path)
    warnings: list[str] = []
    with ScoreCache(path, warn=warnings.append) as cache:
        info = cache.info()
        assert (info["rows"], info["failures"]) == (0, 0) and len(info["corrupt_copies"]) == 1  # type: ignore[arg-type]
    _damaged_cache(path)
    with ScoreCache(path, warn=warnings.append) as cache:
        assert cache.clear() == 0
        assert cache.remove_corrupt_copies() == 2
    assert len(warnings) == 2 and not list(tmp_path.glob("scores.sqlite.corrupt-*"))


def _run_cli(args: list[str], tmp_path: Path) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from aescore.cli.main import get_app

    result = CliRunner().invoke(get_app(), args, env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    return result.exit_code, result.stdout, result.stderr


def test_cache_commands_on_a_damaged_cache(tmp_path: Path) -> None:
    path = tmp_path / "xdg" / "aescore" / "scores.sqlite"
    path.parent.mkdir(parents=True)
    _damaged_cache(path)
    code, out, err = _run_cli(["cache", "info"], tmp_path)
    assert code == 0 and "rows\t0" in out
    assert len(err.splitlines()) == 1 and "corrupt" in err and "internal error" not in err
    _damaged_cache(path)
    code, out, err = _run_cli(["cache", "clear"], tmp_path)
    assert code == 0 and "internal error" not in err
    assert "cleared 0 cached score(s)" in err and "deleted 2 damaged copies" in err
    assert not list(path.parent.glob("scores.sqlite.corrupt-*"))


def test_cache_info_tsv_has_a_header_and_json_is_one_object(tmp_path: Path) -> None:
    import json

    path = tmp_path / "xdg" / "aescore" / "scores.sqlite"
    path.parent.mkdir(parents=True)
    with ScoreCache(path) as cache:
        cache.put_many([(CacheKey("/a", 1, 1), 0.3, None), (CacheKey("/b", 1, 1), 0.4, None)], W, R)
    code, out, _ = _run_cli(["cache", "info"], tmp_path)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "field\tvalue"
    assert all(len(line.split("\t")) == 2 for line in lines)
    assert "rows\t2" in lines and f"rows {W[:12]} {R}\t2" in lines
    code, out, _ = _run_cli(["cache", "info", "--json"], tmp_path)
    info = json.loads(out)
    assert isinstance(info, dict) and info["rows"] == 2 and info["corrupt_copies"] == []


def test_cache_info_is_a_table_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from aescore.cli import cache as cache_cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "120")
    with ScoreCache(tmp_path / "xdg" / "aescore" / "scores.sqlite") as cache:
        cache.put_many([(CacheKey("/a", 1, 1), 0.3, None)], W, R)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    cache_cli.info_cmd(as_json=False)
    out = capsys.readouterr().out
    assert "Scores per model and recipe" in out and "Last used" in out and "\t" not in out


def test_fault_probabilities_are_cached_and_an_older_cache_gains_the_column(tmp_path: Path) -> None:
    """`learn` reads a reasons head's fault probabilities from the cache beside the embedding; a
    cache made before that column existed gets it when opened, its rows kept (as misses for a run
    that needs the faults)."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE scores (path TEXT NOT NULL, weights TEXT NOT NULL, recipe TEXT NOT NULL, size INTEGER NOT NULL, "
        "mtime_ns INTEGER NOT NULL, score REAL NOT NULL, embedding BLOB, updated REAL NOT NULL, "
        "PRIMARY KEY (path, weights, recipe)) WITHOUT ROWID"
    )
    conn.execute("INSERT INTO scores VALUES ('/p/a.jpg', ?, ?, 10, 123, 0.5, ?, 0)", (W, R, b"\1" * 8))
    conn.commit()
    conn.close()
    k = CacheKey("/p/a.jpg", 10, 123)
    with ScoreCache(path) as cache:
        hit = cache.get_many([k], W, R, need_embedding=True)[k.path]
        assert hit.score == 0.5 and hit.embedding == b"\1" * 8 and hit.faults is None
        assert cache.get_many([k], W, R, need_faults=True) == {}
        cache.put_many([(k, 0.25, b"\2" * 8, b"\3" * 40)], W, R)
        assert cache.get_many([k], W, R, need_embedding=True, need_faults=True)[k.path].faults == b"\3" * 40
    with ScoreCache(path) as again:  # opened again: the column is there once
        assert again.get_many([k], W, R, need_faults=True)[k.path].score == 0.25
