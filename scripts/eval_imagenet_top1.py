"""ImageNet top-1 of a pretrained backbone on a folder with one photo per class, offline.

Checks that pretrained weights load right (the tensor mapping and the input scaling): a wrong
mapping gives ~0.1 % top-1, a wrong scaling a clearly lower one. The folder holds files whose name
starts with the WordNet synset id (``n01440764_tench.JPEG``); the sorted synset ids are the class
indices 0..999, as in ImageNet-1k. Preprocessing: shorter edge resized to 256 (bicubic), 224 centre
crop (timm's crop_pct 0.875 for these models), scaled with the mean/std given (default: what
:func:`aescore.models.backbones.input_stats` says for the backbone).

    PYTHONPATH=. python scripts/eval_imagenet_top1.py --photos ../shared/photos \\
        --backbone tf_efficientnet_lite0 --backbone tf_efficientnet_lite1 --stats both
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from PIL import Image

from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from aescore.models.backbones import create_backbone, input_stats

RESIZE, CROP = 256, 224


def load_folder(folder: Path) -> tuple[list[Path], list[int]]:
    """Photos and their class indices (the rank of the file's synset id among all synset ids)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("n") and "_" in p.name)
    synsets = sorted({p.name.split("_", 1)[0] for p in files})
    index = {s: i for i, s in enumerate(synsets)}
    return files, [index[p.name.split("_", 1)[0]] for p in files]


def centre_crop(path: Path) -> torch.Tensor:
    """[3, 224, 224] in [0, 1]: shorter edge to 256 (bicubic), centre 224 crop."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = RESIZE / min(w, h)
        im = im.resize((max(CROP, round(w * s)), max(CROP, round(h * s))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - CROP) // 2, (h - CROP) // 2
        im = im.crop((left, top, left + CROP, top + CROP))
        return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(CROP, CROP, 3).permute(2, 0, 1).float() / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--backbone", action="append", help="timm name (repeatable); default tf_efficientnet_lite0")
    ap.add_argument("--stats", choices=["model", "imagenet", "both"], default="model",
                    help="input scaling: the backbone's own (input_stats), ImageNet mean/std, or both")
    ap.add_argument("--limit", type=int, default=0, help="first N photos only (0 = all)")
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    files, labels = load_folder(args.photos)
    if args.limit:
        files, labels = files[: args.limit], labels[: args.limit]
    x = torch.stack([centre_crop(p) for p in files])
    y = torch.tensor(labels)
    print(f"{len(files)} photos, {len(set(labels))} classes; resize {RESIZE}, centre crop {CROP}")
    print("| backbone | input scaling | top-1 | top-5 | seconds |")
    print("|---|---|---|---|---|")
    for name in args.backbone or ["tf_efficientnet_lite0"]:
        model = create_backbone(name, pretrained=True).eval()
        stats = {"model": [input_stats(name)], "imagenet": [(IMAGENET_MEAN, IMAGENET_STD)],
                 "both": [input_stats(name), (IMAGENET_MEAN, IMAGENET_STD)]}[args.stats]
        for mean, std in stats:
            t0 = time.perf_counter()
            m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
            top = []
            with torch.inference_mode():
                for i in range(0, len(x), args.batch):
                    top.append(model((x[i:i + args.batch] - m) / s).topk(5, dim=1).indices)
            top5 = torch.cat(top)
            t1 = (top5[:, 0] == y).float().mean().item()
            t5 = (top5 == y[:, None]).any(1).float().mean().item()
            label = "[-1, 1] (0.5/0.5)" if mean == (0.5, 0.5, 0.5) else "ImageNet mean/std"
            print(f"| {name} | {label} | {t1:.3f} | {t5:.3f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
