"""The review queue: which images to show, what the model suggests for each, submit and undo.

Everything the Review page does goes through these functions (the CLI and tests use them too).
Queries use indexed columns only (predictions by version/class/score, per-image score
summaries), so they stay fast with 100k images and millions of predictions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, func, literal, select

from db.models import (
    Annotation,
    Image,
    ImageScore,
    LabelClass,
    Prediction,
    ReviewLease,
    Submission,
    utcnow,
)
from mumic_core.store.renditions import Rendition, renditions
from mumic_core.store.studio import Studio

STATUSES = ("all", "unreviewed", "reviewed", "disputed", "second review")
SECOND_REVIEW = "second_review"  # the source of a second reviewer's labels
PLAN_WINDOW = 24  # queue images checked per run in active-learning order (a Grid page at most)
SORTS = ("priority", "confidence", "newest")
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows. ``class_id`` narrows to images whose score for that class is in
    [min_score, max_score]; without a class the range applies to each image's top score."""

    version_id: int | None
    class_id: int | None = None
    min_score: float = 0.0
    max_score: float = 1.0
    status: str = "unreviewed"
    sort: str = "priority"
    image_ids: tuple[int, ...] | None = None  # an explicit selection (e.g. sent from another page)
    skip_leased_by_others: str | None = None  # a review session: leave out images other sessions hold
    reviewer: str | None = None  # "second review": images someone else labelled and nobody checked yet


@dataclass
class Suggestion:
    class_id: int
    name: str
    probability: float
    threshold: float

    @property
    def proposed(self) -> bool:
        return self.probability >= self.threshold


@dataclass
class ImageView:
    image_id: int
    name: str
    path: Path
    width: int
    height: int
    review_count: int
    suggestions: list[Suggestion]
    labels: dict[int, bool] = field(default_factory=dict)  # current labels (assumed negatives too)
    display: Rendition | None = None  # what a page shows (image_views(..., display=max side))
    assumed: frozenset[int] = frozenset()  # classes whose current label is an assumed negative


def _disputed_images():
    """Images where different annotators have said different things about the same class."""
    return (
        select(Annotation.image_id)
        .where(Annotation.assumed.is_(False))
        .group_by(Annotation.image_id, Annotation.class_id)
        .having(
            and_(
                func.count(func.distinct(Annotation.positive)) > 1, func.count(func.distinct(Annotation.annotator)) > 1
            )
        )
    )


def _queue_query(f: QueueFilter, columns):
    q = select(*columns).select_from(Image)
    if f.class_id is not None and f.version_id is not None:
        q = q.join(
            Prediction,
            and_(
                Prediction.image_id == Image.id,
                Prediction.model_version_id == f.version_id,
                Prediction.class_id == f.class_id,
            ),
        )
        score, uncertainty, tiebreak = Prediction.score, func.abs(Prediction.score - 0.5), Image.id
    elif f.version_id is not None:
        q = q.join(ImageScore, and_(ImageScore.image_id == Image.id, ImageScore.model_version_id == f.version_id))
        score, uncertainty, tiebreak = ImageScore.max_score, ImageScore.uncertainty, ImageScore.image_id
    else:
        score = uncertainty = None
        tiebreak = Image.id
    if score is not None and (f.min_score > 0.0 or f.max_score < 1.0):
        q = q.where(score >= f.min_score, score <= f.max_score)
    if f.status == "unreviewed":
        q = q.where(Image.review_count == 0)
    elif f.status == "reviewed":
        q = q.where(Image.review_count > 0)
    elif f.status == "disputed":
        q = q.where(Image.id.in_(_disputed_images()))
    elif f.status == "second review":
        if not f.reviewer:
            raise ValueError("a second review needs the reviewer's name")
        q = q.where(
            Image.id.in_(
                select(Annotation.image_id).where(
                    Annotation.is_current.is_(True), Annotation.source == "review", Annotation.annotator != f.reviewer
                )
            ),
            Image.id.not_in(select(Annotation.image_id).where(Annotation.source == SECOND_REVIEW)),
        )
    elif f.status != "all":
        raise ValueError(f"unknown status {f.status!r}; use one of {', '.join(STATUSES)}")
    if f.image_ids is not None:
        q = q.where(Image.id.in_(list(f.image_ids)))
    if f.skip_leased_by_others is not None:
        q = q.where(
            Image.id.not_in(
                select(ReviewLease.image_id).where(
                    ReviewLease.holder != f.skip_leased_by_others, ReviewLease.expires_at >= utcnow()
                )
            )
        )
    return q, score, uncertainty, tiebreak


