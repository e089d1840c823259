"""Colour-blind detail crops (issue 28, ``crop_norm``): each crop's colour and brightness removed
before the network sees it; timm network, plain twin and ONNX program alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aescore.models import create_model
from aescore.models.heads import CROP_GREY, colour_blind_crops, crop_grey
from aescore.models.plain import PlainFaultNet, plain_supported
from aescore.weights import load_weights, save_weights
from tests.helpers import outputs, randomise_batchnorm

_VIEWS = ("embedding", "faults", "region_map")


def _offset(crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The same crops, each with its own per-channel shift (a tint and a brightness change)."""
    return crops + torch.randn(*crops.shape[:-2], 1, 1, generator=g)


def test_colour_blind_crops_keep_texture_and_drop_colour() -> None:
    g = torch.Generator().manual_seed(0)
    crops = torch.randn(3, 3, 32, 32, generator=g)
    grey = crop_grey((0.5,) * 3, (0.25,) * 3)
    assert grey == ((CROP_GREY - 0.5) / 0.25,) * 3
    a, b = colour_blind_crops(crops, grey), colour_blind_crops(_offset(crops, g), grey)
    torch.testing.assert_close(a, b)  # colour and brightness of a crop make no difference
    torch.testing.assert_close(a.mean((-2, -1)), torch.tensor([grey] * 3))
    torch.testing.assert_close(a.std((-2, -1)), crops.std((-2, -1)))  # texture, noise: same amplitude


def _pair(backbone: str = "resnet10t", seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A random faultnet and the same weights with colour-blind crops (no new tensors)."""
    torch.manual_seed(seed)
    base = create_model("faultnet", backbone=backbone).eval()
    randomise_batchnorm(base, seed)
    blind = create_model("faultnet", backbone=backbone, crop_norm=True).eval()
    assert list(blind.state_dict()) == list(base.state_dict())  # no new tensors
    blind.load_state_dict(base.state_dict())
    return base, blind


def test_only_the_crops_become_colour_blind() -> None:
    base, blind = _pair()
    g = torch.Generator().manual_seed(1)
    whole, crops = torch.randn(2, 3, 64, 80, generator=g), torch.randn(2, 2, 3, 48, 48, generator=g)
    tinted = _offset(crops, g)
    with torch.no_grad():
        a, b = outputs(blind, whole, *_VIEWS, crops=crops), outputs(blind, whole, *_VIEWS, crops=tinted)
        c, d = outputs(base, whole, *_VIEWS, crops=crops), outputs(base, whole, *_VIEWS, crops=tinted)
        alone = outputs(blind, whole, *_VIEWS), outputs(base, whole, *_VIEWS)
    for key in ("logits", "faults"):
        torch.testing.assert_close(getattr(a, key), getattr(b, key), atol=1e-5, rtol=1e-5)
        assert float((getattr(c, key) - getattr(d, key)).abs().max()) > 1e-3  # the usual network sees the tint
    for key in ("logits", *_VIEWS):  # the whole frame is judged as before: colour is seen there
        assert torch.equal(getattr(alone[0], key), getattr(alone[1], key)), key


def test_plain_twin_and_onnx_program_carry_colour_blind_crops(tmp_path: Path) -> None:
    _, blind = _pair("tf_efficientnet_lite0", seed=2)
    recipe = {"mean": [0.5] * 3, "std": [0.5] * 3,
              "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5, "detail": {"crops": 2, "size": 48, "decode_shorter": 200}}}
    save_weights(blind, tmp_path / "b.safetensors", {"name": "b", "preprocess": recipe, "training": {"dataset": "none"}})
    plain, card = load_weights(tmp_path / "b.safetensors")
    assert card["arch_args"]["crop_norm"] is True and isinstance(plain, PlainFaultNet) and plain.crop_norm_grey is not None
    assert not plain_supported("faultnet", {"crop_norm": 1})
    g = torch.Generator().manual_seed(3)
    whole, crops = torch.randn(1, 3, 64, 90, generator=g), torch.randn(1, 2, 3, 48, 48, generator=g)
    with torch.no_grad():
        want, got = outputs(blind, whole, "faults", crops=crops), outputs(plain, whole, "faults", crops=crops)
    for key in ("logits", "faults"):
        torch.testing.assert_close(getattr(got, key), getattr(want, key), atol=1e-4, rtol=1e-4)

    pytest.importorskip("onnx")
    import onnxruntime as ort

    from aescore.inference.onnx_export import export_onnx

    block = export_onnx(tmp_path / "b.safetensors", check_shapes=((64, 90), (96, 64)))
    session = ort.InferenceSession(str(tmp_path / block["file"]), providers=["CPUExecutionProvider"])
    logits, faults = session.run(["logits", "faults"], {"whole": whole.numpy(), "crops": _offset(crops, g).numpy()})
    np.testing.assert_allclose(logits, want.logits.numpy(), atol=1e-4)  # tinted crops, the same verdict
    np.testing.assert_allclose(faults, want.faults.numpy(), atol=1e-4)
