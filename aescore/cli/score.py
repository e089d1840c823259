"""``aescore score`` and ``aescore rank``: parse options, call :mod:`aescore.cull`, print.

Every option is declared once, as a field of :class:`Options` whose ``Annotated`` type carries its
Typer declaration; both commands' signatures are generated from those fields (``rank`` adds the
fields marked :data:`RANK_ONLY`). Heavy libraries (torch, numpy) are imported only when a photo
actually has to go through the network, so a fully cached re-rank finishes in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import math
import os
import sys
import time
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional

import typer

from aescore.cli.main import app, config_error_line
from aescore.cli.options import DeviceOption, ModelOption, XmpStyle, XmpStyleOption
from aescore.errors import ConfigError, UsageError
from aescore.inference.onnx_runtime import Runtime

_SCORE_MEANING = """
The score is the model's probability, in [0, 1], that the photo belongs to its "high" class as learned from its training data; see the model card (`aescore models`). The bundled default model learned "high" as "free of technical faults" (blur, noise, bad exposure, haze, JPEG artefacts, colour casts) from synthetic degradations, not from human ratings: it does not judge composition or taste. A model trained on AVA learns what photographers' votes rated above average. It is printed with 4 decimals; "high" marks scores >= 0.5. It is not an absolute grade: compare photos scored by the same model, e.g. to decide which shots to look at first.

stdout carries the results only (a table on a terminal, else TSV "score<TAB>path"); progress, skipped files, warnings and a summary line go to stderr. Photos are only read, never changed.

Exit status: 0 every input was scored (also when no photos were found: a warning says so); 3 some were skipped (unreadable or missing file, or a sidecar aescore refused to change; one stderr line each) and the rest were printed; 2 usage error; 1 other fatal error (e.g. missing weights); 130 interrupted (what was finished stays cached).
"""

_IN, _MODEL, _OUT, _CULL, _ACT = "Input", "Model", "Output", "Culling", "Actions"
_CLUSTER = "Cluster"
RANK_ONLY = "rank-only"  # Annotated marker: the option exists on `rank` only
PRINTING = "printing"  # Annotated marker: an option about stdout, which `report` does not print


class Format(str, enum.Enum):
    """Output formats of score/rank."""

    table = "table"  # Rich table on a terminal, TSV when piped
    tsv = "tsv"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    print0 = "print0"


class EngineOpt(str, enum.Enum):
    """``--engine``: :class:`aescore.cull.engines.Engine`, declared here so ``--help`` imports no culling code."""

    local = "local"
    ray = "ray"


class StarScaleOpt(str, enum.Enum):
    """``--star-scale``: how stars are given (:mod:`aescore.inference.stars`)."""

    auto = "auto"  # absolute where the model has a calibrated scale, else relative
    absolute = "absolute"
    relative = "relative"


def _check_help() -> str:
    """``--check``'s help: the checks there are, with what each adds."""
    from aescore.checks import available_checks

    listed = "; ".join(f"{c.name}: {c.description}" for c in available_checks() if c.visible and c.name != "score")
    return f"Add a check's fields to every output format (repeatable). Checks: {listed}."


_CHECK_HELP = _check_help()


def _opt(*names: str, panel: str, help: str, metavar: str | None = None, **kw: Any) -> Any:
    return typer.Option(*names, help=help, metavar=metavar, rich_help_panel=panel, show_default=kw.pop("show_default", False), **kw)


