"""Small tensor helpers that keep the scoring path free of torchvision (and so of ``torch._dynamo``).

``torchvision.transforms.functional`` costs a second or more to import on 2 cores (torchvision
imports ``torchvision.ops``, which imports ``torch._dynamo``), for one function the scorer needs:
:func:`pil_to_tensor` is that function, with torchvision's result (tested against it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ensure_finite_scores", "pil_to_tensor"]


def pil_to_tensor(img: Any) -> Any:
    """A PIL image -> ``uint8`` tensor ``[C, H, W]``, as ``torchvision.transforms.functional.pil_to_tensor``.

    Like torchvision's, the result is a ``[C, H, W]`` view of a copy of the ``[H, W, C]`` pixels.
    """
    import numpy as np
    import torch

    x = torch.as_tensor(np.array(img, copy=True))
    return x.view(img.size[1], img.size[0], len(img.getbands())).permute((2, 0, 1))


def ensure_finite_scores(scores: Any, model: str = "the model") -> None:
    """Raise :class:`aescore.errors.WeightsError` when a batch of scores holds NaN or infinity.

    Cards and weights are checked on load (:func:`aescore.weights.check_card`, finite weights),
    so this guards what is left (e.g. float16 overflow on a GPU): a domain error, never a NaN
    printed, cached or turned into stars. ``scores``: a CPU tensor or a numpy array (both runtimes).
    """
    import numpy as np

    from aescore.errors import WeightsError

    if not bool(np.isfinite(np.asarray(scores)).all()):
        raise WeightsError(f"{model} produced a non-finite score (NaN or infinity); its weights or model card are unusable here")
