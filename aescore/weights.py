"""Trained weights on disk: ``.safetensors`` + a JSON model card beside it, and training checkpoints.

A model is shipped as ``NAME.safetensors`` (the state dict, never pickled) plus ``NAME.json``, its
card: architecture and arguments (to rebuild it with :func:`aescore.models.create_model`),
preprocessing, training data and command, measured metrics, the weights' sha256, aescore version
and date. Loading verifies the sha256 and the architecture before any tensor reaches a model.

Training checkpoints (model + optimiser + scheduler + RNG state) are ``torch.save`` files read
back with ``torch.load(weights_only=True)``, which refuses pickled code.

Named models are searched in :func:`weights_dirs`: ``$AESCORE_WEIGHTS_DIR`` first, then the
weights bundled as package data (``aescore/_weights`` in a wheel), then ``weights/`` of a source
checkout. A model is named by its card's ``name`` or its file stem. The default model is the
shipped one unless the user chose another (:func:`set_default_model`, stored in
``$XDG_CONFIG_HOME/aescore/config.json``).

Loading for inference builds the networks that :mod:`aescore.models.plain` covers (MPA on timm's
plain ResNets, the bundled default among them) without importing timm or torchvision, and
remembers a verified sha256 per file (path, size, mtime, ctime, inode) in
``$XDG_CACHE_HOME/aescore/verified.json``, so the 45 MB default is hashed once, not on every run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aescore.errors import AescoreError, WeightsError
from aescore.fsutil import atomic_path, atomic_write_text, file_sha256

CARD_FORMAT = "aescore.model-card/1"
WEIGHTS_ENV = "AESCORE_WEIGHTS_DIR"
DEFAULT_FILE = "DEFAULT"
_CARD_REQUIRED = ("architecture", "arch_args", "preprocess", "sha256")
_MAX_CARD_BYTES = 4 << 20
_MAX_SMALL_JSON_BYTES = 1 << 20  # config.json, verified.json

__all__ = [
    "CARD_FORMAT",
    "WEIGHTS_ENV",
    "AmbiguousModelError",
    "ModelEntry",
    "UnknownModelError",
    "check_card",
    "config_path",
    "configured_default",
    "default_weights_path",
    "file_sha256",
    "list_available",
    "list_models_found",
    "load_checkpoint",
    "load_weights",
    "name_clashes",
    "read_card",
    "read_verified",
    "write_card",
    "resolve_model",
    "save_checkpoint",
    "save_weights",
    "set_default_model",
    "shipped_weights_dirs",
    "verified_cache_path",
    "user_models_dir",
    "weights_dirs",
]


class UnknownModelError(WeightsError):
    """No model answers to the name given (a usage error: exit status 2)."""

    exit_code = 2


class AmbiguousModelError(UnknownModelError):
    """Several different models answer to the name given (exit status 2)."""


# --------------------------------------------------------------------------- file helpers


def _pair(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights .safetensors, card .json)`` for either of the two paths."""
    p = Path(path).expanduser()
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    raise WeightsError(f"{p}: expected a .safetensors weights file or its .json model card")


