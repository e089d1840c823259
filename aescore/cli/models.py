"""``aescore models``: the model cards aescore can use (``--model NAME``), and the default model."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Optional

import typer

from aescore.cli.main import app
from aescore.cli.options import JsonOption
from aescore.errors import UsageError
from aescore.termtext import json_text, say, stdout_console

_COLUMNS = ("default", "name", "stem", "architecture", "trained_on", "summary", "path")


def _trained_on(card: dict[str, Any]) -> str | None:
    training = card.get("training") or {}
    value = training.get("dataset") if isinstance(training, dict) else None
    return value if isinstance(value, str) else None


def models_report() -> dict[str, Any]:
    """What ``aescore models --json`` prints: every model found, the default and where it comes
    from (``config``: the user's choice; ``shipped``), the config file, and name clashes."""
    from aescore.errors import WeightsError
    from aescore.weights import config_path, default_source, default_weights_path, list_models_found, name_clashes

    found = list_models_found()
    default_path, default_error, source = None, None, None
    try:
        source = default_source()
        default_path = default_weights_path()
    except WeightsError as exc:
        default_error = str(exc)
    default_card = default_path.with_suffix(".json").resolve() if default_path is not None else None
    models = []
    for e in found:
        models.append({
            "name": e.name,
            "stem": e.stem,
            "architecture": e.card.get("architecture"),
            "summary": e.card.get("summary"),
            "trained_on": _trained_on(e.card),
            "default": default_card is not None and e.card_path.resolve() == default_card,
            "path": str(e.card_path),
            "sha256": e.card.get("sha256"),
        })
    default = None
    if default_path is not None:
        entry = next((m for m in models if m["default"]), None)
        default = {"name": entry["name"] if entry else default_path.stem, "path": str(default_path), "source": source}
    return {
        "default": default,
        "default_error": default_error,
        "config_file": str(config_path()),
        "models": models,
        "clashes": [{"name": n, "paths": [str(e.card_path) for e in es]} for n, es in name_clashes(found).items()],
    }


def model_entries() -> list[dict[str, Any]]:
    """One dict per available model card: name, stem, architecture, summary, trained_on, default, path, sha256."""
    return list(models_report()["models"])


def _warn(text: str) -> None:
    say(f"aescore: warning: {text}")


@app.command("models")
def models_cmd(
    as_json: JsonOption = False,
    set_default: Annotated[Optional[str], typer.Option("--set-default", metavar="NAME|FILE", help="Make this model the default of score and rank (saved in the user's aescore config.json).", show_default=False)] = None,
    reset_default: Annotated[bool, typer.Option("--reset-default", help="Go back to the shipped default model.")] = False,
) -> None:
    """List the models aescore can find (bundled weights and $AESCORE_WEIGHTS_DIR), or choose the default.

    A model is named by its card's name or its file name (stem): use either with `aescore
    score/rank --model NAME`. `*` marks the default: the shipped model unless you chose another
    with --set-default (models in $AESCORE_WEIGHTS_DIR never become the default by themselves).
    A name that several different models answer to is reported, and refused by --model.

    stdout: a table on a terminal, else TSV with a header row; --json: one JSON object.
    """
    from aescore.termtext import display_path, escape_path
    from aescore.weights import config_path, set_default_model

    if set_default is not None and reset_default:
        raise UsageError("--set-default and --reset-default exclude each other")
    if set_default is not None or reset_default:
        chosen = set_default_model(set_default)
        report = models_report()
        name = report["default"]["name"] if report["default"] else "?"
        if chosen is None:
            say(f"aescore: the default model is the shipped one again: {display_path(name)}")
        else:
            say(f"aescore: default model is now {display_path(name)} ({display_path(str(chosen))}); saved in {display_path(str(config_path()))}")
        return

    report = models_report()
    if as_json:
        sys.stdout.write(json_text(json.dumps(report, indent=1, ensure_ascii=False)) + "\n")
        return
    for clash in report["clashes"]:
        paths = "; ".join(display_path(p) for p in clash["paths"])
        _warn(f"name '{display_path(clash['name'])}' is used by {len(clash['paths'])} different models ({paths}); pass the file path to --model")
    if report["default_error"]:
        _warn(f"no usable default model: {display_path(report['default_error'])}")
    if not report["models"]:
        say("aescore: no models found (set AESCORE_WEIGHTS_DIR or pass --model FILE)")
        return
    rows = [
        ["*" if m["default"] else "", m["name"], m["stem"], m["architecture"] or "", m["trained_on"] or "", m["summary"] or "", m["path"]]
        for m in report["models"]
    ]
    if not sys.stdout.isatty():
        lines = ["\t".join(_COLUMNS)] + ["\t".join(escape_path(str(f)) for f in row) for row in rows]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for col in ("", "name", "file", "architecture", "trained on", "summary"):
        table.add_column(col, overflow="fold")
    for row in rows:
        # Text(...): names and summaries are data, never Rich markup
        table.add_row(*(Text(display_path(str(f))) for f in row[:6]))
    stdout_console().print(table)
