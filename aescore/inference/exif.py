"""Read the few EXIF fields that culling needs: capture time, camera, lens and exposure.

Uses exifread with ``details=False`` (no MakerNotes) and no thumbnail extraction, and stops after
``LensModel`` (the last tag we want in the EXIF IFD, whose tags are stored in ascending order), so
reading one photo costs a few small reads. Bad or missing EXIF never raises: it gives an empty
:class:`ExifInfo`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

__all__ = ["ExifInfo", "read_exif", "capture_timestamp", "parse_exif_datetime", "format_exposure"]

# exifread logs "File format not recognized" etc. at WARNING for every photo without EXIF; with no
# handler configured that would reach stderr through logging's last-resort handler and drown the
# CLI's output. Quieten it unless the user configured the logger themselves.
_exif_logger = logging.getLogger("exifread")
if _exif_logger.level == logging.NOTSET:
    _exif_logger.setLevel(logging.ERROR)

# (datetime tag, sub-second tag, UTC-offset tag), in order of preference.
_TIME_TAGS: tuple[tuple[str, str, str], ...] = (
    ("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal"),
    ("EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "EXIF OffsetTimeDigitized"),
    ("Image DateTime", "EXIF SubSecTime", "EXIF OffsetTime"),
)
_DT_RE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


@dataclass(frozen=True)
class ExifInfo:
    """EXIF facts about one photo; every field is ``None`` when absent or unreadable.

    ``capture_time`` is timezone-aware when the file records an offset (``OffsetTimeOriginal``),
    otherwise naive (camera-local wall-clock time).
    """

    capture_time: datetime | None = None
    camera: str | None = None
    lens: str | None = None
    exposure: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """JSON-friendly form (capture time as ISO 8601)."""
        return {
            "capture_time": self.capture_time.isoformat() if self.capture_time else None,
            "camera": self.camera,
            "lens": self.lens,
            "exposure": self.exposure,
        }


def _text(tags: dict[str, Any], name: str) -> str | None:
    """The tag's printable text, stripped of padding NULs/spaces, or None when empty.

    Text stored as bytes (type BYTE or UNDEFINED, which exifread gives as a list of numbers, or
    ASCII that is not valid UTF-8, which it gives as ``bytes``) is decoded as UTF-8, undecodable
    bytes shown as U+FFFD: a camera name, never ``[67, 97, ...]`` or ``b'...'``. Control
    characters are kept here and escaped where the text is printed (:mod:`aescore.termtext`).
    """
    tag = tags.get(name)
    if tag is None:
        return None
    values = getattr(tag, "values", tag)
    if isinstance(values, list) and values and all(isinstance(v, int) and 0 <= v <= 255 for v in values):
        values = bytes(values)
    if isinstance(values, (bytes, bytearray)):
        text = bytes(values).decode("utf-8", errors="replace")
    else:
        text = values if isinstance(values, str) else str(tag)
    text = text.replace("\x00", "").strip()
    return text or None


def _number(tags: dict[str, Any], name: str) -> Fraction | None:
    """The tag's first numeric value as an exact fraction, or None."""
    tag = tags.get(name)
    if tag is None:
        return None
    values = getattr(tag, "values", None)
    if isinstance(values, (list, tuple)) and values:
        value = values[0]
    else:
        value = values
    try:
        # exifread's Ratio is a Fraction subclass; a zero denominator leaves it unusable.
        frac = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return frac


def parse_exif_datetime(
    value: str | None, subsec: str | None = None, offset: str | None = None
) -> datetime | None:
    """Parse an EXIF ``YYYY:MM:DD HH:MM:SS`` string plus optional sub-seconds and UTC offset.

    Returns None for blank or placeholder values (``0000:00:00 00:00:00``, spaces) and for
    impossible dates, instead of raising.
    """
    if not value:
        return None
    match = _DT_RE.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    try:
        dt = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if subsec:
        digits = re.sub(r"\D", "", subsec)[:6]
        if digits:
            dt = dt.replace(microsecond=int(digits.ljust(6, "0")))
    if offset:
        om = _OFFSET_RE.match(offset)
        if om:
            sign = -1 if om.group(1) == "-" else 1
            delta = timedelta(hours=int(om.group(2)), minutes=int(om.group(3)))
            if delta < timedelta(hours=24):
                dt = dt.replace(tzinfo=timezone(sign * delta))
    return dt


