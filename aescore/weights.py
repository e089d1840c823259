"""Trained weights on disk: ``.safetensors`` + a JSON model card beside it, and training checkpoints.

A model is shipped as ``NAME.safetensors`` (the state dict, never pickled) plus ``NAME.json``, its
card: architecture and arguments (to rebuild it with :func:`aescore.models.create_model`),
preprocessing, training data and command, measured metrics, the weights' sha256, aescore version
and date. Loading verifies the sha256 and the architecture before any tensor reaches a model.

Training checkpoints (model + optimiser + scheduler + RNG state) are ``torch.save`` files read
back with ``torch.load(weights_only=True)``, which refuses pickled code.

Named models are searched in :func:`weights_dirs`: ``$AESCORE_WEIGHTS_DIR`` first, then the
weights bundled as package data (``aescore/_weights`` in a wheel), then ``weights/`` of a source
checkout.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from aescore.errors import AescoreError, WeightsError
from aescore.fsutil import atomic_path, atomic_write_text, file_sha256

CARD_FORMAT = "aescore.model-card/1"
WEIGHTS_ENV = "AESCORE_WEIGHTS_DIR"
DEFAULT_FILE = "DEFAULT"
_CARD_REQUIRED = ("architecture", "arch_args", "preprocess", "sha256")

__all__ = [
    "CARD_FORMAT",
    "WEIGHTS_ENV",
    "default_weights_path",
    "file_sha256",
    "list_available",
    "load_checkpoint",
    "load_weights",
    "read_card",
    "resolve_model",
    "save_checkpoint",
    "save_weights",
    "user_models_dir",
    "weights_dirs",
]


# --------------------------------------------------------------------------- file helpers


def _pair(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights .safetensors, card .json)`` for either of the two paths."""
    p = Path(path).expanduser()
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    raise WeightsError(f"{p}: expected a .safetensors weights file or its .json model card")


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the model card of ``path`` (the ``.json`` card or its ``.safetensors`` file)."""
    _, card_path = _pair(path)
    if not card_path.is_file():
        raise WeightsError(f"model card not found: {card_path} (every .safetensors needs its .json card beside it)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{card_path}: not a readable model card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise WeightsError(f"{card_path}: not an aescore model card (format {found!r}, expected {CARD_FORMAT!r})")
    missing = [k for k in _CARD_REQUIRED if k not in card]
    if missing:
        raise WeightsError(f"{card_path}: model card lacks {', '.join(missing)}")
    if not isinstance(card["arch_args"], dict):
        raise WeightsError(f"{card_path}: model card field arch_args must be an object")
    return card


# --------------------------------------------------------------------------- weights


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
    (``model.default_preprocess`` unless given), ``sha256`` of the weights file,
    ``aescore_version`` and ``date`` (ISO 8601, UTC). Returns the card as written.
    """
    from safetensors.torch import save_file

    import aescore

    weights_path, card_path = _pair(path)
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
    for key in ("format", "architecture", "arch_args", "sha256", "aescore_version", "date"):
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
    atomic_write_text(card_path, json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


def load_weights(path: str | os.PathLike[str], device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model described by a card and load its verified weights: ``(model.eval(), card)``.

    ``path`` is the ``.safetensors`` file or its ``.json`` card. Raises :class:`WeightsError` when
    either file is missing, the sha256 differs from the card's (file modified or corrupted), the
    architecture is unknown, or the tensors do not match the architecture. Never unpickles.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from aescore.models import create_model

    weights_path, card_path = _pair(path)
    card = read_card(card_path)
    if not weights_path.is_file():
        raise WeightsError(f"weights file not found: {weights_path} (named by model card {card_path})")
    sha = file_sha256(weights_path)
    if sha != card["sha256"]:
        raise WeightsError(
            f"{weights_path}: sha256 mismatch: file was modified or corrupted "
            f"(card says {str(card['sha256'])[:12]}..., file is {sha[:12]}...); refusing to load it"
        )
    arch = card["architecture"]
    try:
        model = create_model(arch, **card["arch_args"])
    except AescoreError as exc:
        raise WeightsError(f"{card_path}: architecture {arch!r} cannot be built by this aescore ({exc})") from None
    except TypeError as exc:
        raise WeightsError(f"{card_path}: bad arch_args for architecture {arch!r} ({exc})") from None
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    problems = _state_mismatch(model.state_dict(), state)
    if problems:
        raise WeightsError(f"{weights_path}: tensors do not fit architecture {arch!r}: {problems}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise WeightsError(f"{weights_path}: tensors do not fit architecture {arch!r}: {detail[:300]}") from None
    return model.to(device).eval(), card


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` a training checkpoint atomically.

    Store only tensors and plain containers/scalars (state dicts, lists, dicts, str, numbers):
    :func:`load_checkpoint` reads with ``weights_only=True`` and refuses anything else.
    """
    import torch

    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a training checkpoint on the CPU with ``torch.load(weights_only=True)`` (no pickled code)."""
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means: refuse this file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{p}: refused to load checkpoint: not a plain tensor checkpoint "
            f"(torch.load weights_only=True failed: {first[:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{p}: checkpoint is a {type(obj).__name__}, expected a dict")
    return obj


# --------------------------------------------------------------------------- lookup


def user_models_dir() -> Path:
    """Where ``aescore learn`` keeps personal models: ``$XDG_DATA_HOME/aescore/models``
    (default ``~/.local/share/aescore/models``). May not exist yet."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "aescore" / "models"


def weights_dirs() -> list[Path]:
    """Existing folders searched for named models, in priority order.

    ``$AESCORE_WEIGHTS_DIR`` (``os.pathsep``-separated list allowed), the package data folder
    ``aescore/_weights`` (filled by a wheel build), ``weights/`` of a source checkout, and last the
    personal models of :func:`user_models_dir` (last, so a personal model never becomes the
    default just by being the only card in its folder).
    """
    candidates: list[Path] = []
    for part in os.environ.get(WEIGHTS_ENV, "").split(os.pathsep):
        if part.strip():
            candidates.append(Path(part.strip()).expanduser())
    try:
        bundled = resources.files("aescore") / "_weights"
        if isinstance(bundled, Path):
            candidates.append(bundled)
    except (ModuleNotFoundError, TypeError):
        pass
    import aescore

    root = Path(aescore.__file__).resolve().parents[1]
    # Only a source checkout: site-packages/weights would belong to some other distribution.
    if (root / "pyproject.toml").is_file():
        candidates.append(root / "weights")
    candidates.append(user_models_dir())
    out: list[Path] = []
    seen: set[Path] = set()
    for d in candidates:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def _cards_in(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Valid model cards directly in ``folder`` (other JSON files are ignored), sorted by name."""
    found = []
    for card_path in sorted(folder.glob("*.json")):
        try:
            found.append((card_path, read_card(card_path)))
        except WeightsError:
            continue
    return found


def list_available() -> list[tuple[Path, dict[str, Any]]]:
    """Every model card in :func:`weights_dirs`, as ``(card path, card)``; earlier folders shadow later."""
    out: list[tuple[Path, dict[str, Any]]] = []
    names: set[str] = set()
    for folder in weights_dirs():
        for card_path, card in _cards_in(folder):
            if card_path.stem not in names:
                names.add(card_path.stem)
                out.append((card_path, card))
    return out


def default_weights_path() -> Path:
    """The default model's card: in the first weights folder with cards, the one its ``DEFAULT``
    file names, or its only card. A default chosen with ``set_default_model`` comes first."""
    from aescore.learn.default_model import configured_default  # stand-in until the startup helper's config lands

    chosen = configured_default()
    if chosen is not None:
        return resolve_model(chosen)
    for folder in weights_dirs():
        cards = _cards_in(folder)
        if not cards:
            continue
        marker = folder / DEFAULT_FILE
        if marker.is_file():
            name = marker.read_text(encoding="utf-8").strip()
            if Path(name).suffix in (".json", ".safetensors"):
                name = Path(name).stem
            card_path = folder / f"{name}.json"
            if not card_path.is_file():
                raise WeightsError(f"{marker} names {name!r} but {card_path} does not exist")
            return card_path
        if len(cards) == 1:
            return cards[0][0]
        names = ", ".join(p.stem for p, _ in cards)
        raise WeightsError(f"{folder} holds several models ({names}) and no {DEFAULT_FILE} file; pass --model NAME")
    raise WeightsError("no default weights found; pass --model FILE")


def resolve_model(spec: str | os.PathLike[str] | None) -> Path:
    """Turn ``--model`` into a weights path: None -> the default; an existing file -> itself;
    otherwise a model name (a card's file stem) looked up in :func:`weights_dirs`."""
    if spec is None:
        return default_weights_path()
    p = Path(spec).expanduser()
    if p.exists():
        if p.is_dir():
            raise WeightsError(f"{p} is a folder; pass a .safetensors file, its .json card or a model name")
        weights_path, card_path = _pair(p)
        if p == weights_path and not card_path.is_file():
            raise WeightsError(f"model card not found: {card_path} (every .safetensors needs its .json card beside it)")
        return p
    text = str(spec)
    if p.suffix in (".json", ".safetensors") or os.sep in text or (os.altsep and os.altsep in text):
        raise WeightsError(f"model file not found: {p}")
    for folder in weights_dirs():
        card_path = folder / f"{text}.json"
        if card_path.is_file():
            return card_path
    available = ", ".join(path.stem for path, _ in list_available()) or "none installed"
    raise WeightsError(f"unknown model {text!r}; available: {available}; or pass a .safetensors/.json path")
