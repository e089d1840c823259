"""Read the photographer's ``xmp:Rating`` from an XMP packet (sidecar or embedded).

Parsing is defusedxml's ElementTree with DTDs, entities and external references refused (the C
parser: about 7x faster than the minidom that :mod:`aescore.inference.xmp` needs for editing in
place, which matters when a library has tens of thousands of sidecars). A property is found as
an attribute or a child element of any ``rdf:Description``, as the writer looks for it, and its
value must be a whole number (:func:`aescore.ratings.values.whole_rating`, the rule every rating
source shares). Nothing here writes a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aescore import fsutil
# sidecar_candidates: the sidecar names, one place for the reader and the writer.
from aescore.inference.xmp import (
    AESCORE_NS,
    RDF_NS,
    X_NS,
    XMP_NS,
    rating_set_by_aescore,
    sidecar_candidates,
    whole_rating,
)

__all__ = ["MAX_PACKET_BYTES", "XmpRating", "XmpReadError", "parse_packet", "read_regular_file", "sidecar_candidates"]

#: Largest XMP packet read (sidecars are a few KB; Lightroom's with develop history rarely 1 MB).
MAX_PACKET_BYTES = 8 * 1024 * 1024


class XmpReadError(ValueError):
    """A packet that cannot be read as XMP (the message says why, without the path)."""


@dataclass(frozen=True)
class XmpRating:
    """What one XMP packet says: ``rating`` (-1..5, or None when unrated or absent) and whether
    aescore set it itself and nobody changed it since
    (:func:`aescore.inference.xmp.rating_set_by_aescore`: ``aescore:Rating`` still equal to
    ``xmp:Rating``, or an older aescore's packet it cannot tell apart)."""

    rating: int | None
    by_aescore: bool


def parse_packet(data: bytes) -> XmpRating:
    """The ``xmp:Rating`` of an XMP packet.

    XMP's own convention applies: ``-1`` = rejected, ``1..5`` stars, ``0`` = *unrated* (Lightroom
    and darktable write 0 for a photo without stars), so 0 comes back as None. Values outside
    -1..5 or not whole numbers (``3.7``, ``-1.5``, ``inf``, text) are None too: exiftool and
    Lightroom read the rating as an integer. Raises :class:`XmpReadError` for a DTD/entity
    declaration, malformed XML, or a document without ``rdf:RDF``.
    """
    import defusedxml
    import defusedxml.ElementTree as ET
    from xml.etree.ElementTree import ParseError

    if len(data) > MAX_PACKET_BYTES:
        raise XmpReadError(f"XMP packet larger than {MAX_PACKET_BYTES // (1024 * 1024)} MB")
    try:
        root = ET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as err:
        raise XmpReadError(f"XMP declares a DTD or entities ({type(err).__name__}); not read") from None
    except (ParseError, ValueError, UnicodeError) as err:
        raise XmpReadError(f"not well-formed XMP ({err})") from None
    rdfs = [root] if root.tag == f"{{{RDF_NS}}}RDF" else list(root.iter(f"{{{RDF_NS}}}RDF"))
    if not rdfs:
        raise XmpReadError("no rdf:RDF element, not an XMP packet")
    descs = [d for rdf in rdfs for d in rdf.findall(f"{{{RDF_NS}}}Description")]
    text = _property(descs, XMP_NS, "Rating")
    rating = whole_rating(text)
    if rating is not None and (rating == 0 or not -1 <= rating <= 5):
        rating = None
    meta = root if root.tag == f"{{{X_NS}}}xmpmeta" else root.find(f".//{{{X_NS}}}xmpmeta")
    by_aescore = rating_set_by_aescore(
        rating,
        _property(descs, AESCORE_NS, "Rating"),
        _property(descs, AESCORE_NS, "RatingSource"),
        stamped=any(_property(descs, AESCORE_NS, local) is not None for local in ("Score", "Model")),
        toolkit=meta.get(f"{{{X_NS}}}xmptk") if meta is not None else None,
    )
    return XmpRating(rating, by_aescore)


def _property(descs: list[Any], uri: str, local: str) -> str | None:
    """The first value of property ``uri``+``local``: an attribute or a child element's text."""
    name = f"{{{uri}}}{local}"
    for desc in descs:
        if name in desc.attrib:
            return desc.attrib[name]
        child = desc.find(name)
        if child is not None:
            return (child.text or "").strip()
    return None


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; OSError otherwise
    (:func:`aescore.fsutil.read_regular_file`: nothing that is not a regular file is opened)."""
    data = fsutil.read_regular_file(path, limit)
    if data is None:
        raise OSError("not a regular file")
    if len(data) > limit:
        raise OSError(f"larger than {limit // (1024 * 1024)} MB")
    return data
