"""Report thumbnails: small JPEGs made from an image that is already decoded.

The scorer decodes every photo once; the report's thumbnail is cut from that decode (a reduced
copy, never a second read of the file). 512 px on the long edge at JPEG quality 80 is about
11-56 kB for camera-size photos (median ~23 kB for the 12 samples enlarged 8x);
:data:`MAX_THUMBNAIL_BYTES` is the hard cap behind the page's promise (under 60 kB per photo, so
1,000 photos in under 60 MB), reached by lowering the quality, then the size.
"""

from __future__ import annotations

import io

from PIL import Image

__all__ = ["MAX_THUMBNAIL_BYTES", "THUMBNAIL_EDGE", "is_jpeg", "make_thumbnail", "thumbnail_size"]

THUMBNAIL_EDGE = 512
"""Long edge of a report thumbnail, in pixels."""

MAX_THUMBNAIL_BYTES = 58_000
"""At most this many bytes per thumbnail: with the photo's ~1 kB in the page, under 60 kB per photo."""

_QUALITIES = (80, 70, 60, 50, 40)


def is_jpeg(data: bytes) -> bool:
    """Whether ``data`` starts like a JPEG file (SOI marker followed by another marker)."""
    return data[:3] == b"\xff\xd8\xff"


def make_thumbnail(image: Image.Image, edge: int = THUMBNAIL_EDGE, max_bytes: int = MAX_THUMBNAIL_BYTES) -> bytes:
    """JPEG bytes of ``image`` reduced to ``edge`` px on its long edge (never enlarged), at most ``max_bytes``.

    ``image`` is not modified (the thumbnail is made from a copy); it should already be upright
    (EXIF orientation applied), as the scorer's decode is. Transparency is flattened onto white.
    """
    img = image
    if img.mode not in ("RGB", "L"):
        if "A" in img.getbands() or img.mode == "P":
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size, (255, 255, 255))
            img.paste(rgba, mask=rgba.getchannel("A"))
        else:
            img = img.convert("RGB")
    scale = min(1.0, edge / max(img.size))
    while True:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        small = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0) if size != img.size else img.copy()
        for quality in _QUALITIES:
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        scale *= 0.75  # even quality 40 is too big (very detailed photo): shrink and retry


def thumbnail_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header (nothing decoded), or None if there is none.

    Walks the marker segments to the first start-of-frame (SOF0-15 except DHT/JPG/DAC); about
    100x faster than opening the file with Pillow, which matters for 5,000 thumbnails.
    """
    if not is_jpeg(data):
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return (width, height) if width and height else None
        if marker == 0xDA:  # start of scan before any frame header: not a usable JPEG
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None
