"""The one training loop: :class:`Trainer` (one optimiser step, the one way), :func:`fit_steps`
(the step loop) and :func:`train_one_epoch` (an epoch of ``aescore train`` on top of it), its
losses, the per-pass tallies and the stop request.

Every trainer in aescore steps through here: ``aescore train`` (:mod:`aescore.engine.run`), the
default model's recipe (``scripts/train_default_model.py``) and ``learn --fine-tune``
(:mod:`aescore.learn.finetune`). Each brings its own model, data (any iterable of batches) and
loss; this module owns what they share: autocast around forward + loss (the dtype chosen by
:func:`aescore.engine.setup.resolve_amp`), the grad scaler around backward and the optimiser step,
a per-step learning-rate schedule, the NaN/inf check and the stop request. Checkpoints of a
:class:`Trainer` with every RNG state, for exact resume: :func:`aescore.engine.checkpoint.step_checkpoint`.

Host syncs (is the loss finite? did any rank ask to stop? what is the running loss?) happen every
``CHECK_EVERY`` steps and on the first step, so the GPU is not stalled every step.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from aescore.engine.distributed import DistInfo, any_rank
from aescore.engine.evaluate import logits_per_patch
from aescore.errors import AescoreError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# on_progress(step, mean loss so far or None before the first sync, images done in this process)
ProgressFn = Callable[[int, "float | None", int], None]
CHECK_EVERY = 10  # steps between host syncs: loss finite?, stop requested on any rank?, running loss


class LossNotFinite(AescoreError):
    """The training loss became NaN or infinite; nothing was exported from the broken state."""

    def __init__(self, step: int) -> None:
        super().__init__(
            f"training loss became NaN/inf by step {step}; stopped without exporting a model from it "
            "(a lower learning rate, or full precision, may help); the last good state is in last.pt, if any"
        )
        self.step = step


@dataclass
class EpochStats:
    """What one (possibly partial) pass over the training data produced."""

    loss_sum: float = 0.0
    n_images: int = 0
    steps: int = 0
    seconds: float = 0.0
    failed: set[int] = field(default_factory=set)
    first_failure: str | None = None  # the first decode failure's reason, for error messages
    interrupted: bool = False


def mse_on_p_high(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Regression loss (RGNet on AADB): mean squared error between P(high) and the [0, 1] score.

    ``logits`` is ``[B, K, 2]``; every patch of an image is compared with the image's score.
    """
    p_high = torch.softmax(logits.float(), dim=-1)[..., 1]
    return (p_high - target.float().view(-1, 1)).pow(2).mean()


def make_loss(objective: str, beta: float) -> LossFn:
    """``loss(logits [B, K, 2], target [B])`` for a config's objective name."""
    if objective == "mse":
        return mse_on_p_high
    from aescore.losses import get_objective

    return get_objective(objective, beta=beta) if objective in ("mp_ada", "pair_rank") else get_objective(objective)


