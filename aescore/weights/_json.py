"""Small JSON files aescore reads (model cards, config.json, verified.json): regular files only,
size-capped, strict numbers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_SMALL_JSON_BYTES = 1 << 20  # config.json, verified.json


def read_small_json(path: Path, limit: int) -> Any:
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
