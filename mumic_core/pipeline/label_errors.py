"""Human labels that are likely wrong, from out-of-sample predictions and cleanlab.

Each labelled image gets probabilities from a head trained without it (k-fold cross-validation
on the cached embeddings of the active version's encoder). cleanlab's multi-label label-quality
scores, per class, rank the labelled image-class pairs that disagree with that probability; the
most suspicious are shown to a person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from db.models import ModelVersion

from mumic_core.pipeline.scoring import image_embeddings, load_scorer
from mumic_core.store.studio import Studio


@dataclass
class Suspect:
    image_id: int
    class_id: int
    class_name: str
    given: bool  # the current human label
    probability: float  # out-of-sample probability that the class is present
    label_quality: float  # cleanlab's quality score of this label (low = suspicious)


# Up to this many labelled images the Review page cross-validates at once (seconds); above, the
# worker does it as a "label_errors" job and the page offers the result when it is ready.
INLINE_LABELLED_IMAGES = 2000


def cross_validated_probabilities(emb: np.ndarray, text: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                                  names: list[str], folds: int = 5, seed: int = 0,
                                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, C) probabilities, each image's from a head (``training.fit_head``) trained on the other folds."""
    import mumic_core.pipeline.training as training

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
        if progress:
            progress(f + 1)
    return probs


def out_of_sample_probabilities(studio: Studio, version: ModelVersion, folds: int = 5, seed: int = 0,
                                progress: Callable[[int], None] | None = None):
    """(labels, probabilities): every human-labelled image scored by a head trained on the other folds."""
    from mumic_core.pipeline.training import LabelSet, gather_labels

    labels: LabelSet = gather_labels(studio)
    scorer = load_scorer(studio, version)
    emb = image_embeddings(studio, scorer, labels.image_ids)
    text = scorer.text_embeddings([c.prompt_texts for c in labels.classes])
    probs = cross_validated_probabilities(emb, text, labels.targets, labels.mask, [c.name for c in labels.classes],
                                          folds, seed, progress)
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


def suspicious_labels(studio: Studio, version: ModelVersion, limit: int = 200, folds: int = 5,
                      progress: Callable[[int], None] | None = None) -> list[Suspect]:
    """The human labels most likely to be wrong, most suspicious first (``progress`` gets the
    number of folds done)."""
    labels, probs = out_of_sample_probabilities(studio, version, folds, progress=progress)
    return [Suspect(labels.image_ids[r], labels.classes[c].id, labels.classes[c].name, bool(labels.targets[r, c]),
                    float(probs[r, c]), q)
            for r, c, q in rank_suspects(labels.targets, labels.mask, probs)[:limit]]


def run_label_errors_job(studio: Studio, params: dict, report) -> dict:
    """The worker's "label_errors" job: ``suspicious_labels`` for ``params['version_id']``."""
    from mumic_core.store.registry import get_version

    version = get_version(studio, int(params["version_id"]))
    folds = int(params.get("folds", 5))
    report("cross-validating", 0.0, {"folds": folds})
    found = suspicious_labels(studio, version, limit=int(params.get("limit", 200)), folds=folds,
                              progress=lambda done: report("cross-validating", done / folds,
                                                           {"fold": done, "folds": folds}))
    return {"version_id": version.id, "suspects": [asdict(x) for x in found]}


def suspects_of_job(result: dict) -> list[Suspect]:
    """The suspects a finished "label_errors" job found."""
    return [Suspect(**x) for x in result.get("suspects", [])]


def labelled_image_count(studio: Studio) -> int:
    """Images with at least one current human label."""
    from sqlalchemy import distinct, func, select

    from db.models import Annotation

    with studio.read() as s:
        return s.scalar(select(func.count(distinct(Annotation.image_id))).where(Annotation.is_current.is_(True))) or 0
