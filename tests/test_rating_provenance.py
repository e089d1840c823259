"""Provenance of every rating (issue 25): aescore records the ratings it sets itself
(``aescore:Rating``) and the user's decisions it writes (``aescore:RatingSource="user"``), and
``learn`` leaves out only values aescore set that nobody changed.

The workflow tests run the real commands: Lightroom-rated sidecars -> ``rank --stars --write-xmp``
-> every rating is still the user's; photos without sidecars -> aescore's stars are left out until
the user changes one; a decisions file (what the contact sheet of ``report`` exports) -> ``apply``
-> those ratings are learned from. ``learn`` is checked through :func:`aescore.ratings.collect_ratings`
(what it reads) and once through the CLI's summary line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helpers
import pytest
from PIL import Image
from test_score_cli import cli

from aescore.inference.xmp import (
    RatingToWrite,
    rating_set_by_aescore,
    write_rating_sidecar,
    write_rating_sidecars,
)
from aescore.ratings import collect_ratings
from aescore.ratings.xmp import parse_packet

#: A sidecar as Lightroom writes it (its toolkit in ``x:xmptk``), holding the user's rating.
LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/>
 </rdf:RDF>
</x:xmpmeta>
"""


@pytest.fixture(autouse=True)
def _private_cache(private_cache: Path) -> None:
    """Every test here gets its own score cache."""


