"""Plain-torch inference networks (aescore.models.plain): the same tensors and scores as the timm-built
models, and a scoring path that never imports timm, torchvision or torch._dynamo (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from aescore.models import create_model
from aescore.models.contract import ModelOutputs
from aescore.models.plain import (
    EFFICIENTNET_LITES,
    RESNETS,
    PlainEfficientNetLite,
    PlainFaultNet,
    PlainMPANet,
    PlainResNet,
    build_plain_model,
    plain_supported,
)
from aescore.weights import default_weights_path, load_weights, save_weights

from helpers import outputs, randomise_batchnorm

REPO = Path(__file__).resolve().parents[1]


# Own XDG folders come from conftest.py for every test.
pytestmark = pytest.mark.usefixtures("shipped_models_only")


@pytest.mark.parametrize("name", sorted(RESNETS) + sorted(EFFICIENTNET_LITES))
def test_same_tensors_as_timm(name: str) -> None:
    """Every covered backbone has exactly timm's state-dict keys and shapes (so the same file loads),
    the same BatchNorm eps and, for EfficientNet-Lite, residuals in the same blocks."""
    import timm

    with torch.device("meta"):
        ref = timm.create_model(name, pretrained=False, num_classes=0)
        plain = PlainResNet(RESNETS[name]) if name in RESNETS else PlainEfficientNetLite(EFFICIENTNET_LITES[name])
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert plain.num_features == ref.num_features
    ref_bns = {n: m.eps for n, m in ref.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert ref_bns == {n: m.eps for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)}
    if name in EFFICIENTNET_LITES:
        assert [[b.has_skip for b in s] for s in plain.blocks] == [[b.has_skip for b in s] for s in ref.blocks]


@pytest.mark.parametrize("backbone", ["resnet10t", "resnet14t", "resnet18", "resnet18d", "tf_efficientnet_lite0"])
def test_same_outputs_as_timm(backbone: str) -> None:
    """Stems (7x7, deep, deep-tiered), basic and bottleneck blocks, conv and avg-pool shortcuts;
    an EfficientNet-Lite backbone (TensorFlow "SAME" padding at odd sizes)."""
    torch.manual_seed(0)
    ref = create_model("mpa_resnet18", backbone=backbone).eval()
    randomise_batchnorm(ref)
    plain = build_plain_model("mpa_resnet18", {"backbone": backbone}, ref.state_dict())
    assert isinstance(plain, PlainMPANet) and not plain.training
    assert plain.default_preprocess == ref.default_preprocess and plain.num_features == ref.num_features
    x = torch.randn(2, 3, 97, 130)  # odd sizes: padding and ceil-mode pooling must match too
    with torch.inference_mode():
        ref_out = outputs(ref, x, "embedding")
        logits, emb = ref_out.logits, ref_out.embedding
        plain_out = outputs(plain, x, "embedding")
        torch.testing.assert_close(plain_out.logits, logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(plain_out.embedding, emb, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(plain(x), logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(plain.backbone(x), emb, atol=1e-4, rtol=1e-4)  # the embedding: pooled features
        n_bn = sum(type(m) is nn.BatchNorm2d for m in plain.modules())
        assert plain.fold_batchnorm_() == n_bn > 0  # every BatchNorm follows its conv in a ResNet
        assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
        folded = plain(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(torch.softmax(folded, 1), torch.softmax(logits, 1), atol=1e-4, rtol=0)


def _faultnet_pair(backbone: str, seed: int = 0, content_from: int = 0) -> tuple[nn.Module, PlainFaultNet]:
    """A random timm-built faultnet (random BatchNorm statistics) and its plain twin holding its tensors."""
    torch.manual_seed(seed)
    extra = {"content_from": content_from} if content_from else {}
    ref = create_model("faultnet", backbone=backbone, pretrained=False, **extra).eval()
    randomise_batchnorm(ref, seed)
    plain = build_plain_model("faultnet", ref.arch_args, ref.state_dict())
    assert isinstance(plain, PlainFaultNet) and not plain.training
    assert list(plain.state_dict()) == list(ref.state_dict())
    assert plain.default_preprocess == ref.default_preprocess and plain.num_features == ref.num_features
    return ref, plain


_VIEWS = ("embedding", "faults", "region_map")  # every output of the two-view contract


def _views(model: nn.Module, whole: torch.Tensor, crops: torch.Tensor) -> ModelOutputs:
    return outputs(model, whole, *_VIEWS, crops=crops)


def _assert_views_close(got: ModelOutputs, want: ModelOutputs) -> None:
    assert got.present() == want.present() == set(_VIEWS)
    for key in ("logits", *_VIEWS):
        torch.testing.assert_close(getattr(got, key), getattr(want, key), atol=1e-4, rtol=1e-4, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize(("backbone", "sizes", "content_from"), [
    # odd sizes: TensorFlow "SAME" padding of the strided convs is asymmetric and size-dependent
    ("tf_efficientnet_lite0", [((1, 3, 67, 91), (1, 2, 3, 33, 33)), ((2, 3, 224, 320), (2, 2, 3, 160, 160))], 0),
    ("tf_efficientnet_lite2", [((2, 3, 98, 65), (2, 1, 3, 48, 48))], 0),
    ("resnet10t", [((1, 3, 67, 91), (1, 2, 3, 33, 33))], 0),
    ("tf_efficientnet_lite0", [((2, 3, 75, 101), (2, 2, 3, 40, 40))], 3),  # with the content tail
])
def test_faultnet_same_outputs_as_timm(backbone: str, sizes: list[tuple[tuple[int, ...], tuple[int, ...]]], content_from: int) -> None:
    """The two views' outputs (pooled logits, faults, embedding, region map) of the plain twin equal the
    timm-built faultnet's, before and after folding its BatchNorms (the content tail's too)."""
    ref, plain = _faultnet_pair(backbone, content_from=content_from)
    g = torch.Generator().manual_seed(1)
    inputs = [(torch.randn(w, generator=g), torch.randn(c, generator=g)) for w, c in sizes]
    with torch.inference_mode():
        expected = [_views(ref, whole, crops) for whole, crops in inputs]
        for (whole, crops), want in zip(inputs, expected):
            assert want.region_map is not None and want.region_map.ndim == 3
            _assert_views_close(_views(plain, whole, crops), want)
            torch.testing.assert_close(plain(whole), ref(whole), atol=1e-4, rtol=0)
        n_bn = sum(type(m) is nn.BatchNorm2d for m in plain.modules())
        assert plain.fold_batchnorm_() == n_bn > 0  # every BatchNorm follows its conv
        assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
        for (whole, crops), want in zip(inputs, expected):
            cl = torch.channels_last
            _assert_views_close(_views(plain, whole.contiguous(memory_format=cl), crops), want)


def test_faultnet_card_loads_plain_and_prepares_like_timm(tmp_path: Path) -> None:
    """A saved Lite faultnet: load_weights builds the plain twin (same tensors), the inference
    preparation folds it, and it scores as the timm-built model prepared the same way."""
    from aescore.inference.fold import prepare_for_inference

    ref, _ = _faultnet_pair("tf_efficientnet_lite0", seed=2)
    save_weights(ref, tmp_path / "fault.safetensors", {"name": "fault", "training": {"dataset": "none"}})
    plain, card = load_weights(tmp_path / "fault.safetensors")
    timm_built, card2 = load_weights(tmp_path / "fault.safetensors", plain=False)
    assert isinstance(plain, PlainFaultNet) and type(timm_built).__name__ == "FaultNet" and card == card2
    assert card["arch_args"] == {"backbone": "tf_efficientnet_lite0"}
    p_state, r_state = plain.state_dict(), timm_built.state_dict()
    assert p_state.keys() == r_state.keys() and all(torch.equal(p_state[k], r_state[k]) for k in r_state)
    plain, timm_built = prepare_for_inference(plain, "cpu"), prepare_for_inference(timm_built, "cpu")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    g = torch.Generator().manual_seed(4)
    whole, crops = torch.randn(1, 3, 75, 113, generator=g), torch.randn(1, 2, 3, 40, 40, generator=g)
    with torch.inference_mode():
        _assert_views_close(_views(plain, whole, crops), _views(timm_built, whole, crops))


def test_what_is_covered() -> None:
    assert plain_supported("mpa_resnet18", {})
    assert plain_supported("mpa_resnet18", {"backbone": "resnet18.tv_in1k", "num_classes": 2})
    assert plain_supported("mpa_resnet18", {"backbone": "tf_efficientnet_lite0"})
    assert not plain_supported("mpa_resnet18", {"backbone": "efficientnet_b0"})
    assert not plain_supported("mpa_resnet18", {"backbone": "resnet18", "drop_rate": 0.1})  # unknown argument
    assert not plain_supported("mpa_resnet18", {"num_classes": True})
    assert not plain_supported("mpa_resnet18", {"num_faults": 10})  # not an MPA argument
    assert not plain_supported("rgnet_densenet121", {})
    assert plain_supported("faultnet", {})  # the registry's default backbone: tf_efficientnet_lite0
    assert plain_supported("faultnet", {"backbone": "tf_efficientnet_lite2", "num_classes": 2, "num_faults": 10})
    assert plain_supported("faultnet", {"backbone": "resnet10t"})
    assert not plain_supported("faultnet", {"backbone": "tf_efficientnet_b0"})
    assert not plain_supported("faultnet", {"backbone": "tf_efficientnet_lite0", "num_faults": 0})
    assert not plain_supported("faultnet", {"backbone": "tf_efficientnet_lite0", "pretrained": True})
    assert plain_supported("faultnet", {"backbone": "tf_efficientnet_lite0", "content_from": 3})
    assert plain_supported("faultnet", {"backbone": "tf_efficientnet_lite1", "content_from": 0})
    assert not plain_supported("faultnet", {"backbone": "resnet10t", "content_from": 2})  # Lite only
    assert not plain_supported("faultnet", {"backbone": "tf_efficientnet_lite0", "content_from": 7})  # past the last stage
    assert not plain_supported("faultnet", {"backbone": "tf_efficientnet_lite0", "content_from": True})


def _photos(folder: Path) -> list[Path]:
    """Two generated photos: a landscape gradient with noise, a portrait of blocks."""
    g = torch.Generator().manual_seed(3)
    out = []
    for i, (w, h) in enumerate([(600, 400), (300, 460)]):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        rgb = torch.stack([xx, yy, (xx * yy + 0.2 * i) % 1.0], -1) * 200 + torch.rand(h, w, 3, generator=g) * 55
        path = folder / f"p{i}.png"
        Image.fromarray(rgb.clamp(0, 255).to(torch.uint8).numpy()).save(path)
        out.append(path)
    return out


def test_bundled_default_scores_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped model, plain path (what the scorer uses) against the timm-built model, on photos,
    through the same scoring code (an MPA ResNet or a faultnet with its detail views alike)."""
    import aescore.models.plain
    from aescore.inference.scorer import Scorer

    weights = default_weights_path()
    ref, card = load_weights(weights, plain=False)
    plain, card2 = load_weights(weights)
    assert type(ref).__name__ in ("MPANet", "FaultNet") and isinstance(plain, PlainMPANet) and card == card2
    assert isinstance(plain, PlainFaultNet) == (type(ref).__name__ == "FaultNet")
    ref_state, plain_state = ref.state_dict(), plain.state_dict()
    assert ref_state.keys() == plain_state.keys() and all(torch.equal(ref_state[k], plain_state[k]) for k in ref_state)
    paths = _photos(tmp_path)
    scorer = Scorer(weights, device="cpu", workers=0, batch_size=1)
    got = [r.score for r in scorer.score_paths(paths)]
    assert isinstance(scorer.model, PlainMPANet)  # the plain path really was taken
    monkeypatch.setattr(aescore.models.plain, "plain_supported", lambda arch, args: False)
    timm_scorer = Scorer(weights, device="cpu", workers=0, batch_size=1)
    expected = [r.score for r in timm_scorer.score_paths(paths)]
    assert type(timm_scorer.model).__name__ == type(ref).__name__  # ... and here the timm one
    assert got == pytest.approx(expected, abs=1e-4)


