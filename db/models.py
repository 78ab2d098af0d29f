"""SQLAlchemy ORM: the store's tables.

History is append-only where people's work is concerned: an annotation is never updated in
place except to mark it superseded by the row that corrects it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Timezone-aware now, stored as UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    original_name: Mapped[str] = mapped_column(String(512))
    relpath: Mapped[str] = mapped_column(String(512))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(8), default="train")
    review_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelClass(Base):
    __tablename__ = "classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    normalized_name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    prompts: Mapped[list[ClassPrompt]] = relationship(
        back_populates="label_class",
        order_by="ClassPrompt.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )

    @property
    def prompt_texts(self) -> list[str]:
        return [p.text for p in self.prompts]


class ClassPrompt(Base):
    __tablename__ = "class_prompts"

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(String(500))
    label_class: Mapped[LabelClass] = relationship(back_populates="prompts")


class Annotation(Base):
    """A statement that a class is or is not in an image: a human positive, a human negative, or
    an *assumed* negative (``assumed``: the image was labelled and this class was not named, so it
    is probably absent; a missed label is possible). A pair without a current row is *unknown*."""

    __tablename__ = "annotations"
    __table_args__ = (
        # At most one current statement per image-class pair, whatever the number of writers.
        Index(
            "uq_annotation_current",
            "image_id",
            "class_id",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
        # Human positives per class (active learning's rare-class strategy), counted from this
        # index alone: a scan of every label took 70 ms at 155k labels. SQLite matches a partial
        # index only by the query's own words, and SQLAlchemy writes its booleans as "= 1" there.
        Index(
            "ix_annotations_current_positive",
            "class_id",
            sqlite_where=text("is_current = 1 AND positive = 1"),
            postgresql_where=text("is_current AND positive"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    positive: Mapped[bool] = mapped_column(Boolean)
    assumed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    annotator: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20), default="review")
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("annotations.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    submission_id: Mapped[int | None] = mapped_column(Integer, index=True)  # submissions.id
    suggested_score: Mapped[float | None] = mapped_column(Float)  # what the model showed, if anything


class Submission(Base):
    """One person's submit of one or more images: the unit of undo."""

    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    annotator: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    image_ids: Mapped[list] = mapped_column(JSON, default=list)


class StoreRevision(Base):
    """Named counters raised by the transactions that change what they name (``labels``: every
    labels write and undo). Processes keep what they derive (reviewed and disputed images) while
    the counter stands still; raising it early in the writing transaction also orders the
    writers, so a reader never sees a later change without an earlier one (PostgreSQL)."""

    __tablename__ = "store_revisions"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(30))  # pretrained | builtin-random | head | full
    description: Mapped[str] = mapped_column(Text, default="")
    architecture: Mapped[str] = mapped_column(String(100))
    weights: Mapped[str] = mapped_column(String(1000))  # open_clip tag, file, or local-dir:
    head_path: Mapped[str | None] = mapped_column(String(1000))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    training_config: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="candidate")  # candidate|active|retired
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Raised whenever the version's stored scores or per-image summaries change: what a process
    # derives from them (queue orders, predicted counts) stays valid while it does not move.
    scores_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ScoreBlock(Base):
    """A model version's probabilities for one class over a block of consecutive image ids:
    ``scores`` holds ``SCORE_BLOCK`` little-endian float16 values, the one for image id ``i`` at
    ``i - block * SCORE_BLOCK``, NaN where that image has no score (not imported, or imported
    after the version scored). One row per 1,024 images and class instead of one per image and
    class: 1M images x 120 classes are 117k rows (0.24 GB) per version, written in seconds."""

    __tablename__ = "score_blocks"
    __table_args__ = (
        PrimaryKeyConstraint("model_version_id", "class_id", "block"),  # a class's column: one range
        Index("ix_score_blocks_version_block", "model_version_id", "block"),  # some images' rows
    )

    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    block: Mapped[int] = mapped_column(Integer)
    scores: Mapped[bytes] = mapped_column(LargeBinary)


