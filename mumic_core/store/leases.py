"""Review leases: annotators working at the same time are not handed the same images.

Each review session (a browser tab) holds a lease on the images it shows. Other sessions skip
those images until the lease is released (the session moves on or submits) or expires
(``LEASE_SECONDS`` after it was last renewed, e.g. a closed tab). Claims are atomic: two sessions
asking for the same image at once get it once (SQLite: the write lock of ``BEGIN IMMEDIATE``;
PostgreSQL: the images are taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent
claims pass over each other's images instead of waiting).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlalchemy import case, delete, select
from sqlalchemy.exc import IntegrityError

from db.models import Image, ReviewLease, utcnow
from mumic_core.store.auth import requires
from mumic_core.store.studio import Studio

LEASE_SECONDS = 600


def browser_seat(xsrf_cookie: str | None) -> str | None:
    """A stable, non-secret id of one browser from Streamlit's (tornado's) XSRF cookie, so a page
    reload keeps the browser's leases instead of locking the person out of their own image.
    The cookie is ``2|mask|masked token|time`` with a fresh mask per page load; the token is the
    same. None when there is no such cookie (then each session is its own holder)."""
    parts = (xsrf_cookie or "").split("|")
    if len(parts) != 4 or parts[0] != "2":
        return None
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return None
    if not mask or not masked:
        return None
    token = bytes(b ^ mask[k % len(mask)] for k, b in enumerate(masked))
    return "browser-" + hashlib.sha256(token).hexdigest()[:24]


@requires("review", acting_as="annotator")
def claim(
    studio: Studio,
    holder: str,
    annotator: str,
    image_ids: Sequence[int],
    want: int | None = None,
    seconds: int = LEASE_SECONDS,
    unreviewed_only: bool = False,
) -> list[int]:
    """Lease up to ``want`` (default: all) of ``image_ids`` to ``holder``, in the given order,
    skipping images another holder has; the holder's other leases are released. Returns the
    images now leased to the holder. With ``unreviewed_only``, images someone reviewed since the
    caller read its queue are skipped too (checked in the same transaction as the lease)."""
    want = len(image_ids) if want is None else want
    for attempt in range(3):
        try:
            return _claim(studio, holder, annotator, list(image_ids), want, seconds, unreviewed_only)
        except IntegrityError:  # another session inserted the same image first (Postgres); look again
            if attempt == 2:
                raise
    return []


def _claim(
    studio: Studio, holder: str, annotator: str, ids: list[int], want: int, seconds: int, unreviewed_only: bool
) -> list[int]:
    now = utcnow()
    with studio.write() as s:
        if s.bind.dialect.name != "sqlite" and ids:  # PostgreSQL: lock the first ``want`` free images,
            leased = select(ReviewLease.image_id).where(
                ReviewLease.holder != holder,  # passing over
                ReviewLease.expires_at >= now,
            )  # those another
            q = select(Image.id).where(Image.id.in_(ids), Image.id.not_in(leased))  # claim is taking
            if unreviewed_only:
                q = q.where(Image.review_count == 0)
            order = case({i: k for k, i in enumerate(ids)}, value=Image.id)
            free = set(s.scalars(q.order_by(order).limit(want).with_for_update(of=Image, skip_locked=True)))
            ids = [i for i in ids if i in free]
        s.execute(delete(ReviewLease).where(ReviewLease.expires_at < now))
        others = set(
            s.scalars(select(ReviewLease.image_id).where(ReviewLease.image_id.in_(ids), ReviewLease.holder != holder))
        )
        if unreviewed_only:
            others |= set(s.scalars(select(Image.id).where(Image.id.in_(ids), Image.review_count > 0)))
        mine = [i for i in ids if i not in others][:want]
        s.execute(delete(ReviewLease).where(ReviewLease.holder == holder, ReviewLease.image_id.not_in(mine)))
        held = {r.image_id: r for r in s.scalars(select(ReviewLease).where(ReviewLease.image_id.in_(mine)))}
        until = now + timedelta(seconds=seconds)
        for i in mine:
            if i in held:
                held[i].expires_at, held[i].annotator = until, annotator
            else:
                s.add(ReviewLease(image_id=i, holder=holder, annotator=annotator, expires_at=until))
        s.flush()
    return mine


@requires("review")
def release(studio: Studio, holder: str, image_ids: Iterable[int] | None = None) -> None:
    """End the holder's leases (all of them, or those of ``image_ids``) that are the signed-in
    person's own (the system's: anyone's)."""
    q = delete(ReviewLease).where(ReviewLease.holder == holder)
    if not studio.actor.system:
        q = q.where(ReviewLease.annotator == studio.actor.username)
    if image_ids is not None:
        q = q.where(ReviewLease.image_id.in_(list(image_ids)))
    with studio.write() as s:
        s.execute(q)


def leased_to_others(studio: Studio, holder: str, image_ids: Iterable[int] | None = None) -> dict[int, str]:
    """Image id -> annotator, for live leases held by other sessions."""
    q = select(ReviewLease.image_id, ReviewLease.annotator).where(
        ReviewLease.holder != holder, ReviewLease.expires_at >= utcnow()
    )
    if image_ids is not None:
        q = q.where(ReviewLease.image_id.in_(list(image_ids)))
    with studio.read() as s:
        return dict(s.execute(q).all())
