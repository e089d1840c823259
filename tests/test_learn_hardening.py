"""`aescore learn` hardening (issue #29): an existing personal model is never overwritten silently,
catalogs are read without creating anything beside them (WAL mode, read-only folders), and bad
catalog values, paths and fractional ratings give one clear line or no rating, never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aescore.cli.main import get_app
from aescore.errors import AescoreError
from aescore.ratings import RatingSource, collect_ratings, parse_packet

LIGHTROOM_SCHEMA = """
    CREATE TABLE AgLibraryRootFolder (id_local INTEGER PRIMARY KEY, absolutePath TEXT);
    CREATE TABLE AgLibraryFolder (id_local INTEGER PRIMARY KEY, pathFromRoot TEXT, rootFolder INTEGER);
    CREATE TABLE AgLibraryFile (id_local INTEGER PRIMARY KEY, baseName TEXT, extension TEXT, folder INTEGER);
    CREATE TABLE Adobe_images (id_local INTEGER PRIMARY KEY, rating REAL, pick REAL, rootFile INTEGER);
"""
DIGIKAM_SCHEMA = """
    CREATE TABLE AlbumRoots (id INTEGER PRIMARY KEY, specificPath TEXT);
    CREATE TABLE Albums (id INTEGER PRIMARY KEY, albumRoot INTEGER, relativePath TEXT);
    CREATE TABLE Images (id INTEGER PRIMARY KEY, album INTEGER, name TEXT);
    CREATE TABLE ImageInformation (imageid INTEGER PRIMARY KEY, rating INTEGER);