def queue_count(studio: Studio, f: QueueFilter) -> int:
    q, _, _, _ = _queue_query(f, [func.count(Image.id)])
    with studio.read() as s:
        return int(s.scalar(q) or 0)


def queue_page(studio: Studio, f: QueueFilter, offset: int = 0, limit: int = 1) -> list[int]:
    """Image ids of one page of the queue, in queue order.

    Orders: ``priority`` (the active-learning hook: for now the most uncertain first, i.e. a
    probability closest to 0.5), ``confidence`` (highest first), ``newest``.
    """
    with studio.read() as s:
        return list(s.scalars(page_query(f).offset(offset).limit(limit)))


def page_query(f: QueueFilter):
    """The ordered SELECT of image ids behind ``queue_page``."""
    q, score, uncertainty, tiebreak = _queue_query(f, [Image.id])
    if f.sort == "priority" and uncertainty is not None:
        return q.order_by(uncertainty.asc(), tiebreak.asc())
    if f.sort == "confidence" and score is not None:
        return q.order_by(score.desc(), tiebreak.desc())
    if f.sort in SORTS:
        return q.order_by(Image.id.desc())
    raise ValueError(f"unknown sort {f.sort!r}; use one of {', '.join(SORTS)}")


def top_images_for_class(studio: Studio, version_id: int, class_id: int, k: int = 12) -> list[tuple[int, float]]:
    """(image id, probability) of the k images that score highest for a class."""
    with studio.read() as s:
        rows = s.execute(
            select(Prediction.image_id, Prediction.score)
            .where(Prediction.model_version_id == version_id, Prediction.class_id == class_id)
            .order_by(Prediction.score.desc())
            .limit(k)
        ).all()
    return [(i, float(p)) for i, p in rows]


SWEEP_ORDERS = ("most likely", "most uncertain")


def _judged_for(class_id: int):
    """The images with a current human label (not an assumed negative) of this class."""
    return select(Annotation.image_id).where(
        Annotation.class_id == class_id, Annotation.is_current.is_(True), Annotation.assumed.is_(False)
    )


def sweep_candidates(
    studio: Studio,
    version_id: int,
    class_id: int,
    order: str = "most likely",
    threshold: float = DEFAULT_THRESHOLD,
    limit: int = 24,
    skip: Iterable[int] = (),
) -> list[tuple[int, float]]:
    """(image id, probability) of images nobody has judged for this class yet (no current human
    label; assumed negatives count as not judged), the most likely first or the nearest to the
    class's ``threshold`` first; ``skip``: image ids to leave out (e.g. open elsewhere)."""
    if order not in SWEEP_ORDERS:
        raise ValueError(f"unknown order {order!r}; use {', '.join(SWEEP_ORDERS)}")
    judged = _judged_for(class_id)
    rank = Prediction.score.desc() if order == "most likely" else func.abs(Prediction.score - threshold)
    q = (
        select(Prediction.image_id, Prediction.score)
        .where(
            Prediction.model_version_id == version_id,
            Prediction.class_id == class_id,
            Prediction.image_id.not_in(judged),
        )
        .order_by(rank, Prediction.image_id)
        .limit(limit)
    )
    skipped = list(skip)
    if skipped:
        q = q.where(Prediction.image_id.not_in(skipped))
    with studio.read() as s:
        return [(int(i), float(p)) for i, p in s.execute(q).all()]


def sweep_remaining(studio: Studio, version_id: int, class_id: int) -> int:
    """How many scored images nobody has judged for this class yet."""
    judged = _judged_for(class_id)
    with studio.read() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(Prediction)
                .where(
                    Prediction.model_version_id == version_id,
                    Prediction.class_id == class_id,
                    Prediction.image_id.not_in(judged),
                )
            )
            or 0
        )


def thresholds_for(head_thresholds: dict[str, float] | None, names: Iterable[str]) -> dict[str, float]:
    t = head_thresholds or {}
    return {n: float(t.get(n, DEFAULT_THRESHOLD)) for n in names}


