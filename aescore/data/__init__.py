"""Datasets (AVA, AADB, CSV), splits, decoding and transforms.

``load_splits``, ``Sample``, ``DataSplits`` and ``split_fingerprint`` are re-exported lazily:
importing ``aescore.data`` (e.g. for ``aescore.data.images``) must not pull in torch, because
the CLI keeps ``aescore --help`` fast.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "load_splits": "aescore.data.datasets",
    "ImageDataset": "aescore.data.datasets",
    "collate_skipping": "aescore.data.datasets",
    "Sample": "aescore.data.splits",
    "DataSplits": "aescore.data.splits",
    "split_fingerprint": "aescore.data.splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aescore.data' has no attribute {name!r}")
