"""Weights files: a model's state dict as ``.safetensors`` (never pickled) with its card, saved
atomically, and loaded back into the network the card describes after the sha256 (remembered,
:mod:`aescore.weights.verified`) and the architecture are checked; and a head-only personal
model's head (:func:`save_head`, :func:`load_head`: NumPy only).

Loading for inference builds the networks that :mod:`aescore.models.plain` covers (MPA and the
default model on timm's plain ResNets and EfficientNet-Lites) without importing timm or
torchvision.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aescore.errors import AescoreError, WeightsError
from aescore.fsutil import atomic_path, file_sha256
from aescore.models.contract import Capabilities
from aescore.weights.card import CARD_FORMAT, head_only_base, pair_paths, read_card, write_card

if TYPE_CHECKING:
    from aescore.models.personal_head import PersonalHead
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


def _card_fields(
    given_card: dict[str, Any] | None, weights_path: Path, arch: str, arch_args: dict[str, Any], preprocess: Any, capabilities: Any,
) -> dict[str, Any]:
    """The card to write for ``weights_path`` (before its ``sha256``, version and date): the
    caller's ``given_card`` plus the fields filled here; WeightsError when it cannot be stored."""
    given = dict(given_card or {})
    preprocess = given.pop("preprocess", None) or preprocess
    if preprocess is None:
        raise WeightsError("cannot save weights: no preprocess in the card and the model has no default_preprocess")
    out: dict[str, Any] = {"name": given.pop("name", weights_path.stem)}
    if "summary" in given:
        out["summary"] = given.pop("summary")
    out.update(format=CARD_FORMAT, architecture=arch, arch_args=dict(arch_args or {}), preprocess=preprocess)
    if isinstance(capabilities, Capabilities):
        out["capabilities"] = capabilities.to_card()
    for key in ("format", "architecture", "arch_args", "capabilities", "sha256", "aescore_version", "date"):
        given.pop(key, None)  # filled here; a caller's stale value must not win
    out.update(given)
    try:
        json.dumps(out)  # fail before writing anything if the card cannot be stored
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"cannot save weights: the model card is not JSON-serialisable ({exc})") from None
    return out


def _write_pair(path: str | os.PathLike[str], card: dict[str, Any], write: Any) -> dict[str, Any]:
    """``write(tmp)`` the weights file of ``path`` atomically, then its card with the file's
    sha256, aescore's version and the date (UTC); returns the card as written."""
    import aescore

    weights_path, card_path = pair_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights_path) as tmp:
        write(tmp)
        sha = file_sha256(tmp)
    card.update(sha256=sha, aescore_version=aescore.__version__, date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    write_card(card_path, card)
    return card


def _check_suffix(path: str | os.PathLike[str]) -> Path:
    weights_path, _ = pair_paths(path)
    if weights_path.suffix != ".safetensors" or Path(path).suffix != ".safetensors":
        raise WeightsError(f"{path}: weights file name must end in .safetensors")
    return weights_path


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

    weights_path = _check_suffix(path)
    arch = getattr(model, "arch_name", None)
    if arch is None:
        raise WeightsError("cannot save weights: the model was not built with aescore.models.create_model")
    out = _card_fields(card, weights_path, arch, getattr(model, "arch_args", {}) or {}, getattr(model, "default_preprocess", None),
                       getattr(model, "capabilities", None))
    tensors = _state_tensors(model)
    return _write_pair(weights_path, out, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", "aescore_architecture": arch}))


def save_head(head: "PersonalHead", path: str | os.PathLike[str], card: dict[str, Any], *, base_card: dict[str, Any],
              base_name: str, base_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Write a **head-only** personal model: ``head``'s tensors (float32, safetensors written with
    NumPy: no torch) to ``path`` and its card, atomically, as :func:`save_weights` writes a
    model. The network is the base model's (``base_card``, named ``base_name``): the card's
    ``architecture`` is ``personal_ranker`` on the base's architecture, its ``head_only`` block
    names the base, its weights' sha256 (:func:`~aescore.weights.card.head_only_base`) and, with
    ``base_path``, where its weights file was (found there when it is in no searched folder), its
    recipe is the base's, and its capabilities are a personal model's on that base. Returns the
    card as written."""
    from safetensors.numpy import save_file

    from aescore.models.contract import personal_capabilities
    from aescore.weights.card import card_capabilities

    weights_path = _check_suffix(path)
    arch_args: dict[str, Any] = {"base_architecture": base_card["architecture"], "base_args": dict(base_card["arch_args"]),
                                 "embed_dim": head.embed_dim}
    if head.n_faults:
        arch_args["n_faults"] = head.n_faults
    block = {"base_model": base_name, "base_sha256": str(base_card["sha256"])}
    if base_path is not None:
        block["base_path"] = os.path.abspath(pair_paths(base_path)[0])
    given = dict(card) | {"head_only": block}
    out = _card_fields(given, weights_path, "personal_ranker", arch_args, base_card["preprocess"],
                       personal_capabilities(card_capabilities(base_card)))
    tensors = head.tensors()
    return _write_pair(weights_path, out, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "np", "aescore_architecture": "personal_head"}))


def load_head(path: str | os.PathLike[str], card: dict[str, Any] | None = None) -> "PersonalHead":
    """The personal head of a head-only model (``path``: its ``.safetensors`` or card; ``card``:
    the card already read), verified as weights are (sha256, remembered; finite values; the
    shapes the card's ``arch_args`` name). NumPy only, never torch; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_numpy

    from aescore.models.personal_head import PersonalHead

    weights_path, card_path = pair_paths(path)
    if card is None:
        card = read_card(card_path)
    if not weights_path.is_file():
        raise WeightsError(f"weights file not found: {weights_path} (named by model card {card_path})")
    data, identity, known = read_checked(weights_path, str(card["sha256"]))
    try:
        tensors = load_numpy(data)
        head = PersonalHead.from_tensors(tensors)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{weights_path}: not a personal head ({exc})") from None
    args = card["arch_args"]
    if (head.embed_dim, head.n_faults) != (args.get("embed_dim"), args.get("n_faults", 0)):
        raise WeightsError(f"{weights_path}: the head reads {head.embed_dim} embedding and {head.n_faults} fault values; "
                           f"its card says {args.get('embed_dim')} and {args.get('n_faults', 0)}")
    if not known:
        remember_sha256(identity, card["sha256"])
    return head


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
    if head_only_base(card) is not None:
        raise WeightsError(f"{card_path}: a head-only personal model; its network is built from its base model "
                           "when it is opened (aescore.inference.loading.open_model)")
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
