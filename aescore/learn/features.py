"""What the personal head learns from: the base model's embedding, generic score and (a base with
a reasons head) fault probabilities per photo, and the shoot each photo belongs to (for held-out
evaluation).

:func:`embed_photos` is the ONE place that runs the base network; it goes through the score cache,
so ``learn`` after ``rank`` (same model, outputs cached) decodes nothing again. It imports no torch:
the culling pipeline runs the base under ONNX Runtime where the base has an ONNX program.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Callable, NamedTuple, Sequence

import numpy as np


class Embedded(NamedTuple):
    """Photos that went through the base model: ``paths`` (those that decoded), ``embeddings``
    float32 ``[N, D]``, ``generic`` scores in [0, 1] ``[N]``, ``skipped`` ``(path, reason)``, and
    ``faults``: the fault probabilities ``[N, F]`` of a base with a reasons head (None for other
    bases, or when not asked for)."""

    paths: list[str]
    embeddings: np.ndarray
    generic: np.ndarray
    skipped: list[tuple[str, str]]
    faults: np.ndarray | None = None


def embed_photos(
    paths: Sequence[str],
    model: str | os.PathLike[str] | None = None,
    *,
    use_cache: bool = True,
    device: str = "auto",
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    with_faults: bool = True,
    runtime: str = "auto",
) -> Embedded:
    """Embeddings, generic scores and (``with_faults``, a base with a reasons head) fault
    probabilities of ``paths`` with ``model`` (name or file; None = the default), under
    ``runtime`` (``auto``, ``onnx``, ``torch``: :class:`aescore.cull.Settings`).

    Uses the score cache unless ``use_cache`` is false. ``progress(total_to_compute, done_already)``
    may return a callable advanced by the number of files finished (the CLI's progress bar).
    Photos that cannot be read come back in ``skipped`` (and through ``on_skip``), never raised.
    """
    from aescore import cull
    from aescore.inference.cache import ScoreCache
    from aescore.inference.discover import FoundFile
    from aescore.inference.onnx_runtime import Runtime

    skipped: list[tuple[str, str]] = []
    files: list[FoundFile] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as err:
            reason = "file not found" if isinstance(err, FileNotFoundError) else (err.strerror or str(err))
            skipped.append((path, reason))
            if on_skip is not None:
                on_skip(path, reason)
            continue
        files.append(FoundFile(path, os.path.realpath(path), st.st_size, st.st_mtime_ns))
    cache = (ScoreCache(warn=warn) if warn is not None else ScoreCache()) if use_cache else None
    settings = cull.Settings(model=None if model is None else str(model), device=device, use_cache=use_cache, runtime=Runtime(runtime))
    try:
        run = cull.score_photos(files, settings, with_embeddings=True, with_faults=with_faults, on_skip=on_skip,
                                progress=progress, cache=cache)
    finally:
        if cache is not None:
            cache.close()
    skipped.extend((s.path, s.reason) for s in run.skipped)
    emb = np.stack([p.embedding for p in run.photos]) if run.photos else np.zeros((0, 0), dtype=np.float32)
    generic = np.array([p.score for p in run.photos], dtype=np.float64)
    faults = None
    if run.photos and all(p.faults is not None for p in run.photos):
        faults = np.stack([p.faults for p in run.photos]).astype(np.float32)
    return Embedded([p.path for p in run.photos], emb.astype(np.float32), generic, skipped, faults)


def unreadable_photos(paths: Sequence[str], on_skip: Callable[[str, str], None] | None = None) -> list[tuple[str, str]]:
    """``(path, reason)`` for each of ``paths`` that is not a photo aescore can read (an empty
    file, a text file named ``.jpg``), each also passed to ``on_skip``.

    Only the file's header is read (Pillow's ``Image.open``, no decode): the unrated photos of a
    large library are counted, not scored, and most of a library is unrated. A camera RAW or HEIF
    file (read through an optional extra) counts as readable unless it is empty.
    """
    import os

    from PIL import Image

    from aescore.data.images import HEIF_EXTENSIONS, PILLOW_FORMATS, RAW_EXTENSIONS

    bad: list[tuple[str, str]] = []
    for path in paths:
        reason = None
        try:
            if os.path.getsize(path) == 0:
                reason = "empty file"
            elif os.path.splitext(path)[1].lower() not in RAW_EXTENSIONS | HEIF_EXTENSIONS:
                with Image.open(path, formats=PILLOW_FORMATS):
                    pass
        except OSError as err:  # PIL.UnidentifiedImageError is an OSError
            reason = "not a recognised image" if isinstance(err, Image.UnidentifiedImageError) else (err.strerror or str(err))
        if reason is not None:
            bad.append((path, reason))
            if on_skip is not None:
                on_skip(path, reason)
    return bad


class Shoots(NamedTuple):
    """Per photo: ``keys`` (the shoot: capture date, else folder) and ``times`` (capture time or
    mtime, POSIX seconds) for ordering photos inside a shoot."""

    keys: list[str]
    times: np.ndarray


def shoots_of(paths: Sequence[str]) -> Shoots:
    """The shoot of each photo: its EXIF capture date (``date:2024-05-01``), else its folder
    (``folder:/path``). Never raises for a bad or missing file."""
    from aescore.inference.exif import read_exif

    keys: list[str] = []
    times: list[float] = []
    for path in paths:
        info = read_exif(path)
        captured: datetime | None = info.capture_time
        if captured is not None:
            keys.append(f"date:{captured.date().isoformat()}")
            try:
                times.append(captured.timestamp())
                continue
            except (OverflowError, OSError, ValueError):
                pass
        else:
            keys.append(f"folder:{os.path.dirname(os.path.abspath(path))}")
        try:
            times.append(os.stat(path).st_mtime)
        except OSError:
            times.append(0.0)
    return Shoots(keys, np.asarray(times, dtype=np.float64))
