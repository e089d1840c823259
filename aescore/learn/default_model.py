"""STAND-IN for the default-model configuration that ``aescore models --set-default NAME`` will own
(being built in parallel in :mod:`aescore.weights`). ``aescore learn --set-default`` calls
``aescore.weights.set_default_model`` when it exists and this module's otherwise; on merge, the
integrator keeps one of the two and points :func:`aescore.weights.default_weights_path` at it.

The choice is ``{"default_model": NAME}`` in ``$XDG_CONFIG_HOME/aescore/config.json`` (default
``~/.config/aescore/config.json``), written atomically; other keys in the file are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aescore.errors import AescoreError
from aescore.fsutil import atomic_write_text


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/aescore/config.json``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "aescore" / "config.json"


def _read() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AescoreError(f"{path}: not a readable aescore config ({exc})") from None
    return data if isinstance(data, dict) else {}


def configured_default() -> str | None:
    """The model name chosen as default, or None when none was chosen."""
    name = _read().get("default_model")
    return name if isinstance(name, str) and name else None


def set_default_model(name: str) -> None:
    """Make the model ``name`` (as ``--model NAME`` resolves it) the default for score/rank."""
    from aescore.weights import resolve_model

    resolve_model(name)  # fails with one line for an unknown name, before anything is written
    data = _read()
    data["default_model"] = name
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
