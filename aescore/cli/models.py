"""``aescore models``: the model cards aescore can use (``--model NAME``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from aescore.cli.main import app


def model_entries() -> list[dict[str, Any]]:
    """One dict per available model card: name, architecture, summary, trained_on, default, path."""
    from aescore.errors import WeightsError
    from aescore.weights import default_weights_path, list_available

    try:
        default = default_weights_path().resolve()
    except WeightsError:
        default = None
    entries = []
    for path, card in list_available():
        training = card.get("training") or {}
        trained_on = training.get("dataset") if isinstance(training, dict) else None
        entries.append(
            {
                "name": path.stem,
                "architecture": card.get("architecture"),
                "summary": card.get("summary"),
                "trained_on": trained_on,
                "default": default is not None and path.resolve() == default,
                "path": str(path),
                "sha256": card.get("sha256"),
            }
        )
    return entries


@app.command("models")
def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """List the available models (bundled weights and $AESCORE_WEIGHTS_DIR) with their cards' summary.

    Use a name with `aescore score/rank --model NAME`; `*` marks the default.
    """
    entries = model_entries()
    if as_json:
        sys.stdout.write(json.dumps(entries, indent=1, ensure_ascii=False) + "\n")
        return
    if not entries:
        print("aescore: no models found (set AESCORE_WEIGHTS_DIR or pass --model FILE)", file=sys.stderr)
        return
    if not sys.stdout.isatty():
        for e in entries:
            fields = ["*" if e["default"] else "", e["name"], e["architecture"] or "", e["trained_on"] or "", e["summary"] or ""]
            sys.stdout.write("\t".join(str(f) for f in fields) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for col in ("", "name", "architecture", "trained on", "summary"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row("*" if e["default"] else "", e["name"], e["architecture"] or "", e["trained_on"] or "", e["summary"] or "")
    Console().print(table)
