"""``aescore learn``: a personal ranking model from the photographer's own ratings."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Optional

import typer

from aescore.cli.main import app
from aescore.cli.options import DeviceOption, JsonOption, ModelOption
from aescore.errors import UsageError

_HELP = """Learn your taste: a personal model from the star ratings and rejects you already gave.

Ratings are read (never written) from XMP sidecars (IMG_1.xmp and IMG_1.JPG.xmp), XMP embedded in the photos, a Lightroom Classic catalog (--catalog), a digiKam database (--digikam-db) or a CSV file (--ratings). Unrated photos are left out. The head reads the base model's embedding, generic score and fault probabilities (--no-generic, --no-faults leave them out); they come from the score cache when `aescore rank` already saw the photos.

The personal model is evaluated against the generic model on held-out shoots (capture date, else folder) and always saved under $XDG_DATA_HOME/aescore/models/ (use it as `aescore rank --model NAME`): the head alone, which scores on top of its base model (keep that model installed; with --fine-tune, the whole network); an existing personal model of that name is replaced only with --replace. --set-default makes it the default only when it beats the generic model.

stdout: the result (text, or one JSON object with --json); stderr: progress, the ratings summary and warnings. Exit status: 0 done; 3 done, but some photos were skipped as unreadable or rated files were missing; 2 usage error; 1 too few ratings or another error.
"""


def _paths_help() -> str:
    return "Photos and folders whose ratings to learn from (searched recursively). May be omitted with --catalog, --digikam-db or --ratings: then every photo they rate is used."


@app.command("learn", help=_HELP)
def learn_cmd(
    paths: Annotated[Optional[list[str]], typer.Argument(metavar="PATH", help=_paths_help(), show_default=False)] = None,
    name: Annotated[str, typer.Option("--name", help="Name of the personal model (use it as --model NAME).", show_default=False)] = "",
    model: ModelOption = None,
    catalog: Annotated[Optional[str], typer.Option("--catalog", metavar="FILE.lrcat", help="Lightroom Classic catalog to read ratings and rejects from (read-only).")] = None,
    digikam_db: Annotated[Optional[str], typer.Option("--digikam-db", metavar="FILE", help="digiKam database (digikam4.db) to read ratings from (read-only).")] = None,
    ratings: Annotated[Optional[str], typer.Option("--ratings", metavar="FILE.csv", help="CSV of path,rating (-1 rejected, 0-5 stars).")] = None,
    no_xmp: Annotated[bool, typer.Option("--no-xmp", help="Do not read XMP sidecars or embedded XMP.")] = False,
    include_aescore: Annotated[bool, typer.Option("--include-aescore-ratings", help="Also learn from ratings aescore wrote itself (--write-xmp); off by default: that would be circular.")] = False,
    no_generic: Annotated[bool, typer.Option("--no-generic", help="Do not give the head the generic score as an input.")] = False,
    no_faults: Annotated[bool, typer.Option("--no-faults", help="Do not give the head the base model's fault probabilities (its reasons head) as inputs.")] = False,
    set_default: Annotated[bool, typer.Option("--set-default", help="Make the personal model the default for score/rank, if it beats the generic model on held-out shoots.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --set-default: make it the default even if it does not beat the generic model.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing personal model of this name (refused without it); a warning says so when it is the default model.")] = False,
    fine_tune: Annotated[bool, typer.Option("--fine-tune", help="Also fine-tune the backbone on a GPU (held out: one fold of shoots; the saved model is trained on the others).")] = False,
    fine_tune_steps: Annotated[Optional[int], typer.Option("--fine-tune-steps", help="Training steps of --fine-tune (default: 4 passes over the photos, 100-2000).")] = None,
    folds: Annotated[int, typer.Option("--folds", help="Held-out folds (whole shoots each).")] = 5,
    min_ratings: Annotated[int, typer.Option("--min-ratings", help="Refuse with fewer rated photos than this.")] = 50,
    device: DeviceOption = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the score cache.")] = False,
    as_json: JsonOption = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    """Learn a personal model from your ratings."""
    from aescore.cli.score import _Stderr
    from aescore.learn import NotEnoughRatings, learn, make_default
    from aescore.sysinfo import prefer_passive_openmp

    if debug:
        os.environ["AESCORE_DEBUG"] = "1"
    if not name:
        raise UsageError("--name NAME is required (the personal model's name)")
    if force and not set_default:
        raise UsageError("--force needs --set-default")
    config = None
    if fine_tune_steps is not None and (not fine_tune or fine_tune_steps < 1):
        raise UsageError("--fine-tune-steps needs --fine-tune and a count >= 1")
    if fine_tune:
        from aescore.devices import resolve_device
        from aescore.learn.finetune import FineTuneConfig

        if resolve_device(device) == "cpu":
            raise UsageError("--fine-tune needs a GPU (--device cuda or mps); none is available to PyTorch")
        config = FineTuneConfig(steps=fine_tune_steps)
    if folds < 2:
        raise UsageError("--folds must be at least 2")
    if min_ratings < 2:
        raise UsageError("--min-ratings must be at least 2")
    prefer_passive_openmp()
    err = _Stderr()
    try:
        result = learn(
            paths or [], name, model=model, ratings_csv=ratings, catalog=catalog, digikam_db=digikam_db,
            read_xmp=not no_xmp, include_aescore=include_aescore, use_generic=not no_generic, use_faults=not no_faults,
            use_cache=not no_cache, device=device, folds=folds, min_rated=min_ratings,
            fine_tune=fine_tune, fine_tune_config=config, replace=replace,
            progress=err.progress_factory(), on_skip=err.skipped,
            on_ratings=lambda report: _print_ratings(report, err), warn=lambda m: err.line(f"aescore: warning: {m}"),
        )
    except NotEnoughRatings as refused:
        if refused.setting is None:
            raise
        raise NotEnoughRatings(_flag_line(refused)) from None
    finally:
        err.stop()
    if result.held_out.ranks_as_generic:
        err.line(f"aescore: note: {_SAME_AS_GENERIC}")
    made_default = result.replaced_default  # still the default: now the new model (learn warned)
    if set_default:
        if not result.held_out.beats_generic and force:
            err.line("aescore: warning: --force: making a personal model the default although it does not beat the generic model on held-out shoots")
        made_default = make_default(result, force=force) or made_default
    _print_result(result, as_json, set_default, made_default)
    if result.skipped or result.ratings.missing or result.ratings.unreadable:
        raise typer.Exit(3)


#: The learn settings a refusal may name, and the flag that changes each.
_FLAGS = {"min_rated": "--min-ratings"}
_SAME_AS_GENERIC = (
    "the personal model ranks these photos as the generic model does: "
    "your ratings agree with it, or are too few to tell"
)


def _flag_line(refused: Any) -> str:
    """A library :class:`~aescore.learn.NotEnoughRatings` that names a setting, as the line that
    names this command's flag instead (``... (--min-ratings N changes this)``)."""
    flag = _FLAGS.get(refused.setting) or "--" + str(refused.setting).replace("_", "-")
    return f"{refused.problem} ({flag} N changes this)"


