"""What exports to other tools share: every image, its present classes (for images people
labelled), and the active version's scores and thresholds, read in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from db.models import Annotation, Image, LabelClass
from mumic_core.store.queue import thresholds_for
from mumic_core.store.registry import VersionInfo, active_version, load_head
from mumic_core.store.scores import score_matrix
from mumic_core.store.studio import Studio


@dataclass(frozen=True)
class Snapshot:
    """``images``: (id, original name, relpath) by id; ``present``: the classes people marked
    present, for each image with any current label (an empty list: all absent); ``scores``: the
    active version's probability per class, per scored image."""

    classes: list[str]
    images: list[tuple[int, str, str]]
    present: dict[int, list[str]]
    scores: dict[int, dict[str, float]]
    thresholds: dict[str, float]
    version: VersionInfo | None


def collection_snapshot(studio: Studio, with_scores: bool = True) -> Snapshot:
    """The active classes (in the order they were made), every image, people's present classes,
    and (``with_scores``) the active version's scores with its per-class thresholds."""
    version = active_version(studio) if with_scores else None
    head = load_head(studio, version) if version is not None else None
    with studio.read() as s:
        classes = dict(
            s.execute(
                select(LabelClass.id, LabelClass.name).where(LabelClass.active.is_(True)).order_by(LabelClass.id)
            ).all()
        )
        images = [tuple(r) for r in s.execute(select(Image.id, Image.original_name, Image.relpath).order_by(Image.id))]
        present: dict[int, list[str]] = {}
        for image_id, class_id, positive in s.execute(
            select(Annotation.image_id, Annotation.class_id, Annotation.positive)
            .where(Annotation.is_current.is_(True), Annotation.class_id.in_(list(classes)))
            .order_by(Annotation.image_id, Annotation.class_id)
        ):
            names = present.setdefault(image_id, [])
            if positive:
                names.append(classes[class_id])
        scores: dict[int, dict[str, float]] = {}
        if version is not None:
            scored, prob = score_matrix(s, version.id, list(classes))
    names = list(classes.values())
    if version is not None:
        for image_id, row in zip(scored.tolist(), prob.astype(np.float32).tolist()):
            scores[image_id] = {n: p for n, p in zip(names, row) if p == p}
    return Snapshot(names, images, present, scores, thresholds_for(head.thresholds if head else None, names), version)
