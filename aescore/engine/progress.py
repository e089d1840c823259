"""Training progress on stderr: a live bar on a terminal, plain lines in a log, a line per epoch.

On a terminal the bar advances every step and shows the step, the running loss, images/s, the
learning rate and the epoch's ETA. Without a terminal (a log file, ``nohup``, a batch job) the
same fields come as one plain line about once a minute. After every epoch, one summary line
either way. Only the main process (rank 0) prints.
"""

from __future__ import annotations

import time
from typing import Any, Callable

PLAIN_PROGRESS_SECONDS = 60.0  # without a terminal: one progress line at most this often


def format_duration(seconds: float) -> str:
    """``1h02m`` / ``3m05s`` / ``42s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _loss_text(loss: float | None) -> str:
    # Before the first host sync there is no loss yet: a dash, not "nan" (which would read like
    # the NaN guard had fired).
    return "-" if loss is None else f"{loss:.4f}"


class EpochProgress:
    """Progress of the current epoch (see the module docstring); a context manager."""

    def __init__(
        self, steps_per_epoch: int, *, enabled: bool, log: Callable[[str], None],
        plain_every: float = PLAIN_PROGRESS_SECONDS, live: bool | None = None,
    ) -> None:
        from aescore.termtext import stderr_console

        self.steps = max(1, steps_per_epoch)
        self.enabled = enabled
        self._log = log
        self.console = stderr_console()
        self.live = enabled and (self.console.is_terminal if live is None else live)
        self._progress: Any = None
        self._task: Any = None
        self._plain_every = plain_every
        self._t0 = self._last_plain = time.perf_counter()
        self._epoch = ""
        self._step0 = 0
        self._lr: float | None = None

    def __enter__(self) -> "EpochProgress":
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[ips]} img/s"),
                TextColumn("lr {task.fields[lr]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start_epoch(self, epoch: int, epochs: int, step0: int, lr: float | None = None) -> None:
        """A new epoch (``step0`` > 0 when resuming inside it) trained at learning rate ``lr``."""
        self._t0 = self._last_plain = time.perf_counter()
        self._epoch, self._step0, self._lr = f"{epoch}/{epochs}", step0, lr
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(
                "train", total=self.steps, completed=step0, epoch=self._epoch, loss=_loss_text(None), ips="-",
                lr=self._lr_text(),
            )

    def _lr_text(self) -> str:
        return "-" if self._lr is None else f"{self._lr:.2g}"

    def update(self, step: int, loss: float | None, n_images: int) -> None:
        """Called after every step with the running mean loss (None until known) and the images
        trained on in this epoch by this process."""
        if not self.enabled:
            return
        now = time.perf_counter()
        ips = n_images / max(1e-9, now - self._t0)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=_loss_text(loss), ips=f"{ips:.1f}")
        elif now - self._last_plain >= self._plain_every:
            self._last_plain = now
            per_step = (now - self._t0) / max(1, step - self._step0)
            eta = max(0.0, (self.steps - step) * per_step)
            self._log(f"epoch {self._epoch} step {step}/{self.steps}: loss {_loss_text(loss)}  {ips:.1f} img/s  "
                      f"lr {self._lr_text()}  ETA {format_duration(eta)}")

    def end_epoch(self, row: dict[str, Any]) -> None:
        """One summary line per epoch (a row of ``metrics.jsonl``)."""
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
        self.print(line)

    def print(self, line: str) -> None:
        """A line above the live bar (or a plain line)."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            self._log(line)