def _examples(items: list[str]) -> str:
    from aescore.termtext import display_path

    shown = ", ".join(display_path(p) for p in items[:3])
    return f" (e.g. {shown}{', ...' if len(items) > 3 else ''})"


def _print_ratings(report: Any, err: Any) -> None:
    """The ratings summary: one stderr line per category."""
    names = {"csv": "CSV", "lightroom": "Lightroom catalog", "digikam": "digiKam database", "sidecar": "XMP sidecars", "embedded": "embedded XMP"}
    sources = ", ".join(f"{n} from {names[s.value]}" for s, n in report.per_source().items()) or "none"
    per_rating = ", ".join(f"{'rejected' if k == -1 else f'{k} stars'}: {v}" for k, v in report.per_rating().items())
    err.line(f"aescore: ratings: {len(report.ratings)} ({sources})" + (f"; {per_rating}" if per_rating else ""))
    if report.unrated:
        err.line(f"aescore: {report.unrated} photo(s) unrated (left out: unrated is not a negative)")
    if report.by_aescore:
        err.line(
            f"aescore: {report.by_user} of your rating(s) used; {report.by_aescore} rating(s) aescore set itself "
            "and nobody changed left out (--include-aescore-ratings uses them)"
        )
    elif report.aescore_used:
        err.line(f"aescore: {report.by_user} of your rating(s) and {report.aescore_used} aescore set itself used (--include-aescore-ratings)")
    if report.missing:
        err.line(f"aescore: {len(report.missing)} rated file(s) missing{_examples(report.missing)}")
    if report.unreadable:
        err.line(f"aescore: {len(report.unreadable)} XMP packet(s) unreadable{_examples([p for p, _ in report.unreadable])}")


