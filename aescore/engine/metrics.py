"""The papers' evaluation metrics, computed with scikit-learn and scipy.

Accuracy and balanced accuracy of the binary aesthetic label, average precision (AP) of the
high-aesthetics class ranked by P(high) (RGNet's Table 1), Spearman's rank correlation (SRCC, the
AADB metric) and Pearson's linear correlation (LCC) between the prediction and the mean human
score, and the 2 x 2 confusion matrix. A metric that is undefined for the given data (AP without a
positive, a correlation of a constant) is ``None`` rather than NaN, so reports stay valid JSON.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def classification_metrics(p_high: Sequence[float], labels: Sequence[int], decision: float = 0.5) -> dict[str, Any]:
    """Accuracy, balanced accuracy, AP of class 1 and the confusion matrix.

    ``p_high`` is P(high aesthetics) per image, ``labels`` the 0/1 ground truth; an image is
    predicted high when ``p_high > decision`` (0.5: the argmax of a 2-way softmax). The confusion
    matrix is ``[[true 0 -> pred 0, true 0 -> pred 1], [true 1 -> pred 0, true 1 -> pred 1]]``.
    """
    from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, confusion_matrix

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(p_high, dtype=np.float64)
    if y.size == 0:
        return {"accuracy": None, "balanced_accuracy": None, "average_precision": None, "confusion_matrix": None}
    pred = (p > decision).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-class inputs: reported as None below, not warned about
        balanced = balanced_accuracy_score(y, pred) if len(np.unique(y)) > 1 else None
        ap = average_precision_score(y, p) if (y == 1).any() else None
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": None if balanced is None else _finite_or_none(balanced),
        "average_precision": None if ap is None else _finite_or_none(ap),
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }


def correlation_metrics(prediction: Sequence[float], target: Sequence[float]) -> dict[str, float | None]:
    """SRCC (Spearman's rho) and LCC (Pearson's r) between prediction and human mean score."""
    from scipy.stats import pearsonr, spearmanr

    x = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"srcc": None, "lcc": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srcc = spearmanr(x, y).statistic
        lcc = pearsonr(x, y).statistic
    return {"srcc": _finite_or_none(srcc), "lcc": _finite_or_none(lcc)}


def compute_metrics(
    p_high: Sequence[float],
    targets: Sequence[float],
    labels: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """Every metric for one split: classification ones where all images have a label, plus SRCC/LCC.

    ``targets`` is the mean human score (AVA: 1..10; AADB: 0..1); ``labels`` the binary label
    (None entries, e.g. pure regression data, skip the classification metrics).
    """
    out: dict[str, Any] = {"n_images": int(len(p_high))}
    if labels is not None and len(labels) and all(label is not None for label in labels):
        out.update(classification_metrics(p_high, [int(label) for label in labels]))  # type: ignore[arg-type]
    else:
        out.update({"accuracy": None, "balanced_accuracy": None, "average_precision": None, "confusion_matrix": None})
    out.update(correlation_metrics(p_high, targets))
    return out


def selection_metric(metrics: dict[str, Any], task: str) -> float | None:
    """The number that picks the best epoch: accuracy for classification, SRCC for regression."""
    return metrics.get("srcc") if task == "regression" else metrics.get("accuracy")
