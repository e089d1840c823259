"""Train the default model (issue 12): a pretrained backbone fine-tuned on fault pairs of real photos.

    PYTHONPATH=. python scripts/train_default_model.py --photos ../shared/photos \\
        --exclude weights/heldout-photos.txt --backbone tf_efficientnet_lite0 --steps 1200 --out runs/lite0

Runs on the CPU (a GPU when there is one). Resumable: ``--out`` keeps ``last.pt`` (model,
optimiser, step; saved every ``--save-every`` steps and when ``--minutes`` runs out) and the same
command continues from it. At the last step writes ``OUT/model.safetensors`` and its card (the
card's training block names this command; the measured figures are added by the evaluation
scripts, see docs/models.md).

Recipe: :class:`aescore.data.fault_pairs.FaultPairs` items (a good photo and its faulty copy);
loss = cross-entropy of the pooled good/flawed logits + a pairwise ranking term (softplus of
the score margin, the good copy must win) + binary cross-entropy of the pooled fault logits
(the reasons). The stem and the first ``--freeze`` backbone stages keep their ImageNet weights
(their edge and texture filters are what faults disturb; freezing also halves the CPU cost of
a step) and every BatchNorm keeps ImageNet's statistics (batches of 16 are too small to
re-estimate them).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aescore.data.fault_pairs import FaultPairs
from aescore.data.faults import POSITIVE_KINDS, POSITIVES
from aescore.inference.discover import IMAGE_EXTENSIONS
from aescore.data.transforms import Preprocess
from aescore.models import create_model
from aescore.models.contract import ModelInputs
from aescore.weights import load_checkpoint, save_checkpoint, save_weights


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


def losses(model: nn.Module, batch: list[torch.Tensor], cross: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """The three loss terms of the module docstring on one batch of pairs; with ``cross`` the
    ranking term also covers every good photo against the faulty copy of every *other* photo of
    the batch (what the cross-photo AUC measures: a good dark photo above a faulty bright one)."""
    gw, gc, bw, bc, labels = batch
    b = gw.shape[0]
    out = model.forward_outputs(ModelInputs(torch.cat([gw, bw]), torch.cat([gc, bc])), ("faults",))  # type: ignore[operator]
    target = torch.cat([torch.ones(b), torch.zeros(b)]).long()
    ce = F.cross_entropy(out.logits, target)
    d = out.logits[:, 1]
    rank = F.softplus(-(d[:b] - d[b:])).mean()
    if cross:
        others = ~torch.eye(b, dtype=torch.bool)
        rank = rank + F.softplus(-(d[:b, None] - d[None, b:]))[others].mean()
    fault_target = torch.cat([torch.zeros_like(labels), labels])
    bce = F.binary_cross_entropy_with_logits(out.faults, fault_target)
    with torch.no_grad():
        acc = (d[:b] > d[b:]).float().mean().item()
        top_ok = [labels[i, out.faults[b + i].argmax()].item() > 0 for i in range(b)]
    return ce + rank + bce, {"ce": ce.item(), "rank": rank.item(), "bce": bce.item(), "pair_acc": acc,
                             "top_fault_ok": sum(top_ok) / b}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, help="folder of real photographs")
    ap.add_argument("--exclude", help="text file of photo file names to hold out (one per line)")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                    help="start from random weights (tests; the default model starts from ImageNet's)")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--pairs", type=int, default=8, help="pairs per batch (2x images)")
    ap.add_argument("--lr", type=float, default=4e-4, help="peak learning rate of the backbone (heads: 5x)")
    ap.add_argument("--freeze", type=int, default=3, help="backbone stages kept frozen after the stem")
    ap.add_argument("--cross-pairs", action="store_true",
                    help="rank every good photo of a batch above every other photo's faulty copy too")
    ap.add_argument("--positives", default=",".join(POSITIVE_KINDS),
                    help=f"comma-separated kinds of good-on-purpose photos to draw from (available: {', '.join(POSITIVES)})")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=0, help="stop (resumable) after this many minutes; 0: no limit")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    positives = tuple(k for k in args.positives.split(",") if k)
    if not positives or set(positives) - set(POSITIVES):
        ap.error(f"--positives takes a comma-separated list of {', '.join(POSITIVES)}")

    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    held = set(Path(args.exclude).read_text().split()) if args.exclude else set()
    paths = sorted(str(p) for p in Path(args.photos).iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.name not in held)
    (out / "train-photos.txt").write_text("".join(Path(p).name + "\n" for p in paths))
    model = create_model("faultnet", backbone=args.backbone, pretrained=args.pretrained)
    recipe = Preprocess.from_card(model.default_preprocess)
    if not paths:
        raise SystemExit(f"no photographs in {args.photos}")
    data = FaultPairs(paths, recipe, length=args.pairs * 100, seed=args.seed, positive_kinds=positives)
    heads = [p for n, p in model.named_parameters() if n.startswith(("head.", "fault_head."))]
    model.train()
    freeze(model, args.freeze)  # after train(): it puts every BatchNorm back in eval mode
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("head.", "fault_head."))]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": heads, "lr": args.lr * 5}], weight_decay=1e-4)
    base_lrs = [g["lr"] for g in opt.param_groups]
    step = 0
    if (out / "last.pt").is_file():
        ck = load_checkpoint(out / "last.pt")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        print(f"resumed at step {step}", file=sys.stderr)

    def save() -> None:
        save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, out / "last.pt")

    started, log = time.time(), (out / "metrics.jsonl").open("a")
    while step < args.steps:
        data.set_epoch(step // 100)
        loader = torch.utils.data.DataLoader(data, batch_size=args.pairs, num_workers=args.workers,
                                             persistent_workers=False, prefetch_factor=2 if args.workers else None)
        for i, batch in enumerate(loader):
            if i < step % 100:  # resuming mid-epoch: these batches were seen
                continue
            warm = min(1.0, (step + 1) / 30)
            cos = 0.5 * (1 + math.cos(math.pi * step / args.steps))
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * warm * (0.05 + 0.95 * cos)
            t = time.time()
            loss, parts = losses(model, batch, cross=args.cross_pairs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            log.write(json.dumps({"step": step, "loss": round(loss.item(), 4), **{k: round(v, 4) for k, v in parts.items()},
                                  "seconds": round(time.time() - t, 2)}) + "\n")
            log.flush()
            if step % args.save_every == 0:
                save()
            if step >= args.steps or (args.minutes and time.time() - started > args.minutes * 60):
                break
        if args.minutes and time.time() - started > args.minutes * 60 and step < args.steps:
            save()
            print(f"stopped at step {step} of {args.steps} (time limit); run again to resume", file=sys.stderr)
            return 0
    save()
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