def _photos(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed, name in enumerate(names):
        path = folder / name
        Image.fromarray(helpers.pattern(80, 60, seed)).save(path, format="JPEG")
        out.append(path)
    return out


def _cli(args: list[Any]) -> tuple[int, str]:
    """Run the CLI in-process: exit status and stderr (also when it refuses)."""
    result = cli(args)
    return result.code, result.err


def _rank_write_xmp(folder: Path, weights: Path) -> None:
    code, err = _cli(["rank", folder, "--model", weights, "--workers", "0", "--device", "cpu", "--stars", "--write-xmp"])
    assert code == 0, err


def _set_rating(sidecar: Path, rating: int) -> None:
    """What Lightroom does when the user changes a photo's stars: only ``xmp:Rating`` changes."""
    text = sidecar.read_text(encoding="utf-8")
    new, n = re.subn(r'xmp:Rating="[^"]*"', f'xmp:Rating="{rating}"', text)
    assert n == 1
    sidecar.write_text(new, encoding="utf-8")


def _ratings(photos: list[Path], **kw: Any) -> dict[str, int]:
    report = collect_ratings([str(p) for p in photos], **kw)
    return {Path(r.path).name: r.rating for r in report.ratings}


# --------------------------------------------------------------------------- the rule


def test_the_rule_aescore_only_while_its_value_stands() -> None:
    # aescore set it and nobody changed it
    assert rating_set_by_aescore(4, "4", None, stamped=True, toolkit="aescore 1.0")
    # changed afterwards, or recorded as the user's: the user's
    assert not rating_set_by_aescore(5, "4", None, stamped=True, toolkit="aescore 1.0")
    assert not rating_set_by_aescore(4, None, "user", stamped=True, toolkit="aescore 1.0")
    # never touched by aescore: the user's
    assert not rating_set_by_aescore(3, None, None, stamped=False, toolkit=None)
    # an older aescore's sidecar (score, no mark): aescore's when it created the packet or
    # nothing tells; the user's in a packet another program created
    assert rating_set_by_aescore(3, None, None, stamped=True, toolkit=None)
    assert rating_set_by_aescore(3, None, None, stamped=True, toolkit="aescore 0.9.0")
    assert not rating_set_by_aescore(3, None, None, stamped=True, toolkit="Adobe XMP Core 7.0")


def test_writer_marks_what_it_set_and_what_it_kept(tmp_path: Path) -> None:
    new, kept, same, decided = _photos(tmp_path, ["new.jpg", "kept.jpg", "same.jpg", "decided.jpg"])
    for photo, rating in ((kept, 2), (same, 4), (decided, 1)):
        photo.with_suffix(".xmp").write_text(LIGHTROOM.format(rating=rating), encoding="utf-8")
    results = write_rating_sidecars(
        [RatingToWrite(new, 5, 0.9), RatingToWrite(kept, 5, 0.9), RatingToWrite(same, 4, 0.8),
         RatingToWrite(decided, 3, 0.5, overwrite_rating=True, by_user=True)],
        model="tiny@abc",
    )
    assert all(error is None for _, _, error in results)
    text = {p.name: p.with_suffix(".xmp").read_text(encoding="utf-8") for p in (new, kept, same, decided)}
    assert 'aescore:Rating="5"' in text["new.jpg"] and "RatingSource" not in text["new.jpg"]
    for name in ("kept.jpg", "same.jpg", "decided.jpg"):
        assert 'aescore:RatingSource="user"' in text[name] and "aescore:Rating=" not in text[name]
    assert parse_packet(new.with_suffix(".xmp").read_bytes()).by_aescore
    for photo in (kept, same, decided):
        assert not parse_packet(photo.with_suffix(".xmp").read_bytes()).by_aescore
    # a second identical run changes nothing
    again = write_rating_sidecars(
        [RatingToWrite(new, 5, 0.9), RatingToWrite(kept, 5, 0.9), RatingToWrite(same, 4, 0.8)], model="tiny@abc"
    )
    assert [c.changed for _, c, _ in again if c is not None] == [False, False, False]


def test_a_changed_rating_is_the_users_and_rank_then_marks_it(tmp_path: Path) -> None:
    (photo,) = _photos(tmp_path, ["a.jpg"])
    write_rating_sidecar(photo, 3, 0.6, model="tiny@abc")
    sidecar = photo.with_suffix(".xmp")
    assert parse_packet(sidecar.read_bytes()).by_aescore
    _set_rating(sidecar, 5)
    assert not parse_packet(sidecar.read_bytes()).by_aescore
    change = write_rating_sidecar(photo, 3, 0.6, model="tiny@abc")  # rank again: the user's 5 stays
    assert change.action == "kept-existing-rating" and change.new_rating == 5
    text = sidecar.read_text(encoding="utf-8")
    assert 'aescore:RatingSource="user"' in text and "aescore:Rating=" not in text
    _set_rating(sidecar, 3)  # even back to aescore's old value: still the user's
    assert not parse_packet(sidecar.read_bytes()).by_aescore
    # --overwrite-rating: aescore sets it again, and it is aescore's again
    write_rating_sidecar(photo, 2, 0.6, overwrite_rating=True, model="tiny@abc")
    found = parse_packet(sidecar.read_bytes())
    assert found.rating == 2 and found.by_aescore


def test_older_aescore_sidecars(tmp_path: Path) -> None:
    """A sidecar an older aescore stamped (score, no provenance mark): aescore's when aescore
    created it (``x:xmptk="aescore ..."``), the user's in a Lightroom sidecar."""
    ours, theirs = _photos(tmp_path, ["ours.jpg", "theirs.jpg"])
    old_ours = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="aescore 0.9.0"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:aescore="https://aescore.dev/ns/1.0/"'
        ' xmp:Rating="4" aescore:Score="0.8000" aescore:Model="tiny@abc"/></rdf:RDF></x:xmpmeta>'
    )
    ours.with_suffix(".xmp").write_text(old_ours, encoding="utf-8")
    theirs.with_suffix(".xmp").write_text(
        LIGHTROOM.format(rating=2).replace('xmp:Rating="2"', 'xmp:Rating="2" xmlns:aescore="https://aescore.dev/ns/1.0/" aescore:Score="0.3000"'),
        encoding="utf-8",
    )
    assert _ratings([ours, theirs]) == {"theirs.jpg": 2}
    assert collect_ratings([str(ours), str(theirs)]).by_aescore == 1


# --------------------------------------------------------------------------- the workflow


