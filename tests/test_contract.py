"""The model contract (aescore.models.contract): every network, one call, declared capabilities;
the card records them; the core and the export drive networks through it alone; a run reads the
card once."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from aescore.errors import WeightsError
from aescore.models import create_model, list_models
from aescore.models.contract import (
    OUTPUT_NAMES, Capabilities, CapabilityError, ModelInputs, ModelOutputs, RegionMapError, ScoringModel,
)
from aescore.data.fault_kinds import FAULT_KINDS
from aescore.models.personal import PersonalNet
from aescore.models.plain import PlainFaultNet, PlainMPANet
from aescore.weights import card_capabilities, default_weights_path, has_reasons_head, read_card, save_weights
from helpers import randomise_batchnorm

pytestmark = pytest.mark.usefixtures("shipped_models_only")

_MPA = {"backbone": "resnet10t"}
_FAULT = {"backbone": "resnet10t"}

# (registered architecture, a tiny build): every architecture of the registry at least once, and
# the variants whose capabilities differ (RGNet with three classes has no region map).
REGISTERED: list[tuple[str, dict[str, Any]]] = [
    ("mpa_resnet18", _MPA),
    ("faultnet", _FAULT),
    ("faultnet", {"backbone": "tf_efficientnet_lite0", "content_from": 3}),
    ("rgnet_densenet121", {"variant": "FCN", "graph_blocks": 1}),
    ("rgnet_densenet121", {"variant": "FC-CNN"}),
    ("rgnet_densenet121", {"variant": "FCN-C-C", "graph_blocks": 1, "cc_width": 32, "num_classes": 3}),
    ("personal_ranker", {"base_architecture": "mpa_resnet18", "base_args": _MPA, "embed_dim": 512}),
    ("personal_ranker", {"base_architecture": "faultnet", "base_args": _FAULT, "embed_dim": 512}),
]

# The plain-torch twins that score without timm (built here with random tensors).
PLAIN: list[tuple[str, Callable[[], torch.nn.Module]]] = [
    ("PlainMPANet", lambda: PlainMPANet("resnet10t")),
    ("PlainFaultNet", lambda: PlainFaultNet("resnet10t")),
    ("PlainFaultNet+content", lambda: PlainFaultNet("tf_efficientnet_lite0", content_from=3)),
    ("PersonalNet(plain faultnet)", lambda: PersonalNet("faultnet", dict(_FAULT), 512, base=PlainFaultNet("resnet10t"))),
]


def _tiny(arch: str, args: dict[str, Any]) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, **args).eval()
    randomise_batchnorm(model)
    return model


def _inputs(model: ScoringModel, batch: int = 2) -> ModelInputs:
    g = torch.Generator().manual_seed(1)
    whole = torch.randn(batch, 3, 64, 80, generator=g)
    crops = torch.randn(batch, 2, 3, 48, 48, generator=g) if model.capabilities.detail_views else None
    return ModelInputs(whole, crops)


def _check_outputs(model: Any) -> None:
    """One call gives the logits and exactly the outputs asked for (all declared ones by default)."""
    assert isinstance(model, ScoringModel)
    caps = model.capabilities
    assert caps.embedding  # every aescore network has one (learn, --similarity)
    inputs = _inputs(model)
    with torch.no_grad():
        out = model.forward_outputs(inputs)  # everything it declares
        assert isinstance(out, ModelOutputs)
        assert out.present() == caps.outputs()
        assert out.logits.shape[0] == 2 and out.logits.ndim == 2 and torch.isfinite(out.logits).all()
        if caps.embedding:
            assert out.embedding is not None and out.embedding.ndim == 2 and out.embedding.shape[0] == 2
        if caps.region_map:
            assert out.region_map is not None and out.region_map.ndim == 3 and out.region_map.shape[0] == 2
        if caps.faults:
            assert out.faults is not None and out.faults.shape == (2, len(FAULT_KINDS))
        # Exactly what is asked for, whatever the subset; the logits do not change with it.
        for name in caps.outputs():
            one = model.forward_outputs(inputs, [name])
            assert one.present() == {name}
            torch.testing.assert_close(one.logits, out.logits, atol=1e-5, rtol=1e-5)
        bare = model.forward_outputs(inputs, ())
        assert bare.present() == frozenset()
        torch.testing.assert_close(bare.logits, out.logits, atol=1e-5, rtol=1e-5)
        # model(x), what training runs, is the whole frame's logits of the contract.
        torch.testing.assert_close(model(inputs.whole), model.forward_outputs(ModelInputs(inputs.whole), ()).logits)
    # What it does not declare is refused, not silently computed.
    for name in OUTPUT_NAMES - caps.outputs():
        with pytest.raises(RegionMapError if name == "region_map" else CapabilityError):
            model.forward_outputs(inputs, [name])
    if not caps.detail_views:
        with pytest.raises(CapabilityError, match="detail crops"):
            model.forward_outputs(ModelInputs(inputs.whole, torch.zeros(2, 2, 3, 48, 48)))
    with pytest.raises(ValueError, match="unknown model outputs"):
        model.forward_outputs(inputs, ["p_high"])


def test_every_registered_architecture_is_covered() -> None:
    assert {arch for arch, _ in REGISTERED} == set(list_models())


@pytest.mark.parametrize(("arch", "args"), REGISTERED, ids=[f"{a}-{i}" for i, (a, _) in enumerate(REGISTERED)])
def test_registered_architecture_gives_exactly_what_it_declares(arch: str, args: dict[str, Any]) -> None:
    _check_outputs(_tiny(arch, args))


@pytest.mark.parametrize(("name", "build"), PLAIN, ids=[n for n, _ in PLAIN])
def test_plain_twin_gives_exactly_what_it_declares(name: str, build: Callable[[], torch.nn.Module]) -> None:
    torch.manual_seed(0)
    model = build().eval()
    randomise_batchnorm(model)
    _check_outputs(model)


def test_declared_capabilities() -> None:
    assert _tiny("mpa_resnet18", _MPA).capabilities == Capabilities(embedding=True, region_map=True)
    assert _tiny("faultnet", _FAULT).capabilities == Capabilities(embedding=True, region_map=True, faults=True, detail_views=True)
    assert _tiny("rgnet_densenet121", REGISTERED[5][1]).capabilities == Capabilities(embedding=True)  # three classes
    # A personal model gives the base's outputs; the base's region map only with detail views (as it always did).
    assert _tiny(*REGISTERED[6]).capabilities == Capabilities(embedding=True)
    assert _tiny(*REGISTERED[7]).capabilities == _tiny("faultnet", _FAULT).capabilities
    assert PlainFaultNet("resnet10t").capabilities == _tiny("faultnet", _FAULT).capabilities


@pytest.mark.parametrize(("arch", "args"), REGISTERED, ids=[f"{a}-{i}" for i, (a, _) in enumerate(REGISTERED)])
def test_cards_without_the_field_derive_what_the_class_declares(arch: str, args: dict[str, Any]) -> None:
    """Cards written before cards recorded capabilities (the shipped ones) get them from the
    architecture, in one function: it must agree with the classes."""
    model = _tiny(arch, args)
    assert card_capabilities({"architecture": arch, "arch_args": model.arch_args}) == model.capabilities


def test_the_card_records_the_capabilities(tmp_path: Path) -> None:
    model = _tiny("faultnet", _FAULT)
    card = save_weights(model, tmp_path / "f.safetensors", {"capabilities": {"faults": False}})  # a stale value never wins
    assert card["capabilities"] == {"embedding": True, "region_map": True, "faults": True, "detail_views": True}
    assert read_card(tmp_path / "f.json")["capabilities"] == card["capabilities"]
    assert card_capabilities(card) == model.capabilities and has_reasons_head(card)
    mpa = save_weights(_tiny("mpa_resnet18", _MPA), tmp_path / "m.safetensors")
    assert not has_reasons_head(mpa) and card_capabilities(mpa).region_map
    # a recorded value is what counts, and a bad one is refused when the card is read
    assert not has_reasons_head({**card, "capabilities": {**card["capabilities"], "faults": False}})
    (tmp_path / "f.json").write_text((tmp_path / "f.json").read_text().replace('"faults": true', '"faults": "yes"'))
    with pytest.raises(WeightsError, match="capabilities faults must be true or false"):
        read_card(tmp_path / "f.json")


def test_shipped_cards_are_read_as_they_are() -> None:
    """The cards shipped before the field are read as they are (their files are verified, never
    rewritten); the default's, written since, records it."""
    card = read_card(default_weights_path().parent / "aescore-technical-lite0.json")
    assert "capabilities" not in card
    assert card_capabilities(read_card(default_weights_path())) == card_capabilities(card)
    assert card_capabilities(card) == Capabilities(embedding=True, region_map=True, faults=True, detail_views=True)
    r18 = read_card(default_weights_path().parent / "aescore-technical-r18.json")
    assert card_capabilities(r18) == Capabilities(embedding=True, region_map=True) and not has_reasons_head(r18)


