"""Planning a review queue in active-learning order: the candidates from the store's summaries,
re-ordered by the strategies of ``model.active_learning`` on the version's probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from sqlalchemy import func, select

from db.models import Annotation, Prediction
from mumic_core.model.active_learning import POOL, select_batch
from mumic_core.pipeline.scoring import image_embeddings, load_scorer
from mumic_core.store.classes import active_classes
from mumic_core.store.queue import QueueFilter, queue_page, thresholds_for
from mumic_core.store.registry import get_version, load_head
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
    col = {c.id: k for k, c in enumerate(classes)}
    row = {i: k for k, i in enumerate(candidates)}
    prob = np.zeros((len(candidates), len(classes)), dtype=np.float32)
    with studio.read() as s:
        for i, c, p in s.execute(
            select(Prediction.image_id, Prediction.class_id, Prediction.score).where(
                Prediction.of_images(f.version_id, candidates)
            )
        ):
            if c in col:
                prob[row[i], col[c]] = p
        per_class = dict(
            s.execute(
                select(Annotation.class_id, func.count())
                .where(Annotation.is_current.is_(True), Annotation.positive.is_(True))
                .group_by(Annotation.class_id)
            ).all()
        )
        seen = (
            list(s.scalars(select(Annotation.image_id).where(Annotation.is_current.is_(True)).distinct().limit(pool)))
            if weights.get("diversity", 0) > 0
            else []
        )
    version = get_version(studio, f.version_id)
    head = load_head(studio, version)
    thr = thresholds_for(head.thresholds if head else None, [c.name for c in classes])
    thresholds = np.array([thr[c.name] for c in classes], dtype=np.float32)
    positives = np.array([per_class.get(c.id, 0) for c in classes], dtype=np.float64)
    emb = labelled_emb = None
    if weights.get("diversity", 0) > 0:
        scorer = load_scorer(studio, version)
        emb = image_embeddings(studio, scorer, candidates)
        labelled_emb = image_embeddings(studio, scorer, seen) if seen else None
    order = select_batch(prob, thresholds, len(candidates), weights, emb, labelled_emb, positives, seed)
    return [candidates[k] for k in order]
