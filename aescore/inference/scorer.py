"""Batched scoring of photo files: decode in DataLoader workers while the network runs.

The score is ``softmax(model(x))[:, 1]``: the model's probability that the photo belongs to the
"high aesthetics" class it was trained on (see the model card), in [0, 1].

Recipes (the ``recipe`` string is part of the score-cache key):

* ``full`` (default): one fully convolutional pass over the whole image resized per the card's
  ``preprocess["eval"]`` (MPA paper recipe: shorter edge 256; the bundled default model: 375;
  the long edge centre-cropped to at most 1.5x).
  Cheap, and it sees the whole composition.
* ``ttaN``: the MPA paper's multi-crop evaluation — the shorter edge resized to the eval size
  (aspect kept, nothing cut), N random crops of the training crop size (224), probabilities
  averaged. Crop positions are seeded by the file name, so a photo always gets the same crops.

Speed: JPEGs are decoded with Pillow's draft mode straight to the size the recipe needs;
decoding runs in worker processes overlapping inference; items of equal tensor shape are stacked
into one forward pass (a batch of mixed landscape/portrait photos becomes one pass per shape);
``torch.inference_mode``, BatchNorm folded into the convolutions (:mod:`aescore.inference.fold`),
channels_last, and float16 weights on CUDA/MPS. On a CPU, call
:func:`aescore.sysinfo.prefer_passive_openmp` before importing torch (the CLI does): decode workers
and spinning OpenMP threads otherwise fight over the cores (docs/performance.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from aescore.errors import AescoreError, ImageDecodeError, UsageError


class Scored(NamedTuple):
    """One result: ``score`` in [0, 1] or None with ``reason`` when the file could not be decoded."""

    path: str
    score: float | None
    reason: str | None
    embedding: Any = None  # float32 numpy vector when embeddings were asked for


def preprocess_fingerprint(preprocess: dict[str, Any]) -> str:
    """Short stable hash of a card's preprocess block (editing it must invalidate cached scores)."""
    text = json.dumps(preprocess, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def recipe_name(tta_crops: int | None) -> str:
    """``"full"`` for the one-pass recipe, ``"ttaN"`` for N-crop evaluation."""
    return f"tta{tta_crops}" if tta_crops else "full"


def decode_size(preprocess: dict[str, Any], tta_crops: int | None = None) -> int:
    """Smallest shorter edge the recipe needs from the decoder (the draft-mode target).

    The multi-crop recipe of square-input models resizes to a larger base than the eval size
    (see :func:`tta_geometry`); decoding below it would upsample.
    """
    if tta_crops:
        return tta_geometry(preprocess)[1]
    return int(preprocess["eval"]["size"])


def tta_geometry(preprocess: dict[str, Any]) -> tuple[str, int, int]:
    """``(mode, base size, crop size)`` of the multi-crop recipe for a card's preprocess."""
    cfg = preprocess["eval"]
    size = int(cfg["size"])
    crop = int(preprocess.get("train", {}).get("crop", 0) or 0)
    if cfg["mode"] == "square":
        # RGNet-style whole-image models: crops of the input size from a ~15% larger square,
        # the middle of its training scale jitter [1.05, 1.25].
        return "square", round(size * 1.15), crop or size
    return "shorter", size, crop or 224


def tta_tensor(img: Any, preprocess: dict[str, Any], crops: int, seed_text: str) -> Any:
    """``[crops, 3, c, c]`` normalised random crops of the resized image (deterministic per ``seed_text``)."""
    import torch
    from PIL import Image
    from aescore.tensorutil import pil_to_tensor  # not torchvision's: its import costs ~1-2 s (torch._dynamo)

    from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mode, base, crop = tta_geometry(preprocess)
    w, h = img.size
    if mode == "square":
        new_w = new_h = base
    elif w <= h:
        new_w, new_h = base, max(base, round(h * base / w))
    else:
        new_w, new_h = max(base, round(w * base / h)), base
    img = img.resize((new_w, new_h), Image.BILINEAR)
    x = pil_to_tensor(img).float().div_(255.0)
    mean = torch.tensor(preprocess.get("mean", IMAGENET_MEAN)).view(3, 1, 1)
    std = torch.tensor(preprocess.get("std", IMAGENET_STD)).view(3, 1, 1)
    x = x.sub_(mean).div_(std)
    crop_h, crop_w = min(crop, new_h), min(crop, new_w)
    rng = random.Random(int.from_bytes(hashlib.sha256(seed_text.encode("utf-8", "surrogateescape")).digest()[:8], "big"))
    out = []
    for _ in range(crops):
        top, left = rng.randint(0, new_h - crop_h), rng.randint(0, new_w - crop_w)
        out.append(x[:, top : top + crop_h, left : left + crop_w])
    return torch.stack(out)


class _DecodeDataset:
    """Map-style dataset: index -> ``(index, tensor or None, reason or None)``; never raises.

    Picklable (plain fields; the transform is built lazily inside each worker).
    """

    def __init__(self, paths: Sequence[str], preprocess: dict[str, Any], tta_crops: int | None, draft: bool) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess
        self.tta_crops = tta_crops
        self.min_shorter = decode_size(preprocess, tta_crops) if draft else None
        self._transform: Callable[[Any], Any] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Any, str | None]:
        from aescore.data.images import load_rgb

        path = self.paths[index]
        try:
            img = load_rgb(path, min_shorter=self.min_shorter)
            if self.tta_crops:
                return index, tta_tensor(img, self.preprocess, self.tta_crops, os.path.basename(path)), None
            if self._transform is None:
                from aescore.data.transforms import build_eval_transform

                self._transform = build_eval_transform(self.preprocess)
            return index, self._transform(img), None
        except ImageDecodeError as err:
            return index, None, err.reason
        except Exception as err:  # noqa: BLE001 - one odd file must never stop a library-wide run
            return index, None, f"cannot decode ({type(err).__name__}: {err})"


