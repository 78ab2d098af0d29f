"""Embedding a large collection on several workers at once, resumably.

The job that needs embeddings (a scoring or promotion) splits the images not cached yet into
batches of ``MUMIC_EMBEDDING_CHUNK`` rows in ``encode_batches`` and asks the other live workers
for help. Every process, the job's own included, then claims pending batches one at a time
(``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock serialises claims).
A helper encodes its batch and returns the embeddings in the row; the job stores them in its
embedding cache and marks the row stored (it names who encoded it until the next planning).
A claim whose worker is gone (killed mid-batch) is put back as soon as that shows
(``release_dead_claims``: by pid on this machine, by the workers' heartbeats elsewhere); a claim
whose heartbeat stops (a hung worker) after ``MUMIC_BATCH_STALE_SECONDS``. Batches left by a
killed job are found and finished by the next one.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np
from sqlalchemy import and_, delete, func, or_, select, update

from db.models import EncodeBatch, utcnow
from mumic_core.encoders.cache import EmbeddingCache
from mumic_core.encoders.encoding import encode_images
from mumic_core.encoders.factory import load_encoder
from mumic_core.pipeline.queue import ask_for_help
from mumic_core.store.collection import image_items
from mumic_core.store.registry import encoder_spec, get_version
from mumic_core.store.studio import Studio
from mumic_core.store.workers import is_alive, live_workers, this_process

Progress = Callable[[int], None]
_HEARTBEAT_EVERY = 5.0
_MAX_HELPERS = 16
_held_here: set[int] = set()  # batches this process is encoding now


def plan_batches(studio: Studio, version_id: int, key: str, missing: list[int], size: int) -> int:
    """Record batches for the ``missing`` ids that no batch of this encoder holds yet; returns
    how many batches of this encoder are unfinished or waiting to be stored."""
    with studio.write() as s:
        s.execute(delete(EncodeBatch).where(EncodeBatch.encoder_key == key, EncodeBatch.status == "stored"))
        held = {
            int(i)
            for ids in s.scalars(select(EncodeBatch.image_ids).where(EncodeBatch.encoder_key == key))
            for i in ids
        }
        new = [i for i in missing if i not in held]
        for start in range(0, len(new), size):
            s.add(EncodeBatch(encoder_key=key, version_id=version_id, image_ids=new[start : start + size]))
        s.flush()
        return s.scalar(select(func.count()).select_from(EncodeBatch).where(_unfinished(key)))


def _unfinished(key: str):
    return and_(EncodeBatch.encoder_key == key, EncodeBatch.status != "stored")


def _stored(s, batch_id: int) -> None:
    """Mark a batch stored in the cache; the row stays (without embeddings) as a record of who
    encoded it, until the next planning for this encoder."""
    s.execute(update(EncodeBatch).where(EncodeBatch.id == batch_id).values(status="stored", embeddings=None))


def claim_batch(studio: Studio, key: str | None = None) -> tuple[int, int, list[int]] | None:
    """Take the oldest pending batch (or one whose holder stopped beating): (id, version, image ids)."""
    stale = utcnow() - timedelta(seconds=studio.settings.batch_stale_seconds)
    q = (
        select(EncodeBatch.id, EncodeBatch.version_id, EncodeBatch.image_ids)
        .where(
            or_(
                EncodeBatch.status == "pending", and_(EncodeBatch.status == "running", EncodeBatch.heartbeat_at < stale)
            )
        )
        .order_by(EncodeBatch.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if key is not None:
        q = q.where(EncodeBatch.encoder_key == key)
    with studio.write() as s:
        row = s.execute(q).first()
        if row is None:
            return None
        s.execute(
            update(EncodeBatch)
            .where(EncodeBatch.id == row.id)
            .values(status="running", holder=this_process(), heartbeat_at=utcnow(), attempts=EncodeBatch.attempts + 1)
        )
    _held_here.add(int(row.id))
    return int(row.id), int(row.version_id), [int(i) for i in row.image_ids]


def release_dead_claims(studio: Studio) -> int:
    """Put back the batches whose worker is gone (this machine: by pid; others: by heartbeat),
    without waiting for their claims to go stale; returns how many."""
    with studio.read() as s:
        running = s.execute(select(EncodeBatch.id, EncodeBatch.holder).where(EncodeBatch.status == "running")).all()
    dead = []
    for batch_id, holder in running:
        host, _, pid = (holder or "").rpartition(":")
        if batch_id not in _held_here and not is_alive(studio, host or None, int(pid) if pid.isdigit() else None):
            dead.append(batch_id)
    if dead:
        with studio.write() as s:
            s.execute(
                update(EncodeBatch)
                .where(EncodeBatch.id.in_(dead), EncodeBatch.status == "running")
                .values(status="pending", holder=None)
            )
    return len(dead)


def _beat(studio: Studio, batch_id: int) -> Progress:
    last = [time.monotonic()]

    def beat(_: int) -> None:
        if time.monotonic() - last[0] >= _HEARTBEAT_EVERY:
            last[0] = time.monotonic()
            with studio.write() as s:
                s.execute(
                    update(EncodeBatch)
                    .where(EncodeBatch.id == batch_id, EncodeBatch.holder == this_process())
                    .values(heartbeat_at=utcnow())
                )

    return beat


def _encode(studio: Studio, version_id: int, ids: list[int], progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """(ids, embeddings) of the batch's images that still exist."""
    encoder = load_encoder(encoder_spec(studio, get_version(studio, version_id)))
    items = image_items(studio, ids)
    return (
        np.array([i for i, _ in items], dtype=np.int64),
        encode_images(encoder, [p for _, p in items], progress=progress),
    )


