"""One training run from data to exported weights: :class:`TrainingRun`, driven by :func:`aescore.engine.train.fit`.

A run is a short sequence of steps, each a method below: index the data, build the model and
optimiser, restore the resume point (if any), build the training data, then per epoch: train
(:func:`aescore.engine.loop.train_one_epoch`), validate, append to ``metrics.jsonl``, export the
best model and write ``last.pt``. :meth:`TrainingRun._result` is the one place a
:class:`FitResult` is made.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import torch

from aescore.engine import checkpoint as ck
from aescore.engine.checkpoint import CHECKPOINT, ResumePoint
from aescore.engine.distributed import DistInfo, all_reduce_sum, barrier, gather_objects
from aescore.engine.evaluate import TRAIN_IDS_SUFFIX, evaluate_samples, write_train_ids
from aescore.engine.loop import (
    EpochStats,
    LossFn,
    StopRequest,
    make_loss,
    make_scaler,
    train_one_epoch,
)
from aescore.engine.metrics import selection_metric
from aescore.engine.presets import TrainConfig
from aescore.engine.progress import EpochProgress
from aescore.engine.setup import (
    EpochSampler,
    build_model,
    build_optimizer,
    build_scheduler,
    make_loader,
    resolve_amp,
    sized_preprocess,
    steps_per_epoch,
)
from aescore.errors import ConfigError, DataError
from aescore.models.base import ScoringModule

METRICS = "metrics.jsonl"
BEST = "best.safetensors"
# Only these may differ between the checkpoint's config and a resumed run's without a note.
_RESUME_FREE = {"epochs", "workers", "device", "max_steps", "compile", "amp", "deterministic", "root"}


class OutputInUse(ConfigError):
    """The output folder already holds a training run and the caller did not ask to resume it."""

    def __init__(self, output: Path) -> None:
        super().__init__("output", f"{output} already holds a training run ({CHECKPOINT})")
        self.output = output


@dataclass
class FitResult:
    """Outcome of :func:`aescore.engine.train.fit`."""

    output: Path
    epochs_done: int
    best_epoch: int | None
    best_metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    interrupted: bool = False
    n_skipped: int | None = None  # images skipped at indexing plus undecodable ones met so far
    fingerprints: dict[str, str] | None = None  # the train/val/test split fingerprints
    best_weights: Path | None = None  # OUTPUT/best.safetensors once an epoch has been exported


@dataclass
class RunState:
    """Where the run stands; what ``last.pt`` restores."""

    epochs_done: int = 0
    step: int = 0  # optimiser steps already done inside the next epoch (after an interruption)
    partial: dict[str, float] = field(default_factory=dict)  # sums of that interrupted epoch part
    best: dict[str, Any] = field(default_factory=dict)  # {"value", "epoch", "metrics"} of the best epoch
    failed_train: set[int] = field(default_factory=set)  # training images that failed to decode
    val_failed: int = 0  # validation images that failed to decode (last validation)
    rng: dict[str, Any] | None = None  # this rank's RNG state at the interruption, if any


@dataclass
class Trainee:
    """The model and everything that steps it."""

    model: torch.nn.Module  # the plain module (exported, checkpointed)
    train_model: torch.nn.Module  # the module the loop calls (DDP- and/or compile-wrapped)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    amp_dtype: torch.dtype | None
    channels_last: bool
    preprocess: dict[str, Any]


@dataclass
class TrainingData:
    """The training set, its sampler and loader policy, and the validation transform."""

    dataset: Any
    sampler: EpochSampler
    images_per_rank: int
    steps_per_epoch: int
    drop_last: bool
    persistent_workers: bool
    val_transform: Any
    _loader: Any = None

    def loader(self, cfg: TrainConfig, device: torch.device, generator: torch.Generator) -> Any:
        """The epoch's DataLoader. Deterministic runs rebuild it every epoch so that worker seeds
        depend on the epoch only; otherwise persistent workers are kept."""
        if self._loader is None or not self.persistent_workers:
            self._loader = make_loader(
                self.dataset, self.sampler, batch_size=cfg.batch_size, workers=cfg.workers, device=device,
                generator=generator, persistent=self.persistent_workers, drop_last=self.drop_last,
            )
        return self._loader


class TrainingRun:
    """State shared by the epochs of one run (config, output folder, device, process group)."""

    def __init__(
        self, cfg: TrainConfig, output: Path, *, device: torch.device, info: DistInfo, command: str, log: Callable[[str], None]
    ) -> None:
        self.cfg, self.output, self.device, self.info, self.command = cfg, output, device, info, command
        self._log = log

    def log(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.info.is_main:
            self._log(message)

    # ------------------------------------------------------------------ the run

    def fit(self, resume: ResumePoint | None, *, on_step: Callable[[int], None] | None = None) -> FitResult:
        """Train from scratch, or from ``resume``, up to ``cfg.epochs`` epochs in total."""
        if resume is None and (self.output / CHECKPOINT).exists():
            raise OutputInUse(self.output)
        if resume is not None:
            self._note_changed_settings(resume)
        splits = self._load_data()
        objective = self._objective(splits.task)
        if resume is not None:
            ck.check_resumable(resume.state, self.cfg.to_dict(), splits.fingerprints, resume.path)
        trainee = self._build_trainee()
        state = self._restore(trainee, resume)
        history = self._history(state.epochs_done)
        if state.epochs_done >= self.cfg.epochs:
            self.log(f"aescore: {self.output} has already trained {state.epochs_done} epoch(s); "
                     "resume with more epochs to extend it")
            return self._result(state, history, splits)
        data = self._training_data(splits, trainee.preprocess, objective)
        ids_sha = self._write_train_ids(splits)
        self._announce(splits, objective, trainee.amp_dtype, state, data)
        loss_fn = make_loss(objective, self.cfg.beta)
        stop = StopRequest(self.log)
        with stop.installed(), EpochProgress(data.steps_per_epoch, enabled=self.info.is_main, log=self._log) as progress:
            for epoch in range(state.epochs_done, self.cfg.epochs):
                lr = trainee.optimizer.param_groups[0]["lr"]  # the schedule steps per epoch
                stats = self._train_epoch(epoch, trainee, data, loss_fn, state, stop, progress, on_step)
                if stats.interrupted:
                    self._save(trainee, state, splits, stats)
                    self.log(f"aescore: stopped in epoch {epoch + 1} at step {stats.steps}; checkpoint saved to "
                             f"{self.output / CHECKPOINT}; resume to continue")
                    return self._result(state, history, splits, interrupted=True)
                self._check_learned(epoch, stats, state)
                trainee.scheduler.step()
                row = self._validate_and_export(trainee, epoch, lr, stats, splits, data, state, ids_sha, objective)
                history.append(row)
                state.epochs_done, state.step, state.partial = epoch + 1, 0, {}
                self._save(trainee, state, splits, EpochStats())
                progress.end_epoch(row)
                if stop.requested:
                    self.log(f"aescore: stopped after epoch {epoch + 1}; resume to continue")
                    return self._result(state, history, splits, interrupted=True)
        result = self._result(state, history, splits)
        self.log(self._summary_line(result, splits.task))
        return result

    # ------------------------------------------------------------------ setup steps

    def _note_changed_settings(self, resume: ResumePoint) -> None:
        old = resume.config
        changed = [k for k, v in self.cfg.to_dict().items() if k not in _RESUME_FREE and k in old and old[k] != v]
        if changed:
            self.log(f"aescore: note: resuming with changed {', '.join(changed)}; optimiser and schedule "
                     "state (learning rate included) continue from the checkpoint")

    def _load_data(self) -> Any:
        from aescore.data import load_splits

        cfg = self.cfg
        splits = load_splits(
            cfg.dataset, Path(cfg.root), threshold=cfg.threshold, threshold_inclusive=cfg.threshold_inclusive,
            val_size=cfg.val_size, seed=cfg.seed, max_items=cfg.max_items,
        )
        if not splits.train:
            raise DataError(f"{cfg.root}: no usable training images")
        if not splits.val:
            raise ConfigError("val_size", f"leaves the validation split of {cfg.root} empty; hold out at least one image")
        return splits

    def _objective(self, task: str) -> str:
        """The loss to train with: regression data always trains with ``mse``."""
        if task == "classification" and self.cfg.objective == "mse":
            raise ConfigError("objective", "mse needs regression data (a score per image, e.g. AADB)")
        return "mse" if task == "regression" else self.cfg.objective

    def _build_trainee(self) -> Trainee:
        cfg, info, device = self.cfg, self.info, self.device
        ck.seed_everything(cfg.seed)  # same initial weights on every rank and every run
        if info.enabled and not info.is_main:
            barrier(info)  # let rank 0 download pretrained weights into the cache first
        model = cast(ScoringModule, build_model(cfg))
        if info.enabled and info.is_main:
            barrier(info)
        preprocess = sized_preprocess(model.default_preprocess, cfg.crop_size, cfg.resize_size)
        model.default_preprocess = preprocess
        channels_last = device.type == "cuda"
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, cfg)
        amp_dtype = resolve_amp(cfg.amp, device)
        train_model: torch.nn.Module = model
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            train_model = torch.compile(train_model)  # type: ignore[assignment]
        return Trainee(
            model=model, train_model=train_model, optimizer=optimizer, scheduler=build_scheduler(optimizer, cfg),
            scaler=make_scaler(device, amp_dtype),
            amp_dtype=amp_dtype, channels_last=channels_last, preprocess=preprocess,
        )

    def _restore(self, trainee: Trainee, resume: ResumePoint | None) -> RunState:
        """Model, optimiser, schedule and scaler from ``resume``, and where the run stood."""
        if resume is None:
            return RunState()
        saved = resume.state
        ck.load_training_state(saved, trainee.model, trainee.optimizer, trainee.scaler)
        trainee.scheduler.load_state_dict(saved["scheduler"])
        per_rank = saved.get("rng_per_rank") or []
        return RunState(
            epochs_done=resume.epochs_done, step=resume.step, partial=dict(saved.get("partial") or {}),
            best=dict(saved.get("best") or {}), failed_train=set(saved.get("failed_indices") or []),
            val_failed=int(saved.get("val_failed") or 0),
            rng=per_rank[self.info.rank] if len(per_rank) == self.info.world_size else saved.get("rng"),
        )

    def _training_data(self, splits: Any, preprocess: dict[str, Any], objective: str) -> TrainingData:
        from aescore.data.datasets import ImageDataset
        from aescore.data.pairs import PairedDataset
        from aescore.data.train_transforms import (
            build_eval_transform_for_training,
            build_train_transform,
            decode_min_shorter,
        )

        cfg = self.cfg
        # pair_rank: one item = a good photo and a degraded copy of it
        dataset_cls = PairedDataset if objective == "pair_rank" else ImageDataset
        dataset = dataset_cls(splits.train, build_train_transform(preprocess, cfg.patches), decode_min_shorter(preprocess))
        sampler = EpochSampler(len(dataset), self.info, shuffle=True, seed=cfg.seed)
        per_rank = len(sampler.inner)
        steps, drop_last = steps_per_epoch(per_rank, cfg.batch_size, cfg.max_steps)
        return TrainingData(
            dataset=dataset, sampler=sampler, images_per_rank=per_rank, steps_per_epoch=steps, drop_last=drop_last,
            persistent_workers=cfg.workers > 0 and not cfg.deterministic,
            val_transform=build_eval_transform_for_training(preprocess, cfg.eval_tta_crops, seed=cfg.seed),
        )

    def _write_train_ids(self, splits: Any) -> str:
        """``best.train-ids.txt`` (rank 0); returns its sha256 for the model card."""
        if not self.info.is_main:
            return ""
        self.output.mkdir(parents=True, exist_ok=True)
        return write_train_ids(self.output / ("best" + TRAIN_IDS_SUFFIX), [s.id for s in splits.train])

    # ------------------------------------------------------------------ per epoch

    def _train_epoch(
        self, epoch: int, trainee: Trainee, data: TrainingData, loss_fn: LossFn, state: RunState,
        stop: StopRequest, progress: EpochProgress, on_step: Callable[[int], None] | None,
    ) -> EpochStats:
        """One epoch's optimiser steps; the stats include the part trained before an interruption."""
        cfg, info, device = self.cfg, self.info, self.device
        step0 = state.step if epoch == state.epochs_done else 0
        if step0 and state.rng is not None:
            ck.restore_rng_state(state.rng)  # exactly where the interrupted epoch stopped
        else:
            ck.seed_everything(ck.epoch_seed(cfg.seed, epoch, info.rank))
            state.partial = {}
        data.sampler.set_epoch(epoch, skip=step0 * cfg.batch_size)
        generator = torch.Generator().manual_seed(ck.epoch_seed(cfg.seed, epoch, 0))
        loader = data.loader(cfg, device, generator)
        progress.start_epoch(epoch + 1, cfg.epochs, step0, trainee.optimizer.param_groups[0]["lr"])
        stats = train_one_epoch(
            trainee.train_model, loader, loss_fn, trainee.optimizer, device=device, scaler=trainee.scaler,
            amp_dtype=trainee.amp_dtype, info=info, channels_last=trainee.channels_last, start_step=step0,
            max_steps=cfg.max_steps, stop=stop, on_progress=progress.update, on_step=on_step,
        )
        if info.is_main:  # the interrupted part's sums were reduced over ranks when saved
            stats.loss_sum += float(state.partial.get("loss_sum", 0.0))
            stats.n_images += int(state.partial.get("n_images", 0))
        stats.seconds += float(state.partial.get("seconds", 0.0))
        for part in gather_objects(stats.failed, info):
            state.failed_train |= set(part)
        if stats.interrupted:
            loss_sum, n_images, seconds = all_reduce_sum([stats.loss_sum, stats.n_images, stats.seconds], info, device)
            stats.loss_sum, stats.n_images, stats.seconds = loss_sum, int(n_images), seconds / info.world_size
        return stats

    def _check_learned(self, epoch: int, stats: EpochStats, state: RunState) -> None:
        """Refuse to go on when no training image of the epoch could be decoded."""
        # Every rank joins the sum (failed_train is already the same on all of them).
        trained = all_reduce_sum([float(stats.n_images)], self.info, self.device)[0]
        if state.failed_train and trained == 0:
            # Going on would export an untrained model as "best".
            raise DataError(
                f"epoch {epoch + 1}: no training image could be decoded ({len(state.failed_train)} failed"
                + (f", e.g. {stats.first_failure}" if stats.first_failure else "")
                + "); nothing was learned, so no weights were written for this epoch")

    def _validate_and_export(
        self, trainee: Trainee, epoch: int, lr: float, stats: EpochStats, splits: Any, data: TrainingData,
        state: RunState, ids_sha: str, objective: str,
    ) -> dict[str, Any]:
        """Validate, append the metrics row, export the model if it is the best so far; returns the row."""
        cfg, info = self.cfg, self.info
        loss_sum, n_images, seconds = all_reduce_sum([stats.loss_sum, stats.n_images, stats.seconds], info, self.device)
        seconds /= info.world_size
        rng = ck.capture_rng_state()
        t0 = time.perf_counter()
        val, val_failed = evaluate_samples(
            trainee.model, splits.val, data.val_transform, batch_size=cfg.batch_size, workers=cfg.workers,
            device=self.device, amp_dtype=trainee.amp_dtype, info=info,
        )
        ck.restore_rng_state(rng)  # validation never shifts the training's random numbers
        state.val_failed = len(val_failed)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1.0, n_images),
            **{f"val_{k}": v for k, v in val.items() if k != "confusion_matrix"},
            "val_confusion_matrix": val.get("confusion_matrix"),
            "lr": lr,
            "images_per_s": n_images / seconds if seconds > 0 else None,
            "seconds": seconds + time.perf_counter() - t0,
            "n_skipped": self._n_skipped(splits, state),
        }
        score = selection_metric(val, splits.task)
        best = state.best
        improved = score is not None and (best.get("value") is None or score > best["value"])
        if not best and score is None:
            improved = True  # nothing measurable yet (e.g. a one-class validation split): keep something
        row["is_best"] = improved
        if improved:
            state.best = {"value": score, "epoch": epoch + 1, "metrics": val}
            if info.is_main:
                self._export(trainee.model, epoch + 1, val, splits, ids_sha, objective)
        if info.is_main:
            with open(self.output / METRICS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        return row

    def _export(self, model: torch.nn.Module, epoch: int, val: dict[str, Any], splits: Any, ids_sha: str,
                objective: str) -> None:
        """``best.safetensors`` + its card (full provenance) via :func:`aescore.weights.save_weights`."""
        from aescore.weights import save_weights

        cfg = self.cfg
        hp = cfg.to_dict()
        hp["root"] = Path(cfg.root).name  # the card travels with the weights; a local path would leak
        key = _metric_name(splits.task)
        value = val.get(key)
        shown = "n/a" if value is None else f"{value:.4f}"
        card = {
            "name": f"{cfg.preset}-{cfg.dataset}",
            "summary": f"{cfg.model} trained by aescore (preset {cfg.preset}) on {cfg.dataset} "
                       f"'{Path(cfg.root).name}', epoch {epoch}: validation {key} {shown}",
            "training": {
                "dataset": cfg.dataset,
                "data": Path(cfg.root).name,
                "task": splits.task,
                "preset": cfg.preset,
                "objective": objective,
                "hyperparameters": hp,
                "threshold": splits.threshold,
                "threshold_inclusive": splits.threshold_inclusive,
                "command": self.command,
                "split_fingerprints": dict(splits.fingerprints),
                "split_sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
                "train_ids_fingerprint": splits.fingerprints["train"],
                "train_ids_file": {"path": "best" + TRAIN_IDS_SUFFIX, "sha256": ids_sha},
                "epoch": epoch,
                "epochs_run": epoch,
                "epochs_planned": cfg.epochs,
                "world_size": self.info.world_size,
                "n_skipped": splits.total_skipped,
            },
            "metrics": {"validation": val},
            "intended_use": "Ranking photographs by predicted aesthetic quality (P(high aesthetics)).",
            "limitations": "Reflects the taste of the training data's raters; validation metrics are not test metrics.",
        }
        save_weights(model, self.output / BEST, card)

    def _save(self, trainee: Trainee, state: RunState, splits: Any, stats: EpochStats) -> None:
        """Write ``last.pt`` atomically (rank 0), then wait for all ranks. ``stats`` is the part of
        an interrupted epoch (empty at an epoch boundary)."""
        from aescore.weights import save_checkpoint

        rng_per_rank = gather_objects(ck.capture_rng_state(), self.info) if self.info.enabled else []
        if self.info.is_main:
            saved = ck.make_checkpoint(
                model=trainee.model, optimizer=trainee.optimizer, scheduler=trainee.scheduler, scaler=trainee.scaler,
                epoch=state.epochs_done, step=stats.steps,
                partial={"loss_sum": stats.loss_sum, "n_images": stats.n_images, "seconds": stats.seconds},
                best=state.best, config=self.cfg.to_dict(), fingerprints=dict(splits.fingerprints),
                failed_indices=sorted(state.failed_train), val_failed=state.val_failed,
            )
            saved["rng_per_rank"] = rng_per_rank
            save_checkpoint(saved, self.output / CHECKPOINT)
        barrier(self.info)

    # ------------------------------------------------------------------ reporting

    def _n_skipped(self, splits: Any, state: RunState) -> int:
        """Images skipped at indexing, plus training and validation images that failed to decode."""
        return splits.total_skipped + len(state.failed_train) + state.val_failed

    def _result(self, state: RunState, history: list[dict[str, Any]], splits: Any, *, interrupted: bool = False) -> FitResult:
        best_path = self.output / BEST
        return FitResult(
            output=self.output, epochs_done=state.epochs_done, best_epoch=state.best.get("epoch"),
            best_metrics=state.best.get("metrics"), history=history, interrupted=interrupted,
            n_skipped=self._n_skipped(splits, state), fingerprints=dict(splits.fingerprints),
            best_weights=best_path if state.best and best_path.is_file() else None,
        )

    def _summary_line(self, result: FitResult, task: str) -> str:
        """The run's last line: the best epoch, its validation metric and where its weights are."""
        if result.best_epoch is None:
            return f"aescore: trained {result.epochs_done} epoch(s); no epoch was exported"
        key = _metric_name(task)
        value = (result.best_metrics or {}).get(key)
        shown = "n/a" if value is None else f"{value:.4f}"
        return (f"aescore: done: {result.epochs_done} epoch(s); best epoch {result.best_epoch} "
                f"(validation {key} {shown}); weights {result.best_weights or self.output / BEST}")

    def _history(self, epochs_done: int) -> list[dict[str, Any]]:
        """Rows of ``metrics.jsonl`` up to ``epochs_done``; later rows (an epoch redone) are dropped."""
        path = self.output / METRICS
        if not path.is_file():
            return []
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = [r for r in rows if int(r.get("epoch", 0)) <= epochs_done]
        if len(kept) != len(rows) and self.info.is_main:
            from aescore.fsutil import atomic_write_text

            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def _announce(self, splits: Any, objective: str, amp_dtype: Any, state: RunState, data: TrainingData) -> None:
        cfg, fp = self.cfg, splits.fingerprints
        where = f"from epoch {state.epochs_done + 1}" + (f" step {state.step}" if state.step else "")
        self.log(
            f"aescore: {cfg.model} ({cfg.preset}, {objective}) on {cfg.dataset}: train {len(splits.train)} / "
            f"val {len(splits.val)} / test {len(splits.test)} images, {splits.total_skipped} skipped at indexing; "
            f"fingerprints train {fp['train'][:12]} val {fp['val'][:12]} test {fp['test'][:12]}"
        )
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, str(amp_dtype))
        ddp = f" (DDP, {torch.distributed.get_backend()})" if self.info.enabled and torch.distributed.is_initialized() else ""
        self.log(f"aescore: device {self.device} ({amp}), world size {self.info.world_size}{ddp}, "
                 f"{cfg.epochs} epochs of {data.steps_per_epoch} steps, {where}; output {self.output}")
        per = " per process" if self.info.enabled else ""
        if cfg.batch_size > data.images_per_rank:
            self.log(f"aescore: warning: the batch size ({cfg.batch_size}) is larger than the training set "
                     f"({data.images_per_rank} images{per}): every step sees all of it, once per epoch")


def _metric_name(task: str) -> str:
    """The validation metric that picks the best epoch."""
    return "srcc" if task == "regression" else "accuracy"

