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

A **head-only personal model** (``aescore learn`` without ``--fine-tune``; its card's
``head_only`` block, :func:`aescore.weights.head_only_base`) holds its head alone: its base model
is found by the sha256 its card records (:func:`aescore.weights.resolve_base`; a missing or
changed base is one line, never a traceback), the runtime is chosen for the base, and the model is
either the base's ONNX program with the head applied in NumPy (:class:`PersonalOnnxModel`: no torch)
or, under PyTorch, a :class:`~aescore.models.personal.PersonalNet` built from the base's weights
and the head (GPUs, TTA, region maps as for any network). Both compute the head of
:mod:`aescore.models.personal_head`.

Heavy imports stay inside the functions: finding a model never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aescore.inference.onnx_runtime import OnnxModel, Runtime

if TYPE_CHECKING:
    from aescore.inference.core import LoadedModel
    from aescore.models.contract import Capabilities
    from aescore.models.personal_head import PersonalHead

__all__ = ["ModelRef", "PersonalOnnxModel", "find_base", "find_model", "model_runtime", "open_model", "prepare_network"]


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


def find_base(ref: ModelRef) -> ModelRef | None:
    """For a head-only personal model, its base model found and its card read (a
    :class:`~aescore.errors.WeightsError` in one line when it is missing or holds other weights);
    None for every other model."""
    from aescore.weights import head_only_base, resolve_base

    if head_only_base(ref.card) is None:
        return None
    base = find_model(resolve_base(ref.card, ref.path.with_suffix(".json")))
    if head_only_base(base.card) is not None:  # resolve_base skips heads; a card edited by hand
        from aescore.errors import WeightsError

        raise WeightsError(f"{ref.path}: its base model {base.path} is itself a head-only personal model")
    return base


def model_runtime(
    ref: ModelRef, runtime: Runtime | str, device: str, want: frozenset[str], tta_crops: int | None, base: ModelRef | None = None,
) -> Runtime:
    """The runtime a run of ``ref`` gets (:func:`~aescore.inference.onnx_runtime.choose_runtime`),
    judged on the network that runs: a head-only personal model's base (``base``, when already
    found), since a head has no program of its own. :func:`open_model` and the Ray engine's driver
    decide by it, so both engines run a model alike."""
    from aescore.inference.onnx_runtime import choose_runtime

    run_on = base or find_base(ref) or ref
    return choose_runtime(Runtime(runtime), run_on.path, run_on.card, device, want, tta_crops)


def open_model(
    model: "str | os.PathLike[str] | ModelRef | None" = None,
    device: str = "auto",
    runtime: Runtime | str = Runtime.auto,
    *,
    want: frozenset[str] = frozenset({"p_high"}),
    tta_crops: int | None = None,
    half: bool = True,
) -> "LoadedModel | OnnxModel":
    """The model ready for a run asking for ``want`` (the core's output
    names) with ``tta_crops``: under ONNX Runtime or PyTorch as
    :func:`~aescore.inference.onnx_runtime.choose_runtime` decides (``runtime="onnx"`` that cannot
    run this is a :class:`~aescore.errors.ConfigError`; a run that needs PyTorch where it is not
    installed, a :class:`~aescore.errors.MissingExtra`). Under PyTorch: verified weights, eval
    mode, BatchNorm folded, channels_last, on ``device`` (auto: CUDA, MPS, then CPU), in float16
    on a GPU when ``half`` (~2x throughput; scores move by ~1e-3). A head-only personal model
    runs on its base's program or network (the module docstring)."""
    from aescore.inference.onnx_runtime import load_onnx_model

    ref = find_model(model)
    base = find_base(ref)
    chosen = model_runtime(ref, runtime, device, want, tta_crops, base)
    if base is None:
        return load_onnx_model(ref.path, ref.card) if chosen is Runtime.onnx else _open_torch(ref, device, half)
    from aescore.weights import load_head

    head = load_head(ref.path, ref.card)
    if chosen is Runtime.onnx:
        return PersonalOnnxModel(load_onnx_model(base.path, base.card), head, ref.card, ref.path)
    return _open_personal_torch(ref, base, head, device, half)


def _open_torch(ref: ModelRef, device: str, half: bool) -> "LoadedModel":
    from aescore.devices import resolve_device
    from aescore.weights import load_weights

    dev = resolve_device(device)
    module, card = load_weights(ref.path, device="cpu", card=ref.card)
    return prepare_network(module, card, dev, path=ref.path, half=half)


def _open_personal_torch(ref: ModelRef, base: ModelRef, head: "PersonalHead", device: str, half: bool) -> "LoadedModel":
    """A head-only personal model under PyTorch: its base network (verified weights, built without
    timm where :mod:`aescore.models.plain` covers it) with the head, as ``learn --fine-tune``'s
    models are built, prepared like any network."""
    from aescore.devices import resolve_device
    from aescore.models.personal import PersonalNet
    from aescore.weights import load_weights

    dev = resolve_device(device)
    module, base_card = load_weights(base.path, device="cpu", card=base.card)
    net = PersonalNet(str(base_card["architecture"]), dict(base_card["arch_args"]), head.embed_dim, base=module, n_faults=head.n_faults)
    net.load_head(head)
    net.arch_name, net.arch_args = "personal_ranker", dict(ref.card["arch_args"])
    return prepare_network(net.eval(), ref.card, dev, path=ref.path, half=half)


class PersonalOnnxModel(OnnxModel):
    """A head-only personal model under ONNX Runtime: its base model's program (the session of
    :func:`~aescore.inference.onnx_runtime.load_onnx_model`) and the personal head applied in
    NumPy (:meth:`aescore.models.personal_head.PersonalHead.score_outputs`) to the base's
    embedding, P(high) and fault probabilities — the very numbers ``learn`` fitted the head on.
    An :class:`~aescore.inference.onnx_runtime.OnnxModel` to the inference core: ``card``,
    ``path`` and ``sha256`` (the cache key) are the personal model's, every output but ``p_high``
    is the base's."""

    def __init__(self, base: OnnxModel, head: "PersonalHead", card: dict[str, Any], path: Path | None = None) -> None:
        super().__init__(base.session, base.preprocess, card, path)
        self.head = head
        missing = {"embedding"} | ({"faults"} if head.n_faults else set())
        if not missing <= self.outputs:
            from aescore.errors import WeightsError

            raise WeightsError(f"{path}: its base model's ONNX program gives no {' or '.join(sorted(missing - self.outputs))}, "
                               "which the personal head reads (use --runtime torch)")

    def forward(self, x: Any, want: frozenset[str]) -> dict[str, Any]:
        """As :meth:`OnnxModel.forward`, with ``p_high`` the sigmoid of the personal head's score."""
        import numpy as np

        from aescore.models.personal_head import sigmoid
        from aescore.tensorutil import ensure_finite_scores

        need = want | {"embedding"} | ({"faults"} if self.head.n_faults else set())
        out = super().forward(x, frozenset(need))
        s = self.head.score_outputs(out["embedding"], out["p_high"], out.get("faults"))
        got: dict[str, Any] = {"p_high": sigmoid(s).astype(np.float32)}
        ensure_finite_scores(got["p_high"], str(self.card.get("name") or "the model"))
        got.update({k: v for k, v in out.items() if k != "p_high" and k in want})
        return got


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