"""


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def cli(*args: Any) -> Result:
    """Run the CLI; a known error becomes its one stderr line (as ``aescore.cli.main.main`` prints
    it), anything else (an "internal error") is raised and fails the test."""
    result = CliRunner().invoke(get_app(), [a if isinstance(a, str) else str(a) for a in args])
    if isinstance(result.exception, AescoreError):
        return Result(result.exception.exit_code, result.stdout, f"aescore: error: {result.exception}")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def photo(path: Path, colour: tuple[int, int, int] = (120, 80, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), colour).save(path, "JPEG")
    return path


def packet(rating: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def lrcat(path: Path, rows: list[tuple[str, str, Any, Any]], wal: bool = False) -> Path:
    """A Lightroom-shaped catalog of ``(folder, file name, rating, pick)`` rows; a value given as
    ``("sql", text)`` is inserted as that SQL literal (e.g. ``1e999``, infinity)."""
    conn = sqlite3.connect(path)
    if wal:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.executescript(LIGHTROOM_SCHEMA)
    _lightroom_rows(conn, rows)
    conn.commit()
    conn.close()
    return path


def _literal(value: Any) -> tuple[str, tuple[Any, ...]]:
    if isinstance(value, tuple):
        return value[1], ()
    return "?", (value,)


def _lightroom_rows(conn: sqlite3.Connection, rows: list[tuple[str, str, Any, Any]], start: int = 1) -> None:
    for k, (folder, name, rating, pick) in enumerate(rows, start=start):
        conn.execute("INSERT OR IGNORE INTO AgLibraryRootFolder VALUES (1, '/')")
        conn.execute("INSERT OR IGNORE INTO AgLibraryFolder VALUES (?, ?, 1)", (k, folder.lstrip("/") + "/"))
        base, ext = name.rsplit(".", 1)
        conn.execute("INSERT INTO AgLibraryFile VALUES (?, ?, ?, ?)", (k, base, ext, k))
        (r_sql, r_arg), (p_sql, p_arg) = _literal(rating), _literal(pick)
        conn.execute(f"INSERT INTO Adobe_images VALUES (?, {r_sql}, {p_sql}, ?)", (k, *r_arg, *p_arg, k))


def digikam(path: Path, rows: list[tuple[str, str, Any]], wal: bool = False) -> Path:
    """A digiKam-shaped database of ``(folder, file name, rating)`` rows (SQL literals as in :func:`lrcat`)."""
    conn = sqlite3.connect(path)
    if wal:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.executescript(DIGIKAM_SCHEMA)
    conn.execute("INSERT INTO AlbumRoots VALUES (1, '/')")
    for k, (folder, name, rating) in enumerate(rows, start=1):
        conn.execute("INSERT INTO Albums VALUES (?, 1, ?)", (k, folder))
        conn.execute("INSERT INTO Images VALUES (?, ?, ?)", (k, k, name))
        r_sql, r_arg = _literal(rating)
        conn.execute(f"INSERT INTO ImageInformation VALUES (?, {r_sql})", (k, *r_arg))
    conn.commit()
    conn.close()
    return path


def folder_state(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` (names, even of ``-wal``/``-shm`` files) with its sha256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def by_name(report: Any) -> dict[str, tuple[int, RatingSource]]:
    return {os.path.basename(r.path): (r.rating, r.source) for r in report.ratings}


@pytest.fixture()
def tiny_base(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny test model as the only extra model (its file is passed as --model)."""
    monkeypatch.delenv("AESCORE_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("AESCORE_DEBUG", raising=False)
    return tiny_weights


# --------------------------------------------------------------------------- 6: --name and --replace


def small_rated_library(root: Path, seed: int) -> Path:
    """4 shoots of 6 photos (warm or cool) and a ratings CSV that likes the warm ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(4):
        for k in range(6):
            warm = k % 2 == 0
            colour = (210, 90, 40) if warm else (40, 100, 210)
            arr = np.clip(np.array(colour) + rng.normal(0, 30, (24, 32, 3)), 0, 255).astype("uint8")
            path = root / f"shoot{s}" / f"IMG_{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            rows.append(f"{path},{4 + int(rng.integers(0, 2)) if warm else 1 + int(rng.integers(0, 2))}")
    table = root / "ratings.csv"
    table.write_text("path,rating\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return table


def model_files(name: str) -> dict[str, str]:
    from aescore.weights import user_models_dir

    folder = user_models_dir()
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(f"{name}.*"))}


def test_an_existing_personal_model_is_replaced_only_with_replace(tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aescore.weights import resolve_model, set_default_model

    table = small_rated_library(tmp_path / "lib", seed=0)
    args = ("learn", "--ratings", table, "--model", tiny_base, "--device", "cpu", "--min-ratings", "10", "--folds", "2")
    first = cli(*args, "--name", "mine", "--json")
    assert first.code == 0, first.err
    saved = model_files("mine")
    assert set(saved) == {"mine.json", "mine.safetensors"}

    # Refused before any work: not even the ratings are read.
    def no_work(*_: Any, **__: Any) -> None:
        raise AssertionError("ratings read although the name is taken")

    with monkeypatch.context() as mp:
        mp.setattr("aescore.ratings.collect_ratings", no_work)
        again = cli(*args, "--name", "mine", "--no-generic")
        assert again.code == 2
        assert "'mine' already exists" in again.err and "--replace" in again.err
        assert len(again.err.strip().splitlines()) == 1
        # The configured default is refused the same way, and the message says it is the default.
        set_default_model("mine")
        again = cli(*args, "--name", "mine", "--no-generic", "--set-default", "--force")
        assert again.code == 2 and "is the default model" in again.err
        assert len(again.err.strip().splitlines()) == 1
    assert model_files("mine") == saved

    replaced = cli(*args, "--name", "mine", "--no-generic", "--replace", "--json")
    assert replaced.code == 0, replaced.err
    assert "warning: the default model 'mine' was replaced by the new one" in replaced.err
    assert json.loads(replaced.out)["default"] is True  # it is the default: the new model
    card = json.loads(resolve_model("mine").read_text())
    assert card["training"]["head"]["uses_generic_score"] is False  # the new model
    assert resolve_model(None).stem == "mine"


def test_check_replace_refuses_an_existing_name_even_half_written(tmp_path: Path) -> None:
    from aescore.errors import UsageError
    from aescore.learn import check_replace
    from aescore.weights import user_models_dir

    folder = user_models_dir()
    folder.mkdir(parents=True)
    (folder / "other.safetensors").write_bytes(b"")  # half a model (its card lost) still counts
    with pytest.raises(UsageError, match="'other' already exists"):
        check_replace("other", replace=False)
    assert check_replace("other", replace=True) is False
    assert check_replace("new", replace=False) is False


# --------------------------------------------------------------------------- 7: nothing beside a catalog


def test_a_wal_mode_catalog_is_read_without_creating_anything_beside_it(tiny_base: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    photo(lib / "a.jpg")
    photo(lib / "b.jpg")
    shelf = tmp_path / "catalogs"
    shelf.mkdir()
    cat = lrcat(shelf / "cat.lrcat", [(str(lib), "a.jpg", 4, 0), (str(lib), "b.jpg", None, -1)], wal=True)
    db = digikam(shelf / "digikam4.db", [(str(lib), "a.jpg", 2), (str(lib), "b.jpg", 5)], wal=True)
    before = folder_state(shelf)
    assert set(before) == {"cat.lrcat", "digikam4.db"}
    assert by_name(collect_ratings([], catalog=cat)) == {"a.jpg": (4, RatingSource.LIGHTROOM), "b.jpg": (-1, RatingSource.LIGHTROOM)}
    assert by_name(collect_ratings([], digikam_db=db)) == {"a.jpg": (2, RatingSource.DIGIKAM), "b.jpg": (5, RatingSource.DIGIKAM)}
    assert folder_state(shelf) == before
    r = cli("learn", "--catalog", cat, "--digikam-db", db, "--name", "x", "--model", tiny_base)
    assert r.code == 1 and "not enough ratings" in r.err  # read, then refused: 2 photos
    assert folder_state(shelf) == before


def test_a_wal_left_beside_a_catalog_is_read_and_left_as_it_is(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for name in ("a", "b", "c"):
        photo(lib / f"{name}.jpg")
    running = tmp_path / "running"
    running.mkdir()
    cat = lrcat(running / "cat.lrcat", [(str(lib), "a.jpg", 3, 0)], wal=True)
    holder = sqlite3.connect(cat)  # the application, still running: its changes are in cat.lrcat-wal
    try:
        holder.execute("PRAGMA wal_autocheckpoint=0")
        _lightroom_rows(holder, [(str(lib), "b.jpg", 5, 0), (str(lib), "c.jpg", None, -1)], start=2)
        holder.commit()
        assert {"cat.lrcat-wal", "cat.lrcat-shm"} <= set(os.listdir(running))
        crashed = tmp_path / "crashed"  # the application stopped without tidying up: no -shm
        crashed.mkdir()
        for name in ("cat.lrcat", "cat.lrcat-wal"):
            shutil.copyfile(running / name, crashed / name)
        expected = {"a.jpg": (3, RatingSource.LIGHTROOM), "b.jpg": (5, RatingSource.LIGHTROOM), "c.jpg": (-1, RatingSource.LIGHTROOM)}
        for folder in (running, crashed):
            before = folder_state(folder)
            assert by_name(collect_ratings([], catalog=folder / "cat.lrcat")) == expected  # the -wal's changes too
            assert folder_state(folder) == before
    finally:
        holder.close()


def test_a_catalog_in_a_read_only_folder_is_read(tmp_path: Path) -> None:
    """Read-only media, simulated by a folder without write permission. Tests run as root here,
    where permissions are not enforced: then what makes read-only media work is checked instead,
    that nothing is created beside the catalog (SQLite would need to create -wal/-shm files)."""
    lib = tmp_path / "lib"
    photo(lib / "a.jpg")
    shelf = tmp_path / "readonly"
    shelf.mkdir()
    cat = lrcat(shelf / "cat.lrcat", [(str(lib), "a.jpg", 5, 0)], wal=True)
    db = digikam(shelf / "digikam4.db", [(str(lib), "a.jpg", 3)], wal=True)
    before = folder_state(shelf)
    for p in (cat, db):
        p.chmod(0o444)
    shelf.chmod(0o555)
    try:
        assert by_name(collect_ratings([], catalog=cat)) == {"a.jpg": (5, RatingSource.LIGHTROOM)}
        assert by_name(collect_ratings([], digikam_db=db)) == {"a.jpg": (3, RatingSource.DIGIKAM)}
        assert folder_state(shelf) == before
    finally:
        shelf.chmod(0o755)


# --------------------------------------------------------------------------- 10: one clear line


def test_infinite_and_text_ratings_in_catalogs_are_no_rating(tiny_base: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for name in ("inf", "text", "nan", "ok", "pick"):
        photo(lib / f"{name}.jpg")
    cat = lrcat(tmp_path / "cat.lrcat", [
        (str(lib), "inf.jpg", ("sql", "1e999"), 0),  # REAL infinity
        (str(lib), "text.jpg", "inf", ("sql", "-1e999")),
        (str(lib), "nan.jpg", "nan", "x"),
        (str(lib), "ok.jpg", 2, 0),
        (str(lib), "pick.jpg", ("sql", "1e999"), -1),  # still rejected: the flag is fine
    ])
    db = digikam(tmp_path / "digikam4.db", [
        (str(lib), "inf.jpg", ("sql", "1e999")), (str(lib), "text.jpg", "inf"), (str(lib), "ok.jpg", 4),
    ])
    assert by_name(collect_ratings([], catalog=cat)) == {"ok.jpg": (2, RatingSource.LIGHTROOM), "pick.jpg": (-1, RatingSource.LIGHTROOM)}
    assert by_name(collect_ratings([], digikam_db=db)) == {"ok.jpg": (4, RatingSource.DIGIKAM)}
    photos = [str(p) for p in sorted(lib.iterdir())]
    report = collect_ratings(photos, catalog=cat)  # with PATH: a bad catalog rating is unrated
    assert report.unrated == 3 and len(report.ratings) == 2
    for source in (("--catalog", cat), ("--digikam-db", db)):
        r = cli("learn", *source, "--name", "x", "--model", tiny_base)
        assert r.code == 1 and "not enough ratings" in r.err, r.err
        assert "internal error" not in r.err and len(r.err.strip().splitlines()) == 1
    table = tmp_path / "ratings.csv"
    for value in ("inf", "nan", "1e999", "3.7"):
        table.write_text(f"lib/ok.jpg,{value}\n", encoding="utf-8")
        r = cli("learn", "--ratings", table, "--name", "x", "--model", tiny_base)
        assert r.code == 1 and "line 1: rating must be -1 (rejected) or 0..5" in r.err, r.err


def test_bad_catalog_paths_are_one_clear_line(tiny_base: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    odd = photo(lib / os.fsdecode(b"caf\xff.jpg"))  # a file name that is not UTF-8
    photo(lib / "a.jpg")
    for option in ("--catalog", "--digikam-db", "--ratings"):
        r = cli("learn", option, str(tmp_path / "cat\0.lrcat"), "--name", "x", "--model", tiny_base)
        assert r.code == 2 and "NUL" in r.err and "\\x00" in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1
    # A catalog whose own name is not UTF-8, naming a photo whose name is not UTF-8 either
    # (stored as the raw bytes, as Lightroom and digiKam store what the file system gave them),
    # and an entry with a NUL byte, which no file can have.
    shelf = tmp_path / os.fsdecode(b"shelf\xff")
    shelf.mkdir()
    cat = lrcat(shelf / os.fsdecode(b"cat\xff.lrcat"), [
        (str(lib), "a.jpg", 4, 0),
        (str(lib), "nul\0.jpg", 5, 0),
        (str(lib), "renamed.jpg", 2, 0),
    ])
    conn = sqlite3.connect(cat)
    conn.execute(f"UPDATE AgLibraryFile SET baseName = CAST(x'{b'caf'.hex()}ff' AS TEXT) WHERE id_local = 3")
    conn.commit()
    conn.close()
    before = folder_state(shelf)
    report = collect_ratings([], catalog=cat)
    assert {r.path: r.rating for r in report.ratings} == {str(lib / "a.jpg"): 4, str(odd): 2}
    assert [os.path.basename(p) for p in report.missing] == ["nul\0.jpg"]
    r = cli("learn", "--catalog", cat, "--name", "x", "--model", tiny_base)
    assert r.code == 1 and "not enough ratings" in r.err, r.err
    assert folder_state(shelf) == before
    r = cli("learn", "--catalog", shelf / os.fsdecode(b"gone\xff.lrcat"), "--name", "x", "--model", tiny_base)
    assert r.code == 1 and "gone\\xff.lrcat: not found" in r.err, r.err


# --------------------------------------------------------------------------- 11: whole numbers only


def test_fractional_ratings_are_no_rating(tmp_path: Path) -> None:
    assert parse_packet(packet("3.7")).rating is None
    assert parse_packet(packet("-1.5")).rating is None  # not a reject
    assert parse_packet(packet("inf")).rating is None
    assert parse_packet(packet("3.0")).rating == 3  # a real with nothing after the point is fine
    assert parse_packet(packet("-1")).rating == -1
    lib = tmp_path / "lib"
    photos = [photo(lib / f"{name}.jpg") for name in ("frac", "neg", "whole", "lr", "lrpick", "dk")]
    (lib / "frac.xmp").write_bytes(packet("3.7"))
    (lib / "neg.xmp").write_bytes(packet("-1.5"))
    (lib / "whole.xmp").write_bytes(packet("4.0"))
    cat = lrcat(tmp_path / "cat.lrcat", [(str(lib), "lr.jpg", 3.7, 0), (str(lib), "lrpick.jpg", 2, -1.5)])
    db = digikam(tmp_path / "digikam4.db", [(str(lib), "dk.jpg", 3.7)])
    report = collect_ratings([str(p) for p in photos], catalog=cat, digikam_db=db)
    assert by_name(report) == {"whole.jpg": (4, RatingSource.SIDECAR), "lrpick.jpg": (2, RatingSource.LIGHTROOM)}
    assert report.unrated == 4
