"""The Ray engine (issue 27): the photos still to compute, scored by Ray Data actors.

The driver (this process) lists the photos, looks up the cache and writes every output, cache row
and sidecar, exactly as the local engine does (:mod:`aescore.cull.pipeline`). Only the photos
that miss something become rows of a Ray Dataset (path, whether the network must run, the pixel
size the checks need); ``map_batches`` hands them to a pool of :class:`ScoringActor` s, each of
which opens the model once (:func:`aescore.inference.loading.open_model`) and runs the same
inference core on its batches (:func:`aescore.inference.core.infer`: same decode, same recipe,
same outputs). Each result comes back as the core's own :class:`~aescore.inference.core.PhotoOutputs`,
pickled, and is yielded as soon as its batch arrives (``iter_batches``), so the driver caches
rows while the job runs and Ctrl-C keeps what arrived.

Results arrive in completion order, not input order; the pipeline places each by its index, so
the run's photos are in input order as with the local engine. A photo that fails to decode comes
back with its reason (the core never raises for a photo). An actor that dies is restarted by Ray
and its unfinished batches run again (Ray Data's actor pool: unlimited restarts and task
retries); a batch's rows are produced only when the batch finishes, so nothing is lost or
doubled, and the driver checks both (:class:`RayJobError`).

The runtime (ONNX Runtime or PyTorch) is chosen once, on the driver, by the local engine's rule
(:func:`~aescore.inference.loading.model_runtime`) for the actors' device — the CPU unless
they reserve GPUs (``gpus_per_worker``: PyTorch) — and every actor opens that one, so on a CPU
machine both engines give the same scores.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from aescore.errors import AescoreError, WeightsError
from aescore.inference.onnx_runtime import Runtime

if TYPE_CHECKING:
    from aescore.cull import Settings
    from aescore.inference.core import Job, PhotoOutputs
    from aescore.inference.loading import ModelRef

__all__ = ["ActorSpec", "RayJobError", "ScoringActor", "ray_infer"]


class RayJobError(AescoreError):
    """The Ray job failed (an actor could not start, the cluster went away) or returned other rows
    than it was given (exit status 1)."""


@dataclass(frozen=True)
class ActorSpec:
    """What every actor needs to score like the local engine (small: it travels to each actor)."""

    model_path: str  # the weights the driver resolved (used where the same path exists)
    model: str | None  # the run's model setting, resolved again on a node without that path
    sha256: str  # the weights the driver's cache keys name: an actor refuses others
    recipe: str  # the preprocessing the cache keys name (Preprocess.recipe): likewise
    device: str
    runtime: Runtime  # torch or onnx, chosen on the driver
    want: frozenset[str]
    tta_crops: int | None
    batch_size: int  # photos per forward pass
    draft: bool
    network: bool  # some photo needs the network (else the actors only decode, for checks)
    decode_workers: int = 0  # the core's decode workers inside each actor (its CPUs beyond the first)
    photos_per_call: int = 4  # photos per Ray batch (one actor call)


class ScoringActor:
    """A Ray Data actor: the model opened once, then batches of photos through the inference core.

    ``__call__`` takes a batch of the job table (``index``, ``path``, ``network``, ``image_size``;
    0 = no pixels) and returns ``index`` and ``result``: each photo's
    :class:`~aescore.inference.core.PhotoOutputs` pickled (its index the job's, not the batch's).
    """

    def __init__(self, spec: ActorSpec) -> None:
        from aescore.data.transforms import Preprocess
        from aescore.inference.loading import find_model, open_model
        from aescore.sysinfo import prefer_passive_openmp

        prefer_passive_openmp()  # before torch loads here, as in the CLI
        self.spec = spec
        # The driver's path where this node has it (a shared or identical install), else the same
        # --model resolved here; either way only the driver's weights are accepted.
        ref = find_model(spec.model_path if os.path.exists(spec.model_path) else spec.model)
        if str(ref.card.get("sha256")) != spec.sha256:
            raise WeightsError(
                f"the Ray worker on {os.uname().nodename} found other weights for the model ({ref.path}, "
                f"sha256 {str(ref.card.get('sha256'))[:12]}) than the driver (sha256 {spec.sha256[:12]}); "
                "install the same model on every node or put it on a shared path"
            )
        self.recipe = Preprocess.from_card(ref.card["preprocess"])
        if self.recipe.recipe(spec.tta_crops) != spec.recipe:
            raise WeightsError(
                f"the Ray worker on {os.uname().nodename} found another preprocessing recipe in the model card "
                f"({ref.path.with_suffix('.json')}) than the driver; install the same model on every node"
            )
        # The runtime the driver chose (torch or onnx), so every actor scores as the local engine would.
        self.model = open_model(ref, spec.device, spec.runtime, want=spec.want, tta_crops=spec.tta_crops) if spec.network else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from aescore.inference.core import Job, infer

        indices = [int(i) for i in batch["index"]]
        jobs = [Job(str(p), bool(n), int(s) or None) for p, n, s in zip(batch["path"], batch["network"], batch["image_size"])]
        spec = self.spec
        # The actor is the unit of parallelism: it decodes in its own thread unless it reserved
        # more than one CPU (decode_workers); more would take the cores of its neighbours.
        results = infer(
            self.model, jobs, preprocess=self.recipe, want=spec.want, tta_crops=spec.tta_crops,
            batch_size=spec.batch_size, workers=spec.decode_workers, draft=spec.draft,
        )
        blobs = []
        for out in results:
            out.index = indices[out.index]  # the job's place in the run, not in this batch
            blobs.append(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
        return {"index": np.asarray(indices, dtype=np.int64), "result": np.asarray(blobs, dtype=object)}


def ray_infer(
    ref: "ModelRef",
    jobs: Sequence["Job"],
    want: frozenset[str],
    settings: "Settings",
    start_progress: Callable[[], Callable[[int], None] | None],
) -> Iterator["PhotoOutputs"]:
    """Run ``jobs`` on Ray actors; yields one :class:`~aescore.inference.core.PhotoOutputs` per job
    (``index``: the job's position in ``jobs``) as batches finish, in no particular order.

    ``want``: the outputs to compute; those the chosen runtime gives from the same pass are added
    (:func:`aescore.cull.pipeline.pass_outputs`, as the local engine does). ``start_progress()`` is
    called once the job is submitted; what it returns is advanced by the photos of each batch.
    Raises :class:`RayJobError` when the job fails or returns other rows than it was given, and
    an actor's :class:`~aescore.errors.AescoreError` (e.g. other weights on a node) as itself.
    """
    if not jobs:
        return
    import ray

    from aescore.cull.pipeline import pass_outputs
    from aescore.data.transforms import Preprocess
    from aescore.inference.core import default_batch_size
    from aescore.inference.loading import model_runtime

    options = settings.ray
    gpus = options.gpus_per_worker
    # Ray hides the GPUs from actors that reserve none: they run on the CPU whatever "auto" finds here.
    device = "cpu" if gpus <= 0 and settings.device == "auto" else settings.device
    n_network = sum(j.network for j in jobs)
    # Judged on the network that runs (a head-only personal model's base), as the local engine does.
    runtime = model_runtime(ref, settings.runtime, "cuda" if gpus > 0 else device, want, settings.tta_crops)
    want = want | pass_outputs(ref.card, runtime, settings.tta_crops)
    batch_size = settings.batch_size or default_batch_size("cuda" if gpus > 0 else "cpu")
    decode_workers = max(0, int(options.cpus_per_worker) - 1)
    recipe = Preprocess.from_card(ref.card["preprocess"]).recipe(settings.tta_crops)
    model = None if settings.model is None else os.fspath(settings.model)
    spec = ActorSpec(str(ref.path), model, str(ref.card["sha256"]), recipe, device, runtime, want,
                     settings.tta_crops, batch_size, settings.draft, n_network > 0, decode_workers,
                     # One forward batch per call for a single-CPU actor (the finest streaming and the
                     # least work redone after a failure); an actor with decode workers gets enough
                     # batches per call for them to run ahead (DataLoader prefetch: 2 per worker).
                     batch_size * 2 * decode_workers if decode_workers else batch_size)
    started_here = _connect(options.address)
    try:
        yield from _run(ray, jobs, spec, settings.workers, options, start_progress)
    finally:
        if started_here:
            # A Ray this run started is stopped with it: the CLI ends its process without Python's
            # teardown, which would leave Ray's helper processes running.
            ray.shutdown()


def _connect(address: str | None) -> bool:
    """Join the Ray of ``address`` (None: Ray's rule: ``RAY_ADDRESS``, a ``ray start`` cluster of
    this machine, else a new local one), unless this process is already connected. Returns
    whether this call started or joined Ray (and so should end it)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        _check_reachable(address or os.environ["RAY_ADDRESS"])
    else:
        recorded = _recorded_cluster()
        if recorded:
            _check_reachable(recorded, "the Ray cluster `ray start` recorded on this machine ({address}) does not answer "
                                       "({reason}); `ray stop` clears it, or pass --ray-address")
    try:
        # log_to_driver=False: the workers' own output would be printed on this process's stdout,
        # which carries the results only; it stays in Ray's session logs. (Ray's notes about lost
        # workers still come to stdout: the CLI sends stdout to stderr while the job runs.)
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, configure_logging=True,
                 log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise RayJobError(f"cannot start or join Ray at {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


def _recorded_cluster() -> str | None:
    """The cluster Ray would join without an address: the last one ``ray start`` started on this
    machine (Ray's own lookup, a private function: None where it is not there)."""
    try:
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - a private Ray function: absent or changed, Ray decides alone
        return None
    return str(found) if found else None


def _check_reachable(address: str, message: str = "cannot reach the Ray cluster at {address}: {reason}") -> None:
    """A :class:`RayJobError` (``message``) at once when the head node of ``address``
    (``host:port`` or ``ray://host:port``) does not answer: Ray itself would retry for minutes."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return  # Ray parses (and refuses) what it does not understand
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as exc:
        raise RayJobError(message.format(address=address, reason=exc.strerror or exc)) from None


def _actor_count(ray: Any, requested: int | None, options: Any, n_batches: int) -> int:
    """``requested`` actors, else as many as the cluster's CPUs (or GPUs, for GPU actors) hold;
    never more than there are batches."""
    if requested:
        return max(1, min(requested, n_batches))
    resources = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        if resources.get("GPU", 0) <= 0:
            raise RayJobError("GPUs per worker were asked for, but the Ray cluster has no GPUs")
        fit = int(resources["GPU"] // options.gpus_per_worker)
    else:
        fit = int(resources.get("CPU", 1) // options.cpus_per_worker)
    return max(1, min(fit, n_batches))


def _run(
    ray: Any, jobs: Sequence["Job"], spec: ActorSpec, workers: int | None, options: Any,
    start_progress: Callable[[], Callable[[int], None] | None],
) -> Iterator["PhotoOutputs"]:
    """Build the dataset, stream its results back, check that every job came back once."""
    import ray.data

    _quiet_console()
    context = ray.data.DataContext.get_current()
    # Changed for this job only, restored below: a Python caller's own later Ray jobs keep theirs.
    saved = (context.enable_progress_bars, context.execution_options.preserve_order)
    context.enable_progress_bars = False  # aescore draws its own progress on a terminal
    context.execution_options.preserve_order = False  # results are placed by index
    n_actors = _actor_count(ray, workers, options, math.ceil(len(jobs) / spec.photos_per_call))
    table = [{"index": i, "path": j.path, "network": j.network, "image_size": j.image_size or 0} for i, j in enumerate(jobs)]
    dataset = ray.data.from_items(table).map_batches(
        ScoringActor,
        fn_constructor_kwargs={"spec": spec},
        batch_size=spec.photos_per_call,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker or None,
        # Fault tolerance is Ray Data's default for actor pools (max_restarts=-1 and
        # max_task_retries=-1: a dead actor is restarted and the batches it had not finished run
        # again); tests/test_ray_engine.py kills an actor to hold it to that.
    )
    advance = start_progress()
    seen: set[int] = set()
    # prefetch_batches=0: each batch is handed over as soon as it arrives (with prefetching, a
    # batch waited for the next one); the batches are small, pickled results.
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0))
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 - whatever Ray raises, the job failed: one line
                raise _job_error(err) from None
            fresh = 0
            for index, blob in zip(batch["index"], batch["result"]):
                if int(index) in seen:
                    continue  # a batch run twice (a retry after its result was sent) counts once
                seen.add(int(index))
                fresh += 1
                yield pickle.loads(blob)  # noqa: S301 - pickled by this package's own actors
            if advance is not None and fresh:
                advance(fresh)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the job's executor at once (Ctrl-C, an error, or a consumer that stopped)
        context.enable_progress_bars, context.execution_options.preserve_order = saved
    if len(seen) != len(jobs):
        raise RayJobError(f"the Ray job returned {len(seen)} of {len(jobs)} photos")


class _DropNotice:
    """A logging filter: drops Ray Data's notice that its progress bars are off (aescore's own
    progress replaces them)."""

    def filter(self, record: Any) -> bool:
        return not str(record.getMessage()).startswith("Progress bars disabled")


def _quiet_console() -> None:
    """Ray Data's console lines at WARNING and above, as aescore's stderr is for what the user must
    see; its INFO lines (each job's start and end) still go to its log file in the Ray session."""
    import logging

    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ != "SessionFileHandler" and not getattr(handler, "_aescore_quiet", False):
            handler.setLevel(max(handler.level, logging.WARNING))
            handler.addFilter(_DropNotice())
            handler._aescore_quiet = True  # type: ignore[attr-defined]  # once per handler


def _job_error(err: Exception) -> Exception:
    """A failed Ray job as one line: an actor's own :class:`AescoreError` as itself where Ray kept
    it (``RayTaskError.cause``), else a :class:`RayJobError` naming the root error of the traceback
    Ray's message carries (an actor that failed to start keeps only that text)."""
    import re

    cause: Any = err
    for _ in range(8):  # Ray wraps the actor's exception (RayTaskError.cause), maybe twice
        if isinstance(cause, AescoreError):
            return cause
        nxt = getattr(cause, "cause", None) or cause.__cause__
        if nxt is None or nxt is cause:
            break
        cause = nxt
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    roots = [line.strip() for line in text.splitlines() if re.match(r"\s*[\w.]+(Error|Exception|Interrupt): ", line)]
    if roots:
        return RayJobError(f"the Ray job failed: {roots[-1]}")
    first = text.strip().splitlines()
    return RayJobError(f"the Ray job failed: {type(err).__name__}: {first[0] if first else ''}")
