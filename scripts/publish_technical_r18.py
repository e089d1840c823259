"""Publish a training run as the earlier default model (aescore-technical-r18): weights/<name>.safetensors + card + DEFAULT.

Usage (after `aescore train` and `aescore data pairwise --json`, see scripts/build_technical_r18.sh):

    python scripts/publish_technical_r18.py RUN_DIR PAIRWISE_JSON DEGRADE_DIR NAME \
        --train-command "..." --degrade-command "..." --pairwise-command "..."

The weights file is copied byte for byte, so the card's sha256 stays valid; the card gains the
plain statement of what the model was trained on, what it is for, and the held-out measurements.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from aescore.fsutil import atomic_write_text
from aescore.weights import file_sha256, read_card

REPO = Path(__file__).resolve().parents[1]

TRAINED_ON = (
    "Synthetic technical degradations of 1,000 photographs (one photo per ImageNet class, about "
    "500x375 px): the originals labelled good (1), copies with graded technical faults labelled "
    "flawed (0). NOT trained on AVA, NOT trained on human aesthetic ratings, and no ImageNet "
    "pretraining: the ResNet-18 was trained from scratch."
)
INTENDED_USE = (
    "Ranking technically flawed shots (defocus or motion blur, sensor noise, under/over-exposure, "
    "haze or low contrast, heavy JPEG compression, colour casts, and the softness that tilt "
    "correction or tight crops leave) below clean ones, e.g. when culling an album."
)
LIMITATIONS = (
    "It does not judge composition, subject, lighting mood or taste, and was never shown a human "
    "aesthetic rating. Tilt and poor-crop copies were made by rotating or cropping and upscaling, "
    "so the model may detect them by the resulting softness rather than by the framing itself. "
    "Scores are a ranking signal within a set of photos, not calibrated probabilities of quality."
)


def main() -> None:
    """Copy the run's best weights into weights/ with the finished model card."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("pairwise_json", type=Path)
    ap.add_argument("degrade_dir", type=Path)
    ap.add_argument("name")
    ap.add_argument("--train-command", required=True)
    ap.add_argument("--degrade-command", required=True)
    ap.add_argument("--pairwise-command", required=True)
    ap.add_argument(
        "--weights",
        type=Path,
        help="publish this weights file (e.g. exported from last.pt) instead of RUN_DIR/best.safetensors",
    )
    args = ap.parse_args()

    src = args.weights or args.run_dir / "best.safetensors"
    card = read_card(src)
    if file_sha256(src) != card["sha256"]:
        raise SystemExit(f"{src}: sha256 does not match its card")
    pairwise = json.loads(args.pairwise_json.read_text())
    manifest = json.loads((args.degrade_dir / "manifest.json").read_text())

    out_dir = REPO / "weights"
    out_dir.mkdir(exist_ok=True)
    dst = out_dir / f"{args.name}.safetensors"
    shutil.copyfile(src, dst)
    assert file_sha256(dst) == card["sha256"]

    card["name"] = args.name
    card["summary"] = (
        "MPA ResNet-18 trained from scratch (MP_ada, then pair_rank) to rank technically flawed "
        "photos below clean ones; synthetic degradations of 1,000 photos, not AVA."
    )
    training = card.setdefault("training", {})
    training["data"] = TRAINED_ON
    training["command"] = args.train_command
    training["dataset_command"] = args.degrade_command
    training["degradations"] = {k: manifest[k] for k in ("seed", "kinds", "severities", "copies_per_image", "holdout") if k in manifest}
    training["held_out_sources"] = len(manifest.get("held_out", manifest.get("holdout_sources", [])))
    ids_file = training.get("train_ids_file")
    if isinstance(ids_file, dict) and (args.run_dir / ids_file["path"]).is_file():
        # ship the training ids beside the weights, so `aescore evaluate` can refuse overlaps
        shipped = f"{args.name}.train-ids.txt"
        shutil.copyfile(args.run_dir / ids_file["path"], out_dir / shipped)
        training["train_ids_file"] = {**ids_file, "path": shipped}
    model = pairwise["model"]
    weak = sorted(model["per_kind"].items(), key=lambda kv: kv[1]["accuracy"])[:4]
    card["intended_use"] = INTENDED_USE
    card["limitations"] = LIMITATIONS + (
        f" Measured on held-out photos it puts the original above its degraded copy in "
        f"{model['accuracy']:.1%} of pairs; weakest on "
        + ", ".join(f"{k} ({v['accuracy']:.1%})" for k, v in weak)
        + "."
    )
    card.setdefault("metrics", {})
    card["metrics"] = {
        "validation": card["metrics"],
        "held_out_pairwise": {
            "what": "share of (original, degraded copy) pairs of held-out source photos where the "
            "original scores higher (ties count half); sources never seen in training",
            "command": args.pairwise_command,
            "model": pairwise["model"],
            "laplacian_variance_baseline": pairwise["laplacian"],
        },
    }
    atomic_write_text(out_dir / f"{args.name}.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(out_dir / "DEFAULT", args.name + "\n")
    print(f"published {dst} ({dst.stat().st_size / 1e6:.1f} MB) as the default model")


if __name__ == "__main__":
    main()