def _fmt_num(value: Fraction, places: int = 1) -> str:
    """Compact decimal: 2.8 -> '2.8', 8 -> '8', 35.0 -> '35'."""
    text = f"{float(value):.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_exposure(
    exposure_time: Fraction | None,
    f_number: Fraction | None,
    iso: Fraction | None,
    focal_length: Fraction | None,
) -> str | None:
    """Format like ``1/250 s f/2.8 ISO 200 35 mm``; missing parts are left out (None if all are)."""
    parts: list[str] = []
    if exposure_time is not None and exposure_time > 0:
        if exposure_time < 1:
            parts.append(f"1/{round(1 / exposure_time)} s")
        else:
            parts.append(f"{_fmt_num(exposure_time)} s")
    if f_number is not None and f_number > 0:
        parts.append(f"f/{_fmt_num(f_number)}")
    if iso is not None and iso > 0:
        parts.append(f"ISO {int(iso)}")
    if focal_length is not None and focal_length > 0:
        parts.append(f"{_fmt_num(focal_length)} mm")
    return " ".join(parts) or None


def _camera(make: str | None, model: str | None) -> str | None:
    """``Make Model`` without repeating the maker ("Canon Canon EOS 5D" -> "Canon EOS 5D").

    Makers often repeat themselves in Model, sometimes in another form ("NIKON CORPORATION" /
    "NIKON D750"), so the first word of Make is what we look for.
    """
    if not model:
        return make
    if not make:
        return model
    first = make.split()[0].lower()
    if model.lower().startswith(first):
        return model
    return f"{make} {model}"


def read_exif(path: str | os.PathLike[str]) -> ExifInfo:
    """Read capture time, camera, lens and exposure from ``path``; never raises on bad EXIF.

    Capture time comes from DateTimeOriginal, else DateTimeDigitized, else DateTime, each with its
    sub-second and UTC-offset companion tags when present. Files that cannot be opened or carry no
    (or corrupt) EXIF give an empty :class:`ExifInfo`.
    """
    import exifread

    try:
        with open(path, "rb") as fh:
            tags = exifread.process_file(
                fh, stop_tag="LensModel", details=False, extract_thumbnail=False
            )
    except Exception:  # noqa: BLE001 — exifread raises many kinds of error on odd files
        return ExifInfo()
    if not tags:
        return ExifInfo()
    try:
        capture: datetime | None = None
        for dt_tag, sub_tag, off_tag in _TIME_TAGS:
            capture = parse_exif_datetime(
                _text(tags, dt_tag), _text(tags, sub_tag), _text(tags, off_tag)
            )
            if capture is not None:
                break
        iso = _number(tags, "EXIF ISOSpeedRatings")
        if iso is None:
            iso = _number(tags, "EXIF PhotographicSensitivity")
        return ExifInfo(
            capture_time=capture,
            camera=_camera(_text(tags, "Image Make"), _text(tags, "Image Model")),
            lens=_text(tags, "EXIF LensModel"),
            exposure=format_exposure(
                _number(tags, "EXIF ExposureTime"),
                _number(tags, "EXIF FNumber"),
                iso,
                _number(tags, "EXIF FocalLength"),
            ),
        )
    except Exception:  # noqa: BLE001 — malformed values must not stop a culling run
        return ExifInfo()


def capture_timestamp(path: str | os.PathLike[str], info: ExifInfo | None = None) -> float:
    """Capture time as POSIX seconds: EXIF capture time when known, else the file's mtime.

    A naive EXIF time (no offset tag) is interpreted as this machine's local time, the same way
    for every photo of a run, so time gaps between photos of one camera are right. ``info`` is
    read from ``path`` when not given. Raises OSError only if the file cannot be stat'ed.
    """
    if info is None:
        info = read_exif(path)
    if info.capture_time is not None:
        try:
            return info.capture_time.timestamp()
        except (OverflowError, OSError, ValueError):
            pass  # dates outside the platform's range: fall back to mtime
    return Path(path).stat().st_mtime
