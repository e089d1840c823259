"""The one inference core under ``score``, ``rank``, ``evaluate``, ``data pairwise`` and the checks.

decode (worker processes) -> group equal shapes -> one batched forward -> per-photo outputs.

* Each photo is decoded once: the worker builds the network input with the model's
  :class:`~aescore.data.transforms.Preprocess` and, when a check asked for one, an RGB array of
  the photo at the size the check named, from the same decoded image.
* One forward pass per batch of equal shapes returns every output asked for: ``p_high`` (the
  softmax probability of class 1), ``embedding`` (the pooled features), ``region_map`` (the
  per-location logit map, for models that have one) and ``faults`` (per-kind fault
  probabilities, for models with a reasons head). A recipe with detail crops gives each photo
  two inputs (:class:`~aescore.data.transforms.DetailViews`: the whole frame and the crops); the
  model pools them. With ``tta_crops`` the N crops' outputs are
  averaged (the region map is not computed then: crops do not tile the photo).
* A photo can also be decoded without the network (``Job.network=False``): its model outputs are
  cached, but a check still needs its pixels.

Two runtimes (:mod:`aescore.inference.onnx_runtime`): PyTorch (:class:`LoadedModel`; decoding in
DataLoader worker processes) and ONNX Runtime (:class:`~aescore.inference.onnx_runtime.OnnxModel`;
decoding in a pool of worker processes of its own, :func:`_process_batches`, and torch is never
imported). Both are fed the same NumPy pixels
(:meth:`~aescore.data.transforms.Preprocess.array`); :func:`aescore.inference.loading.open_model`
opens a model under one of them. The network is driven through the model contract
(:mod:`aescore.models.contract`): one call, whatever the architecture.

Speed: JPEGs are decoded with Pillow's draft mode straight to the size the recipe needs; decoding
overlaps inference in worker processes (DataLoader's, or the ONNX path's own pool); ``torch.inference_mode``; BatchNorm folded into the
convolutions (:mod:`aescore.inference.fold`); channels_last; float16 weights on CUDA/MPS. On a
CPU, call :func:`aescore.sysinfo.prefer_passive_openmp` before importing torch (the CLI does):
decode workers and spinning OpenMP threads otherwise fight over the cores (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from aescore.data.transforms import Preprocess
from aescore.errors import ImageDecodeError
from aescore.inference.onnx_runtime import Runtime

if TYPE_CHECKING:
    from aescore.inference.onnx_runtime import OnnxModel

#: Outputs a forward pass can return (``want`` of :func:`infer`): ``p_high`` and the model
#: contract's optional outputs (:data:`aescore.models.contract.OUTPUT_NAMES`), each given by the
#: models that declare it (``faults``: a reasons head), left out by the others.
OUTPUTS = frozenset({"p_high", "embedding", "region_map", "faults"})


@dataclass(frozen=True)
class Job:
    """One photo to process: run the network on it, and/or prepare its pixels for checks."""

    path: str
    network: bool = True
    image_size: int | None = None  # long edge of the RGB array the checks need; None: none


@dataclass
class PhotoOutputs:
    """What the core produced for one :class:`Job` (``reason`` set when it could not be decoded)."""

    index: int
    path: str
    reason: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)  # p_high: float, embedding/region_map: numpy
    image: Any = None  # uint8 numpy [H, W, 3] at the job's image_size, or None
    lasting: bool = False  # the decode failure recurs until the file changes (worth recording)
    size: tuple[int, int] | None = None  # the upright photo's own (width, height), before draft mode


def tta_key(path: str) -> str:
    """The key that seeds a photo's multi-crop positions: its file name, so the same photo gets
    the same crops wherever it lives (``score`` and ``evaluate`` alike)."""
    return os.path.basename(path)


class RecipeInput:
    """The network input of a photo under a model's recipe (picklable): :meth:`Preprocess.tensor`
    for PyTorch, :meth:`Preprocess.array` (numpy, no TTA) for ONNX Runtime."""

    def __init__(self, preprocess: Preprocess, tta_crops: int | None, arrays: bool = False) -> None:
        self.preprocess, self.tta_crops, self.arrays = preprocess, tta_crops, arrays

    def __call__(self, img: Any, key: str) -> Any:
        if self.arrays:
            return self.preprocess.array(img)
        return self.preprocess.tensor(img, self.tta_crops, key)


class DecodeDataset:
    """Map-style dataset: index -> ``(index, tensor, image, failure reason, lasting, size)``; never
    raises. ``size``: the upright photo's own ``(width, height)`` (:class:`~aescore.data.images.Decoded`),
    None when it could not be decoded.

    ``make_input(img, key)`` builds the network input: ``[3, H, W]`` for one view, ``[K, 3, H, W]``
    for K views whose outputs are averaged. ``min_shorter``: the JPEG draft-mode target.
    """

    def __init__(self, jobs: Sequence[Job], make_input: Callable[[Any, str], Any], min_shorter: int | None) -> None:
        self.jobs = list(jobs)
        self.make_input = make_input
        self.min_shorter = min_shorter

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[int, Any, Any, str | None, bool, tuple[int, int] | None]:
        return self.decode(index, self.jobs[index])

    def decode(self, index: int, job: Job) -> tuple[int, Any, Any, str | None, bool, tuple[int, int] | None]:
        """The item of ``job`` (labelled ``index``): what a decode worker computes for one job."""
        from aescore.data.images import decode_rgb, is_lasting_failure

        try:
            img, size = decode_rgb(job.path, min_shorter=self.min_shorter)
            x = self.make_input(img, tta_key(job.path)) if job.network else None
            return index, x, _array_at(img, job.image_size) if job.image_size else None, None, False, size
        except ImageDecodeError as err:
            return index, None, None, err.reason, is_lasting_failure(err), None
        except MemoryError:
            return index, None, None, "cannot decode (MemoryError: not enough memory)", False, None
        except Exception as err:  # noqa: BLE001 - one odd file must never stop a library-wide run
            # Not recorded as lasting: e.g. a broken recipe says nothing about the file.
            return index, None, None, f"cannot decode ({type(err).__name__}: {err})", False, None


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: the worker ignores SIGINT and SIGTERM.

    A terminal's Ctrl-C reaches the whole process group, and a batch scheduler's pre-emption
    sends SIGTERM to every process of a job. A worker that quit on either would make the main
    process fail with "DataLoader worker exited unexpectedly" before it can flush the score cache
    or save a checkpoint; the main process alone decides when to stop. (A worker still exits once
    its watchdog sees the main process gone.)
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _array_at(img: Any, long_edge: int) -> Any:
    """``img`` scaled down (never up) so its long edge is at most ``long_edge``, as uint8 numpy."""
    import numpy as np
    from PIL import Image

    if max(img.size) > long_edge:
        img = img.copy()
        img.thumbnail((long_edge, long_edge), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _keep_items(items: list[Any]) -> list[Any]:
    # Items stay separate: they are grouped by shape in the main process, not stacked here.
    return items


@dataclass
class LoadedModel:
    """A network ready for inference (a :class:`~aescore.models.contract.ScoringModel`: eval
    mode, BatchNorm folded, on its device), with its recipe; made by
    :func:`aescore.inference.loading.open_model`, or by training validation around its model."""

    runtime = Runtime.torch  # (a class attribute, as OnnxModel's)

    module: Any
    preprocess: Preprocess
    device: str
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    amp_dtype: Any = None  # autocast dtype (training validation under AMP); None: the weights' dtype
    forward_calls: int = 0

    @property
    def sha256(self) -> str:
        """The weights' sha256 (verified against the card when they were loaded)."""
        return str(self.card["sha256"])

    def forward(self, x: Any, want: frozenset[str]) -> dict[str, Any]:
        """``[B, 3, H, W]`` (or batched :class:`DetailViews`) -> the asked-for outputs as float32
        tensors on the CPU. The network gives what it declares (its
        :class:`~aescore.models.contract.Capabilities`) of what is asked; the rest stays out."""
        import torch

        from aescore.data.transforms import DetailViews
        from aescore.models.contract import ModelInputs
        from aescore.tensorutil import ensure_finite_scores

        self.forward_calls += 1
        weight = next(self.module.parameters(), None)  # None: a parameter-free model (test stubs)
        dtype = weight.dtype if weight is not None else torch.float32

        def prepare(t: Any) -> Any:
            t = t.to(self.device, dtype=dtype, non_blocking=True)
            return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t.contiguous()

        inputs = ModelInputs(prepare(x.whole), prepare(x.crops)) if isinstance(x, DetailViews) else ModelInputs(prepare(x))
        kind = self.device.split(":")[0]
        with torch.autocast(device_type=kind, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            got = self.module.forward_outputs(inputs, want & self.module.capabilities.outputs())
        out: dict[str, Any] = {"p_high": torch.softmax(got.logits.float(), dim=1)[:, 1].cpu()}
        ensure_finite_scores(out["p_high"], str(self.card.get("name") or "the model"))
        if got.embedding is not None:
            out["embedding"] = got.embedding.float().cpu()
        if got.region_map is not None:
            out["region_map"] = got.region_map.float().cpu()
        if got.faults is not None:
            out["faults"] = torch.sigmoid(got.faults.float()).cpu()
        return out


def default_batch_size(device: str) -> int:
    """Images per batch: small on CPU, larger on GPU.

    On CPU a batch of full photos (375 x 562 at the default recipe) overflows the caches: the
    network alone ran no faster at 16 than at 4, and rank ran fastest at 4 (11.6 images/s
    against 8.7 at 16 on 2 cores, benchmarks/bench_rank.py; docs/performance.md)."""
    return 4 if device == "cpu" else 64


def default_workers(device: str, n_items: int, batch_size: int) -> int:
    """Decode processes: one per core on CPU (at most 8), up to 8 beside a GPU; none for a run
    that fits in one batch, where starting processes costs more than it saves.

    Why so many on CPU: decoding a camera JPEG costs about as much CPU as the network pass, and a
    worker whose prefetch queue is full sleeps, so workers and the network's threads share the
    cores well. Measured with benchmarks/bench_rank.py on 2 cores with the earlier 256-px default
    model: 2 workers 9.2 images/s, 1 worker 6.0 images/s (see docs/performance.md)."""
    if n_items <= batch_size:
        return 0
    from aescore.sysinfo import usable_cores

    cores = usable_cores()
    if device == "cpu":
        return max(1, min(8, cores))
    return max(1, min(8, cores - 1))


def infer(
    model: "LoadedModel | OnnxModel | None",
    jobs: Sequence[Job],
    *,
    preprocess: Preprocess | None = None,
    want: frozenset[str] = frozenset({"p_high"}),
    tta_crops: int | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    draft: bool = True,
    progress: Callable[[int], None] | None = None,
    make_input: Callable[[Any, str], Any] | None = None,
) -> Iterator[PhotoOutputs]:
    """Run ``jobs``; yields one :class:`PhotoOutputs` per job, in input order.

    ``model`` may be None when no job needs the network (then ``preprocess`` gives the decode
    size). The input is the recipe's view (``tta_crops``: its N crops, averaged), unless
    ``make_input(img, key)`` builds another (training validation's transforms). Decode failures
    come back with ``reason`` set; the run goes on. ``progress(n)`` is called with the number of
    jobs finished after each batch.
    """
    if not jobs:
        return
    unknown = set(want) - OUTPUTS
    if unknown:
        raise ValueError(f"unknown network outputs {sorted(unknown)}; known: {sorted(OUTPUTS)}")
    if model is None and any(j.network for j in jobs):
        raise ValueError("jobs need the network but no model was given")
    recipe = model.preprocess if model is not None else preprocess
    if recipe is None:
        raise ValueError("infer() needs a model or a preprocess recipe")
    device = model.device if model is not None else "cpu"
    use_torch = model is not None and model.runtime is Runtime.torch
    tta = tta_crops or None
    if tta and not use_torch:
        raise ValueError("multi-crop TTA runs under PyTorch only")
    bs = batch_size or default_batch_size(device)
    n_workers = workers if workers is not None else default_workers(device, len(jobs), bs)
    dataset = DecodeDataset(jobs, make_input or RecipeInput(recipe, tta, arrays=not use_torch), recipe.decode_size(tta) if draft else None)
    if use_torch:
        import torch

        batches = _torch_batches(dataset, bs, n_workers, device)
        context: contextlib.AbstractContextManager[Any] = torch.inference_mode()
    else:
        batches, context = _process_batches(dataset, bs, n_workers), contextlib.nullcontext()
    with context:
        for batch in batches:
            results: dict[int, PhotoOutputs] = {}
            by_shape: dict[tuple[int, ...], list[int]] = {}
            tensors: dict[int, Any] = {}
            for index, x, image, reason, lasting, size in batch:
                results[index] = PhotoOutputs(index, jobs[index].path, reason, {}, image, lasting, size)
                if x is not None:
                    tensors[index] = x
                    by_shape.setdefault(tuple(x.shape), []).append(index)
            for group in by_shape.values():
                assert model is not None
                _forward_group(model, [tensors[i] for i in group], group, results, want)
            for index in sorted(results):
                yield results[index]
            if progress is not None:
                progress(len(batch))


def _torch_batches(dataset: DecodeDataset, bs: int, n_workers: int, device: str) -> Iterator[list[Any]]:
    """Batches of decoded items from DataLoader worker processes (the PyTorch runtime)."""
    from torch.utils.data import DataLoader

    with warnings.catch_warnings():
        # An explicit --workers above the core count is the user's choice; PyTorch's
        # multi-line warning about it would only clutter stderr.
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        loader: DataLoader[Any] = DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=bs,
            shuffle=False,
            num_workers=n_workers,
            collate_fn=_keep_items,
            pin_memory=device.startswith("cuda"),
            prefetch_factor=2 if n_workers > 0 else None,
            worker_init_fn=ignore_stop_signals if n_workers > 0 else None,
        )
        return iter(loader)


