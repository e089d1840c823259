"""Measure a model (the default ``faultnet`` or any other) on photographs it was not trained on.

Four sets, each selectable with ``--sets`` (default: all four):

``own``
    Own-generator held-out pairs. Each photo of ``scripts/heldout-photos.txt`` (ImageNet photos,
    ~500x375, never used for training; ``--photos`` is their folder, ``--limit N`` the first N)
    gets ``--copies`` faulty copies from :func:`aescore.data.faults.make_fault` (the training
    generator: one family or two / three combined), the generator seeded per photo with
    ``np.random.default_rng([seed, index])`` (``index``: the photo's line in the list). A pair
    (original, copy) is right when the original scores higher; a tie counts half. Overall and per
    labelled family (a combined copy counts for each of its families).
``reasons``
    One single-family copy per family per held-out photo (:func:`aescore.data.faults.apply_fault`,
    random implementation and severity from ``np.random.default_rng([seed, index, 1])``). Top-1
    accuracy of the reasons head (argmax of the ``faults`` output == the family, chance 10 %) and
    the 10x10 confusion matrix (rows: true family, columns: predicted). Skipped, with a note, for
    models without a reasons head. The same copies also give pairwise accuracy per family.
``fullres``
    Full-resolution photographs (``scripts/validation-photos.txt``: real photos from Debian
    wallpaper packages, shorter edge >= 1,500 px; ``--wallpapers`` is the extracted
    ``usr/share``). To keep the CPU cost bounded each is first downscaled (Lanczos) so its shorter
    edge is at most ``--max-shorter`` (2,000) px; the faults are then made at that scale. They are
    coded here, independently of the training generator, and MILD (parameters drawn per photo
    from ``np.random.default_rng([seed, index, 3])``; see :data:`MILD_FAULTS`):

    ===============  =====================================================================
    noise_gaussian   additive Gaussian noise in sRGB, sigma U(0.020, 0.040) of full scale,
                     independent per channel
    noise_shot       shot noise in linear light: Poisson with U(250, 600) photons at full
                     scale, plus Gaussian read noise sigma 0.004 (linear)
    jpeg             Pillow JPEG at quality U{15..25}, 4:2:0 chroma
    defocus          Gaussian blur in linear light, sigma U(2.0, 3.0) px
    motion           straight line of U(10, 15) px at a random angle, linear light
    underexposure    linear gain of U(-1.2, -0.8) EV
    overexposure     linear gain of U(+0.8, +1.2) EV (highlights clip)
    haze             veil toward a light grey airlight (0.90) in sRGB, weight U(0.25, 0.35)
                     (in linear light the same weight lifts the shadows far more)
    colour_cast      white balance off by a gain of U(1.10, 1.20) along warm, cool, green or
                     magenta, luminance kept
    ===============  =====================================================================

    Pairwise accuracy overall and per fault, and, for a model with a reasons head, the top-1
    reason per fault (the family each mild fault belongs to).
``cross``
    Cross-photo AUC on the same images: positives are all the good validation originals
    (including the ones tagged ``shallow_dof``, ``night``, ``high_key``, ``long_exposure``:
    soft or dark on purpose), negatives every faulty copy of ``fullres`` (of any photo);
    AUC = P(score(good) > score(faulty)), ties half. Also with only the tagged photos as
    positives (all tags, and each tag), and the five lowest-scoring good photos.

Beside every figure: the Laplacian baseline (variance of the Laplacian,
:func:`aescore.engine.pairwise.laplacian_sharpness`, higher = sharper = better) on the same image
files. The reasons head has no Laplacian counterpart: there the baseline is chance (10 %).

The model runs through aescore's inference core (:func:`aescore.inference.loading.open_model`,
:func:`~aescore.inference.core.infer`: what ``aescore score`` computes): every image, original
and copy alike, is written to a temporary folder as a JPEG at quality 95 with 4:4:4 chroma and
scored from that file; the Laplacian reads the same file.

    PYTHONPATH=. python scripts/eval_default_model.py --model aescore-technical-faultnet \\
        --photos ../shared/photos --wallpapers WALLPAPERS/usr/share --out eval-default.json

``--limit N`` / ``--max-photos N`` make a quick run; ``--keep-images DIR`` keeps the images.
Get the wallpapers with the command at the top of ``scripts/validation-photos.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from aescore.engine.pairwise import laplacian_sharpness  # noqa: E402
from aescore.data.fault_kinds import FAULT_KINDS  # noqa: E402
from aescore.data.transforms import REC709_LUMA  # noqa: E402

SETS = ("own", "reasons", "fullres", "cross")
TAGS = ("shallow_dof", "night", "high_key", "long_exposure")
SAVE_QUALITY = 95  # every scored image, original or copy, is this JPEG (4:4:4)

Array = np.ndarray  # float32 [H, W, 3] in [0, 1], sRGB unless named linear


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- mild faults (independent code)


def to_linear(a: Array) -> Array:
    """sRGB -> linear light (IEC 61966-2-1)."""
    return np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4).astype(np.float32)


def to_srgb(x: Array) -> Array:
    """Linear light -> sRGB, clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def _gaussian_blur(x: Array, sigma: float) -> Array:
    import cv2

    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _line_psf(length: float, angle: float) -> Array:
    """A normalised straight-line point spread of ``length`` px at ``angle`` radians (bilinear
    splatting of points spaced 0.1 px along the segment)."""
    half = length / 2
    size = int(np.ceil(length)) + 3
    k = np.zeros((size, size), np.float64)
    c = (size - 1) / 2
    t = np.linspace(-half, half, max(2, int(length * 10)))
    xs, ys = c + t * np.cos(angle), c + t * np.sin(angle)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), w)
    return (k / k.sum()).astype(np.float32)