def work_on_batches(studio: Studio, key: str | None = None) -> int:
    """A helper's loop: encode pending batches (of one encoder, or any) until none is left and
    hand each back in its row. Returns the number of batches done. A batch it cannot encode is
    put back, for the job's own worker to meet the error and report it."""
    done = 0
    while (batch := claim_batch(studio, key)) is not None:
        batch_id, version_id, ids = batch
        try:
            found, emb = _encode(studio, version_id, ids, _beat(studio, batch_id))
        except BaseException:
            with studio.write() as s:
                s.execute(
                    update(EncodeBatch)
                    .where(EncodeBatch.id == batch_id, EncodeBatch.holder == this_process())
                    .values(status="pending", holder=None)
                )
            raise
        finally:
            _held_here.discard(batch_id)
        buf = io.BytesIO()
        np.save(buf, emb.astype(np.float32))
        with studio.write() as s:  # unless it was taken over meanwhile, in which case both results agree
            s.execute(
                update(EncodeBatch)
                .where(EncodeBatch.id == batch_id, EncodeBatch.holder == this_process())
                .values(status="done", image_ids=found.tolist(), embeddings=buf.getvalue(), heartbeat_at=utcnow())
            )
        done += 1
    return done


def _store_finished(studio: Studio, key: str, cache: EmbeddingCache) -> int:
    """Move the embeddings that helpers handed back into the cache; returns images stored."""
    with studio.read() as s:
        done = s.execute(
            select(EncodeBatch.id, EncodeBatch.image_ids, EncodeBatch.embeddings).where(
                EncodeBatch.encoder_key == key, EncodeBatch.status == "done"
            )
        ).all()
    for batch_id, ids, blob in done:
        cache.add(np.asarray(ids, dtype=np.int64), np.load(io.BytesIO(blob)))
        with studio.write() as s:
            _stored(s, batch_id)
    return sum(len(ids) for _, ids, _ in done)


def encode_in_parallel(
    studio: Studio,
    version_id: int,
    cache: EmbeddingCache,
    key: str,
    missing: list[int],
    progress: Progress | None = None,
    poll: float = 0.5,
) -> None:
    """Embed ``missing`` images into ``cache`` with the help of every live worker, taking
    batches itself too; returns when every batch of this encoder is stored."""
    n = plan_batches(studio, version_id, key, missing, studio.settings.embedding_chunk)
    others = [w for w in live_workers(studio) if w.name != this_process()]
    if others and n > 1:
        ask_for_help(studio, key, min(len(others), n - 1, _MAX_HELPERS))
    report = progress or (lambda _: None)
    checked = time.monotonic()
    try:
        while True:
            report(_store_finished(studio, key, cache))
            batch = claim_batch(studio, key)
            if batch is not None:
                batch_id, batch_version, ids = batch
                try:
                    beat = _beat(studio, batch_id)
                    found, emb = _encode(studio, batch_version, ids, lambda k, beat=beat: (beat(k), report(k)))
                    cache.add(found, emb)
                    with studio.write() as s:
                        _stored(s, batch_id)
                finally:
                    _held_here.discard(batch_id)
                continue
            with studio.read() as s:
                left = s.scalar(select(func.count()).select_from(EncodeBatch).where(_unfinished(key)))
            if not left:
                return
            if time.monotonic() - checked > _HEARTBEAT_EVERY:  # helpers hold the rest: are they alive?
                release_dead_claims(studio)
                checked = time.monotonic()
            time.sleep(poll)
    except BaseException:
        with studio.write() as s:  # a cancelled or failed job leaves no work for helpers to start
            s.execute(delete(EncodeBatch).where(EncodeBatch.encoder_key == key, EncodeBatch.status == "pending"))
            s.execute(
                delete(EncodeBatch).where(
                    EncodeBatch.encoder_key == key,
                    EncodeBatch.status == "running",
                    EncodeBatch.holder == this_process(),
                    EncodeBatch.id.not_in(_held_here or {0}),
                )
            )
        raise
