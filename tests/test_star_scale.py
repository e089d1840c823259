"""Stars on a fixed, calibrated scale (issue 25): the absolute band caps the percentile stars."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import GOOD
from test_score_cli import cli

from aescore import cull
from aescore.cull import Photo
from aescore.inference import stars
from aescore.inference.stars import (
    REJECTED,
    STAR_SCALES,
    StarScale,
    assign_stars,
    resolve_star_scale,
    star_scale_for,
)

DEFAULT = "aescore-technical-lite0-exposure"
SCALE = STAR_SCALES[DEFAULT]
BEFORE = "aescore-technical-lite0"  # the default until issue 28: the same network and scores


@pytest.fixture(autouse=True)
def _private_cache(private_cache: Path) -> None:
    """Every test here scores with its own cache."""


def _photos(scores: list[float]) -> list[Photo]:
    return [Photo(path=f"/shoot/{k:03d}.jpg", fields={"score": s}) for k, s in enumerate(scores)]


# --------------------------------------------------------------------------- the scale itself


def test_default_model_has_one_calibrated_scale_in_order() -> None:
    assert set(STAR_SCALES) == {DEFAULT, BEFORE}
    before = STAR_SCALES[BEFORE]  # calibrated each on the same scores: the same cut-offs
    assert (before.flawed, before.four, before.five) == (SCALE.flawed, SCALE.four, SCALE.five) and before.sha256 != SCALE.sha256
    assert 0 < SCALE.flawed <= SCALE.four <= SCALE.five < 1
    card = json.loads((Path(__file__).resolve().parents[1] / "weights" / f"{DEFAULT}.json").read_text(encoding="utf-8"))
    assert SCALE.sha256 == card["sha256"]  # calibrated on exactly the shipped weights
    assert star_scale_for(DEFAULT) is SCALE and star_scale_for(DEFAULT, card["sha256"][:12]) is SCALE
    assert star_scale_for(DEFAULT, "0" * 12) is None  # other weights under the same name: no scale
    assert star_scale_for("aescore-technical-r18") is None and star_scale_for(None) is None
    with pytest.raises(ValueError):
        StarScale("x", "", 0.5, 0.4, 0.9, "")


def test_thresholds_apply_exactly_at_the_boundaries() -> None:
    s = SCALE
    below = lambda x: x - 1e-9
    assert [s.cap(below(s.flawed)), s.cap(s.flawed)] == [2, 3]
    assert [s.cap(below(s.four)), s.cap(s.four)] == [3, 4]
    assert [s.cap(below(s.five)), s.cap(s.five)] == [4, 5]
    assert s.cap(0.0) == 2 and s.cap(1.0) == 5
    # Through assign_stars: every photo in the top percentile band, so the scale alone decides.
    for score, want in ((below(s.flawed), 2), (s.flawed, 3), (below(s.four), 3), (s.four, 4), (below(s.five), 4), (s.five, 5)):
        assert assign_stars([score] * 3, scale=s) == [min(3, want)] * 3  # ties: the middle band, 3
        assert assign_stars([0.0, score], scale=s)[1] == want  # the best of two: band 5, capped


def test_resolve_star_scale_choices() -> None:
    assert resolve_star_scale("auto", DEFAULT) is SCALE and resolve_star_scale("absolute", DEFAULT) is SCALE
    assert resolve_star_scale("relative", DEFAULT) is None and resolve_star_scale("auto", "tiny") is None
    with pytest.raises(ValueError, match="no calibrated star scale"):
        resolve_star_scale("absolute", "tiny")
    with pytest.raises(ValueError, match="star scale must be one of"):
        resolve_star_scale("percentile", DEFAULT)


# --------------------------------------------------------------------------- the finding of issue 25


def test_an_all_low_run_gets_no_4_or_5_stars_under_the_absolute_scale() -> None:
    # An underexposed shoot: every photo below the 4-star threshold (0.33 was the finding's photo).
    scores = [min(0.33, SCALE.four - 0.01) - k * 0.01 for k in range(10)]
    relative = assign_stars(scores)
    absolute = assign_stars(scores, scale=SCALE)
    assert max(relative) == 5 and relative.count(4) == 2  # percentiles: the best of a bad run is "5"
    assert max(absolute) <= 3
    assert all(a == min(r, SCALE.cap(s)) for a, r, s in zip(absolute, relative, scores))
    flawed = [SCALE.flawed / 2 + k * 1e-4 for k in range(10)]  # all called flawed: at most 2 stars
    assert max(assign_stars(flawed, scale=SCALE)) == 2 and max(assign_stars(flawed)) == 5


def test_a_good_run_keeps_its_percentile_spread_and_rank_decides_within_a_band() -> None:
    scores = [SCALE.five + (1 - SCALE.five) * k / 20 for k in range(10)]  # all at or above 'five'
    assert assign_stars(scores, scale=SCALE) == assign_stars(scores) == [1, 2, 2, 3, 3, 3, 3, 4, 4, 5]
    # mixed: a flawed photo is <= 2 even as the best of a run of worse ones; monotone in score
    mixed = [0.001, 0.002, 0.003, SCALE.flawed - 0.001, SCALE.four, SCALE.five]
    got = assign_stars(mixed, scale=SCALE)
    assert got[3] <= 2 and got == sorted(got)


def test_reject_below_still_minus_one_and_caps_compose_by_min() -> None:
    scores = [0.01, SCALE.flawed / 2, SCALE.four, SCALE.five, 0.999]
    got = assign_stars(scores, reject_below=0.02, scale=SCALE)
    assert got[0] == REJECTED and all(s >= 1 for s in got[1:])
    capped = assign_stars(scores, caps=[None, None, 2, -1, 1], scale=SCALE)
    plain = assign_stars(scores, scale=SCALE)
    assert capped[2] == min(2, plain[2]) and capped[3] == REJECTED and capped[4] == 1
    assert capped[:2] == plain[:2]


def test_cull_assign_stars_uses_the_models_scale_and_the_faces_cap() -> None:
    scores = [0.01 * k for k in range(1, 11)]  # a dark shoot: all below 'four' (0.10 at most)
    run = _photos(scores)
    cull.assign_stars(run, model_name=DEFAULT)
    assert max(p.stars or 0 for p in run) == SCALE.cap(max(scores)) == 2
    cull.assign_stars(run, model_name=DEFAULT, scale="relative")
    assert max(p.stars or 0 for p in run) == 5
    cull.assign_stars(run)  # no model named: relative, as before
    assert [p.stars for p in run] == assign_stars(scores)
    good = _photos([0.99 - 0.001 * k for k in range(10)])
    good[0].fields["people"] = "eyes closed"  # the best score: 5 stars without the faces cap
    cull.assign_stars(good, model_name=DEFAULT)
    assert good[0].stars == 2 and good[1].stars == 4  # percentiles are not shifted by the cap
    with pytest.raises(ValueError):
        cull.assign_stars(run, model_name="tiny", scale="absolute")


# --------------------------------------------------------------------------- the commands


def _cli(args: list[Any]) -> tuple[int, str]:
    """Run the CLI in-process: exit status and stdout."""
    result = cli(args)
    return result.code, result.text


@pytest.fixture()
def calibrated_tiny(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> StarScale:
    """A scale for the tiny test model whose cut-offs sit between its scores of the test photos."""
    card = json.loads(tiny_weights.with_suffix(".json").read_text(encoding="utf-8"))
    scale = StarScale("tiny", card["sha256"], 0.0, 1.0, 1.0, "test")  # everything in the 3-star band
    monkeypatch.setitem(stars.STAR_SCALES, "tiny", scale)  # type: ignore[index]
    return scale


def _rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text.splitlines()]


def test_rank_star_scale_option_and_the_page_carry_the_same_stars(
    tiny_weights: Path, calibrated_tiny: StarScale, tmp_path: Path
) -> None:
    files = [p for n, p in helpers.make_photo_folder(tmp_path / "photos").items() if n in GOOD]
    base = ["--model", tiny_weights, "--workers", "0", "--device", "cpu"]
    code, out = _cli(["rank", *files, *base, "--stars", "--jsonl"])
    absolute = _rows(out)
    assert code == 0 and max(r["stars"] for r in absolute) == 3  # the calibrated scale is the default
    code, out = _cli(["rank", *files, *base, "--star-scale", "relative", "--jsonl"])  # implies --stars
    relative = _rows(out)
    assert code == 0 and relative[0]["stars"] == 5 and relative[-1]["stars"] == 1
    assert [min(r["stars"], 3) for r in relative] == [r["stars"] for r in absolute]
    code, out = _cli(["rank", *files, *base, "--star-scale", "absolute", "--jsonl"])
    assert code == 0 and [r["stars"] for r in _rows(out)] == [r["stars"] for r in absolute]

    page = tmp_path / "cull.html"
    code, out = _cli(["rank", *files, *base, "--jsonl", "--html", page])
    assert code == 0
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page.read_text(encoding="utf-8"), re.DOTALL).group(1))  # type: ignore[union-attr]
    on_page = {p["rank"]: p["stars"] for p in data["photos"]}
    assert on_page == {r["rank"]: r["stars"] for r in _rows(out)} == {r["rank"]: r["stars"] for r in absolute}


def test_absolute_for_an_uncalibrated_model_is_a_usage_error(tiny_weights: Path, tmp_path: Path) -> None:
    files = [p for n, p in helpers.make_photo_folder(tmp_path / "photos").items() if n in GOOD]
    base = ["--model", tiny_weights, "--workers", "0", "--device", "cpu"]
    code, out = _cli(["rank", *files, *base, "--star-scale", "absolute", "--jsonl"])
    assert code == 2 and out == ""
    # Refused before any photo was read: the next run finds nothing of it in the cache.
    assert cli(["rank", *files, *base, "--jsonl"]).summary()["computed"] == len(files)
    code, out = _cli(["rank", *files, *base, "--stars", "--jsonl"])  # auto: relative for this model
    rows = _rows(out)
    assert code == 0 and rows[0]["stars"] == 5 and rows[-1]["stars"] == 1
