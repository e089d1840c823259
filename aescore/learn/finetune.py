"""``aescore learn --fine-tune``: train the base network's backbone together with the personal
head on pairs of rated photos (RankNet loss), on a GPU.

Starting point: the linear head fitted on the embeddings (:mod:`aescore.learn.ranker`), so the
first step already ranks as well as the head alone. Each photo is decoded once at the model's
eval size and kept in memory (uint8); every step takes ``batch_pairs`` random pairs with different
ratings, a random square crop (at most ``crop`` px) and horizontal flip of each photo, and one
Adam step (backbone at ``lr``, head weights at ``head_lr``). BatchNorm keeps its statistics
(eval mode) — a few hundred photos cannot re-estimate them. Held-out shoots are never seen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
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


def decode_for_model(paths: Sequence[str], preprocess: dict[str, Any]) -> list[Any]:
    """Each photo resized as the scorer does (the card's one-pass view), as a uint8 tensor [3, H, W]."""
    from aescore.data.images import load_rgb
    from aescore.data.transforms import Preprocess
    from aescore.tensorutil import pil_to_tensor

    recipe = Preprocess.from_card(preprocess)
    return [pil_to_tensor(recipe.resize(load_rgb(p, min_shorter=recipe.decode_size()))) for p in paths]


def _normaliser(preprocess: dict[str, Any], device: Any) -> Callable[[Any], Any]:
    import torch

    from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(preprocess.get("mean", IMAGENET_MEAN), device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.get("std", IMAGENET_STD), device=device).view(1, 3, 1, 1)
    return lambda x: (x.float().div(255.0) - mean) / std


def fine_tune(
    net: "PersonalNet",
    images: list[Any],
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

    from aescore.learn.ranker import rated_pairs
    from aescore.models.contract import ModelInputs

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    hi_all, lo_all = rated_pairs(ratings, 2_000_000, rng)
    if len(hi_all) == 0:
        raise ValueError("no pair of photos with different ratings to fine-tune on")
    steps = config.steps or int(np.clip(4 * len(images) // config.batch_pairs, 100, 2000))
    net.to(device).train()
    # Everything learns, the default base's content tail too: it is frozen in the base model (its
    # ImageNet weights are what the head was fitted on), but here the embedding is what adapts.
    net.requires_grad_(True)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()  # keep the running statistics
    head = [net.weight]
    backbone = [p for n, p in net.named_parameters() if not n.startswith("weight") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": backbone, "lr": config.lr}, {"params": head, "lr": config.head_lr}], weight_decay=1e-4)
    normalise = _normaliser(preprocess, device)
    for _ in range(steps):
        pick = rng.integers(0, len(hi_all), config.batch_pairs)
        idx = np.concatenate([hi_all[pick], lo_all[pick]])
        batch = []
        for i in idx:
            img = images[int(i)]
            _, h, w = img.shape
            c = min(h, w, config.crop)
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            crop = img[:, top : top + c, left : left + c]
            if rng.random() < 0.5:
                crop = crop.flip(-1)
            batch.append(crop)
        side = min(t.shape[-1] for t in batch)
        x = normalise(torch.stack([t[:, :side, :side] for t in batch]).to(device, non_blocking=True))
        s = net.forward_outputs(ModelInputs(x), ()).logits[:, 1]  # the whole crop, as scored
        margin = s[: config.batch_pairs] - s[config.batch_pairs :]
        loss = nn.functional.softplus(-margin).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(1)
    net.eval()
    return steps


def personal_scores(net: "PersonalNet", images: list[Any], preprocess: dict[str, Any], device: str) -> np.ndarray:
    """``s`` (the personal logit) of each whole image, as the scorer computes it (no crop)."""
    import torch

    from aescore.models.contract import ModelInputs

    normalise = _normaliser(preprocess, device)
    net.to(device).eval()
    out = []
    with torch.inference_mode():
        for img in images:
            out.append(float(net.forward_outputs(ModelInputs(normalise(img[None].to(device))), ()).logits[0, 1]))
    return np.asarray(out)
