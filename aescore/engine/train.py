"""The training loop: :func:`train_one_epoch` and :func:`fit` (torchvision-references / nanoGPT shape).

One optimiser step per batch, autocast around forward + loss (bf16 on CUDA where supported, else
fp16 with a GradScaler; full precision on CPU), channels_last on CUDA, DDP under ``torchrun``.
Every epoch: validate, append a row to ``DIR/metrics.jsonl``, export the best model
(``DIR/best.safetensors`` + ``DIR/best.json``) and write ``DIR/last.pt`` atomically.

Reproducibility: each epoch reseeds every RNG from ``(seed, epoch, rank)``, the sampler order and
the DataLoader worker seeds are functions of ``(seed, epoch)``, so a resumed run draws exactly the
numbers an uninterrupted one would. A run stopped mid-epoch (Ctrl-C, SIGTERM) saves the RNG state
at that step boundary and on resume skips the batches already trained on: bit-exact with
``--workers 0``, close (other augmentation draws) with worker processes.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from aescore.engine.distributed import DistInfo, any_rank, cleanup_distributed
from aescore.engine.evaluate import logits_per_patch
from aescore.engine.presets import TrainConfig
from aescore.errors import AescoreError, UsageError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CHECK_EVERY = 10  # steps between host syncs: loss finite?, stop requested on any rank?, progress
PLAIN_PROGRESS_SECONDS = 60.0  # without a terminal (logs, nohup): one progress line at most this often
CHECKPOINT = "last.pt"
METRICS = "metrics.jsonl"
BEST = "best.safetensors"


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

    @property
    def loss(self) -> float:
        """Mean training loss per image."""
        return self.loss_sum / max(1, self.n_images)


@dataclass
class FitResult:
    """Outcome of :func:`fit`."""

    output: Path
    epochs_done: int
    best_epoch: int | None
    best_metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    interrupted: bool = False
    n_skipped: int | None = None  # images skipped at indexing plus undecodable ones met so far
    fingerprints: dict[str, str] | None = None  # the train/val/test split fingerprints


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
    on_progress: Callable[[int, float, int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> EpochStats:
    """One pass over ``loader`` with one optimiser step per batch; ``stats.steps`` is the step
    index reached in the epoch (``start_step`` + steps done here).

    Raises :class:`AescoreError` when the loss stops being finite. Stops early (``interrupted``)
    when a stop was requested on any rank; ``max_steps`` caps the epoch's steps.
    """
    model.train()
    stats = EpochStats(steps=start_step)
    if max_steps is not None and start_step >= max_steps:
        return stats
    regression = loss_fn is mse_on_p_high
    step, n_acc = start_step, 0
    loss_acc = torch.zeros((), dtype=torch.float64, device=device)
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
            n_acc += int(images.shape[0])
        step += 1
        if on_step is not None:
            on_step(step)
        done = max_steps is not None and step >= max_steps
        sync = step % CHECK_EVERY == 0 or done
        if sync:
            _check_finite(loss_acc, info, device, step)
            if on_progress is not None:
                on_progress(step, loss_acc.item() / max(1, n_acc), n_acc)
        # A lone process can look at the flag every step; ranks must agree, so DDP asks at syncs only.
        if stop is not None and (sync or not info.enabled) and any_rank(stop.requested, info, device):
            stats.interrupted = True
            break
        if done:
            break
    _check_finite(loss_acc, info, device, step)
    stats.loss_sum, stats.n_images, stats.steps = float(loss_acc.item()), n_acc, step
    stats.seconds = time.perf_counter() - start
    return stats


def _check_finite(loss_acc: torch.Tensor, info: DistInfo, device: torch.device, step: int) -> None:
    if any_rank(not bool(torch.isfinite(loss_acc).item()), info, device):
        raise AescoreError(
            f"training loss became NaN/inf by step {step}; stopped without exporting a model from it "
            "(try a lower --lr, or --no-amp); the last good state is in last.pt, if any"
        )


def resume_config(output: str | Path, **overrides: Any) -> TrainConfig:
    """The config stored in ``output/last.pt`` with the non-None ``overrides`` applied (``--resume``)."""
    from aescore.weights import load_checkpoint

    path = Path(output) / CHECKPOINT
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path}")
    state = load_checkpoint(path)
    cfg = TrainConfig.from_dict(state.get("config", {}))
    for key, value in overrides.items():
        if value is not None:
            if not hasattr(cfg, key):
                raise UsageError(f"unknown training option {key!r}")
            setattr(cfg, key, value)
    cfg.validate()
    return cfg


def fit(
    cfg: TrainConfig,
    output: str | Path,
    *,
    resume: bool = False,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``cfg`` into folder ``output``; ``--epochs`` is the total, ``resume`` continues ``last.pt``.

    Raises :class:`UsageError` if ``output`` already holds a run and ``resume`` is False.
    """
    from aescore.engine.run import TrainingRun

    cfg.validate()
    if command is None:
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    device, info = _setup(cfg)
    try:
        run = TrainingRun(cfg, Path(output), device=device, info=info, command=command, log=log or _stderr)
        return run.fit(resume=resume, on_step=on_step)
    finally:
        cleanup_distributed()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _setup(cfg: TrainConfig) -> tuple[torch.device, DistInfo]:
    """Device, process group and determinism switches for this process."""
    import os

    from aescore.engine.distributed import env_dist_info, init_distributed
    from aescore.engine.setup import resolve_device

    device = resolve_device(cfg.device, env_dist_info())
    info = init_distributed(device.type)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device, info


