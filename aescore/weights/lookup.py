"""Finding models: the folders searched, the cards in them, and ``--model`` turned into a file.

Named models are searched in :func:`weights_dirs`: ``$AESCORE_WEIGHTS_DIR`` first, then the
weights bundled as package data (``aescore/_weights`` in a wheel), then ``weights/`` of a source
checkout, then the personal models. A model is named by its card's ``name`` or its file stem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aescore.errors import WeightsError
from aescore.weights.card import card_structure, head_only_base, pair_paths

WEIGHTS_ENV = "AESCORE_WEIGHTS_DIR"


class UnknownModelError(WeightsError):
    """No model answers to the name given (a usage error: exit status 2)."""

    exit_code = 2


class AmbiguousModelError(UnknownModelError):
    """Several different models answer to the name given (exit status 2)."""


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


def cards_in(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Model cards directly in ``folder`` (other JSON files are ignored), sorted by file name.

    Values are not checked here (:func:`read_card` does, on use), so a card with a bad value is
    still listed and found by name, and then refused with a line saying what is wrong.
    """
    found = []
    for card_path in sorted(folder.glob("*.json")):
        try:
            found.append((card_path, card_structure(card_path)))
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
        for card_path, card in cards_in(folder):
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


def looks_like_path(text: str) -> bool:
    return Path(text).suffix in (".json", ".safetensors") or os.sep in text or bool(os.altsep and os.altsep in text)


def resolve_model(spec: str | os.PathLike[str] | None) -> Path:
    """Turn ``--model`` into a weights path: None -> the default; an existing file -> itself;
    otherwise a model name: a card's ``name`` or file stem in :func:`weights_dirs`.

    Raises :class:`UnknownModelError` for a name no model has and :class:`AmbiguousModelError`
    when different models answer to it (both exit status 2), :class:`WeightsError` for a
    missing file.
    """
    if spec is None:
        # The default is itself resolved by name (a user's choice), so the two call each other;
        # imported here, where the recursion happens, to keep lookup below config.
        from aescore.weights.config import default_weights_path

        return default_weights_path()
    p = Path(spec).expanduser()
    if p.exists():
        if p.is_dir():
            raise WeightsError(f"{p} is a folder; pass a .safetensors file, its .json card or a model name")
        weights_path, card_path = pair_paths(p)
        if p == weights_path and not card_path.is_file():
            raise WeightsError(f"model card not found: {card_path} (every .safetensors needs its .json card beside it)")
        return p
    text = str(spec)
    if looks_like_path(text):
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


def resolve_base(card: dict[str, Any], where: str | os.PathLike[str]) -> Path:
    """The card path of the base model a head-only personal model (``card``, read from ``where``)
    was learned on: a model of :func:`weights_dirs` whose weights have the sha256 its card records
    (the one of the recorded name first; a renamed or moved copy of those weights serves too),
    else the file the card's ``head_only.base_path`` names (a base given to ``learn`` as a file
    outside those folders) when its card still records that sha256.

    :class:`WeightsError`, one line saying what to do, when no such model is installed: the base
    is missing, or a model of its name holds other weights (e.g. an updated default model); a
    head learned on one network's outputs means nothing on another's.
    """
    base = head_only_base(card)
    if base is None:
        raise WeightsError(f"{where}: not a head-only personal model")
    name, sha = base
    entries = list_models_found()
    matches = [e for e in entries if str(e.card.get("sha256", "")).lower() == sha and head_only_base(e.card) is None]
    if matches:
        named = [e for e in matches if e.answers_to(name)]
        return (named or matches)[0].card_path
    # A base given to `learn` as a file outside the searched folders: where it was then.
    recorded = card["head_only"].get("base_path")
    if isinstance(recorded, str) and recorded:
        try:
            _, card_path = pair_paths(recorded)
            found = card_structure(card_path)
        except (WeightsError, OSError):
            found = None
        if found is not None and str(found.get("sha256", "")).lower() == sha and head_only_base(found) is None:
            return card_path
    model = Path(where).stem
    again = f"learn it again (aescore learn ... --name {model} --replace) or install that base model"
    others = [e for e in entries if e.answers_to(name)]
    if others:
        theirs = str(others[0].card.get("sha256", ""))[:12]
        raise WeightsError(
            f"{where}: personal model {model!r} was learned on base model {name!r} with weights sha256 {sha[:12]}..., "
            f"but the installed {name!r} has other weights ({theirs}...); {again}"
        )
    raise WeightsError(f"{where}: personal model {model!r} needs its base model {name!r} (sha256 {sha[:12]}...), which is not installed; {again}")
