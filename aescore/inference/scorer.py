"""Score photo files with one model, without the cache or checks: a thin object over the inference
core (:mod:`aescore.inference.core`), for scripts, benchmarks and ``data pairwise``.

The score is ``softmax(model(x))[:, 1]``: the model's probability that the photo belongs to the
"high" class it was trained on (see the model card), in [0, 1]. The recipe (the card's
:class:`~aescore.data.transforms.Preprocess`) is ``full`` — one pass over the whole photo — or,
with ``tta_crops=N``, the MPA paper's N random crops averaged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence



class Scored(NamedTuple):
    """One result: ``score`` in [0, 1] or None with ``reason`` when the file could not be decoded."""

    path: str
    score: float | None
    reason: str | None
    embedding: Any = None  # float32 numpy vector when embeddings were asked for


class Scorer:
    """Scores photo files with one model (loaded lazily on first use).

    ``weights_path``: a model name, a ``.safetensors`` file or its ``.json`` card, or None for the
    default. The other arguments are those of :class:`aescore.cull.Settings` (validated by the
    same :func:`~aescore.inference.loading.check_run_options`), but ``runtime`` defaults to ``torch`` (:attr:`model` is then the PyTorch module).
    """

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        workers: int | None = None,
        tta_crops: int | None = None,
        draft: bool = True,
        runtime: str = "torch",
    ) -> None:
        from aescore.inference.loading import check_run_options, find_model

        self.runtime = check_run_options(runtime, batch_size, workers, tta_crops)
        self.device_spec, self.batch_size, self.workers = device, batch_size, workers
        self.tta_crops, self.draft = tta_crops or None, draft
        self.ref = find_model(weights_path)  # resolved and its card read once, here
        self.weights_path: Path = self.ref.path
        self.card: dict[str, Any] = self.ref.card
        self.loaded: Any = None  # aescore.inference.core.LoadedModel or an OnnxModel

    @property
    def model(self) -> Any:
        """The prepared network (None until :meth:`load`, or under ONNX Runtime)."""
        return getattr(self.loaded, "module", None)

    @property
    def forward_calls(self) -> int:
        """Forward passes run so far (equal shapes are batched together)."""
        return self.loaded.forward_calls if self.loaded is not None else 0

    @property
    def recipe(self) -> str:
        """Cache-key recipe: ``full`` / ``ttaN`` plus the preprocess fingerprint."""
        from aescore.data.transforms import Preprocess

        return Preprocess.from_card(self.card["preprocess"]).recipe(self.tta_crops)

    def load(self) -> None:
        """Load and verify the weights, move the model to the device (idempotent)."""
        if self.loaded is None:
            from aescore.inference.loading import open_model

            self.loaded = open_model(self.ref, self.device_spec, self.runtime, tta_crops=self.tta_crops)
            self.card = self.loaded.card

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
        from aescore.inference.core import Job, infer

        jobs = [Job(os.fspath(p)) for p in paths]
        if not jobs:
            return
        self.load()
        want = frozenset({"p_high", "embedding"} if with_embeddings else {"p_high"})
        for out in infer(
            self.loaded, jobs, want=want, tta_crops=self.tta_crops, batch_size=self.batch_size,
            workers=self.workers, draft=self.draft, progress=progress,
        ):
            if out.reason is not None:
                yield Scored(out.path, None, out.reason)
            else:
                yield Scored(out.path, out.outputs["p_high"], None, out.outputs.get("embedding"))
