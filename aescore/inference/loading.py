"""Opening a model for a run: the one owner of resolve -> read card -> choose runtime -> build.

``score``, ``rank``, ``report`` (:mod:`aescore.cull.pipeline`), the :class:`~aescore.inference.scorer.Scorer`,
``evaluate``, ``learn`` (through :func:`aescore.cull.score_photos`) and the ONNX export open
models here and nowhere else:

1. :func:`find_model`: ``--model`` (a name, a file, None for the default) -> the weights path
   (:func:`aescore.weights.resolve_model`) and its card, read and checked once
   (:func:`aescore.weights.read_card`). A :class:`ModelRef`: what the cache keys, the checks
   and the runtime choice need, without torch.
2. :func:`open_model`: the runtime for this run (:func:`~aescore.inference.onnx_runtime.choose_runtime`),
   then either the ONNX program in an ONNX Runtime session (:func:`~aescore.inference.onnx_runtime.load_onnx_model`)
   or the network built from the verified weights (:func:`aescore.weights.load_weights`, handed
   the card already read) and prepared for its device: an
   :class:`~aescore.inference.onnx_runtime.OnnxModel` or a :class:`~aescore.inference.core.LoadedModel`.

Heavy imports stay inside the functions: finding a model never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aescore.inference.onnx_runtime import Runtime

if TYPE_CHECKING:
    from aescore.inference.core import LoadedModel
    from aescore.inference.onnx_runtime import OnnxModel
    from aescore.models.contract import Capabilities

__all__ = ["ModelRef", "find_model", "open_model", "prepare_network"]


@dataclass(frozen=True)
class ModelRef:
    """A model found: its weights path (as resolved: the ``.safetensors`` or its ``.json`` card)
    and its card, read once."""

    path: Path
    card: dict[str, Any]

    @property
    def name(self) -> str:
        """The model's name: its card's, else the file's stem (what runs and sidecars record)."""
        return str(self.card.get("name") or self.path.stem)

    @property
    def capabilities(self) -> "Capabilities":
        """What the network gives, as its card says (:func:`aescore.weights.card_capabilities`)."""
        from aescore.weights import card_capabilities

        return card_capabilities(self.card)


def check_run_options(runtime: "Runtime | str", batch_size: int | None, workers: int | None, tta_crops: int | None) -> Runtime:
    """``runtime`` as a :class:`Runtime` if every option is one a run can use, else a
    :class:`~aescore.errors.ConfigError` naming the setting. Shared by :class:`aescore.cull.Settings`
    and :class:`~aescore.inference.scorer.Scorer`."""
    from aescore.errors import ConfigError

    try:
        chosen = Runtime(runtime)
    except ValueError:
        raise ConfigError("runtime", f"must be one of {', '.join(r.value for r in Runtime)}") from None
    if batch_size is not None and batch_size < 1:
        raise ConfigError("batch_size", "must be >= 1")
    if workers is not None and workers < 0:
        raise ConfigError("workers", "must be >= 0")
    if tta_crops is not None and tta_crops < 0:
        raise ConfigError("tta_crops", "must be >= 0")
    return chosen


def find_model(model: "str | os.PathLike[str] | ModelRef | None" = None) -> ModelRef:
    """``model`` (a name, a ``.safetensors``/``.json`` file, None for the default, or a
    :class:`ModelRef` already found) resolved and its card read; raises the
    :class:`~aescore.errors.WeightsError` family (an unknown name: exit status 2)."""
    if isinstance(model, ModelRef):
        return model
    from aescore.weights import read_card, resolve_model

    path = Path(resolve_model(None if model is None else os.fspath(model)))
    return ModelRef(path, read_card(path))


def open_model(
    model: "str | os.PathLike[str] | ModelRef | None" = None,
    device: str = "auto",
    runtime: Runtime | str = Runtime.auto,
    *,
    want: frozenset[str] = frozenset({"p_high"}),
    tta_crops: int | None = None,
    n_photos: int = 1,
    half: bool = True,
) -> "LoadedModel | OnnxModel":
    """The model ready for a run of ``n_photos`` photos asking for ``want`` (the core's output
    names) with ``tta_crops``: under ONNX Runtime or PyTorch as
    :func:`~aescore.inference.onnx_runtime.choose_runtime` decides (``runtime="onnx"`` that cannot
    run this is a :class:`~aescore.errors.ConfigError`). Under PyTorch: verified weights, eval
    mode, BatchNorm folded, channels_last, on ``device`` (auto: CUDA, MPS, then CPU), in float16
    on a GPU when ``half`` (~2x throughput; scores move by ~1e-3)."""
    from aescore.inference.onnx_runtime import choose_runtime, load_onnx_model

    ref = find_model(model)
    if choose_runtime(Runtime(runtime), ref.path, ref.card, device, want, tta_crops, n_photos) is Runtime.onnx:
        return load_onnx_model(ref.path, ref.card)
    return _open_torch(ref, device, half)


def _open_torch(ref: ModelRef, device: str, half: bool) -> "LoadedModel":
    from aescore.devices import resolve_device
    from aescore.weights import load_weights

    dev = resolve_device(device)
    module, card = load_weights(ref.path, device="cpu", card=ref.card)
    return prepare_network(module, card, dev, path=ref.path, half=half)


def prepare_network(module: Any, card: dict[str, Any], device: str, *, path: Path | None = None, half: bool = True) -> "LoadedModel":
    """``module`` (a network of the model contract; ``card``: its card, or at least its
    ``preprocess`` block) ready for the inference core on ``device`` (a resolved device, as
    :func:`aescore.devices.resolve_device` gives), as :func:`open_model` prepares the network of
    a weights file: its recipe checked against it, eval mode, BatchNorm folded, channels_last,
    float16 on a GPU when ``half``. ``module`` itself is changed (folded): pass a copy of a
    network that is still to be trained or saved (``learn --fine-tune`` scores its held-out
    photos this way before saving the model)."""
    from aescore.data.transforms import Preprocess
    from aescore.errors import WeightsError
    from aescore.inference.core import LoadedModel
    from aescore.inference.fold import prepare_for_inference

    recipe = Preprocess.from_card(card["preprocess"])
    # A recipe with detail crops feeds the network two inputs: refused here, in one line, for a
    # network that does not take them, rather than at its first batch.
    if recipe.detail is not None and not module.capabilities.detail_views:
        where = path or card.get("name", "the model")
        raise WeightsError(f"{where}: the card's recipe has detail crops, which architecture {card.get('architecture')!r} does not take")
    module = prepare_for_inference(module, device)
    if device != "cpu" and half:
        module = module.half()
    return LoadedModel(module, recipe, device, card, path)
