"""``aescore evaluate``: the papers' metrics for a weights file on a dataset's test (or validation) split."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from aescore.cli.main import app, config_error_line
from aescore.cli.options import DeviceOption, JsonOption, ModelOption
from aescore.termtext import say, stdout_console


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Option("--dataset", help="ava, aadb or csv.")],
    root: Annotated[Path, typer.Option("--root", help="Dataset folder (AVA/AADB) or CSV file/folder.")],
    weights: ModelOption = None,
    split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
    tta_crops: Annotated[Optional[int], typer.Option(help="MPA: average N random crops per image (official code: 15); default the whole image.")] = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes (default: 4, at most the CPU cores).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Split seed (default: the one the weights were trained with).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Binary label threshold (default: the weights' training threshold).")] = None,
    threshold_inclusive: Annotated[Optional[bool], typer.Option("--threshold-inclusive/--threshold-exclusive", help="Score == threshold is positive (default: as the weights were trained, else the paper's rule: RGNet >=, MPA >).")] = None,
    max_items: Annotated[Optional[int], typer.Option(help="Evaluate a seeded subset of at most N images.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="float16 weights on a GPU, as `aescore score` (default on).")] = None,
    as_json: JsonOption = False,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", metavar="FILE", help="Also write one JSON line per image (path, p_high, label, target) to FILE.")] = None,
) -> None:
    """Accuracy, balanced accuracy, AP, SRCC and LCC of P(high) against the human scores.

    Refuses a split that overlaps the weights' training images. Images go through the same
    inference core as `aescore score`: the same file, weights and --tta-crops give the same P(high).
    stdout: a table on a terminal, TSV (metric, value) when piped, one JSON object with --json.
    """
    from aescore.engine.evaluate import evaluate_weights
    from aescore.engine.presets import default_loader_workers

    def warn(message: str) -> None:
        say(message)

    from aescore.errors import ConfigError, UsageError

    try:
        report = evaluate_weights(
            weights, dataset, root, split=split, tta_crops=tta_crops, device=device, batch_size=batch_size,
            workers=workers if workers is not None else default_loader_workers(), seed=seed, threshold=threshold,
            threshold_inclusive=threshold_inclusive,
            max_items=max_items, amp=amp, warn=warn, predictions=predictions,
        )
    except ConfigError as err:  # the library names the setting; this command's flag has its name
        raise UsageError(config_error_line(err)) from None
    if as_json:
        print(json.dumps(report))
    elif sys.stdout.isatty():
        _print_table(report)
    else:
        for key, value in report.items():
            text = json.dumps(value) if isinstance(value, (dict, list)) else ("" if value is None else str(value))
            print(f"{key}\t{text}")


def _print_table(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    def fmt(value: Any) -> str:
        if value is None:
            return "n/a"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    table = Table(title=f"{report['dataset']} {report['split']} split", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right", overflow="fold")
    for key in ("accuracy", "balanced_accuracy", "average_precision", "srcc", "lcc", "n_images", "n_skipped"):
        table.add_row(key, fmt(report.get(key)))
    if report.get("skipped_reasons"):
        table.add_row("skipped_reasons", escape(", ".join(f"{k} {v}" for k, v in report["skipped_reasons"].items())))
    cm = report.get("confusion_matrix")
    if cm:
        table.add_row(escape("confusion [[tn, fp], [fn, tp]]"), escape(str(cm)))
    table.add_row("threshold", f"{fmt(report.get('threshold'))} ({'>=' if report.get('threshold_inclusive') else '>'})")
    table.add_row("tta_crops", fmt(report.get("tta_crops")))
    table.add_row("split_fingerprint", str(report["split_fingerprint"]))
    table.add_row("weights", escape(str(report["weights"])))
    table.add_row("weights_sha256", str(report["weights_sha256"]))
    table.add_row("train overlap check", str(report["train_overlap_check"]))
    stdout_console().print(table)
