"""Robust image decoding shared by training, evaluation and scoring.

Photos from real libraries come in every Pillow mode and orientation; everything that leaves this
module is an upright 8-bit RGB ``PIL.Image`` or an :class:`~aescore.errors.ImageDecodeError`.

Untrusted files are handled defensively: only the formats listed in :data:`PILLOW_FORMATS` are
sniffed (an EPS file renamed ``.jpg`` is not handed to Ghostscript), images longer than
:data:`MAX_ASPECT_RATIO` times their width (or the reverse) are refused before their pixels are
decoded, and what C libraries print on the process's stderr while decoding (libtiff's
"WEBP compression support is not configured", ...) is kept off the terminal and folded into the
one error line instead.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

from PIL import Image, ImageOps

from aescore.errors import ImageDecodeError

# Extensions Pillow decodes without extras. GIF scores its first frame.
PILLOW_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
# HEIC/HEIF through pillow-heif (the ``heif`` extra).
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
# Camera RAW through rawpy's embedded-preview extraction (the ``raw`` extra).
RAW_EXTENSIONS = frozenset({".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"})

# The Pillow format ids ``Image.open`` may identify (content sniffing is limited to these).
# (Pillow's JPEG opener also returns the multi-picture MPO files many cameras write.)
# HEIF is registered by pillow-heif.
PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
HEIF_FORMATS = ("HEIF",)
# Longest edge / shortest edge beyond which a file is refused: far beyond any stitched panorama
# one would score (360-degree panoramas are 2:1 to 6:1), and it bounds the memory of the
# "resize the shorter edge" step to 20x the output's shorter edge squared.
MAX_ASPECT_RATIO = 20.0

_HEIF_MISSING = "HEIF support is not installed: pip install 'aescore[heif]'"
_RAW_MISSING = "camera RAW support is not installed: pip install 'aescore[raw]'"


def missing_extra(path: str | Path) -> str | None:
    """The skip reason for ``path`` if decoding it needs an extra that is not installed, else None.

    Checks importability only (no import), so a caller can skip such files cheaply — e.g. a
    fully cached re-run need not load the model just to find that HEIC support is missing.
    """
    from importlib.util import find_spec

    ext = Path(path).suffix.lower()
    if ext in HEIF_EXTENSIONS and find_spec("pillow_heif") is None:
        return _HEIF_MISSING
    if ext in RAW_EXTENSIONS and find_spec("rawpy") is None:
        return _RAW_MISSING
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency onto white.

    Why not ``img.convert("RGB")`` alone: 16-bit modes ("I;16", "I") are clipped rather than
    scaled by it, and palette/LA images with transparency would turn their transparent areas black.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) greyscale: scale the full range down to 8 bits.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        maxval = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr * (255.0 / maxval), 0, 255).round().astype("uint8")
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(arr * 255.0, 0, 255).round().astype("uint8"), mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    # CMYK, YCbCr, LAB, HSV, L, 1: Pillow's own conversions are correct.
    return img.convert("RGB")


class _Refused(Exception):
    """A file refused before decoding its pixels (the message is the reason)."""


def _check_aspect(size: tuple[int, int]) -> None:
    """Refuse sizes with an edge of 0 or an aspect ratio beyond :data:`MAX_ASPECT_RATIO`."""
    w, h = size
    if w < 1 or h < 1:
        raise _Refused(f"image has no pixels ({w}x{h})")
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise _Refused(f"aspect ratio {w}x{h} is beyond {MAX_ASPECT_RATIO:g}:1; not scored")


def _crop_aspect(img: Image.Image, max_aspect: float | None) -> Image.Image:
    """Centre-crop the long edge to ``round(shorter * max_aspect)`` pixels (no-op when within it)."""
    if max_aspect is None:
        return img
    w, h = img.size
    if w >= h and w > round(h * max_aspect):
        cw = max(1, round(h * max_aspect))
        left = int(round((w - cw) / 2.0))
        return img.crop((left, 0, left + cw, h))
    if h > w and h > round(w * max_aspect):
        ch = max(1, round(w * max_aspect))
        top = int(round((h - ch) / 2.0))
        return img.crop((0, top, w, top + ch))
    return img


def _draft(img: Image.Image, min_shorter: int | None) -> None:
    """Ask a JPEG decoder for the smallest DCT scale whose shorter edge stays >= ``min_shorter``."""
    if min_shorter is not None and img.format in ("JPEG", "MPO"):
        w, h = img.size
        scale = min(w, h) / float(min_shorter)
        if scale >= 2:
            img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))


# --------------------------------------------------------------------------- C-level stderr

_stderr_lock = threading.Lock()
# Pillow hands libtiff the name "tempfile.tif"; libtiff starts its messages with it.
_C_PREFIX = "tempfile.tif: "


class _CMessages:
    """Text C libraries wrote to file descriptor 2 during a decode (set when the block ends)."""

    text = ""


def _c_text(captured: bytes) -> str:
    """The captured C messages as one line: distinct lines joined by "; ", libtiff's prefix removed."""
    kept: list[str] = []
    for raw in captured.decode("utf-8", "replace").splitlines():
        line = raw.strip().removeprefix(_C_PREFIX).strip()
        if line and line not in kept:
            kept.append(line)
    return "; ".join(kept)


