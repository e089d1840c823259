"""The default model: the shipped one (named by the ``DEFAULT`` file of aescore's own weights
folder) unless the user chose another (:func:`set_default_model`, stored in
``$XDG_CONFIG_HOME/aescore/config.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aescore.errors import WeightsError
from aescore.fsutil import atomic_write_text
from aescore.weights import lookup  # lookup.shipped_weights_dirs: looked up at call time (tests replace it)
from aescore.weights._json import MAX_SMALL_JSON_BYTES, read_small_json
from aescore.weights.lookup import cards_in, looks_like_path, resolve_model

DEFAULT_FILE = "DEFAULT"


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/aescore/config.json`` (default ``~/.config/aescore/config.json``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "aescore" / "config.json"


def _read_config() -> dict[str, Any]:
    path = config_path()
    if not os.path.lexists(path):
        return {}
    try:
        data = read_small_json(path, MAX_SMALL_JSON_BYTES)
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
        is_path = Path(text).expanduser().exists() or looks_like_path(text)
        data["default_model"] = str(chosen.expanduser().resolve()) if is_path else text
    target = config_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return chosen


def _shipped_default() -> Path | None:
    """The shipped default's card: in the first shipped folder with cards, the one its
    ``DEFAULT`` file names, or its only card."""
    for folder in lookup.shipped_weights_dirs():
        cards = cards_in(folder)
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