def _process_batches(dataset: DecodeDataset, bs: int, n_workers: int) -> Iterator[list[Any]]:
    """Batches of decoded items from a pool of ``n_workers`` processes (0: in this thread), in
    order, at most two batches per worker decoded ahead (memory stays bounded): the decoding of
    the ONNX Runtime path, without torch.

    Why processes: decoding is mostly Python-level work around Pillow and NumPy, which threads
    serialise on the GIL; with threads this path ran at 0.68 of the decode/network bound against
    0.91 for PyTorch's DataLoader processes (docs/performance.md, sections 7 and 12). They ignore
    SIGINT and SIGTERM (:func:`ignore_stop_signals`): the main process alone decides when to stop,
    and flushes the score cache first. How they start: :func:`_decode_context`.
    """
    if n_workers <= 0:
        for start in range(0, len(dataset), bs):
            yield [dataset[i] for i in range(start, min(start + bs, len(dataset)))]
        return
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from aescore.errors import AescoreError

    ahead = bs * 2 * (n_workers + 1)
    pending: deque[Future[Any]] = deque()
    next_index = 0
    pool = ProcessPoolExecutor(n_workers, mp_context=_decode_context(), initializer=_start_decoder,
                               initargs=(dataset.make_input, dataset.min_shorter))
    try:
        while pending or next_index < len(dataset):
            while next_index < len(dataset) and len(pending) < ahead:
                pending.append(pool.submit(_decode_one, next_index, dataset.jobs[next_index]))
                next_index += 1
            try:
                batch = [pending.popleft().result() for _ in range(min(bs, len(pending)))]
            except BrokenProcessPool:  # a worker was killed (by the OOM killer, say): no photo's fault
                raise AescoreError("a photo-decoding process ended unexpectedly (killed, perhaps for lack of "
                                   "memory); fewer workers, or decoding in the main process (workers 0), avoids it") from None
            yield batch
    finally:
        # Also on Ctrl-C or an early stop: drop what is queued, let the running decodes finish.
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_context() -> Any:
    """The multiprocessing context of the decode workers: *fork* on Linux, else the platform's
    default (spawn on macOS and Windows), as PyTorch's DataLoader does.

    Why fork although ONNX Runtime's threads may be running here: a forked child has only the
    thread that forked; the workers never call into ONNX Runtime (Pillow and NumPy only) and end
    with ``os._exit``, so the parent's idle thread pool is nothing to them. Forkserver and spawn
    would instead re-run the user's main script in each worker (an unguarded script, such as
    docs/usage.md's Python API example, would then start itself again) and cost a fresh
    interpreter and its imports before the first photo: forkserver added 0.15-0.19 s to a whole
    `rank` of 8-12 photos on 2 cores (docs/performance.md, section 12). Python 3.14 makes
    forkserver the Linux default: hence fork is named here."""
    import multiprocessing

    if str(sys.platform).startswith("linux"):  # (str: mypy would judge the branch by its own platform)
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