def test_lightroom_ratings_stay_the_users_after_rank_write_xmp(tmp_path: Path, tiny_weights: Path) -> None:
    lib = tmp_path / "lib"
    photos = _photos(lib, [f"IMG_{k}.jpg" for k in range(1, 6)])
    for k, photo in enumerate(photos, start=1):
        photo.with_suffix(".xmp").write_text(LIGHTROOM.format(rating=k), encoding="utf-8")
    _rank_write_xmp(lib, tiny_weights)
    for photo in photos:  # rank stamped its score but kept the user's rating
        assert 'aescore:Score="' in photo.with_suffix(".xmp").read_text(encoding="utf-8")
    report = collect_ratings([str(p) for p in photos])
    assert {Path(r.path).name: r.rating for r in report.ratings} == {f"IMG_{k}.jpg": k for k in range(1, 6)}
    assert report.by_aescore == 0 and report.by_user == 5
    _rank_write_xmp(lib, tiny_weights)  # a second run changes nothing about that
    assert _ratings(photos) == {f"IMG_{k}.jpg": k for k in range(1, 6)}


def test_aescore_stars_are_left_out_until_the_user_changes_one(tmp_path: Path, tiny_weights: Path) -> None:
    lib = tmp_path / "lib"
    photos = _photos(lib, [f"IMG_{k}.jpg" for k in range(1, 5)])
    (lib / "IMG_4.xmp").write_text(LIGHTROOM.format(rating=1), encoding="utf-8")  # one the user rated
    _rank_write_xmp(lib, tiny_weights)
    report = collect_ratings([str(p) for p in photos])
    assert {Path(r.path).name: r.rating for r in report.ratings} == {"IMG_4.jpg": 1}
    assert report.by_aescore == 3 and report.by_user == 1
    assert len(collect_ratings([str(p) for p in photos], include_aescore=True).ratings) == 4
    # the user changes one of aescore's stars (in Lightroom): that one is theirs now
    first = lib / "IMG_1.xmp"
    old = parse_packet(first.read_bytes()).rating
    assert old is not None
    _set_rating(first, 5 if old != 5 else 4)
    report = collect_ratings([str(p) for p in photos])
    assert {Path(r.path).name for r in report.ratings} == {"IMG_1.jpg", "IMG_4.jpg"}
    assert report.by_aescore == 2 and report.by_user == 2
    _rank_write_xmp(lib, tiny_weights)  # and stays theirs when rank runs again
    assert collect_ratings([str(p) for p in photos]).by_user == 2

    # learn's summary line reports both counts (it then refuses: far fewer than 50 ratings)
    code, err = _cli(["learn", lib, "--name", "mine", "--device", "cpu"])
    assert code != 0  # refused: too few ratings
    assert "2 of your rating(s) used; 2 rating(s) aescore set itself and nobody changed left out" in err


def test_apply_writes_the_users_decisions_and_learn_uses_them(tmp_path: Path, tiny_weights: Path) -> None:
    lib = tmp_path / "lib"
    photos = _photos(lib, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    _rank_write_xmp(lib, tiny_weights)  # aescore's stars first, as after `rank --write-xmp`
    assert _ratings(photos) == {}
    # what the contact sheet of `aescore report` exports: a star key, a reject, a pick, one left alone
    stars = {p.name: parse_packet(p.with_suffix(".xmp").read_bytes()).rating for p in photos}
    decisions = [
        {"path": str(lib / "a.jpg"), "rating": 5, "pick": False, "score": 0.9},
        {"path": str(lib / "b.jpg"), "rating": -1, "pick": False, "score": 0.2},
        {"path": str(lib / "c.jpg"), "rating": stars["c.jpg"], "pick": False, "score": 0.5},  # agrees with aescore
    ]
    doc = {"format": "aescore-decisions", "version": 1, "model": "tiny@abc", "decisions": decisions}
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    code, err = _cli(["apply", path])
    assert code == 0, err
    report = collect_ratings([str(p) for p in photos])
    assert {Path(r.path).name: r.rating for r in report.ratings} == {"a.jpg": 5, "b.jpg": -1, "c.jpg": stars["c.jpg"]}
    assert report.by_user == 3 and report.by_aescore == 1  # d.jpg: aescore's stars, nobody decided
    # a pick on a photo without a sidecar: the suggested stars, applied as the user's decision
    (e,) = _photos(tmp_path / "more", ["e.jpg"])
    doc["decisions"] = [{"path": str(e), "rating": 3, "pick": True, "score": 0.7}]
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert _cli(["apply", path])[0] == 0
    assert _ratings([e]) == {"e.jpg": 3}