def image_views(
    studio: Studio,
    image_ids: Sequence[int],
    version_id: int | None,
    top_k: int = 9,
    thresholds: dict[str, float] | None = None,
    also: Mapping[int, Iterable[int]] | None = None,
    display: int | None = None,
) -> list[ImageView]:
    """Images with their current labels and suggestions (active classes, best first): the top
    k, every class a person has marked present, and the classes in ``also[image_id]`` (e.g.
    the suspected labels), so every label a person must see is a suggestion to toggle. With
    ``display`` (a max side, e.g. renditions.VIEW or TILE), each view carries the display
    rendition that pages show (never the stored file)."""
    if not image_ids:
        return []
    ids = list(image_ids)
    with studio.read() as s:
        images = {im.id: im for im in s.scalars(select(Image).where(Image.id.in_(ids)))}
        labels: dict[int, dict[int, bool]] = {i: {} for i in image_ids}
        assumed: dict[int, set[int]] = {i: set() for i in image_ids}
        for image_id, class_id, positive, is_assumed in s.execute(
            select(Annotation.image_id, Annotation.class_id, Annotation.positive, Annotation.assumed).where(
                Annotation.image_id.in_(ids), Annotation.is_current.is_(True)
            )
        ):
            labels[image_id][class_id] = positive
            if is_assumed:
                assumed[image_id].add(class_id)
        wanted = {(i, c) for i in ids for c, p in labels[i].items() if p}
        wanted |= {(i, c) for i, cs in (also or {}).items() if i in labels for c in cs}
        preds: dict[int, dict[int, Suggestion]] = {i: {} for i in image_ids}
        if version_id is not None:
            ranked = (
                select(
                    Prediction.image_id,
                    Prediction.class_id,
                    LabelClass.name,
                    Prediction.score,
                    func.row_number()
                    .over(partition_by=Prediction.image_id, order_by=Prediction.score.desc())
                    .label("rank"),
                )
                .join(LabelClass, LabelClass.id == Prediction.class_id)
                .where(Prediction.of_images(version_id, ids), LabelClass.active.is_(True))
                .subquery()
            )
            rows = list(s.execute(select(ranked).where(ranked.c.rank <= top_k)))
            extra = wanted - {(r[0], r[1]) for r in rows}
            if extra:
                rows += s.execute(
                    select(Prediction.image_id, Prediction.class_id, LabelClass.name, Prediction.score, literal(0))
                    .join(LabelClass, LabelClass.id == Prediction.class_id)
                    .where(
                        Prediction.model_version_id == version_id,
                        LabelClass.active.is_(True),
                        Prediction.image_id.in_({i for i, _ in extra}),
                        Prediction.class_id.in_({c for _, c in extra}),
                    )
                ).all()
            for image_id, class_id, name, score, rank in rows:
                if rank or (image_id, class_id) in wanted:
                    t = (thresholds or {}).get(name, DEFAULT_THRESHOLD)
                    preds[image_id][class_id] = Suggestion(class_id, name, float(score), t)
    shown = [i for i in image_ids if i in images]
    paths = dict(zip(shown, studio.store.paths([images[i].relpath for i in shown])))
    shows = renditions(studio, [images[i] for i in shown], display) if display else [None] * len(shown)
    out = []
    for i, rendition in zip(shown, shows):
        im = images[i]
        sug = sorted(preds[i].values(), key=lambda x: -x.probability)
        out.append(
            ImageView(
                i,
                im.original_name,
                paths[i],
                im.width,
                im.height,
                im.review_count,
                sug,
                labels[i],
                rendition,
                frozenset(assumed[i]),
            )
        )
    return out


def submission_image_ids(studio: Studio, submission_id: int) -> list[int]:
    """The images one submission labelled."""
    with studio.read() as s:
        return list(
            s.scalars(
                select(Annotation.image_id)
                .where(Annotation.submission_id == submission_id)
                .distinct()
                .order_by(Annotation.image_id)
            )
        )


def submission_decisions(
    studio: Studio, submission_id: int, undone_by: str | None = None
) -> dict[int, tuple[set[int], set[int]]]:
    """What a person said in one submission, per image: (present classes, absent classes); the
    assumed negatives it wrote are left out (they follow from the rest). With ``undone_by``:
    nothing unless it is that person's submission and was undone."""
    out: dict[int, tuple[set[int], set[int]]] = {}
    with studio.read() as s:
        if undone_by is not None:
            sub = s.get(Submission, submission_id)
            if sub is None or sub.annotator != undone_by or sub.undone_at is None:
                return out
        rows = s.execute(
            select(Annotation.image_id, Annotation.class_id, Annotation.positive).where(
                Annotation.submission_id == submission_id, Annotation.assumed.is_(False)
            )
        ).all()
    for image_id, class_id, positive in rows:
        pos, neg = out.setdefault(image_id, (set(), set()))
        (pos if positive else neg).add(class_id)
    return out


def image_names(studio: Studio, image_ids: Sequence[int]) -> dict[int, str]:
    """Image id -> the name it was imported under."""
    if not image_ids:
        return {}
    with studio.read() as s:
        return dict(s.execute(select(Image.id, Image.original_name).where(Image.id.in_(list(image_ids)))).all())


def newest_image_id(studio: Studio) -> int:
    """The highest image id (0 when empty): it grows when images are imported."""
    with studio.read() as s:
        return int(s.scalar(select(func.max(Image.id))) or 0)
