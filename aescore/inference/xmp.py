"""Write star ratings and scores into XMP sidecars without losing anything already there.

An existing sidecar is parsed with defusedxml's minidom (DTDs, entities and external references
refused) and edited in place: only ``xmp:Rating`` (when absent, or with ``overwrite_rating``) and our
own ``aescore:*`` properties change. minidom rather than ElementTree because it keeps what
ElementTree drops or rewrites on a round trip — the original namespace prefixes in their scopes,
comments, whitespace, the ``<?xpacket?>`` wrapper and the order of attributes (namespace
declarations move first) — without touching ElementTree's process-global prefix registry. The photo itself is never opened.

Only a regular file of at most :data:`MAX_SIDECAR_BYTES` is read as a sidecar (a FIFO would block,
``/dev/zero`` would never end), and a sidecar that is a symlink is followed only to a file in the
photo's own folder, never written through to a file elsewhere. On output, TAB, LF and CR in
attribute values and CR in text are written as character references, so every value an XML
reader saw before reads the same after.

Lightroom-style names are shared by photos that differ only in their extension (``pair.jpg`` and
``pair.png`` both use ``pair.xmp``); :func:`check_sidecar_collisions` decides, the same way on every
run, which photo such a sidecar is written for; :func:`sidecar_targets` decides which sidecar(s)
a photo's rating goes to (the ones it already has, in either style, else a new one in the chosen
style); :func:`write_rating_sidecars` applies both rules to a batch (``--write-xmp`` and
``aescore apply`` both write through it).

Provenance of the rating: when aescore sets ``xmp:Rating`` from its own stars it records the value
as ``aescore:Rating``; when the rating in the sidecar is known to be the photographer's (one
aescore kept, or a decision written by ``aescore apply``) it records ``aescore:RatingSource="user"``
instead. :func:`rating_set_by_aescore` is the one rule that reads these marks back (the writer and
:mod:`aescore.ratings` both use it): a rating is aescore's only while it still equals the value
aescore set.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.dom import minidom

from aescore import __version__
from aescore.errors import AescoreError, UsageError
from aescore.fsutil import atomic_write_bytes, read_regular_file

__all__ = [
    "AESCORE_NS",
    "XMP_NS",
    "X_NS",
    "MAX_SIDECAR_BYTES",
    "RDF_NS",
    "RatingToWrite",
    "SidecarChange",
    "SidecarCollision",
    "SidecarError",
    "XmpStyle",
    "check_sidecar_collisions",
    "rating_set_by_aescore",
    "sidecar_candidates",
    "sidecar_path",
    "sidecar_targets",
    "write_rating_sidecar",
    "whole_rating",
    "write_rating_sidecars",
]

XmpStyle = Literal["lightroom", "darktable"]
SidecarAction = Literal["create", "update", "unchanged", "kept-existing-rating"]
#: Both sidecar styles, the photo's own darktable-style name first.
_STYLES: tuple[XmpStyle, XmpStyle] = ("darktable", "lightroom")

AESCORE_NS = "https://aescore.dev/ns/1.0/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
X_NS = "adobe:ns:meta/"
XMLNS_NS = "http://www.w3.org/2000/xmlns/"
#: The largest existing sidecar aescore reads (real ones are a few kB; Lightroom's with long
#: edit histories stay well under 1 MB).
MAX_SIDECAR_BYTES = 16 * 1024 * 1024

# The standard packet wrapper; the id is the fixed value the XMP specification prescribes.
_NEW_PACKET = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="{X_NS}" x:xmptk="aescore {__version__}">
 <rdf:RDF xmlns:rdf="{RDF_NS}">
  <rdf:Description rdf:about="" xmlns:xmp="{XMP_NS}" xmlns:aescore="{AESCORE_NS}"/>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


class SidecarError(AescoreError):
    """An existing sidecar that aescore refuses to modify (unsafe or not an XMP packet).

    The file is left untouched; a batch caller should report the message and go on.
    """


@dataclass(frozen=True)
class SidecarChange:
    """What :func:`write_rating_sidecar` did (or, with ``dry_run``, would do).

    ``action``: ``create`` (new sidecar), ``update`` (rating and/or score changed),
    ``unchanged`` (already up to date; nothing written), ``kept-existing-rating`` (the sidecar had
    a different rating and ``overwrite_rating`` was off; our score is still updated when it
    differs). ``new_rating`` is the rating the sidecar carries afterwards; ``changed`` tells
    whether the file's content changes (is or would be written).
    """

    path: Path
    action: SidecarAction
    old_rating: int | None
    new_rating: int | None
    changed: bool


def _style_names(photo: Path, style: XmpStyle) -> list[Path]:
    """The names ``photo``'s sidecar may have in ``style``, the conventional lower-case ``.xmp``
    first, then ``.XMP``: Lightroom ``IMG_1.xmp`` (stem + .xmp), darktable ``IMG_1.JPG.xmp``."""
    if style == "lightroom":
        base = photo.with_suffix("") if photo.suffix else photo
    elif style == "darktable":
        base = photo
    else:
        raise UsageError(f"unknown XMP sidecar style {style!r} (use 'lightroom' or 'darktable')")
    return [base.with_name(base.name + ".xmp"), base.with_name(base.name + ".XMP")]


def sidecar_path(photo: str | os.PathLike[str], style: XmpStyle = "lightroom") -> Path:
    """Sidecar file for ``photo``: Lightroom ``IMG_1.xmp`` (stem + .xmp) or darktable ``IMG_1.JPG.xmp``.

    If the conventional lower-case name does not exist but an upper-case ``.XMP`` does (cameras
    and some Windows tools write those), that existing file is returned so it is merged, not
    shadowed. Note that Lightroom-style names are shared by ``IMG_1.JPG`` and ``IMG_1.CR2`` in one
    folder — that is Lightroom's convention, not something to fix here.
    """
    candidates = _style_names(Path(photo), style)
    for cand in candidates:
        if cand.exists():
            return cand
    return candidates[0]


def sidecar_candidates(photo: str | os.PathLike[str]) -> list[Path]:
    """Every name that may hold ``photo``'s rating, most specific first: darktable-style
    ``IMG_1.JPG.xmp`` (one photo's own), then Lightroom-style ``IMG_1.xmp`` (shared by every file
    with that stem, a raw + JPEG pair); each with ``.xmp``, then ``.XMP``. Checks no file.
    Learning reads the first that exists (:mod:`aescore.ratings`)."""
    photo = Path(photo)
    out: list[Path] = []
    for style in _STYLES:
        for cand in _style_names(photo, style):
            if cand != photo and cand not in out:
                out.append(cand)
    return out


def sidecar_targets(photo: str | os.PathLike[str], style: XmpStyle = "lightroom", owns_shared: bool = True) -> list[Path]:
    """The sidecar(s) a rating of ``photo`` is written to: one sidecar per photo, the one it has.

    Every existing sidecar of the photo, in either style (darktable ``IMG_1.JPG.xmp`` first, then
    Lightroom ``IMG_1.xmp``), so a library rated in both keeps both and both agree; only when the
    photo has none, a new one named in ``style``. ``owns_shared`` is False when the Lightroom-style
    name belongs to another photo (:func:`check_sidecar_collisions`): that file is then not this
    photo's, and an empty list means the only sidecar it could get is the other photo's.
    """
    photo = Path(photo)
    shared = sidecar_path(photo, "lightroom")
    existing: list[Path] = []
    for style_ in _STYLES:
        path = sidecar_path(photo, style_)
        if path.exists() and path not in existing and (owns_shared or path != shared):
            existing.append(path)
    if existing:
        return existing
    new = sidecar_path(photo, style)
    return [new] if owns_shared or new != shared else []


# --------------------------------------------------------------------------- DOM helpers


def _prefix_in_scope(elem: minidom.Element, uri: str) -> str | None:
    """A prefix bound to ``uri`` on ``elem`` or an ancestor (the nearest binding wins), else None."""
    node: object = elem
    shadowed: set[str] = set()
    while isinstance(node, minidom.Element):
        for attr in node.attributes.values():
            if attr.namespaceURI == XMLNS_NS and attr.prefix == "xmlns":
                if attr.localName not in shadowed and attr.value == uri:
                    return attr.localName
                shadowed.add(attr.localName)
        node = node.parentNode
    return None


def _prefix_taken(elem: minidom.Element, prefix: str) -> bool:
    """Whether ``prefix`` is already bound on ``elem`` or an ancestor (to any URI)."""
    node: object = elem
    while isinstance(node, minidom.Element):
        if node.hasAttributeNS(XMLNS_NS, prefix):
            return True
        node = node.parentNode
    return False


def _ensure_prefix(elem: minidom.Element, uri: str, preferred: str) -> str:
    """Return a prefix for ``uri`` usable on ``elem``, declaring one on ``elem`` when needed."""
    found = _prefix_in_scope(elem, uri)
    if found:
        return found
    prefix, k = preferred, 0
    while _prefix_taken(elem, prefix):
        k += 1
        prefix = f"{preferred}{k}"
    elem.setAttributeNS(XMLNS_NS, f"xmlns:{prefix}", uri)
    return prefix


def _descriptions(rdf: minidom.Element) -> list[minidom.Element]:
    """The ``rdf:Description`` children of ``rdf:RDF`` (where top-level properties live)."""
    return [
        c
        for c in rdf.childNodes
        if isinstance(c, minidom.Element) and c.namespaceURI == RDF_NS and c.localName == "Description"
    ]


class _Property:
    """One simple property, stored as an attribute or as a child element of a Description."""

    def __init__(self, desc: minidom.Element, node: minidom.Attr | minidom.Element) -> None:
        self.desc = desc
        self.node = node

    @property
    def value(self) -> str:
        if isinstance(self.node, minidom.Attr):
            return self.node.value
        return "".join(
            c.data for c in self.node.childNodes if isinstance(c, (minidom.Text, minidom.CDATASection))
        ).strip()

    def set(self, value: str) -> None:
        if isinstance(self.node, minidom.Attr):
            self.node.value = value
            return
        for child in list(self.node.childNodes):
            self.node.removeChild(child)
        doc = self.node.ownerDocument
        assert doc is not None  # a node of a parsed document
        self.node.appendChild(doc.createTextNode(value))


def _find_property(descs: list[minidom.Element], uri: str, local: str) -> _Property | None:
    """The first occurrence of property ``uri``+``local`` as attribute or child element."""
    for desc in descs:
        attr = desc.getAttributeNodeNS(uri, local)
        if attr is not None:
            return _Property(desc, attr)
        for child in desc.childNodes:
            if isinstance(child, minidom.Element) and child.namespaceURI == uri and child.localName == local:
                return _Property(desc, child)
    return None


def _set_property(
    descs: list[minidom.Element], target: minidom.Element, uri: str, local: str, preferred: str, value: str
) -> bool:
    """Set a property where it already is, else as an attribute of ``target``; True if it changed."""
    prop = _find_property(descs, uri, local)
    if prop is not None:
        if prop.value == value:
            return False
        prop.set(value)
        return True
    prefix = _ensure_prefix(target, uri, preferred)
    target.setAttributeNS(uri, f"{prefix}:{local}", value)
    return True


def _remove_property(descs: list[minidom.Element], uri: str, local: str) -> bool:
    """Remove every occurrence of property ``uri``+``local`` (attribute or child element); True if
    there was one."""
    removed = False
    while (prop := _find_property(descs, uri, local)) is not None:
        if isinstance(prop.node, minidom.Attr):
            prop.desc.removeAttributeNode(prop.node)
        else:
            prop.desc.removeChild(prop.node)
        removed = True
    return removed


def _mark_rating(descs: list[minidom.Element], target: minidom.Element, by: Literal["aescore", "user"], rating: int) -> bool:
    """Record who set the sidecar's ``rating``: ``aescore:Rating`` = the value for aescore's own,
    ``aescore:RatingSource="user"`` for the user's (the other mark removed); True if it changed."""
    if by == "aescore":
        changed = _remove_property(descs, AESCORE_NS, "RatingSource")
        return _set_property(descs, target, AESCORE_NS, "Rating", "aescore", str(rating)) or changed
    changed = _remove_property(descs, AESCORE_NS, "Rating")
    return _set_property(descs, target, AESCORE_NS, "RatingSource", "aescore", "user") or changed


