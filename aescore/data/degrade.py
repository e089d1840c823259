"""Synthetic technical faults and the builder of a degradation dataset for ``aescore train --dataset csv``.

Each fault is a named function ``(img, severity, rng) -> img`` on 8-bit RGB ``PIL`` images. Severity 1
is already a flaw a photographer would reject; 2 and 3 are worse. Strengths are relative to the
image's shorter side (reference 375 px) so a fault looks the same at any resolution. Photometric
faults (blur, exposure, colour cast) work in linear light, where cameras and lenses act.

:func:`build_degraded_dataset` turns a folder of good photographs into originals (label 1) and
degraded copies (label 0), holding out a fixed, seeded subset of *source* photos for evaluation.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from aescore.data.images import PILLOW_EXTENSIONS, load_rgb
from aescore.data.transforms import REC709_LUMA
from aescore.errors import ConfigError, DataError, ImageDecodeError, UsageError
from aescore.fsutil import atomic_path, atomic_write_text

FaultFn = Callable[[Image.Image, int, np.random.Generator], Image.Image]
REF_SHORTER = 375.0  # the shorter side the pixel-sized strengths below were tuned on
SEVERITIES = (1, 2, 3)
MANIFEST_FORMAT = "aescore.degraded-dataset/1"


# ----------------------------------------------------------------------------- helpers


def _arr(img: Image.Image) -> np.ndarray:
    """RGB image -> float32 array in [0, 1], shape [H, W, 3]."""
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _img(arr: np.ndarray) -> Image.Image:
    """Float array in [0, 1] -> RGB image (clipped, rounded)."""
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mode="RGB")


def _to_linear(a: np.ndarray) -> np.ndarray:
    """sRGB transfer curve inverted (IEC 61966-2-1)."""
    return np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _to_srgb(a: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB (clipped to [0, 1] first)."""
    a = np.clip(a, 0.0, 1.0)
    return np.where(a <= 0.0031308, a * 12.92, 1.055 * np.power(a, 1 / 2.4) - 0.055).astype(np.float32)


def _pick(rng: np.random.Generator, table: dict[int, tuple[float, float]], severity: int) -> float:
    """A strength drawn uniformly from the severity's range (a continuum, not three fixed points)."""
    if severity not in table:
        raise ValueError(f"severity must be one of {sorted(table)}, got {severity!r}")
    lo, hi = table[severity]
    return float(rng.uniform(lo, hi))


def _scale(img: Image.Image) -> float:
    return min(img.size) / REF_SHORTER


