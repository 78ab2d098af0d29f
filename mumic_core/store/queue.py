"""The review queue: which images to show, what the model suggests for each, submit and undo.

Everything the Review page does goes through these functions (the CLI and tests use them too).
Queues without a class filter are SQL over indexed per-image score summaries; a class filter,
a class's top images and the class sweep read the class's stored score column into memory
(``store.scores``: 4 MB at 1M images) and narrow it by the reviews in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import ARRAY, Integer, and_, any_, bindparam, func, select

from db.models import (
    Annotation,
    Image,
    ImageScore,
    LabelClass,
    ReviewLease,
    Submission,
    utcnow,
)
from mumic_core.store.bulk import fetch_rows
from mumic_core.store.collection import labels_revision
from mumic_core.store.renditions import Rendition, renditions
from mumic_core.store.scores import (
    class_column,
    coverage,
    kept_per_scores,
    scores_of_images,
    sortable_bits,
    stored_queue_order,
)
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


def _status_conditions(f: QueueFilter, s=None) -> list:
    """The WHERE conditions on ``Image`` of a filter's status, leases and explicit selection
    (with a session ``s``, disputed images come from a list kept while the labels are unchanged)."""
    where = []
    if f.status == "unreviewed":
        where.append(Image.review_count == 0)
    elif f.status == "reviewed":
        where.append(Image.review_count > 0)
    elif f.status == "disputed":
        disputed = None if s is None else _disputed_ids(s)
        if disputed is not None and f.image_ids is not None:  # a few chosen images: only those disputed
            where.append(Image.id.in_(np.intersect1d(disputed, np.asarray(f.image_ids, dtype=np.int64)).tolist()))
        else:
            use_list = disputed is not None and len(disputed) <= _IN_LIST_MAX
            where.append(Image.id.in_(disputed.tolist() if use_list else _disputed_images()))
    elif f.status == "second review":
        if not f.reviewer:
            raise ValueError("a second review needs the reviewer's name")
        where += [
            Image.id.in_(
                select(Annotation.image_id).where(
                    Annotation.is_current.is_(True), Annotation.source == "review", Annotation.annotator != f.reviewer
                )
            ),
            Image.id.not_in(select(Annotation.image_id).where(Annotation.source == SECOND_REVIEW)),
        ]
    elif f.status != "all":
        raise ValueError(f"unknown status {f.status!r}; use one of {', '.join(STATUSES)}")
    if f.image_ids is not None:
        where.append(Image.id.in_(list(f.image_ids)))
    if f.skip_leased_by_others is not None:
        where.append(Image.id.not_in(_leased_by_others(f.skip_leased_by_others)))
    return where


def _leased_by_others(holder: str):
    """The images that review sessions other than ``holder`` hold now."""
    return select(ReviewLease.image_id).where(ReviewLease.holder != holder, ReviewLease.expires_at >= utcnow())


def _queue_query(f: QueueFilter, columns, s=None):
    """The queue as SQL, for filters without a class (those join the per-image summaries)."""
    q = select(*columns).select_from(Image)
    if f.version_id is not None:
        q = q.join(ImageScore, and_(ImageScore.image_id == Image.id, ImageScore.model_version_id == f.version_id))
        score, uncertainty, tiebreak = ImageScore.max_score, ImageScore.uncertainty, ImageScore.image_id
    else:
        score = uncertainty = None
        tiebreak = Image.id
    if score is not None and (f.min_score > 0.0 or f.max_score < 1.0):
        q = q.where(score >= f.min_score, score <= f.max_score)
    return q.where(*_status_conditions(f, s)), score, uncertainty, tiebreak


def _by_class(f: QueueFilter) -> bool:
    return f.class_id is not None and f.version_id is not None


def _class_queue(s, f: QueueFilter) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, their scores) of a class-filtered queue, unordered: the class's stored
    column in memory, narrowed by the status conditions (whichever side of them is smaller is
    read from the database)."""
    column = class_column(s, f.version_id, f.class_id)
    with np.errstate(invalid="ignore"):
        inside = ~np.isnan(column)
        if f.min_score > 0.0 or f.max_score < 1.0:
            inside &= (column >= f.min_score) & (column <= f.max_score)
    if f.image_ids is None and f.status in ("all", "unreviewed"):  # most images pass: drop the others
        out = [_reviewed_ids(s)] if f.status == "unreviewed" else []
        if f.skip_leased_by_others is not None:
            out.append(_ids_of(s, _leased_by_others(f.skip_leased_by_others)))
        for drop in out:
            inside[drop[drop < len(inside)]] = False
        return np.flatnonzero(inside), column[inside]
    ids = np.flatnonzero(inside)
    where = _status_conditions(f, s)
    if where:
        ids = np.intersect1d(ids, _ids_of(s, select(Image.id).where(*where)))
    return ids, column[ids]