def whole_rating(value: object) -> int | None:
    """A rating value as an int when it is a whole, finite number, else None: the one rule for
    every rating aescore reads (XMP sidecars, embedded XMP, Lightroom, digiKam, CSV).

    exiftool and Lightroom read ``xmp:Rating`` as an integer; a value such as ``3.7`` or ``-1.5``
    is not a rating rounded one way or the other but no rating at all, like any other malformed
    value. Reals with nothing after the point (``3.0``, as some tools write them) are whole.
    Accepts ints, floats, and text or bytes such as ``"4"``, ``" -1 "`` or ``"3.0"``; None for
    fractions, infinities and NaN (``1e999``, ``"inf"``), text that is not a number, NULL and any
    other type. The range (-1..5, 0..5) is the caller's.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, (float, str, bytes)):
        return None
    try:
        number = float(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def rating_set_by_aescore(
    rating: int | None,
    aescore_rating: str | None,
    rating_source: str | None,
    stamped: bool,
    toolkit: str | None,
) -> bool:
    """Whether the ``rating`` an XMP packet carries is one aescore set itself and nobody changed:
    the one rule of provenance, for the sidecar writer and for ``learn`` (:mod:`aescore.ratings`).

    ``aescore_rating``: the packet's ``aescore:Rating`` (the value aescore set), ``rating_source``
    its ``aescore:RatingSource`` (``"user"`` for a rating aescore knows is the photographer's),
    ``stamped`` whether it has ``aescore:Score`` or ``aescore:Model``, ``toolkit`` the
    ``x:xmptk`` of its ``x:xmpmeta`` (the program that created the packet). Rules, first match:

    1. ``aescore:Rating`` present: aescore's only if it still equals ``rating`` (a rating changed
       afterwards, in Lightroom or by hand, is the user's);
    2. ``aescore:RatingSource="user"``: the user's;
    3. a packet from an older aescore (``stamped``, neither mark): aescore's when aescore created the
       packet or it cannot tell (``x:xmptk`` absent or ``aescore ...``); the user's when another
       program created it (older versions kept an existing rating by default and only added their
       score there);
    4. otherwise (aescore never touched it): the user's.
    """
    if aescore_rating is not None:
        return rating is not None and whole_rating(aescore_rating) == rating
    if rating_source is not None and rating_source.strip().lower() == "user":
        return False
    if stamped:
        return toolkit is None or not toolkit.strip() or toolkit.strip().lower().startswith("aescore")
    return False


def _parse_sidecar(path: Path, data: bytes) -> minidom.Document:
    """Parse ``data`` safely; SidecarError for DTDs/entities, bad XML or a missing rdf:RDF."""
    import defusedxml
    import defusedxml.minidom
    from xml.parsers.expat import ExpatError

    try:
        doc = defusedxml.minidom.parseString(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException as err:
        raise SidecarError(
            f"{_shown(path)}: refusing to modify an XMP sidecar that declares a DTD or entities ({type(err).__name__})"
        ) from err
    except (ExpatError, ValueError, UnicodeError) as err:
        raise SidecarError(f"{_shown(path)}: not a well-formed XMP sidecar ({err}); left unchanged") from err
    if not doc.getElementsByTagNameNS(RDF_NS, "RDF"):
        raise SidecarError(f"{_shown(path)}: no rdf:RDF element, not an XMP packet; left unchanged")
    return doc


def _shown(path: str | os.PathLike[str]) -> str:
    """``path`` for a one-line message (:func:`aescore.termtext.display_path`)."""
    from aescore.termtext import display_path

    return display_path(os.fspath(path))


def _read_sidecar(path: Path, real: Path) -> bytes:
    """The bytes of the existing sidecar ``real`` (``path`` as named, for messages).

    SidecarError for anything but a regular file (FIFO, device, folder, socket), for a symlink to
    a file outside the photo's folder (the folder ``path`` is in) and for files over
    :data:`MAX_SIDECAR_BYTES`; nothing is opened before the checks (:func:`read_regular_file`).
    """
    def refuse(what: str) -> SidecarError:
        return SidecarError(f"{_shown(path)}: {what}; left unchanged")

    if not stat.S_ISREG(os.stat(real).st_mode):
        raise refuse("not a regular file")
    if real.parent != Path(os.path.realpath(path.parent)):
        raise refuse(f"a link to {_shown(real)}, outside the photo's folder")
    data = read_regular_file(real, MAX_SIDECAR_BYTES)
    if data is None:
        raise refuse("not a regular file")
    if len(data) > MAX_SIDECAR_BYTES:
        raise refuse(f"larger than {MAX_SIDECAR_BYTES >> 20} MB, not an XMP sidecar")
    return data


def _escape(text: str, attribute: bool) -> str:
    """Markup-escape ``text`` as minidom does, plus the whitespace an XML reader would normalise:
    CR everywhere, and TAB and LF inside attribute values (where a raw one reads as a space)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").replace(">", "&gt;")
    text = text.replace("\r", "&#13;")
    if attribute:
        text = text.replace("\t", "&#9;").replace("\n", "&#10;")
    return text


def _write_node(node: minidom.Node, out: list[str]) -> None:
    """Append ``node`` as XML to ``out``: minidom's ``toxml`` with :func:`_escape` for values."""
    if isinstance(node, minidom.Element):
        out.append(f"<{node.tagName}")
        for name, value in node.attributes.items():
            out.append(f' {name}="{_escape(value, attribute=True)}"')
        if not node.childNodes:
            out.append("/>")
            return
        out.append(">")
        for child in node.childNodes:
            _write_node(child, out)
        out.append(f"</{node.tagName}>")
    elif isinstance(node, minidom.Text) and not isinstance(node, minidom.CDATASection):
        out.append(_escape(node.data, attribute=False))
    else:  # comments, processing instructions, CDATA sections: as minidom writes them
        out.append(node.toxml())


def _serialise(doc: minidom.Document, xml_declaration: bool) -> bytes:
    """The document as UTF-8, keeping the top-level processing instructions and comments."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>'] if xml_declaration else []
    for node in doc.childNodes:
        out: list[str] = []
        _write_node(node, out)
        parts.append("".join(out))
    return ("\n".join(parts) + "\n").encode("utf-8")


def _set_by_aescore(doc: minidom.Document, descs: list[minidom.Element], rating: int | None) -> bool:
    """:func:`rating_set_by_aescore` for the sidecar ``doc`` as it is now (before this write)."""
    def value(local: str) -> str | None:
        prop = _find_property(descs, AESCORE_NS, local)
        return prop.value if prop is not None else None

    root = doc.documentElement
    toolkit = root.getAttributeNodeNS(X_NS, "xmptk") if root is not None and root.namespaceURI == X_NS else None
    return rating_set_by_aescore(
        rating, value("Rating"), value("RatingSource"),
        stamped=value("Score") is not None or value("Model") is not None,
        toolkit=toolkit.value if toolkit is not None else None,
    )


# --------------------------------------------------------------------------- public API


def write_rating_sidecar(
    photo: str | os.PathLike[str],
    stars: int,
    score: float,
    style: XmpStyle = "lightroom",
    overwrite_rating: bool = False,
    dry_run: bool = False,
    model: str | None = None,
    sidecar: str | os.PathLike[str] | None = None,
    by_user: bool = False,
) -> SidecarChange:
    """Record ``stars`` as ``xmp:Rating`` and ``score`` as ``aescore:Score`` in ``photo``'s sidecar.

    Without a sidecar, a minimal XMP packet is created. An existing one is merged: every element,
    attribute, namespace prefix, comment and the ``<?xpacket?>`` wrapper is kept; ``xmp:Rating`` is
    set only when absent or when ``overwrite_rating`` is true, and updated in place whether stored
    as an attribute (``xmp:Rating="3"``) or a child element; ``aescore:Score`` (4 decimals) and,
    when ``model`` is given (e.g. a weights sha256 prefix), ``aescore:Model`` are always set, in
    our namespace :data:`AESCORE_NS`. Nothing is written when nothing changes.

    Provenance (:func:`rating_set_by_aescore`): a rating aescore sets from its own ``stars`` gets
    ``aescore:Rating`` = that value; with ``by_user`` (``aescore apply``: the photographer's
    decision) a rating written, or already equal, gets ``aescore:RatingSource="user"``. A rating
    kept because it differs and ``overwrite_rating`` is off is marked the user's when it is
    (written by another program, or changed since aescore set it), and otherwise left as it is;
    a rating already equal to ``stars`` keeps the provenance it has.

    Writes are atomic (temporary file in the same folder, then ``os.replace``); a sidecar that is a
    symlink to a file in the photo's own folder is written through to its target. ``dry_run``
    writes nothing and reports what would happen. Raises SidecarError (file left untouched) for a
    sidecar that is not a regular file, is a symlink to a file outside the photo's folder, is
    larger than :data:`MAX_SIDECAR_BYTES`, declares a DTD or entities, is malformed XML, or is
    XML without ``rdf:RDF``; ValueError for stars outside -1..5 or a NaN score. ``sidecar`` names
    the file to write (one in the photo's folder), else it is :func:`sidecar_path` in ``style``.
    A batch should go through :func:`write_rating_sidecars`, which picks the sidecars a photo
    already has (:func:`sidecar_targets`) and keeps shared sidecar names apart.
    """
    if not (-1 <= int(stars) <= 5) or int(stars) != stars:
        raise ValueError(f"xmp:Rating must be an integer from -1 to 5, got {stars}")
    if math.isnan(score):
        raise ValueError("cannot record a NaN score")
    path = Path(sidecar) if sidecar is not None else sidecar_path(photo, style)
    exists = path.exists()
    if exists:
        real = Path(os.path.realpath(path))
        data = _read_sidecar(path, real)
        doc = _parse_sidecar(path, data)
        had_declaration = data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<?xml")
    else:
        real = path
        doc = minidom.parseString(_NEW_PACKET.encode("utf-8"))
        had_declaration = False

    rdf = doc.getElementsByTagNameNS(RDF_NS, "RDF")[0]
    descs = _descriptions(rdf)
    rating = _find_property(descs, XMP_NS, "Rating")
    if rating is not None:
        target = rating.desc
    elif descs:
        target = descs[0]
    else:
        # An rdf:RDF without any Description: add one (rdf:about="" = "this resource").
        target = doc.createElementNS(RDF_NS, f"{rdf.prefix or 'rdf'}:Description")
        target.setAttributeNS(RDF_NS, f"{rdf.prefix or 'rdf'}:about", "")
        rdf.appendChild(target)
        descs = [target]

    old_rating = whole_rating(rating.value) if rating is not None else None
    setter: Literal["aescore", "user"] = "user" if by_user else "aescore"
    kept = False
    changed = False
    mark: Literal["aescore", "user"] | None
    if rating is None:
        changed |= _set_property(descs, target, XMP_NS, "Rating", "xmp", str(int(stars)))
        new_rating: int | None = int(stars)
        mark = setter
    elif old_rating == stars:
        new_rating = old_rating  # same rating (maybe written "3.0"): leave the text as it is
        mark = "user" if by_user or not _set_by_aescore(doc, descs, old_rating) else "aescore"
    elif overwrite_rating:
        rating.set(str(int(stars)))
        changed = True
        new_rating = int(stars)
        mark = setter
    else:
        kept = True
        new_rating = old_rating
        mark = None if _set_by_aescore(doc, descs, old_rating) else "user"
    if mark is not None and new_rating is not None:
        changed |= _mark_rating(descs, target, mark, new_rating)
    changed |= _set_property(descs, target, AESCORE_NS, "Score", "aescore", f"{score:.4f}")
    if model is not None:
        changed |= _set_property(descs, target, AESCORE_NS, "Model", "aescore", model)

    action: SidecarAction
    if not exists:
        action = "create"
    elif kept:
        action = "kept-existing-rating"
    elif changed:
        action = "update"
    else:
        action = "unchanged"

    if changed and not dry_run:
        mode = real.stat().st_mode & 0o7777 if exists else None  # an existing sidecar keeps its mode
        atomic_write_bytes(real, _serialise(doc, had_declaration), mode)
    return SidecarChange(path=path, action=action, old_rating=old_rating, new_rating=new_rating, changed=changed)


# --------------------------------------------------------------------------- shared sidecar names


@dataclass(frozen=True)
class SidecarCollision:
    """``photo``'s sidecar name is shared with ``owner``, the photo the sidecar is written for.

    ``owner`` may be a file that is not among the photos being written (it is in the same folder).
    """

    photo: Path
    sidecar: Path
    owner: Path

    def __str__(self) -> str:
        return (
            f"shares the sidecar {self.sidecar.name} with {self.owner.name}; "
            f"it records {self.owner.name} only, so {self.photo.name} gets none"
        )


def _owner_key(photo: Path) -> tuple[bool, str]:
    """Sort key for the photo a shared sidecar belongs to: a camera RAW first (the convention of
    Lightroom, which treats a same-named JPEG as the RAW's companion), then the name."""
    from aescore.data.images import RAW_EXTENSIONS

    return (photo.suffix.lower() not in RAW_EXTENSIONS, photo.name)


def _same_stem_images(folder: Path, stem: str, cache: dict[Path, dict[str, list[str]]]) -> list[str]:
    """Names of the image files in ``folder`` whose name without extension is ``stem``."""
    from aescore.inference.discover import is_image_name

    if folder not in cache:
        by_stem: dict[str, list[str]] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        regular = entry.is_file()
                    except OSError:
                        continue
                    if regular and is_image_name(entry.name):
                        by_stem.setdefault(os.path.splitext(entry.name)[0], []).append(entry.name)
        except OSError:
            pass
        cache[folder] = by_stem
    return cache[folder].get(stem, [])


def check_sidecar_collisions(
    photos: Sequence[str | os.PathLike[str]], style: XmpStyle = "lightroom"
) -> list[SidecarCollision | None]:
    """For each photo, None when its sidecar may be written, else the :class:`SidecarCollision`.

    Lightroom-style sidecars are named after the photo without its extension, so ``pair.jpg``,
    ``pair.png`` and ``pair.CR2`` in one folder share ``pair.xmp``; written for each, it would end
    up with one photo's rating and another's score. The sidecar is given to one photo: a camera
    RAW if there is one, else the first by file name, chosen among ``photos`` *and* the other
    same-named image files in the folder. So the choice does not depend on which photos a run
    selects or on their scores, and repeated runs write the same file for the same photo; when
    the owner is not among ``photos``, none of them writes it. Darktable-style names
    (``pair.jpg.xmp``) never collide. Reads folder listings only; writes nothing.
    """
    if style not in ("lightroom", "darktable"):
        raise UsageError(f"unknown XMP sidecar style {style!r} (use 'lightroom' or 'darktable')")
    paths = [Path(p) for p in photos]
    result: list[SidecarCollision | None] = [None] * len(paths)
    if style == "darktable":
        return result

    def stem(p: Path) -> str:
        return p.stem if p.suffix else p.name

    given: dict[tuple[Path, str], set[Path]] = {}
    for photo in paths:
        given.setdefault((photo.parent, stem(photo)), set()).add(photo)
    listings: dict[Path, dict[str, list[str]]] = {}
    for i, photo in enumerate(paths):
        folder = photo.parent
        sharing = given[(folder, stem(photo))] | {folder / n for n in _same_stem_images(folder, stem(photo), listings)}
        owner = min(sharing, key=_owner_key)
        if owner != photo:
            result[i] = SidecarCollision(photo, sidecar_path(photo, style), owner)
    return result


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class RatingToWrite:
    """One photo's entry in :func:`write_rating_sidecars` (the arguments of :func:`write_rating_sidecar`)."""

    photo: str | os.PathLike[str]
    stars: int
    score: float
    overwrite_rating: bool = False
    #: The rating is the photographer's own decision (``aescore apply``), recorded as such.
    by_user: bool = False


def write_rating_sidecars(
    items: Iterable[RatingToWrite],
    style: XmpStyle = "lightroom",
    dry_run: bool = False,
    model: str | None = None,
) -> list[tuple[int, SidecarChange | None, str | None]]:
    """Write each item into its sidecar(s) (:func:`sidecar_targets`) with
    :func:`write_rating_sidecar`: one ``(i, change, None)`` or ``(i, None, why nothing was
    written)`` per sidecar, ``i`` the item's index, in order.

    A photo's existing sidecars are updated, in both styles alike where it has both; a new one,
    named in ``style``, is created only for a photo that has none. A Lightroom-style name shared
    by several photos belongs to one of them (:func:`check_sidecar_collisions`): the others do not
    write it, and a photo whose only possible sidecar is that one gets the collision as its reason
    (one entry). A sidecar aescore refuses to change (SidecarError) or cannot write (OSError) gets
    the error's one-line message; the others are still written. This is the rule of
    ``--write-xmp`` and ``aescore apply`` alike.
    """
    if style not in _STYLES:
        raise UsageError(f"unknown XMP sidecar style {style!r} (use 'lightroom' or 'darktable')")
    items = list(items)
    collisions = check_sidecar_collisions([item.photo for item in items], "lightroom")
    out: list[tuple[int, SidecarChange | None, str | None]] = []
    for i, (item, collision) in enumerate(zip(items, collisions)):
        targets = sidecar_targets(item.photo, style, owns_shared=collision is None)
        if not targets:
            out.append((i, None, str(collision)))
        for target in targets:
            try:
                change = write_rating_sidecar(
                    item.photo, item.stars, item.score, style=style,
                    overwrite_rating=item.overwrite_rating, dry_run=dry_run, model=model, sidecar=target,
                    by_user=item.by_user,
                )
            except (SidecarError, OSError) as err:
                out.append((i, None, str(err)))
                continue
            out.append((i, change, None))
    return out
