"""`aescore data`: build training data from photo folders and evaluate models on it.

Heavy imports (numpy, scipy, torch) stay inside the commands so ``aescore --help`` stays fast.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from aescore.cli.main import app, config_error_line
from aescore.cli.options import DeviceOption, JsonOption, ModelOption

data_app = typer.Typer(
    help="Build datasets from photo folders (synthetic degradations) and evaluate on them.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_app, name="data", help="Build datasets from photo folders (synthetic degradations) and evaluate on them.")


class _PlainUsage(TyperCommand):
    """Usage line with plain argument names (``SRC_DIR OUT_DIR``, not ``{src_dir} {out_dir}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [re.sub(r"^\{(.*)\}$", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]


def _stderr() -> Any:
    from aescore.termtext import stderr_console

    return stderr_console()


def _progress(console: Any, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _parse_kinds(text: str | None) -> list[str]:
    from aescore.data.degrade import ALL_KINDS
    from aescore.errors import UsageError

    if not text:
        return list(ALL_KINDS)
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad or not kinds:
        raise UsageError(f"unknown fault kind(s) {', '.join(bad) or '(none)'}; available: {', '.join(ALL_KINDS)}")
    return kinds


def _parse_severities(text: str) -> list[int]:
    from aescore.errors import UsageError

    try:
        sev = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        sev = []
    if not sev or any(s not in (1, 2, 3) for s in sev):
        raise UsageError(f"--severities must be a comma-separated subset of 1,2,3, got {text!r}")
    return sev


def _parse_copies(text: str) -> int | str:
    from aescore.errors import UsageError

    if text == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--copies must be a positive integer or 'all', got {text!r}")
    return n


@data_app.command("degrade", cls=_PlainUsage)
def degrade_cmd(
    src_dir: Annotated[Path, typer.Argument(help="Folder of good photographs (only read, never changed).", metavar="SRC_DIR")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write images/, train.csv, test.csv, pairs.csv, manifest.json.", metavar="OUT_DIR")],
    holdout: Annotated[float, typer.Option(help="Fraction of source photos held out for test.csv / pairs.csv.", metavar="FRACTION")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for the hold-out choice and every fault.", metavar="N")] = 0,
    copies: Annotated[str, typer.Option(help="Degraded copies per training photo, or 'all' (every kind x severity).", metavar="N|all")] = "3",
    kinds: Annotated[Optional[str], typer.Option(help="Comma-separated fault kinds (default: all).", metavar="KIND,...")] = None,
    severities: Annotated[str, typer.Option(help="Comma-separated severities among 1,2,3.", metavar="S,...")] = "1,2,3",
    max_side: Annotated[Optional[int], typer.Option(help="Downscale photos so the longer side is at most this.", metavar="PX")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.", metavar="N")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty OUT_DIR (files there may be overwritten).", metavar="")] = False,
    as_json: JsonOption = False,
) -> None:
    """Turn a folder of photos into a degradation dataset for `aescore train --dataset csv`.

    Originals are labelled 1, copies with technical faults (blur, noise, exposure, haze, JPEG, colour cast, tilt, poor crop) 0. A seeded subset of source photos is held out entirely.
    """
    from aescore.data.degrade import build_degraded_dataset
    from aescore.errors import DataError

    if not src_dir.is_dir():
        raise DataError(f"source folder not found: {src_dir}")
    console = _stderr()
    with _progress(console, "degrading") as bar:
        task = bar.add_task("degrade", total=None)
        summary = build_degraded_dataset(
            src_dir,
            out_dir,
            holdout=holdout,
            kinds=_parse_kinds(kinds),
            severities=_parse_severities(severities),
            copies_per_image=_parse_copies(copies),
            seed=seed,
            max_side=max_side,
            workers=workers,
            force=force,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    console.print(
        f"wrote {summary['out_dir']}: {summary['train_sources']} training photos -> {summary['train_rows']} rows "
        f"({summary['train_positive']} positive, {summary['train_negative']} negative); "
        f"{summary['held_out_sources']} held out -> {summary['pairs']} pairs",
        highlight=False,
        soft_wrap=True,
    )
    for item in summary["skipped"]:
        console.print(f"skipped {item['file']}: {item['reason']}", highlight=False, soft_wrap=True)


@data_app.command("pairwise", cls=_PlainUsage)
def pairwise_cmd(
    out_dir: Annotated[Path, typer.Argument(help="A folder made by `aescore data degrade` (or its pairs.csv).", metavar="DIR")],
    model: ModelOption = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", metavar="N")] = 32,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Pairwise accuracy of a model and of the Laplacian sharpness baseline on held-out pairs.

    A pair counts when the original scores above its degraded copy (ties half); reported overall, per fault kind and per severity. Output: a table on a terminal, tab-separated values when piped, one JSON object with --json.
    """
    from aescore.devices import resolve_device
    from aescore.engine.pairwise import laplacian_scores, model_scores, pair_paths, pairwise_accuracy, read_pairs
    from aescore.errors import AescoreError, ConfigError, DeviceError, UsageError

    try:
        resolved = resolve_device(device)
    except ConfigError as err:
        raise UsageError(config_error_line(err, {err.setting: "--device"})) from None
    except DeviceError as err:
        raise AescoreError(f"--device {err.device}: {err.reason}") from None
    pairs_csv = out_dir if out_dir.is_file() else out_dir / "pairs.csv"
    pairs = read_pairs(pairs_csv)
    paths = pair_paths(pairs)
    console = _stderr()
    with _progress(console, "scoring") as bar:
        task = bar.add_task("score", total=len(paths))
        scores, card = model_scores(
            paths, model, batch_size=batch_size, device=resolved, on_progress=lambda d, t: bar.update(task, completed=d)
        )
    with _progress(console, "laplacian") as bar:
        task = bar.add_task("lap", total=len(paths))
        lap: dict[str, float] = {}
        for i, p in enumerate(paths):
            lap.update(laplacian_scores([p]))
            bar.update(task, completed=i + 1)
    result: dict[str, Any] = {
        "pairs_csv": str(pairs_csv),
        "model": {"name": card.get("name") or card.get("architecture"), **pairwise_accuracy(pairs, scores.__getitem__)},
        "laplacian": pairwise_accuracy(pairs, lap.__getitem__),
    }
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    rows = _pairwise_rows(result)
    from aescore.termtext import stdout_console

    out = stdout_console()
    if not out.is_terminal:
        # Piped: tab-separated values with a header, one row per group (data only, no decoration).
        lines = ["group\tpairs\tmodel\tlaplacian", *("\t".join(row) for row in rows)]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"pairwise accuracy on {pairs_csv} (original above degraded copy)")
    for col in ("", "pairs", f"model {result['model']['name']}", "laplacian"):
        table.add_column(col, justify="left" if not col else "right")
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if i == 0 else None)
    out.print(table)


def _pairwise_rows(result: dict[str, Any]) -> list[list[str]]:
    """``[group, pairs, model accuracy, laplacian accuracy]`` rows: overall, per kind, per severity."""
    m, b = result["model"], result["laplacian"]
    rows = [["overall", str(m["n"]), f"{m['accuracy']:.3f}", f"{b['accuracy']:.3f}"]]
    for group, label in (("per_kind", "{}"), ("per_severity", "severity {}")):
        for key, row in m[group].items():
            rows.append([label.format(key), str(row["n"]), f"{row['accuracy']:.3f}", f"{b[group][key]['accuracy']:.3f}"])
    return rows