@dataclass
class Options:
    """Every option of ``score`` / ``rank``, declared once (see the module docstring)."""

    paths: Annotated[Optional[list[str]], typer.Argument(metavar="PATH...", help="Photos and folders (searched recursively; files with other extensions are ignored).", show_default=False)] = None
    files_from: Annotated[Optional[str], _opt("--files-from", metavar="FILE", panel=_IN, help="Read more paths from FILE ('-' = stdin), one per line.")] = None
    from0: Annotated[bool, _opt("--from0", panel=_IN, help="--files-from entries are NUL-separated (find -print0).")] = False
    shard: Annotated[Optional[str], _opt("--shard", metavar="I/N", panel=_IN, help="Score only the I-th of N deterministic parts of the input (1-based).")] = None
    model: ModelOption = None
    device: DeviceOption = "auto"
    runtime: Annotated[Runtime, _opt("--runtime", panel=_MODEL, help="What runs the network: onnx = ONNX Runtime on the CPU (starts in a fraction of a second, torch is never imported; needs the model's exported ONNX program, which the default model has); torch = PyTorch (GPUs, --tta-crops, models without an ONNX program; needs pip install 'aescore\\[train]'); auto = torch where PyTorch is installed and sees a CUDA GPU, else onnx where it can run, else torch. Scores agree within 1e-4.", show_default=True)] = Runtime.auto
    batch_size: Annotated[Optional[int], _opt("--batch-size", min=1, metavar="N", panel=_MODEL, help="Images per forward pass (default: 4 on CPU, 64 on GPU).")] = None
    workers: Annotated[Optional[int], _opt("--workers", min=0, metavar="N", panel=_MODEL, help="Decoding worker processes (default: one per core, none for a run of one batch; 0 = decode in the main process). With --engine ray: the number of Ray workers instead, each decoding and scoring its share with its own copy of the model (default: as many as the cluster's CPUs hold, or its GPUs with --gpus-per-worker).")] = None
    tta_crops: Annotated[Optional[int], _opt("--tta-crops", min=0, metavar="N", panel=_MODEL, help="Average N random crops of the model's training crop size (the MPA paper's evaluation) instead of one pass over the whole photo; ~N times slower.")] = None
    no_cache: Annotated[bool, _opt("--no-cache", panel=_MODEL, help="Neither read nor write the score cache.")] = False
    engine: Annotated[EngineOpt, _opt("--engine", panel=_CLUSTER, help="Where the photos the cache lacks are decoded and scored: local = this process (with --workers decode workers); ray = Ray Data workers on this machine or a Ray cluster (RAY_ADDRESS or --ray-address; needs pip install 'aescore\\[ray]'). Listing, the cache, outputs and sidecars stay in this process; the scores are the same.", show_default=True)] = EngineOpt.local
    ray_address: Annotated[Optional[str], _opt("--ray-address", metavar="ADDR", panel=_CLUSTER, help="With --engine ray: the Ray cluster to join (HOST:PORT of its head, as `ray start --head` prints). Default: RAY_ADDRESS, else a cluster `ray start` runs on this machine, else a Ray started for this run on this machine.")] = None
    gpus_per_worker: Annotated[Optional[float], _opt("--gpus-per-worker", min=0, metavar="X", panel=_CLUSTER, help="With --engine ray: GPUs each Ray worker reserves (e.g. 1, or 0.5 to share one); it then runs PyTorch on its GPU. Default 0: CPU workers.")] = None
    cpus_per_worker: Annotated[Optional[float], _opt("--cpus-per-worker", metavar="X", panel=_CLUSTER, help="With --engine ray: CPUs each Ray worker reserves (default 1); the network's threads, and for 2 or more, decode processes beside the network (one per CPU beyond the first: worth it for GPU workers).")] = None
    format: Annotated[Optional[Format], _opt("--format", "-f", panel=_OUT, help="table (TSV when piped), tsv, json (one array), jsonl, csv, print0 (paths, NUL-separated)."), PRINTING] = None
    json: Annotated[bool, _opt("--json", panel=_OUT, help="Same as --format json."), PRINTING] = False
    jsonl: Annotated[bool, _opt("--jsonl", panel=_OUT, help="Same as --format jsonl."), PRINTING] = False
    csv: Annotated[bool, _opt("--csv", panel=_OUT, help="Same as --format csv."), PRINTING] = False
    print0: Annotated[bool, _opt("--print0", "-0", panel=_OUT, help="Same as --format print0 (for xargs -0)."), PRINTING] = False
    check: Annotated[Optional[list[str]], _opt("--check", metavar="NAME", panel=_OUT, help=_CHECK_HELP)] = None
    top: Annotated[Optional[int], _opt("--top", min=0, metavar="N", panel=_OUT, help="Only the N best."), RANK_ONLY] = None
    bottom: Annotated[Optional[int], _opt("--bottom", min=0, metavar="N", panel=_OUT, help="Only the N worst (still printed best first)."), RANK_ONLY] = None
    min_score: Annotated[Optional[float], _opt("--min-score", metavar="X", panel=_OUT, help="Only photos scoring >= X."), RANK_ONLY] = None
    html: Annotated[Optional[str], _opt("--html", metavar="FILE", panel=_OUT, help="Also write the contact sheet of the whole run to FILE (see `aescore report`; implies --stars)."), RANK_ONLY, PRINTING] = None
    crop: Annotated[Optional[str], _opt("--crop", metavar="WxH", panel=_OUT, help="Add a crop box left,top,right,bottom of aspect W:H per photo, in the photo's own pixels: around the faces with headroom, else where the photo has the most structure, else centred (runs the faces check).")] = None
    group_bursts: Annotated[Optional[float], _opt("--group-bursts", metavar="SECONDS", panel=_CULL, help="Group photos taken within SECONDS of the previous one (EXIF time, else file mtime).")] = None
    best_of_group: Annotated[bool, _opt("--best-of-group", panel=_CULL, help="Print only the best photo of each burst group.")] = False
    similarity: Annotated[Optional[float], _opt("--similarity", metavar="X", panel=_CULL, help="Also split bursts where consecutive photos' embedding cosine similarity < X (e.g. 0.6 with the default model).")] = None
    stars: Annotated[bool, _opt("--stars", panel=_CULL, help="1-5 stars: by percentile within the run (top 10% 5, next 20% 4, middle 40% 3, next 20% 2, bottom 10% 1), capped by the score on the model's fixed scale (--star-scale).")] = False
    star_scale: Annotated[StarScaleOpt, _opt("--star-scale", panel=_CULL, help="absolute = the percentile stars capped by the score on the model's calibrated scale (the default model: below 'flawed' at most 2 stars; see docs/usage.md); relative = percentiles alone; auto = absolute where the model has a calibrated scale, else relative. absolute/relative imply --stars.", show_default=True)] = StarScaleOpt.auto
    reject_below: Annotated[Optional[float], _opt("--reject-below", metavar="X", panel=_CULL, help="Stars -1 (rejected) for scores below X (implies --stars).")] = None
    reject_closed_eyes: Annotated[bool, _opt("--reject-closed-eyes", panel=_CULL, help="Stars -1 (rejected) for photos whose main faces have closed eyes (runs the faces check; implies --stars).")] = False
    no_face_cap: Annotated[bool, _opt("--no-face-cap", panel=_CULL, help="Where the faces check ran, do not cap photos with closed eyes or a soft face at 2 stars.")] = False
    write_xmp: Annotated[bool, _opt("--write-xmp", panel=_ACT, help="Write stars as xmp:Rating and the score as aescore:Score into XMP sidecars of the printed photos (implies --stars).")] = False
    xmp_style: XmpStyleOption = XmpStyle.lightroom
    overwrite_rating: Annotated[bool, _opt("--overwrite-rating", panel=_ACT, help="Replace a rating already in a sidecar (kept by default).")] = False
    dry_run: Annotated[bool, _opt("--dry-run", panel=_ACT, help="Show (on stderr) what --write-xmp / --copy-to / --link-to would do; write nothing.")] = False
    copy_to: Annotated[Optional[str], _opt("--copy-to", metavar="DIR", panel=_ACT, help="Copy the printed photos into DIR (created if needed; existing files are never overwritten).")] = None
    link_to: Annotated[Optional[str], _opt("--link-to", metavar="DIR", panel=_ACT, help="Symlink the printed photos into DIR (created if needed; existing files are never overwritten).")] = None
    thumbs: Annotated[Optional[str], _opt("--thumbs", metavar="DIR", panel=_ACT, help="Write the --crop box of each printed photo as a W x H JPEG into DIR (created if needed; named after the photo; files aescore did not write are never overwritten).")] = None
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False

    def output_format(self) -> Format:
        """The one format chosen by ``--format`` or an alias (a usage error if several)."""
        chosen = [f for f, on in ((Format.json, self.json), (Format.jsonl, self.jsonl), (Format.csv, self.csv), (Format.print0, self.print0)) if on]
        if self.format is not None:
            chosen.insert(0, self.format)
        if len(set(chosen)) > 1:
            raise UsageError(f"choose one output format, not {' and '.join(f.value for f in dict.fromkeys(chosen))}")
        return chosen[0] if chosen else Format.table

    def validate(self) -> None:
        """Usage errors found before any photo is read."""
        self.output_format()
        for flag, number in (("--min-score", self.min_score), ("--reject-below", self.reject_below),
                             ("--group-bursts", self.group_bursts), ("--similarity", self.similarity)):
            if number is not None and not math.isfinite(number):
                raise UsageError(f"{flag} must be a finite number, not {number}")
        if self.top is not None and self.bottom is not None:
            raise UsageError("--top and --bottom exclude each other")
        if self.copy_to and self.link_to:
            raise UsageError("--copy-to and --link-to exclude each other")
        for flag, dest in (("--copy-to", self.copy_to), ("--link-to", self.link_to), ("--thumbs", self.thumbs)):
            # Checked before scoring so a long run does not end in this error with results half printed.
            if dest and os.path.exists(dest) and not os.path.isdir(dest):
                raise UsageError(f"{flag} {dest}: exists and is not a folder")
        if (self.best_of_group or self.similarity is not None) and self.group_bursts is None:
            raise UsageError("--best-of-group and --similarity need --group-bursts SECONDS")
        if self.group_bursts is not None and self.group_bursts < 0:
            raise UsageError("--group-bursts must be >= 0 seconds")
        if self.similarity is not None and not -1.0 <= self.similarity <= 1.0:
            raise UsageError("--similarity is a cosine similarity in [-1, 1]")
        if (self.overwrite_rating or self.xmp_style is not XmpStyle.lightroom) and not self.write_xmp:
            raise UsageError("--overwrite-rating and --xmp-style need --write-xmp")
        self.crop_size()  # a bad --crop is one line before any photo is read
        if self.thumbs and not self.crop:
            raise UsageError("--thumbs needs --crop WxH (the thumbnails' size and aspect)")
        if self.dry_run and not (self.write_xmp or self.copy_to or self.link_to or self.thumbs):
            raise UsageError("--dry-run needs --write-xmp, --copy-to, --link-to or --thumbs")
        if self.from0 and not self.files_from:
            raise UsageError("--from0 needs --files-from")
        if self.engine is not EngineOpt.ray:
            given = [flag for flag, value in (("--ray-address", self.ray_address), ("--gpus-per-worker", self.gpus_per_worker),
                                              ("--cpus-per-worker", self.cpus_per_worker)) if value is not None]
            if given:
                raise UsageError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine ray")
        self.asked_checks()  # an unknown --check NAME is a usage error before any photo is read
        if self.html:
            # Checked before scoring, so a long run does not end in this error (nor overwrite a photo).
            from aescore.report import ReportError, check_output

            try:
                check_output(os.path.expanduser(self.html))
            except ReportError as exc:
                raise UsageError(f"--html/--output: {exc}") from None

    def settings(self) -> Any:
        """The :class:`aescore.cull.Settings` these options ask for."""
        from aescore.cull import Engine, RayOptions, Settings

        ray = RayOptions(self.ray_address, self.gpus_per_worker or 0.0, 1.0 if self.cpus_per_worker is None else self.cpus_per_worker)
        return Settings(self.model, self.device or "auto", self.batch_size, self.workers, self.tta_crops, not self.no_cache,
                        runtime=self.runtime, engine=Engine(self.engine.value), ray=ray)

    def asked_checks(self) -> list[Any]:
        """The checks the user asked for (``--check`` and the checks' own flags): their fields are printed."""
        from aescore.checks import get_check

        return [get_check(name) for name in dict.fromkeys(self.check or [])]

    def crop_size(self) -> tuple[int, int] | None:
        """``--crop WxH`` as (W, H), None without it (a usage error when malformed)."""
        from aescore.cull.crops import parse_crop

        return parse_crop(self.crop) if self.crop is not None else None

    def checks(self) -> list[Any]:
        """Every check the run needs besides the score: the asked ones, then the burst grouping's,
        the faces for ``--reject-closed-eyes`` and ``--crop``, and the framing for ``--crop``."""
        from aescore.checks import get_check

        needed = ["capture"] if self.group_bursts is not None else []
        needed += ["faces"] if (self.reject_closed_eyes or self.crop) else []
        needed += ["framing"] if self.crop else []
        asked = self.asked_checks()
        return asked + [get_check(n) for n in needed if all(c.name != n for c in asked)]

    def page_checks(self) -> list[Any]:
        """The contact sheet's checks (run when the model can serve them): those that declare ``report``."""
        from aescore.checks import available_checks

        return [c for c in available_checks() if c.report] if self.html else []


