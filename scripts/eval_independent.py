"""Pairwise accuracy on faults aescore never trained on: ImageNet-C corruptions (``imagecorruptions``).

For each photo and each corruption at severities 1-5, the pair (original, corrupted copy) is right
when the model scores the original higher (a tie counts half). The same pairs are judged by the
Laplacian baseline (variance of the Laplacian, :func:`aescore.engine.pairwise.laplacian_sharpness`,
what open-source cullers rank by). Reports a Markdown table per corruption and severity, one per
family (noise, blur, weather, digital), and the issue's goals for noise, blur and digital.

The model is run through aescore's inference core (:func:`aescore.inference.loading.open_model`,
the photo's recipe via ``Preprocess.tensor``: what ``aescore score`` computes, without writing the
corrupted copies to disk); ``--check-files N`` re-scores N originals through the public
:class:`aescore.inference.scorer.Scorer` to show both give the same numbers. Photos are first
resized to ``--shorter`` px on the shorter side (the corruptions' strengths are tuned on ImageNet's
~224-500 px sizes). Photos listed in the model's ``train-ids`` file (its training set) are left
out, so the photos are held out from the model under test.

    pip install 'aescore[eval]'   # imagecorruptions
    PYTHONPATH=. python scripts/eval_independent.py --photos ../shared/photos --limit 60 \\
        --out eval-independent.json

``imagecorruptions`` 1.1.2 needs ``pkg_resources`` (a tiny stand-in is installed when setuptools
no longer has it); ``glass_blur`` and ``gaussian_blur`` fail on scikit-image >= 0.19 and ``fog``
on NumPy 2: corruptions that fail are skipped and listed in the output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image

# ImageNet-C's families; the last of each is one of its four extra "validation" corruptions.
FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
FAMILY_OF = {c: f for f, cs in FAMILIES.items() for c in cs}
SEVERITIES = (1, 2, 3, 4, 5)
GOALS = {"mild": (1, 2, 0.75), "strong": (3, 5, 0.90)}  # issue 12: noise, blur and digital families


def _import_imagecorruptions() -> object:
    """``imagecorruptions``, with a stand-in for ``pkg_resources.resource_filename`` (its only use
    of setuptools, for the frost images it ships) where setuptools no longer provides it."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, name: str) -> str:
            spec = importlib.util.find_spec(package)
            return os.path.join(os.path.dirname(spec.origin), name)  # type: ignore[union-attr, arg-type]

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    import imagecorruptions

    return imagecorruptions


