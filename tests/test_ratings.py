"""aescore.ratings: ratings from sidecars (both naming styles), embedded XMP, Lightroom and digiKam
catalogs and CSV, read-only, with aescore's own ratings left out."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from aescore.errors import DataError
from aescore.ratings import RatingSource, collect_ratings, parse_packet


def packet(rating: int | None, element: bool = False, extra: str = "") -> bytes:
    """An XMP packet with ``xmp:Rating`` as an attribute (Lightroom) or a child element (some tools)."""
    if rating is None:
        body = f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" {extra}/>'
    elif element:
        body = f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" {extra}><xmp:Rating>{rating}</xmp:Rating></rdf:Description>'
    else:
        body = f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}" {extra}/>'
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f"{body}</rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
    ).encode("utf-8")


def photo(path: Path, fmt: str | None = None, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), (120, 80, 40)).save(path, fmt, **save)
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime_ns of every file under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def by_name(report) -> dict[str, tuple[int, RatingSource]]:  # type: ignore[no-untyped-def]
    return {os.path.basename(r.path): (r.rating, r.source) for r in report.ratings}


def test_parse_packet_scale_and_forms() -> None:
    assert parse_packet(packet(4)).rating == 4
    assert parse_packet(packet(-1, element=True)).rating == -1
    assert parse_packet(packet(0)).rating is None  # XMP: 0 = unrated
    assert parse_packet(packet(None)).rating is None
    assert parse_packet(packet(9)).rating is None
    marked = parse_packet(packet(5, extra='xmlns:aescore="https://aescore.dev/ns/1.0/" aescore:Score="0.9"'))
    assert marked.rating == 5 and marked.by_aescore


def test_sidecars_of_both_styles_and_a_raw_jpeg_pair(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    pair_jpg = photo(lib / "IMG_1.JPG", "JPEG")
    pair_raw = lib / "IMG_1.CR3"
    pair_raw.write_bytes(b"\x00\x00\x00\x18ftypcrx not really a raw")
    (lib / "IMG_1.xmp").write_bytes(packet(4))  # Lightroom style, shared by the pair
    dt = photo(lib / "IMG_2.JPG", "JPEG")
    (lib / "IMG_2.JPG.xmp").write_bytes(packet(2, element=True))  # darktable style wins...
    (lib / "IMG_2.xmp").write_bytes(packet(5))  # ...over the stem sidecar
    zero = photo(lib / "IMG_3.JPG", "JPEG")
    (lib / "IMG_3.XMP").write_bytes(packet(0))  # upper-case extension, rating 0 = unrated
    photos = [str(p) for p in (pair_jpg, pair_raw, dt, zero)]
    before = snapshot(lib)
    report = collect_ratings(photos)
    assert by_name(report) == {
        "IMG_1.JPG": (4, RatingSource.SIDECAR),
        "IMG_1.CR3": (4, RatingSource.SIDECAR),
        "IMG_2.JPG": (2, RatingSource.SIDECAR),
    }
    assert report.unrated == 1 and not report.unreadable
    assert snapshot(lib) == before


def test_embedded_xmp_in_jpeg_png_tiff_webp_and_heic(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    itxt = PngImagePlugin.PngInfo()
    itxt.add_itxt("XML:com.adobe.xmp", packet(5).decode("utf-8"), zip=True)  # compressed iTXt
    files = {
        "a.jpg": (photo(lib / "a.jpg", "JPEG", xmp=packet(3)), 3),
        "b.png": (photo(lib / "b.png", "PNG", pnginfo=itxt), 5),
        "c.tif": (photo(lib / "c.tif", "TIFF", tiffinfo={700: packet(-1)}), -1),
        "d.webp": (photo(lib / "d.webp", "WEBP", xmp=packet(1)), 1),
        "e.jpg": (photo(lib / "e.jpg", "JPEG"), None),  # no XMP at all
    }
    heic = lib / "f.heic"
    heic.write_bytes(b"\x00\x00\x00\x1cftypheic" + b"\x00" * 300 + packet(2) + b"\x00" * 50)
    before = snapshot(lib)
    report = collect_ratings([str(p) for p, _ in files.values()] + [str(heic)])
    expected = {name: (r, RatingSource.EMBEDDED) for name, (_, r) in files.items() if r is not None}
    expected["f.heic"] = (2, RatingSource.EMBEDDED)
    assert by_name(report) == expected
    assert report.unrated == 1
    assert snapshot(lib) == before


def test_aescore_written_ratings_are_left_out_unless_asked(tmp_path: Path) -> None:
    from aescore.inference.xmp import write_rating_sidecar

    lib = tmp_path / "lib"
    mine = photo(lib / "mine.jpg", "JPEG")
    ours = photo(lib / "ours.jpg", "JPEG")
    (lib / "mine.xmp").write_bytes(packet(2))
    write_rating_sidecar(ours, 5, 0.93, model="tiny@abc")  # what `rank --write-xmp` leaves behind
    report = collect_ratings([str(mine), str(ours)])
    assert by_name(report) == {"mine.jpg": (2, RatingSource.SIDECAR)} and report.by_aescore == 1
    report = collect_ratings([str(mine), str(ours)], include_aescore=True)
    assert by_name(report)["ours.jpg"] == (5, RatingSource.SIDECAR)


def test_hostile_or_odd_sidecars_are_reported_not_read(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    dtd = photo(lib / "dtd.jpg", "JPEG")
    (lib / "dtd.xmp").write_bytes(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    bad = photo(lib / "bad.jpg", "JPEG", xmp=packet(4))
    (lib / "bad.xmp").write_bytes(b"<x:xmpmeta><unclosed")
    fifo = photo(lib / "fifo.jpg", "JPEG")
    os.mkfifo(lib / "fifo.xmp")  # would block a naive reader forever
    report = collect_ratings([str(dtd), str(bad), str(fifo)])
    unreadable = {os.path.basename(p): why for p, why in report.unreadable}
    assert set(unreadable) == {"dtd.xmp", "bad.xmp", "fifo.xmp"}
    assert "DTD" in unreadable["dtd.xmp"] and "regular" in unreadable["fifo.xmp"]
    # a broken sidecar does not hide the rating embedded in the photo
    assert by_name(report) == {"bad.jpg": (4, RatingSource.EMBEDDED)}


def make_lrcat(path: Path, rows: list[tuple[str, str, str, str, int | None, int | None]]) -> Path:
    """A Lightroom-shaped catalog: rows of (root, folder from root, base name, extension, rating, pick)."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE AgLibraryRootFolder (id_local INTEGER PRIMARY KEY, absolutePath TEXT, name TEXT);
        CREATE TABLE AgLibraryFolder (id_local INTEGER PRIMARY KEY, pathFromRoot TEXT, rootFolder INTEGER);
        CREATE TABLE AgLibraryFile (id_local INTEGER PRIMARY KEY, baseName TEXT, extension TEXT, folder INTEGER);
        CREATE TABLE Adobe_images (id_local INTEGER PRIMARY KEY, rating REAL, pick REAL, colorLabels TEXT, rootFile INTEGER);
        """
    )
    roots: dict[str, int] = {}
    folders: dict[tuple[int, str], int] = {}
    for k, (root, sub, base, ext, rating, pick) in enumerate(rows, start=1):
        rid = roots.setdefault(root, len(roots) + 1)
        conn.execute("INSERT OR IGNORE INTO AgLibraryRootFolder VALUES (?, ?, 'x')", (rid, root))
        fid = folders.setdefault((rid, sub), len(folders) + 1)
        conn.execute("INSERT OR IGNORE INTO AgLibraryFolder VALUES (?, ?, ?)", (fid, sub, rid))
        conn.execute("INSERT INTO AgLibraryFile VALUES (?, ?, ?, ?)", (k, base, ext, fid))
        conn.execute("INSERT INTO Adobe_images VALUES (?, ?, ?, '', ?)", (k, rating, pick, k))
    conn.commit()
    conn.close()
    return path


def make_digikam(path: Path, rows: list[tuple[str, str, str, int]]) -> Path:
    """A digiKam-shaped database: rows of (album root, album relative path, file name, rating)."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE AlbumRoots (id INTEGER PRIMARY KEY, label TEXT, specificPath TEXT);
        CREATE TABLE Albums (id INTEGER PRIMARY KEY, albumRoot INTEGER, relativePath TEXT);
        CREATE TABLE Images (id INTEGER PRIMARY KEY, album INTEGER, name TEXT);
        CREATE TABLE ImageInformation (imageid INTEGER PRIMARY KEY, rating INTEGER);
        """
    )
    roots: dict[str, int] = {}
    albums: dict[tuple[int, str], int] = {}
    for k, (root, rel, name, rating) in enumerate(rows, start=1):
        rid = roots.setdefault(root, len(roots) + 1)
        conn.execute("INSERT OR IGNORE INTO AlbumRoots VALUES (?, 'x', ?)", (rid, root))
        aid = albums.setdefault((rid, rel), len(albums) + 1)
        conn.execute("INSERT OR IGNORE INTO Albums VALUES (?, ?, ?)", (aid, rid, rel))
        conn.execute("INSERT INTO Images VALUES (?, ?, ?)", (k, aid, name))
        conn.execute("INSERT INTO ImageInformation VALUES (?, ?)", (k, rating))
    conn.commit()
    conn.close()
    return path


def test_lightroom_catalog_rejects_missing_files_and_read_only(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for name in ("a", "b", "c", "d"):
        photo(lib / "2024" / f"{name}.jpg", "JPEG")
    cat = make_lrcat(
        tmp_path / "cat.lrcat",
        [
            (f"{lib}/", "2024/", "a", "jpg", 5, 0),
            (f"{lib}/", "2024/", "b", "jpg", 3, -1),  # rejected flag wins over the stars
            (f"{lib}/", "2024/", "c", "jpg", None, 0),  # unrated
            (f"{lib}/", "2024/", "d", "jpg", 0, 1),  # picked but no stars: unrated
            (f"{lib}/", "2024/", "gone", "jpg", 4, 0),  # file no longer there
        ],
    )
    before = snapshot(tmp_path)
    report = collect_ratings([], catalog=cat)  # no PATH: every photo the catalog rates
    assert by_name(report) == {"a.jpg": (5, RatingSource.LIGHTROOM), "b.jpg": (-1, RatingSource.LIGHTROOM)}
    assert [os.path.basename(p) for p in report.missing] == ["gone.jpg"]
    # with PATH: catalog entries matched to the photos found there; XMP fills in the rest
    (lib / "2024" / "c.xmp").write_bytes(packet(1))
    report = collect_ratings([str(p) for p in sorted((lib / "2024").glob("*.jpg"))], catalog=cat)
    assert by_name(report) == {
        "a.jpg": (5, RatingSource.LIGHTROOM), "b.jpg": (-1, RatingSource.LIGHTROOM), "c.jpg": (1, RatingSource.SIDECAR),
    }
    (lib / "2024" / "c.xmp").unlink()
    assert snapshot(tmp_path) == before  # nothing written, no journal left beside the catalog


def test_a_catalog_locked_by_a_running_application_is_still_read(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    photo(lib / "a.jpg", "JPEG")
    cat = make_lrcat(tmp_path / "cat.lrcat", [(f"{lib}/", "", "a", "jpg", 4, 0)])
    holder = sqlite3.connect(cat, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # what Lightroom does while it runs
    try:
        report = collect_ratings([], catalog=cat)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert by_name(report) == {"a.jpg": (4, RatingSource.LIGHTROOM)}


def test_digikam_database_minus_one_is_unrated(tmp_path: Path) -> None:
    lib = tmp_path / "pics"
    for name in ("a", "b", "c"):
        photo(lib / "trip" / f"{name}.jpg", "JPEG")
    photo(lib / "top.jpg", "JPEG")
    db = make_digikam(
        tmp_path / "digikam4.db",
        [(str(lib), "/trip", "a.jpg", 4), (str(lib), "/trip", "b.jpg", -1), (str(lib), "/trip", "c.jpg", 0), (str(lib), "/", "top.jpg", 2)],
    )
    before = snapshot(tmp_path)
    report = collect_ratings([], digikam_db=db)
    assert by_name(report) == {
        "a.jpg": (4, RatingSource.DIGIKAM), "c.jpg": (0, RatingSource.DIGIKAM), "top.jpg": (2, RatingSource.DIGIKAM),
    }
    assert snapshot(tmp_path) == before


def test_csv_ratings_relative_paths_precedence_and_errors(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    a = photo(lib / "a.jpg", "JPEG")
    b = photo(lib / "b.jpg", "JPEG")
    (lib / "a.xmp").write_bytes(packet(1))
    (lib / "b.xmp").write_bytes(packet(3))
    table = tmp_path / "ratings.csv"
    table.write_text("path,rating\nlib/a.jpg,5\nlib/b.jpg,\n", encoding="utf-8")
    report = collect_ratings([str(a), str(b)], ratings_csv=table)
    assert by_name(report) == {"a.jpg": (5, RatingSource.CSV), "b.jpg": (3, RatingSource.SIDECAR)}
    table.write_text("lib/a.jpg,seven\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1"):
        collect_ratings([str(a)], ratings_csv=table)
    not_sqlite = tmp_path / "x.lrcat"
    not_sqlite.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="cannot be read|not the expected schema"):
        collect_ratings([], catalog=not_sqlite)