class _Stderr:
    """stderr lines that do not tear a live Rich progress bar; progress only on a terminal."""

    def __init__(self) -> None:
        self.progress: Any = None

    def line(self, text: str) -> None:
        from aescore.termtext import terminal_text

        text = terminal_text(text)
        if self.progress is not None:
            from rich.text import Text

            self.progress.console.print(Text(text), soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def progress_factory(self) -> Callable[[int, int], Callable[[int], None] | None]:
        def start(total: int, done_already: int) -> Callable[[int], None] | None:
            if not sys.stderr.isatty():
                return None
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from aescore.termtext import stderr_console

            self.progress = Progress(
                TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=stderr_console(), transient=True,
            )
            self.progress.start()
            task = self.progress.add_task("scoring", total=total)
            return lambda n: self.progress.advance(task, n)

        return start

    def skipped(self, path: str, reason: str) -> None:
        """The one line for a skipped input (control characters and odd bytes escaped)."""
        from aescore.termtext import display_path

        self.line(f"aescore: skipped {display_path(path)}: {display_path(reason)}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _read_inputs(o: Options) -> list[str]:
    from aescore.inference.discover import read_path_list

    inputs = list(o.paths or [])
    if o.files_from:
        if o.files_from == "-":
            inputs += read_path_list(sys.stdin.buffer, o.from0)
        else:
            try:
                with open(o.files_from, "rb") as fh:
                    inputs += read_path_list(fh, o.from0)
            except OSError as err:
                raise UsageError(f"--files-from {o.files_from}: {err.strerror}") from None
    elif not inputs:
        raise UsageError("no photos given: pass PATH... or --files-from FILE")
    return inputs


def _describe_sidecar_change(change: Any, score: float, shown: str) -> str:
    """One dry-run line for a :class:`~aescore.inference.xmp.SidecarChange`."""
    if change.action == "create":
        return f"would create {shown} (rating {change.new_rating}, score {score:.4f})"
    if change.action == "kept-existing-rating":
        what = f"would update {shown} (score {score:.4f})" if change.changed else f"would leave {shown} as it is"
        return f"{what}, keeping its rating {change.old_rating} (--overwrite-rating replaces it)"
    if change.changed:
        return f"would update {shown} (rating {change.old_rating} -> {change.new_rating}, score {score:.4f})"
    return f"would leave {shown} as it is (already up to date)"


def _act(o: Options, chosen: list[Any], err: _Stderr, model_tag: str) -> tuple[int, int]:
    """Write sidecars, copy/link the printed photos and write their thumbnails; returns the number
    of sidecars refused and of thumbnails that could not be made."""
    from aescore import cull
    from aescore.termtext import display_path

    refused = 0
    if o.write_xmp:
        outcomes = cull.write_sidecars(chosen, model_tag, o.xmp_style.value, o.overwrite_rating, o.dry_run)
        written = 0
        for out in outcomes:
            if out.error is not None:
                refused += 1
                err.skipped(f"sidecar for {out.photo.path}", out.error)
                continue
            written += out.change.changed
            if o.dry_run:
                err.line(f"aescore: {_describe_sidecar_change(out.change, out.photo.score, display_path(str(out.change.path)))}")
        if not o.dry_run:
            err.line(f"aescore: {written} sidecar(s) written, {len(outcomes) - written - refused} already up to date")
    dest, link = (o.copy_to, False) if o.copy_to else (o.link_to, True)
    if dest:
        mode = "link" if link else "copy"
        result = cull.copy_photos(chosen, dest, link=link, dry_run=o.dry_run)
        for src, dst in result.pairs if o.dry_run else []:
            err.line(f"aescore: would {mode} {display_path(str(src))} -> {display_path(str(dst))}")
        if not o.dry_run:
            err.line(f"aescore: {result.summary()} into {display_path(dest)}")
    size = o.crop_size()
    failed = 0
    if o.thumbs and size is not None:
        thumbs = cull.write_thumbs(chosen, o.thumbs, size, dry_run=o.dry_run)
        for path, reason in thumbs.errors:
            failed += 1
            err.skipped(f"thumbnail of {path}", reason)
        boxes = {p.path: p.crop for p in chosen}
        for placed in thumbs.placements if o.dry_run else []:
            crop = ",".join(str(v) for v in boxes[placed.source])
            err.line(f"aescore: would write {display_path(str(placed.destination))} ({size[0]}x{size[1]}, crop {crop} "
                     f"of {display_path(placed.source)})")
        if not o.dry_run:
            err.line(f"aescore: thumbnails: {thumbs.summary()} into {display_path(o.thumbs)}")
    return refused, failed


def _emit(fmt: Format, chosen: list[Any], checks: list[Any]) -> None:
    from aescore.cull import output

    if fmt is Format.table and sys.stdout.isatty():
        from aescore.termtext import stdout_console

        if chosen:
            stdout_console().print(output.build_table(chosen, checks))
        return
    formatters = {
        Format.print0: lambda: output.format_print0(chosen),
        Format.json: lambda: output.format_json(chosen, checks),
        Format.jsonl: lambda: output.format_jsonl(chosen, checks),
        Format.csv: lambda: output.format_csv(chosen, checks),
    }
    text = formatters.get(fmt, lambda: output.format_tsv(chosen, checks))()
    # Bytes with surrogateescape: file names that are not valid UTF-8 come out as their exact bytes.
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `head`) has gone: not an error. Point stdout at devnull so the
        # interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _legend(run: Any, fmt: Format) -> str | None:
    """One stderr line under a terminal table: which model, what its "high" means, how to read it."""
    if fmt is not Format.table or not sys.stdout.isatty() or not run.photos:
        return None
    summary = " ".join(str(run.card.get("summary") or "").split())
    if len(summary) > 140:
        summary = summary[:139].rstrip() + "…"
    meaning = f" ({summary})" if summary else ""
    return (f"aescore: score = P(high) under model {run.model_name}{meaning}; "
            "compare photos within this set, not across models")


def _write_report(out: str, result: Any, problems: list[Any], err: _Stderr) -> None:
    """The contact sheet of every photo of the run (not only the printed ones: the page filters)."""
    import base64

    from aescore.termtext import display_path
    from aescore.report import ReportError, ReportPhoto, build_report

    from aescore.checks import FieldKind

    # The page gets every field a check prints (the score has its own place); hidden fields feed
    # its thumbnail and overlay.
    printed = {f.name for c in result.checks if c.name != "score" for f in c.fields if f.kind is not FieldKind.HIDDEN}
    photos = []
    for p in result.photos:
        thumb = p.fields.get("thumbnail")
        extra = {k: v for k, v in p.fields.items() if k in printed}
        photos.append(ReportPhoto(p.path, p.score, p.rank, p.stars, p.group, p.best, extra,
                                  base64.b64decode(thumb) if thumb else None, p.fields.get("region_map")))
    from aescore.data.transforms import EvalMode, Preprocess

    recipe = Preprocess.from_card(result.card["preprocess"])
    try:
        stats = build_report(
            photos, [(s.path, s.reason) for s in [*problems, *result.skipped]], os.path.expanduser(out), title=f"aescore: {len(photos)} photos",
            model=result.model_tag, overlay_max_aspect=recipe.max_aspect if recipe.mode is EvalMode.SHORTER else None,
        )
    except ReportError as exc:
        raise UsageError(f"--html/--output: {exc}") from None
    err.line(f"aescore: contact sheet written to {display_path(out)} ({stats.photos} photos, {stats.thumbnails} thumbnails)")


def run(o: Options, ranked: bool, emit: bool = True) -> int:
    """Score/rank per ``o``; prints results to stdout (unless not ``emit``) and returns the exit status (0 or 3)."""
    from aescore import cull
    from aescore.inference.cache import ScoreCache
    from aescore.inference.discover import parse_shard, shard
    from aescore.sysinfo import prefer_passive_openmp

    prefer_passive_openmp()  # before anything imports torch (decode workers share the cores)
    start = time.perf_counter()
    o.validate()
    fmt = o.output_format()
    shard_spec = None
    if o.shard:
        try:
            shard_spec = parse_shard(o.shard)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        settings = o.settings()
    except ConfigError as exc:
        raise UsageError(config_error_line(exc)) from None
    if o.star_scale is StarScaleOpt.absolute:
        # Refused before any photo is read: the model's card (read without torch) names its scale.
        from aescore.inference.loading import find_model
        from aescore.inference.stars import resolve_star_scale

        ref = find_model(settings.model)
        try:
            resolve_star_scale("absolute", ref.name, str(ref.card["sha256"]))
        except ValueError as exc:
            raise UsageError(f"--star-scale: {exc}") from None
    err = _Stderr()
    files, problems = cull.find_photos(_read_inputs(o))
    for s in problems:
        err.skipped(s.path, s.reason)
    if not files and not problems:
        err.line("aescore: warning: no photos found (supported: JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC, camera RAW)")
    if shard_spec:
        files = shard(files, *shard_spec)
    cache = None if o.no_cache else ScoreCache(warn=lambda m: err.line(f"aescore: warning: {m}"))
    # Ray prints its own notes (a task retried after a worker died) on stdout, which carries the
    # results only: during a Ray run (its shutdown included) they go to stderr.
    ray_notes = contextlib.redirect_stdout(sys.stderr) if o.engine is EngineOpt.ray else contextlib.nullcontext()
    try:
        with ray_notes:
            result = cull.score_photos(
                files, settings, o.checks(), with_embeddings=o.similarity is not None,
                on_skip=err.skipped, progress=err.progress_factory(), cache=cache, optional_checks=o.page_checks(),
            )
    finally:
        err.stop()
        if cache is not None:
            cache.close()

    photos = result.photos
    cull.assign_ranks(photos)
    if o.group_bursts is not None:
        cull.group_bursts(photos, o.group_bursts, o.similarity)
    if o.stars or o.reject_below is not None or o.write_xmp or o.html or o.reject_closed_eyes or o.star_scale is not StarScaleOpt.auto:
        # (--star-scale absolute for a model without a scale was refused before scoring.)
        cull.assign_stars(photos, o.reject_below, face_cap=not o.no_face_cap, reject_closed_eyes=o.reject_closed_eyes,
                          model_name=result.model_name, model_sha256=result.model_sha256, scale=o.star_scale.value)
    crop = o.crop_size()
    if crop is not None:
        cull.assign_crops(photos, crop)
    chosen = cull.select(photos, ranked, o.top, o.bottom, o.min_score, o.best_of_group)
    if emit:
        asked = {"score", *(c.name for c in o.asked_checks())}
        shown = [c for c in result.checks if c.name in asked]
        _emit(fmt, chosen, shown)
        legend = _legend(result, fmt)
        if legend:
            err.line(legend)
    if o.html:
        _write_report(o.html, result, problems, err)
    refused, no_thumb = _act(o, chosen, err, result.model_tag)

    skipped = len(problems) + len(result.skipped)
    elapsed = time.perf_counter() - start
    err.line(
        f"aescore: {len(photos)} scored ({result.from_cache} cached, {result.computed} computed), "
        f"{skipped} skipped, " + (f"{len(chosen)} printed" if emit else f"{len(photos)} in the page")
        + (f", {refused} sidecar(s) refused" if refused else "")
        + (f", {no_thumb} thumbnail(s) not made" if no_thumb else "")
        + f" in {elapsed:.1f}s"
    )
    return 3 if (skipped or refused or no_thumb) else 0


_OUTPUT = Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="The page to write (its thumbnails go to FILE's name + _files/ beside it).", show_default=False)]