@contextmanager
def _capture_c_stderr() -> Iterator[_CMessages]:
    """Point file descriptor 2 at a temporary file while decoding; collect what was written there.

    libtiff (and other C decoders) report problems by printing to the process's stderr, bypassing
    Python, so a broken TIFF would print its own lines besides aescore's one skip line. Lines with
    terminal control codes (a progress display that another thread refreshed meanwhile) are
    written back to the real stderr; the rest is C libraries' text, kept for the error message.
    A lock keeps threads from nesting the swap.
    """
    messages = _CMessages()
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2 (closed stderr, daemon)
            yield messages
            return
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield messages
                finally:
                    try:
                        sys.stderr.flush()
                    except (OSError, ValueError):
                        pass
                    os.dup2(saved, 2)
                    sink.seek(0)
                    lines = sink.read(1 << 20).splitlines(keepends=True)
                    replay = b"".join(line for line in lines if b"\x1b" in line)
                    if replay:
                        os.write(2, replay)
                    messages.text = _c_text(b"".join(line for line in lines if b"\x1b" not in line))
        finally:
            os.close(saved)


# --------------------------------------------------------------------------- decoders


class Decoded(NamedTuple):
    """What :func:`decode_rgb` gives: the upright RGB ``image`` (reduced when JPEG draft mode was
    asked for, cut by ``max_aspect``), and ``size``: the upright photo's own ``(width, height)`` in
    pixels, before any reduced decoding or cut — what coordinates "in the original photo" refer to.
    For camera RAW files it is the size of the image aescore reads at full scale: the camera's
    embedded preview, or the sensor's image when there is none."""

    image: Image.Image
    size: tuple[int, int]


_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the stored image by 90 degrees


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """A stored ``(width, height)`` as displayed under an EXIF ``orientation``."""
    return (size[1], size[0]) if orientation in _SWAPS_AXES else size


def _decode_pillow(path: Path, min_shorter: int | None, max_aspect: float | None, formats: tuple[str, ...]) -> Decoded:
    with warnings.catch_warnings():
        # Pillow warns (two stray stderr lines per photo, without its name) about things it then
        # handles: corrupt EXIF blocks, palette transparency, and sizes between 1x and 2x
        # Image.MAX_IMAGE_PIXELS (~90-180 MP, e.g. a 102 MP medium-format camera). Either we
        # return a correct RGB image or raise; the bomb guard itself stays on (DecompressionBombError
        # above 2x the limit is an error, not a warning).
        warnings.filterwarnings("ignore", module=r"PIL\.")
        return _open_pillow(path, min_shorter, max_aspect, formats)


