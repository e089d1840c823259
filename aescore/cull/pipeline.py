"""The cached scoring pipeline behind :func:`aescore.cull.score_photos`.

For each photo: look up its score (and embedding, fault probabilities) and every check's fields in the cache; decode
only the photos that miss something, once, for the network and all checks together; run the
network only for photos whose model outputs are missing; compute the missing check fields; write
new rows back in small transactions (also when the run is interrupted). Hits are found with
nothing but SQLite and the stat values already collected, so a fully cached run never imports
torch or loads the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from aescore.checks.base import Check, PhotoData
from aescore.cull.photo import Photo, Skipped
from aescore.data.transforms import Preprocess

if TYPE_CHECKING:
    from aescore.cull import ScoreRun, Settings
    from aescore.inference.discover import FoundFile

_FLUSH_EVERY = 64


def decoder_tag(recipe: str) -> str:
    """What a decode failure depends on: aescore and Pillow versions (an upgrade may read a file an
    older one could not) and the preprocessing recipe (a failure under one card is not one under
    another)."""
    import PIL

    from aescore import __version__

    return f"aescore-{__version__}/pillow-{PIL.__version__}/{recipe}"


@dataclass
class _Work:
    """What one photo still needs during a run."""

    index: int
    outputs: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    missing: list[Check] = field(default_factory=list)  # checks whose fields are not cached

    def needs_network(self, want: frozenset[str]) -> bool:
        """Whether an output the run wants, or a missing check needs, is not at hand (cached)."""
        needed = set(want).union(*(c.needs.outputs for c in self.missing))
        return any(o not in self.outputs for o in needed)


class _Writer:
    """Buffers new cache rows and writes them in batches (and whatever is left on close)."""

    def __init__(self, cache: Any, sha: str, recipe: str, decoder: str) -> None:
        self.cache, self.sha, self.recipe, self.decoder = cache, sha, recipe, decoder
        self.scores: list[tuple[Any, float, bytes | None, bytes | None]] = []
        self.checks: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        self.failures: list[tuple[Any, str]] = []

    def score(self, key: Any, p_high: float, embedding: Any, faults: Any = None) -> None:
        emb = embedding.astype("float32").tobytes() if embedding is not None else None
        fts = faults.astype("float32").tobytes() if faults is not None else None
        self.scores.append((key, p_high, emb, fts))

    def check(self, check_key: str, key: Any, fields: dict[str, Any]) -> None:
        self.checks.setdefault(check_key, []).append((key, fields))

    def failure(self, key: Any, reason: str) -> None:
        self.failures.append((key, reason))

    def maybe_flush(self) -> None:
        if len(self.scores) + sum(len(v) for v in self.checks.values()) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.cache is None:
            return
        if self.scores:
            self.cache.put_many(self.scores, self.sha, self.recipe)
        for check_key, rows in self.checks.items():
            self.cache.put_checks(rows, check_key)
        if self.failures:
            self.cache.put_failures(self.failures, self.decoder)
        self.scores, self.checks, self.failures = [], {}, []


def run_pipeline(
    files: Sequence["FoundFile"],
    settings: "Settings",
    checks: list[Check],
    with_embeddings: bool,
    on_skip: Callable[[str, str], None] | None,
    progress: Callable[[int, int], Callable[[int], None] | None] | None,
    cache: Any = None,
    optional_checks: Sequence[Check] = (),
    with_faults: bool = False,
) -> "ScoreRun":
    """See :func:`aescore.cull.score_photos` (``files`` already discovered)."""
    from aescore.cull import ScoreRun
    from aescore.data.images import missing_extra
    from aescore.inference.cache import CacheKey, ScoreCache
    from aescore.inference.loading import find_model

    ref = find_model(settings.model)  # resolved, and its card read, once for the run
    card = ref.card
    checks = usable_checks(checks, optional_checks, card, ref.name)
    recipe_obj = Preprocess.from_card(card["preprocess"])
    recipe = recipe_obj.recipe(settings.tta_crops)
    sha = str(card["sha256"])
    model_key = f"{sha}:{recipe}"
    # Fault probabilities only from a model with a reasons head (others give none: never a miss).
    with_faults = with_faults and "faults" in model_outputs(card)
    want = frozenset({"p_high"} | ({"embedding"} if with_embeddings else set()) | ({"faults"} if with_faults else set()))
    own_cache = cache is None and settings.use_cache
    if own_cache:
        cache = ScoreCache(settings.cache_path)
    run = ScoreRun([], [], checks, ref.name, sha, card=card)

    def skip(path: str, reason: str) -> None:
        run.skipped.append(Skipped(path, reason))
        if on_skip is not None:
            on_skip(path, reason)

    try:
        keys = [CacheKey(f.real, f.size, f.mtime_ns) for f in files]
        work = [_Work(i) for i in range(len(files))]
        _fill_from_cache(cache, keys, work, checks, sha, recipe, model_key, with_embeddings, with_faults)
        decoder = decoder_tag(recipe)
        writer = _Writer(cache, sha, recipe, decoder)
        pending = [w for w in work if w.needs_network(want) or _needs_pixels(w)]
        known = cache.get_failures([keys[w.index] for w in pending], decoder) if cache is not None and pending else {}
        todo: list[_Work] = []
        for w in pending:
            reason = known.get(keys[w.index].path) or missing_extra(files[w.index].path)
            if reason:
                skip(files[w.index].path, reason)
                w.outputs.clear()
            else:
                todo.append(w)
        try:
            run.computed = _compute(
                files, keys, todo, checks, want, settings, ref, recipe_obj, writer, skip, progress, len(files)
            )
            # Photos that needed nothing decoded may still miss fields of checks that read no pixels.
            decoded = {w.index for w in todo}
            for w in work:
                if w.index not in decoded and "p_high" in w.outputs and w.missing:
                    _run_checks(files[w.index].path, w, None, writer, keys[w.index], model_key)
        finally:
            writer.flush()  # also on Ctrl-C: what was finished stays cached
        for w in work:
            if "p_high" in w.outputs:
                run.photos.append(Photo(files[w.index].path, w.fields, w.outputs.get("embedding"),
                                        faults=w.outputs.get("faults") if with_faults else None))
        run.from_cache = len(run.photos) - run.computed
    finally:
        if own_cache and cache is not None:
            cache.close()
    return run


#: What a model must have for a network output a check needs, in a refusal's words. The region
#: map is not required: a model without one gives the check None.
_OUTPUT_NEEDS = {"faults": "a reasons head", "embedding": "an embedding", "p_high": "a score"}


def model_outputs(card: dict[str, Any]) -> frozenset[str]:
    """The network outputs the model of ``card`` gives: ``p_high`` and its declared capabilities."""
    from aescore.weights import card_capabilities

    return frozenset({"p_high"}) | card_capabilities(card).outputs()


def usable_checks(checks: Sequence[Check], optional: Sequence[Check], card: dict[str, Any], model: str) -> list[Check]:
    """``checks``, then those of ``optional`` the model can serve (each once, in order).

    A check of ``checks`` that needs an output the model lacks is refused
    (:class:`~aescore.errors.CheckUnavailable`); one of ``optional`` is left out.
    """
    from aescore.errors import CheckUnavailable

    have = model_outputs(card)
    out = list(checks)
    for check in checks:
        lacking = sorted(check.needs.outputs - have - {"region_map"})
        if lacking:
            what = " and ".join(_OUTPUT_NEEDS.get(o, f"the output {o!r}") for o in lacking)
            raise CheckUnavailable(check.name, f"needs a model with {what}; {model} has none (the default model has one)")
    for check in optional:
        if not (check.needs.outputs - have - {"region_map"}) and all(c.name != check.name for c in out):
            out.append(check)
    return out


def _needs_pixels(w: _Work) -> bool:
    return any(c.needs.image_size for c in w.missing)


def _fill_from_cache(
    cache: Any, keys: list[Any], work: list[_Work], checks: list[Check], sha: str, recipe: str, model_key: str, with_embeddings: bool,
    with_faults: bool = False,
) -> None:
    """Put every cached score, embedding, fault probabilities and check field into ``work``; note
    the checks still missing."""
    hits = cache.get_many(keys, sha, recipe, need_embedding=with_embeddings, need_faults=with_faults) if cache is not None else {}
    for w, key in zip(work, keys):
        hit = hits.get(key.path)
        if hit is not None:
            w.outputs["p_high"] = hit.score
            for name, blob, wanted in (("embedding", hit.embedding, with_embeddings), ("faults", hit.faults, with_faults)):
                if blob is not None and wanted:
                    import numpy as np  # only here: a fully cached run without embeddings never imports it

                    w.outputs[name] = np.frombuffer(blob, dtype=np.float32).copy()
    for check in checks:
        found = cache.get_checks(keys, check.cache_key(model_key)) if (cache is not None and check.cached) else {}
        for w, key in zip(work, keys):
            fields = found.get(key.path)
            if fields is not None and all(f.name in fields for f in check.fields):
                w.fields.update(fields)
            else:
                w.missing.append(check)


def _compute(
    files: Sequence["FoundFile"],
    keys: list[Any],
    todo: list[_Work],
    checks: list[Check],
    want: frozenset[str],
    settings: "Settings",
    ref: Any,
    recipe: Preprocess,
    writer: _Writer,
    skip: Callable[[str, str], None],
    progress: Callable[[int, int], Callable[[int], None] | None] | None,
    total: int,
) -> int:
    """Decode the photos of ``todo`` once each, run the network where outputs are missing, and the
    missing checks; cache what was computed. Returns how many photos went through the network.
    The decoding and the network run in the engine of ``settings`` (:mod:`aescore.cull.engines`);
    the results, cache rows and checks are handled here whatever the engine."""
    if not todo:
        return 0
    from aescore.cull.engines import Engine
    from aescore.inference.core import Job

    model_key = f"{writer.sha}:{writer.recipe}"
    unasked = [c for c in output_checks() if c.name not in {a.name for a in checks}]  # cached from each pass
    jobs = []
    for w in todo:
        sizes = [c.needs.image_size for c in w.missing if c.needs.image_size]
        jobs.append(Job(files[w.index].path, network=w.needs_network(want), image_size=max(sizes) if sizes else None))
    # One pass computes everything (issue 25): the outputs the checks need, the embedding (the
    # pooled features of that pass, ~2 kB a photo in the cache) and every other output the model
    # declares and the runtime gives from the same pass (see pass_outputs), so `learn`,
    # `--similarity`, `rank --reasons` or `report` after a plain `rank` decode nothing again.
    net_want = want.union({"embedding"}, *(c.needs.outputs for c in checks))

    def start_progress() -> Callable[[int], None] | None:
        return progress(len(todo), total - len(todo)) if progress is not None else None

    if settings.engine is Engine.ray:
        from aescore.cull.ray_engine import ray_infer

        results = ray_infer(ref, jobs, net_want, settings, start_progress)
    else:
        results = _local_infer(ref, jobs, net_want, settings, recipe, start_progress)
    computed = 0
    try:
        for out in results:
            w = todo[out.index]  # engines yield by job index (the Ray engine in completion order)
            key = keys[w.index]
            if out.reason is not None:
                w.outputs.clear()
                skip(files[w.index].path, out.reason)
                if out.lasting:
                    writer.failure(key, out.reason)
                continue
            if out.outputs:
                computed += 1
                w.outputs.update(out.outputs)
                writer.score(key, w.outputs["p_high"], w.outputs.get("embedding"), w.outputs.get("faults"))
                _cache_output_checks(files[w.index].path, w, unasked, writer, key, model_key)
            _run_checks(files[w.index].path, w, out.image, writer, key, model_key, out.size)
            writer.maybe_flush()
    finally:
        # On Ctrl-C or an error, stop the engine now (its decode workers, a Ray job), not when the
        # traceback that holds this frame is dropped.
        close = getattr(results, "close", None)
        if close is not None:
            close()
    return computed


def _local_infer(
    ref: Any, jobs: list[Any], want: frozenset[str], settings: "Settings", recipe: Preprocess,
    start_progress: Callable[[], Callable[[int], None] | None],
) -> Iterator[Any]:
    """The local engine: the model opened here, once, and the core run in this process with its
    decode workers; the core's results in input order."""
    from aescore.inference.core import infer
    from aescore.inference.loading import open_model

    n_network = sum(j.network for j in jobs)
    # The model found once by the caller (aescore.inference.loading.ModelRef): its card is not read again.
    model = open_model(
        ref, settings.device, settings.runtime, want=want, tta_crops=settings.tta_crops,
    ) if n_network else None
    if model is not None:
        want = want | pass_outputs(ref.card, model.runtime, settings.tta_crops)
    return infer(
        model, jobs, preprocess=recipe, want=want, tta_crops=settings.tta_crops,
        batch_size=settings.batch_size, workers=settings.workers, draft=settings.draft, progress=start_progress(),
    )


