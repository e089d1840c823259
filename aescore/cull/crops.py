"""``--crop WxH`` and ``--thumbs DIR``: a crop box of a chosen aspect per photo, and thumbnails cut
from it, for shell pipelines.

The box is computed here from cached fields, never from pixels: the ``framing`` check's ``size``
(the upright photo's own pixels) and ``structure`` grid (:mod:`aescore.checks.framing`), and the
faces check's ``face_list`` boxes (fractions of the photo) when that check ran. So a second run with
another ``--crop`` decodes nothing. The rule, in :func:`crop_box`:

1. **Faces** (any in ``face_list``): the photo's main faces — those whose box is at least half as
   tall as the tallest — with headroom: :data:`HEADROOM` of the tallest face's height above them,
   :data:`CHIN_ROOM` below, :data:`SIDE_ROOM` of its width on each side; that box grown (never
   shrunk) to the aspect W:H about its centre.
2. **No faces**: the largest W:H box the photo holds, slid along the free axis to where the
   ``structure`` grid sums highest (ties: nearer the centre).
3. **No structure either** (a flat photo): the largest W:H box, centred.

Then, for every rule: the box is at least W x H of the photo's pixels when the photo is that large
(a thumbnail is never enlarged from fewer pixels than it shows), at most the photo (scaled down
about its centre, keeping the aspect), and moved inside the photo. Coordinates are whole pixels
``[left, top, right, bottom]`` (right and bottom exclusive) of the upright photo (EXIF orientation
applied; a camera RAW's embedded preview), its aspect W:H up to rounding (one side whole, the other within half a pixel of it).

:func:`write_thumbs` cuts those boxes from the photos (decoded again, at the smallest JPEG draft
scale that keeps the box at least W x H) and writes W x H JPEGs: atomically (:mod:`aescore.fsutil`),
named after the photo (``IMG_1.CR2`` -> ``IMG_1.jpg``; clashes get ``-1``, ``-2`` as ``--copy-to``
gives them), never over a file aescore did not write (each thumbnail carries a JPEG comment naming
its source, so a re-run replaces its own), never touching a photo.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aescore.errors import UsageError

__all__ = [
    "CHIN_ROOM", "HEADROOM", "MAX_CROP_SIDE", "SIDE_ROOM", "ThumbResult", "crop_box", "parse_crop", "write_thumbs",
]

#: Room above the main faces, in the tallest face's height (hair, a hat).
HEADROOM = 0.6
#: Room below them, in the tallest face's height (chin, neck, the start of the shoulders).
CHIN_ROOM = 0.8
#: Room on each side, in the tallest face's width.
SIDE_ROOM = 0.5
#: A main face is at least this share of the tallest face's height.
MAIN_FACE_SHARE = 0.5
#: The largest side ``--crop`` accepts, pixels.
MAX_CROP_SIDE = 10_000
#: JPEG quality of the thumbnails.
THUMB_QUALITY = 90
#: The JPEG comment that marks a thumbnail as aescore's: this, then the sha256 of its source's real path.
MARKER_PREFIX = b"aescore-thumbnail:"

Box = tuple[int, int, int, int]


def parse_crop(text: str) -> tuple[int, int]:
    """``"400x300"`` -> ``(400, 300)``; :class:`~aescore.errors.UsageError` for anything else."""
    m = re.fullmatch(r"\s*([0-9]{1,6})\s*[xX×]\s*([0-9]{1,6})\s*", text or "")
    width, height = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not (1 <= width <= MAX_CROP_SIDE and 1 <= height <= MAX_CROP_SIDE):
        raise UsageError(f"--crop must be WIDTHxHEIGHT in whole pixels from 1 to {MAX_CROP_SIDE}, e.g. 400x300 (got {text!r})")
    return width, height


def _faces_box(size: tuple[int, int], faces: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """The main faces (fraction boxes) in the photo's pixels, with room around them."""
    width, height = size
    boxes = [(b[0] * width, b[1] * height, b[2] * width, b[3] * height) for b in faces]
    tallest = max(boxes, key=lambda b: b[3] - b[1])
    face_h, face_w = tallest[3] - tallest[1], tallest[2] - tallest[0]
    main = [b for b in boxes if b[3] - b[1] >= MAIN_FACE_SHARE * face_h]
    return (min(b[0] for b in main) - SIDE_ROOM * face_w, min(b[1] for b in main) - HEADROOM * face_h,
            max(b[2] for b in main) + SIDE_ROOM * face_w, max(b[3] for b in main) + CHIN_ROOM * face_h)


