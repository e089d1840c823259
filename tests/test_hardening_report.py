"""Issue 29's defects of `report`, discovery and printed text: each test failed before its fix.

`report -o` never overwrites a photo, a sidecar or any file aescore did not write, and refuses a
bad output name before scoring; a page written inside the ranked folder is not scored next time;
two reports writing one page leave it complete; control characters and bidi overrides from file
names and EXIF never reach the terminal raw; EXIF text stored as bytes reads as text.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin
from test_score_cli import base, cli

import helpers
from aescore.inference.exif import read_exif
from aescore.report import ReportPhoto, build_report, make_thumbnail
from aescore.report import page as page_module

ESC_NAME = "\x1b]0;pwned\x07.jpg"
BIDI_NAME = "\u202etxt.jpg"
UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e")


def _photos(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        path = folder / f"IMG_{k:04d}.jpg"
        Image.fromarray(helpers.pattern(64, 48, k)).save(path, quality=90)
        paths.append(path)
    return paths


def _exif_with_bytes(path: Path, make: bytes, model: bytes) -> None:
    """A JPEG whose Make is stored as UNDEFINED bytes and Model as ASCII that is not UTF-8."""
    head = b"II\x2a\x00\x08\x00\x00\x00"
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=head)
    ifd[0x010F] = make
    ifd.tagtype[0x010F] = 7  # UNDEFINED: exifread gives a list of numbers
    ifd[0x0110] = model
    Image.fromarray(helpers.pattern(64, 48, 9)).save(path, exif=b"Exif\x00\x00" + head + ifd.tobytes(8))


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))


# --------------------------------------------------------------------------- 1. report -o


@pytest.mark.parametrize("target", ["IMG_0000.jpg", "notes.txt", "IMG_0001.xmp", "new.png", "new.XMP"])
def test_report_never_overwrites_a_photo_a_sidecar_or_a_foreign_file(tiny_weights: Path, tmp_path: Path, target: str) -> None:
    shoot = tmp_path / "shoot"
    photos = _photos(shoot)
    (shoot / "notes.txt").write_text("my notes")
    before = {p: p.read_bytes() for p in shoot.iterdir()}
    r = cli(["report", shoot, "-o", shoot / target, *base(tiny_weights)])
    assert r.code == 2
    assert "scored" not in r.err  # refused before scoring
    assert {p: p.read_bytes() for p in shoot.iterdir()} == before  # nothing changed, nothing added
    assert not (shoot / (Path(target).stem + "_files")).exists()
    assert photos[0].read_bytes()[:3] == b"\xff\xd8\xff"


def test_report_replaces_its_own_page_only(tiny_weights: Path, tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    _photos(shoot)
    out = tmp_path / "cull.html"
    assert cli(["report", shoot, "-o", out, *base(tiny_weights)]).code == 0
    assert cli(["report", shoot, "-o", out, *base(tiny_weights)]).code == 0  # our page: replaced
    assert len(_page_data(out)["photos"]) == 3
    out.write_text("<!DOCTYPE html><p>a page someone else wrote</p>")
    assert cli(["report", shoot, "-o", out, *base(tiny_weights)]).code == 2
    assert "someone else" in out.read_text()
    link = tmp_path / "link.html"
    link.symlink_to(shoot / "IMG_0000.jpg")
    assert cli(["report", shoot, "-o", link, *base(tiny_weights)]).code == 2
    assert (shoot / "IMG_0000.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


# --------------------------------------------------------------------------- 8. a page inside the folder


def test_a_page_inside_the_ranked_folder_is_not_scored(tiny_weights: Path, tmp_path: Path) -> None:
    shoot = tmp_path / "p"
    _photos(shoot, 4)
    for _ in range(3):
        r = cli(["report", shoot, "-o", shoot / "inside.html", *base(tiny_weights)])
        assert r.code == 0 and r.summary()["scored"] == 4
    ranked = cli(["rank", shoot, *base(tiny_weights), "--format", "tsv"])
    assert ranked.code == 0 and len(ranked.text.splitlines()) == 4 and "_files" not in ranked.text
    # Named explicitly, the thumbnail folder is still searched: the user asked for it.
    assert len(cli(["rank", shoot / "inside_files", *base(tiny_weights), "--format", "tsv"]).text.splitlines()) == 4


# --------------------------------------------------------------------------- 9. two reports, one page


def test_two_reports_writing_one_page_leave_it_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    thumb = make_thumbnail(Image.fromarray(helpers.pattern(64, 48, 1)))
    photos = [ReportPhoto(path=str(tmp_path / f"{k}.jpg"), score=k / 10, rank=k + 1, thumbnail=thumb) for k in range(5)]
    out = tmp_path / "cull.html"
    plain_write = page_module.atomic_write_text

    def slow_write(*args: object, **kwargs: object) -> None:
        time.sleep(random.uniform(0, 0.02))  # widen the window between page and clean-up
        plain_write(*args, **kwargs)  # type: ignore[arg-type]
        time.sleep(random.uniform(0, 0.02))

    monkeypatch.setattr(page_module, "atomic_write_text", slow_write)
    for _ in range(8):  # the first round also races to create the thumbnail folder
        errors: list[BaseException] = []

        def one_run() -> None:
            try:
                build_report(photos, [], out, "t")
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=one_run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        folder = tmp_path / _page_data(out)["files"]
        assert sorted(f.name for f in folder.iterdir()) == [f"{k:06d}.jpg" for k in range(1, 6)]
        runs = [d.name for d in (tmp_path / "cull_files").iterdir() if d.is_dir()]
        assert runs == [folder.name]  # no partial or stale run left behind


# --------------------------------------------------------------------------- 10. output names


def test_bad_output_names_are_refused_before_scoring(tiny_weights: Path, tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    _photos(shoot)
    long_name = "x" * 246 + ".html"  # 251 bytes: the page's temporary name would not fit
    r = cli(["report", shoot, "-o", tmp_path / long_name, *base(tiny_weights)])
    assert r.code == 2 and "scored" not in r.err
    r = cli(["report", shoot, "-o", "/proc/self/cull.html", *base(tiny_weights)])  # not writable, even for root
    assert r.code == 2 and "scored" not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shoot"]


def test_an_undecodable_output_name_works(tiny_weights: Path, tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    _photos(shoot)
    out = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/cull\xff.html"))
    r = cli(["report", shoot, "-o", out, *base(tiny_weights)])
    assert r.code == 0, r.err
    data = _page_data(out)
    assert data["files"].startswith("cull%FF_files/run-")
    assert len(list((tmp_path / os.fsdecode(b"cull\xff_files")).glob("run-*/*.jpg"))) == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a folder without write permission")
def test_a_read_only_folder_is_refused_before_scoring(tiny_weights: Path, tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    _photos(shoot)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        r = cli(["report", shoot, "-o", locked / "cull.html", *base(tiny_weights)])
    finally:
        locked.chmod(0o755)
    assert r.code == 2 and "scored" not in r.err and not list(locked.iterdir())


def test_a_failed_page_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    thumb = make_thumbnail(Image.fromarray(helpers.pattern(64, 48, 1)))
    photos = [ReportPhoto(path=str(tmp_path / "a.jpg"), score=0.5, rank=1, thumbnail=thumb)]

    plain_write = page_module.atomic_write_text

    def failing_write(path: Path, text: str) -> None:
        if Path(path).suffix == ".html":
            raise OSError(28, "No space left on device")
        plain_write(path, text)

    monkeypatch.setattr(page_module, "atomic_write_text", failing_write)
    with pytest.raises(OSError):
        build_report(photos, [], tmp_path / "cull.html", "t")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 5. terminal escapes


def test_control_characters_and_bidi_overrides_never_reach_the_terminal(tiny_weights: Path, tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    _exif_with_bytes(shoot / ESC_NAME, b"\x1b]0;pwned\x07", b"Model \xc2\x9b31m")
    Image.fromarray(helpers.pattern(64, 48, 2)).save(shoot / BIDI_NAME)
    (shoot / "\x1b[2Jbroken.jpg").write_bytes(b"not a jpeg")
    for fmt in ("tsv", "table", "json", "jsonl", "csv"):
        r = cli(["rank", shoot, "--exif", *base(tiny_weights), "--format", fmt])
        assert r.code == 3
        out = r.out.decode("utf-8", "surrogateescape")
        for bad in UNSAFE:
            assert bad not in out, (fmt, bad)
            assert bad not in r.err, (fmt, bad)
        assert "skipped" in r.err and "\\x1b[2Jbroken.jpg" in r.err
    tsv = cli(["rank", shoot, "--exif", *base(tiny_weights), "--format", "tsv"]).text
    assert "\\x1b]0;pwned\\x07.jpg" in tsv and "\\u202etxt.jpg" in tsv
    # JSON keeps the exact name as data: the escapes decode back to it.
    rows = json.loads(cli(["rank", shoot, "--exif", *base(tiny_weights), "--json"]).text)
    assert sorted(Path(row["path"]).name for row in rows) == sorted([ESC_NAME, BIDI_NAME])
    assert "\x9b" in "".join(row["camera"] or "" for row in rows)


def test_names_in_the_page_have_bidi_overrides_neutralised(tmp_path: Path) -> None:
    photo = ReportPhoto(path=str(tmp_path / BIDI_NAME), score=0.5, rank=1, fields={"camera": "Cam\u202eera\x1b"})
    build_report([photo], [(str(tmp_path / ESC_NAME), "broken\x07")], tmp_path / "r.html", "t")
    data = _page_data(tmp_path / "r.html")
    shown = [data["photos"][0]["name"], data["photos"][0]["base"], data["photos"][0]["camera"],
             data["skipped"][0]["name"], data["skipped"][0]["reason"]]
    assert not any(bad in text for text in shown for bad in UNSAFE)
    assert data["photos"][0]["base"] == "\\u202etxt.jpg"
    assert data["photos"][0]["path"].endswith(BIDI_NAME)  # the exact path stays for `apply`


# --------------------------------------------------------------------------- 11. EXIF text stored as bytes


def test_exif_text_stored_as_bytes_reads_as_text(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    _exif_with_bytes(path, b"Canon\x00", b"Leica \xff M")
    camera = read_exif(path).camera
    assert camera == "Canon Leica \ufffd M"