SCORE_BLOCK = 1024  # image ids per ScoreBlock row


class QueueOrder(Base):
    """A version's scored images in one queue order (``sort``: priority or confidence), as the
    SQL over its per-image summaries lists them: little-endian int32 image ids. Written with the
    summaries, for the scores revision they belong to; a process reads this one row (4 MB at 1M
    images) instead of 1M summaries in index order (0.4 s on SQLite, 1.8 s on PostgreSQL)."""

    __tablename__ = "queue_orders"

    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    sort: Mapped[str] = mapped_column(String(20), primary_key=True)
    scores_revision: Mapped[int] = mapped_column(Integer)
    ids: Mapped[bytes] = mapped_column(LargeBinary)


class ImageScore(Base):
    """Per image and model version: summaries of its predictions, for fast queue sorting."""

    __tablename__ = "image_scores"
    __table_args__ = (
        # image_id last: queue pages come out of the index in order, with no sort step.
        Index("ix_image_scores_version_max", "model_version_id", "max_score", "image_id"),
        Index("ix_image_scores_version_uncertainty", "model_version_id", "uncertainty", "image_id"),
    )

    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    max_score: Mapped[float] = mapped_column(Float)
    uncertainty: Mapped[float] = mapped_column(Float)  # min over classes of |p - 0.5|: low = uncertain


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    phase: Mapped[str] = mapped_column(String(100), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    worker_host: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Live numbers of the current phase (epoch, step, loss, phase start) for the pages.
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set while a job that must not run twice at once is queued or running ("train"); the unique
    # constraint makes "one training at a time" hold across processes. NULL once it ends.
    exclusive_key: Mapped[str | None] = mapped_column(String(50), unique=True)


class JobLog(Base):
    """Human-readable lines a job writes as it goes."""

    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    message: Mapped[str] = mapped_column(Text)


class StudioSetting(Base):
    """Collection-wide settings changed from the UI (e.g. automatic retraining)."""

    __tablename__ = "studio_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, default=dict)


class ReviewLease(Base):
    """An image shown to one review session: others are not handed it until the lease ends."""

    __tablename__ = "review_leases"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64), index=True)  # one browser session
    annotator: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class User(Base):
    """A person who signs in: an admin (everything) or an annotator (review)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserSession(Base):
    """A signed-in browser session; only the hashes of its tokens are stored: the tab's token,
    the token of the browser's HttpOnly cookie, and a one-time code that obtains the cookie."""

    __tablename__ = "user_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cookie_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    cookie_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    cookie_code_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A personal API token: only its SHA-256 is stored, with a short prefix to tell tokens apart.
    It acts as its user with at most ``role`` (an admin may make an annotator-only token)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SignInAttempt(Base):
    """One password check for a name from a client address: recorded as pending before the
    check runs (so parallel guesses count), then marked failed or succeeded."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (Index("ix_sign_in_attempts_username_at", "username", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    outcome: Mapped[str] = mapped_column(String(10))  # pending | failed | succeeded | disabled


class AuditEvent(Base):
    """Who changed what and when, for changes other than labels (those keep it on each row)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(40), index=True)
    action: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Worker(Base):
    """A worker process (any machine), kept alive by a heartbeat while it runs."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(60), default="cpu")
    queue: Mapped[str] = mapped_column(String(20), default="sqlite")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class EncodeBatch(Base):
    """A slice of the images an encoder still has to embed. Any worker may claim a pending one
    (SKIP LOCKED on PostgreSQL); its embeddings come back in the row until the job that made the
    batches stores them. A claim whose heartbeat stops (a dead worker) is claimed again."""

    __tablename__ = "encode_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    encoder_key: Mapped[str] = mapped_column(String(200), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    image_ids: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending, running, done, stored
    holder: Mapped[str | None] = mapped_column(String(120))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    embeddings: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)  # .npy bytes, float32 (N, D)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
