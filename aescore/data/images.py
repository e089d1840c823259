"""Robust image decoding shared by training, evaluation and scoring.

Photos from real libraries come in every Pillow mode and orientation; everything that leaves this
module is an upright 8-bit RGB ``PIL.Image`` or an :class:`~aescore.errors.ImageDecodeError`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from aescore.errors import ImageDecodeError

# Extensions Pillow decodes without extras. GIF scores its first frame.
PILLOW_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})


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


def load_rgb(path: str | Path, min_shorter: int | None = None) -> Image.Image:
    """Decode ``path`` to an upright RGB image.

    ``min_shorter``: if given, JPEGs are decoded at a reduced size with Pillow's draft mode
    (DCT-domain scaling by 1/2, 1/4 or 1/8) while keeping the shorter edge >= ``min_shorter``
    pixels after EXIF orientation — far cheaper than a full decode followed by a resize.
    Raises ImageDecodeError for missing, empty, truncated, non-image or decompression-bomb files.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if min_shorter is not None and img.format == "JPEG":
                w, h = img.size
                scale = min(w, h) / float(min_shorter)
                if scale >= 2:
                    img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
            img.seek(0)  # first frame of GIF / multi-page TIFF
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory") from None
    except Image.DecompressionBombError:
        raise ImageDecodeError(path, "image too large (decompression-bomb guard)") from None
    except Image.UnidentifiedImageError:
        reason = "empty file" if path.stat().st_size == 0 else "not a recognised image"
        raise ImageDecodeError(path, reason) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(path, f"cannot decode ({err})") from None
