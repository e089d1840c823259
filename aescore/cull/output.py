"""The output formats of ``aescore score`` / ``aescore rank`` (pure functions over :class:`Photo` s).

Columns come from the checks that ran (:mod:`aescore.checks`): the score check's ``score`` and
``label`` first, then the culling columns in use (stars, burst group, best of group, crop box), then every
other check's fields in the order the checks were given, the path last. A check's NUMBER, TEXT and
FLAG fields go to every format; OBJECT fields to JSON/JSONL and (as JSON text) to CSV; HIDDEN
fields to none. Scores are printed with 4 decimals in the text formats (table, TSV, CSV) and 6 in
JSON/JSONL.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

from aescore.checks.base import Check, Field, FieldKind
from aescore.cull.photo import Photo
from aescore.termtext import csv_text, display_path, escape_path, json_text

_CULLING = (
    Field("stars", FieldKind.NUMBER, "1-5 stars, -1 rejected"),
    Field("group", FieldKind.NUMBER, "burst group id"),
    Field("best", FieldKind.FLAG, "best of its burst group"),
    Field("crop", FieldKind.TEXT, "crop box left,top,right,bottom in the photo's own pixels (a list in JSON)"),
)


def columns(photos: Sequence[Photo], checks: Sequence[Check]) -> list[Field]:
    """The fields to print, in order (see the module docstring); the path is implied last."""
    score_fields = [f for c in checks if c.name == "score" for f in c.fields]
    cols = list(score_fields)
    if any(p.stars is not None for p in photos):
        cols.append(_CULLING[0])
    if any(p.group is not None for p in photos):
        cols += _CULLING[1:3]
    if any(p.crop is not None for p in photos):
        cols.append(_CULLING[3])
    cols += [f for c in checks if c.name != "score" for f in c.fields if f.kind is not FieldKind.HIDDEN]
    return cols


def value(photo: Photo, field: Field) -> Any:
    """The value of ``field`` for ``photo`` (culling columns come from the photo's attributes)."""
    if field in _CULLING:
        return getattr(photo, field.name)
    return photo.fields.get(field.name)


def _text(v: Any, field: Field) -> str:
    """A value as the text formats show it."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)) and field.kind is not FieldKind.OBJECT:
        return ",".join(str(x) for x in v)  # a box: 12,40,812,640
    if field.kind is FieldKind.NUMBER and isinstance(v, float):
        return f"{v:.{field.places}f}"
    if field.kind is FieldKind.OBJECT:
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def _json_value(v: Any, field: Field) -> Any:
    if isinstance(v, float) and field.kind is FieldKind.NUMBER:
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(v, tuple):
        return list(v)
    return v


def record(photo: Photo, cols: Sequence[Field]) -> dict[str, Any]:
    """One photo as a JSON-friendly dict: rank, the columns, path."""
    out: dict[str, Any] = {"rank": photo.rank}
    for field in cols:
        out[field.name] = _json_value(value(photo, field), field)
    out["path"] = photo.path
    return out


def format_tsv(photos: Sequence[Photo], checks: Sequence[Check]) -> str:
    """``score<TAB>path`` per line (4 decimals); other columns in use sit between the two, so the
    path is always the last column. Objects are left out; control characters are escaped."""
    cols = [f for f in columns(photos, checks) if f.name != "label" and f.kind is not FieldKind.OBJECT]
    lines = []
    for photo in photos:
        parts = [escape_path(_text(value(photo, f), f)) for f in cols]
        parts.append(escape_path(photo.path))
        lines.append("\t".join(parts) + "\n")
    return "".join(lines)


def format_json(photos: Sequence[Photo], checks: Sequence[Check]) -> str:
    """One JSON array of objects (numbers with 6 decimals), newline-terminated."""
    cols = columns(photos, checks)
    return json_text(json.dumps([record(p, cols) for p in photos], ensure_ascii=False, indent=1, allow_nan=False)) + "\n"


def format_jsonl(photos: Sequence[Photo], checks: Sequence[Check]) -> str:
    """One JSON object per line (at least ``rank``, ``score``, ``label`` and ``path``)."""
    cols = columns(photos, checks)
    return "".join(json_text(json.dumps(record(p, cols), ensure_ascii=False, allow_nan=False)) + "\n" for p in photos)


def _csv_cell(text: str) -> str:
    """RFC 4180: quote a cell holding a comma, quote, CR or LF; double its quotes. Other control
    characters and bidi overrides are escaped (:func:`~aescore.termtext.csv_text`)."""
    text = csv_text(text)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def format_csv(photos: Sequence[Photo], checks: Sequence[Check]) -> str:
    """CSV with a header row (RFC 4180 quoting, so any path survives); numbers with 4 decimals."""
    cols = columns(photos, checks)
    header = ["rank", *(f.name for f in cols), "path"]
    lines = [",".join(_csv_cell(h) for h in header)]
    for photo in photos:
        cells = [str(photo.rank), *(_text(value(photo, f), f) for f in cols), photo.path]
        lines.append(",".join(_csv_cell(c) for c in cells))
    return "\n".join(lines) + "\n"


def format_print0(photos: Iterable[Photo]) -> str:
    """Paths only, each followed by NUL (for ``xargs -0``)."""
    return "".join(f"{p.path}\0" for p in photos)


def stars_text(stars: int | None) -> str:
    """``★★★☆☆`` for 3 stars, ``rejected`` for -1, empty for None."""
    if stars is None:
        return ""
    if stars < 0:
        return "rejected"
    return "★" * stars + "☆" * (5 - stars)


def build_table(photos: Sequence[Photo], checks: Sequence[Check], title: str | None = None) -> Any:
    """A Rich table of ``photos``: rank, the columns (objects left out), path."""
    from rich.console import JustifyMethod
    from rich.table import Table
    from rich.text import Text

    cols = [f for f in columns(photos, checks) if f.kind is not FieldKind.OBJECT]
    table = Table(title=title, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right", no_wrap=True)
    for f in cols:
        justify: JustifyMethod = "right" if f.kind is FieldKind.NUMBER else "left"
        table.add_column(f.name.replace("_", " "), justify=justify, no_wrap=True, overflow="fold")
    table.add_column("path", no_wrap=False, overflow="fold")
    for photo in photos:
        cells: list[Any] = [str(photo.rank)]
        for f in cols:
            v = value(photo, f)
            if f.name == "label":
                cells.append(Text(str(v), style="green" if v == "high" else "dim"))
            elif f.name == "stars":
                cells.append(Text(stars_text(photo.stars), style="red" if (photo.stars or 0) < 0 else "yellow"))
            elif f.name == "best":
                cells.append(Text("best", style="bold green") if photo.best else "")
            else:
                cells.append(Text(display_path(_text(v, f))))  # Text: brackets are not markup
        cells.append(Text(display_path(photo.path)))
        table.add_row(*cells)
    return table
