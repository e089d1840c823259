"""``aescore apply DECISIONS.json``: write the contact sheet's decisions into XMP sidecars.

(``aescore report`` itself is built on the culling API; the page is written by
:func:`aescore.report.build_report`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aescore.cli.main import app
from aescore.cli.options import XmpStyle, XmpStyleOption
from aescore.termtext import say

if TYPE_CHECKING:
    from aescore.report import DecisionOutcome


def _rating(r: int | None) -> str:
    return "none" if r is None else str(r)


def _describe_dry_run(outcome: DecisionOutcome) -> str:
    """What applying one decision would do, in one line."""
    from aescore.termtext import display_path

    assert outcome.change is not None
    c, d = outcome.change, outcome.decision
    shown = display_path(str(c.path))
    if c.action == "create":
        return f"would create {shown} (rating {c.new_rating})"
    if c.action == "kept-existing-rating":
        what = "would update" if c.changed else "would leave"
        return f"{what} {shown}, keeping its rating {_rating(c.old_rating)} (a pick keeps an existing rating)"
    if c.changed and c.old_rating != c.new_rating:
        return f"would update {shown} (rating {_rating(c.old_rating)} -> {c.new_rating})"
    if c.changed:
        return f"would update {shown} (score {d.score:.4f}; rating {c.new_rating} already)"
    return f"would leave {shown} as it is (already rating {c.new_rating})"


@app.command("apply")
def apply_cmd(
    decisions: Annotated[Path, typer.Argument(metavar="DECISIONS.json", help="Decisions exported from an aescore contact sheet (aescore report).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show (on stderr) what would change; write nothing.")] = False,
    xmp_style: XmpStyleOption = XmpStyle.lightroom,
) -> None:
    """Write the ratings decided in a contact sheet into the photos' XMP sidecars as xmp:Rating.

    Same merge, naming and atomic-write rules as --write-xmp; a rating already in a sidecar is
    replaced (except by a pick). Only image files get a sidecar; one shared by photos that differ
    only in extension is written for one of them, as with --write-xmp; a sidecar linked out of
    the photo's folder is refused. Photos are never modified. Exit status 3 if some entries or
    sidecars were left out (each reported on stderr).
    """
    from aescore.termtext import display_path
    from aescore.report import apply_decisions, load_decisions

    loaded = load_decisions(decisions)
    for problem in loaded.problems:
        say(f"aescore: skipped: {problem}")
    outcomes = apply_decisions(loaded.decisions, style=xmp_style.value, dry_run=dry_run, model=loaded.model)
    refused = 0
    written = 0
    for outcome in outcomes:
        if outcome.error is not None:
            refused += 1
            say(f"aescore: skipped: sidecar for {display_path(outcome.decision.path)}: {outcome.error}")
            continue
        assert outcome.change is not None
        written += outcome.change.changed
        if dry_run:
            say(f"aescore: {_describe_dry_run(outcome)}")
    if not dry_run:
        unchanged = len(outcomes) - written - refused
        say(f"aescore: {written} sidecar(s) written, {unchanged} already up to date")
    if loaded.problems or refused:
        raise typer.Exit(3)