def noise_gaussian(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    sigma = rng.uniform(0.020, 0.040)
    return np.clip(a + rng.normal(0, sigma, a.shape).astype(np.float32), 0, 1), f"sigma={sigma:.3f}"


def noise_shot(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    photons = rng.uniform(250, 600)
    lin = to_linear(a)
    noisy = rng.poisson(lin * photons).astype(np.float32) / photons + rng.normal(0, 0.004, a.shape).astype(np.float32)
    return to_srgb(noisy), f"photons={photons:.0f}"


def jpeg(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    import io

    q = int(rng.integers(15, 26))
    buf = io.BytesIO()
    Image.fromarray(to_uint8(a)).save(buf, "JPEG", quality=q, subsampling=2)  # 2 = 4:2:0
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255, f"quality={q}"


def defocus(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    sigma = rng.uniform(2.0, 3.0)
    return to_srgb(_gaussian_blur(to_linear(a), sigma)), f"sigma={sigma:.2f}px"


def motion(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    import cv2

    length, angle = rng.uniform(10, 15), rng.uniform(0, np.pi)
    out = cv2.filter2D(to_linear(a), -1, _line_psf(length, angle), borderType=cv2.BORDER_REFLECT)
    return to_srgb(out), f"length={length:.1f}px angle={np.degrees(angle):.0f}deg"


def exposure_gain(a: Array, ev: float) -> Array:
    """An exposure change of ``ev`` stops: linear light times 2^ev, clipped."""
    return to_srgb(to_linear(a) * np.float32(2.0**ev))


def underexposure(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    ev = rng.uniform(-1.2, -0.8)
    return exposure_gain(a, ev), f"ev={ev:+.2f}"


def overexposure(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    ev = rng.uniform(0.8, 1.2)
    return exposure_gain(a, ev), f"ev={ev:+.2f}"


def haze(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    veil = rng.uniform(0.25, 0.35)
    return a * np.float32(1 - veil) + np.float32(veil * 0.90), f"veil={veil:.2f}"


CAST_DIRECTIONS = {"warm": (1.0, 0.0, -1.0), "cool": (-1.0, 0.0, 1.0), "green": (-0.5, 1.0, -0.5),
                   "magenta": (0.5, -1.0, 0.5)}  # log-gain directions of R, G, B


def white_balance(a: Array, direction: str, gain: float) -> Array:
    """White balance off by ``gain`` along ``direction`` of :data:`CAST_DIRECTIONS`, in linear
    light, the luminance of grey kept."""
    gains = np.exp(np.log(gain) * np.asarray(CAST_DIRECTIONS[direction], np.float64))
    gains /= gains @ np.array(REC709_LUMA)  # keep the luminance of grey
    return to_srgb(to_linear(a) * gains.astype(np.float32))


def colour_cast(a: Array, rng: np.random.Generator) -> tuple[Array, str]:
    gain = rng.uniform(1.10, 1.20)
    name = list(CAST_DIRECTIONS)[int(rng.integers(len(CAST_DIRECTIONS)))]
    return white_balance(a, name, gain), f"{name} gain={gain:.2f}"


@dataclass(frozen=True)
class MildFault:
    name: str
    family: str  # the FAULT_KINDS label it belongs to
    fn: Callable[[Array, np.random.Generator], tuple[Array, str]]


MILD_FAULTS: tuple[MildFault, ...] = (
    MildFault("noise_gaussian", "noise", noise_gaussian),
    MildFault("noise_shot", "noise", noise_shot),
    MildFault("jpeg", "jpeg", jpeg),
    MildFault("defocus", "defocus", defocus),
    MildFault("motion", "motion", motion),
    MildFault("underexposure", "underexposure", underexposure),
    MildFault("overexposure", "overexposure", overexposure),
    MildFault("haze", "haze", haze),
    MildFault("colour_cast", "colour_cast", colour_cast),
)


# ----------------------------------------------------------------------------- images and scoring


def to_uint8(a: Array) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass
class Item:
    """One scored image file: an original (``labels`` empty) or a faulty copy."""

    path: str
    photo: str  # the photo it comes from (file name / relative path)
    kind: str  # "original", "make_fault", "single", "mild"
    labels: tuple[str, ...] = ()
    fault: str = ""  # mild fault name, or the apply_fault family
    recipe: str = ""
    p_high: float = float("nan")
    faults: list[float] | None = None
    laplacian: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "path"}
        d["file"] = os.path.basename(self.path)
        d["labels"] = list(self.labels)
        return d


def save(img: Image.Image, path: Path) -> str:
    img.convert("RGB").save(path, "JPEG", quality=SAVE_QUALITY, subsampling=0)
    return str(path)


def score(model: Any, items: list[Item], want: frozenset[str], workers: int, what: str) -> None:
    """Fill ``p_high`` (and ``faults``) of ``items`` through :func:`aescore.inference.core.infer`,
    and ``laplacian`` from the same files where it is not known yet (a file scored by a second
    model keeps the first one's)."""
    from aescore.inference.core import Job, infer

    todo = [it for it in items if np.isnan(it.p_high)]
    if not todo:
        return
    t0, done = time.time(), [0]

    def progress(n: int) -> None:
        done[0] += n
        log(f"  [{what}] scored {done[0]}/{len(todo)} ({time.time() - t0:.0f} s)")

    for it, out in zip(todo, infer(model, [Job(it.path) for it in todo], want=want, workers=workers, progress=progress)):
        if out.reason:
            raise RuntimeError(f"{it.path}: {out.reason}")
        it.p_high = float(out.outputs["p_high"])
        f = out.outputs.get("faults")
        it.faults = None if f is None else [float(v) for v in np.asarray(f)]
    for it in todo:
        if np.isnan(it.laplacian):
            with Image.open(it.path) as im:
                it.laplacian = laplacian_sharpness(im.convert("RGB"))


def row_tags(row: list[str], column: int) -> tuple[str, ...]:
    """The comma-separated tags in ``row[column]`` of a list file (``-`` or no such column: none)."""
    return tuple(t for t in (row[column] if len(row) > column else "-").split(",") if t and t != "-")


def read_list(path: Path) -> list[list[str]]:
    """Non-comment, non-empty lines of a list file, split on tabs."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append(line.rstrip("\n").split("\t"))
    return rows


# ----------------------------------------------------------------------------- metrics and tables


def pair_right(a: float, b: float) -> float:
    """1 when ``a`` (the good one) scores higher, 0.5 on a tie, else 0."""
    return 1.0 if a > b else 0.5 if a == b else 0.0


def auc(pos: list[float], neg: list[float]) -> float:
    """P(pos > neg) over all pairs, ties half (Mann-Whitney)."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pair_rows(pairs: list[tuple[str, Item, Item]], groups: list[str]) -> tuple[list[list[Any]], dict[str, Any]]:
    """Rows ``group | pairs | model % | Laplacian %`` for each of ``groups`` over the ``pairs``
    (group, original, copy) of that group, in the order of ``groups``; and the same as JSON."""
    rows, js = [], {}
    for g in groups:
        sel = [(o, c) for grp, o, c in pairs if grp == g]
        if not sel:
            continue
        m = float(np.mean([pair_right(o.p_high, c.p_high) for o, c in sel]))
        lap = float(np.mean([pair_right(o.laplacian, c.laplacian) for o, c in sel]))
        rows.append([g, len(sel), pct(m), pct(lap)])
        js[g] = {"pairs": len(sel), "model": m, "laplacian": lap}
    return rows, js


# ----------------------------------------------------------------------------- the sets


def heldout_originals(args: argparse.Namespace, tmp: Path) -> list[tuple[int, Image.Image, Item]]:
    names = [r[0] for r in read_list(args.heldout)]
    if args.limit:
        names = names[: args.limit]
    out = []
    for i, name in enumerate(names):
        with Image.open(args.photos / name) as im:
            img = im.convert("RGB")
        out.append((i, img, Item(save(img, tmp / f"h{i:04d}_orig.jpg"), name, "original")))
    return out


def run_own(args: argparse.Namespace, model: Any, want: frozenset[str], originals: list, tmp: Path) -> dict[str, Any]:
    from aescore.data.faults import make_fault

    log(f"own: {len(originals)} photos x {args.copies} copies")
    copies: list[Item] = []
    for i, img, orig in originals:
        rng = np.random.default_rng([args.seed, i])
        for k in range(args.copies):
            fc = make_fault(img, rng)
            it = Item(save(fc.image, tmp / f"h{i:04d}_own{k}.jpg"), orig.photo, "make_fault", fc.labels,
                      recipe=" + ".join(fc.recipe))
            copies.append(it)
    score(model, [o for _, _, o in originals] + copies, want, args.workers, "own")
    by_photo = {o.photo: o for _, _, o in originals}
    groups = [("all", c) for c in copies]  # each copy once
    groups += [("single family" if len(c.labels) == 1 else "2-3 combined", c) for c in copies]
    groups += [(lab, c) for c in copies for lab in c.labels]  # a combined copy counts for each family
    rows, js = pair_rows([(g, by_photo[c.photo], c) for g, c in groups],
                         ["all", "single family", "2-3 combined", *FAULT_KINDS])
    print("\n## Own generator, held-out photos (make_fault pairs)\n")
    print(f"{len(originals)} held-out photos x {args.copies} copies, seed {args.seed}. A pair is right when the "
          "original scores higher (tie = half). Per family: copies labelled with it (combined copies count for each).\n")
    print(table(["family", "pairs", "model %", "Laplacian %"], rows))
    return {"pairwise": js, "items": [o.record() for _, _, o in originals] + [c.record() for c in copies]}


def run_reasons(args: argparse.Namespace, model: Any, want: frozenset[str], has_reasons: bool, originals: list,
                tmp: Path) -> dict[str, Any]:
    from aescore.data.faults import apply_fault

    print("\n## Reasons on held-out single-family copies (apply_fault)\n")
    if not has_reasons:
        print("Skipped: the model has no reasons head (`faults` output).")
        return {"skipped": "model has no faults output"}
    log(f"reasons: {len(originals)} photos x {len(FAULT_KINDS)} families")
    copies: list[Item] = []
    for i, img, orig in originals:
        rng = np.random.default_rng([args.seed, i, 1])
        for fam in FAULT_KINDS:
            fc = apply_fault(img, fam, rng)
            copies.append(Item(save(fc.image, tmp / f"h{i:04d}_one_{fam}.jpg"), orig.photo, "single", fc.labels,
                               fault=fam, recipe=" + ".join(fc.recipe)))
    score(model, [o for _, _, o in originals] + copies, want, args.workers, "reasons")
    by_photo = {o.photo: o for _, _, o in originals}
    n = len(FAULT_KINDS)
    conf = np.zeros((n, n), int)
    for c in copies:
        conf[FAULT_KINDS.index(c.fault), int(np.argmax(c.faults))] += 1
    top1 = float(np.trace(conf) / conf.sum())
    pair_r, pair_js = pair_rows([(g, by_photo[c.photo], c) for c in copies for g in ("all", c.fault)],
                                ["all", *FAULT_KINDS])
    by_pair = {r[0]: r for r in pair_r}
    rows = [["all", int(conf.sum()), pct(top1), "10.0", by_pair["all"][2], by_pair["all"][3]]]
    per: dict[str, float] = {}
    for k, fam in enumerate(FAULT_KINDS):
        per[fam] = float(conf[k, k] / max(1, conf[k].sum()))
        rows.append([fam, int(conf[k].sum()), pct(per[fam]), "10.0", by_pair[fam][2], by_pair[fam][3]])
    print(f"{len(originals)} held-out photos, one copy per family (random implementation and severity, seed "
          f"{args.seed}). Top-1: argmax of `faults` == the family; the Laplacian has no reasons, its baseline is "
          "chance. Pairwise: (original, copy) as in the first table.\n")
    print(table(["family", "copies", "top-1 %", "chance %", "pairwise model %", "pairwise Laplacian %"], rows))
    short = {f: f[:5] for f in FAULT_KINDS}
    short.update({"underexposure": "under", "overexposure": "over", "colour_cast": "cast"})
    print("\nConfusion (rows: true family, columns: predicted):\n")
    print(table(["true \\ pred"] + [short[f] for f in FAULT_KINDS],
                [[fam] + list(conf[k]) for k, fam in enumerate(FAULT_KINDS)]))
    return {"top1": top1, "top1_per_family": per, "confusion": conf.tolist(), "confusion_order": list(FAULT_KINDS),
            "pairwise": pair_js, "items": [o.record() for _, _, o in originals] + [c.record() for c in copies]}


def fullres_items(args: argparse.Namespace, tmp: Path) -> tuple[list[Item], list[Item]]:
    """The validation originals (downscaled) and their mild faulty copies, written to ``tmp``."""
    if not args.wallpapers.is_dir():
        raise SystemExit(f"--wallpapers {args.wallpapers}: no such folder (see the top of {args.validation})")
    rows = read_list(args.validation)
    if args.max_photos:
        rows = rows[: args.max_photos]
    originals, copies = [], []
    Image.MAX_IMAGE_PIXELS = None
    for i, row in enumerate(rows):
        rel, package = row[0], row[1] if len(row) > 1 else ""
        tags = row_tags(row, 2)
        with Image.open(args.wallpapers / rel) as im:
            img = im.convert("RGB")
        full = img.size
        s = min(img.size)
        if s > args.max_shorter:
            f = args.max_shorter / s
            img = img.resize((round(img.width * f), round(img.height * f)), Image.LANCZOS)
        log(f"fullres: {i + 1}/{len(rows)} {rel} {full[0]}x{full[1]} -> {img.width}x{img.height}")
        orig = Item(save(img, tmp / f"w{i:03d}_orig.jpg"), rel, "original",
                    extra={"tags": list(tags), "package": package, "size": list(img.size), "full_size": list(full)})
        originals.append(orig)
        a = np.asarray(img, np.float32) / 255
        rng = np.random.default_rng([args.seed, i, 3])
        for mf in MILD_FAULTS:
            out, params = mf.fn(a, rng)
            copies.append(Item(save(Image.fromarray(to_uint8(out)), tmp / f"w{i:03d}_{mf.name}.jpg"), rel, "mild",
                               (mf.family,), fault=mf.name, recipe=params, extra={"tags": list(tags)}))
    return originals, copies


def run_fullres(args: argparse.Namespace, originals: list[Item], copies: list[Item], has_reasons: bool) -> dict[str, Any]:
    by_photo = {o.photo: o for o in originals}
    names = [m.name for m in MILD_FAULTS]
    rows, js = pair_rows([(g, by_photo[c.photo], c) for c in copies for g in ("all", c.fault)], ["all", *names])
    top1: dict[str, float] = {}
    if has_reasons:
        for r in rows:
            sel = [c for c in copies if r[0] in ("all", c.fault)]
            top1[r[0]] = float(np.mean([FAULT_KINDS[int(np.argmax(c.faults))] == c.labels[0] for c in sel]))
            r.append(pct(top1[r[0]]))
    print("\n## Full resolution, independently coded mild faults\n")
    print(f"{len(originals)} validation photos (scripts/validation-photos.txt), downscaled so the shorter edge is at "
          f"most {args.max_shorter} px (CPU budget), one mild copy per fault made at that scale (parameters in the "
          "script's docstring). Pairwise: (original, copy) right when the original scores higher."
          + (" Top-1 reason: argmax of `faults` == the fault's family." if has_reasons else "") + "\n")
    print(table(["fault", "pairs", "model %", "Laplacian %"] + (["top-1 reason %"] if has_reasons else []), rows))
    return {"pairwise": js, "top1_reason": top1 or None, "max_shorter": args.max_shorter,
            "items": [o.record() for o in originals] + [c.record() for c in copies]}


def run_cross(originals: list[Item], copies: list[Item]) -> dict[str, Any]:
    neg_m, neg_l = [c.p_high for c in copies], [c.laplacian for c in copies]
    groups: list[tuple[str, list[Item]]] = [("all good photos", originals),
                                            ("tagged (any tag)", [o for o in originals if o.extra["tags"]]),
                                            ("untagged", [o for o in originals if not o.extra["tags"]])]
    groups += [(t, [o for o in originals if t in o.extra["tags"]]) for t in TAGS]
    rows, js = [], {}
    for name, pos in groups:
        m = auc([o.p_high for o in pos], neg_m)
        lap = auc([o.laplacian for o in pos], neg_l)
        rows.append([name, len(pos), len(neg_m), pct(m), pct(lap)])
        js[name] = {"positives": len(pos), "negatives": len(neg_m), "model": m, "laplacian": lap}
    # Per fault family of the negatives, all good photos as positives.
    fault_rows = []
    for mf in MILD_FAULTS:
        neg = [c for c in copies if c.fault == mf.name]
        m = auc([o.p_high for o in originals], [c.p_high for c in neg])
        lap = auc([o.laplacian for o in originals], [c.laplacian for c in neg])
        fault_rows.append([mf.name, len(originals), len(neg), pct(m), pct(lap)])
        js[f"negatives={mf.name}"] = {"model": m, "laplacian": lap}
    lap_rank = {o.photo: r for r, o in enumerate(sorted(originals, key=lambda o: o.laplacian), 1)}
    lowest = sorted(originals, key=lambda o: o.p_high)[:5]
    print("\n## Cross-photo AUC: good photos (soft or dark on purpose included) against faulty copies of any photo\n")
    print("AUC = P(score(good photo) > score(faulty copy)), ties half; negatives: every mild copy of the full-resolution set.\n")
    print(table(["positives", "n pos", "n neg", "model AUC %", "Laplacian AUC %"], rows))
    print("\nBy fault of the negatives (positives: all good photos):\n")
    print(table(["negatives", "n pos", "n neg", "model AUC %", "Laplacian AUC %"], fault_rows))
    print("\nLowest-scoring good photos (model), with the Laplacian's rank among the good photos (1 = least sharp):\n")
    print(table(["photo", "tags", "P(high)", "Laplacian", "Laplacian rank"],
                [[o.photo, ",".join(o.extra["tags"]) or "-", f"{o.p_high:.3f}", f"{o.laplacian:.1f}",
                  f"{lap_rank[o.photo]}/{len(originals)}"] for o in lowest]))
    low_lap = sorted(originals, key=lambda o: o.laplacian)[:5]
    print("\nLowest by the Laplacian: " + "; ".join(f"{o.photo} ({','.join(o.extra['tags']) or '-'})" for o in low_lap))
    return {"auc": js, "lowest_model": [o.photo for o in lowest], "lowest_laplacian": [o.photo for o in low_lap]}


# ----------------------------------------------------------------------------- main


def json_safe(x: Any) -> Any:
    """``x`` with NaN floats as None (an empty group has no accuracy), so the file is strict JSON."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model name or .safetensors path (default: aescore's default model)")
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    p.add_argument("--photos", type=Path, default=HERE.parent.parent / "shared" / "photos",
                   help="folder of the held-out photos")
    p.add_argument("--heldout", type=Path, default=HERE / "heldout-photos.txt")
    p.add_argument("--limit", type=int, default=0, help="first N held-out photos only (0: all)")
    p.add_argument("--copies", type=int, default=4, help="make_fault copies per held-out photo")
    p.add_argument("--wallpapers", type=Path, default=HERE.parent / "wallpapers" / "usr" / "share",
                   help="root the validation list's paths are relative to (an extracted usr/share)")
    p.add_argument("--validation", type=Path, default=HERE / "validation-photos.txt")
    p.add_argument("--max-photos", type=int, default=0, help="first N validation photos only (0: all)")
    p.add_argument("--max-shorter", type=int, default=2000, help="downscale validation photos to this shorter edge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="decode worker processes of the inference core")
    p.add_argument("--threads", type=int, default=0, help="torch / OpenCV threads (0: their default)")
    p.add_argument("--keep-images", type=Path, default=None, help="write the images here and keep them")
    p.add_argument("--out", type=Path, default=None, help="write the results (and every image's scores) as JSON")
    args = p.parse_args(argv)
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    bad = set(args.sets) - set(SETS)
    if bad:
        p.error(f"unknown sets {sorted(bad)}; choose from {','.join(SETS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from aescore.sysinfo import prefer_passive_openmp

    prefer_passive_openmp()  # before torch loads, as the CLI does
    import torch

    if args.threads:
        import cv2

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    from aescore.inference.loading import open_model

    t0 = time.time()
    model = open_model(args.model, args.device, "torch")
    has_reasons = model.module.capabilities.faults
    want = frozenset({"p_high", "faults"}) if has_reasons else frozenset({"p_high"})
    name = str(model.card.get("name") or model.path)
    print(f"# Evaluation of `{name}`\n")
    print(f"Weights: {model.path} (sha256 {str(model.card.get('sha256', ''))[:12]}), device {model.device}, "
          f"reasons head: {'yes' if has_reasons else 'no'}. Images scored from JPEG q{SAVE_QUALITY} files through "
          "aescore.inference.core (as `aescore score`); Laplacian = variance of the Laplacian at 512 px shorter side.")
    result: dict[str, Any] = {"model": name, "weights": str(model.path), "sha256": model.card.get("sha256"),
                              "seed": args.seed, "sets": args.sets}
    with tempfile.TemporaryDirectory(prefix="aescore-eval-") as tmpdir:
        tmp = args.keep_images or Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        if {"own", "reasons"} & set(args.sets):
            originals = heldout_originals(args, tmp)
            if "own" in args.sets:
                result["own"] = run_own(args, model, want, originals, tmp)
            if "reasons" in args.sets:
                result["reasons"] = run_reasons(args, model, want, has_reasons, originals, tmp)
        if {"fullres", "cross"} & set(args.sets):
            w_orig, w_copies = fullres_items(args, tmp)
            score(model, w_orig + w_copies, want, args.workers, "fullres")
            if "fullres" in args.sets:
                result["fullres"] = run_fullres(args, w_orig, w_copies, has_reasons)
            if "cross" in args.sets:
                result["cross"] = run_cross(w_orig, w_copies)
                if "fullres" not in args.sets:
                    result["cross"]["items"] = [o.record() for o in w_orig] + [c.record() for c in w_copies]
    result["seconds"] = round(time.time() - t0, 1)
    log(f"done in {result['seconds']} s")
    if args.out:
        args.out.write_text(json.dumps(json_safe(result), indent=1, allow_nan=False), encoding="utf-8")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
