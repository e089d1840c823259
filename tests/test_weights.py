"""Weights format: safetensors + model card round trip, tamper detection, lookup, safe checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from aescore.errors import WeightsError
from aescore.models import create_model, list_models
from aescore.weights import (
    CARD_FORMAT,
    default_weights_path,
    file_sha256,
    list_available,
    load_checkpoint,
    load_weights,
    read_card,
    resolve_model,
    save_checkpoint,
    save_weights,
    weights_dirs,
)


class _Tied(nn.Module):
    """Tiny model whose two layers share one weight tensor (safetensors refuses shared storage)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.a = nn.Linear(width, width)
        self.b = nn.Linear(width, width)
        self.b.weight = self.a.weight
        self.head = nn.Linear(width, 2)
        self.default_preprocess = {"mean": [0.5] * 3, "std": [0.5] * 3, "eval": {"mode": "square", "size": 8}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(self.a(x)))


def _test_weights_tied(width: int = 4, **_: Any) -> nn.Module:
    return _Tied(width)


# Own XDG folders come from conftest.py for every test.
pytestmark = pytest.mark.usefixtures("shipped_models_only")


@pytest.fixture(autouse=True)
def _tied_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registered only while each test runs, so other test files see the real registry unchanged.
    from aescore.models import _registry

    list_models()  # load the real models first, as create_model would
    monkeypatch.setitem(_registry._MODEL_FNS, "_test_weights_tied", _test_weights_tied)


@pytest.fixture(scope="module")
def mpa_model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("mpa_resnet18", backbone="resnet10t")
    # Perturb BN running statistics so that buffers are checked too, not only parameters.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.9, 1.1)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path, mpa_model: nn.Module) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "tiny.safetensors"
    card = save_weights(mpa_model, path, {"summary": "test model", "metrics": {"accuracy": 0.5}})
    return path, card


def test_round_trip_is_bit_exact(saved: tuple[Path, dict[str, Any]], mpa_model: nn.Module) -> None:
    path, card = saved
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert card["format"] == CARD_FORMAT and card["architecture"] == "mpa_resnet18"
    assert card["arch_args"] == {"backbone": "resnet10t"}
    assert card["sha256"] == file_sha256(path) and card["name"] == "tiny" and card["metrics"] == {"accuracy": 0.5}
    assert card["preprocess"] == mpa_model.default_preprocess and card["date"].endswith("+00:00")
    assert read_card(path) == card == json.loads(path.with_suffix(".json").read_text())
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave no temporary files behind

    for spec in (path, path.with_suffix(".json")):
        loaded, loaded_card = load_weights(spec)
        assert loaded_card == card and not loaded.training
        original, restored = mpa_model.state_dict(), loaded.state_dict()
        assert original.keys() == restored.keys()
        for key in original:
            assert torch.equal(original[key], restored[key]), key
        x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.equal(mpa_model(x), loaded(x))


def test_tied_weights_round_trip(tmp_path: Path) -> None:
    model = create_model("_test_weights_tied", width=3)
    card = save_weights(model, tmp_path / "tied.safetensors")
    assert card["arch_args"] == {"width": 3} and card["preprocess"] == model.default_preprocess
    loaded, _ = load_weights(tmp_path / "tied.json")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_tampered_weights_are_refused(saved: tuple[Path, dict[str, Any]]) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch: file was modified or corrupted"):
        load_weights(path)


def test_tampered_card_architecture_is_refused(saved: tuple[Path, dict[str, Any]]) -> None:
    path, card = saved
    card_path = path.with_suffix(".json")
    card_path.write_text(json.dumps({**card, "architecture": "no_such_model"}))
    with pytest.raises(WeightsError, match="no_such_model"):
        load_weights(path)
    # A real but different architecture: the tensors do not fit, and the error names it.
    card_path.write_text(json.dumps({**card, "architecture": "_test_weights_tied", "arch_args": {}}))
    with pytest.raises(WeightsError, match="do not fit architecture '_test_weights_tied'"):
        load_weights(path)
    card_path.write_text(json.dumps({**card, "arch_args": {"backbone": "resnet10t", "num_classes": 3}}))
    with pytest.raises(WeightsError, match=r"wrong shape \(e.g. .*file \[2, 512\] vs model \[3, 512\]"):
        load_weights(path)
    card_path.write_text(json.dumps({**card, "arch_args": {"backbone": "resnet10t", "bogus": 1}}))
    with pytest.raises(WeightsError):
        load_weights(path)


