"""Reads for other tools (the HTTP API and its client): which images' labels changed since a time, a
version's stored predictions, and signed image URLs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, select, union
from sqlalchemy.exc import IntegrityError

from db.models import Annotation, Image, LabelClass, StudioSetting, Submission
from mumic_core.store.label_io import ExportImage, export_rows
from mumic_core.store.scores import score_matrix, scores_of_images
from mumic_core.store.studio import Studio

_SIGNING_KEY = "image_url_signing_key"


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def labels_changed_since(
    studio: Studio, since: datetime | None, offset: int = 0, limit: int = 100
) -> tuple[list[ExportImage], int]:
    """One page (by image id) of the images whose labels changed after ``since`` (every image
    that has labels when None), each with its current labels of the active classes; and how many
    such images there are. A change is a new statement or an undone submission."""
    if since is None:
        changed = select(Annotation.image_id).where(Annotation.is_current.is_(True))
    else:
        since = _aware(since)
        changed = union(
            select(Annotation.image_id).where(Annotation.created_at > since),
            select(Annotation.image_id)
            .join(Submission, Submission.id == Annotation.submission_id)
            .where(Submission.undone_at > since),
        )
    ids = changed.subquery()
    with studio.read() as s:
        total = int(s.scalar(select(func.count(func.distinct(ids.c.image_id)))) or 0)
        page = list(s.scalars(select(ids.c.image_id).distinct().order_by(ids.c.image_id).offset(offset).limit(limit)))
    return export_rows(studio, page)[1], total


@dataclass(frozen=True)
class PredictionRow:
    image_id: int
    class_name: str
    score: float


def prediction_rows(
    studio: Studio,
    version_id: int,
    image_id: int | None = None,
    class_id: int | None = None,
    min_score: float = 0.0,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[PredictionRow], int]:
    """One page of a version's stored scores of active classes (by image, then class), and the
    number of rows that match."""
    with studio.read() as s:
        query = select(LabelClass.id, LabelClass.name).where(LabelClass.active.is_(True)).order_by(LabelClass.id)
        if class_id is not None:
            query = query.where(LabelClass.id == class_id)
        classes = s.execute(query).all()
        class_ids = [c for c, _ in classes]
        if image_id is not None:
            image_ids, prob = np.array([image_id]), scores_of_images(s, version_id, [image_id], class_ids)
        else:
            image_ids, prob = score_matrix(s, version_id, class_ids)
    with np.errstate(invalid="ignore"):
        match = ~np.isnan(prob) & (prob >= min_score)
    per_image = np.cumsum(match.sum(axis=1))
    total = int(per_image[-1]) if len(per_image) else 0
    rows: list[PredictionRow] = []
    row = int(np.searchsorted(per_image, offset, side="right"))  # the image holding match number `offset`
    skip = offset - (int(per_image[row - 1]) if row else 0)
    while row < len(image_ids) and len(rows) < limit:
        for b in np.flatnonzero(match[row])[skip:].tolist():
            if len(rows) < limit:
                rows.append(PredictionRow(int(image_ids[row]), classes[b][1], float(prob[row, b])))
        row, skip = row + 1, 0
    return rows, total


def ids_by_sha256(studio: Studio, digests: list[str]) -> dict[str, int]:
    """Stored image ids of these content hashes (those that are stored)."""
    if not digests:
        return {}
    with studio.read() as s:
        return dict(s.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(digests))).all())


def image_record(studio: Studio, image_id: int) -> tuple[str, str, str] | None:
    """An image's (sha256, relpath, format), or None when there is no such image."""
    with studio.read() as s:
        row = s.get(Image, image_id)
        return (row.sha256, row.relpath, row.format) if row is not None else None


def signing_key(studio: Studio) -> bytes:
    """The store's key for signed image URLs (made on first use): a Label Studio project can show
    exported images without an API token in the browser."""
    with studio.read() as s:
        row = s.get(StudioSetting, _SIGNING_KEY)
    if row is None:
        try:
            with studio.write() as s:
                s.add(StudioSetting(key=_SIGNING_KEY, value={"v": secrets.token_hex(32)}))
        except IntegrityError:
            pass  # made at the same moment by another request
        with studio.read() as s:
            row = s.get(StudioSetting, _SIGNING_KEY)
    return bytes.fromhex(row.value["v"])


def image_signature(studio: Studio, image_id: int) -> str:
    """The signature that lets an image URL be fetched without a token."""
    return hmac.new(signing_key(studio), f"image:{image_id}".encode(), hashlib.sha256).hexdigest()[:32]


def signature_valid(studio: Studio, image_id: int, signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(image_signature(studio, image_id).encode(), str(signature).encode())


def signed_file_url(studio: Studio, base_url: str, image_id: int) -> str:
    """An image's file URL on the HTTP API that works without a token."""
    return f"{base_url.rstrip('/')}/api/v1/images/{image_id}/file?sig={image_signature(studio, image_id)}"