class StopRequest:
    """SIGINT/SIGTERM -> a flag checked at step boundaries; a second Ctrl-C aborts at once."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.requested = False
        self._log = log

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self._log("aescore: stop requested: saving a checkpoint at the next step boundary (Ctrl-C again to abort)")

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        """Install the handlers while the block runs (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def make_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> Any:
    """The gradient scaler for ``amp_dtype``: enabled for fp16 autocast only (bf16 and fp32 keep
    the gradients' range, and a disabled scaler is a pass-through)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


#: ``schedule(step, base_lr) -> lr``: a parameter group's learning rate for the 0-based ``step``
#: about to be taken, from its base (initial) rate.
Schedule = Callable[[int, float], float]


@dataclass
class Trainer:
    """A model and what steps it, stepped the one way (:meth:`step`).

    ``model`` is what the loss calls (DDP- or compile-wrapped, perhaps); ``module`` the plain
    module that checkpoints hold (default: ``model``). ``amp_dtype`` None trains in full precision;
    ``scaler`` defaults to :func:`make_scaler`'s. ``schedule``, when given, sets every parameter
    group's rate before each step from its base rate (``initial_lr``, recorded here when the
    optimiser has none yet, and kept across a resume by
    :func:`aescore.engine.checkpoint.resume_steps`); epoch schedules (``aescore train``) are
    stepped by their caller instead.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    amp_dtype: torch.dtype | None = None
    scaler: Any = None
    schedule: Schedule | None = None
    module: nn.Module | None = None

    def __post_init__(self) -> None:
        if self.scaler is None:
            self.scaler = make_scaler(self.device, self.amp_dtype)
        if self.module is None:
            self.module = self.model
        if self.schedule is not None:
            for group in self.optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])

    def set_lr(self, step: int) -> None:
        """The schedule's rates for ``step`` (nothing without a schedule)."""
        if self.schedule is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.schedule(step, group["initial_lr"])

    def step(self, compute: Callable[[], Any]) -> Any:
        """One optimiser step on the loss ``compute()`` returns (a tensor, or a tuple whose first
        item is the loss): forward and loss under autocast, then backward through the scaler and
        the optimiser step. Returns what ``compute`` returned."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = compute()
        loss = out[0] if isinstance(out, tuple) else out
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return out


@dataclass(frozen=True)
class StepDone:
    """What :func:`fit_steps` hands ``on_step`` after each step: the step count reached, the
    step's loss (a detached tensor on the device; None when the batch was None, nothing trained),
    the loss function's extra values and the step's wall time."""

    step: int
    loss: torch.Tensor | None
    parts: dict[str, Any]
    seconds: float


def fit_steps(
    trainer: Trainer,
    batches: Iterable[Any],
    loss_fn: Callable[[nn.Module, Any], Any],
    *,
    start_step: int = 0,
    max_steps: int | None = None,
    size_of: Callable[[Any], int] | None = None,
    info: DistInfo | None = None,
    stop: StopRequest | None = None,
    on_step: Callable[[StepDone], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> EpochStats:
    """The step loop: one :meth:`Trainer.step` per batch of ``batches`` until they run out or
    ``max_steps`` (a step count, counted from 0, so a resumed pass stops where an uninterrupted one
    would) is reached; ``stats.steps`` is the step count reached.

    ``loss_fn(model, batch)`` returns the loss, or ``(loss, parts)`` with extra values for
    ``on_step``; a None batch counts as a step without training (every image of it failed to
    decode). The running loss is weighted by ``size_of(batch)`` (default 1). ``on_progress(step,
    mean loss as of the last host sync, items so far)`` is called after every step. Raises
    :class:`LossNotFinite` when the loss stops being finite. Stops early (``interrupted``) when a
    stop was requested on any rank (``on_step`` may request one: a time limit). The model's
    train/eval modes are the caller's (a recipe may keep BatchNorm in eval mode).
    """
    info = info or DistInfo()
    device = trainer.device
    stats = EpochStats(steps=start_step)
    if max_steps is not None and start_step >= max_steps:
        return stats
    step, n_items = start_step, 0
    loss_acc = torch.zeros((), dtype=torch.float64, device=device)
    mean_loss: float | None = None
    start = time.perf_counter()
    for batch in batches:
        began = time.perf_counter()
        loss: torch.Tensor | None = None
        parts: dict[str, Any] = {}
        if batch is not None:
            trainer.set_lr(step)
            out = trainer.step(functools.partial(loss_fn, trainer.model, batch))
            loss, parts = (out[0], dict(out[1])) if isinstance(out, tuple) else (out, {})
            loss = loss.detach()
            size = size_of(batch) if size_of is not None else 1
            loss_acc += loss.double() * size
            n_items += size
        step += 1
        if on_step is not None:
            on_step(StepDone(step, loss, parts, time.perf_counter() - began))
        done = max_steps is not None and step >= max_steps
        # The first step syncs too, so the progress shows a loss from the start.
        sync = step % CHECK_EVERY == 0 or step == start_step + 1 or done
        if sync:
            _check_finite(loss_acc, info, device, step)
            if n_items:
                mean_loss = loss_acc.item() / n_items
        if on_progress is not None:
            on_progress(step, mean_loss, n_items)
        # A lone process can look at the flag every step; ranks must agree, so DDP asks at syncs only.
        if stop is not None and (sync or not info.enabled) and any_rank(stop.requested, info, device):
            stats.interrupted = True
            break
        if done:
            break
    _check_finite(loss_acc, info, device, step)
    stats.loss_sum, stats.n_images, stats.steps = float(loss_acc.item()), n_items, step
    stats.seconds = time.perf_counter() - start
    return stats


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    scaler: Any,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
    channels_last: bool = False,
    start_step: int = 0,
    max_steps: int | None = None,
    stop: StopRequest | None = None,
    on_progress: ProgressFn | None = None,
    on_step: Callable[[int], None] | None = None,
) -> EpochStats:
    """One pass of ``aescore train`` over ``loader`` (``(batch, failures)`` items of
    :func:`aescore.data.datasets.collate_skipping`) through :func:`fit_steps`: the loss of the
    patch logits (:func:`~aescore.engine.evaluate.logits_per_patch`) against the labels (the
    targets for regression); ``on_step(step)`` after every step. ``stats.steps`` is the step index
    reached in the epoch (``start_step`` + steps done here); decode failures are collected in
    ``stats.failed``. See :func:`fit_steps` for the rest.
    """
    model.train()
    regression = loss_fn is mse_on_p_high
    failed: set[int] = set()
    first_failure: list[str] = []

    def batches() -> Iterator[dict[str, torch.Tensor] | None]:
        for batch, bad in loader:
            failed.update(int(i) for i, _ in bad)
            if bad and not first_failure:
                first_failure.append(bad[0][1])
            yield batch  # None: every image of the batch failed to decode

    def loss_of(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["image"].to(device, non_blocking=True)
        target = batch["target" if regression else "label"].to(device, non_blocking=True)
        return loss_fn(logits_per_patch(net, images, channels_last), target)

    trainer = Trainer(model, optimizer, device, amp_dtype, scaler)
    stats = fit_steps(
        trainer, batches(), loss_of, start_step=start_step, max_steps=max_steps,
        size_of=lambda batch: int(batch["image"].shape[0]), info=info, stop=stop,
        on_step=None if on_step is None else (lambda done: on_step(done.step)), on_progress=on_progress,
    )
    stats.failed = failed
    stats.first_failure = first_failure[0] if first_failure else None
    return stats


def _check_finite(loss_acc: torch.Tensor, info: DistInfo, device: torch.device, step: int) -> None:
    if any_rank(not bool(torch.isfinite(loss_acc).item()), info, device):
        raise LossNotFinite(step)