def test_missing_or_invalid_files(saved: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, card = saved
    card_path = path.with_suffix(".json")
    card_path.write_text(json.dumps({**card, "format": "something-else"}))
    with pytest.raises(WeightsError, match="not an aescore model card"):
        load_weights(path)
    card_path.write_text("{ not json")
    with pytest.raises(WeightsError, match="not a readable model card"):
        read_card(card_path)
    card_path.unlink()
    with pytest.raises(WeightsError, match="model card not found"):
        load_weights(path)
    with pytest.raises(WeightsError, match="weights file not found"):
        other = tmp_path / "other.json"
        other.write_text(json.dumps(card))
        load_weights(other)
    with pytest.raises(WeightsError, match=r"\.safetensors"):
        load_weights(tmp_path / "model.pt")


def test_save_rejects_unregistered_model_and_bad_name(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="create_model"):
        save_weights(nn.Linear(2, 2), tmp_path / "x.safetensors", {"preprocess": {}})
    with pytest.raises(WeightsError, match=r"\.safetensors"):
        save_weights(create_model("_test_weights_tied"), tmp_path / "x.json")


def _write_card(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(create_model("_test_weights_tied"), folder / f"{name}.safetensors", {"summary": name})
    return folder / f"{name}.json"


def test_resolve_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aescore.weights as w

    wdir = tmp_path / "w"
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(wdir))
    wdir.mkdir()
    assert weights_dirs()[0] == wdir
    alpha = _write_card(wdir, "alpha")
    beta = _write_card(wdir, "beta")
    (wdir / "notes.json").write_text('{"unrelated": true}')  # ignored: not a model card
    names = [p.stem for p, _ in list_available()]
    assert names[:2] == ["alpha", "beta"] and "notes" not in names

    assert resolve_model("alpha") == alpha and resolve_model("beta") == beta
    assert resolve_model(str(alpha.with_suffix(".safetensors"))) == alpha.with_suffix(".safetensors")
    assert resolve_model(alpha) == alpha
    with pytest.raises(w.UnknownModelError, match="unknown model 'gamma'.*alpha, beta") as unknown:
        resolve_model("gamma")
    assert unknown.value.exit_code == 2  # a usage error, as the docs say
    with pytest.raises(WeightsError, match="not found"):
        resolve_model(str(tmp_path / "missing.safetensors"))
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(alpha.with_suffix(".safetensors").read_bytes())
    with pytest.raises(WeightsError, match="model card not found"):
        resolve_model(str(lone))
    model, card = load_weights(resolve_model("alpha"))
    assert card["summary"] == "alpha" and isinstance(model, nn.Module)


def test_default_is_the_shipped_model_unless_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 item 21: a trained `best` in $AESCORE_WEIGHTS_DIR never becomes the default by itself."""
    import aescore.weights as w

    shipped = default_weights_path()
    assert shipped.parent in w.shipped_weights_dirs() and w.default_source() == "shipped"
    runs = tmp_path / "runs"
    best = _write_card(runs, "best")
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(runs))
    assert resolve_model("best") == best
    assert default_weights_path() == shipped == resolve_model(None)  # before: the lone `best` won
    (runs / "DEFAULT").write_text("best\n")  # a marker file in a user folder is not a choice either
    assert default_weights_path() == shipped

    assert w.set_default_model("best") == best
    config = json.loads(w.config_path().read_text())
    assert config == {"default_model": "best"} and w.default_source() == "config"
    assert default_weights_path() == best == resolve_model(None)
    # other keys of the config file are kept; a path is stored absolute
    w.config_path().write_text(json.dumps({"other": 1, "default_model": "best"}))
    w.set_default_model(str(best.with_suffix(".safetensors")))
    assert json.loads(w.config_path().read_text()) == {"other": 1, "default_model": str(best.with_suffix(".safetensors").resolve())}
    assert default_weights_path() == best.with_suffix(".safetensors").resolve()
    with pytest.raises(w.UnknownModelError):
        w.set_default_model("gamma")  # refused before anything is written
    assert w.configured_default() == str(best.with_suffix(".safetensors").resolve())
    assert w.set_default_model(None) is None
    assert json.loads(w.config_path().read_text()) == {"other": 1} and default_weights_path() == shipped
    # the chosen model disappears: one line saying where the choice was made
    w.set_default_model("best")
    monkeypatch.delenv("AESCORE_WEIGHTS_DIR")
    with pytest.raises(WeightsError, match=r"default model chosen in .*config.json cannot be used: unknown model 'best'"):
        default_weights_path()
    w.config_path().write_text("{broken")
    with pytest.raises(WeightsError, match="not a readable aescore config"):
        default_weights_path()
    w.set_default_model(None)  # a reset always works, even over a broken file
    assert default_weights_path() == shipped


def test_models_by_card_name_and_clashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aescore.weights as w

    one, two = tmp_path / "run1", tmp_path / "run2"
    save_weights(create_model("_test_weights_tied", width=3), one / "best.safetensors", {"name": "portraits"})
    save_weights(create_model("_test_weights_tied", width=4), two / "best.safetensors", {"name": "landscapes"})
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", f"{one}{os.pathsep}{two}")
    assert resolve_model("portraits") == one / "best.json"  # the card's name
    assert resolve_model("landscapes") == two / "best.json"
    with pytest.raises(w.AmbiguousModelError, match=r"model name 'best' is ambiguous: 2 different models.*run1/best.json.*run2/best.json") as amb:
        resolve_model("best")
    assert amb.value.exit_code == 2
    assert {n: [e.card_path for e in es] for n, es in w.name_clashes().items()} == {"best": [one / "best.json", two / "best.json"]}
    # the same model installed twice answers to its name without a clash
    three = tmp_path / "copy"
    three.mkdir()
    for suffix in (".json", ".safetensors"):
        (three / f"portraits{suffix}").write_bytes((one / f"best{suffix}").read_bytes())
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", f"{one}{os.pathsep}{three}")
    assert resolve_model("portraits") == one / "best.json" and w.name_clashes() == {}


def test_default_missing_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aescore.weights as w

    monkeypatch.setattr(w.lookup, "shipped_weights_dirs", lambda: [tmp_path])
    with pytest.raises(WeightsError, match="no default weights found"):
        default_weights_path()
    (tmp_path / "x.json").write_text(json.dumps({"format": CARD_FORMAT, "architecture": "a", "arch_args": {},
                                                  "preprocess": {}, "sha256": "0"}))
    (tmp_path / "DEFAULT").write_text("y")
    with pytest.raises(WeightsError, match="names 'y'"):
        default_weights_path()
    (tmp_path / "DEFAULT").unlink()
    assert default_weights_path() == tmp_path / "x.json"  # the only card of a shipped folder
    (tmp_path / "z.json").write_text((tmp_path / "x.json").read_text())
    with pytest.raises(WeightsError, match="several models"):
        default_weights_path()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
            "rng": torch.get_rng_state(), "config": {"lr": 0.1, "name": "x", "sizes": [1, 2]}}
    path = tmp_path / "sub" / "last.pt"
    save_checkpoint(ckpt, path)
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["config"] == ckpt["config"]
    assert torch.equal(back["rng"], ckpt["rng"])
    for key, value in ckpt["model"].items():
        assert torch.equal(back["model"][key], value)
    assert back["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 3)
    assert not list(path.parent.glob("*.tmp"))
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0600


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_malicious_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Evil(marker)}, path)
    with pytest.raises(WeightsError, match="refused to load checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="refused"):
        load_checkpoint(tmp_path / "junk.pt")