def _read_small_json(path: Path, limit: int) -> Any:
    """Parse a small JSON file: regular files only, at most ``limit`` bytes (raises OSError/ValueError)."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit >> 10} KiB")
    return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _card_structure(card_path: Path) -> dict[str, Any]:
    """The card's JSON with its format and required fields checked (values unchecked)."""
    if not card_path.is_file():
        raise WeightsError(f"model card not found: {card_path} (every .safetensors needs its .json card beside it)")
    try:
        card = _read_small_json(card_path, _MAX_CARD_BYTES)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
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


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the model card of ``path`` (the ``.json`` card or its ``.safetensors`` file).

    Raises :class:`WeightsError` (one line) when the card is missing, unreadable, of another
    format, or fails :func:`check_card`.
    """
    _, card_path = _pair(path)
    card = _card_structure(card_path)
    check_card(card, card_path)
    return card


def check_card(card: dict[str, Any], where: str | os.PathLike[str] = "model card") -> None:
    """Refuse a card whose values would break scoring: raises :class:`WeightsError` naming the field.

    Checks: ``architecture`` a name, ``sha256`` 64 hex digits, and the ``preprocess`` block as
    :meth:`aescore.data.transforms.Preprocess.from_card` parses it (finite mean/std, std > 0, a
    known eval mode, sizes in pixels).
    """

    def bad(field: str, why: str, value: Any) -> WeightsError:
        shown = json.dumps(value, allow_nan=True)
        return WeightsError(f"{where}: invalid model card: {field} {why} (found {shown[:60]})")

    if not isinstance(card.get("architecture"), str) or not card["architecture"]:
        raise bad("architecture", "must be a model name", card.get("architecture"))
    sha = card.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha.lower())):
        raise bad("sha256", "must be 64 hexadecimal digits", sha)
    from aescore.data.transforms import Preprocess, RecipeError

    try:
        Preprocess.from_card(card.get("preprocess"))  # the one validator of the recipe
    except RecipeError as exc:
        raise WeightsError(f"{where}: invalid model card: {exc}") from None


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
    write_card(card_path, out)
    return out


def write_card(path: str | os.PathLike[str], card: dict[str, Any]) -> None:
    """Write a model card (``path``: the ``.json`` card or its ``.safetensors``) atomically, in the
    one layout every card has (indented UTF-8 JSON, a final newline)."""
    _, card_path = _pair(path)
    atomic_write_text(card_path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def load_weights(path: str | os.PathLike[str], device: Any = "cpu", *, plain: bool = True) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model described by a card and load its verified weights: ``(model.eval(), card)``.

    ``path`` is the ``.safetensors`` file or its ``.json`` card. Raises :class:`WeightsError` when
    either file is missing, the card is invalid (:func:`check_card`), the sha256 differs from the
    card's (file modified or corrupted), a weight is NaN or infinite, the architecture is unknown,
    or the tensors do not match the architecture. Never unpickles.

    For inference: with ``plain`` (default) a card whose network :mod:`aescore.models.plain`
    covers is built there, without importing timm or torchvision (same state-dict keys, same
    outputs); ``plain=False`` always builds through :func:`aescore.models.create_model`. A file
    verified once is not hashed again while its path, size, mtime, ctime and inode stay the same
    (see :func:`verified_cache_path`).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    weights_path, card_path = _pair(path)
    card = read_card(card_path)
    if not weights_path.is_file():
        raise WeightsError(f"weights file not found: {weights_path} (named by model card {card_path})")
    data, identity, known = _read_checked(weights_path, str(card["sha256"]))
    try:
        state = load_safetensors(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    del data
    if not known:
        _check_finite(state, weights_path)  # part of verifying: remembered with the hash
        _remember_sha256(identity, card["sha256"])
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


# --------------------------------------------------------------------------- verified sha256 memory

_VERIFIED_FORMAT = "aescore.verified/1"
_VERIFIED_MAX = 64  # entries kept (the newest): one per weights file a user has loaded


@dataclass(frozen=True)
class _FileIdentity:
    """What must stay equal for a file's remembered sha256 to still hold."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int  # changes on any write and cannot be set back by the user (unlike mtime)
    inode: int
    device: int

    def fields(self) -> dict[str, int]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "ctime_ns": self.ctime_ns, "inode": self.inode, "device": self.device}


def _read_file(path: Path) -> tuple[bytes, _FileIdentity]:
    """The file's bytes and its identity, read through one descriptor.

    The bytes loaded are the bytes hashed (no window to swap the file between hashing and
    loading); a file that changes while being read is refused.
    """
    try:
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise WeightsError(f"{path}: not a regular file")
            data = fh.read()
            after = os.fstat(fh.fileno())
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
        raise WeightsError(f"{path}: the file changed while it was read; try again")
    identity = _FileIdentity(
        str(path.resolve()), after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino, after.st_dev
    )
    return data, identity


def _read_checked(path: Path, sha256: str) -> tuple[bytes, _FileIdentity, bool]:
    """``path``'s bytes, its identity, and whether its sha256 was remembered; a file not
    remembered is hashed and refused (:class:`WeightsError`) unless it matches ``sha256``."""
    data, identity = _read_file(path)
    known = _remembered_sha256(identity) == sha256
    if not known:
        sha = hashlib.sha256(data).hexdigest()
        if sha != sha256:
            raise WeightsError(
                f"{path}: sha256 mismatch: file was modified or corrupted "
                f"(card says {sha256[:12]}..., file is {sha[:12]}...); refusing to load it"
            )
    return data, identity, known


def read_verified(path: str | os.PathLike[str], sha256: str) -> bytes:
    """The bytes of a file a model card names with its ``sha256`` (e.g. the exported ONNX program),
    verified as the weights are: hashed once, then remembered (:func:`verified_cache_path`)."""
    data, identity, known = _read_checked(Path(path), sha256)
    if not known:
        _remember_sha256(identity, sha256)
    return data


