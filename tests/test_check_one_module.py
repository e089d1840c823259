"""A check is one module: defined and registered in one file, it reaches every output format, the
contact sheet's badges and filters and the cache through ``--check NAME`` — no list elsewhere."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image
from test_score_cli import base, cli

import helpers
from aescore.checks import Check, Field, FieldKind, Needs, PhotoData, available_checks, register_check
from aescore.checks.base import _CHECKS


class Warmth(Check):
    """The whole check, as a plugin would write it: a number, a text shown as a badge and filter."""

    name = "test_warmth"
    description = "how warm the photo's colours are"
    needs = Needs(image_size=32)
    fields = (
        Field("warmth", FieldKind.NUMBER, "mean red minus mean blue", places=1),
        Field("tone", FieldKind.TEXT, "warm or cool", badge=True, filter="tone"),
    )
    calls = 0

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        Warmth.calls += 1
        warmth = float(photo.image[..., 0].mean() - photo.image[..., 2].mean())
        return {"warmth": warmth, "tone": "warm" if warmth > 0 else "cool"}


@pytest.fixture()
def warmth() -> Iterator[None]:
    available_checks()
    saved = dict(_CHECKS)
    register_check(Warmth())
    Warmth.calls = 0
    yield
    _CHECKS.clear()
    _CHECKS.update(saved)


def _photos(folder: Path) -> None:
    folder.mkdir()
    for k, (r, b) in enumerate([(220, 40), (40, 220), (200, 90)]):
        pixels = helpers.pattern(64, 48, k)
        pixels[..., 0], pixels[..., 2] = r, b
        Image.fromarray(pixels).save(folder / f"p{k}.png")


def test_a_check_from_one_file_reaches_every_output(warmth: None, tiny_weights: Path, tmp_path: Path) -> None:
    _photos(tmp_path / "shoot")
    args = ["rank", tmp_path / "shoot", "--check", "test_warmth", *base(tiny_weights)]
    tsv = cli([*args, "--format", "tsv"]).text.splitlines()
    assert [len(line.split("\t")) for line in tsv] == [4] * 3  # score, warmth, tone, path
    assert sorted(line.split("\t")[2] for line in tsv) == ["cool", "warm", "warm"]
    rows = json.loads(cli([*args, "--json"]).text)
    assert all({"warmth", "tone"} <= set(r) for r in rows)
    assert [json.loads(line)["tone"] for line in cli([*args, "--jsonl"]).text.splitlines()] == [r["tone"] for r in rows]
    table = list(csv.reader(io.StringIO(cli([*args, "--csv"]).text, newline="")))
    assert table[0] == ["rank", "score", "label", "warmth", "tone", "path"]
    assert Warmth.calls == 3  # computed once; every later run read the cache

    page = tmp_path / "cull.html"
    assert cli(["report", tmp_path / "shoot", "-o", page, "--check", "test_warmth", *base(tiny_weights)]).code == 0
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page.read_text(), re.S).group(1))
    assert {"name": "tone", "filter": "tone", "badge": True} in data["fields"]
    assert sorted(p["f"]["tone"] for p in data["photos"]) == ["cool", "warm", "warm"]
    assert all("warmth" in p["extra"] for p in data["photos"])  # other printed fields: the preview


def test_unknown_and_unservable_checks_are_one_line(
    warmth: None, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aescore.cli.main import main

    class NeedsFaults(Check):
        name = "test_needs_faults"
        needs = Needs(outputs=frozenset({"faults"}))
        fields = (Field("x", FieldKind.NUMBER, "x"),)

    register_check(NeedsFaults())
    _photos(tmp_path / "shoot")
    for name, expected in (("no_such_check", "unknown check 'no_such_check'"),
                           ("test_needs_faults", "--check test_needs_faults needs a model with a reasons head; tiny")):
        with pytest.raises(SystemExit) as exit_info:
            main(["rank", str(tmp_path / "shoot"), "--check", name, *map(str, base(tiny_weights))])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1, err
        assert err[0].startswith(f"aescore: error: {expected}"), err  # named as the check it is, not as --reasons


def test_the_reasons_flag_is_the_checks_own_alias() -> None:
    from aescore.checks import get_check
    from aescore.cli.main import get_app
    from typer.testing import CliRunner

    assert get_check("reasons").flag == "--reasons" and get_check("exif").flag == "--exif"
    help_text = CliRunner().invoke(get_app(), ["rank", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--reasons" in help_text and "--exif" in help_text and "--check" in help_text
