"""BatchNorm folding (aescore.inference.fold): same outputs, and only where folding is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from aescore.inference.fold import fold_batchnorm_
from aescore.models import create_model

from helpers import outputs, randomise_batchnorm




def test_folded_resnet_gives_the_same_scores_and_embeddings() -> None:
    torch.manual_seed(0)
    model = create_model("mpa_resnet18", backbone="resnet10t").eval()
    randomise_batchnorm(model)
    n_bn = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    x = torch.randn(3, 3, 80, 112)
    with torch.inference_mode():
        ref_p, ref_e = torch.softmax(model(x), 1), outputs(model, x, "embedding").embedding
    assert fold_batchnorm_(model) == n_bn > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        p, e = torch.softmax(model(x), 1), outputs(model, x, "embedding").embedding
    torch.testing.assert_close(p, ref_p, atol=1e-4, rtol=0)
    torch.testing.assert_close(e, ref_e, atol=1e-4 * float(ref_e.abs().max()), rtol=1e-4)


class _Residual(nn.Module):
    """conv -> bn, with the conv's output also added back: folding it would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn2(self.conv2(self.bn(y) + y))


def test_conv_with_a_second_consumer_is_left_alone() -> None:
    model = nn.Sequential(_Residual()).eval()
    randomise_batchnorm(model)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        ref = model(x)
        assert fold_batchnorm_(model) == 1  # conv2 -> bn2 only
        assert isinstance(model[0].bn, nn.BatchNorm2d) and isinstance(model[0].bn2, nn.Identity)
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_batchnorm_with_activation_is_not_folded() -> None:
    from timm.layers import BatchNormAct2d

    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4))).eval()
    assert fold_batchnorm_(model) == 0


def test_folding_refuses_a_training_model() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm_(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


def test_evaluate_folds_batchnorm_and_keeps_every_prediction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `aescore evaluate` folds too: its per-image predictions must equal the unfolded model's.
    import aescore.engine.evaluate as ev
    import aescore.inference.fold as fold
    from helpers import make_tiny_ava
    from aescore.engine.setup import sized_preprocess
    from aescore.weights import save_weights

    data = make_tiny_ava(tmp_path / "ava")
    model = create_model("mpa_resnet18", backbone="resnet10t").eval()
    randomise_batchnorm(model)
    path = tmp_path / "m.safetensors"
    save_weights(model, path, {"preprocess": sized_preprocess(model.default_preprocess, 32, 40),
                               "training": {"dataset": "none"}})
    runs: list[dict[int, float]] = []
    real_predict, real_fold = ev.predict, fold.fold_batchnorm_
    folded: list[int] = []

    def spy_predict(*args: object, **kwargs: object) -> object:
        out = real_predict(*args, **kwargs)
        runs.append(out[0])
        return out

    monkeypatch.setattr(ev, "predict", spy_predict)
    monkeypatch.setattr(fold, "fold_batchnorm_", lambda m: folded.append(real_fold(m)) or folded[-1])
    ev.evaluate_weights(str(path), "ava", data["root"], workers=0, device="cpu")
    monkeypatch.setattr(fold, "fold_batchnorm_", lambda m: 0)  # the unoptimised reference
    ev.evaluate_weights(str(path), "ava", data["root"], workers=0, device="cpu")
    assert folded and folded[0] > 0
    with_fold, without = runs
    assert with_fold.keys() == without.keys() and len(with_fold) > 5
    assert max(abs(with_fold[k] - without[k]) for k in with_fold) < 1e-4
    assert max(abs(with_fold[k] - 0.5) for k in with_fold) > 1e-3  # real, not constant, predictions