def _convolve(arr: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of [H, W, 3] with an odd-sized 2-D kernel, reflecting at the borders."""
    from scipy.signal import fftconvolve

    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(arr, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
    return fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1)).astype(np.float32)


def _disk_kernel(radius: float) -> np.ndarray:
    """A lens's out-of-focus point spread: a uniform disk with an anti-aliased rim."""
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    k = np.clip(radius + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
    return (k / k.sum()).astype(np.float32)


def _line_kernel(length: float, angle: float) -> np.ndarray:
    """Camera shake along a straight line of ``length`` px at ``angle`` radians."""
    r = int(np.ceil(length / 2)) + 1
    t = np.linspace(-length / 2, length / 2, max(8, int(length * 4)))
    xs = np.rint(r + t * np.cos(angle)).astype(int)
    ys = np.rint(r + t * np.sin(angle)).astype(int)
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    np.add.at(k, (ys, xs), 1.0)
    return k / k.sum()


# ----------------------------------------------------------------------------- faults

_DEFOCUS_RADIUS = {1: (2.6, 3.4), 2: (4.2, 5.2), 3: (6.5, 8.0)}  # px at 375
_MOTION_LENGTH = {1: (9.0, 12.0), 2: (15.0, 20.0), 3: (24.0, 32.0)}
_NOISE_SIGMA = {1: (0.06, 0.075), 2: (0.09, 0.11), 3: (0.13, 0.16)}  # fraction of full scale
_UNDER_EV = {1: (1.4, 1.8), 2: (2.1, 2.5), 3: (2.8, 3.4)}
_OVER_CLIP = {1: (0.15, 0.22), 2: (0.28, 0.36), 3: (0.42, 0.52)}  # fraction of pixels blown
_HAZE_ALPHA = {1: (0.38, 0.46), 2: (0.52, 0.60), 3: (0.66, 0.74)}
_JPEG_QUALITY = {1: (15, 20), 2: (9, 12), 3: (4, 6)}
_CAST_STRENGTH = {1: (0.42, 0.50), 2: (0.58, 0.68), 3: (0.76, 0.88)}
_TILT_DEGREES = {1: (4.0, 6.0), 2: (6.5, 9.0), 3: (9.5, 12.0)}
_CROP_AREA = {1: (0.45, 0.50), 2: (0.37, 0.43), 3: (0.30, 0.35)}


def defocus(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Out-of-focus blur: a disk (lens bokeh) or a Gaussian point spread, in linear light."""
    radius = _pick(rng, _DEFOCUS_RADIUS, severity) * _scale(img)
    if rng.random() < 0.5:
        return _img(_to_srgb(_convolve(_to_linear(_arr(img)), _disk_kernel(radius))))
    # A Gaussian with sigma = 0.6 r has about the same visual blur as a disk of radius r.
    return img.filter(ImageFilter.GaussianBlur(radius=0.6 * radius))


def motion(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Camera-shake blur: a straight line kernel at a random angle, in linear light."""
    length = _pick(rng, _MOTION_LENGTH, severity) * _scale(img)
    kernel = _line_kernel(length, float(rng.uniform(0, np.pi)))
    return _img(_to_srgb(_convolve(_to_linear(_arr(img)), kernel)))


def noise(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Sensor noise: independent per-channel Gaussian, or luminance grain plus blotchy chroma noise."""
    sigma = _pick(rng, _NOISE_SIGMA, severity)
    a = _arr(img)
    h, w, _ = a.shape
    if rng.random() < 0.5:
        return _img(a + rng.normal(0.0, sigma, a.shape).astype(np.float32))
    luma = rng.normal(0.0, 0.8 * sigma, (h, w, 1)).astype(np.float32)
    # Demosaicing smears chroma noise over neighbouring pixels: draw it at half resolution, upsample.
    small = rng.normal(0.0, 1.2 * sigma, ((h + 1) // 2, (w + 1) // 2, 3)).astype(np.float32)
    chroma = small.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
    return _img(a + luma + chroma)


def underexposure(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Too little light: linear intensities scaled by 2^-EV (1.4 to 3.4 stops)."""
    ev = _pick(rng, _UNDER_EV, severity)
    return _img(_to_srgb(_to_linear(_arr(img)) * np.float32(2.0**-ev)))


def overexposure(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Too much light: a gain that blows out a given fraction of the pixels to white.

    The gain is set from the image's own luminance quantile (kept between +0.8 and +4 EV) so every
    photo, dark or bright, loses real highlight detail rather than merely brightening.
    """
    clip = _pick(rng, _OVER_CLIP, severity)
    lin = _to_linear(_arr(img))
    lum = lin @ np.array(REC709_LUMA, np.float32)
    q = float(np.quantile(lum, 1.0 - clip))
    gain = float(np.clip(1.0 / max(q, 1e-6), 2.0**0.8, 2.0**4))
    return _img(_to_srgb(lin * np.float32(gain)))


def haze(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Haze, fog or a flat, low-contrast rendering: a blend toward a light veil or the mean grey."""
    alpha = _pick(rng, _HAZE_ALPHA, severity)
    a = _arr(img)
    if rng.random() < 0.6:
        veil = np.float32(rng.uniform(0.65, 0.9)) + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    else:
        veil = a.reshape(-1, 3).mean(axis=0)
    return _img((1.0 - alpha) * a + alpha * veil)


def jpeg(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """Heavy JPEG compression (quality 4 to 20, 4:2:0 chroma): blocking, ringing, colour bleeding."""
    if severity not in _JPEG_QUALITY:
        raise ValueError(f"severity must be one of {sorted(_JPEG_QUALITY)}, got {severity!r}")
    lo, hi = _JPEG_QUALITY[severity]
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=int(rng.integers(lo, hi + 1)), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def colour_cast(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """A strong white-balance error: per-channel gains along a random hue, luminance kept."""
    strength = _pick(rng, _CAST_STRENGTH, severity)
    phi = rng.uniform(0, 2 * np.pi)
    # A direction in the opponent-colour plane (red-cyan, green-magenta axes), max |component| = 1.
    d = np.cos(phi) * np.array([1.0, -0.5, -0.5]) + np.sin(phi) * np.array([0.0, 0.866, -0.866])
    gains = 1.0 + strength * d / np.abs(d).max()
    gains /= gains @ np.array(REC709_LUMA)
    return _img(_to_srgb(_to_linear(_arr(img)) * gains.astype(np.float32)))


def tilt(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """A crooked horizon: rotate 4 to 12 degrees, keep the largest centred rectangle of the original
    aspect ratio that holds no border, and resize it back to the original size (no black corners)."""
    deg = _pick(rng, _TILT_DEGREES, severity) * (1 if rng.random() < 0.5 else -1)
    w, h = img.size
    c, s = abs(np.cos(np.radians(deg))), abs(np.sin(np.radians(deg)))
    # A centred (k w) x (k h) box fits inside the w x h frame rotated by deg iff both hold.
    k = min(w / (w * c + h * s), h / (w * s + h * c))
    cw, ch = int(k * w) - 2, int(k * h) - 2  # 1 px margin: interpolation touches the rim
    rotated = img.rotate(deg, resample=Image.Resampling.BICUBIC, expand=False)
    left, top = (w - cw) // 2, (h - ch) // 2
    return rotated.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.LANCZOS)


def crop(img: Image.Image, severity: int, rng: np.random.Generator) -> Image.Image:
    """A poor crop: a small off-centre region (30 to 50 % of the area) against an edge or corner,
    upscaled back to the original size."""
    area = _pick(rng, _CROP_AREA, severity)
    w, h = img.size
    cw, ch = max(1, round(w * np.sqrt(area))), max(1, round(h * np.sqrt(area)))
    anchors = [(x, y) for x in (0.0, 0.5, 1.0) for y in (0.0, 0.5, 1.0) if (x, y) != (0.5, 0.5)]
    fx, fy = anchors[int(rng.integers(len(anchors)))]
    left, top = round(fx * (w - cw)), round(fy * (h - ch))
    return img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.LANCZOS)


FAULTS: dict[str, FaultFn] = {
    "defocus": defocus,
    "motion": motion,
    "noise": noise,
    "underexposure": underexposure,
    "overexposure": overexposure,
    "haze": haze,
    "jpeg": jpeg,
    "colour_cast": colour_cast,
    "tilt": tilt,
    "crop": crop,
}
ALL_KINDS: tuple[str, ...] = tuple(FAULTS)


def degrade(img: Image.Image, kind: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """Apply the fault ``kind`` at ``severity`` (1..3); the result has the input's size."""
    if kind not in FAULTS:
        raise UsageError(f"unknown fault kind {kind!r}; available: {', '.join(ALL_KINDS)}")
    if severity not in SEVERITIES:
        raise UsageError(f"severity must be one of 1, 2, 3, got {severity!r}")
    return FAULTS[kind](img.convert("RGB"), severity, rng)


def fault_rng(seed: int, name: str, kind: str, severity: int) -> np.random.Generator:
    """The generator for one (source, kind, severity): the same copy whatever else is built."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), ALL_KINDS.index(kind), severity])


# ----------------------------------------------------------------------------- dataset builder


@dataclass(frozen=True)
class _Job:
    """One source photo and the degraded copies to make of it (picklable for worker processes)."""

    src: str
    stem: str
    images_dir: str
    specs: tuple[tuple[str, int], ...]
    seed: int
    max_side: int | None


@dataclass
class _Result:
    stem: str
    original: str | None = None  # path relative to out_dir
    degraded: list[tuple[str, str, int]] = field(default_factory=list)  # (path, kind, severity)
    error: str | None = None


def _save_jpeg(img: Image.Image, path: Path, quality: int = 95) -> None:
    """Write a JPEG atomically; no fsync, since a lost file is simply generated again."""
    with atomic_path(path, fsync=False) as tmp:
        img.save(tmp, format="JPEG", quality=quality)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue(), fsync=False)


def _process(job: _Job) -> _Result:
    """Decode one source, save it (JPEG q95) and its degraded copies; never touches the source file."""
    res = _Result(job.stem)
    try:
        img = load_rgb(job.src)
    except ImageDecodeError as err:
        res.error = err.reason
        return res
    if job.max_side and max(img.size) > job.max_side:
        img.thumbnail((job.max_side, job.max_side), Image.Resampling.LANCZOS)
    images = Path(job.images_dir)
    _save_jpeg(img, images / f"{job.stem}.jpg")
    res.original = f"images/{job.stem}.jpg"
    for kind, sev in job.specs:
        name = f"{job.stem}__{kind}{sev}.jpg"
        _save_jpeg(degrade(img, kind, sev, fault_rng(job.seed, job.stem, kind, sev)), images / name)
        res.degraded.append((f"images/{name}", kind, sev))
    return res


def find_sources(src_dir: Path) -> list[Path]:
    """Image files directly inside ``src_dir`` (not recursive, hidden files skipped), sorted by name."""
    return sorted(
        (p for p in src_dir.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in PILLOW_EXTENSIONS),
        key=lambda p: p.name,
    )


def select_holdout(names: Sequence[str], holdout: float, seed: int) -> list[str]:
    """The held-out source names: a seeded permutation of the sorted names, first round(holdout n)."""
    names = sorted(names)
    n_hold = int(round(holdout * len(names)))
    if holdout > 0 and n_hold == 0 and len(names) >= 2:
        n_hold = 1
    perm = np.random.default_rng(seed).permutation(len(names))
    return sorted(names[i] for i in perm[:n_hold])


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique (``a.jpg`` and ``a.png`` -> ``a`` and ``a_png``) and CSV/path safe."""
    seen: set[str] = set()
    out = []
    for p in paths:
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in p.stem)
        if stem in seen:
            stem = f"{stem}_{p.suffix.lstrip('.').lower()}"
        while stem in seen:
            stem += "_"
        seen.add(stem)
        out.append(stem)
    return out


def _train_specs(n_sources: int, combos: list[tuple[str, int]], copies: int | str, seed: int) -> list[tuple[tuple[str, int], ...]]:
    """Kinds/severities for each training source: drawn in turn from seeded shuffles of all the
    combinations, so every (kind, severity) appears about equally often across the training set.
    A source's copies are distinct; ``copies >= len(combos)`` means all of them."""
    if copies == "all" or int(copies) >= len(combos):
        return [tuple(combos)] * n_sources
    rng = np.random.default_rng([seed, 1])
    stream: list[tuple[str, int]] = []  # consumed from the end
    out = []
    for _ in range(n_sources):
        picked: list[tuple[str, int]] = []
        while len(picked) < int(copies):
            free = [i for i, spec in enumerate(stream) if spec not in picked]
            if not free:  # the rest of this shuffle is already used by this source: queue another
                stream = [combos[i] for i in rng.permutation(len(combos))] + stream
                continue
            picked.append(stream.pop(free[-1]))
        out.append(tuple(picked))
    return out


def build_degraded_dataset(
    src_dir: str | Path,
    out_dir: str | Path,
    holdout: float = 0.1,
    kinds: Sequence[str] = ALL_KINDS,
    severities: Sequence[int] = SEVERITIES,
    copies_per_image: int | str = 3,
    seed: int = 0,
    max_side: int | None = None,
    workers: int = 1,
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Build a degradation dataset from the photos in ``src_dir`` (which is only read).

    Layout of ``out_dir``: ``images/`` (originals re-encoded as JPEG q95 as ``<stem>.jpg``, copies as
    ``<stem>__<kind><severity>.jpg``, also q95), ``train.csv`` (``path,label,group``: label 1 for an
    original, 0 for a degraded copy; ``group`` = source stem so a train/val split can keep a source
    and its copies on one side), ``test.csv`` (``path,label`` for the held-out sources),
    ``pairs.csv`` (``original,degraded,kind,severity``: every kind x severity of every held-out
    source) and ``manifest.json``. CSV paths are relative to the CSV's folder.

    ``holdout``: fraction of source photos held out (a seeded permutation of the sorted names;
    training never sees them nor their copies). ``copies_per_image``: degraded copies per training
    source (int, kinds/severities cycled evenly) or ``"all"``; the classes are then 1 : copies, which
    the summary reports (the CSV loader drops duplicate rows, so balancing belongs to the trainer's
    loss weights or sampler, not to repeated rows). ``on_progress(done, total)`` is called after each
    source. Returns a summary dict (counts, class balance, skipped files).
    """
    src, out = Path(src_dir), Path(out_dir)
    kinds, severities = list(dict.fromkeys(kinds)), sorted(set(int(s) for s in severities))
    if not src.is_dir():
        raise DataError(f"source folder not found: {src}")
    bad = [k for k in kinds if k not in FAULTS]
    if bad or not kinds:
        raise UsageError(f"unknown fault kind(s) {', '.join(bad) or '(none given)'}; available: {', '.join(ALL_KINDS)}")
    if not severities or any(s not in SEVERITIES for s in severities):
        raise UsageError(f"severities must be among 1, 2, 3, got {severities}")
    if not 0.0 <= holdout < 1.0:
        raise ConfigError("holdout", f"must be in [0, 1), got {holdout}")
    if copies_per_image != "all" and (not isinstance(copies_per_image, int) or copies_per_image < 1):
        raise UsageError(f"copies per image must be a positive integer or 'all', got {copies_per_image!r}")
    if out.resolve() == src.resolve():
        raise UsageError("the output folder must differ from the source folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError("force", f"is needed to write into {out}: the output folder is not empty")
    sources = find_sources(src)
    if not sources:
        raise DataError(f"no images found in {src} (looked for {', '.join(sorted(PILLOW_EXTENSIONS))})")

    stems = _unique_stems(sources)
    held = set(select_holdout([p.name for p in sources], holdout, seed))
    if len(held) >= len(sources):
        raise UsageError(f"holding out {len(held)} of {len(sources)} photos leaves none to train on")
    combos = [(k, s) for k in kinds for s in severities]
    train_idx = [i for i, p in enumerate(sources) if p.name not in held]
    specs: dict[int, tuple[tuple[str, int], ...]] = {i: tuple(combos) for i, p in enumerate(sources) if p.name in held}
    specs.update(zip(train_idx, _train_specs(len(train_idx), combos, copies_per_image, seed)))

    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    jobs = [_Job(str(p), stems[i], str(images), specs[i], seed, max_side) for i, p in enumerate(sources)]
    results: list[_Result] = []
    if workers > 1:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for res in pool.map(_process, jobs, chunksize=4):
                results.append(res)
                if on_progress:
                    on_progress(len(results), len(jobs))
    else:
        for job in jobs:
            results.append(_process(job))
            if on_progress:
                on_progress(len(results), len(jobs))

    train_rows: list[tuple[str, int, str]] = []
    test_rows: list[tuple[str, int]] = []
    pair_rows: list[tuple[str, str, str, int]] = []
    skipped = [{"file": p.name, "reason": r.error} for p, r in zip(sources, results) if r.error]
    for p, r in zip(sources, results):
        if r.error or r.original is None:
            continue
        if p.name in held:
            test_rows.append((r.original, 1))
            for path, kind, sev in r.degraded:
                test_rows.append((path, 0))
                pair_rows.append((r.original, path, kind, sev))
        else:
            train_rows.append((r.original, 1, r.stem))
            train_rows.extend((path, 0, r.stem) for path, _, _ in r.degraded)
    if not train_rows:
        raise DataError(f"none of the training photos in {src} could be decoded")

    _write_csv(out / "train.csv", ("path", "label", "group"), train_rows)
    _write_csv(out / "test.csv", ("path", "label"), test_rows)
    _write_csv(out / "pairs.csv", ("original", "degraded", "kind", "severity"), pair_rows)
    n_pos = sum(1 for row in train_rows if row[1] == 1)
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "sources": len(sources),
        "train_sources": sum(1 for p, r in zip(sources, results) if p.name not in held and not r.error),
        "held_out_sources": sum(1 for p, r in zip(sources, results) if p.name in held and not r.error),
        "train_rows": len(train_rows),
        "train_positive": n_pos,
        "train_negative": len(train_rows) - n_pos,
        "positive_fraction": round(n_pos / len(train_rows), 4),
        "test_rows": len(test_rows),
        "pairs": len(pair_rows),
        "skipped": skipped,
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "seed": seed,
        "kinds": kinds,
        "severities": severities,
        "holdout": holdout,
        "copies_per_image": copies_per_image,
        "max_side": max_side,
        "jpeg_quality": 95,
        "sources": [p.name for p in sources],
        "held_out": sorted(held),
        "counts": {k: v for k, v in summary.items() if k not in ("out_dir", "skipped")},
        "skipped": skipped,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return summary
