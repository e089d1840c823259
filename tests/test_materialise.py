"""--copy-to / --link-to re-runs: what is already in the destination is recognised, not copied again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from aescore.inference.discover import discover
from aescore.inference.materialise import materialise, materialise_result


def _photo(path: Path, colour: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (colour, 0, 0)).save(path)
    return path


def _listing(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    root = tmp_path / "Landscapes"
    _photo(root / "Landscape_1.jpg", 10)
    _photo(root / "Landscape_2.jpg", 20)
    _photo(root / "trip" / "Landscape_1.jpg", 30)  # same name, other photo
    return root


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_copy_into_a_subfolder_of_the_ranked_folder_is_idempotent(library: Path, mode: str) -> None:
    dest = library / "best"
    first = materialise_result([f.path for f in discover([library]).files], dest, mode)  # type: ignore[arg-type]
    assert [p.outcome for p in first.placements] == ["created", "created", "renamed"]
    listing = _listing(library)
    for _ in range(3):  # each re-run finds its own earlier output among the photos
        again = materialise_result([f.path for f in discover([library]).files], dest, mode)  # type: ignore[arg-type]
        assert again.created == [] and again.renamed == []
        assert _listing(library) == listing
    # copies are new files discover finds too (3 + 3); links resolve to the photos (3)
    assert len(again.already_there) == len(again.placements) == (6 if mode == "copy" else 3)


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_copy_a_folder_into_itself_is_a_no_op(library: Path, mode: str) -> None:
    listing = _listing(library)
    photos = [library / "Landscape_1.jpg", library / "Landscape_2.jpg"]
    result = materialise_result(photos, library, mode)  # type: ignore[arg-type]
    assert [p.outcome for p in result.placements] == ["already-there", "already-there"]
    assert [p.destination for p in result.placements] == photos
    assert _listing(library) == listing and not [p for p in library.iterdir() if p.is_symlink()]
    assert result.summary() == f"0 {'copied' if mode == 'copy' else 'linked'}, 2 already there, 0 renamed"


def test_result_counts_copied_already_there_and_renamed(library: Path, tmp_path: Path) -> None:
    dest = tmp_path / "sel"
    _photo(dest / "Landscape_2.jpg", 20)  # identical bytes already there
    photos = [library / "Landscape_1.jpg", library / "Landscape_2.jpg", library / "trip" / "Landscape_1.jpg"]
    dry = materialise_result(photos, dest, "copy", dry_run=True)
    real = materialise_result(photos, dest, "copy")
    assert dry.placements == real.placements
    assert [p.outcome for p in real.placements] == ["created", "already-there", "renamed"]
    assert [p.destination.name for p in real.renamed] == ["Landscape_1-1.jpg"]
    assert real.summary() == "1 copied, 1 already there, 1 renamed"
    assert materialise(photos, dest, "copy") == real.pairs


def test_identical_sources_share_one_copy_in_a_dry_run_too(tmp_path: Path) -> None:
    a = _photo(tmp_path / "a" / "IMG.jpg", 50)
    b = tmp_path / "b" / "IMG.jpg"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    dest = tmp_path / "out"
    dry = materialise_result([a, b], dest, "copy", dry_run=True)
    real = materialise_result([a, b], dest, "copy")
    assert [p.outcome for p in dry.placements] == [p.outcome for p in real.placements] == ["created", "already-there"]
    assert sorted(p.name for p in dest.iterdir()) == ["IMG.jpg"]


def test_rerun_through_the_old_api_creates_no_new_files(library: Path) -> None:
    dest = library / "best"
    materialise([f.path for f in discover([library]).files], dest, "copy")
    listing = _listing(library)
    materialise([f.path for f in discover([library]).files], dest, "copy")
    assert _listing(library) == listing  # before the fix: best/Landscape_1-1-1.jpg, ...