def verified_cache_path() -> Path:
    """``$XDG_CACHE_HOME/aescore/verified.json`` (default ``~/.cache/aescore/verified.json``): the
    sha256 of weights files already verified, keyed by path, size, mtime, ctime and inode."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aescore" / "verified.json"


def _verified_entries() -> dict[str, Any]:
    try:
        data = _read_small_json(verified_cache_path(), _MAX_SMALL_JSON_BYTES)
    except (OSError, UnicodeDecodeError, ValueError):
        return {}  # missing or damaged: verify again (and rewrite it)
    if not isinstance(data, dict) or data.get("format") != _VERIFIED_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _remembered_sha256(identity: _FileIdentity) -> str | None:
    """The sha256 verified earlier for exactly this file state, else None."""
    entry = _verified_entries().get(identity.path)
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in identity.fields().items()):
        return None
    sha = entry.get("sha256")
    return sha if isinstance(sha, str) else None


def _remember_sha256(identity: _FileIdentity, sha: str) -> None:
    """Record a verified sha256 (atomically; a cache: any failure only means hashing again next time)."""
    files = _verified_entries()
    files[identity.path] = {**identity.fields(), "sha256": sha, "verified_at": int(time.time())}
    if len(files) > _VERIFIED_MAX:
        newest = sorted(files.items(), key=lambda kv: kv[1].get("verified_at", 0) if isinstance(kv[1], dict) else 0)
        files = dict(newest[-_VERIFIED_MAX:])
    target = verified_cache_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": _VERIFIED_FORMAT, "files": files}, indent=1, sort_keys=True) + "\n"
        atomic_write_text(target, text, fsync=False)  # regenerable: a lost write costs one hash
    except OSError:
        pass


# --------------------------------------------------------------------------- checkpoints


def has_reasons_head(card: dict[str, Any]) -> bool:
    """Whether the card's network names faults (a ``faults`` output): a
    :class:`aescore.models.faultnet.FaultNet`, or a personal model built on one."""
    arch, args = card.get("architecture"), card.get("arch_args") or {}
    return arch == "faultnet" or (arch == "personal_ranker" and isinstance(args, dict) and args.get("base_architecture") == "faultnet")


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
    candidates += _shipped_candidates()
    candidates.append(user_models_dir())
    return _existing_unique(candidates)


def _shipped_candidates() -> list[Path]:
    """Where aescore's own weights live: package data (a wheel), then ``weights/`` of a source checkout."""
    candidates: list[Path] = []
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
    return candidates


def _existing_unique(candidates: list[Path]) -> list[Path]:
    out: list[Path] = []
    seen: set[Path] = set()
    for d in candidates:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def shipped_weights_dirs() -> list[Path]:
    """The folders of the models shipped with aescore (never ``$AESCORE_WEIGHTS_DIR``): the only
    place the default comes from unless the user chose one (:func:`set_default_model`)."""
    return _existing_unique(_shipped_candidates())


