"""Weights files: a model's state dict as ``.safetensors`` (never pickled) with its card, saved
atomically, and loaded back into the network the card describes after the sha256 (remembered,
:mod:`aescore.weights.verified`) and the architecture are checked.

Loading for inference builds the networks that :mod:`aescore.models.plain` covers (MPA and the
default model on timm's plain ResNets and EfficientNet-Lites) without importing timm or
torchvision.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from aescore.errors import AescoreError, WeightsError
from aescore.fsutil import atomic_path, file_sha256
from aescore.models.contract import Capabilities
from aescore.weights.card import CARD_FORMAT, pair_paths, read_card, write_card
from aescore.weights.verified import read_checked, remember_sha256


def _state_tensors(model: Any) -> dict[str, Any]:
    """The state dict as contiguous CPU tensors, each with its own storage.

    safetensors refuses tensors that share memory (tied weights, views); a clone per repeated
    storage keeps every key, so ``load_state_dict(strict=True)`` still finds them all.
    """
    seen: set[int] = set()
    out: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def _state_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """One-line summary of how ``found`` tensors differ from a model's ``expected`` state ("" if they fit)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k}: file {list(found[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {items[0]})")
    return "; ".join(parts)


def save_weights(model: Any, path: str | os.PathLike[str], card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model``'s state dict to ``path`` (``.safetensors``) and its card to ``path.with_suffix(".json")``.

    Both files are written atomically. The card is ``card`` plus the fields filled here:
    ``format``, ``architecture`` and ``arch_args`` (from ``create_model``), ``preprocess``
    (``model.default_preprocess`` unless given), ``capabilities`` (what the model's class
    declares, :class:`~aescore.models.contract.Capabilities`; left out for a network outside the
    model contract), ``sha256`` of the weights file, ``aescore_version`` and ``date`` (ISO 8601,
    UTC). Returns the card as written.
    """
    from safetensors.torch import save_file

    import aescore

    weights_path, card_path = pair_paths(path)
    if weights_path.suffix != ".safetensors" or Path(path).suffix != ".safetensors":
        raise WeightsError(f"{path}: weights file name must end in .safetensors")
    arch = getattr(model, "arch_name", None)
    if arch is None:
        raise WeightsError("cannot save weights: the model was not built with aescore.models.create_model")
    given = dict(card or {})
    preprocess = given.pop("preprocess", None) or getattr(model, "default_preprocess", None)
    if preprocess is None:
        raise WeightsError("cannot save weights: no preprocess in the card and the model has no default_preprocess")
    out: dict[str, Any] = {"name": given.pop("name", weights_path.stem)}
    if "summary" in given:
        out["summary"] = given.pop("summary")
    out.update(
        format=CARD_FORMAT,
        architecture=arch,
        arch_args=dict(getattr(model, "arch_args", {}) or {}),
        preprocess=preprocess,
    )
    capabilities = getattr(model, "capabilities", None)
    if isinstance(capabilities, Capabilities):
        out["capabilities"] = capabilities.to_card()
    for key in ("format", "architecture", "arch_args", "capabilities", "sha256", "aescore_version", "date"):
        given.pop(key, None)  # filled here; a caller's stale value must not win
    out.update(given)
    try:
        json.dumps(out)  # fail before writing anything if the card cannot be stored
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"cannot save weights: the model card is not JSON-serialisable ({exc})") from None

    weights_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights_path) as tmp:
        save_file(_state_tensors(model), str(tmp), metadata={"format": "pt", "aescore_architecture": arch})
        sha = file_sha256(tmp)
    out.update(
        sha256=sha,
        aescore_version=aescore.__version__,
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    write_card(card_path, out)
    return out


def load_weights(
    path: str | os.PathLike[str], device: Any = "cpu", *, plain: bool = True, card: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model described by a card and load its verified weights: ``(model.eval(), card)``.

    ``path`` is the ``.safetensors`` file or its ``.json`` card. Raises :class:`WeightsError` when
    either file is missing, the card is invalid (:func:`check_card`), the sha256 differs from the
    card's (file modified or corrupted), a weight is NaN or infinite, the architecture is unknown,
    or the tensors do not match the architecture. Never unpickles.

    For inference: with ``plain`` (default) a card whose network :mod:`aescore.models.plain`
    covers is built there, without importing timm or torchvision (same state-dict keys, same
    outputs); ``plain=False`` always builds through :func:`aescore.models.create_model`. A file
    verified once is not hashed again while its path, size, mtime, ctime and inode stay the same
    (see :func:`~aescore.weights.verified.verified_cache_path`). ``card``: this path's card as
    :func:`read_card` returned it to the caller, so that a run reads it once.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    weights_path, card_path = pair_paths(path)
    if card is None:
        card = read_card(card_path)
    if not weights_path.is_file():
        raise WeightsError(f"weights file not found: {weights_path} (named by model card {card_path})")
    data, identity, known = read_checked(weights_path, str(card["sha256"]))
    try:
        state = load_safetensors(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    del data
    if not known:
        _check_finite(state, weights_path)  # part of verifying: remembered with the hash
        remember_sha256(identity, card["sha256"])
    arch = card["architecture"]
    model = _build_plain(arch, card["arch_args"], state, weights_path) if plain else None
    if model is None:
        model = _build_registered(arch, card["arch_args"], state, weights_path, card_path)
    return model.to(device).eval(), card


def _build_plain(arch: str, arch_args: dict[str, Any], state: dict[str, Any], weights_path: Path) -> Any:
    """The plain-torch network for this card, or None when :mod:`aescore.models.plain` does not cover it."""
    from aescore.models.plain import create_plain_model, plain_supported

    if not plain_supported(arch, arch_args):
        return None
    model = create_plain_model(arch, arch_args)  # on the meta device: the file's tensors are assigned
    problems = _state_mismatch(model.state_dict(), state)
    if problems:
        raise WeightsError(f"{weights_path}: tensors do not fit architecture {arch!r}: {problems}")
    try:
        model.load_state_dict(state, strict=True, assign=True)
        return model
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise WeightsError(f"{weights_path}: tensors do not fit architecture {arch!r}: {detail[:300]}") from None


def _build_registered(arch: str, arch_args: dict[str, Any], state: dict[str, Any], weights_path: Path, card_path: Path) -> Any:
    """The network built by :func:`aescore.models.create_model` (timm backbones), holding ``state``."""
    from aescore.models import create_model

    try:
        model = create_model(arch, **arch_args)
    except AescoreError as exc:
        raise WeightsError(f"{card_path}: architecture {arch!r} cannot be built by this aescore ({exc})") from None
    except TypeError as exc:
        raise WeightsError(f"{card_path}: bad arch_args for architecture {arch!r} ({exc})") from None
    problems = _state_mismatch(model.state_dict(), state)
    if problems:
        raise WeightsError(f"{weights_path}: tensors do not fit architecture {arch!r}: {problems}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise WeightsError(f"{weights_path}: tensors do not fit architecture {arch!r}: {detail[:300]}") from None
    return model


def _check_finite(state: dict[str, Any], weights_path: Path) -> None:
    """Refuse weights holding NaN or infinity: every score would be NaN."""
    import torch

    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{weights_path}: weights hold NaN or infinite values (e.g. {key}); refusing to load them")
