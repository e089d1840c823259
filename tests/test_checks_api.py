"""The check interface and the culling API (aescore.cull), called directly from Python."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from aescore import cull
from aescore.checks import Check, Field, FieldKind, Needs, PhotoData, available_checks, register_check
from aescore.checks.base import _CHECKS
from aescore.cull import output
from aescore.cull.photo import Photo

from helpers import make_photo_folder, pattern


class MeanBrightness(Check):
    """A test check that reads pixels: mean brightness of the 32-px image; counts its calls."""

    name = "test_brightness"
    version = 1
    needs = Needs(image_size=32)
    fields = (Field("brightness", FieldKind.NUMBER, "mean of the pixels, 0-255", places=1),)
    calls: list[str] = []

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        assert photo.image is not None and max(photo.image.shape[:2]) <= 32
        MeanBrightness.calls.append(photo.path)
        return {"brightness": float(photo.image.mean())}


class ScoreBand(Check):
    """A test check that reads a network output and gives an object field."""

    name = "test_band"
    needs = Needs(outputs=frozenset({"p_high"}))
    fields = (
        Field("band", FieldKind.TEXT, "top/bottom half"),
        Field("detail", FieldKind.OBJECT, "an object"),
    )
    model_dependent = True

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        p = float(photo.outputs["p_high"])
        return {"band": "top" if p >= 0.5 else "bottom", "detail": {"p": round(p, 3)}}


@pytest.fixture()
def registered() -> Any:
    available_checks()  # the built-in ones are registered on first use
    saved = dict(_CHECKS)
    MeanBrightness.calls = []
    register_check(MeanBrightness())
    register_check(ScoreBand())
    yield
    _CHECKS.clear()
    _CHECKS.update(saved)


def _folder(root: Path, n: int = 5) -> list[Path]:
    root.mkdir(parents=True)
    paths = []
    for i in range(n):
        p = root / f"img{i}.jpg"
        Image.fromarray(pattern(90 + 10 * i, 70, i)).save(p, quality=92)
        paths.append(p)
    return paths


def _settings(tiny_weights: Path, tmp_path: Path, **kw: Any) -> cull.Settings:
    return cull.Settings(model=str(tiny_weights), device="cpu", workers=0, cache_path=str(tmp_path / "cache.sqlite"), **kw)


def test_checks_run_once_per_photo_and_are_cached_by_version(tiny_weights: Path, tmp_path: Path, registered: Any) -> None:
    paths = _folder(tmp_path / "lib")
    settings = _settings(tiny_weights, tmp_path)
    run = cull.score_photos([tmp_path / "lib"], settings, ["test_brightness", "test_band"])
    assert [p.path for p in run.photos] == [str(p) for p in paths]
    assert sorted(MeanBrightness.calls) == sorted(str(p) for p in paths)  # once per photo
    for photo, path in zip(run.photos, paths):
        expected = np.asarray(Image.open(path).convert("RGB").resize((32, round(32 * 70 / Image.open(path).width)))).mean()
        assert abs(photo.fields["brightness"] - expected) < 12  # the 32-px view of this photo
        assert photo.fields["band"] == ("top" if photo.score >= 0.5 else "bottom")
    assert run.computed == 5 and run.from_cache == 0

    # A second run reads everything from the cache: no decode, no check call.
    MeanBrightness.calls = []
    again = cull.score_photos([tmp_path / "lib"], settings, ["test_brightness", "test_band"])
    assert MeanBrightness.calls == [] and again.computed == 0 and again.from_cache == 5
    assert [p.fields for p in again.photos] == [p.fields for p in run.photos]

    # A new version of one check recomputes that check only (pixels again, not the network).
    class MeanBrightness2(MeanBrightness):
        version = 2

    register_check(MeanBrightness2())
    third = cull.score_photos([tmp_path / "lib"], settings, ["test_brightness", "test_band"])
    assert sorted(MeanBrightness.calls) == sorted(str(p) for p in paths)
    assert third.computed == 0 and third.from_cache == 5


def test_check_fields_reach_every_output_format(tiny_weights: Path, tmp_path: Path, registered: Any) -> None:
    _folder(tmp_path / "lib", 3)
    run = cull.score_photos([tmp_path / "lib"], _settings(tiny_weights, tmp_path), ["test_brightness", "test_band"])
    cull.assign_ranks(run.photos)
    checks = run.checks
    rows = [json.loads(line) for line in output.format_jsonl(run.photos, checks).splitlines()]
    assert all({"brightness", "band", "detail", "score", "label", "rank", "path"} <= set(r) for r in rows)
    assert rows[0]["detail"] == {"p": round(run.photos[0].score, 3)}
    table = list(csv.reader(io.StringIO(output.format_csv(run.photos, checks), newline="")))
    assert table[0] == ["rank", "score", "label", "brightness", "band", "detail", "path"]
    assert json.loads(table[1][5]) == rows[0]["detail"]  # objects as JSON text in CSV
    tsv = output.format_tsv(run.photos, checks).splitlines()[0].split("\t")
    assert len(tsv) == 4 and tsv[-1] == run.photos[0].path  # score, brightness, band, path (no object)
    assert tsv[1] == f"{run.photos[0].fields['brightness']:.1f}"
    assert json.loads(output.format_json(run.photos, checks))[0]["band"] in ("top", "bottom")


def test_api_culling_steps(tiny_weights: Path, tmp_path: Path) -> None:
    paths = _folder(tmp_path / "lib", 6)
    base = 1_700_000_000
    for i, p in enumerate(paths):  # two bursts: 0-2 and 3-5
        os.utime(p, (base + i + (100 if i >= 3 else 0), base + i + (100 if i >= 3 else 0)))
    run = cull.score_photos([str(p) for p in paths], _settings(tiny_weights, tmp_path), ["capture"], with_embeddings=True)
    photos = run.photos
    cull.assign_ranks(photos)
    cull.group_bursts(photos, seconds=5)
    assert [p.group for p in photos] == [photos[0].group] * 3 + [photos[3].group] * 3 and photos[0].group != photos[3].group
    assert sum(bool(p.best) for p in photos) == 2
    cull.assign_stars(photos)
    assert all(p.stars in range(1, 6) for p in photos)
    best = cull.select(photos, ranked=True, top=2)
    assert [p.rank for p in best] == [1, 2]
    assert all(isinstance(p.embedding, np.ndarray) for p in photos)
    outcomes = cull.write_sidecars(best, run.model_tag, dry_run=True)
    assert all(o.error is None and o.change.action == "create" for o in outcomes)
    assert not any(p.with_suffix(".xmp").exists() for p in paths)  # dry run wrote nothing
    copied = cull.copy_photos(best, tmp_path / "best")
    assert len(copied.created) == 2 and len(cull.copy_photos(best, tmp_path / "best").already_there) == 2
    with pytest.raises(ValueError, match="capture"):
        cull.group_bursts([Photo("x", {"score": 0.5})], seconds=1)


def test_api_reports_unreadable_files_and_settings_errors(tiny_weights: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    _folder(lib, 2)
    (lib / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    seen: list[tuple[str, str]] = []
    run = cull.score_photos([lib, tmp_path / "missing.jpg"], _settings(tiny_weights, tmp_path), on_skip=lambda p, r: seen.append((p, r)))
    assert len(run.photos) == 2
    assert {Path(s.path).name for s in run.skipped} == {"broken.jpg", "missing.jpg"} and len(seen) == 2
    from aescore.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        cull.Settings(batch_size=0)
    assert exc.value.setting == "batch_size" and "--" not in str(exc.value)  # a domain error, no flag


def test_output_quotes_carriage_returns_and_escapes_backslashes() -> None:
    from aescore.checks import get_check

    photos = [Photo("a\rb.jpg", {"score": 0.75, "label": "high"}, rank=1), Photo("a\\nb.jpg", {"score": 0.5, "label": "high"}, rank=2),
              Photo("a\nb.jpg", {"score": 0.25, "label": "low"}, rank=3)]
    checks = [get_check("score")]
    rows = list(csv.reader(io.StringIO(output.format_csv(photos, checks), newline="")))
    assert [r[-1] for r in rows[1:]] == ["a\rb.jpg", "a\\nb.jpg", "a\nb.jpg"]
    shown = [line.split("\t")[-1] for line in output.format_tsv(photos, checks).splitlines()]
    assert len(set(shown)) == 3 and shown[1] == "a\\\\nb.jpg" and shown[2] == "a\\nb.jpg"


def test_photo_folder_through_api_matches_scorer(tiny_weights: Path, tmp_path: Path) -> None:
    from aescore.inference.scorer import Scorer

    found = make_photo_folder(tmp_path / "lib")
    run = cull.score_photos([tmp_path / "lib"], _settings(tiny_weights, tmp_path, use_cache=False))
    direct = {r.path: r.score for r in Scorer(tiny_weights, device="cpu", workers=0).score_paths([p.path for p in run.photos])}
    assert run.photos and all(abs(direct[p.path] - p.score) < 1e-6 for p in run.photos)
    assert len(run.photos) + len(run.skipped) >= len(found) - 1  # every input accounted for
