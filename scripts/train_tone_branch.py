"""Add the exposure branch (issue 28) to a trained default model: the photo's luminance histogram
joined to its score and fault logits, correcting three of them (the exposure and colour reasons);
nothing else of the network moves.

    PYTHONPATH=. python scripts/train_tone_branch.py --base weights/aescore-technical-lite0.safetensors \\
        --photos ../shared/photos --exclude scripts/heldout-photos.txt --out runs/tone

Two steps, both resumable (run the same command again):

1. **Features** (the slow part, about 1 s a pair on 2 CPU cores): ``--pairs`` fault pairs of the
   recipe (:class:`aescore.data.fault_pairs.FaultPairs`: a good version, the photo or a positive
   dark, bright, soft or graded on purpose, and a faulty copy) through the base network in eval
   mode, as scoring runs it. Kept per pair and image: the pooled score log-odds and fault logits
   and the whole frame's :func:`~aescore.models.heads.tone_stats` — exactly what the branch reads,
   since the rest of the network is frozen. ``--focus-share`` of the faulty
   copies carry exposure and colour faults only (``--focus``), the rest any family, so the branch
   also learns to leave the other families alone. Written in chunks of ``CHUNK`` pairs under
   ``OUT/features/``; a new run continues after the last chunk. Photos are split in two first
   (``--dev-share``, by file name): the dev photos' pairs choose the epoch, never the validation
   sets of docs/models.md.
2. **Branch** (seconds): :class:`~aescore.models.heads.ToneBranch` fitted on the train photos'
   pairs (:func:`branch_loss`: the default model's reasons term on the corrected fault logits,
   the pairs weighted back to the recipe's own mix of faults: :func:`natural_weights`), AdamW on
   batches of pairs; the epoch with the lowest dev loss is kept. The network with its branch is written to
   ``OUT/model.safetensors`` with a card (the base's, with the training block extended).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aescore.data.fault_kinds import FAULT_KINDS
from aescore.data.fault_pairs import FaultPairs
from aescore.data.faults import POSITIVES
from aescore.data.transforms import Preprocess
from aescore.errors import AescoreError
from aescore.models import create_model
from aescore.models.contract import ModelInputs
from aescore.models.faultnet import FaultNet
from aescore.models.heads import ToneBranch, tone_stats
from aescore.weights import load_weights, save_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_default_model import training_photos  # noqa: E402  (the same photos as the network's recipe)

CHUNK = 200  # pairs per features file


def base_with_branch(base: Path, hidden: int) -> tuple[FaultNet, dict]:
    """The base model (timm network, eval mode) with a fresh exposure branch, and the base's card."""
    try:
        trained, card = load_weights(base, plain=False)  # the sha256 checked
    except AescoreError as err:  # a missing or damaged model: one line
        raise SystemExit(f"error: {err}") from None
    if card.get("architecture") != "faultnet" or card.get("arch_args", {}).get("tone_branch"):
        raise SystemExit(f"{base}: not a faultnet without an exposure branch")
    model = create_model("faultnet", **card["arch_args"], tone_branch=hidden)
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    if unexpected or any(not k.startswith("tone.") for k in missing):
        raise SystemExit(f"{base}: its tensors do not fit a faultnet of {card['arch_args']}")
    return model.eval(), card


