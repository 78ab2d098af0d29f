"""Scoring: embeddings, probabilities, stored predictions, zero-shot for new classes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import case, delete, func, insert, select, text, update

from db.models import Annotation, Image, ImageScore, LabelClass, ModelVersion, Prediction

from .classifier import Head, encode_prompts
from .embeddings import EmbeddingCache
from .errors import MumicError
from .losses import init_temperature_offset
from .model_factory import Encoder, load_encoder
from .registry import encoder_spec, head_path, load_head
from .studio import Studio

Progress = Callable[[int], None]
DEFAULT_POSITIVE_RATE = 0.15
_INSERT_CHUNK = 20_000


@dataclass
class Scorer:
    """A model version ready to score: encoder + head."""

    version: ModelVersion
    encoder: Encoder
    head: Head | None

    def text_embeddings(self, prompts_per_class: Sequence[Sequence[str]]) -> np.ndarray:
        return encode_prompts(self.encoder, prompts_per_class).cpu().numpy()

    def class_matrix(self, names: Sequence[str], prompts: Sequence[Sequence[str]]) -> np.ndarray:
        text = self.text_embeddings(prompts)
        return self.head.class_matrix(names, text) if self.head else text


def load_scorer(studio: Studio, version: ModelVersion) -> Scorer:
    return Scorer(version, load_encoder(encoder_spec(studio, version)), load_head(studio, version))


def image_items(studio: Studio, image_ids: Sequence[int] | None = None) -> list[tuple[int, Path]]:
    """(id, file path) for all images, or for the given ids, in id order."""
    with studio.read() as s:
        q = select(Image.id, Image.relpath).order_by(Image.id)
        if image_ids is not None:
            q = q.where(Image.id.in_(list(image_ids)))
        rows = s.execute(q).all()
    root = studio.settings.image_dir
    return [(i, root / rel) for i, rel in rows]


def image_embeddings(studio: Studio, scorer: Scorer, items: Sequence[tuple[int, Path]],
                     progress: Progress | None = None) -> np.ndarray:
    cache = EmbeddingCache(studio.settings.embedding_dir, scorer.encoder.spec.key, studio.settings.embedding_chunk)
    return cache.ensure(scorer.encoder, items, progress=progress)[1]


def active_classes(studio: Studio) -> list[LabelClass]:
    with studio.read() as s:
        return list(s.scalars(select(LabelClass).where(LabelClass.active.is_(True)).order_by(LabelClass.id)))


def observed_positive_rate(studio: Studio) -> float:
    with studio.read() as s:
        rows = s.execute(select(Annotation.positive).where(Annotation.is_current.is_(True))).scalars().all()
    return float(np.clip(np.mean(rows), 0.02, 0.5)) if len(rows) >= 20 else DEFAULT_POSITIVE_RATE


def calibrate_base_head(studio: Studio, scorer: Scorer, similarity: np.ndarray) -> Head:
    """For a version without a trained head: tau and b from its own score distribution."""
    temperature, offset = init_temperature_offset(
        torch.from_numpy(similarity), positive_rate=observed_positive_rate(studio)
    )
    head = Head(temperature=float(temperature), offset=float(offset))
    path = head_path(studio, scorer.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    head.save(path)
    scorer.head = head
    return head


def predict(studio: Studio, scorer: Scorer, items: Sequence[tuple[int, Path]], classes: Sequence[LabelClass],
            progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, probability) arrays of shape (N, C)."""
    emb = image_embeddings(studio, scorer, items, progress)
    names = [c.name for c in classes]
    cls = scorer.class_matrix(names, [c.prompt_texts for c in classes])
    sim = emb @ cls.T if len(cls) else np.zeros((len(emb), 0), dtype=np.float32)
    head = scorer.head or (calibrate_base_head(studio, scorer, sim) if sim.size else Head(1.0, 0.0))
    return sim, head.probabilities(sim, names)