def _best_start(profile: Sequence[float], window: float) -> float | None:
    """Where (in cells, from 0 to ``len(profile) - window``) a window of ``window`` cells holds the
    most of ``profile`` (piecewise constant); ties nearer the middle; None when the profile is flat
    zero. 64 positions are tried, plus the middle."""
    n = len(profile)
    if window >= n - 1e-9 or not any(v > 0 for v in profile):
        return None
    cumulative = [0.0]
    for v in profile:
        cumulative.append(cumulative[-1] + float(v))

    def integral(x: float) -> float:
        k = min(n - 1, int(math.floor(x)))
        return cumulative[k] + (x - k) * float(profile[k])

    free = n - window
    middle = free / 2
    starts = sorted({free * k / 64 for k in range(65)} | {middle}, key=lambda s: abs(s - middle))
    best, best_sum = middle, -1.0
    for s in starts:  # nearest the middle first: a later start must hold strictly more
        total = integral(s + window) - integral(s)
        if total > best_sum + 1e-9 * max(1.0, abs(best_sum)):
            best, best_sum = s, total
    return best


def crop_box(
    size: tuple[int, int],
    aspect: tuple[int, int],
    faces: Sequence[Sequence[float]] | None = None,
    structure: Sequence[Sequence[float]] | None = None,
    min_size: tuple[int, int] | None = None,
) -> Box:
    """The crop of aspect ``aspect`` (W, H) of a photo of ``size`` (its own upright pixels), by the
    rule of the module docstring. ``faces``: ``box_fraction`` boxes of the faces check; ``structure``:
    the framing check's grid; ``min_size``: the smallest box in the photo's pixels (default ``aspect``
    itself: the thumbnail's own size)."""
    width, height = max(1, int(size[0])), max(1, int(size[1]))
    a = aspect[0] / aspect[1]
    min_w, min_h = min_size or aspect
    if width / height > a:  # the largest box of the aspect: full height, or full width
        full_w, full_h = height * a, float(height)
    else:
        full_w, full_h = float(width), width / a
    if faces:
        left, top, right, bottom = _faces_box((width, height), faces)
        box_w, box_h = max(right - left, (bottom - top) * a), max(bottom - top, (right - left) / a)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        box_w, box_h = max(box_w, min_w, min_h * a), max(box_h, min_h, min_w / a)
        if box_w > full_w:
            box_w, box_h = full_w, full_h
    else:
        box_w, box_h = full_w, full_h
        cx, cy = width / 2, height / 2
        if structure:
            rows = [list(map(float, r)) for r in structure]
            if box_w < width - 1e-9:  # free to slide left-right
                cols = [sum(r[c] for r in rows) for c in range(len(rows[0]))]
                start = _best_start(cols, box_w / width * len(cols))
                if start is not None:
                    cx = start / len(cols) * width + box_w / 2
            elif box_h < height - 1e-9:  # up-down
                start = _best_start([sum(r) for r in rows], box_h / height * len(rows))
                if start is not None:
                    cy = start / len(rows) * height + box_h / 2
    # Whole pixels: the limiting side exactly, the other from it (the aspect within half a pixel).
    if box_w >= width - 1e-9:
        w, h = width, min(height, max(1, round(width / a)))
    else:
        h = min(height, max(1, round(box_h)))
        w = min(width, max(1, round(h * a)))
    x = min(max(0, round(cx - w / 2)), width - w)
    y = min(max(0, round(cy - h / 2)), height - h)
    return (x, y, x + w, y + h)


# --------------------------------------------------------------------------- thumbnails

Outcome = Literal["created", "renamed", "replaced", "already-there"]


@dataclass(frozen=True)
class ThumbPlacement:
    """One photo's thumbnail: ``created`` under its own name, ``renamed`` (``IMG_1-1.jpg``: its name
    was taken by another file), ``replaced`` (an earlier thumbnail of the same photo, rewritten) or
    ``already-there`` (an identical thumbnail of it was there; nothing written)."""

    source: str
    destination: Path
    outcome: Outcome


