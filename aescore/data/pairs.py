"""Paired training items for degradation data: a good photo and a degraded copy of it.

CSV datasets made by ``aescore data degrade`` carry a ``group`` column (the source photo); each
group has one original (label 1) and its degraded copies (label 0). Training on pairs from one
group lets a ranking loss compare a photo with its own flawed copy (see
:func:`aescore.losses.pair_rank`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from aescore.data.images import load_rgb
from aescore.data.splits import Sample
from aescore.errors import DataError, ImageDecodeError


class PairedDataset(Dataset):
    """One item per group: ``{"image": cat(good patches, bad patches), "label": 1, ...}``.

    The transform must return ``[K, 3, H, W]`` patches (the MPA training transform), so an item is
    ``[2K, 3, H, W]``: the good photo's K patches, then those of one of its degraded copies, drawn
    with torch's RNG (seeded per epoch by the engine, so runs and resumes repeat exactly).

    Both images get the *same* random patches (crop positions and flips): the transform runs on
    the copy from the RNG state it started from on the original. A copy has its original's size,
    so patch k of each shows the same part of the scene, and the ranking loss sees the fault, not
    a difference of content between two random crops (which swamps subtle faults). Groups
    without both a positive and a negative sample are left out. A decode failure returns the same
    failure record as :class:`aescore.data.datasets.ImageDataset`.
    """

    def __init__(
        self, samples: Sequence[Sample], transform: Callable[..., torch.Tensor], min_shorter: int | None = None
    ) -> None:
        groups: dict[str, tuple[list[Sample], list[Sample]]] = {}
        for s in samples:
            if s.group is None:
                raise DataError(f"{s.path}: pair_rank needs a 'group' column (made by `aescore data degrade`)")
            good, bad = groups.setdefault(s.group, ([], []))
            (good if s.label == 1 else bad).append(s)
        self.pairs = [(g[0], b) for _, (g, b) in sorted(groups.items()) if g and b]
        if not self.pairs:
            raise DataError("pair_rank: no group has both a good photo (label 1) and a degraded copy (label 0)")
        self.transform = transform
        self.min_shorter = min_shorter

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        good, bads = self.pairs[i]
        bad = bads[int(torch.randint(len(bads), ()))]
        try:
            good_img, bad_img = load_rgb(good.path, self.min_shorter), load_rgb(bad.path, self.min_shorter)
        except ImageDecodeError as err:
            return {"failed": True, "index": i, "reason": err.reason}
        state = torch.get_rng_state()
        good_patches = self.transform(good_img)
        torch.set_rng_state(state)  # the copy's patches from the very same draws
        return {"image": torch.cat([good_patches, self.transform(bad_img)]), "label": 1, "target": 1.0, "index": i}