def _ids_of(s, query) -> np.ndarray:
    return np.fromiter(s.connection().execute(query).scalars(), dtype=np.int64)


@dataclass
class _LabelDerived:
    """Image ids derived from the labels alone, as of a labels revision and the newest
    submission and annotation ids then seen."""

    revision: tuple[int, int]
    submission: int
    annotation: int
    ids: np.ndarray


_label_derived: dict[tuple[str, str], _LabelDerived] = {}  # (store, what) -> ids
_IN_LIST_MAX = 20_000  # ids bound into one IN (...) at most (SQLite allows 32,766 parameters)


def _ids_by_labels(s, what: str, query: Callable[[list[int] | None], Any], undos_matter: bool = True) -> np.ndarray:
    """The ids ``query(None)`` selects, kept per process while the labels do not change. After
    new labels, only the images they touched are read again (``query(touched)``): reading the
    reviewed and disputed images of 1M took 80 and 160 ms, after every submit. After an undo
    everything is read again, unless ``undos_matter`` is False (ids that only new statements
    change: an undo writes none, it changes which of them are current)."""
    key, revision = (str(s.get_bind().url), what), labels_revision(s)
    hit = _label_derived.get(key)
    if hit is not None and hit.revision == revision:
        return hit.ids
    newest_sub = int(s.scalar(select(func.max(Submission.id))) or 0)
    newest_ann = int(s.scalar(select(func.max(Annotation.id))) or 0)
    touched = None
    if hit is not None and (hit.revision[1] == revision[1] or not undos_matter):  # writes since
        touched = set(
            s.scalars(select(Annotation.image_id).where(Annotation.id > hit.annotation, Annotation.id <= newest_ann))
        )
        for image_ids in s.scalars(
            select(Submission.image_ids).where(Submission.id > hit.submission, Submission.id <= newest_sub)
        ):
            touched.update(image_ids or [])
    if touched is None or len(touched) > _IN_LIST_MAX:
        ids = np.unique(_ids_of(s, query(None)))
    else:
        changed = np.array(sorted(touched), dtype=np.int64)
        ids = np.union1d(np.setdiff1d(hit.ids, changed), _ids_of(s, query(changed.tolist())) if len(changed) else [])
    _label_derived[key] = _LabelDerived(revision, newest_sub, newest_ann, ids.astype(np.int64))
    return _label_derived[key].ids


def _disputed_ids(s) -> np.ndarray:
    def query(among: list[int] | None):
        q = _disputed_images()
        return q if among is None else q.where(Annotation.image_id.in_(among))

    # Every statement counts, current or not: an undo, which only changes which are current,
    # leaves the disputed images as they were.
    return _ids_by_labels(s, "disputed", query, undos_matter=False)


def _reviewed_ids(s) -> np.ndarray:
    def query(among: list[int] | None):
        q = select(Image.id).where(Image.review_count > 0)
        return q if among is None else q.where(Image.id.in_(among))

    return _ids_by_labels(s, "reviewed", query)


def _sort_keys(ids: np.ndarray, scores: np.ndarray, sort: str, center: float = 0.5) -> np.ndarray:
    """int64 keys whose ascending order is the queue order: the score's float32 bits (monotone
    for scores >= 0) above the image id; ``priority``: nearest to ``center`` first."""
    if sort == "priority":
        return sortable_bits(np.abs(scores - np.float32(center))) | ids
    if sort == "confidence":
        return -(sortable_bits(scores) | ids)
    if sort == "newest":
        return -ids
    raise ValueError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")


def _page_of(keys: np.ndarray, ids: np.ndarray, offset: int, limit: int) -> list[int]:
    """The ids of keys ranked [offset, offset + limit), without sorting the rest."""
    end = min(len(keys), offset + limit)
    if offset >= end:
        return []
    first = np.argpartition(keys, end - 1)[:end] if end < len(keys) else np.arange(len(keys))
    first = first[np.argsort(keys[first], kind="stable")]
    return ids[first[offset:end]].tolist()


DEEP_PAGE = 10_000  # pages from this offset on come from the queue order kept in memory


