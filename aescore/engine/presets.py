"""Training presets: each paper's recipe as a typed config that every CLI option can override.

``mpa-avg`` / ``mpa-min`` / ``mpa-ada`` follow Sheng et al. (ACM MM 2018, Sec. 4.2): ResNet-18
fine-tuned from ImageNet, Nesterov SGD (momentum 0.9), lr 1e-3 halved every 20 epochs, weight
decay 1e-4, batch 32, 32 epochs, beta = 0.5, positive label = mean score > 5. The paper does not
state how many patches per image it crops; we default to 4 (``--patches``).

``rgnet`` follows Liu et al. (WACV 2020, Sec. 4): DenseNet-121 RGNet, cross-entropy, Adam,
lr 1e-4 with poly decay ``(1 - epoch / E) ** 0.9``, weight decay 1e-5, batch 32, 80 epochs,
positive label = mean score >= 5.

Regression data (AADB, or a CSV of scores) always trains with ``mse``: the squared error between
the model's P(high) = softmax(logits)[1] and the [0, 1] score (RGNet's AADB setting).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aescore.errors import UsageError

OBJECTIVES = ("mp_avg", "mp_min", "mp_ada", "ce", "mse", "pair_rank")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "poly", "constant")
DATASETS = ("ava", "aadb", "csv")


def default_loader_workers() -> int:
    """DataLoader workers by default: 4, but no more than the usable CPU cores (more only
    oversubscribes a small machine, and PyTorch warns about it)."""
    from aescore.sysinfo import usable_cores

    cores = usable_cores()
    return max(1, min(4, cores))


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in checkpoints and in the model card."""

    preset: str
    model: str
    backbone: str | None = None
    # RGNet only (None: the paper's model): Table 1's ablation variant, Fig. 5's sweeps.
    variant: str | None = None
    graph_blocks: int | None = None
    lse_r: float | None = None
    objective: str = "mp_avg"
    beta: float = 0.5
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: str = "step"
    step_size: int = 20
    gamma: float = 0.5
    poly_power: float = 0.9
    batch_size: int = 32
    epochs: int = 32
    patches: int = 4
    # None: the dataset's own default (AVA: mean score 5; AADB: score 0.5); the preset picks
    # whether the threshold itself counts as positive (MPA: no, mean > 5; RGNet: yes, mean >= 5).
    threshold: float | None = None
    threshold_inclusive: bool = False
    # MPA validation: None = one centre crop per image (cheap); N = the average of N random
    # crops (MPA's official code used 15). RGNet always validates on the whole image.
    eval_tta_crops: int | None = None
    crop_size: int | None = None
    resize_size: int | None = None
    pretrained: bool = True
    backbone_weights: str | None = None
    dataset: str = "ava"
    root: str = ""
    seed: int = 0
    val_size: int | None = None
    max_items: int | None = None
    max_steps: int | None = None
    amp: bool | None = None
    compile: bool = False
    deterministic: bool = False
    workers: int = dataclasses.field(default_factory=default_loader_workers)
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (what checkpoints and model cards store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :meth:`to_dict` output, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        """Raise :class:`UsageError` for values no run can use."""
        checks = [
            (self.objective in OBJECTIVES, f"--objective must be one of {', '.join(OBJECTIVES)}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.dataset in DATASETS, f"--dataset must be one of {', '.join(DATASETS)}"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.patches >= 1, "--patches must be at least 1"),
            (self.lr > 0, "--lr must be positive"),
            (self.beta > 0, "--beta must be positive"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (self.workers >= 0, "--workers must be >= 0"),
            (self.step_size >= 1, "step size must be at least 1"),
            (self.eval_tta_crops is None or self.eval_tta_crops >= 1, "--eval-tta-crops must be at least 1"),
            (self.crop_size is None or self.crop_size >= 8, "--crop-size must be at least 8"),
            (self.resize_size is None or self.resize_size >= 8, "--resize-size must be at least 8"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.graph_blocks is None or self.graph_blocks >= 1, "--graph-blocks must be at least 1"),
            (self.lse_r is None or self.lse_r >= 0, "--lse-r must be >= 0"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), "--device must be auto, cpu or cuda"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        if self.crop_size and self.resize_size and self.crop_size > self.resize_size and self.model.startswith("mpa"):
            raise UsageError("--crop-size must not exceed --resize-size")
        rgnet_only = [name for name in ("variant", "graph_blocks", "lse_r") if getattr(self, name) is not None]
        if rgnet_only and not self.model.startswith("rgnet"):
            raise UsageError(f"--{rgnet_only[0].replace('_', '-')} applies to the rgnet preset only")
        if self.variant is not None:
            from aescore.models.rgnet import VARIANTS  # imports torch: only when a variant is asked for

            if self.variant not in VARIANTS:
                raise UsageError(f"--variant must be one of {', '.join(VARIANTS)}")


def _mpa(objective: str) -> TrainConfig:
    return TrainConfig(
        preset=f"mpa-{objective.split('_')[1]}",
        model="mpa_resnet18",
        objective=objective,
        beta=0.5,
        optimizer="sgd",
        lr=1e-3,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        schedule="step",
        step_size=20,
        gamma=0.5,
        batch_size=32,
        epochs=32,
        patches=4,
        threshold_inclusive=False,
    )


def _rgnet() -> TrainConfig:
    return TrainConfig(
        preset="rgnet",
        model="rgnet_densenet121",
        objective="ce",
        optimizer="adam",
        lr=1e-4,
        momentum=0.0,
        nesterov=False,
        weight_decay=1e-5,
        schedule="poly",
        poly_power=0.9,
        batch_size=32,
        epochs=80,
        patches=1,
        threshold_inclusive=True,
    )


PRESETS: dict[str, TrainConfig] = {
    "mpa-avg": _mpa("mp_avg"),
    "mpa-min": _mpa("mp_min"),
    "mpa-ada": _mpa("mp_ada"),
    "rgnet": _rgnet(),
}


def get_preset(name: str) -> TrainConfig:
    """A fresh copy of preset ``name`` (``mpa-avg``, ``mpa-min``, ``mpa-ada``, ``rgnet``)."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name])


def build_config(preset: str, **overrides: Any) -> TrainConfig:
    """Preset ``preset`` with every override that is not None applied, validated."""
    cfg = get_preset(preset)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"unknown training option(s): {', '.join(unknown)}")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    cfg.validate()
    return cfg