def runnable(ic: object, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The corruptions that run here, and the error of each that does not."""
    probe = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    ok, failed = [], {}
    for name in names:
        try:
            ic.corrupt(probe, corruption_name=name, severity=1)  # type: ignore[attr-defined]
            ok.append(name)
        except Exception as err:  # noqa: BLE001 - old code against new NumPy / scikit-image
            failed[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return ok, failed


def held_out_photos(folder: Path, train_ids: Path | None, limit: int, seed: int) -> list[Path]:
    """Photos of ``folder`` not named in ``train_ids`` (lines such as ``images/<stem>.jpg``; degraded
    copies ``<stem>__kind1.jpg`` name the same source), a seeded sample of ``limit`` of them."""
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if train_ids is not None and train_ids.is_file():
        trained = {Path(line.strip()).stem.split("__")[0] for line in train_ids.read_text().splitlines() if line.strip()}
        photos = [p for p in photos if p.stem not in trained]
    if limit and len(photos) > limit:
        keep = np.random.default_rng(seed).choice(len(photos), limit, replace=False)
        photos = [photos[i] for i in sorted(keep)]
    return photos


def load_photo(path: Path, shorter: int) -> Image.Image:
    with Image.open(path) as im:
        im = im.convert("RGB")
    w, h = im.size
    s = shorter / min(w, h)
    return im.resize((round(w * s), round(h * s)), Image.LANCZOS) if s < 1 else im


def pair_accuracy(orig: np.ndarray, faulty: np.ndarray) -> float:
    """Share of pairs whose original scores higher; ties count half."""
    return float(np.mean((orig > faulty) + 0.5 * (orig == faulty)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True, help="folder of good photographs")
    ap.add_argument("--model", default=None, help="model name or .safetensors (default: the bundled default)")
    ap.add_argument("--train-ids", type=Path, default=None,
                    help="training list whose photos are left out (default: the model's <name>.train-ids.txt)")
    ap.add_argument("--limit", type=int, default=60, help="photos to use (seeded sample; 0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shorter", type=int, default=375, help="resize photos to this shorter side first")
    ap.add_argument("--corruptions", default="all", help="comma-separated names, or 'all' (the 19 of imagecorruptions)")
    ap.add_argument("--check-files", type=int, default=3, help="originals re-scored through Scorer as a check")
    ap.add_argument("--out", type=Path, default=None, help="write all numbers as JSON")
    args = ap.parse_args()

    import torch

    from aescore.engine.pairwise import laplacian_sharpness
    from aescore.inference.core import stack_inputs
    from aescore.inference.loading import find_model, open_model

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ic = _import_imagecorruptions()
    wanted = ic.get_corruption_names("all") if args.corruptions == "all" else args.corruptions.split(",")  # type: ignore[attr-defined]
    names, failed = runnable(ic, list(wanted))
    ref = find_model(args.model)
    weights = ref.path
    train_ids = args.train_ids or weights.with_suffix(".train-ids.txt")
    photos = held_out_photos(args.photos, train_ids, args.limit, args.seed)
    model = open_model(ref, "cpu", "torch")
    print(f"model {weights.name}; {len(photos)} photos held out of {train_ids.name if train_ids.is_file() else '(no list)'}; "
          f"{len(names)} corruptions run, skipped: {', '.join(failed) or 'none'}", flush=True)

    def score(images: list[Image.Image]) -> np.ndarray:
        x = stack_inputs([model.preprocess.tensor(im, None, "") for im in images])  # detail views too
        with torch.inference_mode():
            return model.forward(x, frozenset({"p_high"}))["p_high"].numpy()

    t0 = time.perf_counter()
    net = {(c, s): [] for c in names for s in SEVERITIES}
    lap = {(c, s): [] for c in names for s in SEVERITIES}
    check: list[tuple[str, float, float]] = []
    for i, path in enumerate(photos):
        img = load_photo(path, args.shorter)
        arr = np.asarray(img)
        copies = [(c, s, Image.fromarray(np.uint8(np.clip(ic.corrupt(arr, corruption_name=c, severity=s), 0, 255))))  # type: ignore[attr-defined]
                  for c in names for s in SEVERITIES]
        # every copy has the original's size, so they go through the network in a few batches
        images = [img] + [im.resize(img.size) if im.size != img.size else im for _, _, im in copies]
        scores = np.concatenate([score(images[j:j + 16]) for j in range(0, len(images), 16)])
        sharp = np.array([laplacian_sharpness(im) for im in images])
        for k, (c, s, _) in enumerate(copies, start=1):
            net[c, s].append((scores[0], scores[k]))
            lap[c, s].append((sharp[0], sharp[k]))
        if i < args.check_files:
            check.append((str(path), float(scores[0]), img))  # type: ignore[arg-type]
        if (i + 1) % 10 == 0 or i + 1 == len(photos):
            print(f"  {i + 1}/{len(photos)} photos, {time.perf_counter() - t0:.0f} s", flush=True)

    if check:  # the same originals through the public Scorer (decoded from a lossless file)
        import tempfile

        from aescore.inference.scorer import Scorer

        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for n, (_, _, im) in enumerate(check):
                files.append(Path(tmp) / f"{n}.png")
                im.save(files[-1])  # type: ignore[attr-defined]
            via_scorer = [r.score for r in Scorer(weights, device="cpu", workers=0).score_paths(files)]
        diff = max(abs(a - b) for (_, a, _), b in zip(check, via_scorer))
        print(f"check: {len(check)} originals, in-memory vs Scorer max |difference| {diff:.2e}")

    rows = {f"{c}@{s}": {"family": FAMILY_OF.get(c, "?"), "corruption": c, "severity": s, "pairs": len(net[c, s]),
                         "model": pair_accuracy(*map(np.array, zip(*net[c, s]))),
                         "laplacian": pair_accuracy(*map(np.array, zip(*lap[c, s])))}
            for c in names for s in SEVERITIES}
    print(f"\n{len(photos)} photos x {len(names)} corruptions x 5 severities; pairwise accuracy, model / Laplacian\n")
    print("| corruption | family | " + " | ".join(f"sev {s}" for s in SEVERITIES) + " |")
    print("|---|---|" + "---|" * len(SEVERITIES))
    for c in names:
        cells = [f"{rows[f'{c}@{s}']['model']:.2f} / {rows[f'{c}@{s}']['laplacian']:.2f}" for s in SEVERITIES]
        print(f"| {c} | {FAMILY_OF.get(c, '?')} | " + " | ".join(cells) + " |")
    print("\n| family | " + " | ".join(f"sev {s}" for s in SEVERITIES) + " | sev 1-2 | sev 3-5 |")
    print("|---|" + "---|" * (len(SEVERITIES) + 2))
    families: dict[str, dict[str, float]] = {}
    for fam in FAMILIES:
        cs = [c for c in names if FAMILY_OF[c] == fam]
        if not cs:
            continue
        mean = lambda sevs, key: float(np.mean([rows[f"{c}@{s}"][key] for c in cs for s in sevs]))  # noqa: E731
        families[fam] = {f"sev{s}": mean([s], "model") for s in SEVERITIES}
        families[fam].update(mild=mean([1, 2], "model"), strong=mean([3, 4, 5], "model"),
                             mild_laplacian=mean([1, 2], "laplacian"), strong_laplacian=mean([3, 4, 5], "laplacian"))
        cells = [f"{mean([s], 'model'):.2f} / {mean([s], 'laplacian'):.2f}" for s in SEVERITIES]
        cells += [f"{families[fam]['mild']:.2f} / {families[fam]['mild_laplacian']:.2f}",
                  f"{families[fam]['strong']:.2f} / {families[fam]['strong_laplacian']:.2f}"]
        print(f"| {fam} | " + " | ".join(cells) + " |")
    print("\nGoals (issue 12; noise, blur, digital): >= 0.75 at severities 1-2, >= 0.90 at 3-5")
    for fam in ("noise", "blur", "digital"):
        if fam in families:
            f = families[fam]
            print(f"  {fam}: sev 1-2 {f['mild']:.2f} ({'met' if f['mild'] >= 0.75 else 'NOT met'}), "
                  f"sev 3-5 {f['strong']:.2f} ({'met' if f['strong'] >= 0.90 else 'NOT met'})")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.out:
        from aescore.fsutil import atomic_write_text

        atomic_write_text(args.out, json.dumps({
            "model": weights.name, "photos": [p.name for p in photos], "shorter": args.shorter,
            "corruptions_run": names, "corruptions_skipped": failed, "rows": list(rows.values()),
            "families": families}, indent=1))


if __name__ == "__main__":
    main()