def _queue_order(s, version_id: int, sort: str) -> np.ndarray:
    """Every image the version scored, in queue order, for pages deep in a big queue: once per
    process and scores revision, the order stored with the summaries (one row), else an
    index-only read of the summaries (0.4 s on SQLite, 1.8 s on PostgreSQL at 1M)."""

    def compute() -> np.ndarray:
        stored = stored_queue_order(s, version_id, sort) if sort in ("priority", "confidence") else None
        if stored is not None:
            return stored
        t = ImageScore
        q = select(t.image_id).where(t.model_version_id == version_id)
        if sort == "priority":
            q = q.order_by(t.uncertainty.asc(), t.image_id.asc())
        elif sort == "confidence":
            q = q.order_by(t.max_score.desc(), t.image_id.desc())
        else:
            q = q.order_by(t.image_id.desc())
        rows = fetch_rows(s.connection(), q)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    return kept_per_scores(s, version_id, f"order:{sort}", compute)


def _membership(s, f: QueueFilter) -> tuple[bool, np.ndarray] | None:
    """The status and leases of a queue as ids kept in memory: (True, the ids left out) for
    the big statuses, (False, the only ids) for the small ones; None where SQL decides."""
    if f.image_ids is not None or f.status not in ("all", "unreviewed", "reviewed", "disputed"):
        return None
    leased = np.empty(0, dtype=np.int64)
    if f.skip_leased_by_others is not None:
        leased = np.unique(_ids_of(s, _leased_by_others(f.skip_leased_by_others)))
    if f.status == "all":
        return True, leased
    if f.status == "unreviewed":
        return True, np.union1d(_reviewed_ids(s), leased)
    only = _reviewed_ids(s) if f.status == "reviewed" else _disputed_ids(s)
    return False, np.setdiff1d(only, leased)


def queue_count(studio: Studio, f: QueueFilter) -> int:
    """How many images the queue holds. Without a class or score range: the version's scored
    images (counted once per scores revision) and the reviewed, disputed and leased ones (kept
    while the labels do not change), in memory; counting 1M rows took 0.1-0.2 s a page run."""
    with studio.read() as s:
        if _by_class(f):
            return len(_class_queue(s, f)[0])
        if f.version_id is not None and f.min_score <= 0.0 and f.max_score >= 1.0:
            cover, members = coverage(s, f.version_id), _membership(s, f)
            if members is not None and cover.full:
                all_but, ids = members
                scored = int(np.count_nonzero(ids <= cover.newest))
                return cover.scored - scored if all_but else scored
            # Count summaries of the images the conditions select (their id index first: a
            # join walked the version's 1M summaries).
            counted = select(func.count()).select_from(ImageScore).where(ImageScore.model_version_id == f.version_id)
            where = _status_conditions(f, s)
            if not where:
                return cover.scored
            return int(s.scalar(counted.where(ImageScore.image_id.in_(select(Image.id).where(*where)))) or 0)
        q, _, _, _ = _queue_query(f, [func.count(Image.id)], s)
        return int(s.scalar(q) or 0)


def queue_page(studio: Studio, f: QueueFilter, offset: int = 0, limit: int = 1) -> list[int]:
    """Image ids of one page of the queue, in queue order.

    Orders: ``priority`` (the active-learning hook: for now the most uncertain first, i.e. a
    probability closest to 0.5), ``confidence`` (highest first), ``newest``. Shallow pages of
    the big queues are SQL over the summaries' indexes; deep ones (from ``DEEP_PAGE``) come from
    the queue order in memory; the small statuses (disputed) sort their few images in memory.
    """
    with studio.read() as s:
        if _by_class(f):
            ids, scores = _class_queue(s, f)
            return _page_of(_sort_keys(ids, scores, f.sort), ids, offset, limit)
        members = _membership(s, f) if f.version_id is not None and f.sort in SORTS else None
        if members is not None:
            all_but, ids = members
            if f.status == "disputed" and len(ids) <= _IN_LIST_MAX:  # sparse: SQL would walk far
                return _disputed_page(s, f, ids, offset, limit)
            if all_but and offset >= DEEP_PAGE and f.min_score <= 0.0 and f.max_score >= 1.0:
                return _deep_page(_queue_order(s, f.version_id, f.sort), ids, offset, limit)
        return list(s.scalars(page_query(f, s).offset(offset).limit(limit)))


def _deep_page(order: np.ndarray, left_out: np.ndarray, offset: int, limit: int) -> list[int]:
    """Rows [offset, offset + limit) of ``order`` without the ``left_out`` ids."""
    if len(left_out) and len(order):
        out = np.zeros(int(max(order.max(), left_out.max())) + 1, dtype=bool)
        out[left_out] = True
        order = order[~out[order]]
    return order[offset : offset + limit].tolist()


