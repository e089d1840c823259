"""Pairwise evaluation on a degradation dataset: is each original scored above its degraded copy?

Also the baseline that open-source photo cullers commonly use for "is this shot any good":
the variance of the Laplacian (a sharpness measure), so a model can be compared side by side.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from PIL import Image

from aescore.errors import DataError, ImageDecodeError

LAPLACIAN_SHORTER = 512  # resize target for the baseline, so differently sized photos compare fairly


@dataclass(frozen=True)
class Pair:
    """One held-out original and one degraded copy of it (absolute or CSV-relative paths)."""

    original: str
    degraded: str
    kind: str
    severity: int


def laplacian_sharpness(img: Image.Image, shorter: int = LAPLACIAN_SHORTER) -> float:
    """Variance of the Laplacian of the grey image, resized to ``shorter`` px on its shorter side.

    The classic blur detector (Pech-Pacheco et al. 2000) that open-source cullers rank by:
    higher = sharper.
    """
    import numpy as np
    from scipy.ndimage import laplace

    grey = img.convert("L")
    w, h = grey.size
    scale = shorter / min(w, h)
    if scale != 1.0:
        grey = grey.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    return float(laplace(np.asarray(grey, dtype=np.float64)).var())


def read_pairs(pairs_csv: str | Path) -> list[Pair]:
    """Read ``pairs.csv`` (``original,degraded,kind,severity``); paths are resolved against its folder."""
    pairs_csv = Path(pairs_csv)
    if not pairs_csv.is_file():
        raise DataError(f"pairs file not found: {pairs_csv}")
    root = pairs_csv.parent
    with pairs_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"original", "degraded", "kind", "severity"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise DataError(f"{pairs_csv}: expected columns {', '.join(sorted(need))}")
        try:
            return [
                Pair(str(root / r["original"]), str(root / r["degraded"]), r["kind"], int(r["severity"]))
                for r in reader
            ]
        except (TypeError, ValueError) as err:
            raise DataError(f"{pairs_csv}: bad row ({err})") from None


def _acc(wins: float, n: int) -> dict[str, Any]:
    return {"n": n, "accuracy": (wins / n) if n else float("nan")}


def pairwise_accuracy(pairs: Iterable[Pair], score_fn: Callable[[str], float]) -> dict[str, Any]:
    """Fraction of pairs whose original scores strictly above its degraded copy (a tie counts 1/2).

    ``score_fn(path) -> float`` is called once per distinct path. Returns
    ``{"n", "accuracy", "per_kind": {kind: {"n", "accuracy"}}, "per_severity": {"1": {...}, ...}}``.
    """
    cache: dict[str, float] = {}

    def score(path: str) -> float:
        if path not in cache:
            cache[path] = float(score_fn(path))
        return cache[path]

    total, n = 0.0, 0
    by_kind: dict[str, list[float]] = {}
    by_sev: dict[str, list[float]] = {}
    for p in pairs:
        a, b = score(p.original), score(p.degraded)
        win = 1.0 if a > b else 0.5 if a == b else 0.0
        total, n = total + win, n + 1
        by_kind.setdefault(p.kind, []).append(win)
        by_sev.setdefault(str(p.severity), []).append(win)
    return {
        **_acc(total, n),
        "per_kind": {k: _acc(sum(v), len(v)) for k, v in sorted(by_kind.items())},
        "per_severity": {s: _acc(sum(v), len(v)) for s, v in sorted(by_sev.items())},
    }


def evaluate_pairs(pairs_csv: str | Path, model_scores: Mapping[str, float]) -> dict[str, Any]:
    """Pairwise accuracy of precomputed scores on ``pairs_csv``.

    ``model_scores`` maps a path to a score; keys may be the resolved paths (as :func:`read_pairs`
    gives them) or the paths exactly as written in the CSV (relative to its folder).
    """
    root = Path(pairs_csv).parent
    lookup = {str(k): float(v) for k, v in model_scores.items()}

    def score(path: str) -> float:
        if path in lookup:
            return lookup[path]
        rel = str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else path
        if rel in lookup:
            return lookup[rel]
        raise DataError(f"no score for {path}")

    return pairwise_accuracy(read_pairs(pairs_csv), score)


def pair_paths(pairs: Sequence[Pair]) -> list[str]:
    """Every distinct image path in ``pairs``, in first-seen order."""
    return list(dict.fromkeys(p for pair in pairs for p in (pair.original, pair.degraded)))


def laplacian_scores(paths: Sequence[str]) -> dict[str, float]:
    """The Laplacian-variance baseline score of each image."""
    from aescore.data.images import load_rgb

    return {p: laplacian_sharpness(load_rgb(p)) for p in paths}


def model_scores(
    paths: Sequence[str],
    model_spec: str | None,
    batch_size: int = 32,
    device: str = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Score ``paths`` with a model (name, card or weights path; None = the default model).

    Returns ``({path: P(high quality)}, card)``: the one-pass recipe of ``aescore score`` (a
    :class:`~aescore.inference.scorer.Scorer`, no cache), decoding every image at full resolution.
    ``on_progress(done, total)`` follows each batch; ``workers`` decode processes (None: automatic).
    Raises :class:`ImageDecodeError` for an image that cannot be decoded: every pair must count.
    """
    from aescore.inference.scorer import Scorer

    # draft=False: judge every photo at full resolution, as this metric always has; JPEG draft
    # scaling of a large photo would soften the very blur and noise being compared.
    scorer = Scorer(model_spec, device=device, batch_size=batch_size, workers=workers, draft=False)
    scorer.load()  # verify the weights even when there is nothing to score
    scores: dict[str, float] = {}
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, len(paths))

    for result in scorer.score_paths(paths, progress=advance):
        if result.score is None:
            raise ImageDecodeError(result.path, result.reason or "cannot decode")
        scores[result.path] = result.score
    return scores, scorer.card