def output_checks() -> list[Check]:
    """The registered checks computed from network outputs alone (no pixels, no EXIF) and cached:
    whenever the network runs on a photo their rows are cached too, asked for or not, so a later
    run that asks for them finds them without decoding (issue 25: one pass computes everything).
    Derived from the checks' declarations (today: reasons, regions), not listed."""
    from aescore.checks.base import available_checks

    return [c for c in available_checks()
            if c.cached and c.needs.outputs and not c.needs.image_size and not c.needs.exif]


def pass_outputs(card: dict[str, Any], runtime: Any, tta_crops: int | None) -> frozenset[str]:
    """The outputs a forward pass of the model of ``card`` gives at no extra cost under ``runtime``.

    Every output the model declares (:func:`model_outputs`: the score, the embedding, the fault
    probabilities of a reasons head, the region map), less what the pass does not give: under
    ONNX Runtime, the outputs its program lacks (programs exported before issue 26 have no region
    map); with multi-crop TTA, the region map (crops do not tile the photo). Under PyTorch without
    TTA the map is the head applied at every location of the feature map the pass computes anyway;
    the ONNX program computes it the same way, in the graph.
    """
    from aescore.inference.onnx_runtime import Runtime, program_outputs

    have = model_outputs(card)
    if runtime is Runtime.onnx and isinstance(card.get("onnx"), dict):
        # (a head-only personal model has no program of its own: its base's gives what it asks
        # for, and an output a program lacks simply does not come back, so nothing is cached for it)
        have = have & (program_outputs(card) | {"p_high"})
    if tta_crops:
        have = have - {"region_map"}
    return have


