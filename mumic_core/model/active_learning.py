"""Active learning: which unreviewed images should people look at next.

Each strategy scores candidate images (higher = look sooner) from the active version's
probabilities, its per-class decision thresholds and the image embeddings:

- ``uncertainty``: some class's probability is close to that class's threshold;
- ``entropy``: the mean binary entropy of the classes' probabilities;
- ``rare``: a likely positive of a class with few human positives so far;
- ``diversity``: far from what is already labelled (k-centre greedy on the embeddings);
- ``random``.

Strategies mix with weights: each one's scores become ranks in [0, 1] before weighting, so
no strategy dominates by its scale. ``select`` returns the batch to review, best first.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

STRATEGIES = ("uncertainty", "entropy", "rare", "diversity", "random")
# The mix that needed the fewest labels in benchmarks/active_learning.py (results/active_learning.md).
DEFAULT_WEIGHTS = {"uncertainty": 1.0, "rare": 1.0, "diversity": 1.0}
POOL = 2000  # the queue's most uncertain images that the strategies re-order


def uncertainty(prob: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """1 when some class sits exactly on its threshold, 0 when every class is at 0 or 1. The
    distance to a threshold counts as a share of the room on that side of it."""
    t = np.clip(thresholds, 1e-6, 1 - 1e-6)[None, :]
    below = prob < t
    distance = np.where(below, (t - prob) / t, (prob - t) / (1.0 - t))
    return 1.0 - distance.min(axis=1)


def entropy(prob: np.ndarray) -> np.ndarray:
    """Mean binary entropy over classes, in bits."""
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=1)


def rare_class_boost(prob: np.ndarray, positives_per_class: np.ndarray) -> np.ndarray:
    """The best probability weighted by 1/sqrt(1 + human positives of that class)."""
    weight = 1.0 / np.sqrt(1.0 + np.asarray(positives_per_class, dtype=np.float64))
    return (prob * weight[None, :]).max(axis=1)


def k_center_greedy(candidates: np.ndarray, labelled: np.ndarray, k: int) -> list[int]:
    """Indices of ``k`` candidates chosen one by one, each the farthest (cosine) from everything
    labelled or chosen before it (Sener & Savarese's core-set selection)."""
    if len(candidates) == 0 or k <= 0:
        return []
    if len(labelled):
        nearest = 1.0 - (candidates @ labelled.T).max(axis=1)
    else:
        nearest = np.full(len(candidates), np.inf)
    chosen: list[int] = []
    # Up to a few thousand candidates, one matrix product up front makes each pick O(n).
    gram = candidates @ candidates.T if len(candidates) <= 4096 else None
    for _ in range(min(k, len(candidates))):
        i = int(np.argmax(nearest))
        chosen.append(i)
        np.minimum(nearest, 1.0 - (gram[i] if gram is not None else candidates @ candidates[i]), out=nearest)
        nearest[i] = -np.inf  # stays the minimum from now on
    return chosen


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Scores as ranks in [0, 1] (ties share the lowest rank)."""
    if len(scores) <= 1:
        return np.ones(len(scores))
    order = np.argsort(np.argsort(scores, kind="stable"), kind="stable")
    return order / (len(scores) - 1)


def select_batch(
    prob: np.ndarray,
    thresholds: np.ndarray,
    batch: int,
    weights: Mapping[str, float],
    embeddings: np.ndarray | None = None,
    labelled_embeddings: np.ndarray | None = None,
    positives_per_class: np.ndarray | None = None,
    seed: int = 0,
) -> list[int]:
    """Row indices of the ``batch`` candidates to review next, by a weighted mix of strategies."""
    unknown = set(weights) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategies: {', '.join(sorted(unknown))}; use {', '.join(STRATEGIES)}")
    n = len(prob)
    if n == 0 or batch <= 0:
        return []
    total = np.zeros(n)
    rng = np.random.default_rng(seed)
    for name, w in weights.items():
        if w <= 0:
            continue
        if name == "uncertainty":
            s = uncertainty(prob, thresholds)
        elif name == "entropy":
            s = entropy(prob)
        elif name == "rare":
            s = rare_class_boost(
                prob, positives_per_class if positives_per_class is not None else np.zeros(prob.shape[1])
            )
        elif name == "diversity":
            if embeddings is None:
                raise ValueError("the diversity strategy needs the images' embeddings")
            order = k_center_greedy(
                embeddings,
                labelled_embeddings if labelled_embeddings is not None else np.zeros((0, embeddings.shape[1])),
                n,
            )
            s = np.empty(n)
            s[order] = np.arange(n, 0, -1)
        else:
            s = rng.random(n)
        total += w * _ranks(s)
    return [int(i) for i in np.argsort(-total, kind="stable")[:batch]]
