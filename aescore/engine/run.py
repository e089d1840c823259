"""One training run from data to exported weights: the epoch driver behind :func:`aescore.engine.train.fit`."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from aescore.engine import checkpoint as ck
from aescore.engine.distributed import DistInfo, all_reduce_sum, barrier, gather_objects
from aescore.engine.evaluate import TRAIN_IDS_SUFFIX, evaluate_samples, write_train_ids
from aescore.engine.metrics import selection_metric
from aescore.engine.presets import TrainConfig
from aescore.engine.setup import (
    EpochSampler,
    build_model,
    build_optimizer,
    build_scheduler,
    make_loader,
    resolve_amp,
    sized_preprocess,
)
from aescore.engine.train import (
    BEST,
    CHECKPOINT,
    METRICS,
    EpochStats,
    FitResult,
    StopRequest,
    make_loss,
    train_one_epoch,
)
from aescore.errors import DataError, UsageError

# Only these may differ between the checkpoint's config and a resumed run's without a warning.
_RESUME_FREE = {"epochs", "workers", "device", "max_steps", "compile", "amp", "deterministic", "root"}


class TrainingRun:
    """State shared by the epochs of one run (model, optimiser, data, output folder)."""

    def __init__(
        self, cfg: TrainConfig, output: Path, *, device: torch.device, info: DistInfo, command: str, log: Callable[[str], None]
    ) -> None:
        self.cfg, self.output, self.device, self.info, self.command = cfg, output, device, info, command
        self._log = log

    def log(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.info.is_main:
            self._log(message)

    # ------------------------------------------------------------------ setup

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
            raise DataError(f"{cfg.root}: the validation split is empty (use --val-size N)")
        return splits

    def _resume_state(self, resume: bool) -> dict[str, Any] | None:
        from aescore.weights import load_checkpoint

        path = self.output / CHECKPOINT
        if not resume:
            if path.exists():
                raise UsageError(f"{self.output} already holds a training run ({CHECKPOINT}); "
                                 "pass --resume to continue it, or choose another --output")
            return None
        state = load_checkpoint(path)
        old = state.get("config", {})
        changed = [k for k, v in self.cfg.to_dict().items() if k not in _RESUME_FREE and k in old and old[k] != v]
        if changed:
            self.log(f"aescore: note: resuming with changed {', '.join(changed)}; optimiser and schedule "
                     "state (learning rate included) continue from the checkpoint")
        return state

    # ------------------------------------------------------------------ the run

    def fit(self, *, resume: bool, on_step: Callable[[int], None] | None = None) -> FitResult:
        """Train from scratch or from ``last.pt`` up to ``cfg.epochs`` epochs in total."""
        from aescore.data.datasets import ImageDataset
        from aescore.data.train_transforms import build_eval_transform_for_training, build_train_transform, decode_min_shorter

        cfg, info, device, out = self.cfg, self.info, self.device, self.output
        state = self._resume_state(resume)
        splits = self._load_data()
        if splits.task == "classification" and cfg.objective == "mse":
            raise UsageError("--objective mse needs regression data (a score per image, e.g. AADB)")
        objective = "mse" if splits.task == "regression" else cfg.objective
        if state is not None:
            ck.check_resumable(state, cfg.to_dict(), splits.fingerprints, out / CHECKPOINT)

        ck.seed_everything(cfg.seed)  # same initial weights on every rank and every run
        if info.enabled and not info.is_main:
            barrier(info)  # let rank 0 download pretrained weights into the cache first
        model = build_model(cfg)
        if info.enabled and info.is_main:
            barrier(info)
        preprocess = sized_preprocess(model.default_preprocess, cfg.crop_size, cfg.resize_size)
        model.default_preprocess = preprocess
        channels_last = device.type == "cuda"
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        amp_dtype = resolve_amp(cfg.amp, device)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

        start_epoch, start_step, partial, best, failed_train = 0, 0, {}, {}, set()
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler.is_enabled() and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch, start_step = int(state["epoch"]), int(state["step"])
            partial, best = dict(state.get("partial") or {}), dict(state.get("best") or {})
            failed_train = set(state.get("failed_indices") or [])
        if start_epoch >= cfg.epochs:
            self.log(f"aescore: {out} has already trained {start_epoch} epoch(s); pass a larger --epochs to extend it")
            return FitResult(out, start_epoch, best.get("epoch"), best.get("metrics"), self._history(start_epoch),
                             n_skipped=splits.total_skipped + len(failed_train), fingerprints=dict(splits.fingerprints))

        train_model: torch.nn.Module = model
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            train_model = torch.compile(train_model)  # type: ignore[assignment]

        min_shorter = decode_min_shorter(preprocess)
        from aescore.data.pairs import PairedDataset

        # pair_rank: one item = a good photo and a degraded copy of it
        dataset_cls = PairedDataset if objective == "pair_rank" else ImageDataset
        train_ds = dataset_cls(splits.train, build_train_transform(preprocess, cfg.patches), min_shorter)
        val_tf = build_eval_transform_for_training(preprocess, cfg.eval_tta_crops, seed=cfg.seed)
        sampler = EpochSampler(len(train_ds), info, shuffle=True, seed=cfg.seed)
        per_rank = len(sampler.inner)
        drop_last = per_rank >= cfg.batch_size  # a last batch of one image would break BatchNorm
        steps_per_epoch = per_rank // cfg.batch_size if drop_last else math.ceil(per_rank / cfg.batch_size)
        if cfg.max_steps:
            steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
        # Deterministic runs rebuild the loader each epoch so worker seeds depend on the epoch only.
        persistent = cfg.workers > 0 and not cfg.deterministic
        loader = None

        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            ids_sha = write_train_ids(out / ("best" + TRAIN_IDS_SUFFIX), [s.id for s in splits.train])
        else:
            ids_sha = ""
        self._announce(splits, objective, amp_dtype, start_epoch, start_step)
        history = self._history(start_epoch)
        loss_fn = make_loss(objective, cfg.beta)
        stop = StopRequest(self.log)
        with stop.installed(), self._progress(steps_per_epoch) as progress:
            for epoch in range(start_epoch, cfg.epochs):
                step0 = start_step if epoch == start_epoch else 0
                if step0 and state is not None:
                    # exactly where the interrupted epoch stopped (each rank its own generators)
                    per_rank = state.get("rng_per_rank") or []
                    ck.restore_rng_state(per_rank[info.rank] if len(per_rank) == info.world_size else state["rng"])
                else:
                    ck.seed_everything(ck.epoch_seed(cfg.seed, epoch, info.rank))
                    partial = {}
                sampler.set_epoch(epoch, skip=step0 * cfg.batch_size)
                gen = torch.Generator().manual_seed(ck.epoch_seed(cfg.seed, epoch, 0))
                if loader is None or not persistent:
                    loader = make_loader(train_ds, sampler, batch_size=cfg.batch_size, workers=cfg.workers, device=device,
                                         generator=gen, persistent=persistent, drop_last=drop_last)
                lr = optimizer.param_groups[0]["lr"]
                progress.start_epoch(epoch + 1, cfg.epochs, step0)
                stats = train_one_epoch(
                    train_model, loader, loss_fn, optimizer, device=device, scaler=scaler, amp_dtype=amp_dtype,
                    info=info, channels_last=channels_last, start_step=step0, max_steps=cfg.max_steps, stop=stop,
                    on_progress=progress.update, on_step=on_step,
                )
                if info.is_main:  # the interrupted part's sums were reduced over ranks when saved
                    stats.loss_sum += float(partial.get("loss_sum", 0.0))
                    stats.n_images += int(partial.get("n_images", 0))
                stats.seconds += float(partial.get("seconds", 0.0))
                for part in gather_objects(stats.failed, info):
                    failed_train |= set(part)
                if stats.interrupted:
                    loss_sum, n_images, seconds = all_reduce_sum([stats.loss_sum, stats.n_images, stats.seconds],
                                                                 info, device)
                    stats.loss_sum, stats.n_images, stats.seconds = loss_sum, int(n_images), seconds / info.world_size
                    self._save(model, optimizer, scheduler, scaler, epoch, stats, best, splits, failed_train)
                    self.log(f"aescore: stopped in epoch {epoch + 1} at step {stats.steps}; checkpoint saved to "
                             f"{out / CHECKPOINT}; continue with --resume")
                    return FitResult(out, epoch, best.get("epoch"), best.get("metrics"), history, interrupted=True,
                                     n_skipped=splits.total_skipped + len(failed_train),
                                     fingerprints=dict(splits.fingerprints))
                # Every rank joins the sum (failed_train is already the same on all of them).
                trained = all_reduce_sum([float(stats.n_images)], info, device)[0]
                if failed_train and trained == 0:
                    # Every item failed to decode: going on would export an untrained model as "best".
                    raise DataError(
                        f"epoch {epoch + 1}: no training image could be decoded ({len(failed_train)} failed"
                        + (f", e.g. {stats.first_failure}" if stats.first_failure else "")
                        + "); nothing was learned, so no weights were written for this epoch")
                scheduler.step()
                row, best = self._end_epoch(model, epoch, lr, stats, splits, val_tf, amp_dtype, channels_last,
                                            failed_train, best, ids_sha, objective)
                history.append(row)
                self._save(model, optimizer, scheduler, scaler, epoch + 1, EpochStats(), best, splits, failed_train)
                progress.end_epoch(row)
                if stop.requested:
                    self.log(f"aescore: stopped after epoch {epoch + 1}; continue with --resume")
                    return FitResult(out, epoch + 1, best.get("epoch"), best.get("metrics"), history, interrupted=True,
                                     n_skipped=history[-1]["n_skipped"], fingerprints=dict(splits.fingerprints))
        return FitResult(out, cfg.epochs, best.get("epoch"), best.get("metrics"), history,
                         n_skipped=history[-1]["n_skipped"] if history else splits.total_skipped,
                         fingerprints=dict(splits.fingerprints))

    # ------------------------------------------------------------------ per epoch

    def _end_epoch(
        self, model: torch.nn.Module, epoch: int, lr: float, stats: EpochStats, splits: Any, val_tf: Any,
        amp_dtype: torch.dtype | None, channels_last: bool, failed_train: set[int], best: dict[str, Any],
        ids_sha: str, objective: str,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate, log the metrics row, export the best model; returns (row, best)."""
        cfg, info = self.cfg, self.info
        loss_sum, n_images, seconds = all_reduce_sum([stats.loss_sum, stats.n_images, stats.seconds], info, self.device)
        seconds /= info.world_size
        rng = ck.capture_rng_state()
        t0 = time.perf_counter()
        val, val_failed = evaluate_samples(
            model, splits.val, val_tf, batch_size=cfg.batch_size, workers=cfg.workers, device=self.device,
            amp_dtype=amp_dtype, channels_last=channels_last, info=info,
        )
        ck.restore_rng_state(rng)  # validation never shifts the training's random numbers
        val_seconds = time.perf_counter() - t0
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1.0, n_images),
            **{f"val_{k}": v for k, v in val.items() if k != "confusion_matrix"},
            "val_confusion_matrix": val.get("confusion_matrix"),
            "lr": lr,
            "images_per_s": n_images / seconds if seconds > 0 else None,
            "seconds": seconds + val_seconds,
            "n_skipped": splits.total_skipped + len(failed_train) + len(val_failed),
        }
        score = selection_metric(val, splits.task)
        improved = score is not None and (best.get("value") is None or score > best["value"])
        if not best and score is None:
            improved = True  # nothing measurable yet (e.g. a one-class validation split): keep something
        row["is_best"] = improved
        if improved:
            best = {"value": score, "epoch": epoch + 1, "metrics": val}
            if info.is_main:
                self._export(model, epoch + 1, val, splits, ids_sha, objective)
        if info.is_main:
            with open(self.output / METRICS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        return row, best

    def _export(self, model: torch.nn.Module, epoch: int, val: dict[str, Any], splits: Any, ids_sha: str,
                objective: str) -> None:
        """``best.safetensors`` + its card (full provenance) via :func:`aescore.weights.save_weights`."""
        from aescore.weights import save_weights

        cfg = self.cfg
        hp = cfg.to_dict()
        hp["root"] = Path(cfg.root).name  # the card travels with the weights; a local path would leak
        key = "srcc" if splits.task == "regression" else "accuracy"
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

    def _save(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, scaler: Any, epoch: int,
              stats: EpochStats, best: dict[str, Any], splits: Any, failed_train: set[int]) -> None:
        """Write ``last.pt`` atomically (rank 0), then wait for all ranks."""
        from aescore.weights import save_checkpoint

        rng_per_rank = gather_objects(ck.capture_rng_state(), self.info) if self.info.enabled else []
        if self.info.is_main:
            partial = {"loss_sum": stats.loss_sum, "n_images": stats.n_images, "seconds": stats.seconds}
            state = ck.make_checkpoint(
                model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch, step=stats.steps,
                partial=partial, best=best, config=self.cfg.to_dict(), fingerprints=dict(splits.fingerprints),
                failed_indices=sorted(failed_train),
            )
            state["rng_per_rank"] = rng_per_rank
            save_checkpoint(state, self.output / CHECKPOINT)
        barrier(self.info)

    # ------------------------------------------------------------------ reporting

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

    def _announce(self, splits: Any, objective: str, amp_dtype: Any, epoch: int, step: int) -> None:
        cfg, fp = self.cfg, splits.fingerprints
        where = f"from epoch {epoch + 1}" + (f" step {step}" if step else "")
        self.log(
            f"aescore: {cfg.model} ({cfg.preset}, {objective}) on {cfg.dataset}: train {len(splits.train)} / "
            f"val {len(splits.val)} / test {len(splits.test)} images, {splits.total_skipped} skipped at indexing; "
            f"fingerprints train {fp['train'][:12]} val {fp['val'][:12]} test {fp['test'][:12]}"
        )
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, str(amp_dtype))
        self.log(f"aescore: device {self.device} ({amp}), world size {self.info.world_size}, "
                 f"{cfg.epochs} epochs, {where}; output {self.output}")

    def _progress(self, steps_per_epoch: int) -> Any:
        from aescore.engine.train import EpochProgress

        return EpochProgress(steps_per_epoch, enabled=self.info.is_main, log=self._log)
