"""Builders for a training run: device, precision, model, optimiser, scheduler, samplers, loaders."""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from aescore.engine.distributed import DistInfo
from aescore.engine.presets import TrainConfig


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """The device of this process (:func:`aescore.devices.torch_device`: auto = CUDA, then MPS,
    then CPU); under DDP each process takes its local GPU."""
    from aescore.devices import torch_device

    return torch_device(name, info.local_rank if info.enabled else None)


def resolve_amp(amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA where supported, else fp16; None (full precision) on CPU.

    ``amp=None`` means "on where it helps" (CUDA); ``amp=False`` forces full precision.
    """
    if device.type != "cuda" or amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def sized_preprocess(preprocess: dict[str, Any], crop_size: int | None, resize_size: int | None) -> dict[str, Any]:
    """A copy of a model's ``default_preprocess`` with the ``crop_size`` / ``resize_size`` settings applied.

    MPA: ``resize_size`` is the shorter edge (training and evaluation), ``crop_size`` the patch.
    RGNet: either one sets the square input size (training and evaluation).
    """
    pp = copy.deepcopy(preprocess)
    train = pp.get("train", {})
    if train.get("kind") == "mpa":
        if resize_size:
            train["resize_shorter"] = int(resize_size)
            pp["eval"]["size"] = int(resize_size)
        if crop_size:
            train["crop"] = int(crop_size)
    elif train.get("kind") == "rgnet" and (crop_size or resize_size):
        size = int(crop_size or resize_size)  # type: ignore[arg-type]
        train["size"] = size
        pp["eval"]["size"] = size
    return pp


def build_model(cfg: TrainConfig) -> nn.Module:
    """The preset's architecture, optionally with another timm backbone, ImageNet weights or a local file;
    for RGNet, optionally a Table 1 ablation variant, another number of graph blocks, LSE ``r`` or
    DenseASPP rates (Table 3)."""
    from aescore.models import create_model

    kwargs: dict[str, Any] = {"pretrained": bool(cfg.pretrained), "backbone_weights": cfg.backbone_weights}
    # Only the options given: the card's arch_args then list exactly what differs from the paper.
    optional = (("backbone", cfg.backbone), ("variant", cfg.variant), ("graph_blocks", cfg.graph_blocks),
                ("lse_r", cfg.lse_r), ("aspp_rates", list(cfg.aspp_rates) if cfg.aspp_rates else None))
    kwargs.update({k: v for k, v in optional if v is not None})
    return create_model(cfg.model, **kwargs)


_DECAYED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def parameter_groups(model: nn.Module, weight_decay: float, scope: str = "weights") -> list[dict[str, Any]]:
    """Optimiser parameter groups: weight decay on convolution and fully connected *weights* only
    (``scope="weights"``, as MPA's official code regularises ``.*/W``), none on BatchNorm parameters
    and biases; ``scope="all"`` decays every parameter (PyTorch's default when given all of them).

    Two groups, decayed first; a group may be empty, so the optimiser state always has the same shape.
    """
    if scope == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay},
                {"params": [], "weight_decay": 0.0}]
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            is_weight = name == "weight" and isinstance(module, _DECAYED_MODULES)
            (decay if is_weight else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Nesterov SGD (MPA) or Adam (RGNet) over :func:`parameter_groups` (decay per ``cfg.weight_decay_scope``)."""
    groups = parameter_groups(model, cfg.weight_decay, cfg.weight_decay_scope)
    if cfg.optimizer == "sgd":
        nesterov = bool(cfg.nesterov and cfg.momentum > 0)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov)
    return torch.optim.Adam(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """Per-epoch learning-rate schedule.

    ``step``: multiply by ``gamma`` every ``step_size`` epochs (MPA: halve every 20).
    ``poly``: ``lr0 * (1 - epoch / epochs) ** power`` (RGNet, power 0.9), with ``epochs`` the
    current total, so extending a resumed run to more epochs stretches the decay.
    ``milestones``: the rate of the last ``[epoch, lr]`` pair reached (MPA's official code:
    1e-3, then 5e-4 / 1e-4 / 1e-5 from epochs 20 / 40 / 60).
    """
    from torch.optim.lr_scheduler import LambdaLR, StepLR

    if cfg.schedule == "step":
        return StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "poly":
        total, power = cfg.epochs, cfg.poly_power
        return LambdaLR(optimizer, lambda epoch: max(0.0, 1.0 - epoch / total) ** power)
    if cfg.schedule == "milestones":
        points = sorted((int(e), float(lr)) for e, lr in (cfg.lr_milestones or []))
        lr0 = cfg.lr

        def factor(epoch: int) -> float:
            reached = [lr for e, lr in points if epoch >= e]
            return (reached[-1] if reached else lr0) / lr0

        return LambdaLR(optimizer, factor)
    return LambdaLR(optimizer, lambda epoch: 1.0)


def steps_per_epoch(n_per_rank: int, batch_size: int, max_steps: int | None = None) -> tuple[int, bool]:
    """``(steps, drop_last)`` for ``n_per_rank`` images per process.

    The last, partial batch is kept (small datasets would otherwise lose up to a batch of images
    every epoch), unless it would hold a single image: BatchNorm cannot train on one value per
    channel (e.g. a ResNet's last stage at 1 x 1), so that one image waits for the next epoch's
    shuffle.
    """
    full, rest = divmod(n_per_rank, batch_size)
    drop_last = rest == 1 and full > 0
    steps = full if drop_last else full + (rest > 0)
    return (min(steps, max_steps) if max_steps else steps), drop_last


class EpochSampler(Sampler[int]):
    """A seeded shuffle per epoch (DistributedSampler: the same order on every machine and rank
    split), able to skip the batches a resumed, interrupted epoch already trained on."""

    def __init__(self, n: int, info: DistInfo, *, shuffle: bool, seed: int) -> None:
        self.inner: DistributedSampler[int] = DistributedSampler(
            range(n),  # type: ignore[arg-type]  # any sized sequence of indices works; the stub wants a Dataset
            num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order and how many leading indices to skip."""
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and ``random`` follow torch's per-worker seed, and
    the worker ignores SIGINT and SIGTERM (:func:`aescore.inference.core.ignore_stop_signals`:
    the main process alone decides when to stop, then saves and shuts the workers down)."""
    from aescore.inference.core import ignore_stop_signals

    ignore_stop_signals(worker_id)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    sampler: Sampler[int],
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    generator: torch.Generator | None = None,
    persistent: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader that skips undecodable images (``collate_skipping``), pins memory on CUDA and
    seeds its workers from ``generator``."""
    from aescore.data.datasets import collate_skipping

    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skipping,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=generator,
        drop_last=drop_last,
        prefetch_factor=4 if workers > 0 else None,
    )
