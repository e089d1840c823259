"""One sidecar per photo, the one that exists (issue 25): ``--write-xmp`` and ``apply`` update a
photo's existing sidecar(s) in their own style, both alike where both styles exist, and create
one in ``--xmp-style`` only for a photo that has none."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helpers
import pytest
from PIL import Image
from test_score_cli import cli

from aescore.inference.xmp import RatingToWrite, sidecar_targets, write_rating_sidecars
from aescore.ratings.xmp import parse_packet

SIDECAR = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/>
 </rdf:RDF>
</x:xmpmeta>
"""

#: The user's sidecars of the library below: name -> rating.
USER_SIDECARS = {"a.jpg.xmp": 4, "b.xmp": 2, "c.xmp": 5, "c.jpg.xmp": 5}


@pytest.fixture(autouse=True)
def _private_cache(private_cache: Path) -> None:
    """Every test here gets its own score cache."""


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    """a: darktable-style sidecar, b: Lightroom-style, c: both, d: none."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for seed, name in enumerate("abcd"):
        Image.fromarray(helpers.pattern(80, 60, seed)).save(folder / f"{name}.jpg", format="JPEG")
    for name, rating in USER_SIDECARS.items():
        (folder / name).write_text(SIDECAR.format(rating=rating), encoding="utf-8")
    return folder


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _rating(path: Path) -> int | None:
    return parse_packet(path.read_bytes()).rating


def _score(path: Path) -> str | None:
    found = re.search(r'aescore:Score="([^"]*)"', path.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def _cli(args: list[Any]) -> tuple[int, str]:
    """Run the CLI in-process: exit status and stderr."""
    result = cli(args)
    return result.code, result.err


def _rank(folder: Path, weights: Path, *extra: str) -> tuple[int, str]:
    return _cli(["rank", folder, "--model", weights, "--workers", "0", "--device", "cpu", "--stars", "--write-xmp", *extra])


def test_rank_write_xmp_updates_the_sidecars_a_library_has(library: Path, tiny_weights: Path) -> None:
    before = _files(library)
    code, err = _rank(library, tiny_weights)
    assert code == 0, err
    assert _files(library) == before | {"d.xmp"}
    for name, rating in USER_SIDECARS.items():
        assert _rating(library / name) == rating, name  # the user's ratings are kept by default
        assert _score(library / name) is not None, name
    assert _score(library / "c.xmp") == _score(library / "c.jpg.xmp")
    assert _rating(library / "d.xmp") is not None
    assert "5 sidecar(s) written, 0 already up to date" in err
    again_code, again = _rank(library, tiny_weights)
    assert again_code == 0 and "0 sidecar(s) written, 5 already up to date" in again
    assert _files(library) == before | {"d.xmp"}


def test_rank_darktable_style_creates_only_where_none_exists(library: Path, tiny_weights: Path) -> None:
    before = _files(library)
    code, err = _rank(library, tiny_weights, "--xmp-style", "darktable")
    assert code == 0, err
    assert _files(library) == before | {"d.jpg.xmp"}
    assert all(_rating(library / name) == rating for name, rating in USER_SIDECARS.items())
    assert _score(library / "b.xmp") is not None


def test_dry_run_names_every_sidecar_and_writes_nothing(library: Path, tiny_weights: Path) -> None:
    snapshot = {p.name: p.read_bytes() for p in library.iterdir()}
    code, err = _rank(library, tiny_weights, "--dry-run")
    assert code == 0, err
    named = set(re.findall(r"aescore: would (?:create|update|leave) \S*/([^/\s]+\.xmp)", err))
    assert named == set(USER_SIDECARS) | {"d.xmp"}
    assert {p.name: p.read_bytes() for p in library.iterdir()} == snapshot


def _decisions(path: Path, folder: Path, rating: int, pick: bool = False) -> Path:
    entries = [{"path": str(folder / f"{n}.jpg"), "rating": rating, "score": 0.5, "pick": pick} for n in "abcd"]
    doc = {"format": "aescore-decisions", "version": 1, "model": "abc", "decisions": entries}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_apply_writes_both_styles_alike(library: Path, tmp_path: Path) -> None:
    before = _files(library)
    code, err = _cli(["apply", _decisions(tmp_path / "d.json", library, 1)])
    assert code == 0, err
    assert _files(library) == before | {"d.xmp"}
    for name in [*USER_SIDECARS, "d.xmp"]:
        assert _rating(library / name) == 1, name  # a decision replaces the rating
        assert _score(library / name) == "0.5000", name
    assert "5 sidecar(s) written, 0 already up to date" in err


def test_apply_pick_keeps_the_ratings_and_darktable_style_creates_dot_jpg_xmp(library: Path, tmp_path: Path) -> None:
    before = _files(library)
    code, err = _cli(["apply", _decisions(tmp_path / "d.json", library, 3, pick=True), "--xmp-style", "darktable"])
    assert code == 0, err
    assert _files(library) == before | {"d.jpg.xmp"}
    assert all(_rating(library / name) == rating for name, rating in USER_SIDECARS.items())
    assert _rating(library / "d.jpg.xmp") == 3


def test_sidecar_targets(tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    assert sidecar_targets(photo) == [tmp_path / "p.xmp"]
    assert sidecar_targets(photo, "darktable") == [tmp_path / "p.jpg.xmp"]
    (tmp_path / "p.XMP").write_text(SIDECAR.format(rating=2), encoding="utf-8")
    assert sidecar_targets(photo, "darktable") == [tmp_path / "p.XMP"]
    (tmp_path / "p.jpg.xmp").write_text(SIDECAR.format(rating=2), encoding="utf-8")
    assert sidecar_targets(photo) == [tmp_path / "p.jpg.xmp", tmp_path / "p.XMP"]
    assert sidecar_targets(photo, owns_shared=False) == [tmp_path / "p.jpg.xmp"]
    (tmp_path / "p.jpg.xmp").unlink()
    assert sidecar_targets(photo, owns_shared=False) == []
    assert sidecar_targets(photo, "darktable", owns_shared=False) == [tmp_path / "p.jpg.xmp"]


def test_shared_lightroom_name_still_belongs_to_the_raw(tmp_path: Path) -> None:
    """DSC_1.xmp is the RAW's: the JPEG's own DSC_1.jpg.xmp is written, DSC_1.xmp left alone."""
    for name in ("DSC_1.NEF", "DSC_1.jpg"):
        (tmp_path / name).write_bytes(b"never read")
    raw_sidecar = tmp_path / "DSC_1.xmp"
    raw_sidecar.write_text(SIDECAR.format(rating=3), encoding="utf-8")
    own = tmp_path / "DSC_1.jpg.xmp"
    own.write_text(SIDECAR.format(rating=2), encoding="utf-8")
    untouched = raw_sidecar.read_bytes()
    results = write_rating_sidecars([RatingToWrite(tmp_path / "DSC_1.jpg", 5, 0.9, overwrite_rating=True)])
    assert [(i, c.path if c else None, e) for i, c, e in results] == [(0, own, None)]
    assert _rating(own) == 5 and raw_sidecar.read_bytes() == untouched
    own.unlink()
    [(i, change, error)] = write_rating_sidecars([RatingToWrite(tmp_path / "DSC_1.jpg", 5, 0.9)])
    assert change is None and error is not None and "DSC_1.NEF" in error
    assert raw_sidecar.read_bytes() == untouched and not own.exists()
