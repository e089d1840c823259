"""The culling pipeline as a Python API: score photos with checks, then rank, group, star, select,
write sidecars and copy — each a function over the results. ``aescore score`` / ``rank`` /
``report`` are thin wrappers around it.

>>> from aescore import cull
>>> run = cull.score_photos(["~/Photos/shoot"], checks=["exif"])       # doctest: +SKIP
>>> cull.group_bursts(run.photos, seconds=2)                          # doctest: +SKIP
>>> cull.assign_stars(run.photos, model_name=run.model_name, model_sha256=run.model_sha256)  # doctest: +SKIP
>>> for p in cull.select(run.photos, ranked=True, top=10):            # doctest: +SKIP
...     print(p.rank, f"{p.score:.3f}", p.stars, p.fields["camera"], p.path)

Scores and check fields are cached (:class:`~aescore.inference.cache.ScoreCache`): a re-run over
the same files decodes nothing and, when every score is cached, never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from aescore.checks.base import Check, get_check
from aescore.cull.engines import Engine, RayOptions
from aescore.cull.photo import Photo, Skipped, assign_ranks, select
from aescore.inference.discover import FoundFile
from aescore.inference.onnx_runtime import Runtime

__all__ = [
    "Engine", "Photo", "RayOptions", "ScoreRun", "Settings", "Skipped", "assign_crops", "assign_ranks", "assign_stars", "copy_photos",
    "find_photos", "group_bursts", "resolve_checks", "score_photos", "select", "write_sidecars", "write_thumbs",
]


@dataclass(frozen=True)
class Settings:
    """How to score: which model, where it runs, and the cache.

    ``model``: a name (see ``aescore models``), a ``.safetensors``/``.json`` file, or None for the
    default. ``device``: auto/cpu/cuda/mps. ``batch_size``/``workers``: None chooses from the
    device and the core count. ``tta_crops``: None for the one-pass recipe, N for N-crop
    evaluation. ``use_cache``/``cache_path``: the score cache (default location when None).
    ``draft``: reduced-size JPEG decoding (off only for full-resolution reference runs).
    ``runtime``: which library runs the network, ``auto``, ``torch`` or ``onnx``
    (:mod:`aescore.inference.onnx_runtime`; the same scores within 1e-4).
    ``engine``: what computes the photos the cache lacks (:mod:`aescore.cull.engines`): ``local``
    (this process), or ``ray`` (Ray Data actors on this machine or the cluster of ``ray``, a
    :class:`RayOptions`; ``workers`` is then the number of actors, None: as many as the
    cluster's CPUs, or GPUs for GPU actors, hold). The cache, outputs and sidecars stay here.
    """

    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    tta_crops: int | None = None
    use_cache: bool = True
    cache_path: str | None = None
    draft: bool = True
    runtime: Runtime = Runtime.auto
    engine: Engine = Engine.local
    ray: RayOptions = RayOptions()

    def __post_init__(self) -> None:
        from aescore.cull.engines import check_engine_options
        from aescore.inference.loading import check_run_options

        object.__setattr__(self, "runtime", check_run_options(self.runtime, self.batch_size, self.workers, self.tta_crops))
        object.__setattr__(self, "engine", check_engine_options(self.engine, self.ray, self.device, self.runtime, self.workers))


@dataclass
class ScoreRun:
    """What :func:`score_photos` returns."""

    photos: list[Photo]  # in input order
    skipped: list[Skipped]
    checks: list[Check]
    model_name: str
    model_sha256: str
    from_cache: int = 0
    computed: int = 0
    card: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def model_tag(self) -> str:
        """``name@sha256-prefix``: how sidecars record the model that scored a photo."""
        return f"{self.model_name}@{self.model_sha256[:12]}"


def resolve_checks(names: Iterable[str | Check]) -> list[Check]:
    """The score check first, then the named (or given) checks, each once, in order."""
    out: list[Check] = [get_check("score")]
    for item in names:
        check = item if isinstance(item, Check) else get_check(item)
        if all(c.name != check.name for c in out):
            out.append(check)
    return out


def find_photos(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[FoundFile], list[Skipped]]:
    """Photos under ``inputs`` (files and folders, searched recursively), and the inputs skipped."""
    from aescore.inference.discover import discover

    found = discover([os.path.expanduser(os.fspath(p)) for p in inputs])
    return found.files, [Skipped(p, r) for p, r in found.problems]


def score_photos(
    inputs: Sequence[str | os.PathLike[str] | FoundFile],
    settings: Settings = Settings(),
    checks: Iterable[str | Check] = (),
    *,
    with_embeddings: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
    cache: Any = None,
    optional_checks: Iterable[str | Check] = (),
    with_faults: bool = False,
) -> ScoreRun:
    """Score ``inputs`` (paths, folders or :class:`FoundFile` s) and run ``checks`` on each photo.

    A check the model cannot serve (it needs an output such as a reasons head's ``faults``) is
    refused with :class:`~aescore.errors.CheckUnavailable`; ``optional_checks`` run when the model
    can serve them and are left out otherwise (the contact sheet's checks). When both the
    ``reasons`` and the ``faces`` checks ran, a photo whose main faces have closed eyes or a soft
    face reports that as its ``top_fault`` (:func:`aescore.cull.people.combine_reasons`).

    Each photo is decoded at most once, whatever the number of checks; the network runs only for
    photos whose score (and embedding, with ``with_embeddings``; fault probabilities, with
    ``with_faults`` and a model with a reasons head: :attr:`Photo.faults`) is not cached. Unreadable inputs
    are skipped (``on_skip(path, reason)`` for each), never raised. ``progress(total, done)`` may
    return a callable advanced by the number of photos finished. ``cache``: an open
    :class:`~aescore.inference.cache.ScoreCache` to use (else one is opened per ``settings``).
    """
    from aescore.cull.pipeline import run_pipeline

    files: list[FoundFile] = []
    skipped: list[Skipped] = []
    plain = [p for p in inputs if not isinstance(p, FoundFile)]
    if plain:
        found, problems = find_photos(plain)
        for s in problems:
            skipped.append(s)
            if on_skip is not None:
                on_skip(s.path, s.reason)
        files += found
    files += [p for p in inputs if isinstance(p, FoundFile)]
    optional = [c if isinstance(c, Check) else get_check(c) for c in optional_checks]
    run = run_pipeline(files, settings, resolve_checks(checks), with_embeddings, on_skip, progress, cache, optional, with_faults)
    run.skipped[:0] = skipped
    if {"reasons", "faces"} <= {c.name for c in run.checks}:
        from aescore.cull.people import combine_reasons

        combine_reasons(run.photos)
    return run


def group_bursts(photos: Sequence[Photo], seconds: float, similarity: float | None = None) -> None:
    """Set ``group`` and ``best`` on ``photos``: a burst is a run of photos taken within
    ``seconds`` of the previous one; with ``similarity``, consecutive photos whose embeddings'
    cosine similarity is below it also start a new group (needs ``with_embeddings``).
    Needs the ``capture`` check's ``timestamp`` field (:func:`score_photos` with ``checks=["capture"]``).
    When the faces check ran, a frame whose main faces have closed eyes is not its group's best
    while another frame of the group has none (:mod:`aescore.cull.people`)."""
    from aescore.cull.people import blocked_from_best
    from aescore.inference import bursts

    if any("timestamp" not in p.fields for p in photos):
        raise ValueError("group_bursts needs the 'capture' check: score_photos(..., checks=['capture'])")
    vectors = None
    if similarity is not None:
        if any(p.embedding is None for p in photos):
            raise ValueError("group_bursts with similarity needs score_photos(..., with_embeddings=True)")
        vectors = [p.embedding for p in photos]
    groups = bursts.group_bursts([float(p.fields["timestamp"]) for p in photos], seconds, vectors, similarity)
    best = bursts.best_of_groups(groups, [p.score for p in photos], [p.path for p in photos], blocked_from_best(photos))
    for i, photo in enumerate(photos):
        photo.group, photo.best = groups[i], i in best


def assign_stars(
    photos: Sequence[Photo], reject_below: float | None = None, *, face_cap: bool = True, reject_closed_eyes: bool = False,
    model_name: str | None = None, model_sha256: str | None = None, scale: str = "auto",
) -> None:
    """Set ``stars`` on ``photos`` (see :mod:`aescore.inference.stars`): by percentile within
    them, capped — with the ``absolute`` ``scale``, the default (``auto``) where the model
    (``model_name``, ``model_sha256``: :attr:`ScoreRun.model_name` and ``model_sha256``) has a
    calibrated scale — by the score on that fixed scale (a photo the model calls flawed: at most
    2). ``relative``, or ``auto`` without a calibrated scale or a model name: percentiles alone.
    Scores below ``reject_below`` get -1 (rejected). Where the faces check ran
    (:mod:`aescore.cull.people`): with ``face_cap``, a photo whose main faces have closed eyes or a
    soft face gets at most 2 stars; with ``reject_closed_eyes``, closed eyes get -1. The caps
    compose: the least of them wins. ValueError for ``absolute`` where the model has no scale."""
    from aescore.cull.people import star_cap
    from aescore.inference import stars

    star_scale = stars.resolve_star_scale(scale, model_name, model_sha256)
    caps = [star_cap(p.fields, face_cap, reject_closed_eyes) for p in photos]
    for photo, s in zip(photos, stars.assign_stars([p.score for p in photos], reject_below, caps, star_scale)):
        photo.stars = s


def assign_crops(photos: Sequence[Photo], aspect: tuple[int, int]) -> None:
    """Set ``crop`` on ``photos``: a box ``(left, top, right, bottom)`` of aspect ``aspect`` (W, H) in
    the photo's own upright pixels, around the faces, else the structure, else centred
    (:mod:`aescore.cull.crops`). Needs the ``framing`` check (:func:`score_photos` with
    ``checks=["framing"]``, and ``"faces"`` for the faces rule)."""
    from aescore.cull.crops import crop_box

    if any("size" not in p.fields for p in photos):
        raise ValueError("assign_crops needs the 'framing' check: score_photos(..., checks=['framing', 'faces'])")
    for photo in photos:
        faces = [f["box_fraction"] for f in photo.fields.get("face_list") or []]
        photo.crop = crop_box(tuple(photo.fields["size"]), aspect, faces, photo.fields.get("structure"))


def write_thumbs(photos: Sequence[Photo], dest: str | os.PathLike[str], size: tuple[int, int], dry_run: bool = False) -> Any:
    """Write each photo's ``crop`` (:func:`assign_crops`) as a ``size`` = (W, H) JPEG into ``dest``
    (created if needed): named after the photo, never over a file aescore did not write, photos
    never touched. Returns a :class:`~aescore.cull.crops.ThumbResult`."""
    from aescore.cull.crops import write_thumbs as write

    return write(photos, dest, size, dry_run)


@dataclass(frozen=True)
class SidecarOutcome:
    """What happened to one sidecar of ``photo``: the change made (or that would be), or the
    refusal. A photo with sidecars in both styles has one outcome for each."""

    photo: Photo
    change: Any = None  # aescore.inference.xmp.SidecarChange
    error: str | None = None


def write_sidecars(
    photos: Sequence[Photo], model_tag: str, style: str = "lightroom", overwrite_rating: bool = False, dry_run: bool = False
) -> list[SidecarOutcome]:
    """Write each photo's stars as ``xmp:Rating`` and its score as ``aescore:Score`` into its XMP
    sidecar (merged with what is there; atomic). Photos need ``stars`` (:func:`assign_stars`).
    The sidecars a photo already has are updated, both where it has both styles, and one in
    ``style`` is created only when it has none; one outcome per sidecar, in photo order
    (:func:`aescore.inference.xmp.write_rating_sidecars`). Photos whose only sidecar name another
    photo owns (``pair.jpg`` + ``pair.png`` -> ``pair.xmp``) get an outcome with ``error`` naming
    the owner, and nothing is written for them."""
    from aescore.inference.xmp import RatingToWrite, write_rating_sidecars

    if any(p.stars is None for p in photos):
        raise ValueError("write_sidecars needs stars: call assign_stars first")
    results = write_rating_sidecars(
        [RatingToWrite(p.path, p.stars, p.score, overwrite_rating) for p in photos],  # type: ignore[arg-type]
        style=style, dry_run=dry_run, model=model_tag,  # type: ignore[arg-type]
    )
    return [SidecarOutcome(photos[i], change, error) for i, change, error in results]


def copy_photos(photos: Sequence[Photo], dest: str | os.PathLike[str], link: bool = False, dry_run: bool = False) -> Any:
    """Copy (or symlink, with ``link``) the photos into ``dest``; existing files are never
    overwritten and a photo already there is not copied again. Returns a
    :class:`~aescore.inference.materialise.MaterialiseResult` (created / renamed / already there)."""
    from aescore.inference.materialise import materialise_result

    return materialise_result([p.path for p in photos], Path(dest), "link" if link else "copy", dry_run=dry_run)