class EpochProgress:
    """Rich progress on stderr (epoch, step, loss, images/s, ETA) when stderr is a terminal;
    otherwise the same fields as a plain line every ``plain_every`` seconds. After every epoch,
    one summary line either way."""

    def __init__(
        self, steps_per_epoch: int, *, enabled: bool, log: Callable[[str], None],
        plain_every: float = PLAIN_PROGRESS_SECONDS,
    ) -> None:
        from rich.console import Console

        self.steps = max(1, steps_per_epoch)
        self.enabled = enabled
        self._log = log
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self._progress: Any = None
        self._task: Any = None
        self._t0 = time.perf_counter()
        self._plain_every = plain_every
        self._last_plain = self._t0
        self._epoch = ""
        self._step0 = 0

    def __enter__(self) -> "EpochProgress":
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[ips]:.1f} img/s"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start_epoch(self, epoch: int, epochs: int, step0: int) -> None:
        """A new epoch (``step0`` > 0 when resuming inside it)."""
        self._t0 = self._last_plain = time.perf_counter()
        self._epoch, self._step0 = f"{epoch}/{epochs}", step0
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(
                "train", total=self.steps, completed=step0, epoch=f"{epoch}/{epochs}", loss=float("nan"), ips=0.0
            )

    def update(self, step: int, loss: float, n_images: int) -> None:
        """Called every few steps with the running mean loss and images done in this process."""
        now = time.perf_counter()
        ips = n_images / max(1e-9, now - self._t0)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=loss, ips=ips)
        elif self.enabled and now - self._last_plain >= self._plain_every:
            self._last_plain = now
            per_step = (now - self._t0) / max(1, step - self._step0)
            eta = max(0.0, (self.steps - step) * per_step)
            self._log(f"epoch {self._epoch} step {step}/{self.steps}: loss {loss:.4f}  {ips:.1f} img/s  "
                      f"ETA {_duration(eta)}")

    def end_epoch(self, row: dict[str, Any]) -> None:
        """One summary line per epoch."""
        if not self.enabled:
            return

        def fmt(key: str) -> str:
            value = row.get(key)
            return "n/a" if value is None else f"{value:.4f}"

        ips = row.get("images_per_s")
        line = (
            f"epoch {row['epoch']}: train loss {fmt('train_loss')}  val acc {fmt('val_accuracy')}  "
            f"AP {fmt('val_average_precision')}  SRCC {fmt('val_srcc')}  LCC {fmt('val_lcc')}  "
            f"{'n/a' if ips is None else f'{ips:.1f}'} img/s  {row['seconds']:.1f} s"
            + (f"  {row['n_skipped']} skipped" if row.get("n_skipped") else "")
            + ("  (best)" if row.get("is_best") else "")
        )
        if self._progress is not None:
            self._progress.console.print(line)
        else:
            self._log(line)


def _duration(seconds: float) -> str:
    """``1h02m`` / ``3m05s`` / ``42s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
