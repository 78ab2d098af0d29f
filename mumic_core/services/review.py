"""Reviewing: what the Review page (and the API) do when a person submits, accepts in bulk or
undoes. Each records the labels and then lets automatic retraining look at the new count."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mumic_core.services.training import maybe_auto_retrain
from mumic_core.store.auth import requires
from mumic_core.store.collection import SWEEP, record_labels, undo_last_submission
from mumic_core.store.queue import SECOND_REVIEW, ImageView, image_views, submission_decisions
from mumic_core.store.studio import Studio


@requires("review", acting_as="annotator")
def submit(
    studio: Studio,
    view: ImageView,
    positives: Iterable[int],
    negatives: Iterable[int],
    annotator: str,
    second_review: bool = False,
) -> int:
    """Record one image's review: explicit positives and negatives, and every other active class
    as an assumed negative; returns the submission id."""
    return submit_many(studio, {view.image_id: (set(positives), set(negatives))}, [view], annotator, second_review)


@requires("review", acting_as="annotator")
def submit_many(
    studio: Studio,
    decisions: dict[int, tuple[set[int], set[int]]],
    views: Sequence[ImageView],
    annotator: str,
    second_review: bool = False,
) -> int:
    """Record reviews of several images as one submission (one undo step): the positives and
    negatives as said, every other active class of each image as an assumed negative (never over
    a human label). A second review records every decision, also one that confirms the first
    reviewer's label."""
    if not annotator.strip():
        raise ValueError("say who you are (annotator name) before submitting")
    labels: dict[int, dict[int, bool]] = {}
    for image_id, (pos, neg) in decisions.items():
        both = pos & neg
        if both:
            raise ValueError(f"a class cannot be both present and absent (class ids {sorted(both)})")
        labels[image_id] = {c: True for c in pos} | {c: False for c in neg}
    suggested = {v.image_id: {s.class_id: s.probability for s in v.suggestions} for v in views}
    seen = {v.image_id: dict(v.labels) for v in views if v.image_id in labels}
    submission_id = record_labels(
        studio,
        labels,
        annotator.strip(),
        source=SECOND_REVIEW if second_review else "review",
        suggested=suggested,
        seen=seen,
        assume_rest=True,
    )[0]

    maybe_auto_retrain(studio)
    return submission_id


@requires("review", acting_as="annotator")
def accept_above(
    studio: Studio, views: Sequence[ImageView], threshold: float, annotator: str, second_review: bool = False
) -> int:
    """Bulk: every suggestion at or above ``threshold`` on these images becomes a positive, every
    other active class of those images an assumed negative."""
    decisions = {v.image_id: ({s.class_id for s in v.suggestions if s.probability >= threshold}, set()) for v in views}
    decisions = {k: v for k, v in decisions.items() if v[0]}
    if not decisions:
        return 0
    submit_many(studio, decisions, views, annotator, second_review)
    return sum(len(p) for p, _ in decisions.values())


@requires("review", acting_as="annotator")
def undo(studio: Studio, annotator: str) -> int | None:
    """Undo this person's last submission; returns its id or None if there is nothing to undo."""
    return undo_last_submission(studio, annotator)


@requires("review", acting_as="annotator")
def redo(studio: Studio, submission_id: int, version_id: int | None, annotator: str) -> int:
    """Say again what an undone submission said (its present and absent classes, image by image)
    as a new submission; returns its id. ValueError when there is nothing to redo."""
    decisions = submission_decisions(studio, submission_id, undone_by=annotator)
    if not decisions:
        raise ValueError("nothing to redo: that submission is not one of yours that was undone")
    views = image_views(studio, sorted(decisions), version_id, top_k=0)
    return submit_many(studio, decisions, views, annotator)


@requires("review", acting_as="annotator")
def submit_sweep(studio: Studio, class_id: int, decisions: dict[int, bool], annotator: str) -> int:
    """A class sweep: for one class, each image's human positive or negative (nothing else about
    the images, and they do not count as reviewed); one submission. Returns its id."""
    if not annotator.strip():
        raise ValueError("say who you are (annotator name) before submitting")
    if not decisions:
        raise ValueError("nothing to save: no image was judged")
    submission_id = record_labels(
        studio, {i: {class_id: bool(p)} for i, p in decisions.items()}, annotator.strip(), source=SWEEP
    )[0]
    maybe_auto_retrain(studio)
    return submission_id