def _open_pillow(path: Path, min_shorter: int | None, max_aspect: float | None, formats: tuple[str, ...]) -> Decoded:
    with Image.open(path, formats=list(formats)) as img:
        _check_aspect(img.size)  # from the header, before a single pixel is decoded
        stored = img.size  # before draft mode reduces it
        _draft(img, min_shorter)
        img.seek(0)  # first frame of GIF / multi-page TIFF
        img.load()
        # The orientation exif_transpose applies (read as it reads it; HEIF files come upright, tag 1).
        size = _upright(stored, img.getexif().get(0x0112, 1))
        img = ImageOps.exif_transpose(img)
        return Decoded(to_rgb(_crop_aspect(img, max_aspect)), size)


def _register_heif() -> None:
    try:
        import pillow_heif
    except ImportError:
        raise ImportError(_HEIF_MISSING) from None
    # Idempotent; pillow-heif applies the HEIF transforms itself and resets EXIF Orientation to 1,
    # so the exif_transpose in _decode_pillow cannot rotate twice.
    pillow_heif.register_heif_opener()


# LibRaw's ``sizes.flip`` -> the PIL transpose that makes the (unrotated) preview upright.
_RAW_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def _decode_raw(path: Path, min_shorter: int | None, max_aspect: float | None) -> Decoded:
    """The camera's embedded JPEG preview (cheap, and what the photographer saw), upright RGB.

    Falls back to a half-size demosaic when the file carries no usable preview.
    """
    try:
        import rawpy
    except ImportError:
        raise ImportError(_RAW_MISSING) from None
    try:
        with rawpy.imread(str(path)) as raw:
            flip = raw.sizes.flip
            _check_aspect((raw.sizes.width, raw.sizes.height))
            try:
                thumb = raw.extract_thumb()
            except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
                thumb = None
            if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG:
                with Image.open(io.BytesIO(thumb.data), formats=["JPEG"]) as img:
                    _check_aspect(img.size)
                    size = img.size
                    _draft(img, min_shorter)
                    img.load()
                    exif_orientation = img.getexif().get(0x0112, 1)
                    size = _upright(size, exif_orientation)
                    img = ImageOps.exif_transpose(img)
                    if exif_orientation != 1:
                        flip = 0  # the preview carried its own orientation; do not rotate twice
                    img = to_rgb(img)
            elif thumb is not None and thumb.format == rawpy.ThumbFormat.BITMAP:
                img = Image.fromarray(thumb.data).convert("RGB")
                size = img.size
            else:
                img = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
                size = _upright((raw.sizes.width, raw.sizes.height), 6 if raw.sizes.flip in (5, 6) else 1)
                flip = 0  # postprocess already applies the orientation
    except rawpy.LibRawError as err:
        raise OSError(f"camera RAW: {type(err).__name__}: {err}") from None
    if flip in _RAW_FLIP:
        img = img.transpose(_RAW_FLIP[flip])
        size = _upright(size, 6 if flip in (5, 6) else 1)
    return Decoded(_crop_aspect(img, max_aspect), size)


# Operating-system errors that say nothing about the file's bytes: they may go away by themselves.
_PASSING_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EIO, errno.ENOMEM, errno.EAGAIN, errno.EINTR,
                             errno.EMFILE, errno.ENFILE, errno.ESTALE, errno.ETIMEDOUT, errno.ENOENT, errno.EBUSY})


def load_rgb(path: str | Path, min_shorter: int | None = None, max_aspect: float | None = None) -> Image.Image:
    """Decode ``path`` to an upright RGB image (:func:`decode_rgb`'s image)."""
    return decode_rgb(path, min_shorter, max_aspect).image


