"""Train the default model (issue 12): a pretrained backbone fine-tuned on fault pairs of real photos.

    PYTHONPATH=. python scripts/train_default_model.py --photos ../shared/photos \\
        --exclude weights/heldout-photos.txt --backbone tf_efficientnet_lite0 --steps 1200 --out runs/lite0

Runs on the CPU (a GPU when there is one: ``--device``). The optimiser steps go through aescore's
one training loop (:mod:`aescore.engine.loop`: :class:`~aescore.engine.loop.Trainer`,
:func:`~aescore.engine.loop.fit_steps`), as ``aescore train`` and ``learn --fine-tune`` do: mixed
precision on CUDA (``--no-amp`` for full precision), the NaN/inf check, Ctrl-C saving a checkpoint.
This script brings the recipe: the data, the loss, the frozen stages and the schedule.

Resumable, exactly: ``--out`` keeps ``last.pt`` (model, optimiser, grad scaler, step and every RNG
state: :func:`aescore.engine.checkpoint.step_checkpoint`; saved every ``--save-every`` steps, and
when ``--minutes`` runs out, ``--stop-at`` is reached or Ctrl-C is pressed) and the same command
continues from it: on the CPU, N steps straight and N - k steps + resume give the same weights.
At the last step writes ``OUT/model.safetensors`` and its card (the card's training block names
this command; the measured figures are added by the evaluation scripts, see docs/models.md).

Recipe: :class:`aescore.data.fault_pairs.FaultPairs` items (a good photo and its faulty copy);
loss = cross-entropy of the pooled good/flawed logits + a pairwise ranking term (softplus of
the score margin, the good copy must win) + binary cross-entropy of the pooled fault logits
(the reasons). The stem and the first ``--freeze`` backbone stages keep their ImageNet weights
(their edge and texture filters are what faults disturb; freezing also halves the CPU cost of
a step) and every BatchNorm keeps ImageNet's statistics (batches of 16 are too small to
re-estimate them). Learning rate: linear warm-up over 30 steps, then a cosine decay to 5 % of the
peak at ``--steps``. Data: epochs of 100 steps, each with its own draw of photos and faults.

Later stages (issue 28, docs/models.md "Training the network further"): ``--init W`` starts from a
trained network instead of ImageNet's, ``--crop-norm`` makes the detail crops colour-blind (arch
arg ``crop_norm``) and ``--keep-whole`` holds the whole-frame view to the ``--init`` network
(:func:`whole_frame_drift`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from aescore.data.fault_pairs import FaultPairs
from aescore.data.faults import POSITIVE_KINDS, POSITIVES
from aescore.devices import torch_device
from aescore.engine.checkpoint import epoch_seed, resume_steps, step_checkpoint
from aescore.engine.loop import StepDone, StopRequest, Trainer, fit_steps
from aescore.engine.setup import resolve_amp
from aescore.errors import AescoreError
from aescore.inference.discover import IMAGE_EXTENSIONS
from aescore.data.transforms import Preprocess
from aescore.models import create_model
from aescore.models.contract import ModelInputs
from aescore.weights import load_checkpoint, save_checkpoint, save_weights

#: Steps per data epoch: :class:`FaultPairs` draws other photos, faults and severities every epoch.
STEPS_PER_EPOCH = 100


def training_photos(folder: str, exclude: str | None) -> list[str]:
    """The photographs of ``folder`` (sorted paths), less the file names listed in ``exclude``."""
    held = set(Path(exclude).read_text().split()) if exclude else set()
    return sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.name not in held)


def early_modules(model: nn.Module, stages: int) -> list[nn.Module]:
    """The stem and the first ``stages`` stages of the backbone (timm EfficientNet or ResNet)."""
    bb = model.backbone  # type: ignore[attr-defined]
    if hasattr(bb, "blocks"):  # EfficientNet
        return [bb.conv_stem, bb.bn1, *list(bb.blocks)[:stages]]
    return [bb.conv1, bb.bn1, *[getattr(bb, f"layer{i}") for i in range(1, stages + 1)]]


def freeze(model: nn.Module, stages: int) -> None:
    """No gradients for the early modules; every BatchNorm in eval mode (ImageNet statistics)."""
    for m in early_modules(model, stages):
        for p in m.parameters():
            p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def init_from(model: nn.Module, path: Path) -> None:
    """Load a trained faultnet's network into ``model`` (a later stage of the recipe starts from
    the shipped weights): every tensor but the content tail's and the exposure branch's, which
    the published model adds back (``publish_default_model.py``, ``train_tone_branch.py``). Read
    through :func:`aescore.weights.load_weights` (card, sha256 and tensors checked)."""
    from aescore.weights import load_weights

    try:
        trained, _ = load_weights(path)
    except AescoreError as err:  # missing, damaged or not a model file: the loader's one line
        raise ValueError(str(err)) from None
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith(("content.", "tone."))}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # tensors of other shapes: another backbone
        raise ValueError("not this network's weights (tensors of other shapes)") from err
    if missing or unexpected:
        raise ValueError(f"not this network's weights ({len(missing)} tensors missing, {len(unexpected)} unexpected)")


def whole_frame_drift(model: nn.Module, teacher: nn.Module, whole: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the whole-frame view's log-odds and fault logits between
    ``model`` and the frozen ``teacher`` (``--keep-whole``): a later stage that changes how the
    detail crops are read (``--crop-norm``) keeps the whole frame judged as before
    ("learning without forgetting"), since its weights are shared with the crops'."""
    out = model.forward_outputs(ModelInputs(whole), ("faults",))  # type: ignore[operator]
    with torch.no_grad():
        ref = teacher.forward_outputs(ModelInputs(whole), ("faults",))  # type: ignore[operator]
    d, d_ref = out.logits[:, 1] - out.logits[:, 0], ref.logits[:, 1] - ref.logits[:, 0]
    return F.mse_loss(d, d_ref) + F.mse_loss(out.faults, ref.faults)


