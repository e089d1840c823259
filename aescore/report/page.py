"""Write the contact sheet: one self-contained HTML page and a folder of thumbnails beside it.

Layout on disk, for ``-o cull.html``::

    cull.html                    the page: inline CSS and JS, the run as JSON data, no network
    cull_files/.aescore-report   marks the folder as ours (we never write into a folder without it)
    cull_files/run-1a2b3c4d5e6f/000001.jpg ...   this run's thumbnails (rank order)

Thumbnails live in a folder rather than in data URIs: base64 makes a 60 kB thumbnail 80 kB, so
1,000 photos would be an 80 MB page that the browser must parse before showing anything; from a
folder, the page stays small (about 0.5 kB of JSON per photo) and only thumbnails in view load.
Each run writes its thumbnails into a hidden ``.partial-*`` folder; then, holding a lock on the
marker file (so that two reports writing the same page take turns), it renames that folder to
``run-*``, replaces the page atomically and removes every other ``run-*`` folder. The page on disk
therefore always points at a complete set of thumbnails, whichever of two concurrent runs wins.

:func:`check_output` is what may be written: a new name, or a page aescore wrote — never a photo,
a sidecar or any other existing file. ``aescore report`` calls it before scoring.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aescore.checks.base import Field, available_checks
from aescore.errors import AescoreError
from aescore.fsutil import atomic_write_text
from aescore.inference.discover import IMAGE_EXTENSIONS, PAGE_FILES_MARKER
from aescore.data.thumbs import MAX_THUMBNAIL_BYTES, is_jpeg, thumbnail_size
from aescore.termtext import display_path, terminal_text

__all__ = ["ReportError", "ReportPhoto", "ReportStats", "build_report", "check_output", "files_dir_for"]

MARKER = PAGE_FILES_MARKER
_RUN_DIR = re.compile(r"^run-[0-9a-f]{12}$")
_PARTIAL_PREFIX = ".partial-"
#: The longest page name accepted, in bytes: the page's temporary name (14 bytes more) and the
#: ``_files`` folder's must stay under the 255 bytes file systems allow.
MAX_NAME_BYTES = 200
#: Bytes of an existing file read to tell whether it is a page aescore wrote.
_PAGE_HEAD_BYTES = 4096
_THUMB_FILE = re.compile(r"^[0-9]{6,}\.jpg$")
# Formats a browser displays itself: the preview shows the original photo for these.
_BROWSER_FORMATS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp"}
# EXIF fields with their own lines on the card (and the sort by time), and the fault list drawn in
# the preview; a field a check declares as a badge or filter is shown as one; any other scalar
# field is listed in the preview.
_KNOWN_FIELDS = {"capture_time", "camera", "lens", "exposure", "faults", "face_list"}
#: At most this many face boxes per photo go into the page (a crowd's smallest faces are left out).
_MAX_FACE_BOXES = 100
_FACE_STATES = {"eyes": {"open", "closed", "unknown"}, "focus": {"sharp", "soft", "unknown"}}
_MAP_CELLS = 24 * 24  # larger maps (RGNet: 37 x 37) are block-averaged down to about this
_MAX_INPUT_CELLS = 1 << 20


class ReportError(AescoreError):
    """The report cannot be written where asked (missing folder, a foreign ``*_files`` folder, ...)."""


@dataclass
class ReportPhoto:
    """One scored photo as the contact sheet shows it.

    ``path`` is shown as text, never interpreted as markup. ``stars``: -1 rejected, 0..5, or None
    (no stars computed). ``group``/``best``: burst group id and whether the photo is its group's
    best (None when not grouped). ``fields``: check fields such as ``capture_time`` (datetime or
    text), ``camera``, ``lens``, ``exposure``, ``faults`` (kind -> probability), ``top_fault``,
    ``face_list`` (the faces check's boxes: drawn on the preview, closed eyes marked); other scalar
    fields are listed in the preview. ``thumbnail``: JPEG bytes, long edge <= 512,
    at most :data:`~aescore.data.thumbs.MAX_THUMBNAIL_BYTES` (58 kB; a larger one is re-encoded)
    — :func:`aescore.report.make_thumbnail` makes one from an already decoded image. ``region_map``: h x w per-region
    logits (MPA: their mean is the image logit), drawn as the preview's overlay.
    """

    path: str
    score: float
    rank: int
    stars: int | None = None
    group: int | None = None
    best: bool | None = None
    fields: dict[str, Any] | None = None
    thumbnail: bytes | None = None
    region_map: list[list[float]] | None = None


@dataclass(frozen=True)
class ReportStats:
    """What :func:`build_report` wrote: counts, the page's size and the thumbnails' total and largest size."""

    photos: int
    skipped: int
    thumbnails: int
    page_bytes: int
    thumbnail_bytes: int
    largest_thumbnail: int
    files_dir: Path | None


def files_dir_for(out: Path) -> Path:
    """The thumbnail folder beside the page: ``cull.html`` -> ``cull_files``."""
    return out.with_name(out.stem + "_files")


def build_report(
    photos: Sequence[ReportPhoto],
    skipped: Sequence[tuple[str, str]],
    out: str | os.PathLike[str],
    title: str,
    *,
    model: str | None = None,
    overlay_max_aspect: float | None = None,
    generated: datetime | None = None,
) -> ReportStats:
    """Write the contact sheet ``out`` (and its thumbnail folder) for ``photos`` and ``skipped``.

    ``skipped``: (path, reason) of files that could not be scored. ``model``: a tag recorded in
    exported decisions and written by ``aescore apply`` as ``aescore:Model`` (as ``--write-xmp``
    does). ``overlay_max_aspect``: where the region map lies on the photo — None: stretched over
    the whole photo (the network saw it whole, e.g. RGNet's square resize); a number A: over the
    centre crop of aspect at most A (MPA's "shorter" recipe with ``max_aspect``). Photos are
    never opened or modified. Raises ReportError where :func:`check_output` refuses ``out``. On
    failure nothing is left behind: no page, no thumbnails, no ``_files`` folder it created.
    """
    out = check_output(out)
    ordered = sorted(photos, key=lambda p: (p.rank, p.path))
    with_thumbs = [p for p in ordered if p.thumbnail]
    files = files_dir_for(out)
    made_files_dir = bool(with_thumbs) and not files.exists()
    partial: Path | None = None
    written: dict[int, tuple[str, int, int]] = {}  # id(photo) -> (file name, width, height)
    sizes: list[int] = []
    run_name = f"run-{secrets.token_hex(6)}"
    try:
        if with_thumbs:
            _claim_files_dir(files)
            partial = files / f"{_PARTIAL_PREFIX}{run_name}"
            partial.mkdir()
            for k, photo in enumerate(with_thumbs, start=1):
                jpeg = _checked_thumbnail(photo)
                dims = thumbnail_size(jpeg)
                if dims is None:
                    continue
                name = f"{k:06d}.jpg"
                (partial / name).write_bytes(jpeg)
                written[id(photo)] = (name, *dims)
                sizes.append(len(jpeg))
        page_fields = _page_fields(ordered)
        data = {
            "title": title,
            "model": model,
            "generated": (generated or datetime.now()).isoformat(sep=" ", timespec="seconds"),
            "files": (quote(os.fsencode(files.name)) + "/" + run_name + "/") if partial else "",
            "overlay_max_aspect": overlay_max_aspect,
            "decisions_name": f"{out.stem}-decisions.json",
            "fields": [{"name": f.name, "filter": f.filter, "badge": f.badge} for f in page_fields],
            "photos": [_photo_json(p, written.get(id(p)), page_fields) for p in ordered],
            "skipped": [{"name": _display(path), "reason": _display(str(reason))} for path, reason in skipped],
        }
        page = render_page(title, data)
        with _locked(files):
            run_dir = None
            if partial is not None:
                run_dir = files / run_name
                partial.rename(run_dir)
                partial = run_dir  # removed on failure from here on
            atomic_write_text(out, page)
            partial = None  # the page points at it now
            _remove_other_runs(files, keep=run_dir)
    except BaseException:
        if partial is not None:
            _remove_run(partial)
        if made_files_dir:
            _remove_files_dir(files)
        raise
    return ReportStats(
        photos=len(ordered),
        skipped=len(skipped),
        thumbnails=len(sizes),
        page_bytes=len(page.encode("utf-8")),
        thumbnail_bytes=sum(sizes),
        largest_thumbnail=max(sizes, default=0),
        files_dir=files if with_thumbs else None,
    )


def check_output(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path if :func:`build_report` may write the page there, else ReportError.

    Refused: a name ending like a photo or a sidecar (``.jpg``, ``.xmp``, ...), a name that is not
    valid for the file system or longer than :data:`MAX_NAME_BYTES` bytes, a missing folder, a
    folder aescore cannot create files in, an existing file that is not a page aescore wrote (so
    never a photo, a sidecar or a document), and a ``_files`` folder beside it that aescore did
    not make. Nothing is written (a probe file in the folder is created and removed at once).
    """
    out = Path(out)
    name = out.name
    if not name or name in (".", ".."):
        raise ReportError(f"{_display(str(out))}: give a file name for the report, e.g. cull.html")
    if out.suffix.lower() in IMAGE_EXTENSIONS or out.suffix.lower() == ".xmp":
        raise ReportError(f"{_display(str(out))}: is named like a photo or a sidecar; the report is a web page (e.g. cull.html)")
    try:
        encoded = os.fsencode(name)
    except UnicodeEncodeError:
        raise ReportError(f"{_display(str(out))}: not a valid file name on this system") from None
    if b"\0" in encoded:
        raise ReportError(f"{_display(str(out))}: the name contains a NUL byte")
    if len(encoded) > MAX_NAME_BYTES:
        raise ReportError(f"{_display(name[:40])}...: name too long for the report (at most {MAX_NAME_BYTES} bytes)")
    if not out.parent.is_dir():
        raise ReportError(f"{_display(str(out.parent))}: no such folder for the report; give a file name in an existing folder")
    if os.path.lexists(out):
        if out.is_dir() and not out.is_symlink():
            raise ReportError(f"{_display(str(out))}: is a folder; give a file name in an existing folder")
        if not _is_our_page(out):
            raise ReportError(
                f"{_display(str(out))}: exists and is not a contact sheet aescore wrote; "
                "remove it or choose another name (aescore never overwrites other files)"
            )
    _check_files_dir(files_dir_for(out))
    try:
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=".aescore-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ReportError(f"{_display(str(out.parent))}: cannot write the report there ({err.strerror or err})") from None
    return out


def _is_our_page(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) that starts as every page aescore writes."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return False
        with open(path, "rb") as fh:
            head = fh.read(_PAGE_HEAD_BYTES)
    except OSError:
        return False
    return head.startswith(_page_prefix())


def _page_prefix() -> bytes:
    """The text every page starts with: the template up to its first placeholder (the CSP hash)."""
    template = resources.files("aescore.report").joinpath("page.html").read_text(encoding="utf-8")
    return template[: template.index("{{")].encode("utf-8")


def render_page(title: str, data: dict[str, Any]) -> str:
    """The HTML page for ``data`` (the JSON the page's script reads): inline CSS/JS with CSP hashes."""
    pkg = resources.files("aescore.report")
    template = pkg.joinpath("page.html").read_text(encoding="utf-8")
    css = pkg.joinpath("page.css").read_text(encoding="utf-8")
    js = pkg.joinpath("page.js").read_text(encoding="utf-8")
    values = {
        "TITLE": html.escape(title),
        "CSS": css,
        "JS": js,
        "CSS_HASH": _csp_hash(css),
        "JS_HASH": _csp_hash(js),
        "DATA": script_json(data),
    }
    # One pass: text substituted for one token is never scanned for another.
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)


def script_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&``, U+2028/9 escaped.

    ``ensure_ascii`` also keeps file names with undecodable bytes (surrogate escapes) intact: they
    travel as ``\\udcff`` escapes to the page and back into the exported decisions.
    """
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


# --------------------------------------------------------------------------- helpers


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _display(path: str) -> str:
    return display_path(str(path))


def _check_files_dir(files: Path) -> None:
    """ReportError unless ``files`` is absent or a folder aescore made (it holds our marker)."""
    if files.is_symlink() or (files.exists() and not files.is_dir()):
        raise ReportError(f"{_display(str(files))}: exists and is not a folder; remove it or choose another report name")
    if files.is_dir() and not (files / MARKER).is_file():
        raise ReportError(
            f"{_display(str(files))}: folder exists but was not made by aescore (e.g. a browser's 'save page'); "
            "remove it or choose another report name"
        )


def _claim_files_dir(files: Path) -> None:
    """Create the thumbnail folder with our marker, or check that an existing one is ours."""
    _check_files_dir(files)
    if files.is_dir():
        return
    # Made whole beside it, then renamed: another report never sees the folder without its marker.
    tmp = Path(tempfile.mkdtemp(dir=files.parent, prefix=f".{files.name}.", suffix=".tmp"))
    try:
        atomic_write_text(tmp / MARKER, "Thumbnails of an aescore contact sheet; safe to delete with the page.\n")
        if not files.exists():
            os.rename(tmp, files)
    except OSError:
        if not files.is_dir():
            raise
    finally:
        _remove_files_dir(tmp)  # a no-op after the rename
    _check_files_dir(files)  # another report may have made it a moment ago


@contextmanager
def _locked(files: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``files``' marker while a run publishes its page (POSIX ``flock``;
    where there is none, or no folder, runs are not serialised)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        fh = open(files / MARKER, "rb")
    except OSError:
        yield  # no thumbnail folder: nothing another run could delete under us
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_other_runs(files: Path, keep: Path | None) -> None:
    """Delete every ``run-*`` folder in ``files`` but ``keep`` (older runs of this page)."""
    if not (files.is_dir() and (files / MARKER).is_file()):
        return
    for old in files.iterdir():
        if old != keep and _RUN_DIR.match(old.name) and old.is_dir() and not old.is_symlink():
            _remove_run(old)


def _remove_files_dir(files: Path) -> None:
    """Remove a thumbnail folder this run created, if nothing but our marker (or nothing) is in it."""
    try:
        if set(p.name for p in files.iterdir()) <= {MARKER}:
            (files / MARKER).unlink(missing_ok=True)
            files.rmdir()
    except OSError:
        pass


def _remove_run(run_dir: Path) -> None:
    """Delete our thumbnails in ``run_dir`` and the folder; anything else found there is left alone."""
    try:
        for f in run_dir.iterdir():
            if _THUMB_FILE.match(f.name) and f.is_file() and not f.is_symlink():
                f.unlink()
        run_dir.rmdir()
    except OSError:
        pass  # a foreign file or a concurrent reader: leave the folder, it is harmless


def _checked_thumbnail(photo: ReportPhoto) -> bytes:
    """The photo's thumbnail, re-encoded smaller when it exceeds the size promise."""
    data = photo.thumbnail or b""
    if not is_jpeg(data):
        raise ValueError(f"thumbnail of {photo.path!r} is not JPEG data")
    if len(data) <= MAX_THUMBNAIL_BYTES:
        return data
    import io

    from PIL import Image

    from aescore.data.thumbs import make_thumbnail

    with Image.open(io.BytesIO(data)) as img:
        return make_thumbnail(img.convert("RGB"))


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _text(value: Any) -> str | None:
    """A field value as display text (datetimes to the second; None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, float):
        return f"{value:.4g}"
    return terminal_text(str(value)[:200])  # EXIF text: no control characters or bidi overrides


def _field_text(value: Any) -> str | None:
    """A badge or filter field's value as the page compares it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _text(value)


def _region_map_json(region_map: Any) -> dict[str, Any] | None:
    """An h x w map quantised to bytes (-s..s -> 1..255), base64: ~1.3 bytes per cell in the page.

    Maps over :data:`_MAP_CELLS` cells are block-averaged (at most ~0.8 kB per photo); ``mean``
    is the original map's mean (MPA: the image logit).
    """
    if region_map is None:
        return None
    import numpy as np

    arr = np.asarray(region_map, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0 or arr.size > _MAX_INPUT_CELLS or not np.isfinite(arr).all():
        return None
    mean = float(arr.mean())
    if arr.size > _MAP_CELLS:
        f = math.ceil(math.sqrt(arr.size / _MAP_CELLS))
        starts = np.arange(0, arr.shape[0], f), np.arange(0, arr.shape[1], f)
        sums = np.add.reduceat(np.add.reduceat(arr, starts[0], axis=0), starts[1], axis=1)
        counts = np.add.reduceat(np.add.reduceat(np.ones_like(arr), starts[0], axis=0), starts[1], axis=1)
        arr = sums / counts
    scale = float(f"{float(np.abs(arr).max()):.4g}")
    q = np.full(arr.shape, 128, dtype=np.uint8)
    if scale > 0:
        q = np.clip(np.round(arr / scale * 127) + 128, 1, 255).astype(np.uint8)
    return {
        "h": int(arr.shape[0]),
        "w": int(arr.shape[1]),
        "s": scale,
        "mean": round(mean, 4),
        "q": base64.b64encode(q.tobytes()).decode("ascii"),
    }


def _faces_json(face_list: Any) -> list[dict[str, Any]] | None:
    """The faces check's ``face_list`` as the preview draws it: ``b`` the box as fractions of the
    photo (0-1, left top right bottom), ``eyes`` and ``focus`` from their known values (else
    ``unknown``); anything malformed is left out. None when the check did not run."""
    if not isinstance(face_list, list):
        return None
    out = []
    for face in face_list[:_MAX_FACE_BOXES]:
        box = face.get("box_fraction") if isinstance(face, dict) else None
        values = [_finite(v) for v in box] if isinstance(box, (list, tuple)) and len(box) == 4 else []
        if len(values) != 4 or any(v is None for v in values):
            continue
        left, top, right, bottom = (min(1.0, max(0.0, float(v))) for v in values)  # type: ignore[arg-type]
        if right <= left or bottom <= top:
            continue
        states = {k: face.get(k) if face.get(k) in allowed else "unknown" for k, allowed in _FACE_STATES.items()}
        out.append({"b": [round(left, 4), round(top, 4), round(right, 4), round(bottom, 4)], **states})
    return out


def _page_fields(photos: Sequence[ReportPhoto]) -> list[Field]:
    """The fields the page shows as badges or filters: those the registered checks declare so
    (:class:`~aescore.checks.Field`'s ``badge`` and ``filter``) that some photo has."""
    present = {name for p in photos for name in (p.fields or {})}
    return [f for c in available_checks() for f in c.fields if (f.badge or f.filter) and f.name in present]


def _photo_json(photo: ReportPhoto, thumb: tuple[str, int, int] | None, page_fields: Sequence[Field]) -> dict[str, Any]:
    fields = photo.fields or {}
    faults = fields.get("faults")
    faults_json = None
    if isinstance(faults, dict):
        probs = {str(kind): _finite(p) for kind, p in faults.items()}
        faults_json = {kind: round(p, 3) for kind, p in probs.items() if p is not None}
    shown = _KNOWN_FIELDS | {f.name for f in page_fields}
    extra = {
        str(k): _text(v)
        for k, v in fields.items()
        if k not in shown and isinstance(v, (str, int, float, bool, datetime)) and _text(v) is not None
    }
    absolute = os.path.abspath(photo.path)
    suffix = os.path.splitext(absolute)[1].lower()
    score = _finite(photo.score)
    return {
        "name": _display(photo.path),
        "base": _display(os.path.basename(photo.path) or photo.path),
        "path": absolute,
        "uri": Path(absolute).as_uri() if suffix in _BROWSER_FORMATS else None,
        "score": round(score, 5) if score is not None else None,
        "rank": int(photo.rank),
        "stars": None if photo.stars is None else int(photo.stars),
        "group": None if photo.group is None else int(photo.group),
        "best": None if photo.best is None else bool(photo.best),
        "thumb": thumb[0] if thumb else None,
        "tw": thumb[1] if thumb else None,
        "th": thumb[2] if thumb else None,
        "time": _text(fields.get("capture_time")),
        "camera": _text(fields.get("camera")),
        "lens": _text(fields.get("lens")),
        "exposure": _text(fields.get("exposure")),
        "faults": faults_json,
        "f": {f.name: _field_text(fields.get(f.name)) for f in page_fields},
        "extra": extra,
        "map": _region_map_json(photo.region_map),
        "faces": _faces_json(fields.get("face_list")),
    }