def _cards_in(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Model cards directly in ``folder`` (other JSON files are ignored), sorted by file name.

    Values are not checked here (:func:`read_card` does, on use), so a card with a bad value is
    still listed and found by name, and then refused with a line saying what is wrong.
    """
    found = []
    for card_path in sorted(folder.glob("*.json")):
        try:
            found.append((card_path, _card_structure(card_path)))
        except WeightsError:
            continue
    return found


@dataclass(frozen=True)
class ModelEntry:
    """One model card found in :func:`weights_dirs`."""

    card_path: Path
    card: dict[str, Any]

    @property
    def stem(self) -> str:
        """The file name without ``.json`` (``--model STEM`` finds it)."""
        return self.card_path.stem

    @property
    def name(self) -> str:
        """The card's ``name`` (``--model NAME`` finds it), else the file stem."""
        name = self.card.get("name")
        return name if isinstance(name, str) and name.strip() else self.stem

    def answers_to(self, name: str) -> bool:
        """Whether ``--model name`` means this model (its card name or its file stem)."""
        return name in (self.name, self.stem)


def list_models_found() -> list[ModelEntry]:
    """Every model card in :func:`weights_dirs`, folder by folder (a card reached twice counts once)."""
    out: list[ModelEntry] = []
    seen: set[Path] = set()
    for folder in weights_dirs():
        for card_path, card in _cards_in(folder):
            if card_path.resolve() not in seen:
                seen.add(card_path.resolve())
                out.append(ModelEntry(card_path, card))
    return out


def list_available() -> list[tuple[Path, dict[str, Any]]]:
    """Every model card in :func:`weights_dirs`, as ``(card path, card)``."""
    return [(e.card_path, e.card) for e in list_models_found()]


def _same_model(a: ModelEntry, b: ModelEntry) -> bool:
    # Two copies of one model (same weights, same recipe) are not a clash: they score alike.
    keys = ("architecture", "arch_args", "preprocess", "sha256")
    return all(a.card.get(k) == b.card.get(k) for k in keys)


def _distinct(entries: list[ModelEntry]) -> list[ModelEntry]:
    out: list[ModelEntry] = []
    for e in entries:
        if not any(_same_model(e, o) for o in out):
            out.append(e)
    return out


def name_clashes(entries: list[ModelEntry] | None = None) -> dict[str, list[ModelEntry]]:
    """Names (card names and file stems) that more than one different model answers to,
    mapped to those models (in search order)."""
    entries = list_models_found() if entries is None else entries
    names = sorted({n for e in entries for n in (e.name, e.stem)})
    clashes = {}
    for name in names:
        distinct = _distinct([e for e in entries if e.answers_to(name)])
        if len(distinct) > 1:
            clashes[name] = distinct
    return clashes


# --------------------------------------------------------------------------- the default model


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/aescore/config.json`` (default ``~/.config/aescore/config.json``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "aescore" / "config.json"


def _read_config() -> dict[str, Any]:
    path = config_path()
    if not os.path.lexists(path):
        return {}
    try:
        data = _read_small_json(path, _MAX_SMALL_JSON_BYTES)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable aescore config ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: not a readable aescore config (a JSON object expected); fix or delete it")
    return data


def configured_default() -> str | None:
    """The model the user chose as default (a name or a card path, as given), or None."""
    value = _read_config().get("default_model")
    return value if isinstance(value, str) and value else None


def set_default_model(spec: str | os.PathLike[str] | None) -> Path | None:
    """Make ``spec`` (a model name or a weights/card path) the default of score and rank, or with
    None go back to the shipped default. Returns the chosen model's path (None after a reset).

    The choice is ``{"default_model": ...}`` in :func:`config_path`, written atomically; other
    keys there are kept. A name is stored as given (it must resolve now, unambiguously); a path
    is stored absolute.
    """
    chosen: Path | None = None
    if spec is None:
        try:
            data = _read_config()
        except WeightsError:
            data = {}  # going back to the shipped default must work even over a damaged file
        data.pop("default_model", None)
    else:
        data = _read_config()
        chosen = resolve_model(spec)  # an unknown or ambiguous name fails here, before writing
        text = str(spec)
        is_path = Path(text).expanduser().exists() or _looks_like_path(text)
        data["default_model"] = str(chosen.expanduser().resolve()) if is_path else text
    target = config_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return chosen


def _shipped_default() -> Path | None:
    """The shipped default's card: in the first shipped folder with cards, the one its
    ``DEFAULT`` file names, or its only card."""
    for folder in shipped_weights_dirs():
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
        raise WeightsError(f"{folder} holds several models ({names}) and no {DEFAULT_FILE} file; name one explicitly")
    return None


def default_source() -> str:
    """Where the default comes from: ``"config"`` (the user's choice) or ``"shipped"``."""
    return "config" if configured_default() is not None else "shipped"


def default_weights_path() -> Path:
    """The default model's card or weights path.

    The model the user chose (:func:`set_default_model`), else the shipped one (the model the
    ``DEFAULT`` file of aescore's own weights folder names). Models in ``$AESCORE_WEIGHTS_DIR``
    never become the default by being there: a trained ``best`` is used only when named.
    """
    chosen = configured_default()
    if chosen is not None:
        try:
            return resolve_model(chosen)
        except WeightsError as exc:
            raise type(exc)(f"the default model chosen in {config_path()} cannot be used: {exc}") from None
    shipped = _shipped_default()
    if shipped is None:
        raise WeightsError("no default weights found; name a model or a .safetensors file")
    return shipped


def _looks_like_path(text: str) -> bool:
    return Path(text).suffix in (".json", ".safetensors") or os.sep in text or bool(os.altsep and os.altsep in text)


def resolve_model(spec: str | os.PathLike[str] | None) -> Path:
    """Turn ``--model`` into a weights path: None -> the default; an existing file -> itself;
    otherwise a model name: a card's ``name`` or file stem in :func:`weights_dirs`.

    Raises :class:`UnknownModelError` for a name no model has and :class:`AmbiguousModelError`
    when different models answer to it (both exit status 2), :class:`WeightsError` for a
    missing file.
    """
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
    if _looks_like_path(text):
        raise WeightsError(f"model file not found: {p}")
    entries = list_models_found()
    matches = _distinct([e for e in entries if e.answers_to(text)])
    if len(matches) == 1:
        return matches[0].card_path
    if len(matches) > 1:
        where = "; ".join(str(e.card_path) for e in matches)
        raise AmbiguousModelError(f"model name {text!r} is ambiguous: {len(matches)} different models answer to it ({where}); pass the file path")
    available = ", ".join(sorted({e.name for e in entries})) or "none installed"
    raise UnknownModelError(f"unknown model {text!r}; available: {available}; or pass a .safetensors/.json path")
