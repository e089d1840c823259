"""Export the model of a training checkpoint (e.g. RUN_DIR/last.pt) as weights + model card.

    python scripts/export_checkpoint.py RUN_DIR OUT.safetensors

`aescore train` exports the epoch with the best validation accuracy as best.safetensors. On data
where accuracy is a poor guide (the degradation set is 3:1 imbalanced, so accuracy stays near the
majority share while the ranking improves), the final epoch can be the better model: this writes
it with the run's card, whose metrics are replaced by that epoch's row of metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aescore.models import create_model
from aescore.weights import load_checkpoint, read_card, save_weights


def main() -> None:
    """Load RUN_DIR/last.pt (weights_only) and save its model with the run's card."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--checkpoint", default="last.pt")
    args = ap.parse_args()

    card = read_card(args.run_dir / "best.json")
    ckpt = load_checkpoint(args.run_dir / args.checkpoint)
    model = create_model(card["architecture"], **card["arch_args"])
    model.load_state_dict(ckpt["model"])
    epoch = int(ckpt["epoch"])
    rows = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    row = next(r for r in rows if r["epoch"] == epoch)
    card["metrics"] = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    card["training"]["epoch"] = epoch
    card["training"]["exported_from"] = f"{args.checkpoint} (epoch {epoch}), not the best-accuracy epoch"
    card.pop("sha256", None)
    save_weights(model, args.out, card)
    print(f"wrote {args.out} from {args.checkpoint}, epoch {epoch}")


if __name__ == "__main__":
    main()