def _disputed_page(s, f: QueueFilter, ids: np.ndarray, offset: int, limit: int) -> list[int]:
    """A page of the disputed queue (``ids``: the disputed images the filter lets through). Their
    summaries are read by key once per labels and scores revision (5,000 key reads: 80 ms on
    PostgreSQL) and sorted in memory, in the order ``page_query`` gives."""

    def read() -> np.ndarray:
        disputed = _disputed_ids(s)
        t = ImageScore
        if s.get_bind().dialect.name == "postgresql":  # one array parameter, not thousands
            among = t.image_id == any_(bindparam("among", disputed.tolist(), type_=ARRAY(Integer)))
        else:
            among = t.image_id.in_(disputed.tolist())
        rows = fetch_rows(
            s.connection(),
            select(t.image_id, t.max_score, t.uncertainty).where(t.model_version_id == f.version_id, among),
        )
        return np.array(rows, dtype=np.float64).reshape(-1, 3)

    held = kept_per_scores(s, f.version_id, "disputed summaries", dict)  # labels revision -> rows
    revision = labels_revision(s)
    if revision not in held:  # one entry, replaced: a key per revision would crowd out the orders
        held.clear()
        held[revision] = read()
    table = held[revision]
    got, top, unsure = table[:, 0].astype(np.int64), table[:, 1], table[:, 2]
    keep = np.isin(got, ids)
    if f.min_score > 0.0 or f.max_score < 1.0:
        keep &= (top >= f.min_score) & (top <= f.max_score)
    got, top, unsure = got[keep], top[keep], unsure[keep]
    if f.sort == "priority":
        order = np.lexsort((got, unsure))
    elif f.sort == "confidence":
        order = np.lexsort((-got, -top))
    else:
        order = np.argsort(-got)
    return got[order[offset : offset + limit]].tolist()


def page_query(f: QueueFilter, s=None):
    """The ordered SELECT of image ids behind ``queue_page`` for a filter without a class."""
    if _by_class(f):
        raise ValueError("a class-filtered queue is read from the stored class column, not by SQL")
    q, score, uncertainty, tiebreak = _queue_query(f, [Image.id], s)
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
        column = class_column(s, version_id, class_id)
    ids = np.flatnonzero(~np.isnan(column))
    top = _page_of(_sort_keys(ids, column[ids], "confidence"), ids, 0, k)
    return [(i, float(column[i])) for i in top]


SWEEP_ORDERS = ("most likely", "most uncertain")


def _judged_for(class_id: int):
    """The images with a current human label (not an assumed negative) of this class."""
    return select(Annotation.image_id).where(
        Annotation.class_id == class_id, Annotation.is_current.is_(True), Annotation.assumed.is_(False)
    )


def _unjudged(s, version_id: int, class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, probabilities) of the scored images nobody has judged for this class yet."""
    column = class_column(s, version_id, class_id)
    ids = np.flatnonzero(~np.isnan(column))
    judged = np.fromiter(s.scalars(_judged_for(class_id)), dtype=np.int64)
    ids = ids[~np.isin(ids, judged)]
    return ids, column[ids]


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
    with studio.read() as s:
        ids, scores = _unjudged(s, version_id, class_id)
    skipped = list(skip)
    if skipped:
        keep = ~np.isin(ids, np.array(skipped, dtype=np.int64))
        ids, scores = ids[keep], scores[keep]
    if order == "most likely":
        keys = ids - sortable_bits(scores)  # highest first, then lowest id
    else:
        keys = _sort_keys(ids, scores, "priority", center=threshold)
    by_id = dict(zip(ids.tolist(), scores.tolist()))
    return [(i, float(by_id[i])) for i in _page_of(keys, ids, 0, limit)]


def sweep_remaining(studio: Studio, version_id: int, class_id: int) -> int:
    """How many scored images nobody has judged for this class yet."""
    with studio.read() as s:
        return len(_unjudged(s, version_id, class_id)[0])


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
            classes = s.execute(
                select(LabelClass.id, LabelClass.name).where(LabelClass.active.is_(True)).order_by(LabelClass.id)
            ).all()
            prob = scores_of_images(s, version_id, ids, [c for c, _ in classes])
            for row, image_id in enumerate(ids):
                scored = np.flatnonzero(~np.isnan(prob[row]))
                best = scored[np.argsort(-prob[row, scored], kind="stable")[:top_k]].tolist()
                listed = set(best) | {b for b in scored.tolist() if (image_id, classes[b][0]) in wanted}
                for b in listed:
                    class_id, name = classes[b]
                    t = (thresholds or {}).get(name, DEFAULT_THRESHOLD)
                    preds[image_id][class_id] = Suggestion(class_id, name, float(prob[row, b]), t)
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