def decode_rgb(path: str | Path, min_shorter: int | None = None, max_aspect: float | None = None) -> Decoded:
    """Decode ``path`` to an upright RGB image, and the upright photo's own size (:class:`Decoded`).

    ``min_shorter``: if given, JPEGs are decoded at a reduced size with Pillow's draft mode
    (DCT-domain scaling by 1/2, 1/4 or 1/8) while keeping the shorter edge >= ``min_shorter``
    pixels after EXIF orientation — far cheaper than a full decode followed by a resize.
    ``max_aspect``: if given, the long edge of the upright image is centre-cropped to
    ``round(shorter edge * max_aspect)`` pixels before anything else is done with it, so a
    following "resize the shorter edge" step costs memory in proportion to its output
    (crop-then-resize is the same as the eval recipe's resize-then-centre-crop up to a pixel of
    rounding).
    Files whose long edge exceeds :data:`MAX_ASPECT_RATIO` times the short edge are refused.
    Only the formats aescore supports are recognised (:data:`PILLOW_FORMATS`, plus HEIF for
    ``.heic``/``.heif``/``.hif``), whatever the extension says.
    HEIC/HEIF needs the ``heif`` extra and camera RAW (embedded preview) the ``raw`` extra; without
    them the error names the extra to install.
    Raises ImageDecodeError for missing, empty, truncated, non-image, unsupported or
    decompression-bomb files; its ``lasting`` attribute tells whether the failure is a property
    of the file's bytes (see :func:`is_lasting_failure`).
    """
    path = Path(path)
    ext = path.suffix.lower()
    failure: Exception
    with _capture_c_stderr() as c_messages:
        try:
            if ext in RAW_EXTENSIONS:
                return _decode_raw(path, min_shorter, max_aspect)
            formats: tuple[str, ...] = PILLOW_FORMATS
            if ext in HEIF_EXTENSIONS:
                _register_heif()
                formats = PILLOW_FORMATS + HEIF_FORMATS
            return _decode_pillow(path, min_shorter, max_aspect, formats)
        except Exception as err:  # noqa: BLE001 - classified once fd 2 is back and the C text is known
            failure = err
    raise _classify(path, failure, c_messages.text) from None


def _classify(path: Path, err: Exception, c_text: str) -> Exception:
    """The ImageDecodeError for a decode exception (or the exception itself when it is not one).

    ``c_text``: what C libraries printed meanwhile, added to the reason of a decode error.
    """
    detail = f"; {c_text}" if c_text else ""
    if isinstance(err, ImageDecodeError):
        return err
    if isinstance(err, MemoryError):
        return ImageDecodeError(path, "out of memory while decoding", lasting=False)
    if isinstance(err, ImportError):
        return ImageDecodeError(path, str(err), lasting=False)
    if isinstance(err, FileNotFoundError):
        return ImageDecodeError(path, "file not found", lasting=False)
    if isinstance(err, IsADirectoryError):
        return ImageDecodeError(path, "is a directory", lasting=False)
    if isinstance(err, _Refused):
        return ImageDecodeError(path, str(err))
    if isinstance(err, Image.DecompressionBombError):
        return ImageDecodeError(path, "image too large (decompression-bomb guard)")
    if isinstance(err, Image.UnidentifiedImageError):
        try:
            empty = path.stat().st_size == 0
        except OSError:
            empty = False
        return ImageDecodeError(path, "empty file" if empty else "not a recognised image")
    if isinstance(err, OSError) and err.errno in _PASSING_ERRNOS:
        # "[Errno N]" kept in the text: older callers told passing failures apart by it.
        return ImageDecodeError(path, f"cannot read ([Errno {err.errno}] {err.strerror})", lasting=False)
    if isinstance(err, (OSError, SyntaxError, ValueError)):
        return ImageDecodeError(path, f"cannot decode ({err}{detail})")
    return err


def is_lasting_failure(err: BaseException) -> bool:
    """Whether a decode failure will recur for the same file bytes and decoder, so it may be
    recorded in the score cache's failure table.

    True only for an :class:`ImageDecodeError` whose ``lasting`` is set (corrupt, empty,
    unsupported, refused files). False for everything else: a vanished file, permissions, I/O
    errors, memory, a missing extra, and any other exception — e.g. a ZeroDivisionError from a
    broken preprocessing recipe, which says nothing about the file.
    """
    return isinstance(err, ImageDecodeError) and err.lasting