def _lite_faultnet_card(folder: Path) -> Path:
    """A random Lite0 faultnet saved with a small detail recipe (64-px frame, two 48-px crops)."""
    torch.manual_seed(0)
    model = create_model("faultnet", backbone="tf_efficientnet_lite0").eval()
    pp = dict(model.default_preprocess)
    pp["eval"] = {"mode": "shorter", "size": 64, "max_aspect": 1.5, "detail": {"crops": 2, "size": 48, "decode_shorter": 200}}
    path = folder / "litefault.safetensors"
    save_weights(model, path, {"name": "litefault", "preprocess": pp, "training": {"dataset": "none"}})
    return path


@pytest.mark.parametrize("model", ["default", "default-torch", "lite-faultnet", "personal"])
def test_scoring_path_imports_no_timm_torchvision_or_dynamo(tmp_path: Path, model: str) -> None:
    """`aescore score one.jpg` through the CLI's own code, in a fresh interpreter: the default
    model (its ONNX program: not even torch is imported), the same under ``--runtime torch``,
    a Lite faultnet card without an ONNX program (PyTorch, plain-torch network), and a personal
    model on it (PyTorch, plain-torch base and head)."""
    photo = _photos(tmp_path)[0]
    extra = {"default": lambda: [], "default-torch": lambda: ["--runtime", "torch"],
             "lite-faultnet": lambda: ["--model", str(_lite_faultnet_card(tmp_path))],
             "personal": lambda: ["--model", str(_personal_card(tmp_path))]}[model]()
    code = (
        "import json, sys\n"
        "from aescore.cli.main import main\n"
        "try:\n"
        f"    main(['score', {str(photo)!r}, '--no-cache', '--workers', '0', *{extra!r}])\n"
        "except SystemExit as e:\n"
        "    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision') or m.startswith('torch._dynamo'))\n"
        "    print(json.dumps({'code': e.code, 'torch': 'torch' in sys.modules, 'heavy': heavy[:5]}), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "torch": model != "default", "heavy": []}, proc.stderr
    score = float(proc.stdout.split("\t")[0])
    assert 0.0 <= score <= 1.0


def test_plain_region_map_equals_timm_and_averages_to_the_logit() -> None:
    """The report's overlay works on the plain scoring path too: same map as the timm model's, and
    its mean is the image's class-1-minus-class-0 logit."""
    torch.manual_seed(0)
    ref = create_model("mpa_resnet18", backbone="resnet10t").eval()
    randomise_batchnorm(ref)
    plain = build_plain_model("mpa_resnet18", {"backbone": "resnet10t"}, ref.state_dict()).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        out = outputs(plain, x, "embedding", "region_map")
        logits, regions = out.logits, out.region_map
        ref_regions = outputs(ref, x, "region_map").region_map
    assert regions.shape == ref_regions.shape == (2, 3, 4)
    assert torch.allclose(regions, ref_regions, atol=1e-4)
    assert torch.allclose(regions.mean((1, 2)), logits[:, 1] - logits[:, 0], atol=1e-4)


def _personal_card(folder: Path) -> Path:
    """A personal model (random head) on the random Lite faultnet of :func:`_lite_faultnet_card`."""
    from aescore.models.personal import PersonalNet

    base, card = load_weights(_lite_faultnet_card(folder), plain=False)
    torch.manual_seed(1)
    net = create_model("personal_ranker", base_architecture="faultnet", base_args=dict(card["arch_args"]), embed_dim=1280)
    net.base.load_state_dict(base.state_dict(), strict=True)
    net.set_head(torch.randn(1280) * 0.1, torch.rand(1280) + 0.5, torch.randn(1280) * 0.05, 0.7, 0.1, 1.3)
    assert isinstance(net, PersonalNet)
    path = folder / "mine.safetensors"
    save_weights(net.eval(), path, {"name": "mine", "preprocess": card["preprocess"], "training": {"dataset": "personal ratings"}})
    return path


def test_personal_model_built_without_timm_scores_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A personal model on a plain-covered base is built in plain torch (base and head), folded
    through its base's own conv + BN pairs, and scores as the timm-built one does."""
    import aescore.models.plain
    from aescore.inference.scorer import Scorer

    weights = _personal_card(tmp_path)
    paths = _photos(tmp_path)
    scorer = Scorer(weights, device="cpu", workers=0, batch_size=1)
    got = [r.score for r in scorer.score_paths(paths)]
    assert type(scorer.model).__name__ == "PersonalNet" and isinstance(scorer.model.base, PlainFaultNet)
    monkeypatch.setattr(aescore.models.plain, "plain_supported", lambda arch, args: False)
    timm_scorer = Scorer(weights, device="cpu", workers=0, batch_size=1)
    expected = [r.score for r in timm_scorer.score_paths(paths)]
    assert type(timm_scorer.model.base).__name__ == "FaultNet"
    assert got == pytest.approx(expected, abs=1e-4) and len(set(got)) == len(got)