def _cache_output_checks(path: str, w: _Work, unasked: Sequence[Check], writer: _Writer, key: Any, model_key: str) -> None:
    """Queue the cache rows of ``unasked`` (the :func:`output_checks` this run did not ask for),
    computed from the network outputs ``w`` just got (only those whose every needed output is there:
    a region map left out by the runtime is not cached as None). The photo's own fields are left alone."""
    data: PhotoData | None = None
    for check in unasked:
        if any(o not in w.outputs for o in check.needs.outputs):
            continue
        data = data or PhotoData(path, None, w.outputs, None)
        writer.check(check.cache_key(model_key), key, check.compute(data))


def _run_checks(
    path: str, w: _Work, image: Any, writer: _Writer, key: Any, model_key: str, size: tuple[int, int] | None = None
) -> None:
    """Compute the checks ``w`` still misses (those whose needs are met) and queue their rows.
    ``size``: the photo's own upright size, from the decode that made ``image``."""
    data = PhotoData(path, image, w.outputs, size)
    still: list[Check] = []
    for check in w.missing:
        if (check.needs.image_size and image is None) or any(o not in w.outputs for o in check.needs.outputs - {"region_map"}):
            still.append(check)
            continue
        fields = check.compute(data)
        w.fields.update(fields)
        if check.cached:
            writer.check(check.cache_key(model_key), key, fields)
    w.missing = still
