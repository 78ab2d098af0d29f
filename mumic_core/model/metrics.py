"""Multi-label evaluation metrics: GAP, mAP, thresholded F1 and calibration.

Inputs are ``scores`` (N, C) floats and ``truth`` (N, C) in {0, 1}.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve


def _check(scores: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert to float scores and int truth of the same 2-D shape."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores and truth must be 2-D with equal shapes, got {s.shape} and {t.shape}")
    return s, (t > 0).astype(np.int64)


def global_average_precision(scores: Any, truth: Any, top_k: int | None = 10) -> float:
    """Global Average Precision as in the YouTube-8M evaluation.

    Each image contributes its ``top_k`` highest-scored (score, label) pairs (all C
    when ``top_k`` is None); the pairs of the whole collection are pooled and ranked
    by descending score, and ``AP = sum_i precision@i * delta_recall_i``, with recall
    over ALL positives in ``truth`` (including those outside every top-k list).
    Ties keep a stable order: within an image by class index, then by image order.
    Returns 0.0 when there are no positives.
    """
    s, t = _check(scores, truth)
    n_pos = int(t.sum())
    if n_pos == 0:
        return 0.0
    k = s.shape[1] if top_k is None else top_k
    if k <= 0:
        raise ValueError(f"top_k must be positive or None, got {top_k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    pooled_scores = np.take_along_axis(s, top, axis=1).ravel()
    pooled_labels = np.take_along_axis(t, top, axis=1).ravel()
    order = np.argsort(-pooled_scores, kind="stable")
    labels = pooled_labels[order]
    hits = np.cumsum(labels)
    precision = hits / np.arange(1, labels.size + 1)
    return float(np.sum(precision * labels) / n_pos)


def gap_at_k(scores: Any, truth: Any, k: int = 10) -> float:
    """GAP over each image's top-k predictions."""
    return global_average_precision(scores, truth, top_k=k)


def gap(scores: Any, truth: Any) -> float:
    """GAP over all predictions (no top-k cut)."""
    return global_average_precision(scores, truth, top_k=None)


def per_class_average_precision(scores: Any, truth: Any) -> np.ndarray:
    """Average precision per class (sklearn); NaN for classes without a positive."""
    s, t = _check(scores, truth)
    ap = np.full(s.shape[1], np.nan)
    for c in np.flatnonzero(t.sum(axis=0) > 0):
        ap[c] = average_precision_score(t[:, c], s[:, c])
    return ap


def mean_average_precision(scores: Any, truth: Any, min_positives: int = 1) -> float:
    """Macro mAP over classes with at least ``min_positives`` positives (NaN if none)."""
    s, t = _check(scores, truth)
    selected = t.sum(axis=0) >= max(min_positives, 1)
    if not selected.any():
        return float("nan")
    return float(np.mean(per_class_average_precision(s, t)[selected]))


def shuffled_chance(
    scores: Any, truth: Any, metric: Callable[[np.ndarray, np.ndarray], float], n_shuffles: int = 200, seed: int = 0
) -> dict[str, float]:
    """What ``metric`` gives by chance on these labels: each class's scores shuffled among the
    images, ``n_shuffles`` times. Returns the mean and the 99th percentile; a model whose metric
    is above that percentile ranks better than chance with 99 % confidence."""
    s, t = _check(scores, truth)
    rng = np.random.default_rng(seed)
    values = [metric(rng.permuted(s, axis=0), t) for _ in range(n_shuffles)]
    return {"mean": float(np.mean(values)), "p99": float(np.percentile(values, 99))}


def tune_thresholds(scores: Any, truth: Any) -> np.ndarray:
    """Per-class threshold maximising F1 (predict ``score >= threshold``).

    Classes without a positive get 0.5.
    """
    s, t = _check(scores, truth)
    thresholds = np.full(s.shape[1], 0.5)
    for c in np.flatnonzero(t.sum(axis=0) > 0):
        precision, recall, thr = precision_recall_curve(t[:, c], s[:, c])
        p, r = precision[: len(thr)], recall[: len(thr)]
        denom = p + r
        f1 = np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
        thresholds[c] = thr[int(np.argmax(f1))]
    return thresholds


def f1_at_thresholds(scores: Any, truth: Any, thresholds: Any) -> dict[str, float]:
    """Macro and micro F1 of ``score >= threshold`` predictions.

    Macro F1 averages over classes with at least one positive (consistent with mAP);
    micro F1 pools all classes, so false positives on empty classes count.
    """
    s, t = _check(scores, truth)
    pred = (s >= np.asarray(thresholds, dtype=np.float64)).astype(np.int64)
    labelled = np.flatnonzero(t.sum(axis=0) > 0)
    macro = f1_score(t, pred, average="macro", labels=labelled, zero_division=0) if labelled.size else 0.0
    micro = f1_score(t, pred, average="micro", zero_division=0)
    return {"f1_macro": float(macro), "f1_micro": float(micro)}


def expected_calibration_error(probs: Any, truth: Any, n_bins: int = 15) -> float:
    """ECE over all entries with ``n_bins`` equal-width probability bins on [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), 0.0, 1.0)
    y = (np.asarray(truth).ravel() > 0).astype(np.float64)
    if p.size != y.size:
        raise ValueError("probs and truth must have the same number of entries")
    if p.size == 0:
        return 0.0
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        sel = bins == b
        ece += sel.sum() / p.size * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def _json_float(x: float) -> float | None:
    """Float, or None for NaN (JSON has no NaN)."""
    return None if math.isnan(x) else float(x)


def evaluate(
    scores: Any,
    truth: Any,
    class_names: list[str] | None = None,
    majority_min_positives: int = 5,
    thresholds: Any = None,
) -> dict[str, Any]:
    """All metrics as a JSON-serialisable dict (NaN becomes None)."""
    s, t = _check(scores, truth)
    names = class_names if class_names is not None else [str(c) for c in range(s.shape[1])]
    if len(names) != s.shape[1]:
        raise ValueError(f"{len(names)} class names for {s.shape[1]} classes")
    ap = per_class_average_precision(s, t)
    result: dict[str, Any] = {
        "gap_at_10": gap_at_k(s, t, 10),
        "gap": gap(s, t),
        "map": _json_float(mean_average_precision(s, t, 1)),
        "map_majority": _json_float(mean_average_precision(s, t, majority_min_positives)),
        "per_class_ap": {name: _json_float(v) for name, v in zip(names, ap)},
        "n_images": int(s.shape[0]),
        "n_classes": int(s.shape[1]),
        "n_positives": int(t.sum()),
    }
    if thresholds is not None:
        result.update(f1_at_thresholds(s, t, thresholds))
    return result
