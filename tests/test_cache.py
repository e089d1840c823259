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