def test_the_core_and_the_export_never_probe_a_network() -> None:
    from aescore.inference import core, loading, onnx_export

    for module in (core, loading, onnx_export):
        source = inspect.getsource(module)
        assert "hasattr(" not in source, module.__name__
        assert "forward_views" not in source and "forward_with_" not in source, module.__name__
    forward = inspect.getsource(core.LoadedModel.forward)
    assert "getattr(" not in forward and "forward_outputs(" in forward


def test_the_core_passes_on_what_the_model_declares(tmp_path: Path) -> None:
    """Asked for every output, a network without a reasons head gives the rest (no error, no faults)."""
    from aescore.data.transforms import Preprocess
    from aescore.inference.core import LoadedModel

    model = _tiny("mpa_resnet18", _MPA)
    loaded = LoadedModel(model, Preprocess.from_card(model.default_preprocess), "cpu")
    with torch.inference_mode():
        out = loaded.forward(torch.randn(2, 3, 64, 64), frozenset({"p_high", "embedding", "region_map", "faults"}))
    assert set(out) == {"p_high", "embedding", "region_map"}


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_a_run_reads_the_card_once(runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_model: resolve, card, runtime, build in one place; the card is read (and checked) once."""
    pytest.importorskip("onnxruntime")
    from aescore.inference.loading import open_model
    from aescore.weights import card as card_module

    reads: list[Path] = []
    real = card_module.card_structure
    monkeypatch.setattr(card_module, "card_structure", lambda path: reads.append(Path(path)) or real(path))
    model = open_model(None, "cpu", runtime, want=frozenset({"p_high", "embedding", "faults"}))
    assert model.runtime.value == runtime and reads == [default_weights_path().with_suffix(".json")]


def test_a_recipe_with_detail_crops_needs_a_network_that_takes_them(tmp_path: Path) -> None:
    from aescore.inference.loading import open_model

    model = _tiny("mpa_resnet18", _MPA)
    recipe = {**model.default_preprocess, "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5,
                                                   "detail": {"crops": 2, "size": 48, "decode_shorter": 200}}}
    save_weights(model, tmp_path / "m.safetensors", {"preprocess": recipe})
    with pytest.raises(WeightsError, match="detail crops, which architecture 'mpa_resnet18' does not take"):
        open_model(tmp_path / "m.safetensors", "cpu", "torch")
