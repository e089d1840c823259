"""``aescore cache info|clear``: inspect or empty the score cache."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from aescore.cli.main import app
from aescore.cli.options import JsonOption
from aescore.termtext import say, stdout_console

if TYPE_CHECKING:
    from rich.console import JustifyMethod

cache_app = typer.Typer(
    help="Inspect or empty the score cache ($XDG_CACHE_HOME/aescore/scores.sqlite).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


def _model_names() -> dict[str, str]:
    """weights sha256 -> model name, for the models aescore can find (best effort)."""
    try:
        from aescore.weights import list_available

        return {str(card.get("sha256")): path.stem for path, card in list_available()}
    except Exception:  # noqa: BLE001 - naming is cosmetic; never fail `cache info` over it
        return {}


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "-"


def _tsv_cell(value: object) -> str:
    """One TSV cell: tabs and line breaks in names would shift columns or rows."""
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _print_tsv(info: dict[str, Any]) -> None:
    """``field<TAB>value`` rows under a header; one ``rows MODEL RECIPE`` row per model and recipe."""
    lines = ["field\tvalue"]
    for field in ("path", "bytes", "rows", "failures"):
        lines.append(f"{field}\t{_tsv_cell(info[field])}")
    lines.append(f"corrupt_copies\t{len(info['corrupt_copies'])}")
    for g in info["by_weights"]:
        field = f"rows {g['model'] or g['weights'][:12]} {g['recipe']}"
        lines.append(f"{_tsv_cell(field)}\t{g['rows']}")
    sys.stdout.write("\n".join(lines) + "\n")


def _print_table(info: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = stdout_console()
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("Path", escape(str(info["path"])))
    summary.add_row("Size", f"{info['bytes'] / 1e6:.1f} MB")
    summary.add_row("Scores", str(info["rows"]))
    summary.add_row("Undecodable files", str(info["failures"]))
    if info["corrupt_copies"]:
        summary.add_row("Damaged copies", escape(", ".join(info["corrupt_copies"])) + "  (`aescore cache clear` deletes them)")
    console.print(summary)
    if info["by_weights"]:
        table = Table(title="Scores per model and recipe", title_justify="left")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("Model", "left"), ("Weights", "left"), ("Recipe", "left"), ("Scores", "right"), ("Last used", "left"))
        for column, justify in columns:
            table.add_column(column, justify=justify)
        for g in info["by_weights"]:
            table.add_row(escape(g["model"] or "?"), g["weights"][:12], escape(g["recipe"]), str(g["rows"]), _when(g["last_used"]))
        console.print(table)


@cache_app.command("info")
def info_cmd(as_json: JsonOption = False) -> None:
    """Where the cache is, its size, how many scores it holds per model and recipe, and how many
    files it knows cannot be decoded.

    A table on a terminal; when piped, TSV with a header ("field<TAB>value"); --json for one JSON
    object. A damaged cache is moved aside and rebuilt (one warning line), then shown empty.
    """
    from aescore.inference.cache import ScoreCache

    warnings: list[str] = []
    with ScoreCache(warn=warnings.append) as cache:
        info = cache.info()
    for message in warnings:
        say(f"aescore: warning: {message}")
    names = _model_names()
    for group in info["by_weights"]:
        group["model"] = names.get(group["weights"])
    if as_json:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
    elif sys.stdout.isatty():
        _print_table(info)
    else:
        _print_tsv(info)


@cache_app.command("clear")
def clear_cmd() -> None:
    """Delete every cached score and decode failure (no confirmation: aescore can recompute them),
    and any damaged cache copies moved aside earlier.

    The file is emptied rather than deleted, so runs using it at the same time keep working.
    """
    from aescore.inference.cache import ScoreCache

    warnings: list[str] = []
    with ScoreCache(warn=warnings.append) as cache:
        n = cache.clear()
        copies = cache.remove_corrupt_copies()  # including one this very call may have made
        path = cache.path
    for message in warnings:
        say(f"aescore: warning: {message}")
    extra = f" and deleted {copies} damaged cop{'y' if copies == 1 else 'ies'}" if copies else ""
    say(f"aescore: cleared {n} cached score(s) from {path}{extra}")
