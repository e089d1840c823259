"""`aescore data` command(s). Placeholder: filled in by its issue."""

from __future__ import annotations

from aescore.cli.main import app  # noqa: F401
