"""Training presets: each paper's recipe as a typed config that every CLI option can override.

``mpa-avg`` / ``mpa-min`` / ``mpa-ada`` follow Sheng et al. (ACM MM 2018, Sec. 4.2): ResNet-18
fine-tuned from ImageNet, Nesterov SGD (momentum 0.9), lr 1e-3 halved every 20 epochs, weight
decay 1e-4, batch 32, 32 epochs, beta = 0.5, positive label = mean score > 5. The paper does not
state how many patches per image it crops; we default to 4 (``patches``).

``mpa-ada-official`` follows the authors' released code (Openning07/MPADA) where it differs from
the paper: label = mean >= 5, one crop per image, batch 64, 110 epochs with lr 1e-3 / 5e-4 / 1e-4
/ 1e-5 from epochs 0 / 20 / 40 / 60 (docs/training.md lists every difference).

``rgnet`` follows Liu et al. (WACV 2020, Sec. 4): DenseNet-121 RGNet, cross-entropy, Adam,
lr 1e-4 with poly decay ``(1 - epoch / E) ** 0.9``, weight decay 1e-5, batch 32, 80 epochs,
positive label = mean score >= 5.

Regression data (AADB, or a CSV of scores) always trains with ``mse``: the squared error between
the model's P(high) = softmax(logits)[1] and the [0, 1] score (RGNet's AADB setting).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from aescore.errors import ConfigError

OBJECTIVES = ("mp_avg", "mp_min", "mp_ada", "ce", "mse", "pair_rank")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "poly", "milestones", "constant")
DATASETS = ("ava", "aadb", "csv")
# Which parameters weight decay applies to: "weights" = convolution and fully connected weights
# only (not BatchNorm parameters, not biases; MPA's official code), "all" = every parameter.
WEIGHT_DECAY_SCOPES = ("weights", "all")


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
    aspp_rates: list[int] | None = None  # RGNet DenseASPP dilation rates (Table 3; paper: 3, 6, 12, 18)
    objective: str = "mp_avg"
    beta: float = 0.5
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    weight_decay_scope: str = "weights"
    schedule: str = "step"
    step_size: int = 20
    gamma: float = 0.5
    poly_power: float = 0.9
    # schedule "milestones": [[epoch, lr], ...]; lr is the rate from that epoch on (before the
    # first milestone: ``lr``).
    lr_milestones: list[list[float]] | None = None
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
        """Raise :class:`ConfigError` (naming the setting) for values no run can use."""
        from aescore.devices import DEVICE_CHOICES

        def one_of(name: str, choices: tuple[str, ...]) -> tuple[bool, str, str]:
            return getattr(self, name) in choices, name, f"must be one of {', '.join(choices)}"

        checks = [
            one_of("objective", OBJECTIVES),
            one_of("optimizer", OPTIMIZERS),
            one_of("schedule", SCHEDULES),
            one_of("dataset", DATASETS),
            one_of("weight_decay_scope", WEIGHT_DECAY_SCOPES),
            (self.epochs >= 1, "epochs", "must be at least 1"),
            (self.batch_size >= 1, "batch_size", "must be at least 1"),
            (self.patches >= 1, "patches", "must be at least 1"),
            (self.lr > 0, "lr", "must be positive"),
            (self.beta > 0, "beta", "must be positive"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (self.workers >= 0, "workers", "must be >= 0"),
            (self.step_size >= 1, "step_size", "must be at least 1"),
            (self.eval_tta_crops is None or self.eval_tta_crops >= 1, "eval_tta_crops", "must be at least 1"),
            (self.crop_size is None or self.crop_size >= 8, "crop_size", "must be at least 8"),
            (self.resize_size is None or self.resize_size >= 8, "resize_size", "must be at least 8"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1"),
            (self.graph_blocks is None or self.graph_blocks >= 1, "graph_blocks", "must be at least 1"),
            (self.lse_r is None or self.lse_r >= 0, "lse_r", "must be >= 0"),
            (not self.aspp_rates or all(int(r) >= 1 for r in self.aspp_rates), "aspp_rates",
             "must be positive dilation rates"),
            (self.device in DEVICE_CHOICES or self.device.startswith("cuda:"), "device",
             "must be auto, cpu, cuda, cuda:N or mps"),
            (self.schedule != "milestones" or bool(self.lr_milestones), "lr_milestones",
             "must list [epoch, lr] pairs for the milestones schedule"),
            (not self.lr_milestones or all(len(m) == 2 and m[0] >= 0 and m[1] > 0 for m in self.lr_milestones),
             "lr_milestones", "must be [epoch >= 0, lr > 0] pairs"),
        ]
        for ok, setting, problem in checks:
            if not ok:
                raise ConfigError(setting, problem)
        if self.crop_size and self.resize_size and self.crop_size > self.resize_size and self.model.startswith("mpa"):
            raise ConfigError("crop_size", "must not exceed the resize size")
        rgnet_only = [name for name in ("variant", "graph_blocks", "lse_r", "aspp_rates") if getattr(self, name) is not None]
        if rgnet_only and not self.model.startswith("rgnet"):
            raise ConfigError(rgnet_only[0], "applies to the rgnet preset only")
        if self.variant is not None:
            from aescore.models.names import RGNET_VARIANTS as VARIANTS

            if self.variant not in VARIANTS:
                raise ConfigError("variant", f"must be one of {', '.join(VARIANTS)}")


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


def _mpa_official() -> TrainConfig:
    """MP_ada as the authors' released code trains it (Openning07/MPADA, AVA2012-resnet and
    imagenet_utils): label mean >= 5, one 224 crop of a 256 shorter edge per image, batch 64,
    110 epochs, lr 1e-3 / 5e-4 / 1e-4 / 1e-5 from epochs 0 / 20 / 40 / 60, Nesterov momentum 0.9,
    L2 1e-4 on convolution and FC weights only."""
    cfg = _mpa("mp_ada")
    return dataclasses.replace(
        cfg, preset="mpa-ada-official", patches=1, batch_size=64, epochs=110, schedule="milestones",
        lr_milestones=[[20, 5e-4], [40, 1e-4], [60, 1e-5]], threshold_inclusive=True,
    )


PRESETS: dict[str, TrainConfig] = {
    "mpa-avg": _mpa("mp_avg"),
    "mpa-min": _mpa("mp_min"),
    "mpa-ada": _mpa("mp_ada"),
    "mpa-ada-official": _mpa_official(),
    "rgnet": _rgnet(),
}


def get_preset(name: str) -> TrainConfig:
    """A fresh copy of preset ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError("preset", f"must be one of {', '.join(PRESETS)}, not {name!r}")
    return copy.deepcopy(PRESETS[name])


def build_config(preset: str, **overrides: Any) -> TrainConfig:
    """Preset ``preset`` with every override that is not None applied, validated."""
    cfg = get_preset(preset)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(unknown[0], f"is not a training setting (known: {', '.join(sorted(known))})")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    cfg.validate()
    return cfg
