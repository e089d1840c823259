"""The step loop: :func:`train_one_epoch`, its losses, the per-epoch tallies and the stop request.

One optimiser step per batch, autocast around forward + loss (the dtype chosen by
:func:`aescore.engine.setup.resolve_amp`), channels_last where the caller asks for it. Host syncs
(is the loss finite? did any rank ask to stop? what is the running loss?) happen every
``CHECK_EVERY`` steps and on the first step, so the GPU is not stalled every step.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

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
    """One pass over ``loader`` with one optimiser step per batch; ``stats.steps`` is the step
    index reached in the epoch (``start_step`` + steps done here).

    ``on_progress`` is called after every step; its loss is the running mean as of the last host
    sync (None before the first one). Raises :class:`LossNotFinite` when the loss stops being
    finite. Stops early (``interrupted``) when a stop was requested on any rank; ``max_steps``
    caps the epoch's steps.
    """
    model.train()
    stats = EpochStats(steps=start_step)
    if max_steps is not None and start_step >= max_steps:
        return stats
    regression = loss_fn is mse_on_p_high
    step, n_images = start_step, 0
    loss_acc = torch.zeros((), dtype=torch.float64, device=device)
    mean_loss: float | None = None
    start = time.perf_counter()
    for batch, failed in loader:
        stats.failed.update(int(i) for i, _ in failed)
        if failed and stats.first_failure is None:
            stats.first_failure = failed[0][1]
        if batch is not None:  # None: every image of the batch failed to decode
            images = batch["image"].to(device, non_blocking=True)
            target = batch["target" if regression else "label"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = loss_fn(logits_per_patch(model, images, channels_last), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_acc += loss.detach().double() * images.shape[0]
            n_images += int(images.shape[0])
        step += 1
        if on_step is not None:
            on_step(step)
        done = max_steps is not None and step >= max_steps
        # The first step syncs too, so the progress shows a loss from the start.
        sync = step % CHECK_EVERY == 0 or step == start_step + 1 or done
        if sync:
            _check_finite(loss_acc, info, device, step)
            if n_images:
                mean_loss = loss_acc.item() / n_images
        if on_progress is not None:
            on_progress(step, mean_loss, n_images)
        # A lone process can look at the flag every step; ranks must agree, so DDP asks at syncs only.
        if stop is not None and (sync or not info.enabled) and any_rank(stop.requested, info, device):
            stats.interrupted = True
            break
        if done:
            break
    _check_finite(loss_acc, info, device, step)
    stats.loss_sum, stats.n_images, stats.steps = float(loss_acc.item()), n_images, step
    stats.seconds = time.perf_counter() - start
    return stats


def _check_finite(loss_acc: torch.Tensor, info: DistInfo, device: torch.device, step: int) -> None:
    if any_rank(not bool(torch.isfinite(loss_acc).item()), info, device):
        raise LossNotFinite(step)
