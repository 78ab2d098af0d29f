"""Planning a review queue in active-learning order: the candidates from the store's summaries,
re-ordered by the strategies of ``model.active_learning`` on the version's probabilities.

The candidates' probabilities are recomputed from their cached embeddings (one small matrix
product), not read back from the predictions table: at 120 classes that is 240k rows sought one
by one, 10 s at 100k images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from sqlalchemy import select

from db.models import Annotation
from mumic_core.model.active_learning import POOL, select_batch
from mumic_core.pipeline.scoring import Scorer, image_embeddings, load_scorer
from mumic_core.store.classes import ClassInfo, active_classes
from mumic_core.store.collection import human_positives_per_class
from mumic_core.store.queue import QueueFilter, queue_page, thresholds_for
from mumic_core.store.registry import get_version
from mumic_core.store.studio import Studio


def order_queue(
    studio: Studio, f: QueueFilter, weights: Mapping[str, float], pool: int = POOL, seed: int = 0
) -> list[int]:
    """Image ids of the review queue ``f`` (a ``review.QueueFilter``) in active-learning order:
    the ``pool`` most uncertain images by the stored summaries, re-ordered by the weighted
    strategies on the version's probabilities, thresholds and image embeddings."""
    candidates = queue_page(studio, replace(f, sort="priority"), 0, pool)
    if not candidates or f.version_id is None:
        return candidates
    classes = active_classes(studio)
    version = get_version(studio, f.version_id)
    scorer = load_scorer(studio, version)
    if scorer.head is None:  # not scored yet: there is nothing to plan with
        return candidates
    emb, prob = candidate_probabilities(studio, scorer, candidates, classes)
    diverse = weights.get("diversity", 0) > 0
    per_class = human_positives_per_class(studio)
    with studio.read() as s:
        seen = (
            list(s.scalars(select(Annotation.image_id).where(Annotation.is_current.is_(True)).distinct().limit(pool)))
            if diverse
            else []
        )
    thr = thresholds_for(scorer.head.thresholds, [c.name for c in classes])
    thresholds = np.array([thr[c.name] for c in classes], dtype=np.float32)
    positives = np.array([per_class.get(c.id, 0) for c in classes], dtype=np.float64)
    labelled_emb = image_embeddings(studio, scorer, seen) if seen else None
    order = select_batch(
        prob, thresholds, len(candidates), weights, emb if diverse else None, labelled_emb, positives, seed
    )
    return [candidates[k] for k in order]


def candidate_probabilities(
    studio: Studio, scorer: Scorer, image_ids: list[int], classes: list[ClassInfo]
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, probabilities) of some scored images, as the version's scoring computed them."""
    emb = image_embeddings(studio, scorer, image_ids)
    cls = scorer.class_matrix([c.name for c in classes], [c.prompt_texts for c in classes])
    return emb, scorer.head.probabilities(emb @ cls.T, [c.name for c in classes]).astype(np.float32)