def _features(result: Any) -> list[str]:
    """What the saved head reads (its card's ``training.head.features``), in words."""
    words = {"embedding": "embedding", "generic_score": "generic score", "faults": "fault probabilities"}
    head = (result.card.get("training") or {}).get("head") or {}
    return [words.get(f, f) for f in head.get("features", [])]


def _fmt(iv: Any, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{iv.value:{sign}.3f} [95% CI {iv.low:{sign}.3f}, {iv.high:{sign}.3f}]"


def _print_result(result: Any, as_json: bool, set_default: bool, made_default: bool) -> None:
    from aescore.termtext import display_path

    h = result.held_out
    weights = result.path.with_suffix(".safetensors")
    if as_json:
        out = {
            "name": result.name,
            "path": str(weights),
            "card": str(result.path),
            "photos": result.photos,
            "ratings_per_source": {s.value: n for s, n in result.ratings.per_source().items()},
            "ratings_per_value": {str(k): v for k, v in result.ratings.per_rating().items()},
            "missing": len(result.ratings.missing),
            "unreadable": len(result.ratings.unreadable) + len(result.skipped),
            "held_out": h.to_dict(),
            "held_out_embedding_head": result.baseline.to_dict() if result.baseline is not None else None,
            "features": _features(result),
            "base_model": (result.card.get("training") or {}).get("base_model", {}).get("name"),
            "default": made_default,
            "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        }
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
        return
    size = weights.stat().st_size if weights.exists() else 0
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    base = (result.card.get("training") or {}).get("base_model", {}).get("name", "?")
    gain = h.accuracy_gain
    lines = [
        f"personal model {result.name!r} saved: {display_path(str(weights))} ({shown}; use --model {display_path(result.name)})",
        f"its head reads {', '.join(_features(result)) or 'nothing'} of base model {display_path(str(base))}"
        + ("" if result.card.get("head_only") is None else " (the file holds the head; the base model must stay installed)"),
        f"learned from {result.photos} rated photos; held out: {h.folds} folds by {h.split}, {h.shoots} shoot(s), {h.pairs} pairs with different ratings",
        f"  pairwise accuracy  personal {_fmt(h.personal_accuracy)}",
        f"                     generic  {_fmt(h.generic_accuracy)}",
        f"  Spearman's rho     personal {_fmt(h.personal_spearman)}",
        f"                     generic  {_fmt(h.generic_spearman)}",
    ]
    if result.baseline is not None:
        b = result.baseline
        lines.insert(2, "  (backbone fine-tuned; the figures below are on one held-out fold of shoots)")
        lines.append(f"  embedding head alone, {b.folds} folds: pairwise accuracy {_fmt(b.personal_accuracy)}")
    if h.beats_generic:
        lines.append(f"verdict: BETTER than the generic model on held-out shoots, by {_fmt(gain, signed=True)} pairwise accuracy")
    else:
        lines.append(
            f"verdict: NOT better than the generic model on held-out shoots (accuracy gain {_fmt(gain, signed=True)})"
        )
    if set_default:
        lines.append(
            f"made {result.name!r} the default model" if made_default
            else "not made the default (it does not beat the generic model; --force overrides)"
        )
    sys.stdout.write("\n".join(lines) + "\n")
