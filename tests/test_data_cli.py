"""`aescore data` output discipline and help text; `aescore train --help` metavars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aescore.cli.main import get_app
from aescore.errors import UsageError

_GROUP = {"n": 2, "accuracy": 1.0}
_RESULT = {"n": 2, "accuracy": 1.0, "per_kind": {"blur": dict(_GROUP)}, "per_severity": {"2": dict(_GROUP)}}


@pytest.fixture
def stub_pairwise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """The pairwise engine replaced by stubs: the CLI's own work (device, output) is what is tested."""
    import aescore.engine.pairwise as pw

    seen: dict = {}

    def model_scores(paths, model, *, batch_size, device, on_progress):
        seen["device"] = device
        return {p: 0.5 for p in paths}, {"name": "stub"}

    monkeypatch.setattr(pw, "read_pairs", lambda path: ["pair"])
    monkeypatch.setattr(pw, "pair_paths", lambda pairs: ["a.jpg", "b.jpg"])
    monkeypatch.setattr(pw, "model_scores", model_scores)
    monkeypatch.setattr(pw, "laplacian_scores", lambda paths: {p: 1.0 for p in paths})
    monkeypatch.setattr(pw, "pairwise_accuracy", lambda pairs, score: json.loads(json.dumps(_RESULT)))
    (tmp_path / "pairs.csv").write_text("x\n")
    seen["dir"] = tmp_path
    return seen


def test_pairwise_defaults_to_auto_device(stub_pairwise: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import aescore.devices as devices

    monkeypatch.setattr(devices, "resolve_device", lambda spec="auto": {"auto": "cuda"}.get(spec, spec))
    res = CliRunner().invoke(get_app(), ["data", "pairwise", str(stub_pairwise["dir"]), "--json"])
    assert res.exit_code == 0, res.output
    assert stub_pairwise["device"] == "cuda"  # the default went through the one device rule


def test_pairwise_json_is_one_object_and_piped_output_is_tsv(stub_pairwise: dict) -> None:
    res = CliRunner().invoke(get_app(), ["data", "pairwise", str(stub_pairwise["dir"]), "--json", "--device", "cpu"])
    assert res.exit_code == 0 and len(res.stdout.strip().splitlines()) == 1
    assert json.loads(res.stdout)["model"]["name"] == "stub"
    res = CliRunner().invoke(get_app(), ["data", "pairwise", str(stub_pairwise["dir"]), "--device", "cpu"])
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "group\tpairs\tmodel\tlaplacian"
    assert lines[1:] == ["overall\t2\t1.000\t1.000", "blur\t2\t1.000\t1.000", "severity 2\t2\t1.000\t1.000"]


def test_pairwise_bad_device_is_one_usage_line(stub_pairwise: dict) -> None:
    res = CliRunner().invoke(get_app(), ["data", "pairwise", str(stub_pairwise["dir"]), "--device", "tpu"])
    assert isinstance(res.exception, UsageError) and str(res.exception).startswith("--device must be")


def _help(*args: str) -> str:
    res = CliRunner().invoke(get_app(), [*args, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    return res.stdout


def test_help_shows_names_and_choices_not_python_types() -> None:
    degrade = _help("data", "degrade")
    assert "SRC_DIR OUT_DIR" in degrade and "{src_dir}" not in degrade
    train = _help("train")
    for text in (degrade, train, _help("data", "pairwise")):
        body = [line for line in text.splitlines() if "--help" not in line]
        assert not any("<bool>" in line or "<list" in line for line in body)
    assert "mpa-ada-official" in train and "ava|aadb|csv" in train and "FCN-A-G" in train
