"""Human labels that are likely wrong, from out-of-sample predictions and cleanlab.

Each labelled image gets probabilities from a head trained without it (k-fold cross-validation
on the cached embeddings of the active version's encoder). cleanlab's multi-label label-quality
scores, per class, rank the labelled image-class pairs that disagree with that probability; the
most suspicious are shown to a person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from db.models import ModelVersion

from .scoring import image_embeddings, load_scorer
from .studio import Studio


@dataclass
class Suspect:
    image_id: int
    class_id: int
    class_name: str
    given: bool  # the current human label
    probability: float  # out-of-sample probability that the class is present
    label_quality: float  # cleanlab's quality score of this label (low = suspicious)


def cross_validated_probabilities(emb: np.ndarray, text: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                                  names: list[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """(N, C) probabilities, each image's from a head (``training.fit_head``) trained on the other folds."""
    from . import training

    n = len(targets)
    if n < 2 * folds:
        raise ValueError(f"need at least {2 * folds} labelled images for {folds}-fold cross-validation, have {n}")
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    probs = np.zeros(targets.shape, dtype=np.float32)
    config = training.TrainConfig(mode="head", epochs=150, seed=seed)
    for f in range(folds):
        train_rows, held = np.where(fold_of != f)[0], np.where(fold_of == f)[0]
        head, _ = training.fit_head(emb[train_rows], text, targets[train_rows], mask[train_rows], names, config)
        probs[held] = head.probabilities(emb[held] @ head.class_matrix(names, text).T, names)
    return probs


def out_of_sample_probabilities(studio: Studio, version: ModelVersion, folds: int = 5, seed: int = 0):
    """(labels, probabilities): every human-labelled image scored by a head trained on the other folds."""
    from .training import LabelSet, gather_labels

    labels: LabelSet = gather_labels(studio)
    if len(labels.image_ids) < 2 * folds:
        raise ValueError(f"need at least {2 * folds} labelled images for {folds}-fold cross-validation, "
                         f"have {len(labels.image_ids)}")
    scorer = load_scorer(studio, version)
    emb = image_embeddings(studio, scorer, list(zip(labels.image_ids, labels.paths)))
    text = scorer.text_embeddings([c.prompt_texts for c in labels.classes])
    probs = cross_validated_probabilities(emb, text, labels.targets, labels.mask, [c.name for c in labels.classes],
                                          folds, seed)
    return labels, probs


def rank_suspects(targets: np.ndarray, mask: np.ndarray, probs: np.ndarray) -> list[tuple[int, int, float]]:
    """(row, column, label quality) of the labelled pairs whose label disagrees with the
    probability, most suspicious first, by cleanlab's per-class label-quality scores (each
    class a binary problem; self-confidence). Unlabelled pairs count as absent for cleanlab and
    are never reported. (Ranking pairs directly finds about twice as many injected errors in its
    top k as ranking images first: ``benchmarks/active_learning.py``.)"""
    from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class

    given = [[int(c) for c in np.where((targets[r] > 0) & (mask[r] > 0))[0]] for r in range(len(targets))]
    quality = np.asarray(get_label_quality_scores_per_class(given, np.clip(probs, 1e-6, 1 - 1e-6)))
    if quality.shape != targets.shape:  # cleanlab returns (N, C); be explicit if that changes
        quality = quality.T
    disagree = (np.abs(targets - probs) > 0.5) & (mask > 0)
    rows, cols = np.nonzero(disagree)
    order = np.argsort(quality[rows, cols], kind="stable")
    return [(int(rows[k]), int(cols[k]), float(quality[rows[k], cols[k]])) for k in order]


def suspicious_labels(studio: Studio, version: ModelVersion, limit: int = 200, folds: int = 5) -> list[Suspect]:
    """The human labels most likely to be wrong, most suspicious first."""
    labels, probs = out_of_sample_probabilities(studio, version, folds)
    return [Suspect(labels.image_ids[r], labels.classes[c].id, labels.classes[c].name, bool(labels.targets[r, c]),
                    float(probs[r, c]), q)
            for r, c, q in rank_suspects(labels.targets, labels.mask, probs)[:limit]]
