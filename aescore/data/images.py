"""Robust image decoding shared by training, evaluation and scoring.

Photos from real libraries come in every Pillow mode and orientation; everything that leaves this
module is an upright 8-bit RGB ``PIL.Image`` or an :class:`~aescore.errors.ImageDecodeError`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from aescore.errors import ImageDecodeError

# Extensions Pillow decodes without extras. GIF scores its first frame.
PILLOW_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
# HEIC/HEIF through pillow-heif (the ``heif`` extra).
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
# Camera RAW through rawpy's embedded-preview extraction (the ``raw`` extra).
RAW_EXTENSIONS = frozenset({".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"})

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


def _draft(img: Image.Image, min_shorter: int | None) -> None:
    """Ask a JPEG decoder for the smallest DCT scale whose shorter edge stays >= ``min_shorter``."""
    if min_shorter is not None and img.format == "JPEG":
        w, h = img.size
        scale = min(w, h) / float(min_shorter)
        if scale >= 2:
            img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))


def _decode_pillow(path: Path, min_shorter: int | None) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns (two stray stderr lines per photo, without its name) about things it then
        # handles: corrupt EXIF blocks, palette transparency, and sizes between 1x and 2x
        # Image.MAX_IMAGE_PIXELS (~90-180 MP, e.g. a 102 MP medium-format camera). Either we
        # return a correct RGB image or raise; the bomb guard itself stays on (DecompressionBombError
        # above 2x the limit is an error, not a warning).
        warnings.filterwarnings("ignore", module=r"PIL\.")
        return _open_pillow(path, min_shorter)


def _open_pillow(path: Path, min_shorter: int | None) -> Image.Image:
    with Image.open(path) as img:
        _draft(img, min_shorter)
        img.seek(0)  # first frame of GIF / multi-page TIFF
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


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


def _decode_raw(path: Path, min_shorter: int | None) -> Image.Image:
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
            try:
                thumb = raw.extract_thumb()
            except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
                thumb = None
            if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG:
                with Image.open(io.BytesIO(thumb.data)) as img:
                    _draft(img, min_shorter)
                    img.load()
                    exif_orientation = img.getexif().get(0x0112, 1)
                    img = ImageOps.exif_transpose(img)
                    if exif_orientation != 1:
                        flip = 0  # the preview carried its own orientation; do not rotate twice
                    img = to_rgb(img)
            elif thumb is not None and thumb.format == rawpy.ThumbFormat.BITMAP:
                img = Image.fromarray(thumb.data).convert("RGB")
            else:
                img = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
                flip = 0  # postprocess already applies the orientation
    except rawpy.LibRawError as err:
        raise OSError(f"camera RAW: {type(err).__name__}: {err}") from None
    if flip in _RAW_FLIP:
        img = img.transpose(_RAW_FLIP[flip])
    return img


def load_rgb(path: str | Path, min_shorter: int | None = None) -> Image.Image:
    """Decode ``path`` to an upright RGB image.

    ``min_shorter``: if given, JPEGs are decoded at a reduced size with Pillow's draft mode
    (DCT-domain scaling by 1/2, 1/4 or 1/8) while keeping the shorter edge >= ``min_shorter``
    pixels after EXIF orientation — far cheaper than a full decode followed by a resize.
    HEIC/HEIF needs the ``heif`` extra and camera RAW (embedded preview) the ``raw`` extra; without
    them the error names the extra to install.
    Raises ImageDecodeError for missing, empty, truncated, non-image or decompression-bomb files.
    """
    path = Path(path)
    ext = path.suffix.lower()
    try:
        if ext in RAW_EXTENSIONS:
            return _decode_raw(path, min_shorter)
        if ext in HEIF_EXTENSIONS:
            _register_heif()
        return _decode_pillow(path, min_shorter)
    except ImportError as err:
        raise ImageDecodeError(path, str(err)) from None
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory") from None
    except Image.DecompressionBombError:
        raise ImageDecodeError(path, "image too large (decompression-bomb guard)") from None
    except Image.UnidentifiedImageError:
        try:
            empty = path.stat().st_size == 0
        except OSError:
            empty = False
        raise ImageDecodeError(path, "empty file" if empty else "not a recognised image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(path, f"cannot decode ({err})") from None
