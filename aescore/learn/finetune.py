"""``aescore learn --fine-tune``: train the base network's backbone together with the personal
head on pairs of rated photos (RankNet loss), on a GPU.

Starting point: the linear head fitted on the embeddings (:mod:`aescore.learn.ranker`), so the
first step already ranks as well as the head alone. The network trains on the inputs the scorer
builds: each photo is decoded once as the inference core decodes it and kept in memory as the
model recipe's pixels (:meth:`~aescore.data.transforms.Preprocess.pixels`, uint8: the whole-frame
view and, for a recipe with detail crops such as the default model's, the detail crops); every
step takes ``batch_pairs`` random pairs with different ratings, cuts a random square (at most
``crop`` px) of each whole-frame view, flips a photo's views together at random, scales them by
the recipe (:meth:`~aescore.data.transforms.Preprocess.scale`, on the device) and runs them
through the model contract, so the detail crops are pooled as in scoring. One AdamW step per
batch (backbone at ``lr``, head weights at ``head_lr``) through aescore's one training loop
(:class:`aescore.engine.loop.Trainer`, :func:`aescore.engine.loop.fit_steps`: mixed precision on
CUDA, the NaN/inf check). BatchNorm keeps its statistics (eval mode) — a few hundred photos cannot
re-estimate them. Held-out shoots are never seen; their scores come from the inference core
(:func:`aescore.learn.core_scores`), as ``score --model NAME`` computes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from aescore.data.transforms import DetailViews, Preprocess
    from aescore.models.contract import ModelInputs
    from aescore.models.personal import PersonalNet


@dataclass(frozen=True)
class FineTuneConfig:
    """Fine-tuning hyper-parameters (``steps`` None: 4 passes over the training pairs' photos,
    between 100 and 2,000 steps)."""

    steps: int | None = None
    batch_pairs: int = 32
    lr: float = 3e-5
    head_lr: float = 1e-3
    crop: int = 352
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for the model card)."""
        return asdict(self)


def decode_for_model(paths: Sequence[str], preprocess: dict[str, Any]) -> list["DetailViews"]:
    """Each photo decoded as the inference core decodes it (at the recipe's decode size), as the
    recipe's pixels before scaling (:meth:`~aescore.data.transforms.Preprocess.pixels`): uint8
    tensors, the whole-frame view ``[3, H, W]`` and the detail crops ``[K, 3, c, c]`` (None
    without a detail block)."""
    import torch

    from aescore.data.images import load_rgb
    from aescore.data.transforms import DetailViews, Preprocess

    recipe = Preprocess.from_card(preprocess)
    out = []
    for path in paths:
        views = recipe.pixels(load_rgb(path, min_shorter=recipe.decode_size()))
        crops = None if views.crops is None else torch.from_numpy(views.crops).permute(0, 3, 1, 2)
        out.append(DetailViews(torch.from_numpy(views.whole).permute(2, 0, 1), crops))
    return out


def _pair_batches(
    images: list["DetailViews"], hi_all: np.ndarray, lo_all: np.ndarray, recipe: "Preprocess", device: Any,
    config: FineTuneConfig, rng: np.random.Generator,
) -> Iterator["ModelInputs"]:
    """Endless batches: ``batch_pairs`` random pairs (the higher-rated photos first, then their
    partners), each photo's whole-frame view cut to a random square, its views flipped together
    at random, then scaled by the recipe on ``device``."""
    import torch

    from aescore.models.contract import ModelInputs

    while True:
        pick = rng.integers(0, len(hi_all), config.batch_pairs)
        wholes, crops = [], []
        for i in np.concatenate([hi_all[pick], lo_all[pick]]):
            views = images[int(i)]
            _, h, w = views.whole.shape
            c = min(h, w, config.crop)
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            whole, detail = views.whole[:, top : top + c, left : left + c], views.crops
            if rng.random() < 0.5:
                whole = whole.flip(-1)
                detail = None if detail is None else detail.flip(-1)
            wholes.append(whole)
            crops.append(detail)
        side = min(t.shape[-1] for t in wholes)  # a photo smaller than ``crop``: the batch follows it
        x = recipe.scale(torch.stack([t[:, :side, :side] for t in wholes]).to(device, non_blocking=True))
        if crops[0] is None:
            yield ModelInputs(x)
        else:
            yield ModelInputs(x, recipe.scale(torch.stack(crops).to(device, non_blocking=True)))


def _rank_loss(net: Any, inputs: "ModelInputs") -> Any:
    """RankNet's loss: softplus of minus the personal score margin of each pair (the first half
    of the batch is rated higher than the second)."""
    import torch.nn.functional as F

    s = net.forward_outputs(inputs, ()).logits[:, 1].float()  # the pooled score, as scored
    half = s.shape[0] // 2
    return F.softplus(-(s[:half] - s[half:])).mean()


def fine_tune(
    net: "PersonalNet",
    images: list["DetailViews"],
    ratings: np.ndarray,
    preprocess: dict[str, Any],
    device: str,
    config: FineTuneConfig = FineTuneConfig(),
    progress: Callable[[int], None] | None = None,
) -> int:
    """Train ``net`` (a :class:`~aescore.models.personal.PersonalNet`) in place on ``images``
    (from :func:`decode_for_model`) rated ``ratings``; returns the number of steps taken."""
    import torch
    from torch import nn

    from aescore.data.transforms import Preprocess
    from aescore.engine.loop import Trainer, fit_steps
    from aescore.engine.setup import resolve_amp
    from aescore.learn.ranker import rated_pairs

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    hi_all, lo_all = rated_pairs(ratings, 2_000_000, rng)
    if len(hi_all) == 0:
        raise ValueError("no pair of photos with different ratings to fine-tune on")
    steps = config.steps or int(np.clip(4 * len(images) // config.batch_pairs, 100, 2000))
    dev = torch.device(device)
    net.to(dev).train()
    # Everything learns, the default base's content tail too: it is frozen in the base model (its
    # ImageNet weights are what the head was fitted on), but here the embedding is what adapts.
    net.requires_grad_(True)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()  # keep the running statistics
    head = [net.weight]
    backbone = [p for n, p in net.named_parameters() if not n.startswith("weight") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": backbone, "lr": config.lr}, {"params": head, "lr": config.head_lr}], weight_decay=1e-4)
    trainer = Trainer(net, opt, dev, resolve_amp(None, dev))
    batches = _pair_batches(images, hi_all, lo_all, Preprocess.from_card(preprocess), dev, config, rng)
    stats = fit_steps(trainer, batches, _rank_loss, max_steps=steps,
                      on_step=None if progress is None else (lambda done: progress(1)))
    net.eval()
    return stats.steps
