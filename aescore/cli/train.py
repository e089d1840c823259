"""``aescore train``: train MPA or RGNet on AVA, AADB or a CSV of one's own scored photos.

Thin: parses options into a :class:`aescore.engine.presets.TrainConfig` and calls
:func:`aescore.engine.train.fit`. No torch import at module level (``aescore --help`` stays fast).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from aescore.cli.main import app

_DATA = "Data"
_RECIPE = "Recipe (overrides the preset)"
_RUN = "Run"

Dataset = Annotated[Optional[str], typer.Option("--dataset", help="ava, aadb or csv (taken from the checkpoint with --resume).", rich_help_panel=_DATA)]
Root = Annotated[Optional[Path], typer.Option("--root", help="Dataset folder (AVA/AADB) or CSV file/folder.", rich_help_panel=_DATA)]


@app.command()
def train(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder: last.pt, metrics.jsonl, best.safetensors + best.json.")],
    dataset: Dataset = None,
    root: Root = None,
    preset: Annotated[Optional[str], typer.Option(help="mpa-avg, mpa-min, mpa-ada or rgnet (default mpa-ada).", rich_help_panel=_RECIPE)] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Total epochs (with --resume: extend a run to this many).", rich_help_panel=_RECIPE)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step per process.", rich_help_panel=_RECIPE)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Initial learning rate.", rich_help_panel=_RECIPE)] = None,
    patches: Annotated[Optional[int], typer.Option(help="MPA: random crops per image per step (K).", rich_help_panel=_RECIPE)] = None,
    beta: Annotated[Optional[float], typer.Option(help="MP_ada's beta (paper: 0.5).", rich_help_panel=_RECIPE)] = None,
    objective: Annotated[Optional[str], typer.Option(help="mp_avg, mp_min, mp_ada, ce, or pair_rank (degradation CSVs: a photo vs its own degraded copy); regression data always uses mse.", rich_help_panel=_RECIPE)] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd (Nesterov) or adam.", rich_help_panel=_RECIPE)] = None,
    momentum: Annotated[Optional[float], typer.Option(help="SGD momentum.", rich_help_panel=_RECIPE)] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay.", rich_help_panel=_RECIPE)] = None,
    schedule: Annotated[Optional[str], typer.Option(help="step, poly or constant.", rich_help_panel=_RECIPE)] = None,
    lr_step: Annotated[Optional[int], typer.Option(help="step schedule: epochs between decays.", rich_help_panel=_RECIPE)] = None,
    lr_gamma: Annotated[Optional[float], typer.Option(help="step schedule: decay factor.", rich_help_panel=_RECIPE)] = None,
    backbone: Annotated[Optional[str], typer.Option(help="MPA: another timm backbone (e.g. resnet50).", rich_help_panel=_RECIPE)] = None,
    variant: Annotated[Optional[str], typer.Option(help="RGNet Table 1 ablation: FCN, FCN-A, FCN-G, FCN-A-G (the paper's, default), FCN-C-C or FC-CNN.", rich_help_panel=_RECIPE)] = None,
    graph_blocks: Annotated[Optional[int], typer.Option(help="RGNet: region-graph blocks (paper: 3).", rich_help_panel=_RECIPE)] = None,
    lse_r: Annotated[Optional[float], typer.Option(help="RGNet: LSE pooling r (paper: 4).", rich_help_panel=_RECIPE)] = None,
    pretrained: Annotated[Optional[bool], typer.Option("--pretrained/--no-pretrained", help="Start from ImageNet weights (default: yes, as the papers; needs the internet once).", rich_help_panel=_RECIPE)] = None,
    backbone_weights: Annotated[Optional[Path], typer.Option(help="Local ImageNet backbone weights (.safetensors/.pth) instead of downloading.", rich_help_panel=_RECIPE)] = None,
    crop_size: Annotated[Optional[int], typer.Option(help="MPA patch size (224) / RGNet input size (300).", rich_help_panel=_RECIPE)] = None,
    resize_size: Annotated[Optional[int], typer.Option(help="MPA shorter edge before cropping (256).", rich_help_panel=_RECIPE)] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Binary label threshold (AVA default 5).", rich_help_panel=_DATA)] = None,
    threshold_inclusive: Annotated[Optional[bool], typer.Option("--threshold-inclusive/--threshold-exclusive", help="Score == threshold is positive (RGNet) or not (MPA).", rich_help_panel=_DATA)] = None,
    val_size: Annotated[Optional[int], typer.Option(help="Validation images held out of training (AVA default 2000).", rich_help_panel=_DATA)] = None,
    max_items: Annotated[Optional[int], typer.Option(help="Cap each split (seeded subset) for quick trials.", rich_help_panel=_DATA)] = None,
    eval_tta_crops: Annotated[Optional[int], typer.Option(help="MPA validation: average N random crops (official code: 15); default one centre crop.", rich_help_panel=_RECIPE)] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.", rich_help_panel=_RUN)] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes per training process.", rich_help_panel=_RUN)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of splits, initialisation, order and augmentation.", rich_help_panel=_RUN)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUTPUT/last.pt exactly where it stopped.", rich_help_panel=_RUN)] = False,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision on CUDA (bf16, else fp16 + scaler); default on.", rich_help_panel=_RUN)] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the model for training.", rich_help_panel=_RUN)] = None,
    deterministic: Annotated[Optional[bool], typer.Option("--deterministic/--no-deterministic", help="Deterministic kernels (bit-exact resume on CPU).", rich_help_panel=_RUN)] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="At most N optimiser steps per epoch (smoke tests).", rich_help_panel=_RUN)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary of the run on stdout.", rich_help_panel=_RUN)] = False,
) -> None:
    """Train an aesthetics model; every epoch writes OUTPUT/last.pt, OUTPUT/metrics.jsonl and the best model.

    Presets reproduce the papers: mpa-avg / mpa-min / mpa-ada (Sheng et al. 2018) and rgnet
    (Liu et al. 2020); every value can be overridden. Under torchrun the same command trains
    with DDP. See docs/training.md.
    """
    from aescore.engine.presets import build_config
    from aescore.engine.train import fit, resume_config
    from aescore.errors import UsageError

    overrides = dict(
        dataset=dataset, root=str(root) if root is not None else None, epochs=epochs, batch_size=batch_size, lr=lr,
        patches=patches, beta=beta, objective=objective, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, step_size=lr_step, gamma=lr_gamma, backbone=backbone,
        variant=variant, graph_blocks=graph_blocks, lse_r=lse_r,
        pretrained=pretrained, backbone_weights=str(backbone_weights) if backbone_weights else None,
        crop_size=crop_size, resize_size=resize_size, threshold=threshold, threshold_inclusive=threshold_inclusive,
        val_size=val_size, max_items=max_items, eval_tta_crops=eval_tta_crops, device=device, workers=workers,
        seed=seed, amp=amp, compile=compile, deterministic=deterministic, max_steps=max_steps,
    )
    if resume:
        cfg = resume_config(output, **overrides)
        if preset is not None and preset != cfg.preset:
            raise UsageError(f"--resume: {output} was trained with preset {cfg.preset!r}; "
                             "a preset cannot change on resume (override single options instead)")
    else:
        if dataset is None or root is None:
            raise UsageError("--dataset and --root are required (except with --resume)")
        cfg = build_config(preset or "mpa-ada", **overrides)
    command = _command_line(ctx)
    result = fit(cfg, output, resume=resume, command=command)
    import os

    if as_json and os.environ.get("RANK", "0") == "0":
        summary = {
            "output": str(result.output),
            "epochs_done": result.epochs_done,
            "best_epoch": result.best_epoch,
            "best_metrics": result.best_metrics,
            "interrupted": result.interrupted,
            "n_skipped": result.n_skipped,
            "split_fingerprints": result.fingerprints,
        }
        print(json.dumps(summary))
    if result.interrupted:
        raise typer.Exit(130)


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
