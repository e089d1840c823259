"""Per-region logit maps (the report's overlay): exact for MPA's GAP + linear head, RGNet's region logits."""

from __future__ import annotations

import pytest
import torch

from aescore.models import create_model
from aescore.models.mpa import MPANet
from aescore.models.regions import RegionMapError
from tests.helpers import outputs


def _region_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return outputs(model, x, "region_map").region_map


def _bn_stats_(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so the test does not pass on an all-identity network."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def mpa() -> torch.nn.Module:
    torch.manual_seed(0)
    return _bn_stats_(create_model("mpa_resnet18"))


def test_mpa_region_map_mean_is_the_image_logit(mpa: torch.nn.Module) -> None:
    model = mpa
    x = torch.randn(2, 3, 256, 320)
    with torch.no_grad():
        logits = model(x)
        both = outputs(model, x, "embedding", "region_map")
        out, emb, regions = both.logits, both.embedding, both.region_map
        assert regions.shape == (2, 8, 10)  # ResNet stride 32
        torch.testing.assert_close(out, logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(emb, outputs(model, x, "embedding").embedding, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(regions.mean((1, 2)), logits[:, 1] - logits[:, 0], rtol=1e-4, atol=1e-5)
        # The map is not flat: it localises (different regions, different evidence).
        assert float(regions.std()) > 1e-3
        torch.testing.assert_close(_region_logits(model, x), regions)


def test_mpa_region_map_follows_the_content(mpa: torch.nn.Module) -> None:
    # Changing only the left quarter of the photo changes the left columns of the map most.
    torch.manual_seed(1)
    model = mpa
    x = torch.randn(1, 3, 256, 512)
    y = x.clone()
    y[..., :128] = torch.randn(1, 3, 256, 128)
    with torch.no_grad():
        diff = (_region_logits(model, x) - _region_logits(model, y)).abs().mean(1)[0]  # per column
    assert float(diff[:3].mean()) > 5 * float(diff[-3:].mean())


def test_mpa_without_average_pooling_has_no_region_map() -> None:
    model = MPANet("convnext_atto").eval()  # LayerNorm after pooling: no exact decomposition
    assert not model.capabilities.region_map
    with pytest.raises(RegionMapError):
        _region_logits(model, torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("variant", ["FCN", "FC-CNN"])
def test_rgnet_region_logits(variant: str) -> None:
    torch.manual_seed(0)
    model = _bn_stats_(create_model("rgnet_densenet121", variant=variant, graph_blocks=1))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        both = outputs(model, x, "embedding", "region_map")
        out, emb, regions = both.logits, both.embedding, both.region_map
        torch.testing.assert_close(out, logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(emb, outputs(model, x, "embedding").embedding, rtol=1e-5, atol=1e-5)
        if variant == "FCN":
            assert regions.shape == (1, 8, 8)  # stride 8
            # The logit of the paper's region scores Y^1_ij.
            torch.testing.assert_close(torch.sigmoid(regions), model.region_scores(x)[:, 1], rtol=1e-5, atol=1e-6)
        else:
            assert regions.shape == (1, 2, 2)  # DenseNet stride 32
            torch.testing.assert_close(regions.mean((1, 2)), logits[:, 1] - logits[:, 0], rtol=1e-4, atol=1e-5)
