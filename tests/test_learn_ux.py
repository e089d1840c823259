"""`aescore learn` for a newcomer (issue #25): the README states the rating floor, the refusal
names the flag that changes it, files that are not photos are skipped rather than "unrated", and
a personal model that ranks as the generic one does is said to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_learn import cli, content_rater, make_library, private, world, write_csv  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def test_readme_states_the_rating_floor_next_to_the_learn_example() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    example = text.index("aescore learn ~/Photos --name mine")
    after = text[example: example + 1200]
    assert re.search(r"at least 50 rated photos", after), after
    assert "--min-ratings" in after


def test_not_enough_ratings_names_a_setting_in_the_library_and_the_flag_in_the_cli() -> None:
    from aescore.cli.learn import _flag_line
    from aescore.learn import NotEnoughRatings, _check_enough

    with pytest.raises(NotEnoughRatings) as few:
        _check_enough([3, 4] * 6, 50, "the ratings found")
    assert few.value.setting == "min_rated" and "--min-ratings" not in str(few.value)
    assert "12 rated photo(s)" in str(few.value) and "at least 50" in str(few.value) and "min_rated" in str(few.value)
    line = _flag_line(few.value)
    assert "12 rated photo(s)" in line and "at least 50" in line and "(--min-ratings N changes this)" in line
    assert "min_rated" not in line
    with pytest.raises(NotEnoughRatings) as alike:  # enough photos, one rating: the flag would not help
        _check_enough([4] * 60, 50, "the ratings found")
    assert alike.value.setting is None and "all rated 4" in str(alike.value) and "changes this" not in str(alike.value)
    assert NotEnoughRatings("x").exit_code == few.value.exit_code == 1


def test_too_few_ratings_refusal_names_min_ratings(world: dict[str, Any], private: Path) -> None:  # noqa: F811
    lib = private / "lib"
    facts = make_library(lib)
    table = write_csv(private / "few.csv", {p: 3 + (i % 2) for i, p in enumerate(sorted(facts)[:12])})
    r = cli("learn", lib, "--ratings", table, "--name", "few", "--device", "cpu")
    assert r.code == 1
    assert "12 rated photo(s)" in r.err and "at least 50" in r.err and "(--min-ratings N changes this)" in r.err
    assert "min_rated" not in r.err and len(r.err.strip().splitlines()) == 1
    same = write_csv(private / "same.csv", {p: 4 for p in facts})
    r = cli("learn", lib, "--ratings", same, "--name", "few", "--device", "cpu")
    assert r.code == 1 and "all rated 4" in r.err and "--min-ratings" not in r.err


def test_unrated_counts_only_readable_photos(tmp_path: Path) -> None:
    from aescore.learn.features import unreadable_photos
    from aescore.ratings import collect_ratings

    make_library(tmp_path)
    good = sorted(str(p) for p in tmp_path.rglob("IMG_*"))[:2]
    empty, text = tmp_path / "empty.jpg", tmp_path / "notes.jpg"
    empty.write_bytes(b"")
    text.write_text("not a photo\n")
    report = collect_ratings([*good, str(empty), str(text)])
    assert report.unrated == 4 and report.unrated_photos == [*good, str(empty), str(text)]
    seen: list[tuple[str, str]] = []
    bad = unreadable_photos(report.unrated_photos, on_skip=lambda p, why: seen.append((p, why)))
    assert [p for p, _ in bad] == [str(empty), str(text)] and seen == bad
    assert all(why for _, why in bad)
    report.drop_unrated(p for p, _ in bad)
    assert report.unrated == 2 and report.unrated_photos == good


def test_learn_lists_non_photos_as_skipped_not_unrated(
    world: dict[str, Any], private: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    lib = private / "lib"
    facts = make_library(lib)
    rng = np.random.default_rng(3)
    table = write_csv(private / "all.csv", {p: content_rater(f, rng) for p, f in facts.items()})
    (lib / "shoot0" / "empty.jpg").write_bytes(b"")
    (lib / "shoot1" / "notes.JPG").write_text("a text file named .JPG\n")
    r = cli("learn", lib, "--ratings", table, "--name", "ux", "--device", "cpu", "--json")
    assert r.code == 3, r.err  # done, but some files were skipped
    out = json.loads(r.out)
    assert out["unreadable"] == 2 and out["photos"] == len(facts)
    assert "unrated" not in r.err, r.err  # every photo is rated; the two files are no photos
    skipped = [line for line in r.err.splitlines() if line.startswith("aescore: skipped ")]
    assert len(skipped) == 2, r.err
    assert any("empty.jpg: empty file" in line for line in skipped), skipped
    assert any("notes.JPG: " in line for line in skipped), skipped
    # a content rater is learned: the personal model does not rank as the generic one
    assert out["held_out"]["ranks_as_generic"] is False and "note:" not in r.err

    # The note and the JSON field, when the held-out ranking is the generic model's.
    from aescore.learn import evaluate

    monkeypatch.setattr(evaluate, "SAME_RANKING_RHO", -1.0)
    r = cli("learn", lib, "--ratings", table, "--name", "ux2", "--device", "cpu", "--json")
    out = json.loads(r.out)
    assert out["held_out"]["ranks_as_generic"] is True
    notes = [line for line in r.err.splitlines() if line.startswith("aescore: note: ")]
    assert notes == [
        (
            "aescore: note: the personal model ranks these photos as the generic model does: "
            "your ratings agree with it, or are too few to tell"
        )
    ], r.err
    r = cli("learn", lib, "--ratings", table, "--name", "ux3", "--device", "cpu")  # text output: the same note
    assert sum(line.startswith("aescore: note: the personal model ranks") for line in r.err.splitlines()) == 1


def test_compare_flags_a_ranking_equal_to_the_generic_one() -> None:
    from aescore.learn.evaluate import compare

    rng = np.random.default_rng(0)
    n = 60
    generic = rng.uniform(0.05, 0.95, n)
    r = rng.integers(1, 6, n)
    shoots = [f"s{i % 6}" for i in range(n)]
    folds = np.arange(n) % 3
    same = compare(3 * np.log(generic / (1 - generic)) + 1, generic, r, shoots, folds)
    assert same.ranks_as_generic and same.to_dict()["ranks_as_generic"] is True
    assert same.personal_accuracy.value == same.generic_accuracy.value
    other = compare(rng.normal(size=n), generic, r, shoots, folds)
    assert not other.ranks_as_generic and other.to_dict()["ranks_as_generic"] is False
