"""Human labels that are likely wrong, from out-of-sample predictions and cleanlab.

Each labelled image gets probabilities from a head trained without it (k-fold cross-validation
on the cached embeddings of the active version's encoder). cleanlab's multi-label label-quality
scores, per class, rank the labelled image-class pairs that disagree with that probability; the
most suspicious are shown to a person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy import distinct, func, select

from db.models import Annotation
from mumic_core.model.label_quality import cross_validated_probabilities, rank_suspects
from mumic_core.pipeline.scoring import image_embeddings, load_scorer
from mumic_core.pipeline.training import LabelSet, gather_labels
from mumic_core.store.registry import VersionInfo, get_version
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


def out_of_sample_probabilities(
    studio: Studio, version: VersionInfo, folds: int = 5, seed: int = 0, progress: Callable[[int], None] | None = None
):
    """(labels, probabilities): every human-labelled image scored by a head trained on the other folds."""
    labels: LabelSet = gather_labels(studio)
    scorer = load_scorer(studio, version)
    emb = image_embeddings(studio, scorer, labels.image_ids)
    text = scorer.text_embeddings([c.prompt_texts for c in labels.classes])
    probs = cross_validated_probabilities(
        emb, text, labels.targets, labels.mask, [c.name for c in labels.classes], folds, seed, progress
    )
    return labels, probs


def suspicious_labels(
    studio: Studio,
    version: VersionInfo,
    limit: int = 200,
    folds: int = 5,
    progress: Callable[[int], None] | None = None,
) -> list[Suspect]:
    """The human labels most likely to be wrong, most suspicious first (``progress`` gets the
    number of folds done)."""
    labels, probs = out_of_sample_probabilities(studio, version, folds, progress=progress)
    return [
        Suspect(
            labels.image_ids[r],
            labels.classes[c].id,
            labels.classes[c].name,
            bool(labels.targets[r, c]),
            float(probs[r, c]),
            q,
        )
        for r, c, q in rank_suspects(labels.targets, labels.mask, probs)[:limit]
    ]


def run_label_errors_job(studio: Studio, params: dict, report) -> dict:
    """The worker's "label_errors" job: ``suspicious_labels`` for ``params['version_id']``."""
    version = get_version(studio, int(params["version_id"]))
    folds = int(params.get("folds", 5))
    report("cross-validating", 0.0, {"folds": folds})
    found = suspicious_labels(
        studio,
        version,
        limit=int(params.get("limit", 200)),
        folds=folds,
        progress=lambda done: report("cross-validating", done / folds, {"fold": done, "folds": folds}),
    )
    return {"version_id": version.id, "suspects": [asdict(x) for x in found]}


def suspects_of_job(result: dict) -> list[Suspect]:
    """The suspects a finished "label_errors" job found."""
    return [Suspect(**x) for x in result.get("suspects", [])]


def labelled_image_count(studio: Studio) -> int:
    """Images with at least one current human label."""
    with studio.read() as s:
        return s.scalar(select(func.count(distinct(Annotation.image_id))).where(Annotation.is_current.is_(True))) or 0
