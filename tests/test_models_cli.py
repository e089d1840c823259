"""`aescore models` (JSON object, TSV with a header, table; --set-default / --reset-default, clashes)
and model-card validation (issue 15 items 11 and 21, issue 11 item 9)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import aescore.weights as w
from aescore.cli import main as cli_main
from aescore.errors import WeightsError


# Own XDG folders come from conftest.py for every test.
pytestmark = pytest.mark.usefixtures("shipped_models_only")


def _save(path: Path, name: str, seed: int = 0, **card: Any) -> Path:
    from aescore.models.plain import PlainMPANet

    torch.manual_seed(seed)
    model = PlainMPANet("resnet10t").eval()
    model.arch_name, model.arch_args = "mpa_resnet18", {"backbone": "resnet10t"}
    pp = {**model.default_preprocess, "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5}}
    w.save_weights(model, path, {"name": name, "preprocess": pp, "summary": f"[bold]{name}[/bold]", **card})
    return path.with_suffix(".json")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(args)`` in-process (explicit argv: never the fast exit); (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        cli_main.main(args)
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_models_json_is_one_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    best = _save(runs / "best.safetensors", "portraits")
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(runs))
    code, out, _ = run(["models", "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and isinstance(report, dict)
    assert report["default"]["source"] == "shipped" and report["default"]["name"] == "aescore-technical-lite0-exposure"
    assert report["config_file"] == str(w.config_path()) and report["clashes"] == []
    mine = next(m for m in report["models"] if m["path"] == str(best))
    assert mine["name"] == "portraits" and mine["stem"] == "best" and mine["default"] is False
    assert [m["default"] for m in report["models"]].count(True) == 1


def test_models_tsv_has_a_header_when_piped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    _save(runs / "best.safetensors", "tab\there")
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(runs))
    code, out, err = run(["models"], capsys)
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0].split("\t") == ["default", "name", "stem", "architecture", "trained_on", "summary", "path"]
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 7 for r in rows)  # the tab inside a name is escaped, not a new column
    assert ["", "tab\\there", "best"] == rows[0][:3] and rows[1][0] == "*"


def test_set_and_reset_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    best = _save(runs / "best.safetensors", "portraits")
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(runs))
    code, out, err = run(["models", "--set-default", "portraits"], capsys)
    assert code == 0 and out == "" and "default model is now portraits" in err and str(w.config_path()) in err
    assert w.default_weights_path() == best
    report = json.loads(run(["models", "--json"], capsys)[1])
    assert report["default"] == {"name": "portraits", "path": str(best), "source": "config"}
    code, _, err = run(["models", "--set-default", "nope"], capsys)
    assert code == 2 and err.count("\n") == 1 and "unknown model 'nope'" in err
    code, _, err = run(["models", "--reset-default"], capsys)
    assert code == 0 and "shipped one again: aescore-technical-lite0-exposure" in err
    assert w.default_weights_path().stem == "aescore-technical-lite0-exposure"
    code, _, err = run(["models", "--set-default", "portraits", "--reset-default"], capsys)
    assert code == 2 and "exclude each other" in err


def test_name_clash_is_one_line_and_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    one, two = tmp_path / "run1", tmp_path / "run2"
    _save(one / "best.safetensors", "a")
    _save(two / "best.safetensors", "b", seed=1)  # other weights: a different model
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", f"{one}{os.pathsep}{two}")
    code, out, err = run(["models"], capsys)
    shipped = len(w.list_models_found()) - 2  # the models that ship with aescore, besides these two
    assert code == 0 and len(out.splitlines()) == 1 + 2 + shipped
    clash_lines = [line for line in err.splitlines() if "different models" in line]
    assert len(clash_lines) == 1 and "name 'best' is used by 2 different models" in clash_lines[0]
    photo = tmp_path / "p.png"
    Image.new("RGB", (80, 60)).save(photo)
    code, out, err = run(["score", str(photo), "-m", "best"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "ambiguous" in err


def test_table_shows_names_as_text_not_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    _save(runs / "x.safetensors", "[red]x[/red]")
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(runs))
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "250")
    _, out, _ = run(["models"], capsys)
    assert "[red]x[/red]" in out and "[bold]" in out


# --------------------------------------------------------------------------- card validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"std": [0.229, 0.0, 0.225]}, "preprocess.std must be > 0"),
        ({"std": [0.2, 0.2]}, "preprocess.std must be 3 finite numbers"),
        ({"mean": [0.5, "x", 0.5]}, "preprocess.mean must be 3 finite numbers"),
        ({"eval": {"mode": "stretch", "size": 64}}, "preprocess.eval.mode must be one of shorter, square"),
        ({"eval": {"mode": "shorter", "size": 0}}, "preprocess.eval.size must be a whole number"),
        ({"eval": {"mode": "shorter", "size": "64"}}, "preprocess.eval.size must be a whole number"),
        ({"eval": {"mode": "shorter", "size": 64, "max_aspect": 0.5}}, "max_aspect must be a finite number >= 1"),
        ({"train": {"kind": "mpa", "crop": -3}}, "preprocess.train.crop must be a whole number"),
        ({"eval": None}, "preprocess.eval must be an object"),
    ],
)
def test_absurd_cards_are_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    card_path = _save(tmp_path / "m.safetensors", "m")
    card = json.loads(card_path.read_text())
    card["preprocess"].update(change)
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=message):
        w.read_card(card_path)
    with pytest.raises(WeightsError, match=message):
        w.load_weights(card_path)


def test_nan_in_a_card_is_refused(tmp_path: Path) -> None:
    card_path = _save(tmp_path / "m.safetensors", "m")
    text = card_path.read_text().replace('"max_aspect": 1.5', '"max_aspect": NaN')
    card_path.write_text(text)
    with pytest.raises(WeightsError, match="not a readable model card.*NaN"):
        w.read_card(card_path)


def test_std_zero_card_is_one_line_exit_1_and_no_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15 item 11: before, std 0 printed `"score": NaN` (invalid JSON)."""
    card_path = _save(tmp_path / "m.safetensors", "m")
    card = json.loads(card_path.read_text())
    card["preprocess"]["std"] = [0, 0, 0]
    card_path.write_text(json.dumps(card))
    photo = tmp_path / "p.png"
    Image.new("RGB", (80, 60), (10, 20, 30)).save(photo)
    code, out, err = run(["score", str(photo), "-m", str(card_path), "--json", "--workers", "0"], capsys)
    assert code == 1 and out == "" and "NaN" not in out
    assert err.count("\n") == 1 and "invalid model card: preprocess.std must be > 0" in err
