"""Training pairs for the default model, made on the fly from real photographs (issue 12).

Each item is one photograph turned into a pair: a *good* version (the photo itself, or at random
a good photo that is soft or dark on purpose: :func:`aescore.data.faults.make_positive`) and a
*faulty* copy of that good version (:func:`aescore.data.faults.make_fault`: one to three fault
families, random implementation and severity, so a fault lands on the sharp subject of a
shallow depth-of-field positive too). Both go through the model's recipe
(:meth:`~aescore.data.transforms.Preprocess.detail_views`), as scoring does, except that the
whole-frame view is cut to a random square of its shorter edge so a batch has one shape.

Variety comes from a random horizontal flip and a random down-scale of the source (so the native
pixel scale of the detail crops varies). Items are deterministic given (seed, epoch, index).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from aescore.data.faults import POSITIVE_KINDS, FaultCopy, make_fault, make_positive
from aescore.data.images import load_rgb
from aescore.data.transforms import Preprocess


class FaultPairs(torch.utils.data.Dataset[tuple[Any, ...]]):
    """``len`` items per epoch; item -> (good whole, good crops, faulty whole, faulty crops, labels).

    With ``focus`` families and ``focus_share`` > 0, that share of the faulty copies has its
    families drawn from ``focus`` alone (the rest from every family)."""

    def __init__(self, paths: Sequence[str], preprocess: Preprocess, *, length: int, seed: int = 0,
                 positive_share: float = 0.35, positive_kinds: tuple[str, ...] = POSITIVE_KINDS,
                 scale: tuple[float, float] = (0.6, 1.0), focus: tuple[str, ...] = (), focus_share: float = 0.0) -> None:
        if preprocess.detail is None:
            raise ValueError("FaultPairs needs a recipe with a detail block")
        if not 0 <= focus_share <= 1 or (focus_share > 0 and not focus):
            raise ValueError("focus_share must be in [0, 1], and above 0 only with focus families")
        self.paths, self.preprocess, self.length = list(paths), preprocess, length
        self.seed, self.positive_share, self.positive_kinds, self.scale = seed, positive_share, positive_kinds, scale
        self.focus, self.focus_share = focus, focus_share
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw other photos, faults and severities in the next epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def source(self, rng: np.random.Generator) -> Image.Image:
        """A random photograph, flipped and down-scaled at random (never below 224 px shorter edge)."""
        img = load_rgb(self.paths[int(rng.integers(len(self.paths)))])
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        k = max(rng.uniform(*self.scale), 224 / min(img.size))
        if k < 1:
            img = img.resize((round(img.width * k), round(img.height * k)), Image.Resampling.LANCZOS)
        return img

    def views(self, img: Image.Image, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The recipe's views; the whole frame cut to a random square of its shorter edge."""
        v = self.preprocess.detail_views(img)
        _, h, w = v.whole.shape
        side = min(h, w)
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        return v.whole[:, top : top + side, left : left + side], v.crops

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        img = self.source(rng)
        if rng.random() < self.positive_share:
            good = make_positive(img, rng, kinds=self.positive_kinds)
        else:
            good = FaultCopy(img, (), ("original",))
        # A share of the faults drawn from the focus families only (the exposure branch's training,
        # issue 28); without a focus no extra number is drawn, so the default recipe's items stay.
        focused = self.focus_share > 0 and rng.random() < self.focus_share
        bad = make_fault(good.image, rng, families=self.focus) if focused else make_fault(good.image, rng)
        gw, gc = self.views(good.image, rng)
        bw, bc = self.views(bad.image, rng)
        return gw, gc, bw, bc, torch.from_numpy(bad.label_vector())