def _write_predictions(studio: Studio, version_id: int, image_ids: Sequence[int], class_ids: Sequence[int],
                       sim: np.ndarray, prob: np.ndarray, replace_all: bool) -> int:
    """Replace the version's predictions (all, or those of ``class_ids``) in one transaction.
    Rows are built one chunk of images at a time, so memory stays flat at 100k+ images."""
    per_chunk = max(1, _INSERT_CHUNK // max(1, len(class_ids)))
    with studio.write() as s:
        new_classes = not replace_all and s.scalar(
            select(Prediction.image_id).where(Prediction.model_version_id == version_id,
                                              Prediction.class_id.in_(list(class_ids))).limit(1)) is None
        q = delete(Prediction).where(Prediction.model_version_id == version_id)
        if not replace_all:
            q = q.where(Prediction.class_id.in_(list(class_ids)))
        s.execute(q)
        for start in range(0, len(image_ids), per_chunk):
            rows = [
                {"model_version_id": version_id, "image_id": int(image_ids[a]), "class_id": int(c),
                 "similarity": float(sim[a, b]), "score": float(prob[a, b])}
                for a in range(start, min(start + per_chunk, len(image_ids))) for b, c in enumerate(class_ids)
            ]
            if rows:
                s.execute(insert(Prediction), rows)
        summaries = s.scalar(select(func.count()).select_from(ImageScore)
                             .where(ImageScore.model_version_id == version_id))
        if new_classes and summaries == len(image_ids):
            _merge_image_scores(s, version_id, class_ids)
        else:
            _refresh_image_scores(s, version_id)
    return len(image_ids) * len(class_ids)


def _merge_image_scores(session, version_id: int, class_ids: Sequence[int]) -> None:
    """Fold classes scored for the first time into the per-image summaries (a new class over
    100k images: one pass over its own predictions instead of all of them)."""
    new = (select(Prediction.image_id, func.max(Prediction.score).label("top"),
                  func.min(func.abs(Prediction.score - 0.5)).label("unsure"))
           .where(Prediction.model_version_id == version_id, Prediction.class_id.in_(list(class_ids)))
           .group_by(Prediction.image_id).subquery())
    session.execute(
        update(ImageScore)
        .where(ImageScore.model_version_id == version_id, ImageScore.image_id == new.c.image_id)
        .values(max_score=case((new.c.top > ImageScore.max_score, new.c.top), else_=ImageScore.max_score),
                uncertainty=case((new.c.unsure < ImageScore.uncertainty, new.c.unsure),
                                 else_=ImageScore.uncertainty)))
    refresh_statistics(session)


def _refresh_image_scores(session, version_id: int) -> None:
    """Per-image summaries (top probability, uncertainty) that keep the review queue fast."""
    session.execute(delete(ImageScore).where(ImageScore.model_version_id == version_id))
    session.execute(insert(ImageScore).from_select(
        ["model_version_id", "image_id", "max_score", "uncertainty"],
        select(Prediction.model_version_id, Prediction.image_id, func.max(Prediction.score),
               func.min(func.abs(Prediction.score - 0.5)))
        .join(LabelClass, LabelClass.id == Prediction.class_id)
        .where(Prediction.model_version_id == version_id, LabelClass.active.is_(True))
        .group_by(Prediction.model_version_id, Prediction.image_id),
    ))
    refresh_statistics(session)


def refresh_statistics(session) -> None:
    """Let SQLite's planner know the tables' sizes (a sampled ANALYZE, milliseconds): without
    it, counting a 100k-image queue can walk an index in the wrong order and take 6x longer."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA analysis_limit=1000"))
        session.execute(text("ANALYZE"))


def score_collection(studio: Studio, version: ModelVersion, progress: Progress | None = None) -> int:
    """Score every image against every active class; replaces the version's predictions at once."""
    scorer = load_scorer(studio, version)
    items = image_items(studio)
    classes = active_classes(studio)
    sim, prob = predict(studio, scorer, items, classes, progress)
    return _write_predictions(studio, version.id, [i for i, _ in items], [c.id for c in classes], sim, prob, True)


def score_classes(studio: Studio, version: ModelVersion, class_ids: Sequence[int]) -> int:
    """Zero-shot (or learned) scores of some classes for every stored image: one matrix product
    against the cached embeddings."""
    scorer = load_scorer(studio, version)
    items = image_items(studio)
    classes = [c for c in active_classes(studio) if c.id in set(class_ids)]
    sim, prob = predict(studio, scorer, items, classes)
    return _write_predictions(studio, version.id, [i for i, _ in items], [c.id for c in classes], sim, prob, False)


def rank_images_for_prompts(studio: Studio, version: ModelVersion, prompts: Sequence[str], k: int = 12,
                            name: str | None = None) -> list[tuple[int, float]]:
    """Preview without storing anything: the k images that a class defined by ``prompts`` would
    score highest (one matrix product against the cached embeddings)."""
    scorer = load_scorer(studio, version)
    items = image_items(studio)
    if not items or not prompts:
        return []
    emb = image_embeddings(studio, scorer, items)
    text = scorer.text_embeddings([list(prompts)])
    if name and scorer.head and name in scorer.head.class_embeddings:
        text = scorer.head.class_matrix([name], text)
    if scorer.head is None:
        raise MumicError(f"{version.name} has not scored the collection yet: run `python -m mumic_core score`")
    prob = scorer.head.probabilities(emb @ text.T, [name or ""])[:, 0]
    top = np.argsort(-prob)[:k]
    return [(items[i][0], float(prob[i])) for i in top]


def top_predictions(studio: Studio, image_id: int, version_id: int, limit: int = 10) -> list[tuple[str, float]]:
    """(class name, probability) for one image, best first."""
    with studio.read() as s:
        rows = s.execute(
            select(LabelClass.name, Prediction.score)
            .join(LabelClass, LabelClass.id == Prediction.class_id)
            .where(Prediction.image_id == image_id, Prediction.model_version_id == version_id,
                   LabelClass.active.is_(True))
            .order_by(Prediction.score.desc()).limit(limit)
        ).all()
    return [(n, float(p)) for n, p in rows]
