"""Multi-label evaluation metrics: GAP, mAP, thresholded F1 and calibration.

Inputs are ``scores`` (N, C) floats and ``truth`` (N, C) in {0, 1}; an optional ``mask`` (N, C)
marks the pairs whose truth is known: unknown pairs (nobody judged them) are left out, never
counted as negatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


def _check(scores: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert to float scores and int truth of the same 2-D shape."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores and truth must be 2-D with equal shapes, got {s.shape} and {t.shape}")
    return s, (t > 0).astype(np.int64)


def _known(s: np.ndarray, mask: Any) -> np.ndarray:
    if mask is None:
        return np.ones(s.shape, dtype=bool)
    m = np.asarray(mask) > 0
    if m.shape != s.shape:
        raise ValueError(f"mask must have the scores' shape {s.shape}, got {m.shape}")
    return m


def global_average_precision(scores: Any, truth: Any, top_k: int | None = 10, mask: Any = None) -> float:
    """Global Average Precision as in the YouTube-8M evaluation.

    Each image contributes its ``top_k`` highest-scored (score, label) pairs (all C
    when ``top_k`` is None); the pairs of the whole collection are pooled and ranked
    by descending score, and ``AP = sum_i precision@i * delta_recall_i``, with recall
    over ALL positives in ``truth`` (including those outside every top-k list).
    Ties keep a stable order: within an image by class index, then by image order.
    Unknown pairs (``mask`` 0) never enter a top-k list. Returns 0.0 when there are no positives.
    """
    s, t = _check(scores, truth)
    known = _known(s, mask)
    s, t = np.where(known, s, -np.inf), np.where(known, t, 0)
    n_pos = int(t.sum())
    if n_pos == 0:
        return 0.0
    k = s.shape[1] if top_k is None else top_k
    if k <= 0:
        raise ValueError(f"top_k must be positive or None, got {top_k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    pooled_scores = np.take_along_axis(s, top, axis=1).ravel()
    pooled_labels = np.take_along_axis(t, top, axis=1).ravel()
    pooled_labels, pooled_scores = pooled_labels[np.isfinite(pooled_scores)], pooled_scores[np.isfinite(pooled_scores)]
    order = np.argsort(-pooled_scores, kind="stable")
    labels = pooled_labels[order]
    hits = np.cumsum(labels)
    precision = hits / np.arange(1, labels.size + 1)
    return float(np.sum(precision * labels) / n_pos)


def gap_at_k(scores: Any, truth: Any, k: int = 10, mask: Any = None) -> float:
    """GAP over each image's top-k predictions."""
    return global_average_precision(scores, truth, top_k=k, mask=mask)


def gap(scores: Any, truth: Any, mask: Any = None) -> float:
    """GAP over all predictions (no top-k cut)."""
    return global_average_precision(scores, truth, top_k=None, mask=mask)


def per_class_average_precision(scores: Any, truth: Any, mask: Any = None) -> np.ndarray:
    """Average precision per class over its known pairs (sklearn); NaN for classes without a positive."""
    s, t = _check(scores, truth)
    known = _known(s, mask)
    t = np.where(known, t, 0)
    ap = np.full(s.shape[1], np.nan)
    for c in np.flatnonzero(t.sum(axis=0) > 0):
        rows = known[:, c]
        ap[c] = average_precision_score(t[rows, c], s[rows, c])
    return ap


def mean_average_precision(scores: Any, truth: Any, min_positives: int = 1, mask: Any = None) -> float:
    """Macro mAP over classes with at least ``min_positives`` positives (NaN if none)."""
    s, t = _check(scores, truth)
    t = np.where(_known(s, mask), t, 0)
    selected = t.sum(axis=0) >= max(min_positives, 1)
    if not selected.any():
        return float("nan")
    return float(np.mean(per_class_average_precision(s, t, mask)[selected]))


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