@dataclass
class ThumbResult:
    """What :func:`write_thumbs` did (or, with ``dry_run``, would do), in input order; ``errors``:
    (photo, reason) for photos that could not be read again."""

    dry_run: bool
    placements: list[ThumbPlacement] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """E.g. ``"3 written, 1 already there, 1 renamed"`` (written counts created, renamed and replaced)."""
        count = {o: sum(p.outcome == o for p in self.placements) for o in ("created", "renamed", "replaced", "already-there")}
        written = count["created"] + count["renamed"] + count["replaced"]
        return f"{written} written, {count['already-there']} already there, {count['renamed']} renamed"


def _marker(source: str) -> bytes:
    return MARKER_PREFIX + hashlib.sha256(os.fsencode(os.path.realpath(source))).hexdigest().encode("ascii")


def _thumb_marker(path: Path) -> bytes | None:
    """The aescore marker of an existing file, or None when it is not a regular JPEG file with one."""
    import warnings

    from PIL import Image

    if path.is_symlink() or not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=["JPEG"]) as img:
                comment = img.info.get("comment")
    except Exception:  # noqa: BLE001 - whatever it is, it is not ours
        return None
    return comment if isinstance(comment, bytes) and comment.startswith(MARKER_PREFIX) else None


def _render(source: str, box: Box, size: tuple[int, int], out: tuple[int, int]) -> bytes:
    """The JPEG bytes of ``box`` (the photo's own pixels; ``size`` its upright size) at ``out``."""
    import io

    from PIL import Image

    from aescore.data.images import decode_rgb

    box_w, box_h = box[2] - box[0], box[3] - box[1]
    # Decode reduced (JPEG draft) only as far as keeps the box at least the thumbnail's size.
    keep = min(1.0, max(out[0] / max(1, box_w), out[1] / max(1, box_h)))
    img, own = decode_rgb(source, min_shorter=max(1, math.ceil(min(size) * keep)))
    sx, sy = img.width / own[0], img.height / own[1]
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    thumb = img.resize(out, Image.Resampling.LANCZOS, box=scaled, reducing_gap=3.0)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=THUMB_QUALITY, comment=_marker(source))
    return buf.getvalue()


def write_thumbs(photos: Sequence[Any], dest: str | os.PathLike[str], out: tuple[int, int], dry_run: bool = False) -> ThumbResult:
    """Write each photo's ``crop`` (:func:`aescore.cull.assign_crops`) as an ``out`` = (W, H) JPEG
    into ``dest`` (created if needed); see the module docstring for names and what is never
    overwritten. ``dry_run``: decide the names, write nothing (no photo is decoded)."""
    from aescore.fsutil import atomic_path
    from aescore.inference.materialise import candidate_names

    folder = Path(dest)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a folder")
    if any(getattr(p, "crop", None) is None for p in photos):
        raise ValueError("write_thumbs needs crop boxes: call assign_crops first")
    if not dry_run:
        folder.mkdir(parents=True, exist_ok=True)
    result = ThumbResult(dry_run)
    claimed: set[str] = set()  # casefolded names given in this run
    done: set[str] = set()  # real paths of sources handled (a photo named twice counts once)
    for photo in photos:
        real = os.path.realpath(photo.path)
        if real in done:
            continue
        done.add(real)
        mark = _marker(photo.path)
        for k, name in enumerate(candidate_names(Path(photo.path).stem + ".jpg")):
            target = folder / name
            if name.casefold() in claimed:
                continue
            if os.path.lexists(target):
                if os.path.realpath(target) == real or _thumb_marker(target) != mark:
                    continue  # the photo itself, or someone else's file: never overwritten
                outcome: Outcome = "replaced"
            else:
                outcome = "created" if k == 0 else "renamed"
            break
        claimed.add(name.casefold())
        if not dry_run:
            try:
                data = _render(photo.path, photo.crop, tuple(photo.fields["size"]), out)
            except Exception as err:  # noqa: BLE001 - one photo gone since scoring must not stop the rest
                result.errors.append((photo.path, getattr(err, "reason", None) or str(err)))
                continue
            if outcome == "replaced" and target.read_bytes() == data:
                outcome = "already-there"
            else:
                try:
                    with atomic_path(target, fsync=False, overwrite=outcome == "replaced") as tmp:
                        tmp.write_bytes(data)
                except FileExistsError:  # another program took the name meanwhile: leave its file alone
                    result.errors.append((photo.path, f"{target.name} appeared in the folder meanwhile; not overwritten"))
                    continue
        result.placements.append(ThumbPlacement(photo.path, target, outcome))
    return result
