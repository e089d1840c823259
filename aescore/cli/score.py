"""``aescore score`` and ``aescore rank``: score photo files and folders, rank and cull them.

Heavy libraries (torch, numpy) are imported only when a photo actually has to go through the
network, so a fully cached re-rank starts and finishes in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional

import typer

from aescore.cli.main import app
from aescore.errors import UsageError

_SCORE_MEANING = """
The score is the model's probability, in [0, 1], that the photo belongs to its "high" class as learned from its training data; see the model card (`aescore models`). The bundled default model learned "high" as "free of technical faults" (blur, noise, bad exposure, haze, JPEG artefacts, colour casts) from synthetic degradations, not from human ratings: it does not judge composition or taste. A model trained on AVA learns what photographers' votes rated above average. It is printed with 4 decimals; "high" marks scores >= 0.5. It is not an absolute grade: compare photos scored by the same model, e.g. to decide which shots to look at first.

stdout carries the results only (a table on a terminal, else TSV "score<TAB>path"); progress, skipped files, warnings and a summary line go to stderr. Photos are only read, never changed.

Exit status: 0 every input was scored (also when no photos were found: a warning says so); 3 some were skipped (unreadable or missing file, or a sidecar aescore refused to change; one stderr line each) and the rest were printed; 2 usage error; 1 other fatal error (e.g. missing weights).
"""

_IN, _MODEL, _OUT, _CULL, _ACT = "Input", "Model", "Output", "Culling", "Actions"

Paths = Annotated[Optional[list[str]], typer.Argument(metavar="PATH", help="Photos and folders (searched recursively; files with other extensions are ignored).", show_default=False)]
FilesFrom = Annotated[Optional[str], typer.Option("--files-from", metavar="FILE", help="Read more paths from FILE ('-' = stdin), one per line.", rich_help_panel=_IN)]
From0 = Annotated[bool, typer.Option("--from0", help="--files-from entries are NUL-separated (find -print0).", rich_help_panel=_IN)]
Shard = Annotated[Optional[str], typer.Option("--shard", metavar="I/N", help="Score only the I-th of N deterministic parts of the input (1-based).", rich_help_panel=_IN)]
Model = Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE", help="Model name (see `aescore models`) or .safetensors/.json file. Default: the shipped default.", rich_help_panel=_MODEL)]
Device = Annotated[str, typer.Option("--device", metavar="auto|cpu|cuda|mps", help="Where the network runs; auto = CUDA, else MPS, else CPU (GPUs use float16).", rich_help_panel=_MODEL)]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, metavar="N", help="Images per forward pass (default: 4 on CPU, 64 on GPU).", rich_help_panel=_MODEL, show_default=False)]
Workers = Annotated[Optional[int], typer.Option("--workers", min=0, metavar="N", help="Decoding processes (default: from the core count; 0 = decode in the main process).", rich_help_panel=_MODEL, show_default=False)]
TtaCrops = Annotated[Optional[int], typer.Option("--tta-crops", min=0, metavar="N", help="Average N random crops of the model's training crop size (the MPA paper's evaluation: 224) instead of one pass over the whole photo; ~N times slower.", rich_help_panel=_MODEL, show_default=False)]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the score cache.", rich_help_panel=_MODEL)]
Json = Annotated[bool, typer.Option("--json", help="One JSON array.", rich_help_panel=_OUT)]
Jsonl = Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.", rich_help_panel=_OUT)]
Csv = Annotated[bool, typer.Option("--csv", help="CSV with a header row.", rich_help_panel=_OUT)]
Print0 = Annotated[bool, typer.Option("--print0", "-0", help="Paths only, NUL-separated (for xargs -0).", rich_help_panel=_OUT)]
Exif = Annotated[bool, typer.Option("--exif", help="Add capture time, camera, lens and exposure.", rich_help_panel=_OUT)]
Top = Annotated[Optional[int], typer.Option("--top", min=0, metavar="N", help="Only the N best.", rich_help_panel=_OUT, show_default=False)]
Bottom = Annotated[Optional[int], typer.Option("--bottom", min=0, metavar="N", help="Only the N worst (still printed best first).", rich_help_panel=_OUT, show_default=False)]
MinScore = Annotated[Optional[float], typer.Option("--min-score", metavar="X", help="Only photos scoring >= X.", rich_help_panel=_OUT, show_default=False)]
GroupBursts = Annotated[Optional[float], typer.Option("--group-bursts", metavar="SECONDS", help="Group photos taken within SECONDS of the previous one (EXIF time, else file mtime).", rich_help_panel=_CULL, show_default=False)]
BestOfGroup = Annotated[bool, typer.Option("--best-of-group", help="Print only the best photo of each burst group.", rich_help_panel=_CULL)]
Similarity = Annotated[Optional[float], typer.Option("--similarity", metavar="X", help="Also split bursts where consecutive photos' embedding cosine similarity < X (e.g. 0.8).", rich_help_panel=_CULL, show_default=False)]
Stars = Annotated[bool, typer.Option("--stars", help="1-5 stars by percentile within the run: top 10% 5, next 20% 4, middle 40% 3, next 20% 2, bottom 10% 1.", rich_help_panel=_CULL)]
RejectBelow = Annotated[Optional[float], typer.Option("--reject-below", metavar="X", help="Stars -1 (rejected) for scores below X (implies --stars).", rich_help_panel=_CULL, show_default=False)]
WriteXmp = Annotated[bool, typer.Option("--write-xmp", help="Write stars as xmp:Rating and the score as aescore:Score into XMP sidecars of the printed photos (implies --stars).", rich_help_panel=_ACT)]
XmpStyle = Annotated[str, typer.Option("--xmp-style", metavar="lightroom|darktable", help="Sidecar names: lightroom IMG_1.xmp, darktable IMG_1.JPG.xmp.", rich_help_panel=_ACT)]
OverwriteRating = Annotated[bool, typer.Option("--overwrite-rating", help="Replace a rating already in a sidecar (kept by default).", rich_help_panel=_ACT)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show (on stderr) what --write-xmp / --copy-to / --link-to would do; write nothing.", rich_help_panel=_ACT)]
CopyTo = Annotated[Optional[str], typer.Option("--copy-to", metavar="DIR", help="Copy the printed photos into DIR (created if needed; existing files are never overwritten).", rich_help_panel=_ACT)]
LinkTo = Annotated[Optional[str], typer.Option("--link-to", metavar="DIR", help="Symlink the printed photos into DIR (created if needed; existing files are never overwritten).", rich_help_panel=_ACT)]
Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")]


@dataclass
class Options:
    """Every option of ``score`` / ``rank`` (rank-only ones are None for score)."""

    paths: list[str]
    files_from: str | None = None
    from0: bool = False
    shard: str | None = None
    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    tta_crops: int | None = None
    no_cache: bool = False
    json: bool = False
    jsonl: bool = False
    csv: bool = False
    print0: bool = False
    exif: bool = False
    top: int | None = None
    bottom: int | None = None
    min_score: float | None = None
    group_bursts: float | None = None
    best_of_group: bool = False
    similarity: float | None = None
    stars: bool = False
    reject_below: float | None = None
    write_xmp: bool = False
    xmp_style: str = "lightroom"
    overwrite_rating: bool = False
    dry_run: bool = False
    copy_to: str | None = None
    link_to: str | None = None


def _validate(o: Options) -> None:
    formats = [n for n, on in (("--json", o.json), ("--jsonl", o.jsonl), ("--csv", o.csv), ("--print0", o.print0)) if on]
    if len(formats) > 1:
        raise UsageError(f"choose one output format, not {' and '.join(formats)}")
    if o.top is not None and o.bottom is not None:
        raise UsageError("--top and --bottom exclude each other")
    if o.copy_to and o.link_to:
        raise UsageError("--copy-to and --link-to exclude each other")
    for flag, dest in (("--copy-to", o.copy_to), ("--link-to", o.link_to)):
        # Checked before scoring so a long run does not end in this error with results half printed.
        if dest and os.path.exists(dest) and not os.path.isdir(dest):
            raise UsageError(f"{flag} {dest}: exists and is not a folder")
    if (o.best_of_group or o.similarity is not None) and o.group_bursts is None:
        raise UsageError("--best-of-group and --similarity need --group-bursts SECONDS")
    if o.group_bursts is not None and o.group_bursts < 0:
        raise UsageError("--group-bursts must be >= 0 seconds")
    if o.similarity is not None and not -1.0 <= o.similarity <= 1.0:
        raise UsageError("--similarity is a cosine similarity in [-1, 1]")
    if o.xmp_style not in ("lightroom", "darktable"):
        raise UsageError(f"--xmp-style {o.xmp_style!r}: use lightroom or darktable")
    if (o.overwrite_rating or o.xmp_style != "lightroom") and not o.write_xmp:
        raise UsageError("--overwrite-rating and --xmp-style need --write-xmp")
    if o.dry_run and not (o.write_xmp or o.copy_to or o.link_to):
        raise UsageError("--dry-run needs --write-xmp, --copy-to or --link-to")
    if o.from0 and not o.files_from:
        raise UsageError("--from0 needs --files-from")
    if o.device.lower() not in ("auto", "cpu", "cuda", "mps") and not o.device.lower().startswith("cuda:"):
        raise UsageError(f"--device {o.device!r}: use auto, cpu, cuda or mps")


class _Stderr:
    """stderr lines that do not tear a live Rich progress bar; progress only on a terminal."""

    def __init__(self) -> None:
        self.progress: Any = None

    def line(self, text: str) -> None:
        if self.progress is not None:
            from rich.text import Text

            self.progress.console.print(Text(text), soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def progress_factory(self) -> Callable[[int, int], Callable[[int], None] | None]:
        def start(total: int, done_already: int) -> Callable[[int], None] | None:
            if not sys.stderr.isatty():
                return None
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self.progress.start()
            task = self.progress.add_task("scoring", total=total)
            return lambda n: self.progress.advance(task, n)

        return start

    def skipped(self, path: str, reason: str) -> None:
        """The one line for a skipped input (control characters and odd bytes escaped)."""
        from aescore.inference.output import display_path

        self.line(f"aescore: skipped {display_path(path)}: {display_path(reason)}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _read_inputs(o: Options) -> list[str]:
    from aescore.inference.discover import read_path_list

    inputs = list(o.paths)
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


def _cull(o: Options, rows: list[Any], embeddings: list[bytes | None]) -> None:
    """Fill EXIF, burst groups, best-of-group and stars into ``rows`` as the options ask."""
    from aescore.inference import bursts, exif, stars

    infos = [exif.read_exif(r.path) for r in rows] if (o.exif or o.group_bursts is not None) else None
    if infos is not None and o.exif:
        for row, info in zip(rows, infos):
            row.exif = info.to_dict()
    if o.group_bursts is not None and infos is not None:
        times = []
        for row, info in zip(rows, infos):
            try:
                times.append(exif.capture_timestamp(row.path, info))
            except OSError:
                times.append(0.0)
        vectors = None
        if o.similarity is not None:
            import numpy as np

            vectors = [np.frombuffer(e, dtype=np.float32) for e in embeddings]  # type: ignore[arg-type]
        groups = bursts.group_bursts(times, o.group_bursts, vectors, o.similarity)
        best = bursts.best_of_groups(groups, [r.score for r in rows], [r.path for r in rows])
        for i, row in enumerate(rows):
            row.group, row.best = groups[i], i in best
    if o.stars or o.reject_below is not None or o.write_xmp:
        for row, s in zip(rows, stars.assign_stars([r.score for r in rows], o.reject_below)):
            row.stars = s


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


def _act(o: Options, chosen: list[Any], err: _Stderr, model_tag: str) -> int:
    """Write sidecars and copy/link the printed photos; returns the number of sidecars refused."""
    from aescore.inference.output import display_path

    refused = 0
    if o.write_xmp:
        from aescore.inference.xmp import SidecarError, write_rating_sidecar

        written = 0
        for row in chosen:
            try:
                change = write_rating_sidecar(
                    row.path, row.stars, row.score, style=o.xmp_style,  # type: ignore[arg-type]
                    overwrite_rating=o.overwrite_rating, dry_run=o.dry_run, model=model_tag,
                )
            except (SidecarError, OSError) as exc:
                refused += 1
                err.skipped(f"sidecar for {row.path}", str(exc))
                continue
            written += change.changed
            if o.dry_run:
                err.line(f"aescore: {_describe_sidecar_change(change, row.score, display_path(str(change.path)))}")
        if not o.dry_run:
            err.line(f"aescore: {written} sidecar(s) written, {len(chosen) - written - refused} already up to date")
    dest, mode = (o.copy_to, "copy") if o.copy_to else (o.link_to, "link")
    if dest:
        from aescore.inference.materialise import materialise

        pairs = materialise([r.path for r in chosen], dest, mode, dry_run=o.dry_run)  # type: ignore[arg-type]
        for src, dst in pairs if o.dry_run else []:
            err.line(f"aescore: would {mode} {display_path(str(src))} -> {display_path(str(dst))}")
        if not o.dry_run:
            err.line(f"aescore: {len(pairs)} photo(s) {'copied' if mode == 'copy' else 'linked'} into {dest}")
    return refused


def _emit(o: Options, chosen: list[Any], ranked: bool) -> None:
    from aescore.inference import output

    if o.print0:
        text = output.format_print0(chosen)
    elif o.json:
        text = output.format_json(chosen)
    elif o.jsonl:
        text = output.format_jsonl(chosen)
    elif o.csv:
        text = output.format_csv(chosen)
    elif sys.stdout.isatty():
        from rich.console import Console

        if chosen:
            Console().print(output.build_table(chosen))
        return
    else:
        text = output.format_tsv(chosen)
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


def run(o: Options, ranked: bool) -> int:
    """Score/rank per ``o``; prints results to stdout and returns the exit status (0 or 3)."""
    from aescore.inference.cache import ScoreCache
    from aescore.inference.discover import discover, parse_shard, shard
    from aescore.inference.output import Row, assign_ranks, select
    from aescore.inference.scorer import score_with_cache
    from aescore.sysinfo import prefer_passive_openmp
    from aescore.weights import read_card, resolve_model

    prefer_passive_openmp()  # before anything imports torch (decode workers share the cores)
    start = time.perf_counter()
    _validate(o)
    shard_spec = None
    if o.shard:
        try:
            shard_spec = parse_shard(o.shard)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    err = _Stderr()
    inputs = _read_inputs(o)
    found = discover(inputs)
    for path, reason in found.problems:
        err.skipped(path, reason)
    files = shard(found.files, *shard_spec) if shard_spec else found.files
    if not found.files and not found.problems:
        err.line("aescore: warning: no photos found (supported: JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC, camera RAW)")

    weights_path = resolve_model(o.model)
    card = read_card(weights_path)
    cache = None if o.no_cache else ScoreCache(warn=lambda m: err.line(f"aescore: warning: {m}"))
    try:
        outcome = score_with_cache(
            files, weights_path, card, cache,
            scorer_options={"device": o.device, "batch_size": o.batch_size, "workers": o.workers, "tta_crops": o.tta_crops},
            with_embeddings=o.similarity is not None,
            on_skip=err.skipped,
            progress=err.progress_factory(),
        )
    finally:
        err.stop()
        if cache is not None:
            cache.close()

    order = sorted(outcome.scores)
    rows = [Row(files[i].path, outcome.scores[i][0]) for i in order]
    assign_ranks(rows)
    _cull(o, rows, [outcome.scores[i][1] for i in order])
    chosen = select(rows, ranked, o.top, o.bottom, o.min_score, o.best_of_group)
    _emit(o, chosen, ranked)
    refused = _act(o, chosen, err, f"{card.get('name', weights_path.stem)}@{str(card['sha256'])[:12]}")

    skipped = len(found.problems) + len(outcome.skipped)
    elapsed = time.perf_counter() - start
    err.line(
        f"aescore: {len(rows)} scored ({outcome.from_cache} cached, {outcome.computed} computed), "
        f"{skipped} skipped, {len(chosen)} printed"
        + (f", {refused} sidecar(s) refused" if refused else "")
        + f" in {elapsed:.1f}s"
    )
    return 3 if (skipped or refused) else 0


def _invoke(params: dict[str, Any], ranked: bool) -> None:
    """Run ``score``/``rank`` from the command's parameters (its ``locals()`` on entry) and exit with run's code."""
    if params.pop("debug"):
        os.environ["AESCORE_DEBUG"] = "1"
    params["paths"] = params["paths"] or []
    code = run(Options(**params), ranked=ranked)
    if code:
        raise typer.Exit(code)


@app.command("score", help="Score photos (input order).\n\n" + _SCORE_MEANING)
def score_cmd(
    paths: Paths = None, files_from: FilesFrom = None, from0: From0 = False, shard: Shard = None,
    model: Model = None, device: Device = "auto", batch_size: BatchSize = None, workers: Workers = None,
    tta_crops: TtaCrops = None, no_cache: NoCache = False,
    json: Json = False, jsonl: Jsonl = False, csv: Csv = False, print0: Print0 = False, exif: Exif = False,
    group_bursts: GroupBursts = None, best_of_group: BestOfGroup = False, similarity: Similarity = None,
    stars: Stars = False, reject_below: RejectBelow = None,
    write_xmp: WriteXmp = False, xmp_style: XmpStyle = "lightroom", overwrite_rating: OverwriteRating = False,
    dry_run: DryRun = False, copy_to: CopyTo = None, link_to: LinkTo = None, debug: Debug = False,
) -> None:
    """Score photos, printing them in input order."""
    _invoke(dict(locals()), ranked=False)  # first statement: locals() is exactly the options


@app.command("rank", help="Rank photos, best first (ties by path).\n\n" + _SCORE_MEANING)
def rank_cmd(
    paths: Paths = None, files_from: FilesFrom = None, from0: From0 = False, shard: Shard = None,
    model: Model = None, device: Device = "auto", batch_size: BatchSize = None, workers: Workers = None,
    tta_crops: TtaCrops = None, no_cache: NoCache = False,
    json: Json = False, jsonl: Jsonl = False, csv: Csv = False, print0: Print0 = False, exif: Exif = False,
    top: Top = None, bottom: Bottom = None, min_score: MinScore = None,
    group_bursts: GroupBursts = None, best_of_group: BestOfGroup = False, similarity: Similarity = None,
    stars: Stars = False, reject_below: RejectBelow = None,
    write_xmp: WriteXmp = False, xmp_style: XmpStyle = "lightroom", overwrite_rating: OverwriteRating = False,
    dry_run: DryRun = False, copy_to: CopyTo = None, link_to: LinkTo = None, debug: Debug = False,
) -> None:
    """Rank photos, best first."""
    _invoke(dict(locals()), ranked=True)  # first statement: locals() is exactly the options
