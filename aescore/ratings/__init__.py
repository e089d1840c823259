"""The photographer's own ratings, read from where they already live — never written.

Sources, in order of precedence when several rate the same file (the first with a rating wins):

1. ``--ratings FILE.csv`` (``path,rating``),
2. a Lightroom Classic catalog (``.lrcat``),
3. a digiKam database (``digikam4.db``),
4. an XMP sidecar: darktable-style ``IMG_1.JPG.xmp`` (one file) before Lightroom-style
   ``IMG_1.xmp`` (shared by a raw + JPEG pair, which both get its rating),
5. XMP embedded in the photo (JPEG, TIFF/DNG, PNG, WebP; HEIC/CR3 best effort).

Scale: -1 = rejected, 1..5 stars, and 0 = zero stars where the source distinguishes it from
"unrated" (digiKam, CSV); XMP's 0 and Lightroom's NULL/0 mean unrated. Unrated photos are left
out: they are not negatives. A rating that aescore set itself from its own stars and nobody changed
since (``--write-xmp`` records it as ``aescore:Rating``;
:func:`aescore.inference.xmp.rating_set_by_aescore` is the rule) is excluded unless
``include_aescore`` — learning from our own output would be circular. Every other rating is the
user's: one aescore did not set (kept by ``--write-xmp``), one changed afterwards, and a decision
written by ``aescore apply``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence

from aescore.ratings.catalogs import csv_ratings, digikam_ratings, lightroom_ratings
from aescore.ratings.embedded import embedded_xmp
from aescore.ratings.xmp import MAX_PACKET_BYTES, XmpReadError, parse_packet, read_regular_file, sidecar_candidates

__all__ = ["Rating", "RatingSource", "RatingsReport", "collect_ratings", "parse_packet"]


class RatingSource(str, Enum):
    """Where a rating was read."""

    CSV = "csv"
    LIGHTROOM = "lightroom"
    DIGIKAM = "digikam"
    SIDECAR = "sidecar"
    EMBEDDED = "embedded"


@dataclass(frozen=True)
class Rating:
    """One photo's rating: ``path`` (as discovered, or as the source names it), -1..5, and its
    source; ``by_aescore`` for a rating aescore set itself, used only with ``include_aescore``."""

    path: str
    rating: int
    source: RatingSource
    by_aescore: bool = False


@dataclass
class RatingsReport:
    """What :func:`collect_ratings` found.

    ``ratings``: one per rated photo. ``missing``: files a catalog/database/CSV rates that do not
    exist (or are not regular files). ``unreadable``: ``(file, reason)`` for sidecars or photos whose
    XMP could not be read. ``by_aescore``: ratings left out because aescore set them itself and
    nobody changed them (:attr:`by_user` counts the user's ratings used).
    ``unrated_photos``: photos given that carry no rating at all (``unrated`` counts them); a
    caller that finds some of them are not readable photos drops them with :meth:`drop_unrated`.
    """

    ratings: list[Rating] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    by_aescore: int = 0
    unrated_photos: list[str] = field(default_factory=list)

    @property
    def unrated(self) -> int:
        """Number of photos given that carry no rating (left out: unrated is not a negative)."""
        return len(self.unrated_photos)

    @property
    def by_user(self) -> int:
        """Number of ratings used that are the user's (all but those aescore set, which only
        ``include_aescore`` uses)."""
        return sum(not r.by_aescore for r in self.ratings)

    @property
    def aescore_used(self) -> int:
        """Number of ratings used that aescore set itself (only with ``include_aescore``)."""
        return len(self.ratings) - self.by_user

    def drop_unrated(self, paths: Iterable[str]) -> None:
        """Stop counting ``paths`` as unrated (e.g. files that turned out not to be readable photos)."""
        gone = set(paths)
        self.unrated_photos = [p for p in self.unrated_photos if p not in gone]

    def per_source(self) -> dict[RatingSource, int]:
        """Number of ratings used from each source (sources with none left out)."""
        counts = Counter(r.source for r in self.ratings)
        return {s: counts[s] for s in RatingSource if counts[s]}

    def per_rating(self) -> dict[int, int]:
        """Number of photos per rating value, ascending."""
        counts = Counter(r.rating for r in self.ratings)
        return dict(sorted(counts.items()))


class _FolderIndex:
    """Names present in each folder (one ``listdir`` per folder, not four ``stat`` per photo)."""

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}

    def exists(self, path: str) -> bool:
        folder, name = os.path.split(path)
        if folder not in self._names:
            try:
                self._names[folder] = set(os.listdir(folder or "."))
            except OSError:
                self._names[folder] = set()
        return name in self._names[folder]


def _xmp_rating(photo: str, index: _FolderIndex, include_aescore: bool, report: RatingsReport) -> Rating | None:
    """The rating of ``photo`` from its sidecars, then its embedded XMP (see the module docstring)."""
    for sidecar in sidecar_candidates(photo):
        if not index.exists(str(sidecar)):
            continue
        try:
            found = parse_packet(read_regular_file(sidecar, MAX_PACKET_BYTES))
        except (OSError, XmpReadError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            if (str(sidecar), reason) not in report.unreadable:  # a shared sidecar is reported once
                report.unreadable.append((str(sidecar), reason))
            continue
        if found.rating is None:
            continue
        if found.by_aescore and not include_aescore:
            report.by_aescore += 1
            continue
        return Rating(photo, found.rating, RatingSource.SIDECAR, found.by_aescore)
    try:
        fd = os.open(photo, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            import stat

            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            packet = embedded_xmp(fh, os.path.splitext(photo)[1])
        if packet is None:
            return None
        found = parse_packet(packet)
    except (OSError, XmpReadError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        report.unreadable.append((photo, f"embedded XMP: {reason}"))
        return None
    if found.rating is None:
        return None
    if found.by_aescore and not include_aescore:
        report.by_aescore += 1
        return None
    return Rating(photo, found.rating, RatingSource.EMBEDDED, found.by_aescore)


def _real(path: str) -> str:
    """``os.path.realpath(path)``, or ``path`` itself when no file can have that name (a NUL
    byte in a catalog or CSV entry): it then matches no photo and counts as missing."""
    try:
        return os.path.realpath(path)
    except ValueError:
        return path


def collect_ratings(
    photos: Sequence[str],
    *,
    ratings_csv: str | os.PathLike[str] | None = None,
    catalog: str | os.PathLike[str] | None = None,
    digikam_db: str | os.PathLike[str] | None = None,
    read_xmp: bool = True,
    include_aescore: bool = False,
) -> RatingsReport:
    """Ratings for ``photos`` from every source given (precedence in the module docstring).

    ``photos``: paths of photo files (e.g. from :func:`aescore.inference.discover.discover`).
    Catalog, database and CSV entries are matched to them by resolved path; when ``photos`` is
    empty, every photo those sources rate is taken instead, and the ones not on disk are counted
    in ``missing``. ``read_xmp``: look at sidecars and embedded XMP. Reads only; raises
    :class:`~aescore.errors.DataError` for a catalog, database or CSV file that cannot be used.
    """
    external: list[tuple[RatingSource, Iterable[tuple[str, int]]]] = []
    if ratings_csv is not None:
        external.append((RatingSource.CSV, csv_ratings(ratings_csv)))
    if catalog is not None:
        external.append((RatingSource.LIGHTROOM, lightroom_ratings(catalog)))
    if digikam_db is not None:
        external.append((RatingSource.DIGIKAM, digikam_ratings(digikam_db)))

    report = RatingsReport()
    # resolved path -> (path as the source wrote it, rating, source); earlier sources win
    by_real: dict[str, tuple[str, int, RatingSource]] = {}
    for source, rows in external:
        for path, rating in rows:
            by_real.setdefault(_real(path), (path, rating, source))

    if not photos:
        import stat

        for real, (path, rating, source) in by_real.items():
            try:
                ok = stat.S_ISREG(os.stat(real).st_mode)
            except (OSError, ValueError):  # ValueError: a NUL byte, no file has such a name
                ok = False
            if ok:
                report.ratings.append(Rating(path, rating, source))
            else:
                report.missing.append(path)
        return report

    index = _FolderIndex()
    for photo in photos:
        hit = by_real.get(_real(photo)) if by_real else None
        if hit is not None:
            report.ratings.append(Rating(photo, hit[1], hit[2]))
            continue
        found = _xmp_rating(photo, index, include_aescore, report) if read_xmp else None
        if found is None:
            report.unrated_photos.append(photo)
        else:
            report.ratings.append(found)
    return report
