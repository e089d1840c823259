"""Find the XMP packet embedded in a photo file, reading as little of it as the format allows.

* JPEG: the APP1 segment starting ``http://ns.adobe.com/xap/1.0/\\0`` (segments before the image data).
* TIFF, DNG and TIFF-based raws (CR2, NEF, ARW): tag 700 (``XMLPacket``) of the first IFD.
* PNG: the ``iTXt`` chunk with keyword ``XML:com.adobe.xmp`` (possibly zlib-compressed).
* WebP: the RIFF chunk ``XMP ``.
* HEIC/HEIF and other ISO-BMFF raws (CR3): best effort, a scan of the first
  :data:`SCAN_BYTES` for the ``<x:xmpmeta`` ... ``</x:xmpmeta>`` packet.

Every reader takes an open binary file, seeks and reads bounded amounts, and returns the packet
bytes or None; malformed structure gives None, never an exception other than OSError.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, Callable

from aescore.ratings.xmp import MAX_PACKET_BYTES

#: How far into a HEIC/CR3 file the packet scan looks (the metadata sits near the start).
SCAN_BYTES = 4 * 1024 * 1024

_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_KEY = b"XML:com.adobe.xmp"


def jpeg_xmp(fh: BinaryIO) -> bytes | None:
    """The XMP packet of a JPEG's APP1 segment, or None."""
    if fh.read(2) != b"\xff\xd8":
        return None
    while True:
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        while code == 0xFF:  # fill bytes before a marker
            nxt = fh.read(1)
            if not nxt:
                return None
            code = nxt[0]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
            continue  # markers without a length
        if code in (0xDA, 0xD9):
            return None  # start of scan / end of image: metadata segments are over
        raw = fh.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0] - 2
        if length < 0:
            return None
        if code == 0xE1 and length >= len(_JPEG_XMP):
            head = fh.read(len(_JPEG_XMP))
            if head == _JPEG_XMP:
                return fh.read(length - len(_JPEG_XMP))
            fh.seek(length - len(head), 1)
        else:
            fh.seek(length, 1)


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 7: 1}  # BYTE, ASCII, UNDEFINED: what tag 700 is stored as


def tiff_xmp(fh: BinaryIO) -> bytes | None:
    """Tag 700 (XMLPacket) of a TIFF's first IFD (also DNG and TIFF-based raws), or None."""
    head = fh.read(8)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return None
    order = "<" if head[:2] == b"II" else ">"
    magic, ifd = struct.unpack(order + "HI", head[2:8])
    if magic != 42:
        return None  # BigTIFF (43) and ORF/RW2 variants: not handled
    fh.seek(ifd)
    raw = fh.read(2)
    if len(raw) < 2:
        return None
    count = struct.unpack(order + "H", raw)[0]
    entries = fh.read(12 * count)
    for k in range(len(entries) // 12):
        tag, typ, n, value = struct.unpack(order + "HHI4s", entries[12 * k : 12 * k + 12])
        if tag != 700:
            continue
        size = _TIFF_TYPE_SIZES.get(typ)
        if size is None or n * size > MAX_PACKET_BYTES:
            return None
        if n <= 4:
            return value[:n]
        fh.seek(struct.unpack(order + "I", value)[0])
        return fh.read(n)
    return None


def png_xmp(fh: BinaryIO) -> bytes | None:
    """The text of a PNG's ``iTXt`` chunk keyed ``XML:com.adobe.xmp``, or None."""
    if fh.read(8) != _PNG_SIG:
        return None
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return None
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            return None
        if kind != b"iTXt" or length > MAX_PACKET_BYTES:
            fh.seek(length + 4, 1)  # data + CRC
            continue
        data = fh.read(length)
        fh.seek(4, 1)
        key, sep, rest = data.partition(b"\x00")
        if not sep or key != _PNG_KEY or len(rest) < 2:
            continue
        compressed = rest[0] == 1
        # language tag \0 translated keyword \0 text
        parts = rest[2:].split(b"\x00", 2)
        if len(parts) < 3:
            return None
        text = parts[2]
        if compressed:
            try:
                inflater = zlib.decompressobj()
                text = inflater.decompress(text, MAX_PACKET_BYTES)
            except zlib.error:
                return None
        return text


def webp_xmp(fh: BinaryIO) -> bytes | None:
    """The ``XMP `` chunk of a WebP (RIFF) file, or None."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        kind, size = struct.unpack("<4sI", chunk)
        if kind == b"XMP ":
            return fh.read(size) if size <= MAX_PACKET_BYTES else None
        fh.seek(size + (size & 1), 1)  # chunks are padded to even sizes


def scan_xmp(fh: BinaryIO) -> bytes | None:
    """Best effort for containers not parsed here (HEIC, CR3): the first ``x:xmpmeta`` packet in
    the first :data:`SCAN_BYTES` bytes, or None."""
    data = fh.read(SCAN_BYTES)
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    if end < 0:
        return None
    return data[start : end + len(b"</x:xmpmeta>")]


_BY_EXTENSION: dict[str, Callable[[BinaryIO], bytes | None]] = {
    **{ext: jpeg_xmp for ext in (".jpg", ".jpeg", ".jpe")},
    **{ext: tiff_xmp for ext in (".tif", ".tiff", ".dng", ".cr2", ".nef", ".arw")},
    ".png": png_xmp,
    ".webp": webp_xmp,
    **{ext: scan_xmp for ext in (".heic", ".heif", ".hif", ".cr3", ".raf", ".orf", ".rw2")},
}


def embedded_xmp(fh: BinaryIO, extension: str) -> bytes | None:
    """The XMP packet embedded in an open photo file of type ``extension`` (``.jpg``...), or None.

    Malformed structure gives None; only OSError propagates."""
    reader = _BY_EXTENSION.get(extension.lower())
    if reader is None:
        return None
    try:
        return reader(fh)
    except (struct.error, ValueError, OverflowError):
        return None
