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
from aescore.models.plain import RESNETS, PlainMPANet, PlainResNet, build_plain_model, plain_supported
from aescore.weights import default_weights_path, load_weights

from helpers import randomise_batchnorm

REPO = Path(__file__).resolve().parents[1]


# Own XDG folders come from conftest.py for every test.
pytestmark = pytest.mark.usefixtures("shipped_models_only")


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_same_tensors_as_timm(name: str) -> None:
    """Every covered backbone has exactly timm's state-dict keys and shapes (so the same file loads)."""
    import timm

    with torch.device("meta"):
        ref = timm.create_model(name, pretrained=False, num_classes=0)
        plain = PlainResNet(RESNETS[name])
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert plain.num_features == ref.num_features


@pytest.mark.parametrize("backbone", ["resnet10t", "resnet14t", "resnet18", "resnet18d"])
def test_same_outputs_as_timm(backbone: str) -> None:
    """Stems (7x7, deep, deep-tiered), basic and bottleneck blocks, conv and avg-pool shortcuts."""
    torch.manual_seed(0)
    ref = create_model("mpa_resnet18", backbone=backbone).eval()
    randomise_batchnorm(ref)
    plain = build_plain_model("mpa_resnet18", {"backbone": backbone}, ref.state_dict())
    assert isinstance(plain, PlainMPANet) and not plain.training
    assert plain.default_preprocess == ref.default_preprocess and plain.num_features == ref.num_features
    x = torch.randn(2, 3, 97, 130)  # odd sizes: padding and ceil-mode pooling must match too
    with torch.inference_mode():
        logits, emb = ref.forward_with_embedding(x)
        p_logits, p_emb = plain.forward_with_embedding(x)
        torch.testing.assert_close(p_logits, logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(p_emb, emb, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(plain(x), logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(plain.embed(x), emb, atol=1e-4, rtol=1e-4)
        n_bn = sum(type(m) is nn.BatchNorm2d for m in plain.modules())
        assert plain.fold_batchnorm_() == n_bn > 0  # every BatchNorm follows its conv in a ResNet
        assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
        folded = plain(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(torch.softmax(folded, 1), torch.softmax(logits, 1), atol=1e-4, rtol=0)


def test_what_is_covered() -> None:
    assert plain_supported("mpa_resnet18", {})
    assert plain_supported("mpa_resnet18", {"backbone": "resnet18.tv_in1k", "num_classes": 2})
    assert not plain_supported("mpa_resnet18", {"backbone": "efficientnet_b0"})
    assert not plain_supported("mpa_resnet18", {"backbone": "resnet18", "drop_rate": 0.1})  # unknown argument
    assert not plain_supported("mpa_resnet18", {"num_classes": True})
    assert not plain_supported("rgnet_densenet121", {})


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


def test_bundled_default_scores_as_before(tmp_path: Path) -> None:
    """The shipped model, plain path (what the scorer uses) against the timm-built model, on photos."""
    from aescore.data.images import load_rgb
    from aescore.data.transforms import build_eval_transform
    from aescore.inference.scorer import Scorer

    weights = default_weights_path()
    ref, card = load_weights(weights, plain=False)
    plain, card2 = load_weights(weights)
    assert type(ref).__name__ == "MPANet" and isinstance(plain, PlainMPANet) and card == card2
    ref_state, plain_state = ref.state_dict(), plain.state_dict()
    assert ref_state.keys() == plain_state.keys() and all(torch.equal(ref_state[k], plain_state[k]) for k in ref_state)
    paths = _photos(tmp_path)
    transform = build_eval_transform(card["preprocess"])
    with torch.inference_mode():
        expected = [float(torch.softmax(ref(transform(load_rgb(p))[None]), 1)[0, 1]) for p in paths]
    scorer = Scorer(weights, device="cpu", workers=0, batch_size=1)
    got = [r.score for r in scorer.score_paths(paths)]
    assert isinstance(scorer.model, PlainMPANet)  # the plain path really was taken
    assert got == pytest.approx(expected, abs=1e-4)


def test_scoring_path_imports_no_timm_torchvision_or_dynamo(tmp_path: Path) -> None:
    """`aescore score one.jpg` with the default model, through the CLI's own code, in a fresh interpreter."""
    photo = _photos(tmp_path)[0]
    code = (
        "import json, sys\n"
        "from aescore.cli.main import main\n"
        "try:\n"
        f"    main(['score', {str(photo)!r}, '--no-cache', '--workers', '0'])\n"
        "except SystemExit as e:\n"
        "    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision') or m.startswith('torch._dynamo'))\n"
        "    print(json.dumps({'code': e.code, 'torch': 'torch' in sys.modules, 'heavy': heavy[:5]}), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "torch": True, "heavy": []}, proc.stderr
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
        logits, emb, regions = plain.forward_with_regions(x)
        ref_regions = ref.forward_with_regions(x)[2]
    assert regions.shape == ref_regions.shape == (2, 3, 4)
    assert torch.allclose(regions, ref_regions, atol=1e-4)
    assert torch.allclose(regions.mean((1, 2)), logits[:, 1] - logits[:, 0], atol=1e-4)
