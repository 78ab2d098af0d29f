"""Scoring: embeddings, probabilities, stored predictions, zero-shot for new classes."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, delete, func, select, text, update

from db.models import (
    Annotation,
    Image,
    ImageScore,
    LabelClass,
    ModelVersion,
    QueueOrder,
)
from mumic_core.encoders.cache import EmbeddingCache, PromptCache, in_slices
from mumic_core.encoders.encoding import encode_prompts
from mumic_core.encoders.factory import Encoder, load_encoder
from mumic_core.encoders.spec import EncoderSpec
from mumic_core.errors import MumicError
from mumic_core.model.head import (
    DEFAULT_POSITIVE_RATE,
    Head,
    positive_rate,
    zero_shot_head,
)
from mumic_core.pipeline.encode_batches import encode_in_parallel
from mumic_core.store.auth import requires
from mumic_core.store.bulk import fetch_rows, insert_many
from mumic_core.store.classes import ClassInfo, active_classes
from mumic_core.store.collection import ID_SLICE, all_image_ids, image_items
from mumic_core.store.registry import VersionInfo, encoder_spec, load_head, save_head
from mumic_core.store.scores import (
    add_image_scores,
    as_stored,
    coverage,
    delete_scores,
    mark_changed,
    save_queue_orders,
    score_matrix,
    scored_classes,
    scores_of_images,
    summaries,
    write_class_scores,
)
from mumic_core.store.studio import Studio

Progress = Callable[[int], None]

_text_cache: dict[str, dict[tuple[str, ...], np.ndarray]] = {}  # encoder key -> {prompts: embedding}
_text_lock = threading.Lock()


@dataclass
class Scorer:
    """A model version ready to score: its head, and its encoder, loaded when first needed. A
    plan over cached image embeddings needs no model: class text embeddings are kept on disk
    (``prompts``), so a fresh web process neither loads the model nor runs its text tower."""

    version: VersionInfo
    spec: EncoderSpec
    head: Head | None
    prompts: PromptCache | None = None  # class prompts' text embeddings kept for this encoder

    @functools.cached_property
    def encoder(self) -> Encoder:
        return load_encoder(self.spec)

    def text_embeddings(self, prompts_per_class: Sequence[Sequence[str]], keep: bool = True) -> np.ndarray:
        """(C, D) class embeddings from prompts; each class's is computed once per encoder (a
        ViT-B-32 text tower takes seconds for a few dozen classes on a CPU) and, with ``keep``
        (class prompts, not a search's free text), kept on disk for other processes."""
        with _text_lock:
            known = _text_cache.setdefault(self.spec.key, {})
            if len(known) > 20_000:  # free-text searches add up; start over rather than grow
                known.clear()
            missing = list(dict.fromkeys(tuple(p) for p in prompts_per_class if tuple(p) not in known))
            disk = self.prompts if keep else None
            if missing and disk is not None:
                known.update(disk.get(missing))
                missing = [p for p in missing if p not in known]
            if missing:
                new = encode_prompts(self.encoder, missing).cpu().numpy()
                known.update(zip(missing, new))
                if disk is not None:
                    disk.add(missing, new)
            if not prompts_per_class:
                return np.zeros((0, self.encoder.model_cfg["embed_dim"]), dtype=np.float32)
            return np.stack([known[tuple(p)] for p in prompts_per_class])

    def class_matrix(self, names: Sequence[str], prompts: Sequence[Sequence[str]]) -> np.ndarray:
        """(C, D) what the head scores each class with (text embeddings before any head exists)."""
        if self.head is None:
            return self.text_embeddings(prompts)
        learned = self.head.class_embeddings
        if names and all(n in learned for n in names):  # no class falls back to its text
            return self.head.class_matrix(names, np.zeros((len(names), len(learned[names[0]])), dtype=np.float32))
        return self.head.class_matrix(names, self.text_embeddings(prompts))


def load_scorer(studio: Studio, version: VersionInfo) -> Scorer:
    spec = encoder_spec(studio, version)
    return Scorer(version, spec, load_head(studio, version), PromptCache(studio.settings.embedding_dir, spec.key))


def image_embeddings(
    studio: Studio, scorer: Scorer, image_ids: Sequence[int], progress: Progress | None = None
) -> np.ndarray:
    """(N, D) embeddings of stored images, in the order given; only uncached ones are encoded,
    by every live worker when they are more than one batch."""
    if not len(image_ids):  # an empty collection: (0, D), so products with class embeddings keep their shape
        return np.zeros((0, scorer.encoder.model_cfg["embed_dim"]), dtype=np.float32)
    chunk, key = studio.settings.embedding_chunk, scorer.spec.key
    cache = EmbeddingCache(studio.settings.embedding_dir, key, chunk)
    missing = cache.missing(image_ids)
    if len(missing) > chunk:  # in batches that every live worker helps with
        encode_in_parallel(studio, scorer.version.id, cache, key, missing, progress)
    return cache.ensure(lambda: scorer.encoder, image_ids, lambda missing: image_items(studio, missing), progress)[1]


def observed_positive_rate(studio: Studio) -> float:
    """The share of current human labels that say present (the default before 20 labels)."""
    with studio.read() as s:
        rows = s.execute(select(Annotation.positive).where(Annotation.is_current.is_(True))).scalars().all()
    return positive_rate(np.array(rows, dtype=np.float32)) if len(rows) >= 20 else DEFAULT_POSITIVE_RATE


def predict(
    studio: Studio,
    scorer: Scorer,
    image_ids: Sequence[int],
    classes: Sequence[ClassInfo],
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, C) float32 probabilities of stored images. A version without a head yet (a base model
    before its first scoring) gets a zero-shot head made on these images. Computed a slice of
    images at a time: at 1M images neither the similarities nor the embeddings are ever all in
    memory at once."""
    emb = image_embeddings(studio, scorer, image_ids, progress)
    names = [c.name for c in classes]
    text = scorer.text_embeddings([c.prompt_texts for c in classes])
    head = scorer.head or zero_shot_head(emb, text, observed_positive_rate(studio))
    cls = head.class_matrix(names, text)
    prob = np.empty((len(emb), len(cls)), dtype=np.float32)
    if len(cls):
        for start, block in in_slices(emb):
            prob[start : start + len(block)] = head.probabilities(block @ cls.T, names)
    return prob


def _write_predictions(
    studio: Studio,
    version_id: int,
    image_ids: np.ndarray,
    class_ids: Sequence[int],
    prob: np.ndarray,
    replace_all: bool,
) -> int:
    """Replace the version's scores (all, or those of ``class_ids``) and its per-image queue
    summaries in one transaction; returns the image-class scores written."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    class_ids = [int(c) for c in class_ids]
    prob = as_stored(prob)
    with studio.write() as s:
        conn = s.connection()
        # PostgreSQL: one writer of a version's scores at a time (SQLite's write lock does this),
        # else a second job's DELETE would not see the blocks the first one just inserted
        conn.execute(select(ModelVersion.id).where(ModelVersion.id == version_id).with_for_update())
        new_classes = not replace_all and not scored_classes(conn, version_id) & set(class_ids)
        mark_changed(conn, version_id)
        if replace_all:
            delete_scores(conn, version_id)
        write_class_scores(conn, version_id, image_ids, class_ids, prob)
        if replace_all:
            replace_image_scores(conn, version_id, image_ids, prob)
        elif not (new_classes and _merge_image_scores(conn, version_id, image_ids, prob)):
            _refresh_image_scores(conn, version_id)
        refresh_statistics(conn)
    return len(image_ids) * len(class_ids)


@requires("models")
def drop_inactive_predictions(studio: Studio, keep_version_id: int) -> int:
    """Delete the stored scores and per-image summaries of every version but ``keep_version_id``
    (the active one); versions keep their metrics, and activating one again re-scores it. One
    class per transaction, so reviewers' writes wait a moment at most. Returns the score blocks
    deleted."""
    summaries = ImageScore.__table__
    with studio.read() as s:  # a seek per version on the primary keys, not a scan
        others = s.scalars(select(ModelVersion.id).where(ModelVersion.id != keep_version_id)).all()
        has = lambda t, *where: s.scalar(select(t.c.model_version_id).where(*where).limit(1)) is not None  # noqa: E731
        stale = [v for v in others if has(summaries, summaries.c.model_version_id == v)]
        pairs = [(v, c) for v in others for c in sorted(scored_classes(s, v))]
    deleted = 0
    for version_id, class_id in pairs:
        with studio.write() as s:
            deleted += delete_scores(s.connection(), version_id, [class_id])
            mark_changed(s.connection(), version_id)
    for version_id in stale:
        with studio.write() as s:
            s.execute(delete(summaries).where(summaries.c.model_version_id == version_id))
            s.execute(delete(QueueOrder).where(QueueOrder.model_version_id == version_id))
            mark_changed(s.connection(), version_id)
    if pairs or stale:
        with studio.write() as s:
            refresh_statistics(s.connection())
    return deleted


def _merge_image_scores(conn, version_id: int, image_ids: np.ndarray, prob: np.ndarray) -> bool:
    """Fold classes scored for the first time into the per-image summaries, in memory, writing
    only the summaries that change (a new class over 100k images: well under a second), and
    their queue orders. False when the summaries do not cover exactly these images (then they
    are rebuilt)."""
    table = ImageScore.__table__
    rows = fetch_rows(
        conn,
        select(table.c.image_id, table.c.max_score, table.c.uncertainty)
        .where(table.c.model_version_id == version_id)
        .order_by(table.c.image_id),
    )
    if len(rows) != len(image_ids) or not len(rows):
        return False
    current = np.array(rows, dtype=np.float64)
    order = np.argsort(image_ids, kind="stable")
    if not np.array_equal(current[:, 0].astype(np.int64), image_ids[order]):
        return False
    top = np.maximum(current[:, 1], prob[order].max(axis=1))
    unsure = np.minimum(current[:, 2], np.abs(prob[order] - 0.5).min(axis=1))
    changed = np.flatnonzero((top != current[:, 1]) | (unsure != current[:, 2]))
    if len(changed):
        conn.execute(
            update(table)
            .where(table.c.model_version_id == version_id, table.c.image_id == bindparam("b_id"))
            .values(max_score=bindparam("b_top"), uncertainty=bindparam("b_unsure")),
            [
                {"b_id": i, "b_top": t, "b_unsure": u}
                for i, t, u in zip(
                    current[changed, 0].astype(np.int64).tolist(), top[changed].tolist(), unsure[changed].tolist()
                )
            ],
        )
    save_queue_orders(conn, version_id, current[:, 0].astype(np.int64), top, unsure)
    return True


def replace_image_scores(conn, version_id: int, image_ids: np.ndarray, prob: np.ndarray) -> None:
    """Per-image summaries (top probability, uncertainty) that keep the review queue fast, and
    their queue orders."""
    conn.execute(delete(ImageScore.__table__).where(ImageScore.model_version_id == version_id))
    top, unsure = _insert_image_scores(conn, version_id, image_ids, prob)
    save_queue_orders(conn, version_id, np.asarray(image_ids, dtype=np.int64), top, unsure)


def _insert_image_scores(
    conn, version_id: int, image_ids: np.ndarray, prob: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Insert the summaries of these images; returns them (top, uncertainty)."""
    top, unsure = summaries(prob)
    insert_many(
        conn,
        ImageScore.__table__,
        ("model_version_id", "image_id", "max_score", "uncertainty"),
        zip([version_id] * len(image_ids), np.asarray(image_ids).tolist(), top.tolist(), unsure.tolist()),
    )
    return top, unsure


def _refresh_image_scores(conn, version_id: int) -> None:
    """The per-image summaries again, from the stored scores of the active classes."""
    classes = conn.scalars(select(LabelClass.id).where(LabelClass.active.is_(True)).order_by(LabelClass.id)).all()
    image_ids, prob = score_matrix(conn, version_id, classes)
    replace_image_scores(conn, version_id, image_ids, prob)


def refresh_statistics(conn) -> None:
    """Let the planner know the tables' new contents (a sampled ANALYZE). Without it, SQLite can
    count a 100k-image queue walking an index in the wrong order (6x longer), and PostgreSQL,
    still believing a new version has no rows, reads one image's suggestions by scanning all 12M
    rows of the version (2.2 s instead of a millisecond)."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("PRAGMA analysis_limit=1000"))
        conn.execute(text("ANALYZE"))
    elif conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE score_blocks, image_scores"))


@requires("train")
def score_collection(studio: Studio, version: VersionInfo, progress: Progress | None = None) -> int:
    """Score every image against every active class; replaces the version's predictions at once."""
    scorer = load_scorer(studio, version)
    ids = all_image_ids(studio)
    classes = active_classes(studio)
    if scorer.head is None and len(ids) and classes:  # a base model's first scoring: its zero-shot head is kept
        text = scorer.text_embeddings([c.prompt_texts for c in classes])
        scorer.head = zero_shot_head(
            image_embeddings(studio, scorer, ids, progress), text, observed_positive_rate(studio)
        )
        save_head(studio, version.name, scorer.head)
        progress = None  # the images are embedded now
    prob = predict(studio, scorer, ids, classes, progress)
    return _write_predictions(studio, version.id, ids, [c.id for c in classes], prob, True)


def unscored_image_ids(studio: Studio, version_id: int) -> np.ndarray:
    """Images the version has not scored yet (imported since it scored the collection), ascending."""
    with studio.read() as s:
        ids = s.scalars(
            select(Image.id)
            .where(Image.id.not_in(select(ImageScore.image_id).where(ImageScore.model_version_id == version_id)))
            .order_by(Image.id)
        ).all()
    return np.array(ids, dtype=np.int64)


def unscored_count(studio: Studio, version_id: int) -> int:
    """How many images wait for this version's scores (they are not in its review queue yet):
    the images after the newest scored one, a key range (the Review page asks on every run)."""
    with studio.read() as s:
        cover = coverage(s, version_id)
        if cover.full:
            return int(s.scalar(select(func.count(Image.id)).where(Image.id > cover.newest)) or 0)
        return max(0, int(s.scalar(select(func.count(Image.id))) or 0) - cover.scored)


@requires("train")
def score_new_images(studio: Studio, version: VersionInfo, progress: Progress | None = None) -> int:
    """Score only the images ``version`` has not scored yet (new imports) and add their
    predictions and queue summaries; what was scored before stays as it is. Returns the rows added."""
    ids = unscored_image_ids(studio, version.id)
    scorer = load_scorer(studio, version)
    if not len(ids):
        return 0
    if scorer.head is None:  # never scored at all: calibrate on the whole collection
        return score_collection(studio, version, progress)
    classes = active_classes(studio)
    prob = predict(studio, scorer, ids, classes, progress)
    prob = as_stored(prob)
    with studio.write() as s:
        conn = s.connection()
        conn.execute(select(ModelVersion.id).where(ModelVersion.id == version.id).with_for_update())
        still = set(unscored_image_ids_in(conn, version.id, ids))  # another job may have scored some since
        keep = np.array([i in still for i in ids.tolist()], dtype=bool)
        ids, prob = ids[keep], prob[keep]
        add_image_scores(conn, version.id, ids, [c.id for c in classes], prob)
        _insert_image_scores(conn, version.id, ids, prob)
        mark_changed(conn, version.id)
        refresh_statistics(conn)
    return len(ids) * len(classes)


def unscored_image_ids_in(conn, version_id: int, image_ids: np.ndarray) -> list[int]:
    """Which of ``image_ids`` still have no summary row for the version (inside a transaction)."""
    scored: set[int] = set()
    for k in range(0, len(image_ids), ID_SLICE):
        part = image_ids[k : k + ID_SLICE].tolist()
        scored |= set(
            conn.scalars(
                select(ImageScore.image_id).where(
                    ImageScore.model_version_id == version_id, ImageScore.image_id.in_(part)
                )
            )
        )
    return [i for i in image_ids.tolist() if i not in scored]


@requires("classes")
def score_classes(studio: Studio, version: VersionInfo, class_ids: Sequence[int]) -> int:
    """Zero-shot (or learned) scores of some classes for every stored image: one matrix product
    against the cached embeddings."""
    scorer = load_scorer(studio, version)
    ids = all_image_ids(studio)
    classes = [c for c in active_classes(studio) if c.id in set(class_ids)]
    prob = predict(studio, scorer, ids, classes)
    return _write_predictions(studio, version.id, ids, [c.id for c in classes], prob, False)


def rank_images_for_prompts(
    studio: Studio, version: VersionInfo, prompts: Sequence[str], k: int = 12, name: str | None = None
) -> list[tuple[int, float]]:
    """Preview without storing anything: the k images that a class defined by ``prompts`` would
    score highest (one matrix product against the cached embeddings)."""
    scorer = load_scorer(studio, version)
    ids = all_image_ids(studio)
    if not len(ids) or not prompts:
        return []
    emb = image_embeddings(studio, scorer, ids)
    if scorer.head is None:
        raise MumicError(f"{version.name} has not scored the collection yet: run `python -m mumic_core score`")
    cls = scorer.head.class_matrix([name or ""], scorer.text_embeddings([list(prompts)]))  # as score_classes will
    sim = np.empty(len(ids), dtype=np.float32)
    for start, block in in_slices(emb):
        sim[start : start + len(block)] = block @ cls[0]
    prob = as_stored(scorer.head.probabilities(sim[:, None], [name or ""])[:, 0])
    top = np.lexsort((-ids, -prob))[:k]  # as the stored class column ranks: ties to the newest image
    return [(int(ids[i]), float(prob[i])) for i in top]


def top_predictions(studio: Studio, image_id: int, version_id: int, limit: int = 10) -> list[tuple[str, float]]:
    """(class name, probability) for one image, best first."""
    classes = active_classes(studio)
    with studio.read() as s:
        prob = scores_of_images(s, version_id, [image_id], [c.id for c in classes])[0]
    scored = [(c.name, float(p)) for c, p in zip(classes, prob.tolist()) if p == p]  # NaN: not scored
    return sorted(scored, key=lambda x: (-x[1], x[0]))[:limit]