def tune_thresholds(scores: Any, truth: Any, mask: Any = None) -> np.ndarray:
    """Per-class threshold maximising F1 on the known pairs (predict ``score >= threshold``).

    Classes without a positive get 0.5.
    """
    s, t = _check(scores, truth)
    known = _known(s, mask)
    t = np.where(known, t, 0)
    thresholds = np.full(s.shape[1], 0.5)
    for c in np.flatnonzero(t.sum(axis=0) > 0):
        precision, recall, thr = precision_recall_curve(t[known[:, c], c], s[known[:, c], c])
        p, r = precision[: len(thr)], recall[: len(thr)]
        denom = p + r
        f1 = np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
        thresholds[c] = thr[int(np.argmax(f1))]
    return thresholds


def f1_at_thresholds(scores: Any, truth: Any, thresholds: Any, mask: Any = None) -> dict[str, float]:
    """Macro and micro F1 of ``score >= threshold`` predictions on the known pairs.

    Macro F1 averages over classes with at least one positive (consistent with mAP);
    micro F1 pools all classes, so false positives on empty classes count.
    """
    s, t = _check(scores, truth)
    known = _known(s, mask)
    t = np.where(known, t, 0)
    pred = (s >= np.asarray(thresholds, dtype=np.float64)) & known
    tp = (pred & (t > 0)).sum(axis=0)
    fp = (pred & (t == 0)).sum(axis=0)
    fn = (~pred & (t > 0) & known).sum(axis=0)
    labelled = t.sum(axis=0) > 0
    per_class = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(tp)), where=(2 * tp + fp + fn) > 0)
    macro = float(per_class[labelled].mean()) if labelled.any() else 0.0
    total = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / total) if total else 0.0
    return {"f1_macro": macro, "f1_micro": micro}


def cross_fitted_f1(scores: Any, truth: Any, mask: Any = None, folds: int = 2, seed: int = 0) -> dict[str, float]:
    """F1 at per-class thresholds tuned on other images than those it is measured on: the images
    are split into ``folds`` parts, each part's predictions use thresholds tuned on the rest, and
    the F1 of the pooled predictions is reported (so the reported number is not the maximum found
    on the same data)."""
    s, t = _check(scores, truth)
    known = _known(s, mask)
    if len(s) < 2 * folds:
        return {"f1_macro": float("nan"), "f1_micro": float("nan")}
    part = np.random.default_rng(seed).permutation(len(s)) % folds
    thresholds = np.zeros_like(s)
    for k in range(folds):
        rest = part != k
        thresholds[part == k] = tune_thresholds(s[rest], t[rest], known[rest])
    pred_minus_thr = s - thresholds  # predict where >= 0
    return f1_at_thresholds(pred_minus_thr, t, np.zeros(s.shape[1]), known)


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
    f1: bool = False,
    mask: Any = None,
) -> dict[str, Any]:
    """All metrics as a JSON-serialisable dict (NaN becomes None), on the known pairs. With
    ``f1``, F1 at per-class thresholds, cross-fitted (:func:`cross_fitted_f1`): thresholds tuned
    on these very scores would report their own best case."""
    s, t = _check(scores, truth)
    known = _known(s, mask)
    t = np.where(known, t, 0)
    names = class_names if class_names is not None else [str(c) for c in range(s.shape[1])]
    if len(names) != s.shape[1]:
        raise ValueError(f"{len(names)} class names for {s.shape[1]} classes")
    ap = per_class_average_precision(s, t, known)
    result: dict[str, Any] = {
        "gap_at_10": gap_at_k(s, t, 10, known),
        "gap": gap(s, t, known),
        "map": _json_float(mean_average_precision(s, t, 1, known)),
        "map_majority": _json_float(mean_average_precision(s, t, majority_min_positives, known)),
        "per_class_ap": {name: _json_float(v) for name, v in zip(names, ap)},
        "n_images": int(s.shape[0]),
        "n_classes": int(s.shape[1]),
        "n_positives": int(t.sum()),
        "n_known_pairs": int(known.sum()),
    }
    if f1:
        result.update({k: _json_float(v) for k, v in cross_fitted_f1(s, t, known).items()})
    return result
