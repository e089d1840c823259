"""Fixtures shared by the test modules (generators they use live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_tiny_weights


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (random) MPA model on a tiny timm backbone with a 64 px recipe, saved with its card."""
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_CACHE_HOME in the test's tmp_path, so no test reads or writes the user's score cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache"
