"""``aescore cache info|clear``: inspect or empty the score cache."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from aescore.cli.main import app

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


@cache_app.command("info")
def info_cmd(as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Where the cache is, its size, how many scores it holds per model and recipe, and how many
    files it knows cannot be decoded."""
    from aescore.inference.cache import ScoreCache

    with ScoreCache() as cache:
        info = cache.info()
    names = _model_names()
    for group in info["by_weights"]:  # type: ignore[union-attr]
        group["model"] = names.get(group["weights"])
    if as_json:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
        return
    out = sys.stdout
    out.write(f"path\t{info['path']}\n")
    out.write(f"bytes\t{info['bytes']}\n")
    out.write(f"rows\t{info['rows']}\n")
    out.write(f"failures\t{info['failures']}\n")
    for g in info["by_weights"]:  # type: ignore[union-attr]
        name = g["model"] or "?"
        out.write(f"weights\t{g['weights'][:12]}\t{name}\t{g['recipe']}\t{g['rows']}\n")


@cache_app.command("clear")
def clear_cmd() -> None:
    """Delete every cached score and decode failure (no confirmation: aescore can recompute them).

    The file is emptied rather than deleted, so runs using it at the same time keep working.
    """
    from aescore.inference.cache import ScoreCache

    with ScoreCache() as cache:
        n = cache.clear()
        path = cache.path
    print(f"aescore: cleared {n} cached score(s) from {path}", file=sys.stderr)