def _collate(items: list[Any]) -> list[Any]:
    # Keep items separate: they are grouped by shape in the main process, not stacked here.
    return items


def resolve_device(spec: str = "auto") -> str:
    """``auto`` -> cuda if available, else mps, else cpu; an explicit unavailable device is an error."""
    import torch

    spec = spec.lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if spec == "cuda" and not torch.cuda.is_available():
        raise AescoreError("--device cuda: no CUDA GPU is available to PyTorch")
    if spec == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise AescoreError("--device mps: Apple MPS is not available to PyTorch")
    if spec not in ("cpu", "cuda", "mps") and not spec.startswith("cuda:"):
        raise UsageError(f"--device {spec!r}: expected auto, cpu, cuda or mps")
    return spec


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


class Scorer:
    """Scores photo files with one model card's weights (loaded lazily on first use).

    ``weights_path``: a ``.safetensors`` file or its ``.json`` card, or None for the default model.
    ``device``: auto/cpu/cuda/mps. ``batch_size``/``workers``: None chooses from the device and the
    core count. ``tta_crops``: None/0 for the one-pass recipe, N for N-crop evaluation. ``draft``:
    reduced-size JPEG decoding (off only for reference comparisons).
    """

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        workers: int | None = None,
        tta_crops: int | None = None,
        draft: bool = True,
    ) -> None:
        from aescore.weights import read_card, resolve_model

        if batch_size is not None and batch_size < 1:
            raise UsageError("--batch-size must be >= 1")
        if workers is not None and workers < 0:
            raise UsageError("--workers must be >= 0")
        if tta_crops is not None and tta_crops < 0:
            raise UsageError("--tta-crops must be >= 0")
        self.weights_path = Path(resolve_model(None if weights_path is None else str(weights_path)))
        self.card: dict[str, Any] = read_card(self.weights_path)
        self.device_spec = device
        self.batch_size = batch_size
        self.workers = workers
        self.tta_crops = tta_crops or None
        self.draft = draft
        self.model: Any = None
        self.device: str | None = None
        self.images_scored = 0  # files that went through the network (not the cache)
        self.forward_calls = 0

    @property
    def weights_sha256(self) -> str:
        """The weights' sha256 as recorded in (and verified against) the model card."""
        return str(self.card["sha256"])

    @property
    def recipe(self) -> str:
        """Cache-key recipe: ``full`` / ``ttaN`` plus the preprocess fingerprint."""
        return f"{recipe_name(self.tta_crops)}@{preprocess_fingerprint(self.card['preprocess'])}"

    def load(self) -> None:
        """Load and verify the weights, move the model to the device (idempotent)."""
        if self.model is not None:
            return
        from aescore.inference.fold import prepare_for_inference
        from aescore.weights import load_weights

        self.device = resolve_device(self.device_spec)
        model, card = load_weights(self.weights_path, device="cpu")
        self.card = card
        model = prepare_for_inference(model, self.device)
        if self.device != "cpu":
            model = model.half()  # float16 on GPU: ~2x throughput; scores move by ~1e-3
        self.model = model

    def _forward(self, x: Any, with_embeddings: bool) -> tuple[Any, Any]:
        import torch

        self.forward_calls += 1
        weight = next(self.model.parameters(), None)  # None: a parameter-free model (test stubs)
        dtype = weight.dtype if weight is not None else torch.float32
        x = x.to(self.device, dtype=dtype, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if with_embeddings:
            logits, emb = self.model.forward_with_embedding(x)  # one pass, not two
            emb = emb.float()
        else:
            logits, emb = self.model(x), None
        return torch.softmax(logits.float(), dim=1)[:, 1], emb

    def score_paths(
        self,
        paths: Sequence[str | os.PathLike[str]],
        progress: Callable[[int], None] | None = None,
        with_embeddings: bool = False,
    ) -> Iterator[Scored]:
        """Score ``paths``; yields one :class:`Scored` per path, in input order.

        Decode failures come back as ``Scored(path, None, reason)``; the run goes on.
        ``progress(n)`` is called with the number of files finished after each batch.
        """
        import torch
        from torch.utils.data import DataLoader

        paths = [os.fspath(p) for p in paths]
        if not paths:
            return
        self.load()
        assert self.device is not None
        batch_size = self.batch_size or default_batch_size(self.device)
        workers = self.workers if self.workers is not None else default_workers(self.device, len(paths), batch_size)
        dataset = _DecodeDataset(paths, self.card["preprocess"], self.tta_crops, self.draft)
        with warnings.catch_warnings():
            # An explicit --workers above the core count is the user's choice; PyTorch's
            # multi-line warning about it would only clutter stderr.
            warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
            loader = DataLoader(
                dataset,  # type: ignore[arg-type]
                batch_size=batch_size,
                shuffle=False,
                num_workers=workers,
                collate_fn=_collate,
                pin_memory=self.device.startswith("cuda"),
                prefetch_factor=2 if workers > 0 else None,
            )
            batches = iter(loader)
        with torch.inference_mode():
            for batch in batches:
                results: dict[int, Scored] = {}
                by_shape: dict[tuple[int, ...], list[tuple[int, Any]]] = {}
                for index, x, reason in batch:
                    if x is None:
                        results[index] = Scored(paths[index], None, reason)
                    else:
                        by_shape.setdefault(tuple(x.shape), []).append((index, x))
                for group in by_shape.values():
                    xs = torch.stack([x for _, x in group])
                    if self.tta_crops:
                        b, n = xs.shape[:2]
                        probs, emb = self._forward(xs.flatten(0, 1), with_embeddings)
                        probs = probs.view(b, n).mean(1)
                        emb = emb.view(b, n, -1).mean(1) if emb is not None else None
                    else:
                        probs, emb = self._forward(xs, with_embeddings)
                    probs_list = probs.cpu().tolist()
                    emb_np = emb.cpu().numpy() if emb is not None else None
                    for k, (index, _) in enumerate(group):
                        vec = emb_np[k].copy() if emb_np is not None else None
                        results[index] = Scored(paths[index], float(probs_list[k]), None, vec)
                    self.images_scored += len(group)
                for index in sorted(results):
                    yield results[index]
                if progress is not None:
                    progress(len(batch))


def decoder_tag() -> str:
    """The versions a decode failure depends on (an upgrade may read a file an older one could not)."""
    import PIL

    from aescore import __version__

    return f"aescore-{__version__}/pillow-{PIL.__version__}"


def _lasting_failure(reason: str) -> bool:
    """Whether a decode failure will recur until the file changes, so it is worth recording.

    Not: a file that vanished, and operating-system errors (``[Errno 13] Permission denied``, I/O
    errors), which can go away without the file's size or mtime changing.
    """
    return reason not in ("file not found", "is a directory") and "[Errno" not in reason


class CachedRun(NamedTuple):
    """Outcome of :func:`score_with_cache`: per input index ``(score, embedding bytes or None)``."""

    scores: dict[int, tuple[float, bytes | None]]
    skipped: list[tuple[str, str]]  # (path, reason)
    from_cache: int
    computed: int


def score_with_cache(
    files: Sequence[Any],
    weights_path: str | os.PathLike[str],
    card: dict[str, Any],
    cache: Any = None,
    scorer_options: dict[str, Any] | None = None,
    with_embeddings: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
) -> CachedRun:
    """Score ``files`` (:class:`~aescore.inference.discover.FoundFile`), using ``cache`` when given.

    Hits are looked up with nothing but SQLite and the stat values already collected, so a fully
    cached run never imports torch or loads the model. Files that failed to decode before (same
    size, mtime and decoder versions) and files needing a missing extra (HEIC, RAW) are skipped
    without the model too. Misses are scored by a :class:`Scorer` (``scorer_options``: device,
    batch_size, workers, tta_crops) and written back one batch at a time, so an interrupted run
    keeps what it finished. ``on_skip(path, reason)`` is called for each undecodable file;
    ``progress(total_misses, already_done)`` may return a callable advanced by the number of
    files finished.
    """
    from aescore.data.images import missing_extra
    from aescore.inference.cache import CacheKey

    opts = dict(scorer_options or {})
    recipe = f"{recipe_name(opts.get('tta_crops'))}@{preprocess_fingerprint(card['preprocess'])}"
    sha = str(card["sha256"])
    keys = [CacheKey(f.real, f.size, f.mtime_ns) for f in files]
    hits = cache.get_many(keys, sha, recipe, need_embedding=with_embeddings) if cache is not None else {}
    scores: dict[int, tuple[float, bytes | None]] = {}
    misses: list[int] = []
    for i, key in enumerate(keys):
        hit = hits.get(key.path)
        if hit is None:
            misses.append(i)
        else:
            scores[i] = (hit.score, hit.embedding)
    from_cache = len(scores)
    skipped: list[tuple[str, str]] = []

    def skip(path: str, reason: str) -> None:
        skipped.append((path, reason))
        if on_skip is not None:
            on_skip(path, reason)

    decoder = decoder_tag()
    known = cache.get_failures([keys[i] for i in misses], decoder) if cache is not None and misses else {}
    to_score: list[int] = []
    for i in misses:
        reason = known.get(keys[i].path) or missing_extra(files[i].path)
        if reason:
            skip(files[i].path, reason)
        else:
            to_score.append(i)
    computed = 0
    if to_score:
        scorer = Scorer(weights_path, **opts)
        advance = progress(len(to_score), len(files) - len(to_score)) if progress is not None else None
        pending: list[tuple[Any, float, bytes | None]] = []
        failed: list[tuple[Any, str]] = []
        by_path = {files[i].path: i for i in to_score}
        for result in scorer.score_paths([files[i].path for i in to_score], progress=advance, with_embeddings=with_embeddings):
            i = by_path[result.path]
            if result.score is None:
                reason = result.reason or "cannot decode"
                skip(result.path, reason)
                if _lasting_failure(reason):
                    failed.append((keys[i], reason))
                continue
            emb = result.embedding.astype("float32").tobytes() if result.embedding is not None else None
            scores[i] = (result.score, emb)
            computed += 1
            pending.append((keys[i], result.score, emb))
            if cache is not None and len(pending) >= 64:
                cache.put_many(pending, sha, recipe)
                pending = []
        if cache is not None:
            cache.put_many(pending, sha, recipe)
            cache.put_failures(failed, decoder)
    return CachedRun(scores, skipped, from_cache, computed)
