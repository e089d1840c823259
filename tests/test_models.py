"""Model registry, MPA, RGNet and its layers (Eqs. 1-5), backbone weights and dilation surgery.

Offline and CPU-only: no test downloads weights (the pretrained path is exercised with timm's
loader patched to fail as it does without a connection).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from aescore.errors import UsageError, WeightsError
from aescore.models import create_model, list_models
from aescore.models.backbones import create_backbone, dilate_densenet_, pretrained_tag
from aescore.models.layers import (
    DenseASPP,
    RegionGraphConv,
    lse_pool,
    pairwise_similarity,
    region_graph_conv,
    region_graph_reference,
    similarity_matrix,
)
from aescore.models.rgnet import VARIANTS
from tests.helpers import outputs

torch.manual_seed(0)


@pytest.fixture(scope="module")
def rgnet() -> torch.nn.Module:
    return create_model("rgnet_densenet121").eval()


# ---------------------------------------------------------------- registry and MPA


def test_registry_lists_both_models() -> None:
    assert {"mpa_resnet18", "rgnet_densenet121"} <= set(list_models())
    with pytest.raises(UsageError):
        create_model("no_such_model")


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 256, 341)])
def test_mpa_logits_for_square_and_non_square_input(shape: tuple[int, ...]) -> None:
    model = create_model("mpa_resnet18").eval()
    with torch.no_grad():
        out, emb = model(torch.randn(shape)), outputs(model, torch.randn(shape), "embedding").embedding
    assert out.shape == (shape[0], 2)
    assert emb.shape == (shape[0], 512)
    assert model.arch_name == "mpa_resnet18"
    pre = json.loads(json.dumps(model.default_preprocess))
    assert pre["eval"] == {"mode": "shorter", "size": 256, "max_aspect": 1.5}
    assert pre["train"] == {"kind": "mpa", "resize_shorter": 256, "crop": 224}


def test_mpa_accepts_any_timm_backbone() -> None:
    model = create_model("mpa_resnet18", backbone="resnet10t").eval()
    assert model.arch_args == {"backbone": "resnet10t"}
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        assert model(x).shape == (2, 2)
        both = outputs(model, x, "embedding")  # one backbone pass for both
        torch.testing.assert_close(both.logits, model(x))
        torch.testing.assert_close(both.embedding, model.backbone(x))  # the backbone's pooled features
    with pytest.raises(UsageError):
        create_model("mpa_resnet18", backbone="not_a_timm_model")


# ---------------------------------------------------------------- RGNet shapes and outputs


def test_rgnet_300_gives_37x37_regions_and_d_prime_1280(rgnet: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        feats = rgnet.backbone.forward_features(x)
        context = rgnet.context(feats)
        regions = torch.softmax(rgnet.head(rgnet.graph(context)), dim=1)
        logits = rgnet(x)
    assert feats.shape == (1, 1024, 37, 37)
    assert feats.min() >= 0  # the features include DenseNet's final BN-ReLU
    assert context.shape == (1, 1280, 37, 37)
    assert regions.shape == (1, 2, 37, 37)
    torch.testing.assert_close(regions.sum(1), torch.ones(1, 37, 37))
    # Eq. 5: the model's softmax is softmax(LSE_4(region scores)).
    torch.testing.assert_close(torch.softmax(logits, 1), torch.softmax(lse_pool(regions, 4.0), 1), atol=1e-5, rtol=0)
    # LSE pools probabilities, so y in [0, 1] and p in [1/(1+e), e/(1+e)].
    assert logits.min() >= 0 and logits.max() <= 1
    p = torch.softmax(logits, 1)
    assert p.min() >= 1 / (1 + math.e) - 1e-6 and p.max() <= math.e / (1 + math.e) + 1e-6
    assert rgnet.default_preprocess["eval"] == {"mode": "square", "size": 300}


def test_rgnet_region_scores_and_embed(rgnet: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        regions, emb, logits = rgnet.region_scores(x), outputs(rgnet, x, "embedding").embedding, rgnet(x)
    assert regions.shape == (2, 2, 8, 12)
    assert emb.shape == (2, 1280)
    torch.testing.assert_close(logits, lse_pool(regions, 4.0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_build_and_run(variant: str) -> None:
    model = create_model("rgnet_densenet121", variant=variant).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        emb = outputs(model, x[:1], "embedding").embedding
        both = outputs(model, x, "embedding")  # the scorer's one-pass path for --similarity
        # the head's input, computed apart, same batch (kernels may differ with the batch size)
        emb_batch = model.backbone(x) if variant == "FC-CNN" else model.feature_map(x).mean((2, 3))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    torch.testing.assert_close(both.logits, out)
    torch.testing.assert_close(both.embedding, emb_batch)
    graph_blocks = [m for m in model.modules() if isinstance(m, RegionGraphConv)]
    assert len(graph_blocks) == (3 if variant.endswith("G") else 0)
    assert any(isinstance(m, DenseASPP) for m in model.modules()) == ("-A" in variant)
    if variant == "FC-CNN":
        assert emb.shape == (1, 1024)
        assert model.default_preprocess["eval"] == {"mode": "square", "size": 224}
        with pytest.raises(UsageError):
            model.region_scores(torch.randn(1, 3, 64, 64))
    else:
        assert model.region_scores(torch.randn(1, 3, 64, 64)).shape == (1, 2, 8, 8)
    if variant == "FCN-C-C":  # ASPP's 4 layers + 3 graph blocks replaced by 7 plain convs
        assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in model.context.modules()) == 7


def test_rgnet_rejects_unknown_variant_and_trains_graph_weights() -> None:
    with pytest.raises(UsageError):
        create_model("rgnet_densenet121", variant="FCN-X")
    model = create_model("rgnet_densenet121", graph_blocks=1).train()
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 1])).backward()
    block = model.graph[0]
    for lin in (block.A, block.B, block.W):
        assert lin.bias is None and lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def _he_std(weight: torch.Tensor) -> float:
    return math.sqrt(2.0 / (weight[0].numel()))  # fan_in = in_channels x kernel area


def test_new_layers_get_he_initialisation() -> None:
    # Sec. 3.3: every layer RGNet adds (and MPA's classifier) starts from He-normal weights, zero
    # biases and identity BatchNorm; the ImageNet backbone keeps its own initialisation.
    torch.manual_seed(0)
    model = create_model("rgnet_densenet121", graph_blocks=1)
    mpa = create_model("mpa_resnet18", backbone="resnet10t")
    new_weights = [
        *(layer[2].weight for layer in model.context.layers),  # DenseASPP 3x3 atrous convs
        model.graph[0].A.weight, model.graph[0].B.weight, model.graph[0].W.weight,
        model.head[1].weight,  # 1x1 classifier: only 2 x 1280 values
        mpa.head.weight,
    ]
    for w in new_weights:
        assert abs(w.std().item() / _he_std(w) - 1) < (0.25 if w.numel() < 5000 else 0.05), tuple(w.shape)
        assert abs(w.mean().item()) < 4 * _he_std(w) / math.sqrt(w.numel())
    assert torch.count_nonzero(model.head[1].bias) == 0 and torch.count_nonzero(mpa.head.bias) == 0
    for bn in (model.head[0], model.graph[0].norm, model.context.layers[0][0]):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


# ---------------------------------------------------------------- layers: Eqs. 1-4


def _abw(d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.randn(d, d, dtype=torch.float64) / math.sqrt(d) for _ in range(3))  # type: ignore[return-value]


def test_similarity_is_eq1_and_rows_are_stochastic() -> None:
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    A, B, _ = _abw(16)
    s = pairwise_similarity(x, A, B)
    assert torch.allclose(s[1, 3, 7], (A @ x[1, 3]) @ (B @ x[1, 7]))  # phi(x_i)^T theta(x_j)
    S = similarity_matrix(x, A, B)
    assert S.shape == (2, 30, 30) and (S >= 0).all()
    torch.testing.assert_close(S.sum(-1), torch.ones(2, 30, dtype=torch.float64))


def test_sdpa_graph_block_equals_explicit_reference() -> None:
    x = torch.randn(2, 50, 16, dtype=torch.float64)
    A, B, W = _abw(16)
    torch.testing.assert_close(region_graph_conv(x, A, B, W), region_graph_reference(x, A, B, W))
    block = RegionGraphConv(32).train()
    tokens = torch.randn(3, 40, 32)
    ref = region_graph_reference(tokens, block.A.weight, block.B.weight, block.W.weight)
    torch.testing.assert_close(block.forward_tokens(tokens), ref, atol=1e-5, rtol=1e-5)


def test_inference_folding_equals_unfolded_path() -> None:
    block = RegionGraphConv(256).eval()
    x = torch.randn(2, 256, 10, 10)
    with torch.no_grad():
        block.fold_at_inference = False
        plain = block(x)
        block.fold_at_inference = True
        folded = block(x)
        assert block._fold_cache is not None  # the folded path really ran
        torch.testing.assert_close(folded, plain, atol=1e-4, rtol=1e-4)
        block.A.weight.mul_(0.5)  # the cache must notice changed weights
        block.fold_at_inference = False
        plain = block(x)
    with torch.inference_mode():
        block.fold_at_inference = True
        torch.testing.assert_close(block(x), plain, atol=1e-4, rtol=1e-4)
    model = create_model("rgnet_densenet121").eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        folded = model(img)
    with torch.no_grad():
        for blk in model.graph:
            blk.fold_at_inference = False
        torch.testing.assert_close(model(img), folded, atol=1e-4, rtol=0)


def test_dense_aspp_channels_and_size() -> None:
    aspp = DenseASPP(in_ch=32, rates=(3, 6, 12, 18), growth=8)
    out = aspp(torch.randn(1, 32, 9, 9))
    assert aspp.out_channels == 64 and out.shape == (1, 64, 9, 9)
    assert [layer[2].dilation for layer in aspp.layers] == [(3, 3), (6, 6), (12, 12), (18, 18)]


def test_lse_pool_limits() -> None:
    y = torch.rand(3, 2, 5, 7, dtype=torch.float64)
    mean, mx = y.mean((2, 3)), y.amax((2, 3))
    torch.testing.assert_close(lse_pool(y, 1e-6), mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(lse_pool(y, 0.0), mean)
    torch.testing.assert_close(lse_pool(y, 1e5), mx, atol=1e-4, rtol=0)
    naive = torch.log(torch.exp(4 * y).mean((2, 3))) / 4  # Eq. 4 as printed
    torch.testing.assert_close(lse_pool(y, 4.0), naive)
    pooled = [lse_pool(y, r) for r in (0.5, 2.0, 8.0, 32.0)]
    assert all((a <= b + 1e-12).all() for a, b in zip(pooled, pooled[1:]))  # grows from mean to max


# ---------------------------------------------------------------- backbones and weights


def test_dilation_gives_stride_8_and_keeps_state_dict() -> None:
    plain = timm.create_model("densenet121", num_classes=0)
    dilated = dilate_densenet_(copy.deepcopy(plain))
    a, b = plain.state_dict(), dilated.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert plain.forward_features(x).shape[-2:] == (2, 2)
        assert dilated.forward_features(x).shape[-2:] == (8, 8)
    assert dilated.features.denseblock3.denselayer1.conv2.dilation == (2, 2)
    assert dilated.features.denseblock4.denselayer16.conv2.padding == (4, 4)
    assert dilated.features.denseblock2.denselayer1.conv2.dilation == (1, 1)
    with pytest.raises(ValueError):
        dilate_densenet_(timm.create_model("resnet10t"))


def test_pretrained_pins_torchvision_tags_and_fails_offline_with_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pretrained_tag("resnet18") == "resnet18.tv_in1k"
    assert pretrained_tag("densenet121") == "densenet121.tv_in1k"
    assert pretrained_tag("resnet50.a1_in1k") == "resnet50.a1_in1k"
    requested: list[str] = []

    def offline_create(name: str, pretrained: bool = False, **kw: object) -> None:
        requested.append(name)
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline_create)
    with pytest.raises(WeightsError) as err:
        create_model("rgnet_densenet121", pretrained=True)
    assert requested == ["densenet121.tv_in1k"]
    message = str(err.value)
    # The library names its own parameters; `aescore train` names its flags (tests/test_engine.py).
    assert "\n" not in message and "backbone_weights" in message and "densenet121.tv_in1k" in message


def test_pretrained_through_real_timm_loader_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._builder as builder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("offline: cannot reach the Hugging Face Hub")

    monkeypatch.setattr(builder, "load_pretrained", no_network)
    with pytest.raises(WeightsError, match="backbone_weights=PATH"):
        create_model("mpa_resnet18", backbone="resnet10t", pretrained=True)


def test_backbone_weights_from_safetensors_round_trip(tmp_path) -> None:
    source = timm.create_model("resnet10t", num_classes=1000)  # ImageNet head: dropped on load
    path = tmp_path / "r10t.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_model("mpa_resnet18", backbone="resnet10t", backbone_weights=str(path))
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k
    assert "backbone_weights" not in model.arch_args


def test_backbone_weights_torchvision_densenet_pth(tmp_path) -> None:
    source = timm.create_model("densenet121", num_classes=1000)
    # Old torchvision names ("norm.1") inside a checkpoint dict, with a DDP "module." prefix.
    renamed = {"module." + k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
               for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "densenet121.pth"
    torch.save({"state_dict": renamed}, path)
    model = create_model("rgnet_densenet121", variant="FCN", backbone_weights=path)
    for k, v in model.backbone.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, source.state_dict()[k]), k


def test_backbone_weights_errors(tmp_path) -> None:
    state = timm.create_model("resnet10t", num_classes=0).state_dict()
    del state["layer1.0.conv1.weight"]
    partial = tmp_path / "partial.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial))
    with pytest.raises(WeightsError, match="missing keys: layer1.0.conv1.weight"):
        create_backbone("resnet10t", backbone_weights=partial, num_classes=0)
    with pytest.raises(WeightsError, match="not found"):
        create_backbone("resnet10t", backbone_weights=tmp_path / "absent.safetensors")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(WeightsError, match="unsupported"):
        create_backbone("resnet10t", backbone_weights=tmp_path / "w.txt")
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18", num_classes=0).state_dict().items()}, str(other))
    with pytest.raises(WeightsError, match="does not fit"):
        create_backbone("resnet10t", backbone_weights=other, num_classes=0)


def test_backbone_weights_from_an_aescore_mpa_file(tmp_path: Path) -> None:
    """An aescore MPA weights file initialises a new model's backbone (its head is not copied)."""
    from aescore.weights import save_weights

    src = create_model("mpa_resnet18", backbone="resnet10t")
    save_weights(src, tmp_path / "m.safetensors", {})
    dst = create_model("mpa_resnet18", backbone="resnet10t", backbone_weights=str(tmp_path / "m.safetensors"))
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(v, dst.backbone.state_dict()[k]), k
