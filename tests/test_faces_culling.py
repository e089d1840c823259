"""Culling with the faces check (issue 24): best of a burst, the star cap, --reject-closed-eyes, the
reasons, --crop and --thumbs, the faces fields in every output, and the page's face boxes.

The photos are the public-domain portrait (tests/data/astronaut.jpg) and the closed-eyes and soft-face
cases test_faces.py derives from it, saved as PNG (lossless, and never decoded in JPEG draft mode,
so the faces are judged at the portrait's own size even under the tiny 64-px test model); the crop
tests add camera-like JPEGs that are draft-decoded and EXIF-rotated. Offline and CPU-only."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import helpers
import numpy as np
import pytest
from PIL import Image
from test_faces import eyes_painted_closed, face_blurred, only_face, portrait
from test_score_cli import cli

from aescore import cull
from aescore.checks import PhotoData, get_check
from aescore.cull import Photo, crops, output, people
from aescore.cull.crops import crop_box, parse_crop
from aescore.data.images import decode_rgb
from aescore.errors import UsageError
from aescore.faces import analyse
from aescore.inference import bursts, stars

T0 = 1_700_000_000  # mtimes: PNGs have no EXIF capture time


# --------------------------------------------------------------------------- photos and helpers


@pytest.fixture(scope="module")
def shoot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """open / closed / soft: one burst (same second); plain: a photo without a face, much later."""
    folder = tmp_path_factory.mktemp("shoot")
    rgb = portrait()
    box = only_face(analyse(rgb)).box
    images = {
        "open": rgb,
        "closed": eyes_painted_closed(rgb),
        "soft": face_blurred(rgb, box),
        "plain": helpers.pattern(300, 200, 3),
    }
    paths = {}
    for name, array in images.items():
        path = folder / f"{name}.png"
        Image.fromarray(array).save(path)
        t = T0 + (100 if name == "plain" else 0)
        os.utime(path, (t, t))
        paths[name] = path
    return paths


def base(weights: Path) -> list[Any]:
    return ["--model", weights, "--workers", "0", "--device", "cpu"]


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(r["path"]).stem: r for r in rows}


def photo(name: str, score: float, people_value: str | None = None, **fields: Any) -> Photo:
    """A Photo as score_photos gives it (with the faces check's verdict when ``people_value``)."""
    f: dict[str, Any] = {"score": score, "timestamp": float(T0), **fields}
    if people_value is not None:
        f["people"] = people_value
    return Photo(name, f)


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- best of a burst


def test_best_of_groups_skips_blocked_photos_unless_all_are() -> None:
    groups, scores, paths = [0, 0, 0, 1, 1], [0.9, 0.5, 0.7, 0.8, 0.6], list("abcde")
    assert bursts.best_of_groups(groups, scores, paths) == {0, 3}
    assert bursts.best_of_groups(groups, scores, paths, [True, False, False, True, True]) == {2, 3}
    assert bursts.best_of_groups(groups, scores, paths, [False] * 5) == {0, 3}
    with pytest.raises(ValueError):
        bursts.best_of_groups(groups, scores, paths, [True])


def test_group_bursts_never_picks_closed_eyes_while_a_frame_has_them_open() -> None:
    burst = [photo("blink", 0.95, "eyes closed"), photo("open", 0.60, "soft face"), photo("other", 0.80, "none")]
    cull.group_bursts(burst, seconds=2)
    assert [p.best for p in burst] == [False, False, True]
    everyone_blinks = [photo("a", 0.9, "eyes closed"), photo("b", 0.7, "eyes closed, soft face")]
    cull.group_bursts(everyone_blinks, seconds=2)
    assert [p.best for p in everyone_blinks] == [True, False]  # all closed: the score decides, as before
    no_faces = [photo("a", 0.9), photo("b", 0.7)]
    cull.group_bursts(no_faces, seconds=2)
    assert [p.best for p in no_faces] == [True, False]  # without the faces check: unchanged


def test_best_of_group_on_the_command_line(shoot: dict[str, Path], tiny_weights: Path) -> None:
    burst = [shoot["open"], shoot["closed"]]
    args = ["rank", *burst, *base(tiny_weights), "--group-bursts", "2", "--best-of-group", "--check", "faces", "--jsonl"]
    rows = cli(args).rows()
    assert [Path(r["path"]).stem for r in rows] == ["open"] and rows[0]["people"] == "none"
    plain = cli(["rank", *burst, *base(tiny_weights), "--group-bursts", "2", "--best-of-group", "--jsonl"]).rows()
    assert len(plain) == 1 and "people" not in plain[0]  # without faces the score alone decides


# --------------------------------------------------------------------------- stars, reject


def test_assign_stars_caps_and_rejects() -> None:
    assert stars.assign_stars([0.1, 0.5, 0.9], caps=[None, 2, 2]) == [1, 2, 2]
    assert stars.assign_stars([0.1, 0.5, 0.9], 0.3, caps=[5, -1, None]) == [-1, -1, 5]
    with pytest.raises(ValueError):
        stars.assign_stars([0.1, 0.5], caps=[None])


def test_star_cap_rule() -> None:
    run = [photo(f"p{k}", k / 10) for k in range(10)]
    run[9].fields["people"] = "eyes closed"  # the best score: 5 stars without the cap
    run[8].fields["people"] = "soft face"  # 4 stars without it
    run[7].fields["people"] = "none"
    cull.assign_stars(run)
    assert [p.stars for p in run[7:]] == [4, 2, 2]
    cull.assign_stars(run, face_cap=False)
    assert [p.stars for p in run[7:]] == [4, 4, 5]
    cull.assign_stars(run, reject_closed_eyes=True)
    assert [p.stars for p in run[7:]] == [4, 2, -1]
    cull.assign_stars(run, face_cap=False, reject_closed_eyes=True)
    assert [p.stars for p in run[7:]] == [4, 4, -1]
    assert people.star_cap({"score": 1.0}) is None  # no faces check: no cap


def test_star_cap_and_reject_on_the_command_line(shoot: dict[str, Path], tiny_weights: Path) -> None:
    files = [shoot[n] for n in ("open", "closed", "soft", "plain")]
    plain = by_name(cli(["rank", *files, *base(tiny_weights), "--stars", "--jsonl"]).rows())
    capped = by_name(cli(["rank", *files, *base(tiny_weights), "--stars", "--check", "faces", "--jsonl"]).rows())
    uncapped = by_name(cli(["rank", *files, *base(tiny_weights), "--stars", "--check", "faces", "--no-face-cap", "--jsonl"]).rows())
    for name in ("closed", "soft"):
        assert capped[name]["stars"] == min(2, plain[name]["stars"])
    for name in ("open", "plain"):
        assert capped[name]["stars"] == plain[name]["stars"]
    assert {n: r["stars"] for n, r in uncapped.items()} == {n: r["stars"] for n, r in plain.items()}


def test_reject_closed_eyes_writes_rating_minus_one(shoot: dict[str, Path], tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("open", "closed"):
        (folder / f"{name}.png").write_bytes(shoot[name].read_bytes())
    r = cli(["rank", folder, *base(tiny_weights), "--reject-closed-eyes", "--write-xmp", "--jsonl"])
    assert r.code == 0, r.err
    rows = by_name(r.rows())
    assert rows["closed"]["stars"] == -1 and rows["open"]["stars"] >= 1
    assert "people" not in rows["open"]  # the faces check ran for the rule, its fields were not asked for
    sidecar = (folder / "closed.xmp").read_text(encoding="utf-8")
    assert re.search(r'Rating(="|>)-1', sidecar), sidecar
    assert not re.search(r'Rating(="|>)-1', (folder / "open.xmp").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- reasons


def test_face_reasons_come_before_the_network_fault() -> None:
    run = [
        photo("a", 0.5, "eyes closed, soft face", top_fault="defocus"),
        photo("b", 0.5, "soft face", top_fault="noise"),
        photo("c", 0.5, "none", top_fault="haze"),
        photo("d", 0.5, "eyes closed"),  # no reasons check: no top_fault added
        photo("e", 0.5, top_fault="none"),  # no faces check: the network's
    ]
    people.combine_reasons(run)
    assert [p.fields.get("top_fault") for p in run] == ["eyes_closed", "face_soft", "haze", None, "none"]


def test_reasons_with_faces_on_the_command_line(shoot: dict[str, Path], shipped_models_only: None) -> None:
    files = [shoot[n] for n in ("open", "closed", "soft")]
    rows = by_name(cli(["rank", *files, "--reasons", "--check", "faces", "--device", "cpu", "--jsonl"]).rows())
    assert rows["closed"]["top_fault"] == "eyes_closed" and rows["soft"]["top_fault"] == "face_soft"
    from aescore.data.fault_kinds import FAULT_KINDS

    assert rows["open"]["top_fault"] in {*FAULT_KINDS, "none"}
    assert set(rows["closed"]["faults"]) == set(FAULT_KINDS)  # the network's probabilities stay
    alone = by_name(cli(["rank", *files, "--reasons", "--device", "cpu", "--jsonl"]).rows())
    assert all(r["top_fault"] in {*FAULT_KINDS, "none"} for r in alone.values())  # reasons alone: network only


# --------------------------------------------------------------------------- every output format


def test_every_format_shows_the_faces_fields(shoot: dict[str, Path], tiny_weights: Path) -> None:
    files = [shoot["closed"], shoot["plain"]]
    args = ["score", *files, *base(tiny_weights), "--check", "faces"]
    tsv = cli([*args, "--format", "tsv"]).text.splitlines()
    assert tsv[0].split("\t")[1:] == ["1", "1", "0", "eyes closed", str(shoot["closed"])]
    assert tsv[1].split("\t")[1:] == ["0", "0", "0", "none", str(shoot["plain"])]
    header, first = cli([*args, "--csv"]).text.splitlines()[:2]
    assert header == "rank,score,label,faces,eyes_closed,faces_soft,people,face_list,path"
    assert ",1,1,0,eyes closed,\"[{" in first
    for fmt in ("--json", "--jsonl"):
        out = cli([*args, fmt]).text
        rows = json.loads(out) if fmt == "--json" else [json.loads(x) for x in out.splitlines()]
        (face,) = rows[0]["face_list"]
        assert (rows[0]["faces"], rows[0]["eyes_closed"], rows[0]["people"]) == (1, 1, "eyes closed")
        assert face["eyes"] == "closed" and len(face["box_fraction"]) == 4 and rows[1]["face_list"] == []
    from rich.console import Console

    console = Console(width=200, record=True)
    run = cull.score_photos(files, cull.Settings(str(tiny_weights), "cpu", workers=0), checks=["faces"])
    console.print(output.build_table(run.photos, run.checks))
    table = console.export_text()
    assert "eyes closed" in table and "people" in table and "face_list" not in table
    assert run.photos[0].fields["face_list"][0]["eyes"] == "closed"  # the Python API


# --------------------------------------------------------------------------- the original size


def _scene(width: int, height: int, at: tuple[int, int], scale: int) -> Image.Image:
    """A soft gradient with the portrait enlarged ``scale`` times, its top-left corner at ``at``."""
    grad = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    face = Image.fromarray(portrait()).resize((448 * scale, 448 * scale), Image.Resampling.BICUBIC)
    grad.paste(face, at)
    return grad


def _face_in_scene(at: tuple[int, int], scale: int) -> tuple[float, float, float, float]:
    left, top, right, bottom = only_face(analyse(portrait())).box
    return (at[0] + scale * left, at[1] + scale * top, at[0] + scale * right, at[1] + scale * bottom)


def test_decode_records_the_size_before_draft_and_orientation(tmp_path: Path) -> None:
    img = _scene(2400, 1800, (0, 0), 1)
    upright = tmp_path / "upright.jpg"
    img.save(upright, quality=90)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display: stored turned CCW
    img.transpose(Image.Transpose.ROTATE_90).save(rotated, quality=90, exif=exif)
    for path in (upright, rotated):
        small, size = decode_rgb(path, min_shorter=64)
        assert size == (2400, 1800) and small.size == (300, 225)  # drafted to 1/8, upright
    assert decode_rgb(upright).size == (2400, 1800)


def test_crop_boxes_are_in_the_photos_own_pixels(tiny_weights: Path, tmp_path: Path) -> None:
    at, scale = (900, 300), 3
    img = _scene(2400, 1800, at, scale)
    upright = tmp_path / "upright.jpg"
    img.save(upright, quality=92)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    img.transpose(Image.Transpose.ROTATE_90).save(rotated, quality=92, exif=exif)
    face = _face_in_scene(at, scale)
    boxes = {}
    for draft in (True, False):  # draft: the checks see a 300 x 225 array; the box is the same
        settings = cull.Settings(str(tiny_weights), "cpu", workers=0, use_cache=False, draft=draft)
        run = cull.score_photos([upright, rotated], settings, checks=["faces", "framing"])
        cull.assign_crops(run.photos, (3, 4))
        for p in run.photos:
            assert p.fields["size"] == [2400, 1800] and p.fields["faces"] == 1
            boxes[(Path(p.path).stem, draft)] = p.crop
    reference = boxes[("upright", False)]
    for key, box in boxes.items():
        left, top, right, bottom = box
        assert 0 <= left < right <= 2400 and 0 <= top < bottom <= 1800, key
        assert abs((right - left) / (bottom - top) - 3 / 4) <= 0.5 / (bottom - top) + 1e-9, key
        assert max(abs(a - b) for a, b in zip(box, reference)) <= 0.04 * 2400, (key, box, reference)
        # around the face, with room above it
        fh = face[3] - face[1]
        assert left <= face[0] and right >= face[2] and bottom >= face[3], (key, box, face)
        assert top <= face[1] - 0.4 * fh, (key, box, face)


def test_crop_box_rules() -> None:
    # faces: the main faces with room around them, grown to the aspect, inside the photo
    face = (0.40, 0.30, 0.50, 0.45)  # 400 x 300 px of a 4000 x 2000 photo: 400 x 300 px face
    box = crop_box((4000, 2000), (1, 1), [face])
    left, top, right, bottom = box
    assert right - left == bottom - top
    assert left <= 1600 - 0.5 * 400 and right >= 2000 + 0.5 * 400 and top <= 600 - 0.6 * 300 + 1 and bottom >= 900 + 0.8 * 300 - 1
    # a tiny background face does not widen the box; a face near the edge is kept inside
    assert crop_box((4000, 2000), (1, 1), [face, (0.9, 0.1, 0.905, 0.11)]) == box
    edge = crop_box((4000, 2000), (1, 1), [(0.0, 0.0, 0.05, 0.1)])
    assert edge[0] == 0 and edge[1] == 0
    # never fewer pixels than the thumbnail: a small face in a big photo gives at least W x H
    small = crop_box((4000, 3000), (400, 300), [(0.5, 0.5, 0.51, 0.51)])
    assert (small[2] - small[0], small[3] - small[1]) == (400, 300)
    # never larger than the photo: a big face and a tall aspect give the photo's full height
    assert crop_box((600, 400), (1, 2), [(0.1, 0.1, 0.9, 0.9)]) == (200, 0, 400, 400)
    # no faces: the largest box, slid to the structure (a grid strong on the right)
    grid = [[0, 0, 0, 0, 0, 0, 255, 255]] * 4
    assert crop_box((800, 400), (1, 1), None, grid) == (400, 0, 800, 400)
    assert crop_box((400, 800), (1, 1), None, [[0], [0], [255], [0]]) == (0, 200, 400, 600)  # ties: nearer the centre
    # no structure (a flat photo) or none known: centred
    assert crop_box((800, 400), (1, 1), None, [[0] * 8] * 4) == (200, 0, 600, 400)
    assert crop_box((800, 400), (1, 1)) == (200, 0, 600, 400)
    assert crop_box((800, 400), (2, 1)) == (0, 0, 800, 400)  # the photo's own aspect: all of it


@pytest.mark.parametrize("text", ["0x5", "5x0", "abc", "100", "-3x4", "20000x10", "1.5x2", ""])
def test_parse_crop_refuses_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_crop(text)
    assert "\n" not in str(err.value) and "--crop" in str(err.value)


def test_framing_check_without_faces_places_the_crop_on_the_structure() -> None:
    flat = np.full((200, 400, 3), 128, np.uint8)
    busy = flat.copy()
    busy[:, 300:] = helpers.pattern(100, 200, 1)  # structure on the right quarter only
    check = get_check("framing")
    fields = check.compute(PhotoData("x.png", busy, size=(4000, 2000)))
    assert fields["size"] == [4000, 2000]
    photos = [Photo("x.png", {"score": 0.5, **fields})]
    cull.assign_crops(photos, (1, 1))
    assert photos[0].crop == (2000, 0, 4000, 2000)
    flat_fields = check.compute(PhotoData("y.png", flat))
    assert flat_fields["size"] == [400, 200] and not any(any(r) for r in flat_fields["structure"])
    with pytest.raises(ValueError, match="framing"):
        cull.assign_crops([Photo("z.png", {"score": 0.5})], (1, 1))


# --------------------------------------------------------------------------- --crop and --thumbs


def test_crop_column_in_every_format(shoot: dict[str, Path], tiny_weights: Path) -> None:
    args = ["score", shoot["open"], shoot["plain"], *base(tiny_weights), "--crop", "60x80"]
    tsv = cli([*args, "--format", "tsv"]).text.splitlines()
    fields = tsv[0].split("\t")
    assert len(fields) == 3 and re.fullmatch(r"\d+,\d+,\d+,\d+", fields[1]) and fields[2] == str(shoot["open"])
    rows = cli([*args, "--jsonl"]).rows()
    face = only_face(analyse(portrait())).box
    left, top, right, bottom = rows[0]["crop"]
    assert abs((right - left) / (bottom - top) - 3 / 4) <= 0.5 / (bottom - top)  # the aspect, within half a pixel
    assert left <= face[0] and right >= face[2] and bottom >= face[3]
    left, top, right, bottom = rows[1]["crop"]
    assert (right - left, bottom - top) == (150, 200)  # no face: the largest 3:4 box of the 300 x 200 photo
    assert "people" not in rows[0]  # faces ran for the crop, its fields were not asked for
    header, first = cli([*args, "--csv"]).text.splitlines()[:2]
    assert header == "rank,score,label,crop,path" and re.search(r',"\d+,\d+,\d+,\d+",', first)


def test_thumbs_are_written_at_the_size_and_never_over_foreign_files(
    shoot: dict[str, Path], tiny_weights: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("open", "closed", "plain"):
        (folder / f"{name}.png").write_bytes(shoot[name].read_bytes())
    before = tree_hashes(folder)
    out = tmp_path / "thumbs"
    out.mkdir()
    (out / "open.jpg").write_bytes(b"my own notes, not a thumbnail")
    args = ["rank", folder, *base(tiny_weights), "--crop", "60x80", "--thumbs", out]
    dry = cli([*args, "--dry-run"])
    assert dry.code == 0 and dry.err.count("would write") == 3 and sorted(p.name for p in out.iterdir()) == ["open.jpg"]
    r = cli(args)
    assert r.code == 0, r.err
    assert "thumbnails: 3 written, 0 already there, 1 renamed" in r.err
    assert (out / "open.jpg").read_bytes() == b"my own notes, not a thumbnail"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["closed.jpg", "open-1.jpg", "open.jpg", "plain.jpg"]
    for name in ("closed.jpg", "open-1.jpg", "plain.jpg"):
        with Image.open(out / name) as thumb:
            assert thumb.format == "JPEG" and thumb.size == (60, 80)
    again = cli(args)
    assert "thumbnails: 0 written, 3 already there, 0 renamed" in again.err
    assert sorted(p.name for p in out.iterdir()) == names and tree_hashes(folder) == before
    # a new crop replaces aescore's own thumbnails, never the foreign file
    cli(["rank", folder, *base(tiny_weights), "--crop", "40x40", "--thumbs", out])
    with Image.open(out / "open-1.jpg") as thumb:
        assert thumb.size == (40, 40)
    assert (out / "open.jpg").read_bytes() == b"my own notes, not a thumbnail"
    assert tree_hashes(folder) == before and not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_thumbs_into_the_photos_own_folder_never_touch_a_photo(tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "shoot"
    folder.mkdir()
    Image.fromarray(portrait()).save(folder / "open.jpg", quality=90)
    before = tree_hashes(folder)
    r = cli(["rank", folder, *base(tiny_weights), "--crop", "50x50", "--thumbs", folder])
    assert r.code == 0, r.err
    assert tree_hashes(folder)["open.jpg"] == before["open.jpg"]  # its own name is the photo's: taken
    with Image.open(folder / "open-1.jpg") as thumb:
        assert thumb.size == (50, 50)


@pytest.mark.parametrize("extra, needle", [
    (["--crop", "0x5"], "--crop must be WIDTHxHEIGHT"),
    (["--crop", "wide"], "--crop must be WIDTHxHEIGHT"),
    (["--thumbs", "out"], "--thumbs needs --crop"),
    (["--crop", "10x10", "--thumbs", "FILE"], "exists and is not a folder"),
])
def test_bad_crop_and_thumbs_options_are_one_line(
    shoot: dict[str, Path], tiny_weights: Path, tmp_path: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from aescore.cli.main import main

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    extra = [str(a_file) if x == "FILE" else str(tmp_path / x) if x == "out" else x for x in extra]
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in ["rank", shoot["open"], *base(tiny_weights), *extra]])
    err = capsys.readouterr().err
    assert done.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert "scored" not in err  # refused before any photo was read
    assert a_file.read_text() == "mine" and not (tmp_path / "out").exists()


def test_write_thumbs_needs_crops(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="assign_crops"):
        crops.write_thumbs([Photo("a.png", {"score": 0.5})], tmp_path, (10, 10))


# --------------------------------------------------------------------------- the contact sheet


def test_the_page_carries_the_face_boxes(tmp_path: Path) -> None:
    from aescore.report import ReportPhoto, build_report

    faces = [
        {"box_fraction": [0.1, 0.2, 0.3, 0.4], "confidence": 0.9, "eyes": "closed", "focus": "sharp"},
        {"box_fraction": [0.5, 0.5, 0.6, 0.7], "confidence": 0.8, "eyes": "<b>open</b>", "focus": "soft"},
        {"box_fraction": [0.5, "x", 0.6, 0.7], "eyes": "open", "focus": "sharp"},  # malformed: left out
        {"box_fraction": [0.6, 0.5, 0.5, 0.7], "eyes": "open", "focus": "sharp"},  # empty: left out
    ]
    photos = [
        ReportPhoto(str(tmp_path / "a.jpg"), 0.7, 1, fields={"people": "eyes closed", "face_list": faces, "faces": 2}),
        ReportPhoto(str(tmp_path / "b.jpg"), 0.6, 2, fields={"people": "none", "face_list": [], "faces": 0}),
        ReportPhoto(str(tmp_path / "c.jpg"), 0.5, 3, fields={}),
    ]
    build_report(photos, [], tmp_path / "cull.html", "faces")
    page = (tmp_path / "cull.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.DOTALL).group(1))
    a, b, c = data["photos"]
    assert a["faces"] == [{"b": [0.1, 0.2, 0.3, 0.4], "eyes": "closed", "focus": "sharp"},
                          {"b": [0.5, 0.5, 0.6, 0.7], "eyes": "unknown", "focus": "soft"}]
    assert b["faces"] == [] and c["faces"] is None
    assert a["f"]["people"] == "eyes closed" and "face_list" not in a["extra"] and a["extra"]["faces"] == "2"
    assert any(f["name"] == "people" and f["badge"] and f["filter"] == "people" for f in data["fields"])


def test_a_cached_run_computes_another_crop_without_decoding(
    shoot: dict[str, Path], tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = cull.Settings(str(tiny_weights), "cpu", workers=0)
    files = [shoot["open"], shoot["plain"]]
    first = cull.score_photos(files, settings, checks=["faces", "framing"])
    cull.assign_crops(first.photos, (1, 1))
    import aescore.data.images

    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded although every field is cached")

    monkeypatch.setattr(aescore.data.images, "decode_rgb", no_decoding)
    again = cull.score_photos(files, settings, checks=["faces", "framing"])
    assert again.from_cache == 2 and [p.fields for p in again.photos] == [p.fields for p in first.photos]
    cull.assign_crops(again.photos, (16, 9))
    for before, after in zip(first.photos, again.photos):
        assert after.crop is not None and after.crop != before.crop
        w, h = after.crop[2] - after.crop[0], after.crop[3] - after.crop[1]
        assert abs(w / h - 16 / 9) <= 0.5 * (16 / 9) / h  # one side exact, the other within half a pixel


def test_report_with_faces_shows_them_and_without_does_not_run_them(
    shoot: dict[str, Path], tiny_weights: Path, tmp_path: Path
) -> None:
    files = [shoot["open"], shoot["closed"]]
    for extra, name in (([], "plain.html"), (["--check", "faces"], "faces.html")):
        r = cli(["report", *files, *base(tiny_weights), "-o", tmp_path / name, *extra])
        assert r.code == 0, r.err

    def photos(name: str) -> dict[str, Any]:
        page = (tmp_path / name).read_text(encoding="utf-8")
        data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.DOTALL).group(1))
        return {Path(p["path"]).stem: p for p in data["photos"]}

    plain, faces = photos("plain.html"), photos("faces.html")
    assert all(p["faces"] is None and "people" not in p["f"] for p in plain.values())  # opt-in: not run
    assert faces["closed"]["f"]["people"] == "eyes closed" and faces["closed"]["faces"][0]["eyes"] == "closed"
    assert faces["closed"]["stars"] <= 2 and faces["open"]["faces"][0]["eyes"] == "open"  # the star cap