_WORKER_DATASET: DecodeDataset | None = None


def _start_decoder(make_input: Callable[[Any, str], Any], min_shorter: int | None) -> None:
    """Decode worker initialiser: ignore stop signals; keep the recipe for every job it gets."""
    global _WORKER_DATASET
    ignore_stop_signals()
    _WORKER_DATASET = DecodeDataset([], make_input, min_shorter)


def _decode_one(index: int, job: Job) -> tuple[int, Any, Any, str | None, bool, tuple[int, int] | None]:
    """One job decoded in a worker (:meth:`DecodeDataset.decode`)."""
    assert _WORKER_DATASET is not None
    return _WORKER_DATASET.decode(index, job)


def stack_inputs(xs: Sequence[Any]) -> Any:
    """One batch from equal-shape inputs of :meth:`Preprocess.tensor` or :meth:`Preprocess.array`:
    stacked (a tensor or an array), or for detail inputs the whole frames and the crops stacked
    apart (a batched :class:`DetailViews`)."""
    from aescore.data.transforms import DetailViews

    if isinstance(xs[0], DetailViews):
        return DetailViews(_stack([v.whole for v in xs]), _stack([v.crops for v in xs]))
    return _stack(list(xs))


def _stack(items: list[Any]) -> Any:
    import numpy as np

    if isinstance(items[0], np.ndarray):
        return np.stack(items)
    import torch

    return torch.stack(items)


def _forward_group(
    model: "LoadedModel | OnnxModel", xs: list[Any], group: list[int], results: dict[int, PhotoOutputs], want: frozenset[str]
) -> None:
    """One forward pass over equal-shape inputs; the outputs go into ``results`` per index.
    Inputs of several crops each (``[K, 3, H, W]``, TTA) are run as B x K images and averaged per
    photo; detail inputs (:class:`DetailViews`) are pooled by the model."""
    from aescore.data.transforms import DetailViews

    import numpy as np

    x = stack_inputs(xs)
    if not isinstance(x, DetailViews) and x.ndim == 5:  # TTA: PyTorch only
        b, n = x.shape[:2]
        out = model.forward(x.flatten(0, 1), want - {"region_map"})
        out = {k: v.view(b, n, *v.shape[1:]).mean(1) for k, v in out.items()}
    else:
        out = model.forward(x, want)
    p_high = out["p_high"].tolist()
    arrays = {k: np.asarray(v) for k, v in out.items() if k != "p_high"}
    for k, index in enumerate(group):
        outputs = results[index].outputs
        outputs["p_high"] = float(p_high[k])
        for name, arr in arrays.items():
            outputs[name] = arr[k].copy()
