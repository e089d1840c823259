"""The paired objective for degradation data: PairedDataset layout and pair_rank's loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aescore.data.pairs import PairedDataset
from aescore.data.splits import Sample
from aescore.errors import DataError
from aescore.losses import mp_ada, pair_rank


def _write(path: Path, value: int) -> Path:
    Image.new("RGB", (40, 30), (value, value, value)).save(path)
    return path


def _tag(img: Image.Image) -> torch.Tensor:
    # one "patch" per image whose value identifies the source image
    return torch.full((1, 3, 2, 2), float(img.getpixel((0, 0))[0]))


def test_items_pair_a_photo_with_its_own_copy(tmp_path: Path) -> None:
    samples = []
    for g, base in (("a", 10), ("b", 100)):
        samples.append(Sample(f"{g}0", _write(tmp_path / f"{g}0.png", base), 1.0, 1, group=g))
        for j in (1, 2):
            samples.append(Sample(f"{g}{j}", _write(tmp_path / f"{g}{j}.png", base + j), 0.0, 0, group=g))
    samples.append(Sample("lonely", _write(tmp_path / "lonely.png", 200), 1.0, 1, group="c"))  # no copy: left out
    ds = PairedDataset(samples, _tag)
    assert len(ds) == 2
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        for i in range(2):
            item = ds[i]
            good, bad = item["image"][0, 0, 0, 0].item(), item["image"][1, 0, 0, 0].item()
            base = 10 if i == 0 else 100
            assert good == base and bad in (base + 1, base + 2)
            seen.add(bad)
    assert seen == {11, 12, 101, 102}  # every copy gets drawn


def test_original_and_copy_get_the_same_patches(tmp_path: Path) -> None:
    from aescore.data.train_transforms import mpa_train_transform

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    good = Image.fromarray(pixels)
    good.save(tmp_path / "g.png")
    Image.fromarray(255 - pixels).save(tmp_path / "b.png")  # a "copy" whose pixels all differ
    samples = [Sample("g", tmp_path / "g.png", 1.0, 1, group="x"), Sample("b", tmp_path / "b.png", 0.0, 0, group="x")]
    tf = mpa_train_transform(resize_shorter=60, crop=16, patches=3, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    item = PairedDataset(samples, tf)[0]["image"]
    good_p, bad_p = item[:3], item[3:]
    # Same crop positions and flips: the copy's patches are exactly the inverted original's.
    assert torch.allclose(bad_p, 1.0 - good_p, atol=1e-6)
    assert not torch.allclose(good_p[0], good_p[1])  # the K patches themselves still differ
    # ...and the next item draws new positions (the RNG moves on).
    nxt = PairedDataset(samples, tf)[0]["image"]
    assert not torch.allclose(nxt[:3], good_p)


def test_missing_group_column_is_a_clear_error(tmp_path: Path) -> None:
    s = Sample("x", _write(tmp_path / "x.png", 5), 1.0, 1)
    with pytest.raises(DataError, match="group"):
        PairedDataset([s], _tag)


def test_pair_rank_value_and_gradient_direction() -> None:
    b, k = 3, 2
    logits = torch.randn(b, 2 * k, 2, dtype=torch.float64, requires_grad=True)
    loss = pair_rank(logits, torch.zeros(b, dtype=torch.long))
    lo = logits[..., 1] - logits[..., 0]
    expected = torch.nn.functional.softplus(lo[:, k:].mean(1) - lo[:, :k].mean(1)).mean() + (
        mp_ada(logits[:, :k], torch.ones(b, dtype=torch.long)) + mp_ada(logits[:, k:], torch.zeros(b, dtype=torch.long))
    ) / 2
    assert torch.allclose(loss.double(), expected)
    loss.backward()
    # descending the loss raises the good photo's log-odds and lowers the copy's
    assert (logits.grad[:, :k, 1] - logits.grad[:, :k, 0] < 0).all()
    assert (logits.grad[:, k:, 1] - logits.grad[:, k:, 0] > 0).all()


def test_pair_rank_finite_for_confident_mistakes() -> None:
    logits = torch.tensor([[[1e4, -1e4], [-1e4, 1e4]]], requires_grad=True)  # good called bad, bad called good
    loss = pair_rank(logits, torch.zeros(1, dtype=torch.long))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_pair_rank_rejects_odd_patch_count() -> None:
    with pytest.raises(ValueError):
        pair_rank(torch.zeros(2, 3, 2), torch.zeros(2, dtype=torch.long))