@torch.no_grad()
def features(model: FaultNet, data: FaultPairs, out: Path, pairs: int) -> None:
    """Step 1 of the module docstring: chunks of ``CHUNK`` pairs of ``data`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    assert model.tone is not None
    for chunk in range(-(-pairs // CHUNK)):
        path = out / f"chunk{chunk:04d}.npz"
        if path.exists():
            continue
        started = time.time()
        data.set_epoch(chunk)  # each chunk its own draw of photos, faults and severities
        loader = torch.utils.data.DataLoader(data, batch_size=8, sampler=range(min(CHUNK, pairs - chunk * CHUNK)), num_workers=1)
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("d", "faults", "tones", "labels")}
        for gw, gc, bw, bc, labels in loader:
            b, whole = gw.shape[0], torch.cat([gw, bw])
            outs = model.forward_outputs(ModelInputs(whole, torch.cat([gc, bc])), ("faults",))
            assert outs.faults is not None
            tones = tone_stats(whole, model.tone.mean, model.tone.std)  # what the branch reads of this input
            # [pair, good/bad, ...]: the branch's corrections are zero, so these are the base's outputs
            for key, value in (("d", outs.logits[:, 1] - outs.logits[:, 0]), ("faults", outs.faults), ("tones", tones)):
                rows[key].append(torch.stack([value[:b], value[b:]], 1).numpy().astype(np.float32))
            rows["labels"].append(labels.numpy().astype(np.float32))
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{k: np.concatenate(v) for k, v in rows.items()})
        tmp.replace(path)
        print(f"features: chunk {chunk + 1} of {-(-pairs // CHUNK)} ({time.time() - started:.0f} s)", file=sys.stderr)


def load_features(folder: Path) -> dict[str, torch.Tensor]:
    """Every chunk of ``folder``, concatenated."""
    chunks = [np.load(p) for p in sorted(folder.glob("chunk*.npz")) if not p.name.endswith(".tmp.npz")]
    if not chunks:
        raise SystemExit(f"no features in {folder}")
    return {k: torch.from_numpy(np.concatenate([c[k] for c in chunks])) for k in chunks[0].files}


def natural_weights(labels: torch.Tensor, focus: tuple[str, ...], focus_share: float) -> torch.Tensor:
    """Per pair, the weight that brings the cached mix of faults back to the recipe's own: pairs
    whose faults all lie in ``focus`` were drawn ``focus_share`` more often than the recipe draws
    them, and a branch fitted on that mix learns that a faulty photo is most likely badly exposed
    (it then takes the first reason from noise, haze or tilt). With ``q`` the share of such pairs
    here, the recipe's share is ``p = (q - focus_share) / (1 - focus_share)``; they weigh ``p / q``,
    the others ``(1 - p) / (1 - q)``."""
    idx = [FAULT_KINDS.index(k) for k in focus]
    others = [k for k in range(len(FAULT_KINDS)) if k not in idx]
    only_focus = labels[:, others].sum(1) == 0
    q = float(only_focus.float().mean())
    if focus_share <= 0 or not 0 < q < 1:
        return torch.ones(len(labels))
    p = min(max((q - focus_share) / (1 - focus_share), 0.0), 1.0)
    return torch.where(only_focus, torch.tensor(p / q), torch.tensor((1 - p) / (1 - q)))


def branch_loss(branch: ToneBranch, f: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy of the corrected fault logits of pairs ``f`` ([P, 2, ...]: good, no
    fault; faulty, its labels), each pair weighted by ``f["weight"]`` (:func:`natural_weights`):
    the default model's reasons term (scripts/train_default_model.py ``losses``). The branch
    corrects the reasons only (:class:`~aescore.models.heads.ToneBranch`)."""
    p = f["d"].shape[0]
    faults = f["faults"] + branch.forward_stats(f["tones"].flatten(0, 1), f["d"].flatten(0, 1),
                                                f["faults"].flatten(0, 1)).view(p, 2, -1)
    target = torch.stack([torch.zeros_like(f["labels"]), f["labels"]], 1)
    per_pair = F.binary_cross_entropy_with_logits(faults, target, reduction="none").mean((1, 2))
    return (per_pair * f["weight"]).sum() / f["weight"].sum()