def _flagged_checks() -> list[Any]:
    """The checks that declare a flag of their own, by name."""
    from aescore.checks import available_checks

    return [c for c in available_checks() if c.flag]


def _command(kind: str) -> Callable[..., None]:
    """A command function whose signature is :class:`Options`' fields (``rank`` and ``report`` also
    get the :data:`RANK_ONLY` ones; ``report`` none of the :data:`PRINTING` ones, and ``--output``);
    Typer reads the signature, the body builds :class:`Options`."""
    hints = typing.get_type_hints(Options, include_extras=True)
    params = []
    for f in dataclasses.fields(Options):
        marks = getattr(hints[f.name], "__metadata__", ())
        if (RANK_ONLY in marks and kind == "score") or (PRINTING in marks and kind == "report"):
            continue
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]))
    if kind == "report":
        params.insert(1, inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, annotation=_OUTPUT))
    # A check's own flag (--exif, --reasons) is an alias of --check NAME, declared by the check.
    flags = {f"check_{c.name}": c.name for c in _flagged_checks()}
    at = next(i for i, p in enumerate(params) if p.name == "check") + 1
    for i, c in enumerate(_flagged_checks()):
        option = Annotated[bool, _opt(str(c.flag), panel=_OUT, help=c.flag_help)]
        params.insert(at + i, inspect.Parameter(f"check_{c.name}", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=option))

    def command(**kwargs: Any) -> None:
        if kwargs.get("debug"):
            os.environ["AESCORE_DEBUG"] = "1"
        on = [name for param, name in flags.items() if kwargs.pop(param)]
        kwargs["check"] = [*on, *(kwargs.get("check") or [])]
        if kind == "report":
            kwargs["html"] = kwargs.pop("output")
        code = run(Options(**kwargs), ranked=kind != "score", emit=kind != "report")
        if code:
            raise typer.Exit(code)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return command


app.command("score", help="Score photos (input order).\n\n" + _SCORE_MEANING)(_command("score"))
app.command("rank", help="Rank photos, best first (ties by path).\n\n" + _SCORE_MEANING)(_command("rank"))
app.command("report", help=(
    "Write a contact sheet of the run to a web page: thumbnails in rank order (or by burst), score, stars, "
    "EXIF, the model's per-region map, skipped files; filters, sort, and keyboard decisions exported as JSON "
    "for `aescore apply`. Works offline from file://; photos are never modified. Same options as `rank`, "
    "without the stdout formats; progress, skipped files and a summary go to stderr.\n\n"
    + _SCORE_MEANING.split("\n\nstdout")[0]
    + "\n\nExit status: 0 every input was scored; 3 some were skipped (they are listed in the page); 2 usage error; 1 other fatal error; 130 interrupted.\n"
))(_command("report"))
