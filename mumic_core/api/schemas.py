"""The HTTP API's request and response bodies (its OpenAPI schema is made from these)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from mumic_core.store.label_io import ExportImage, label_time, state_word

T = TypeVar("T")


def _aware(when: datetime | None) -> datetime | None:
    """SQLite gives times back without their zone; every stored time is UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


Time = Annotated[datetime, AfterValidator(_aware)]
# Text a person wrote: no control characters (a NUL cannot be stored in PostgreSQL at all), and
# ``Prose`` may span lines.
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
Line = Annotated[str, StringConstraints(pattern=ONE_LINE)]
Prose = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
ClassName = Annotated[Line, Field(max_length=100)]
LabelState = Literal["positive", "negative", "assumed_negative"]


class ErrorBody(BaseModel):
    """Every error: one message written for people."""

    error: str


class Page(BaseModel, Generic[T]):
    """One page of a list: ``next_offset`` is null on the last page."""

    items: list[T]
    total: int
    offset: int
    limit: int
    next_offset: int | None


class Me(BaseModel):
    username: str
    role: str
    permissions: list[str]


class Suggestion(BaseModel):
    class_name: str = Field(alias="class")
    probability: float
    threshold: float
    proposed: bool

    model_config = ConfigDict(populate_by_name=True)


class Label(BaseModel):
    class_name: str = Field(alias="class")
    state: LabelState
    annotator: str | None = None
    source: str | None = None
    labelled_at: str | None = None

    model_config = ConfigDict(populate_by_name=True)


def labels_of(image: ExportImage) -> list[Label]:
    """An image's current labels as the API shows them (as the exports write them)."""
    return [
        Label(
            class_name=name,
            state=state_word(a.positive, a.assumed),
            annotator=a.annotator,
            source=a.source,
            labelled_at=label_time(a.created_at) or None,
        )
        for name, a in image.labels
    ]


class ImageSummary(BaseModel):
    id: int
    filename: str
    width: int
    height: int
    review_count: int


class ImageDetail(ImageSummary):
    sha256: str
    model_version: str | None
    labels: list[Label]
    suggestions: list[Suggestion]


class UploadedFile(BaseModel):
    filename: str
    outcome: Literal["added", "duplicate", "rejected"]
    image_id: int | None = None
    reason: str | None = None


class UploadResult(BaseModel):
    added: int
    duplicates: int
    rejected: int
    files: list[UploadedFile]
    scoring_job: int | None
    note: str | None = None


class LabelsWrite(BaseModel):
    """One image's review, as the Review page records it: the classes present and absent; every
    other active class becomes an assumed negative. ``seen`` is the labels the writer last read
    (``labels`` of GET /images/{id}, as class: present); when given and someone else changed them
    since, the write is refused with 409 and nothing is recorded."""

    present: list[ClassName] = Field(default_factory=list, max_length=1000)
    absent: list[ClassName] = Field(default_factory=list, max_length=1000)
    seen: dict[ClassName, bool] | None = None
    second_review: bool = False

    model_config = ConfigDict(extra="forbid")


class WriteResult(BaseModel):
    submission_id: int
    image: ImageDetail


class ImageLabels(BaseModel):
    image_id: int
    sha256: str
    filename: str
    labels: list[Label]


class LabelsPage(Page[ImageLabels]):
    as_of: Time = Field(description="Pass as changed_since next time to get only what changed after this read.")


class ClassOut(BaseModel):
    id: int
    name: str
    description: str
    active: bool
    prompts: list[str]


class ClassCreate(BaseModel):
    name: Line = Field(min_length=1, max_length=100)
    prompts: list[Annotated[Line, Field(max_length=300)]] = Field(default_factory=list, max_length=50)
    description: Prose = Field(default="", max_length=2000)

    model_config = ConfigDict(extra="forbid")


class ClassEdit(BaseModel):
    name: Line | None = Field(default=None, min_length=1, max_length=100)
    prompts: list[Annotated[Line, Field(max_length=300)]] | None = Field(default=None, max_length=50)
    description: Prose | None = Field(default=None, max_length=2000)
    active: bool | None = None

    model_config = ConfigDict(extra="forbid")


class ClassResult(BaseModel):
    cls: ClassOut = Field(alias="class")
    scored_images: int
    seconds: float

    model_config = ConfigDict(populate_by_name=True)


class PredictionOut(BaseModel):
    image_id: int
    class_name: str = Field(alias="class")
    score: float

    model_config = ConfigDict(populate_by_name=True)


class VersionOut(BaseModel):
    id: int
    name: str
    kind: str
    status: str
    description: str
    parent: int | None
    metrics: dict
    created_at: Time | None


class JobOut(BaseModel):
    id: int
    kind: str
    status: str
    phase: str
    progress: float
    params: dict
    result: dict
    error: str | None
    cancel_requested: bool
    created_at: Time | None
    started_at: Time | None
    finished_at: Time | None


class TrainRequest(BaseModel):
    """A retraining: ``mode`` head (fast, on cached embeddings) or full (fine-tunes the encoder);
    ``activate`` if-better, always or never (default: the store's promotion policy); any other
    training setting by name (``settings``)."""

    mode: Literal["head", "full"] = "head"
    activate: Literal["if-better", "always", "never"] | None = None
    reason: Line = Field(default="requested over the API", max_length=200)
    settings: dict[
        Annotated[Line, Field(max_length=60)], float | int | Annotated[Line, Field(max_length=200)] | bool
    ] = Field(default_factory=dict, max_length=30)

    model_config = ConfigDict(extra="forbid")


class ScoreRequest(BaseModel):
    """Score the images the active version has not scored yet."""

    model_config = ConfigDict(extra="forbid")


class NearDuplicatesRequest(BaseModel):
    """Find groups of nearly identical images under the active version's embeddings: two images
    are linked when their cosine similarity is at least ``min_similarity`` and their distance
    under a tenth of the collection's median distance to a nearest neighbour."""

    min_similarity: float = Field(0.97, gt=0.0, le=1.0)

    model_config = ConfigDict(extra="forbid")


class JobQueued(BaseModel):
    job_id: int


class CancelResult(BaseModel):
    job_id: int
    outcome: str


class TokenOut(BaseModel):
    id: int
    username: str
    name: str
    prefix: str
    role: str
    created_at: Time
    last_used_at: Time | None
    revoked: bool


class TokenCreate(BaseModel):
    name: Line = Field(min_length=1, max_length=100)
    role: Literal["admin", "annotator"] | None = None
    username: Line | None = Field(
        default=None, max_length=40, description="An admin may make a token for someone else."
    )

    model_config = ConfigDict(extra="forbid")


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown once, store it now.")


class LabelImportResult(BaseModel):
    images: int
    changed: int
    added: int
    errors: list[str]
    submission_id: int | None
    summary: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str | None
