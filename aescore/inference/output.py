"""Result rows, ranking and the output formats of ``aescore score`` / ``aescore rank`` (pure functions).

Scores are printed with 4 decimals in the text formats (table, TSV, CSV) and 6 in JSON/JSONL.
The label is ``high`` when the score is >= 0.5 — the model's decision boundary between its two
training classes — and ``low`` otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

#: Score at and above which a photo is labelled "high" (the binary classifier's boundary).
HIGH_THRESHOLD = 0.5

EXIF_FIELDS = ("capture_time", "camera", "lens", "exposure")

# Control characters would break line-based formats; TSV and the table show them escaped.
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


@dataclass
class Row:
    """One scored photo and what culling added to it."""

    path: str
    score: float
    rank: int = 0  # 1 = best of the run (set by :func:`assign_ranks`)
    group: int | None = None  # burst group id (with --group-bursts)
    best: bool | None = None  # best of its burst group
    stars: int | None = None  # 1..5, -1 = rejected (with --stars)
    exif: dict[str, str | None] | None = None  # EXIF_FIELDS (with --exif)


def label(score: float) -> str:
    """``"high"`` if ``score >= 0.5`` else ``"low"``."""
    return "high" if score >= HIGH_THRESHOLD else "low"


def escape_path(path: str) -> str:
    """``path`` with newline, tab and carriage return shown as ``\\n``, ``\\t``, ``\\r``."""
    if not any(c in path for c in _ESCAPES):
        return path
    return "".join(_ESCAPES.get(c, c) for c in path)


def display_path(path: str) -> str:
    """``path`` for a terminal line: :func:`escape_path`, plus bytes that are not valid UTF-8
    (surrogate escapes) shown as ``\\xff``, so every name prints on one line and none looks
    like another."""
    text = escape_path(path)
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c for c in text)


def rank_key(row: Row) -> tuple[float, str]:
    """Sort key: best score first, ties broken by path (deterministic)."""
    return (-row.score if not math.isnan(row.score) else math.inf, row.path)


def assign_ranks(rows: Sequence[Row]) -> None:
    """Set ``row.rank`` (1 = best) over all ``rows`` in place; their order is left unchanged."""
    for i, row in enumerate(sorted(rows, key=rank_key), start=1):
        row.rank = i


def select(
    rows: Sequence[Row],
    ranked: bool,
    top: int | None = None,
    bottom: int | None = None,
    min_score: float | None = None,
    best_only: bool = False,
) -> list[Row]:
    """The rows to print: best first when ``ranked`` (else input order), filtered.

    Filters apply in this order: best of each burst group, ``min_score``, then ``top`` (the first
    N by rank) or ``bottom`` (the last N by rank, still printed best first).
    """
    out = sorted(rows, key=rank_key) if ranked else list(rows)
    if best_only:
        out = [r for r in out if r.best]
    if min_score is not None:
        out = [r for r in out if r.score >= min_score]
    if top is not None or bottom is not None:
        by_rank = out if ranked else sorted(out, key=rank_key)
        keep = by_rank[:top] if top is not None else by_rank[max(0, len(by_rank) - (bottom or 0)) :]
        chosen = {id(r) for r in keep}
        out = [r for r in out if id(r) in chosen]
    return out


def row_fields(rows: Sequence[Row]) -> list[str]:
    """The columns present: rank, score, label, then culling/EXIF columns in use, path last."""
    cols = ["rank", "score", "label"]
    if any(r.stars is not None for r in rows):
        cols.append("stars")
    if any(r.group is not None for r in rows):
        cols += ["group", "best"]
    if any(r.exif is not None for r in rows):
        cols += list(EXIF_FIELDS)
    return [*cols, "path"]


def row_dict(row: Row, cols: Sequence[str], places: int = 6) -> dict[str, Any]:
    """One row as a JSON-friendly dict with the given columns."""
    out: dict[str, Any] = {}
    for col in cols:
        if col == "score":
            out[col] = round(row.score, places)
        elif col == "label":
            out[col] = label(row.score)
        elif col in EXIF_FIELDS:
            out[col] = (row.exif or {}).get(col)
        else:
            out[col] = getattr(row, col)
    return out


def format_tsv(rows: Sequence[Row]) -> str:
    """``score<TAB>path`` per line (4 decimals); culling/EXIF columns, when used, sit between the
    two, so the path is always the last column. Control characters in paths are escaped."""
    cols = [c for c in row_fields(rows) if c not in ("rank", "label", "path")]
    lines = []
    for row in rows:
        d = row_dict(row, cols)
        parts = [f"{row.score:.4f}"]
        for col in cols[1:]:
            value = d[col]
            text = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
            parts.append(escape_path(text))
        parts.append(escape_path(row.path))
        lines.append("\t".join(parts) + "\n")
    return "".join(lines)


def format_json(rows: Sequence[Row]) -> str:
    """One JSON array of objects (score with 6 decimals), newline-terminated."""
    cols = row_fields(rows)
    return json.dumps([row_dict(r, cols) for r in rows], ensure_ascii=False, indent=1) + "\n"


def format_jsonl(rows: Sequence[Row]) -> str:
    """One JSON object per line (at least ``path`` and ``score``)."""
    cols = row_fields(rows)
    return "".join(json.dumps(row_dict(r, cols), ensure_ascii=False) + "\n" for r in rows)


def format_csv(rows: Sequence[Row]) -> str:
    """CSV with a header row (RFC 4180 quoting, so any path survives); scores with 4 decimals."""
    cols = row_fields(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        d = row_dict(row, cols)
        d["score"] = f"{row.score:.4f}"
        writer.writerow(["" if d[c] is None else (str(d[c]).lower() if isinstance(d[c], bool) else d[c]) for c in cols])
    return buf.getvalue()


def format_print0(rows: Iterable[Row]) -> str:
    """Paths only, each followed by NUL (for ``xargs -0``)."""
    return "".join(f"{r.path}\0" for r in rows)


def stars_text(stars: int | None) -> str:
    """``★★★☆☆`` for 3 stars, ``rejected`` for -1, empty for None."""
    if stars is None:
        return ""
    if stars < 0:
        return "rejected"
    return "★" * stars + "☆" * (5 - stars)


def build_table(rows: Sequence[Row], title: str | None = None) -> Any:
    """A Rich table of ``rows`` (rank, score, label, culling and EXIF columns, path)."""
    from rich.table import Table
    from rich.text import Text

    cols = row_fields(rows)
    table = Table(title=title, show_edge=False, pad_edge=False, header_style="bold")
    for col in cols:
        justify = "right" if col in ("rank", "score", "group") else "left"
        table.add_column("#" if col == "rank" else col.replace("_", " "), justify=justify, no_wrap=col != "path", overflow="fold")
    for row in rows:
        cells: list[Any] = []
        for col in cols:
            if col == "rank":
                cells.append(str(row.rank))
            elif col == "score":
                cells.append(f"{row.score:.4f}")
            elif col == "label":
                lab = label(row.score)
                cells.append(Text(lab, style="green" if lab == "high" else "dim"))
            elif col == "stars":
                cells.append(Text(stars_text(row.stars), style="red" if (row.stars or 0) < 0 else "yellow"))
            elif col == "group":
                cells.append("" if row.group is None else str(row.group))
            elif col == "best":
                cells.append(Text("best", style="bold green") if row.best else "")
            elif col in EXIF_FIELDS:
                cells.append(Text((row.exif or {}).get(col) or ""))
            else:
                cells.append(Text(display_path(row.path)))  # Text: brackets in names are not markup
        table.add_row(*cells)
    return table
