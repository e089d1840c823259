"""Fixtures shared by the test modules (generators they use live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_tiny_faultnet, make_tiny_weights


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (random) MPA model on a tiny timm backbone with a 64 px recipe, saved with its card."""
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def tiny_faultnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random faultnet (reasons head, region map, embedding) with a 64-px whole view and two
    48-px detail crops, saved with its card."""
    return make_tiny_faultnet(tmp_path_factory.mktemp("faultnet"))


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own XDG cache, config and data folders: no test reads or writes the
    user's score cache, verified-weights memo, default-model choice or personal models."""
    for var, sub in (("XDG_CACHE_HOME", "xdg-cache"), ("XDG_CONFIG_HOME", "xdg-config"), ("XDG_DATA_HOME", "xdg-data")):
        monkeypatch.setenv(var, str(tmp_path / sub))


@pytest.fixture()
def shipped_models_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No $AESCORE_WEIGHTS_DIR (nor AESCORE_DEBUG) from the caller's environment: model lookup
    sees the shipped weights and what the test itself adds."""
    monkeypatch.delenv("AESCORE_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("AESCORE_DEBUG", raising=False)


@pytest.fixture()
def private_cache(tmp_path: Path) -> Path:
    """The test's own XDG_CACHE_HOME (set for every test by the autouse fixture above)."""
    return tmp_path / "xdg-cache"