def fit(branch: ToneBranch, train: dict[str, torch.Tensor], dev: dict[str, torch.Tensor], epochs: int, lr: float,
        weight_decay: float, batch: int, seed: int) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """Step 2: AdamW on batches of ``batch`` pairs; returns the state of the epoch with the lowest
    dev loss and the log."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(branch.parameters(), lr=lr, weight_decay=weight_decay)
    n = train["d"].shape[0]
    best, best_loss, log = {k: v.clone() for k, v in branch.state_dict().items()}, float("inf"), []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            loss = branch_loss(branch, {k: v[idx] for k, v in train.items()})
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            dev_loss, train_loss = branch_loss(branch, dev).item(), branch_loss(branch, train).item()
        log.append({"epoch": epoch + 1, "train": round(train_loss, 4), "dev": round(dev_loss, 4)})
        if dev_loss < best_loss:
            best, best_loss = {k: v.clone() for k, v in branch.state_dict().items()}, dev_loss
    return best, log


@torch.no_grad()
def reason_figures(branch: ToneBranch | None, f: dict[str, torch.Tensor]) -> dict[str, float]:
    """Top-1 of the fault logits on faulty copies with one fault, overall and per family, with the
    branch (or the base alone: ``branch`` None)."""
    faults = f["faults"][:, 1]
    if branch is not None:
        faults = faults + branch.forward_stats(f["tones"][:, 1], f["d"][:, 1], faults)
    single = f["labels"].sum(1) == 1
    truth, top = f["labels"].argmax(1), faults.argmax(1)
    out = {"copies": float(single.sum()), "top1": float((truth[single] == top[single]).float().mean())}
    for k, kind in enumerate(FAULT_KINDS):
        rows = single & (truth == k)
        if rows.any():
            out[f"top1.{kind}"] = float((top[rows] == k).float().mean())
    return {k: round(v, 4) for k, v in out.items()}


def split(paths: list[str], dev_share: float) -> tuple[list[str], list[str]]:
    """Train and dev photos, by the sha1 of the file name (stable whatever the folder holds)."""
    dev = [p for p in paths if int(hashlib.sha1(Path(p).name.encode()).hexdigest()[:8], 16) / 2**32 < dev_share]
    held = set(dev)
    return [p for p in paths if p not in held], dev


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the trained default model (a faultnet .safetensors)")
    ap.add_argument("--photos", required=True, help="folder of real photographs")
    ap.add_argument("--exclude", help="text file of photo file names to hold out (one per line)")
    ap.add_argument("--pairs", type=int, default=6000, help="fault pairs to compute features of (train and dev photos together)")
    ap.add_argument("--dev-share", type=float, default=0.15, help="share of the photos whose pairs only choose the epoch")
    ap.add_argument("--focus", default="underexposure,overexposure,colour_cast")
    ap.add_argument("--focus-share", type=float, default=0.6)
    ap.add_argument("--positives", default="shallow_dof,low_key,high_key,toned")
    ap.add_argument("--hidden", type=int, default=32, help="hidden units of the branch")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--batch", type=int, default=64, help="pairs per optimiser step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features-only", action="store_true", help="stop after step 1")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    focus = tuple(k for k in args.focus.split(",") if k)
    positives = tuple(k for k in args.positives.split(",") if k)
    if set(focus) - set(FAULT_KINDS) or set(positives) - set(POSITIVES) or not positives:
        ap.error(f"--focus takes kinds of {', '.join(FAULT_KINDS)}; --positives of {', '.join(POSITIVES)}")

    torch.manual_seed(args.seed)
    paths = training_photos(args.photos, args.exclude)
    train_paths, dev_paths = split(paths, args.dev_share)
    model, card = base_with_branch(args.base, args.hidden)
    recipe = Preprocess.from_card(card["preprocess"])
    n_dev = round(args.pairs * args.dev_share)
    for name, subset, n, seed in (("train", train_paths, args.pairs - n_dev, args.seed), ("dev", dev_paths, n_dev, args.seed + 1)):
        data = FaultPairs(subset, recipe, length=CHUNK, seed=seed, positive_kinds=positives, focus=focus, focus_share=args.focus_share)
        features(model, data, args.out / "features" / name, n)
    if args.features_only:
        return 0

    train, dev = load_features(args.out / "features" / "train"), load_features(args.out / "features" / "dev")
    for f in (train, dev):
        f["weight"] = natural_weights(f["labels"], focus, args.focus_share)
    assert model.tone is not None
    best, log = fit(model.tone, train, dev, args.epochs, args.lr, args.weight_decay, args.batch, args.seed)
    model.tone.load_state_dict(best)
    figures = {"dev_base": reason_figures(None, dev), "dev_branch": reason_figures(model.tone, dev),
               "train_base": reason_figures(None, train), "train_branch": reason_figures(model.tone, train)}
    (args.out / "fit.json").write_text(json.dumps({"log": log, "figures": figures}, indent=1))
    print(json.dumps(figures, indent=1))
    command = "PYTHONPATH=. python scripts/train_tone_branch.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    training = dict(card.get("training", {}))
    training["tone_branch"] = {
        "command": command, "base_sha256": card.get("sha256"),
        "data": f"{int(train['d'].shape[0])} / {int(dev['d'].shape[0])} fault pairs of {len(train_paths)} / {len(dev_paths)} train / dev photos "
                f"({args.photos}); {args.focus_share:.0%} of the faults from {', '.join(focus)} only; positives {', '.join(positives)}",
        "pairs": {"train": int(train["d"].shape[0]), "dev": int(dev["d"].shape[0])},
        "best_epoch": min(log, key=lambda r: r["dev"])["epoch"], "dev_figures": figures["dev_branch"],
        "dev_figures_base": figures["dev_base"],
    }
    # Every photo any part of the model trained on: the base's list (beside its weights) and both splits here.
    base_ids = args.base.with_suffix(".train-ids.txt")
    ids = set(base_ids.read_text().split()) if base_ids.is_file() else set()
    (args.out / "train-photos.txt").write_text("".join(f"{n}\n" for n in sorted(ids | {Path(p).name for p in paths})))
    keep = {k: v for k, v in card.items() if k in ("name", "summary", "intended_use", "limitations", "licence", "license")}
    save_weights(model, args.out / "model.safetensors", {**keep, "training": training})
    print(f"wrote {args.out / 'model.safetensors'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
