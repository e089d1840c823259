"""Measure how models judge exposure and colour (issue 28), side by side on the same images.

Every image is made here, by this script's own code (not aescore's fault generator), from
photographs no model was trained on, written as a JPEG (quality 95, 4:4:4) and scored from that
file through aescore's inference core, as ``aescore score`` scores it
(:func:`eval_default_model.score`).

Sets:

``heldout``
    The 132 held-out ImageNet photos (``scripts/heldout-photos.txt``, ~500 x 375, everyday
    photos; never trained on).
``wallpapers``
    The real photographs of ``scripts/exposure-photos.txt`` (Debian wallpaper packages; validation
    only), downscaled so the shorter edge is at most ``--max-shorter`` (1,500) px.
``colour``
    Good photographs of strong natural colour: the wallpapers tagged ``sunset``, ``foliage``,
    ``underwater``, ``night_light``, ``flowers`` or ``strong_colour``, and the photos of
    ``scripts/colour-photos.txt`` (``--colour DIR``; other Debian packages and public
    repositories, see that file). Originals only: the share labelled ``low`` (P(high) < 0.5, the
    label ``aescore score`` prints) and the reason named first for those.
``brackets``
    Real multi-exposure sequences of static scenes (``scripts/bracket-frames.txt``: 34 scenes from
    public repositories, how the normal frame was chosen and where each file comes from; the files
    under ``--brackets DIR``). Each frame at <= -1.5 EV or >= +1 EV from the scene's normal frame
    is paired with it, which should score higher; the frame's top reason should be
    ``underexposure`` (darker) or ``overexposure`` (brighter).

Copies of ``heldout`` and ``wallpapers`` photos (each photo gets every one; in linear light unless
named): ``ev-1.5``, ``ev-2``, ``ev-3`` (a gain of 2^EV), ``curve`` (the sRGB values raised to the
power 2.2: mid grey falls to 0.22, as at about -2.5 EV, black and white stay: midtones crushed by a
tone curve), ``ev+1``, ``ev+1.5``, ``ev+2`` (gain, highlights clip), ``cast1.15`` and ``cast1.3`` (white
balance off by a gain of 1.15 / 1.3 toward warm, cool, green or magenta, one drawn per photo from
``np.random.default_rng([seed, index])``, luminance of grey kept).

Figures per model: the share of (original, copy) pairs the original wins (ties half), by copy and
by group (dark: ev-1.5 ... curve; bright: ev+1 ... ev+2; cast: both); the share of copies whose
top reason is the right one (``underexposure`` for dark, ``overexposure`` for bright,
``colour_cast`` for cast); the cross-photo AUC of every good original of ``wallpapers`` and
``colour`` against every copy of the wallpapers (P(good > copy), ties half); the ``colour`` low
share.

    PYTHONPATH=. python scripts/eval_exposure.py --model aescore-technical-lite0 --model runs/tone/model.safetensors \\
        --photos ../shared/photos --wallpapers /usr/share --colour /work/valphotos/colour --out eval-exposure.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from eval_default_model import (  # noqa: E402
    CAST_DIRECTIONS, Item, auc, exposure_gain, json_safe, log, pair_right, pct, read_list, row_tags, save, score, table, to_uint8,
    white_balance,
)

from aescore.data.fault_kinds import FAULT_KINDS  # noqa: E402

Array = np.ndarray
COLOUR_TAGS = ("sunset", "foliage", "underwater", "night_light", "flowers", "strong_colour")


def gain(ev: float) -> Callable[[Array, np.random.Generator], Array]:
    """An exposure change of ``ev`` stops (:func:`eval_default_model.exposure_gain`)."""
    return lambda a, rng: exposure_gain(a, ev)


def curve(a: Array, rng: np.random.Generator) -> Array:
    """A dark tone curve: sRGB values to the power 2.2 (mid grey 0.5 -> 0.22; 0 and 1 stay)."""
    return np.clip(a, 0, 1) ** np.float32(2.2)


def cast(strength: float) -> Callable[[Array, np.random.Generator], Array]:
    """White balance off by a gain of ``strength`` along a direction drawn from ``rng``."""

    def fn(a: Array, rng: np.random.Generator) -> Array:
        return white_balance(a, list(CAST_DIRECTIONS)[int(rng.integers(len(CAST_DIRECTIONS)))], strength)

    return fn


#: The groups of copies and the fault kind each group's copies should be named as.
GROUPS = {"dark": "underexposure", "bright": "overexposure", "cast": "colour_cast"}


@dataclass(frozen=True)
class Copy:
    name: str
    group: str  # a key of GROUPS
    fn: Callable[[Array, np.random.Generator], Array]


COPIES: tuple[Copy, ...] = (
    Copy("ev-1.5", "dark", gain(-1.5)),
    Copy("ev-2", "dark", gain(-2.0)),
    Copy("ev-3", "dark", gain(-3.0)),
    Copy("curve", "dark", curve),
    Copy("ev+1", "bright", gain(1.0)),
    Copy("ev+1.5", "bright", gain(1.5)),
    Copy("ev+2", "bright", gain(2.0)),
    Copy("cast1.15", "cast", cast(1.15)),
    Copy("cast1.3", "cast", cast(1.3)),
)


@dataclass
class Image_:
    """One image file to score: an original or a copy (``copy`` empty for originals)."""

    path: str
    photo: str
    set: str
    copy: str = ""
    tags: tuple[str, ...] = ()
    ev: float = 0.0


def load(path: Path, max_shorter: int) -> Image.Image:
    """A photo as RGB, downscaled (Lanczos) so its shorter edge is at most ``max_shorter``."""
    with Image.open(path) as im:
        img = im.convert("RGB")
    s = min(img.size)
    if s > max_shorter:
        f = max_shorter / s
        img = img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.LANCZOS)
    return img


def with_copies(img: Image.Image, photo: str, set_: str, tags: tuple[str, ...], index: int, seed: int, tmp: Path) -> list[Image_]:
    """The original and every copy of :data:`COPIES`, written to ``tmp``."""
    stem = f"{set_[0]}{index:04d}"
    out = [Image_(save(img, tmp / f"{stem}_orig.jpg"), photo, set_, "", tags)]
    a = np.asarray(img, np.float32) / 255
    rng = np.random.default_rng([seed, index])
    for c in COPIES:
        out.append(Image_(save(Image.fromarray(to_uint8(c.fn(a, rng))), tmp / f"{stem}_{c.name}.jpg"), photo, set_, c.name, tags))
    return out


def build(args: argparse.Namespace, tmp: Path) -> list[Image_]:
    """Every image of the chosen sets."""
    Image.MAX_IMAGE_PIXELS = None
    images: list[Image_] = []
    if "heldout" in args.sets:
        names = [r[0] for r in read_list(args.heldout)][: args.limit or None]
        for i, name in enumerate(names):
            images += with_copies(load(args.photos / name, 10**6), name, "heldout", (), i, args.seed, tmp)
        log(f"heldout: {len(names)} photos")
    if {"wallpapers", "colour"} & set(args.sets):
        rows = read_list(args.exposure_list)[: args.limit or None]
        for i, row in enumerate(rows):
            tags = row_tags(row, 2)
            img = load(args.wallpapers / row[0], args.max_shorter)
            if "wallpapers" in args.sets:
                images += with_copies(img, row[0], "wallpapers", tags, i, args.seed, tmp)
            elif set(tags) & set(COLOUR_TAGS):
                images.append(Image_(save(img, tmp / f"w{i:04d}_orig.jpg"), row[0], "wallpapers", "", tags))
        log(f"wallpapers: {len(rows)} photos")
    if "colour" in args.sets and args.colour:
        rows = read_list(args.colour_list)[: args.limit or None]
        for i, row in enumerate(rows):
            tags = row_tags(row, 3)
            img = load(args.colour / row[0], args.max_shorter)
            images.append(Image_(save(img, tmp / f"c{i:04d}_orig.jpg"), row[0], "colour", "", tags))
        log(f"colour: {len(rows)} photos")
    if "brackets" in args.sets and args.brackets:
        for i, row in enumerate(read_list(args.brackets_list)):
            scene, file, ev = row[0], row[1], float(row[2])
            img = load(args.brackets / scene / file, args.max_shorter)
            images.append(Image_(save(img, tmp / f"b{i:04d}.jpg"), scene, "brackets", "" if ev == 0 else f"{ev:+g}", (), ev))
        log("brackets: read")
    return images


def top_reason(it: Item) -> str:
    return FAULT_KINDS[int(np.argmax(it.faults))] if it.faults is not None else "-"


def measure(images: list[Image_], scored: list[Item]) -> dict[str, Any]:
    """The figures of the module docstring for one model."""
    res: dict[str, Any] = {}
    by = list(zip(images, scored))
    for set_ in ("heldout", "wallpapers"):
        orig = {im.photo: it for im, it in by if im.set == set_ and not im.copy}
        copies = [(im, it) for im, it in by if im.set == set_ and im.copy]
        if not copies:
            continue
        spec = {c.name: c for c in COPIES}
        rows: dict[str, Any] = {}
        for key in (*GROUPS, *spec):
            sel = [(im, it) for im, it in copies if key in (im.copy, spec[im.copy].group)]
            reason = GROUPS[spec[key].group if key in spec else key]
            rows[key] = {"pairs": len(sel),
                         "pairwise": float(np.mean([pair_right(orig[im.photo].p_high, it.p_high) for im, it in sel])),
                         "top1": float(np.mean([top_reason(it) == reason for _, it in sel])),
                         "laplacian": float(np.mean([pair_right(orig[im.photo].laplacian, it.laplacian) for im, it in sel]))}
        rows["all"] = {"pairs": len(copies),
                       "pairwise": float(np.mean([pair_right(orig[im.photo].p_high, it.p_high) for im, it in copies])),
                       "top1": float(np.mean([top_reason(it) == GROUPS[spec[im.copy].group] for im, it in copies]))}
        res[set_] = rows
    good = [it for im, it in by if not im.copy and im.set in ("wallpapers", "colour")]
    neg = [it for im, it in by if im.copy and im.set == "wallpapers"]
    if good and neg:
        res["cross_auc"] = {"positives": len(good), "negatives": len(neg), "auc": auc([g.p_high for g in good], [n.p_high for n in neg])}
    colour = [(im, it) for im, it in by if not im.copy and im.set in ("wallpapers", "colour") and set(im.tags) & set(COLOUR_TAGS)]
    if colour:
        low = [(im, it) for im, it in colour if it.p_high < 0.5]
        res["colour"] = {"photos": len(colour), "low": len(low), "low_share": len(low) / len(colour),
                         "by_tag": {t: [sum(1 for im, it in low if t in im.tags), sum(1 for im, _ in colour if t in im.tags)] for t in COLOUR_TAGS},
                         "low_photos": [{"photo": im.photo, "p_high": round(it.p_high, 3), "reason": top_reason(it)} for im, it in low]}
    frames = [(im, it) for im, it in by if im.set == "brackets"]
    if frames:
        normal = {im.photo: it for im, it in frames if im.ev == 0}
        pairs = [(im, it) for im, it in frames if im.photo in normal and (im.ev <= -1.5 or im.ev >= 1)]
        res["brackets"] = {
            "scenes": len(normal), "pairs": len(pairs),
            "pairwise": float(np.mean([pair_right(normal[im.photo].p_high, it.p_high) for im, it in pairs])) if pairs else None,
            "dark_pairwise": _mean([pair_right(normal[im.photo].p_high, it.p_high) for im, it in pairs if im.ev < 0]),
            "bright_pairwise": _mean([pair_right(normal[im.photo].p_high, it.p_high) for im, it in pairs if im.ev > 0]),
            "top1": _mean([top_reason(it) == ("underexposure" if im.ev < 0 else "overexposure") for im, it in pairs]),
            "normal_low": sum(1 for it in normal.values() if it.p_high < 0.5),
        }
    return res


def _mean(xs: list[Any]) -> float | None:
    return float(np.mean(xs)) if xs else None


def report(names: list[str], results: list[dict[str, Any]]) -> None:
    """Markdown tables, one column per model."""
    print("# Exposure and colour (scripts/eval_exposure.py)\n")
    for set_ in ("heldout", "wallpapers"):
        if set_ not in results[0]:
            continue
        keys = list(results[0][set_])
        print(f"\n## {set_}: the original above its copy (%) / top reason right (%)\n")
        rows = [[k, results[0][set_][k]["pairs"], *(f"{pct(r[set_][k]['pairwise'])} / {pct(r[set_][k]['top1'])}" for r in results)]
                for k in keys]
        print(table(["copy", "pairs", *names], rows))
    if "cross_auc" in results[0]:
        c = results[0]["cross_auc"]
        print(f"\nCross-photo AUC, {c['positives']} good originals against {c['negatives']} wallpaper copies: "
              + ", ".join(f"{n} {pct(r['cross_auc']['auc'])}" for n, r in zip(names, results)))
    if "colour" in results[0]:
        c = results[0]["colour"]
        print(f"\n## Strong natural colour: labelled low, of {c['photos']} good photos\n")
        rows = [[t, *(f"{r['colour']['by_tag'][t][0]} / {r['colour']['by_tag'][t][1]}" for r in results)] for t in COLOUR_TAGS]
        rows.append(["all", *(f"{r['colour']['low']} ({pct(r['colour']['low_share'])} %)" for r in results)])
        print(table(["tag", *names], rows))
        for n, r in zip(names, results):
            print(f"\n{n}, low: " + "; ".join(f"{x['photo']} {x['p_high']} {x['reason']}" for x in r["colour"]["low_photos"]))
    if "brackets" in results[0]:
        print("\n## Real exposure brackets: the normal frame above a frame at <= -1.5 or >= +1 EV (%)\n")
        rows = [[k, *(pct(r["brackets"][k]) if isinstance(r["brackets"][k], float) else str(r["brackets"][k]) for r in results)]
                for k in ("scenes", "pairs", "pairwise", "dark_pairwise", "bright_pairwise", "top1", "normal_low")]
        print(table(["", *names], rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="model name or .safetensors path (repeat to compare)")
    p.add_argument("--sets", default="heldout,wallpapers,colour,brackets")
    p.add_argument("--photos", type=Path, default=HERE.parent.parent / "shared" / "photos")
    p.add_argument("--heldout", type=Path, default=HERE / "heldout-photos.txt")
    p.add_argument("--wallpapers", type=Path, default=Path("/usr/share"), help="root of exposure-photos.txt's paths")
    p.add_argument("--exposure-list", type=Path, default=HERE / "exposure-photos.txt")
    p.add_argument("--colour", type=Path, default=None, help="folder of colour-photos.txt's files")
    p.add_argument("--colour-list", type=Path, default=HERE / "colour-photos.txt")
    p.add_argument("--brackets", type=Path, default=None, help="folder of bracket-frames.txt's files (one folder per scene)")
    p.add_argument("--brackets-list", type=Path, default=HERE / "bracket-frames.txt")
    p.add_argument("--max-shorter", type=int, default=1500)
    p.add_argument("--limit", type=int, default=0, help="first N photos of each list (a quick run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    from aescore.errors import AescoreError
    from aescore.inference.loading import open_model
    from aescore.weights import read_card, resolve_model

    try:  # every model first: a wrong name is one line, before minutes of work
        for name in args.model:
            read_card(resolve_model(name))
    except AescoreError as err:
        p.error(str(err))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="aescore-exposure-") as tmpdir:
        images = build(args, Path(tmpdir))
        names, results, cards = [], [], []
        first: list[Item] = []
        for name in args.model:
            model = open_model(name, "cpu", "torch")
            items = [Item(im.path, im.photo, "original" if not im.copy else "copy") for im in images]
            for it, known in zip(items, first):  # the same files: the Laplacian is read once
                it.laplacian = known.laplacian
            first = first or items
            score(model, items, frozenset({"p_high", "faults"}), args.workers, Path(name).stem)
            names.append(str(model.card.get("name") or Path(name).stem) + f" ({str(model.card.get('sha256', ''))[:8]})")
            results.append(measure(images, items))
            cards.append({"model": name, "sha256": model.card.get("sha256"),
                          "scores": [[im.set, im.photo, im.copy, round(it.p_high, 5), top_reason(it)] for im, it in zip(images, items)]})
    report(names, results)
    log(f"done in {time.time() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(json_safe({"models": names, "results": results, "runs": cards, "seed": args.seed}), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
