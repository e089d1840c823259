"""The contact sheet (aescore.report) and `aescore apply`: page files, decisions, and a real browser.

The browser tests drive Debian's chromium through the playwright package (no browser download);
they skip with a message when either is missing (`.ci/run` / `make test` install both).
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from defusedxml.ElementTree import fromstring
from PIL import Image, ImageDraw

from aescore.cli.main import main
from aescore.inference.xmp import AESCORE_NS, XMP_NS
from aescore.report import (
    MAX_THUMBNAIL_BYTES,
    DecisionsError,
    ReportError,
    ReportPhoto,
    apply_decisions,
    build_report,
    load_decisions,
    make_thumbnail,
)
from aescore.report.page import script_json

INJECTION = "<img src=x onerror=alert(1)>.jpg"
N_PHOTOS = 24

FOREIGN_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <!-- a comment that must survive -->
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmp:Rating="{rating}" xmp:Label="Red" crs:Exposure2012="+0.35">
   <dc:subject><rdf:Bag><rdf:li>beach</rdf:li><rdf:li>family &amp; friends</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


# --------------------------------------------------------------------------- building a run



def _wait_until(page: Any, expression: str, timeout_s: float = 30.0) -> None:
    """Poll ``expression`` with ``page.evaluate`` until it is true. Not ``page.wait_for_function``:
    its in-page polling compiles the expression with ``new Function``, which the page's
    Content-Security-Policy (no 'unsafe-eval') forbids once the first check is not already true."""
    import time

    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expression}")
        time.sleep(0.05)

def _photo_image(rnd: random.Random, w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), tuple(rnd.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x, y = rnd.randrange(w), rnd.randrange(h)
        draw.ellipse((x, y, x + rnd.randrange(20, 150), y + rnd.randrange(20, 150)), fill=tuple(rnd.randrange(256) for _ in range(3)))
    return img


def _make_run(folder: Path, n: int = N_PHOTOS) -> list[ReportPhoto]:
    """n photos on disk (one named like an HTML injection) and their ReportPhotos, as the API gives them."""
    photos_dir = folder / "photos"
    photos_dir.mkdir(parents=True)
    rnd = random.Random(0)
    t0 = datetime(2024, 6, 1, 10, 0, 0)
    raw = []
    for i in range(n):
        name = INJECTION if i == 3 else f"IMG_{i:04d}.jpg"
        img = _photo_image(rnd, *((480, 320) if i % 3 else (320, 480)))
        path = photos_dir / name
        img.save(path, quality=85)
        raw.append((path, img, i, round(rnd.random(), 4)))
    raw.sort(key=lambda r: -r[3])
    photos = []
    for rank, (path, img, i, score) in enumerate(raw, start=1):
        group = i // 4
        photos.append(
            ReportPhoto(
                path=str(path),
                score=score,
                rank=rank,
                stars=1 + (n - rank) * 5 // n,  # 5 for the best ... 1 for the worst
                group=group,
                best=False,
                fields={
                    "capture_time": t0 + timedelta(seconds=3 * i),
                    "camera": "Canon EOS R5",
                    "lens": "RF 24-70mm",
                    "exposure": "1/250 s f/4 ISO 200",
                    "faults": {"blur": round(rnd.random(), 3), "noise": round(rnd.random(), 3)},
                    "top_fault": ("blur", "noise", None)[i % 3],
                },
                thumbnail=make_thumbnail(img),
                region_map=[[math.sin(x / 2 + y / 3 + i) for x in range(12)] for y in range(8)],
            )
        )
    for group in {p.group for p in photos}:  # the best-scored photo of each burst
        min((p for p in photos if p.group == group), key=lambda p: p.rank).best = True
    return photos


SKIPPED = [("/shoot/broken <b>bold</b>.jpg", "cannot decode: truncated <file>")]


# --------------------------------------------------------------------------- page files (no browser)


def test_script_json_escapes_markup_and_line_separators() -> None:
    data = {"name": "</script><!--<script>alert(1)//&amp;\u2028\u2029", "bad": "a\udcffb"}
    text = script_json(data)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == data  # the same strings come back (a lone surrogate included)


def test_build_report_writes_page_and_thumbnails(tmp_path: Path) -> None:
    photos = _make_run(tmp_path, 8)
    out = tmp_path / "cull.html"
    stats = build_report(photos, SKIPPED, out, "Shoot <1>", model="abc123")
    assert (stats.photos, stats.skipped, stats.thumbnails) == (8, 1, 8)
    assert 0 < stats.largest_thumbnail <= MAX_THUMBNAIL_BYTES
    page = out.read_text(encoding="utf-8")
    assert stats.page_bytes == len(page.encode("utf-8"))
    assert "<img src=x" not in page and "<b>bold" not in page  # names only as escaped JSON data
    assert "<title>Shoot &lt;1&gt;</title>" in page
    assert not re.search(r"(src|href)=\"https?:", page)  # nothing from the network
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1))
    assert [p["rank"] for p in data["photos"]] == list(range(1, 9))
    runs = [d for d in (tmp_path / "cull_files").iterdir() if d.is_dir()]
    assert len(runs) == 1 and data["files"] == f"cull_files/{runs[0].name}/"
    assert sorted(f.name for f in runs[0].iterdir()) == [f"{k:06d}.jpg" for k in range(1, 9)]
    assert (tmp_path / "cull_files" / ".aescore-report").is_file()

    # A second report replaces the page and its thumbnails; the old run's folder goes.
    build_report(photos[:3], [], out, "again")
    runs2 = [d for d in (tmp_path / "cull_files").iterdir() if d.is_dir()]
    assert len(runs2) == 1 and runs2[0] != runs[0] and len(list(runs2[0].iterdir())) == 3
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_build_report_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    photos = _make_run(tmp_path, 2)
    (tmp_path / "cull_files").mkdir()
    (tmp_path / "cull_files" / "page.css").write_text("someone else's")
    with pytest.raises(ReportError, match="not made by aescore"):
        build_report(photos, [], tmp_path / "cull.html", "t")
    assert sorted(p.name for p in (tmp_path / "cull_files").iterdir()) == ["page.css"]
    assert not (tmp_path / "cull.html").exists()
    with pytest.raises(ReportError, match="no such folder"):
        build_report(photos, [], tmp_path / "missing" / "cull.html", "t")


def test_thumbnails_stay_under_the_cap(tmp_path: Path) -> None:
    # Noise is the worst case for JPEG: quality alone cannot reach 60 kB at 512 px.
    noise = Image.effect_noise((3000, 2000), 120).convert("RGB")
    thumb = make_thumbnail(noise)
    with Image.open(io.BytesIO(thumb)) as img:
        assert max(img.size) <= 512
    assert len(thumb) <= MAX_THUMBNAIL_BYTES
    # An oversized thumbnail handed to build_report is re-encoded to keep the page's promise.
    buf = io.BytesIO()
    noise.resize((512, 341)).save(buf, "JPEG", quality=100)
    assert buf.tell() > MAX_THUMBNAIL_BYTES
    photo = ReportPhoto(path=str(tmp_path / "a.jpg"), score=0.5, rank=1, thumbnail=buf.getvalue())
    stats = build_report([photo], [], tmp_path / "r.html", "t")
    assert stats.largest_thumbnail <= MAX_THUMBNAIL_BYTES


def test_region_map_is_quantised_faithfully(tmp_path: Path) -> None:
    rmap = [[-2.0, 0.5, 1.25], [0.0, -0.75, 3.0]]
    photo = ReportPhoto(path="x.jpg", score=0.5, rank=1, region_map=rmap)
    build_report([photo], [], tmp_path / "r.html", "t")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    m = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))["photos"][0]["map"]
    assert (m["h"], m["w"], m["s"]) == (2, 3, 3.0)
    assert m["mean"] == pytest.approx(sum(map(sum, rmap)) / 6, abs=1e-4)
    decoded = [(b - 128) / 127 * m["s"] for b in base64.b64decode(m["q"])]
    assert decoded == pytest.approx([v for row in rmap for v in row], abs=m["s"] / 127)


def test_large_region_maps_are_block_averaged(tmp_path: Path) -> None:
    rnd = random.Random(0)
    rmap = [[rnd.gauss(0, 1) + (2.0 if x < 10 else 0.0) for x in range(37)] for _ in range(37)]  # RGNet at 300 px
    build_report([ReportPhoto(path="x.jpg", score=0.5, rank=1, region_map=rmap)], [], tmp_path / "r.html", "t")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    m = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))["photos"][0]["map"]
    assert (m["h"], m["w"]) == (19, 19) and len(base64.b64decode(m["q"])) == 361
    assert m["mean"] == pytest.approx(sum(map(sum, rmap)) / 37**2, abs=1e-4)
    decoded = [(b - 128) / 127 * m["s"] for b in base64.b64decode(m["q"])]
    left = sum(rmap[y][x] for y in range(2) for x in range(2)) / 4  # the first 2 x 2 block
    assert decoded[0] == pytest.approx(left, abs=m["s"] / 127)


# --------------------------------------------------------------------------- decisions files


def _decisions(entries: list[Any], **top: Any) -> dict[str, Any]:
    return {"format": "aescore-decisions", "version": 1, "model": "abc", "decisions": entries, **top}


def test_load_decisions_reports_each_bad_entry(tmp_path: Path) -> None:
    good = tmp_path / "a.jpg"
    good.write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    entries = [
        {"path": str(good), "rating": 4, "score": 0.7},
        {"path": str(good), "rating": 2, "score": 0.7},  # duplicate
        {"path": str(tmp_path / "gone.jpg"), "rating": 1, "score": 0.1},
        {"path": str(tmp_path / "folder.jpg"), "rating": 1, "score": 0.1},
        {"path": str(good), "rating": 6, "score": 0.1},
        {"path": str(good), "rating": True, "score": 0.1},
        {"path": str(good), "rating": 1},
        {"path": str(good), "rating": 1, "score": 0.1, "pick": "yes"},
        "not an object",
    ]
    f = tmp_path / "d.json"
    f.write_text(json.dumps(_decisions(entries)))
    loaded = load_decisions(f)
    assert [(d.path, d.rating) for d in loaded.decisions] == [(str(good), 4)]
    assert loaded.model == "abc"
    assert len(loaded.problems) == len(entries) - 1
    for n, (problem, needle) in enumerate(
        zip(
            loaded.problems,
            ["already decided by entry 1", "no such file", "not a regular file", "integer from -1 to 5",
             "integer from -1 to 5", "finite number", "true or false", "not a JSON object"],
        ),
        start=2,
    ):
        assert problem.startswith(f"entry {n}") and needle in problem and "\n" not in problem


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"\x00" * 10, "not a JSON"),
        (b"[" * 100_000, "not a JSON"),
        (json.dumps({"format": "other", "version": 1, "decisions": []}).encode(), "not an aescore decisions file"),
        (json.dumps(_decisions([], version=2)).encode(), "version 2"),
        (json.dumps(_decisions({})).encode(), "must be a list"),
    ],
)
def test_load_decisions_refuses_unusable_files(tmp_path: Path, content: bytes, needle: str) -> None:
    f = tmp_path / "d.json"
    f.write_bytes(content)
    with pytest.raises(DecisionsError, match=needle):
        load_decisions(f)


def test_load_decisions_size_cap_and_regular_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aescore.report.decisions as decisions

    f = tmp_path / "d.json"
    f.write_text(json.dumps(_decisions([])))
    monkeypatch.setattr(decisions, "MAX_DECISIONS_BYTES", 10)
    with pytest.raises(DecisionsError, match="larger than"):
        load_decisions(f)
    with pytest.raises(DecisionsError, match="cannot read|not a regular"):
        load_decisions(tmp_path)


def test_apply_cli_dry_run_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "IMG_1.JPG"
    photo.write_bytes(b"not even an image: apply never opens photos")
    before = photo.read_bytes()
    f = tmp_path / "d.json"
    f.write_text(json.dumps(_decisions([
        {"path": str(photo), "rating": 5, "score": 0.9},
        {"path": str(tmp_path / "gone.jpg"), "rating": 1, "score": 0.1},
    ])))
    with pytest.raises(SystemExit) as ex:
        main(["apply", str(f), "--dry-run", "--xmp-style", "darktable"])
    assert ex.value.code == 3
    err = capsys.readouterr().err
    assert "would create" in err and "IMG_1.JPG.xmp (rating 5)" in err
    assert "skipped: entry 2" in err and "no such file" in err
    assert not list(tmp_path.glob("*.xmp"))
    with pytest.raises(SystemExit) as ex:
        main(["apply", str(f), "--xmp-style", "darktable"])
    assert ex.value.code == 3
    assert "1 sidecar(s) written" in capsys.readouterr().err
    assert (tmp_path / "IMG_1.JPG.xmp").is_file() and photo.read_bytes() == before
    with pytest.raises(SystemExit) as ex:
        main(["apply", str(tmp_path / "none.json")])
    assert ex.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


# --------------------------------------------------------------------------- in a real browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        pytest.skip("chromium not installed (.ci/run installs it with apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def sheet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ReportPhoto]]:
    folder = tmp_path_factory.mktemp("sheet")
    photos = _make_run(folder)
    build_report(photos, SKIPPED, folder / "cull.html", "Test shoot", model="abc123", overlay_max_aspect=1.5)
    return folder / "cull.html", photos


class _Watch:
    """Requests, dialogs and console errors of one page; anything not file:/data:/blob: is aborted."""

    def __init__(self, page: Any) -> None:
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.route(re.compile(r"^(?!file:|data:|blob:)"), lambda route: (self.requests.append(route.request.url), route.abort()))

    def offline(self) -> bool:
        return all(u.split(":", 1)[0] in ("file", "data", "blob") for u in self.requests)


def _open(browser: Any, page_file: Path, height: int = 900) -> tuple[Any, Any, _Watch]:
    context = browser.new_context(viewport={"width": 1280, "height": height}, accept_downloads=True)
    page = context.new_page()
    watch = _Watch(page)
    page.goto(page_file.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return context, page, watch


def _shown_ranks(page: Any) -> list[int]:
    """Ranks of the cards on screen, in display order."""
    texts = page.evaluate("""() => [...document.querySelectorAll('.card')]
        .sort((a, b) => a.dataset.pos - b.dataset.pos)
        .map(c => c.querySelector('.meta div:nth-child(2)').textContent)""")
    return [int(t.split()[0][1:]) for t in texts]


def test_browser_every_thumbnail_loads_offline(browser: Any, sheet: tuple[Path, list[ReportPhoto]]) -> None:
    page_file, photos = sheet
    context, page, watch = _open(browser, page_file, height=3000)  # tall enough to lay out every card
    try:
        page.select_option("#view", "rank")
        _wait_until(page, f"document.querySelectorAll('.card img').length === {len(photos)}")
        _wait_until(page, "[...document.querySelectorAll('.card img')].every(i => i.complete)")
        widths = page.evaluate("[...document.querySelectorAll('.card img')].map(i => i.naturalWidth)")
        assert len(widths) == len(photos) and all(w > 0 for w in widths)
        assert page.inner_text("#stats").startswith(f"{len(photos)} photos")
        assert _shown_ranks(page) == list(range(1, len(photos) + 1))
        # The preview shows the original photo (a file: URL) with the region map over it.
        page.locator(".card").first.click()
        _wait_until(page, "document.getElementById('pv-img').src.startsWith('file:') && document.getElementById('pv-img').complete")
        assert page.evaluate("!document.getElementById('pv-map').hidden && document.getElementById('pv-map').width") == 12
        assert watch.offline() and watch.requests, watch.requests
        assert not watch.errors, watch.errors  # a CSP violation would be reported here
    finally:
        context.close()


def test_browser_names_render_as_text(browser: Any, sheet: tuple[Path, list[ReportPhoto]]) -> None:
    page_file, photos = sheet
    context, page, watch = _open(browser, page_file, height=3000)
    try:
        names = page.locator(".card .name").all_inner_texts()
        assert INJECTION in names
        page.locator("#skipped summary").click()
        assert page.inner_text("#skipped-table tbody") == "/shoot/broken <b>bold</b>.jpg\tcannot decode: truncated <file>"
        assert page.evaluate("document.querySelectorAll('[onerror], b, img[src=\"x\"]').length") == 0
        card = page.locator(".card", has_text=INJECTION)
        card.click()
        assert page.inner_text("#pv-name").endswith("/" + INJECTION)
        page.wait_for_timeout(200)
        assert watch.dialogs == [] and watch.errors == []
    finally:
        context.close()


def test_browser_filters_and_sort(browser: Any, sheet: tuple[Path, list[ReportPhoto]]) -> None:
    page_file, photos = sheet
    context, page, _ = _open(browser, page_file, height=3000)
    by_rank = sorted(photos, key=lambda p: p.rank)
    try:
        page.select_option("#view", "rank")
        page.fill("#min-score", "0.5")
        page.press("#min-score", "Enter")
        assert _shown_ranks(page) == [p.rank for p in by_rank if p.score >= 0.5]
        page.fill("#min-score", "")
        page.press("#min-score", "Enter")
        page.select_option("#stars", "4")
        assert _shown_ranks(page) == [p.rank for p in by_rank if p.stars >= 4]
        page.select_option("#stars", "any")
        page.select_option("#reason", "blur")
        assert _shown_ranks(page) == [p.rank for p in by_rank if p.fields["top_fault"] == "blur"]
        page.select_option("#reason", "")
        page.check("#best-only")
        assert _shown_ranks(page) == [p.rank for p in by_rank if p.best]
        page.uncheck("#best-only")
        page.select_option("#sort", "worst")
        assert _shown_ranks(page) == [p.rank for p in reversed(by_rank)]
        page.select_option("#sort", "time")
        assert _shown_ranks(page) == [p.rank for p in sorted(photos, key=lambda p: p.fields["capture_time"])]
        # By burst: one heading per group, the groups' photos together, each group's best marked.
        page.select_option("#sort", "rank")
        page.select_option("#view", "bursts")
        assert page.locator(".ghead").count() == len({p.group for p in photos})
        assert page.locator(".card.best").count() == len({p.group for p in photos})
        first_group = page.locator(".ghead").first.inner_text()
        assert first_group.startswith(f"Burst {by_rank[0].group} ")
    finally:
        context.close()


def test_browser_decisions_export_and_apply(
    browser: Any, sheet: tuple[Path, list[ReportPhoto]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page_file, photos = sheet
    by_rank = sorted(photos, key=lambda p: p.rank)
    # Foreign sidecars (Lightroom naming) for rank 1 (rated 2) and rank 4 (rated 5, then picked).
    side1 = Path(by_rank[0].path).with_suffix(".xmp")
    side4 = Path(by_rank[3].path).with_suffix(".xmp")
    side1.write_text(FOREIGN_SIDECAR.format(rating=2), encoding="utf-8")
    side4.write_text(FOREIGN_SIDECAR.format(rating=5), encoding="utf-8")
    context, page, watch = _open(browser, page_file)
    try:
        page.select_option("#view", "rank")
        page.locator("#grid").focus()
        for key in ["3", "ArrowRight", "x", "ArrowRight", "ArrowRight", "p", "ArrowRight", "5", "u", "ArrowRight", "0"]:
            page.keyboard.press(key)
        with page.expect_download() as dl:
            page.click("#export")
        download = dl.value
        assert download.suggested_filename == "cull-decisions.json"
        exported = tmp_path / download.suggested_filename
        download.save_as(exported)
        assert watch.offline() and not watch.errors and not watch.dialogs
    finally:
        context.close()
    doc = json.loads(exported.read_text(encoding="utf-8"))
    assert (doc["format"], doc["version"], doc["model"]) == ("aescore-decisions", 1, "abc123")
    got = [(d["path"], d["rating"], d["pick"]) for d in doc["decisions"]]
    assert got == [
        (by_rank[0].path, 3, False),
        (by_rank[1].path, -1, False),
        (by_rank[3].path, by_rank[3].stars, True),  # pick: the suggested stars
        (by_rank[5].path, 0, False),
    ]
    assert [d["score"] for d in doc["decisions"]] == [by_rank[k].score for k in (0, 1, 3, 5)]

    photo_bytes = {p.path: Path(p.path).read_bytes() for p in photos}
    with pytest.raises(SystemExit) as ex:
        main(["apply", str(exported)])
    assert ex.value.code in (0, None)
    assert "4 sidecar(s) written, 0 already up to date" in capsys.readouterr().err

    def rating(sidecar: Path) -> str:
        desc = fromstring(sidecar.read_bytes()).find(f".//{{http://www.w3.org/1999/02/22-rdf-syntax-ns#}}Description")
        return desc.get(f"{{{XMP_NS}}}Rating")

    assert rating(side1) == "3"
    assert rating(side4) == "5"  # a pick keeps the rating already there
    assert rating(Path(by_rank[1].path).with_suffix(".xmp")) == "-1"
    assert rating(Path(by_rank[5].path).with_suffix(".xmp")) == "0"
    # Exactly those sidecars, no others; photos untouched; every foreign field kept.
    assert sorted(p.name for p in side1.parent.glob("*.xmp")) == sorted(
        Path(by_rank[k].path).with_suffix(".xmp").name for k in (0, 1, 3, 5)
    )
    assert all(Path(p).read_bytes() == b for p, b in photo_bytes.items())
    for side in (side1, side4):
        text = side.read_text(encoding="utf-8")
        for kept in ['xmp:Label="Red"', 'crs:Exposure2012="+0.35"', "<rdf:li>family &amp; friends</rdf:li>",
                     "<!-- a comment that must survive -->", '<?xpacket end="w"?>']:
            assert kept in text
        assert f'"{AESCORE_NS}"' in text and "Model=\"abc123\"" in text


def test_browser_5000_photos_stay_light(browser: Any, tmp_path: Path) -> None:
    tiny = make_thumbnail(Image.new("RGB", (64, 48), (90, 120, 160)))
    photos = [
        ReportPhoto(path=f"/shoot/IMG_{k:05d}.jpg", score=1 - k / 5000, rank=k + 1, stars=3, thumbnail=tiny)
        for k in range(5000)
    ]
    stats = build_report(photos, [], tmp_path / "big.html", "5,000 photos")
    assert stats.thumbnails == 5000
    context, page, watch = _open(browser, tmp_path / "big.html")
    try:
        cards = page.locator(".card").count()
        assert 0 < cards <= 100  # only what is in view (plus a margin), not 5,000 cards
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_selector(".card .meta >> text=#5000")
        assert page.locator(".card").count() <= 100
        assert page.locator(".card img").count() == page.locator(".card").count()
        ms = page.evaluate("""() => { const t = performance.now();
            document.getElementById('sort').value = 'worst';
            document.getElementById('sort').dispatchEvent(new Event('change'));
            return performance.now() - t; }""")
        assert ms < 500, f"re-sorting 5,000 photos took {ms:.0f} ms"
        page.evaluate("window.scrollTo(0, 0)")
        _wait_until(page, "document.querySelector('.card[data-pos=\"0\"]') !== null")
        assert _shown_ranks(page)[0] == 5000
        assert watch.offline() and not watch.errors
    finally:
        context.close()


@pytest.mark.parametrize("size, kw", [((512, 341), {}), ((300, 512), {"progressive": True}), ((64, 48), {"exif": b"Exif\x00\x00" + bytes(200)})])
def test_thumbnail_size_reads_the_frame_header(size: tuple[int, int], kw: dict[str, Any]) -> None:
    from aescore.data.thumbs import thumbnail_size

    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, "JPEG", **kw)
    assert thumbnail_size(buf.getvalue()) == size
    assert thumbnail_size(buf.getvalue()[:2]) is None and thumbnail_size(b"GIF89a") is None


def test_browser_preview_draws_the_face_boxes(browser: Any, tmp_path: Path) -> None:
    """The faces check's boxes on the preview (issue 24): closed eyes marked in red with a label, a soft
    face dashed, placed by their fractions of the photo; text only; 'f' toggles them; the CSP holds."""
    img = Image.new("RGB", (400, 300), (90, 120, 150))
    path = tmp_path / "group.jpg"
    img.save(path, quality=85)
    faces = [
        {"box_fraction": [0.1, 0.2, 0.3, 0.5], "confidence": 0.9, "eyes": "closed", "focus": "sharp"},
        {"box_fraction": [0.6, 0.2, 0.8, 0.5], "confidence": 0.9, "eyes": "open", "focus": "soft"},
    ]
    photos = [ReportPhoto(str(path), 0.8, 1, fields={"people": "eyes closed, soft face", "face_list": faces, "faces": 2},
                          thumbnail=make_thumbnail(img)),
              ReportPhoto(str(tmp_path / "nobody.jpg"), 0.5, 2, fields={"people": "none", "face_list": [], "faces": 0})]
    Image.new("RGB", (300, 200)).save(photos[1].path)
    build_report(photos, [], tmp_path / "cull.html", "faces")
    context, page, watch = _open(browser, tmp_path / "cull.html")
    try:
        assert page.locator(".card .reason").first.inner_text() == "\u26a0 eyes closed, soft face"  # the badge
        assert page.locator("#people option").all_inner_texts() == ["any", "eyes closed, soft face"]  # the filter
        page.locator(".card").first.click()
        _wait_until(page, "document.getElementById('pv-img').complete && document.getElementById('pv-img').naturalWidth > 0")
        assert page.locator("#pv-faces .face").count() == 2
        closed = page.locator("#pv-faces .face.closed")
        assert closed.count() == 1 and closed.inner_text() == "eyes closed"
        assert page.locator("#pv-faces .face.soft:not(.closed)").count() == 1
        img_box = page.locator("#pv-img").bounding_box()
        face_box = closed.bounding_box()
        assert abs(face_box["x"] - (img_box["x"] + 0.1 * img_box["width"])) <= 3
        assert abs(face_box["width"] - 0.2 * img_box["width"]) <= 4 and abs(face_box["height"] - 0.3 * img_box["height"]) <= 4
        page.keyboard.press("f")
        assert page.evaluate("document.getElementById('pv-faces').hidden")
        page.keyboard.press("f")
        assert not page.evaluate("document.getElementById('pv-faces').hidden")
        page.keyboard.press("ArrowRight")  # a photo without faces: no boxes, no checkbox
        _wait_until(page, "document.querySelectorAll('#pv-faces .face').length === 0")
        assert page.evaluate("document.getElementById('pv-faces-label').hidden")
        assert watch.offline() and not watch.errors, watch.errors  # a CSP violation would be reported here
    finally:
        context.close()
