"""The sha256 of verified files, remembered per file state.

A weights file (or an exported ONNX program) is hashed once and its sha256 remembered per file
(path, size, mtime, ctime, inode, device) in ``$XDG_CACHE_HOME/aescore/verified.json``, so the
default model is not hashed again on every run; any change of the file forces a new hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aescore.errors import WeightsError
from aescore.fsutil import atomic_write_text
from aescore.weights._json import MAX_SMALL_JSON_BYTES, read_small_json

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


def read_checked(path: Path, sha256: str) -> tuple[bytes, _FileIdentity, bool]:
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
    data, identity, known = read_checked(Path(path), sha256)
    if not known:
        remember_sha256(identity, sha256)
    return data


def verified_cache_path() -> Path:
    """``$XDG_CACHE_HOME/aescore/verified.json`` (default ``~/.cache/aescore/verified.json``): the
    sha256 of weights files already verified, keyed by path, size, mtime, ctime and inode."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aescore" / "verified.json"


def _verified_entries() -> dict[str, Any]:
    try:
        data = read_small_json(verified_cache_path(), MAX_SMALL_JSON_BYTES)
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


def remember_sha256(identity: _FileIdentity, sha: str) -> None:
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
