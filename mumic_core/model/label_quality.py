"""Which labels look wrong: out-of-fold probabilities on frozen embeddings, and cleanlab's
multi-label label-quality ranking. Arrays in, arrays and indices out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class

from mumic_core.model import fitting
from mumic_core.model.fitting import HeadFit


def cross_validated_probabilities(
    emb: np.ndarray,
    text: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    names: list[str],
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(N, C) probabilities, each image's from a head (``fitting.fit_head``) trained on the other folds."""
    n = len(targets)
    if n < 2 * folds:
        raise ValueError(f"need at least {2 * folds} labelled images for {folds}-fold cross-validation, have {n}")
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    probs = np.zeros(targets.shape, dtype=np.float32)
    fit = HeadFit(steps=150)
    for f in range(folds):
        train_rows, held = np.where(fold_of != f)[0], np.where(fold_of == f)[0]
        head, _ = fitting.fit_head(emb[train_rows], text, targets[train_rows], mask[train_rows], names, fit)
        probs[held] = head.probabilities(emb[held] @ head.class_matrix(names, text).T, names)
        if progress:
            progress(f + 1)
    return probs


def rank_suspects(targets: np.ndarray, mask: np.ndarray, probs: np.ndarray) -> list[tuple[int, int, float]]:
    """(row, column, label quality) of the labelled pairs whose label disagrees with the
    probability, most suspicious first, by cleanlab's per-class label-quality scores (each
    class a binary problem; self-confidence). Unlabelled pairs count as absent for cleanlab and
    are never reported. (Ranking pairs directly finds about twice as many injected errors in its
    top k as ranking images first: ``benchmarks/active_learning.py``.)"""
    given = [[int(c) for c in np.where((targets[r] > 0) & (mask[r] > 0))[0]] for r in range(len(targets))]
    quality = np.asarray(get_label_quality_scores_per_class(given, np.clip(probs, 1e-6, 1 - 1e-6)))
    if quality.shape != targets.shape:  # cleanlab returns (N, C); be explicit if that changes
        quality = quality.T
    disagree = (np.abs(targets - probs) > 0.5) & (mask > 0)
    rows, cols = np.nonzero(disagree)
    order = np.argsort(quality[rows, cols], kind="stable")
    return [(int(rows[k]), int(cols[k]), float(quality[rows[k], cols[k]])) for k in order]
