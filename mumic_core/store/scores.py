"""A model version's stored probabilities, as arrays.

They live in the database (so every web process and worker, on any machine, sees the same) as
``ScoreBlock`` rows: per version and class, the float16 scores of 1,024 consecutive image ids.
A class's column over the whole collection is one index range; a few images' scores are a few
blocks per class. Reading and writing whole arrays keeps a promotion over 1M images x 120
classes to seconds of writing, where one row per image and class took minutes per 100k images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update

from db.models import SCORE_BLOCK, Image, ImageScore, ModelVersion, QueueOrder, ScoreBlock
from mumic_core.store.bulk import insert_many

_STORED = np.dtype("<f2")
_SLICE = 65_536  # images per slice of the large array operations


def as_stored(prob: np.ndarray) -> np.ndarray:
    """``prob`` rounded as it will be stored (float16), as float32 (a float32 array is rounded
    in place, a slice at a time, so 1M x 120 scores need no second copy): summaries computed
    from it agree exactly with what the filters read back."""
    prob = np.asarray(prob, dtype=np.float32)
    for a in range(0, len(prob), _SLICE):
        prob[a : a + _SLICE] = prob[a : a + _SLICE].astype(_STORED)
    return prob


def _blocks_of(image_ids: np.ndarray, values: np.ndarray, base: dict[int, np.ndarray] | None = None):
    """(block, float16 array) of ``values`` placed at their image ids, on top of ``base`` blocks."""
    if not len(image_ids):
        return
    blocks = image_ids // SCORE_BLOCK
    order = np.argsort(blocks, kind="stable")
    blocks, ids, values = blocks[order], image_ids[order], values[order]
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
    ends = np.r_[starts[1:], len(blocks)]
    for a, b in zip(starts.tolist(), ends.tolist()):
        block = int(blocks[a])
        arr = base.get(block) if base else None
        arr = np.full(SCORE_BLOCK, np.nan, dtype=_STORED) if arr is None else arr.astype(_STORED, copy=True)
        arr[ids[a:b] - block * SCORE_BLOCK] = values[a:b]
        yield block, arr


def _insert(conn, rows: Iterable[tuple[int, int, int, bytes]]) -> None:
    insert_many(conn, ScoreBlock.__table__, ("model_version_id", "class_id", "block", "scores"), rows)


def write_class_scores(
    conn, version_id: int, image_ids: np.ndarray, class_ids: Sequence[int], prob: np.ndarray
) -> None:
    """Replace the version's scores of ``class_ids`` with ``prob`` (N, C) of ``image_ids``
    (inside the caller's transaction)."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    table = ScoreBlock.__table__
    conn.execute(delete(table).where(table.c.model_version_id == version_id, table.c.class_id.in_(list(class_ids))))
    for b, class_id in enumerate(class_ids):
        _insert(
            conn,
            (
                (version_id, int(class_id), block, arr.tobytes())
                for block, arr in _blocks_of(image_ids, prob[:, b].astype(_STORED))
            ),
        )


def add_image_scores(conn, version_id: int, image_ids: np.ndarray, class_ids: Sequence[int], prob: np.ndarray) -> None:
    """Add the scores of images the version had not scored (new imports) to its blocks of
    ``class_ids``; other images' scores stay as they are."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if not len(image_ids):
        return
    table = ScoreBlock.__table__
    touched = sorted(set((image_ids // SCORE_BLOCK).tolist()))
    for b, class_id in enumerate(class_ids):
        where = (
            table.c.model_version_id == version_id,
            table.c.class_id == int(class_id),
            table.c.block.in_(touched),
        )
        stored = conn.execute(select(table.c.block, table.c.scores).where(*where))
        base = {int(k): np.frombuffer(v, dtype=_STORED) for k, v in stored}
        conn.execute(delete(table).where(*where))
        _insert(
            conn,
            (
                (version_id, int(class_id), block, arr.tobytes())
                for block, arr in _blocks_of(image_ids, prob[:, b].astype(_STORED), base)
            ),
        )


def class_column(session, version_id: int, class_id: int) -> np.ndarray:
    """The version's probabilities of one class, indexed by image id (float32; NaN: no score)."""
    rows = session.execute(
        select(ScoreBlock.block, ScoreBlock.scores)
        .where(ScoreBlock.model_version_id == version_id, ScoreBlock.class_id == class_id)
        .order_by(ScoreBlock.block)
    ).all()
    if not rows:
        return np.zeros(0, dtype=np.float32)
    out = np.full((rows[-1][0] + 1) * SCORE_BLOCK, np.nan, dtype=np.float32)
    for block, data in rows:
        out[block * SCORE_BLOCK : (block + 1) * SCORE_BLOCK] = np.frombuffer(data, dtype=_STORED)
    return out


def scores_of_images(session, version_id: int, image_ids: Sequence[int], class_ids: Sequence[int]) -> np.ndarray:
    """(N, C) probabilities of these images for these classes (float32; NaN: no score)."""
    ids = np.asarray(list(image_ids), dtype=np.int64)
    out = np.full((len(ids), len(class_ids)), np.nan, dtype=np.float32)
    if not len(ids) or not len(class_ids):
        return out
    column = {int(c): b for b, c in enumerate(class_ids)}
    blocks = sorted(set((ids // SCORE_BLOCK).tolist()))
    rows = session.execute(
        select(ScoreBlock.class_id, ScoreBlock.block, ScoreBlock.scores).where(
            ScoreBlock.model_version_id == version_id,
            ScoreBlock.block.in_(blocks),
            ScoreBlock.class_id.in_(list(column)),
        )
    )
    where_block = {blk: np.flatnonzero(ids // SCORE_BLOCK == blk) for blk in blocks}
    for class_id, block, data in rows:
        at = where_block[block]
        out[at, column[class_id]] = np.frombuffer(data, dtype=_STORED)[ids[at] - block * SCORE_BLOCK]
    return out


def score_matrix(session, version_id: int, class_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, (N, C) float16 probabilities) of every image the version scored for any of
    ``class_ids`` (NaN where it scored the image but not that class)."""
    columns = [class_column(session, version_id, int(c)) for c in class_ids]
    size = max((len(c) for c in columns), default=0)
    matrix = np.full((size, len(columns)), np.nan, dtype=_STORED)
    for b, col in enumerate(columns):
        matrix[: len(col), b] = col
    scored = np.flatnonzero(~np.isnan(matrix).all(axis=1)) if len(columns) else np.zeros(0, dtype=np.int64)
    return scored, matrix[scored]


def summaries(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image (row): the top probability and the uncertainty min over classes of |p - 0.5|
    (NaN scores ignored; an image without any: 0 and 0.5)."""
    top, unsure = np.zeros(len(prob)), np.full(len(prob), 0.5)
    if not prob.shape[1]:
        return top, unsure
    for a in range(0, len(prob), _SLICE):
        part = np.asarray(prob[a : a + _SLICE], dtype=np.float32)
        missing = np.isnan(part)
        top[a : a + _SLICE] = np.where(missing, -np.inf, part).max(axis=1)
        unsure[a : a + _SLICE] = np.where(missing, 0.5, np.abs(part - 0.5)).min(axis=1)
    top[np.isinf(top)] = 0.0
    return top, unsure


def sortable_bits(values: np.ndarray) -> np.ndarray:
    """Non-negative float32 values as int64 in the same order, shifted above any image id (so
    ``sortable_bits(v) | ids`` sorts by value, then id, in one integer sort)."""
    return values.astype(np.float32).view(np.int32).astype(np.int64) << 31


def queue_orders(image_ids: np.ndarray, top: np.ndarray, unsure: np.ndarray) -> dict[str, np.ndarray]:
    """The image ids in each stored queue order, as ``queue.page_query``'s SQL sorts these
    summaries: priority (uncertainty ascending, then id), confidence (top score descending, then
    id descending). Summaries are float32 values (``summaries``): one integer sort each, 2.5x
    faster than sorting on two keys, which is the way for any other values."""
    ids = np.asarray(image_ids, dtype=np.int64)
    top, unsure = np.asarray(top, dtype=np.float64), np.asarray(unsure, dtype=np.float64)
    exact = all(np.array_equal(v.astype(np.float32), v) and not (v < 0).any() for v in (top, unsure))
    if exact and (not len(ids) or ids.max() < 2**31):
        return {
            "priority": ids[np.argsort(sortable_bits(unsure) | ids)],
            "confidence": ids[np.argsort(-(sortable_bits(top) | ids))],
        }
    return {"priority": ids[np.lexsort((ids, unsure))], "confidence": ids[np.lexsort((-ids, -top))]}


def save_queue_orders(conn, version_id: int, image_ids: np.ndarray, top: np.ndarray, unsure: np.ndarray) -> None:
    """Store the queue orders of the version's per-image summaries (all of them: ``image_ids``
    with their ``top`` and ``unsure``), for its scores revision as this transaction sees it. A
    writer that raises the revision afterwards leaves them unread (``stored_queue_order``)."""
    revision = scores_revision(conn, version_id)
    conn.execute(delete(QueueOrder).where(QueueOrder.model_version_id == version_id))
    rows = [
        {"model_version_id": version_id, "sort": sort, "scores_revision": revision, "ids": ids.astype("<i4").tobytes()}
        for sort, ids in queue_orders(image_ids, top, unsure).items()
    ]
    conn.execute(insert(QueueOrder), rows)


def stored_queue_order(session, version_id: int, sort: str) -> np.ndarray | None:
    """The version's images in ``sort`` order as stored with its current summaries; None when
    none is stored for its current scores revision (summaries changed another way since)."""
    ids = session.scalar(
        select(QueueOrder.ids)
        .join(ModelVersion, ModelVersion.id == QueueOrder.model_version_id)
        .where(
            QueueOrder.model_version_id == version_id,
            QueueOrder.sort == sort,
            QueueOrder.scores_revision == ModelVersion.scores_revision,
        )
    )
    return None if ids is None else np.frombuffer(ids, dtype="<i4").astype(np.int64)


def delete_scores(conn, version_id: int, class_ids: Iterable[int] | None = None) -> int:
    """Delete a version's stored scores (of ``class_ids`` only, when given); returns the rows."""
    table = ScoreBlock.__table__
    q = delete(table).where(table.c.model_version_id == version_id)
    if class_ids is not None:
        q = q.where(table.c.class_id.in_(list(class_ids)))
    return conn.execute(q).rowcount


def scored_classes(session, version_id: int) -> set[int]:
    """The classes the version has stored scores for."""
    return set(
        session.scalars(
            select(ScoreBlock.class_id).where(ScoreBlock.model_version_id == version_id).group_by(ScoreBlock.class_id)
        )
    )


def mark_changed(conn, version_id: int) -> None:
    """Raise the version's scores revision (inside the transaction that changed its scores or
    per-image summaries): processes drop what they derived from the old ones."""
    conn.execute(
        update(ModelVersion)
        .where(ModelVersion.id == version_id)
        .values(scores_revision=ModelVersion.scores_revision + 1)
    )


def scores_revision(session, version_id: int) -> int:
    """The version's scores revision (a primary-key read)."""
    return int(session.scalar(select(ModelVersion.scores_revision).where(ModelVersion.id == version_id)) or 0)


_kept: dict[tuple, tuple[int, Any]] = {}  # (store, version, what) -> (scores revision, value)


def kept_per_scores(session, version_id: int, what: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept per process while the version's scores revision stands still (what
    is derived from a version's scores: queue orders, counts, predicted positives)."""
    key, revision = (str(session.get_bind().url), version_id, what), scores_revision(session, version_id)
    hit = _kept.get(key)
    if hit is None or hit[0] != revision:
        if len(_kept) > 32:
            _kept.clear()
        hit = (revision, compute())
        _kept[key] = hit
    return hit[1]


@dataclass(frozen=True)
class Coverage:
    """Which images a version has per-image summaries of."""

    scored: int  # how many
    newest: int  # the newest of them
    full: bool  # every image up to ``newest`` has one: "scored" is "id <= newest"


def coverage(session, version_id: int) -> Coverage:
    """The version's ``Coverage`` (two counts, once per process and scores revision)."""

    def compute() -> Coverage:
        # Apart, and the images counted whole when the version has the newest: SQLite finds a
        # max from its index at once but not beside a count, and counts a whole table from its
        # smallest index (at 1M: 67 + 81 ms became 32 + 5).
        mine = ImageScore.model_version_id == version_id
        scored = int(session.scalar(select(func.count()).select_from(ImageScore).where(mine)) or 0)
        newest = int(session.scalar(select(func.max(ImageScore.image_id)).where(mine)) or 0)
        if newest >= int(session.scalar(select(func.max(Image.id))) or 0):
            upto = int(session.scalar(select(func.count()).select_from(Image)) or 0)
        else:
            upto = int(session.scalar(select(func.count(Image.id)).where(Image.id <= newest)) or 0)
        return Coverage(scored, newest, scored == upto)

    return kept_per_scores(session, version_id, "coverage", compute)