def losses(model: nn.Module, batch: list[torch.Tensor], cross: bool = False,
           teacher: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The three loss terms of the module docstring on one batch of pairs; with ``cross`` the
    ranking term also covers every good photo against the faulty copy of every *other* photo of
    the batch (what the cross-photo AUC measures: a good dark photo above a faulty bright one);
    with a ``teacher``, :func:`whole_frame_drift` is added."""
    gw, gc, bw, bc, labels = batch
    b, device = gw.shape[0], gw.device
    out = model.forward_outputs(ModelInputs(torch.cat([gw, bw]), torch.cat([gc, bc])), ("faults",))  # type: ignore[operator]
    target = torch.cat([torch.ones(b, device=device), torch.zeros(b, device=device)]).long()
    ce = F.cross_entropy(out.logits, target)
    d = out.logits[:, 1]
    rank = F.softplus(-(d[:b] - d[b:])).mean()
    if cross:
        others = ~torch.eye(b, dtype=torch.bool, device=device)
        rank = rank + F.softplus(-(d[:b, None] - d[None, b:]))[others].mean()
    fault_target = torch.cat([torch.zeros_like(labels), labels])
    bce = F.binary_cross_entropy_with_logits(out.faults, fault_target)
    with torch.no_grad():
        acc = (d[:b] > d[b:]).float().mean().item()
        top_ok = [labels[i, out.faults[b + i].argmax()].item() > 0 for i in range(b)]
    parts = {"ce": ce.item(), "rank": rank.item(), "bce": bce.item(), "pair_acc": acc, "top_fault_ok": sum(top_ok) / b}
    loss = ce + rank + bce
    if teacher is not None:
        drift = whole_frame_drift(model, teacher, torch.cat([gw, bw]))
        loss, parts["drift"] = loss + drift, drift.item()
    return loss, parts


def schedule(total: int) -> Callable[[int, float], float]:
    """The learning rate of a parameter group at 0-based ``step`` of ``total``, from its peak
    ``base``: linear warm-up over 30 steps, then a cosine decay to 5 % of the peak."""

    def lr(step: int, base: float) -> float:
        warm = min(1.0, (step + 1) / 30)
        cos = 0.5 * (1 + math.cos(math.pi * step / total))
        return base * warm * (0.05 + 0.95 * cos)

    return lr


def pair_batches(data: FaultPairs, pairs: int, workers: int, seed: int, start_step: int) -> Iterator[list[torch.Tensor]]:
    """The batches of pairs from ``start_step`` on, endlessly: data epoch ``step // 100`` in item
    order. Items are a function of (seed, epoch, index), so a resumed run starts inside its epoch
    without decoding the batches already trained on; each epoch's loader draws its worker seeds
    from a generator of (seed, epoch), never from the global RNG the checkpoint restores."""
    step = start_step
    while True:
        epoch, done = divmod(step, STEPS_PER_EPOCH)
        data.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            data, batch_size=pairs, sampler=range(done * pairs, len(data)), num_workers=workers,
            persistent_workers=False, prefetch_factor=2 if workers else None,
            generator=torch.Generator().manual_seed(epoch_seed(seed, epoch, 0)),
        )
        for batch in loader:
            yield batch
            step += 1


def main(argv: list[str] | None = None, *, on_step: Callable[[StepDone], None] | None = None) -> int:
    """The command (see the module docstring); ``on_step`` is called after every optimiser step
    (the tests compare losses through it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, help="folder of real photographs")
    ap.add_argument("--exclude", help="text file of photo file names to hold out (one per line)")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this trained faultnet .safetensors and its card (its content tail and exposure branch are "
                         "left out: they are added again when publishing) instead of ImageNet's weights")
    ap.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                    help="start from random weights (tests; the default model starts from ImageNet's)")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--pairs", type=int, default=8, help="pairs per batch (2x images)")
    ap.add_argument("--lr", type=float, default=4e-4, help="peak learning rate of the backbone (heads: 5x)")
    ap.add_argument("--freeze", type=int, default=3, help="backbone stages kept frozen after the stem")
    ap.add_argument("--crop-norm", action="store_true",
                    help="colour-blind detail crops: each crop's colour and brightness removed (arch arg crop_norm)")
    ap.add_argument("--keep-whole", action="store_true",
                    help="with --init: hold the whole-frame view's log-odds and reasons to the --init network's "
                         "(a squared-difference term), so that only what the detail crops change is learned")
    ap.add_argument("--cross-pairs", action="store_true",
                    help="rank every good photo of a batch above every other photo's faulty copy too")
    ap.add_argument("--positives", default=",".join(POSITIVE_KINDS),
                    help=f"comma-separated kinds of good-on-purpose photos to draw from (available: {', '.join(POSITIVES)})")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=0, help="stop (resumable) after this many minutes; 0: no limit")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop (resumable) once this step is reached, keeping the schedule of --steps; 0: no stop")
    ap.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    ap.add_argument("--no-amp", dest="amp", action="store_false",
                    help="full precision on CUDA too (default: bf16 or fp16 autocast there; the CPU always trains in fp32)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    positives = tuple(k for k in args.positives.split(",") if k)
    if not positives or set(positives) - set(POSITIVES):
        ap.error(f"--positives takes a comma-separated list of {', '.join(POSITIVES)}")

    try:
        device = torch_device(args.device)
    except AescoreError as err:
        ap.error(str(err))
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = training_photos(args.photos, args.exclude)
    (out / "train-photos.txt").write_text("".join(Path(p).name + "\n" for p in paths))
    try:
        model = create_model("faultnet", backbone=args.backbone, pretrained=args.pretrained,
                             **({"crop_norm": True} if args.crop_norm else {}))
    except AescoreError as err:  # e.g. the package of ImageNet weights is missing: one line, with the pip command
        ap.error(str(err))
    if args.keep_whole and args.init is None:
        ap.error("--keep-whole needs --init (the network whose whole-frame judgement is kept)")
    teacher: nn.Module | None = None
    if args.init is not None:
        try:
            init_from(model, args.init)
        except (OSError, ValueError) as err:
            ap.error(f"--init {args.init}: {err}")
        if args.keep_whole:
            teacher = copy.deepcopy(model).eval().requires_grad_(False)
    recipe = Preprocess.from_card(model.default_preprocess)
    if not paths:
        raise SystemExit(f"no photographs in {args.photos}")
    data = FaultPairs(paths, recipe, length=args.pairs * STEPS_PER_EPOCH, seed=args.seed, positive_kinds=positives)
    heads = [p for n, p in model.named_parameters() if n.startswith(("head.", "fault_head."))]
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    model.train()
    freeze(model, args.freeze)  # after train(): it puts every BatchNorm back in eval mode
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("head.", "fault_head."))]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": heads, "lr": args.lr * 5}], weight_decay=1e-4)
    trainer = Trainer(model, opt, device, resolve_amp(None if args.amp else False, device), schedule=schedule(args.steps))
    step = 0
    if (out / "last.pt").is_file():
        step = resume_steps(load_checkpoint(out / "last.pt"), trainer)
        print(f"resumed at step {step}", file=sys.stderr)

    def save(at: int) -> None:
        save_checkpoint(step_checkpoint(trainer, at), out / "last.pt")

    started, log = time.time(), (out / "metrics.jsonl").open("a")
    stop = StopRequest(lambda message: print(message, file=sys.stderr))
    limit = min(args.steps, args.stop_at) if args.stop_at > 0 else args.steps

    def after_step(done: StepDone) -> None:
        assert done.loss is not None  # every batch of pairs trains
        log.write(json.dumps({"step": done.step, "loss": round(done.loss.item(), 4),
                              **{k: round(v, 4) for k, v in done.parts.items()}, "seconds": round(done.seconds, 2)}) + "\n")
        log.flush()
        if done.step % args.save_every == 0:
            save(done.step)
        if args.minutes and time.time() - started > args.minutes * 60:
            stop.requested = True  # read by the loop at this step boundary
        if on_step is not None:
            on_step(done)

    device_batches = ([t.to(device, non_blocking=True) for t in batch]
                      for batch in pair_batches(data, args.pairs, args.workers, args.seed, step))
    try:
        with stop.installed():
            stats = fit_steps(trainer, device_batches, lambda net, batch: losses(net, batch, cross=args.cross_pairs, teacher=teacher),
                              start_step=step, max_steps=limit, stop=stop, on_step=after_step)
    except AescoreError as err:  # a NaN/inf loss: one line, nothing saved from the broken state
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        log.close()
    step = stats.steps
    if step < args.steps:
        save(step)
        timed_out = bool(args.minutes) and time.time() - started > args.minutes * 60
        why = "time limit" if timed_out else "stop requested" if stats.interrupted else f"--stop-at {args.stop_at}"
        print(f"stopped at step {step} of {args.steps} ({why}); run again to resume", file=sys.stderr)
        return 130 if stats.interrupted and not timed_out else 0  # 130: Ctrl-C or SIGTERM, as `aescore train`
    save(step)
    command = "PYTHONPATH=. python scripts/train_default_model.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    model.eval()
    save_weights(model, out / "model.safetensors", {
        "summary": f"Fault detector on an ImageNet-pretrained {args.backbone}: scores technical quality and names the fault.",
        "training": {"dataset": "fault-pairs", "data": f"{len(paths)} real photographs ({args.photos}), each step {args.pairs} (good, faulty copy) "
                             "pairs made by aescore.data.fault_pairs",
                     "command": command, "steps": step, "pairs_per_step": args.pairs},
    })
    print(f"wrote {out / 'model.safetensors'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
