"""Labels: what changed since a time (what a pipeline pulls), and importing a labels file (CSV, the
product's JSON, or a Label Studio export)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, UploadFile

from mumic_core.api.deps import Caller, Limit, Offset, next_offset, permitted
from mumic_core.api.schemas import ImageLabels, LabelImportResult, LabelsPage, labels_of
from mumic_core.store.feeds import labels_changed_since
from mumic_core.store.label_io import import_labels
from mumic_core.store.studio import Studio

router = APIRouter(prefix="/labels", tags=["labels"])


@router.get("")
def pull_labels(
    studio: Caller,
    offset: Offset = 0,
    limit: Limit = 100,
    changed_since: Annotated[
        datetime | None,
        Query(
            description="Only images whose labels changed after this time (ISO 8601); all labelled images if absent."
        ),
    ] = None,
) -> LabelsPage:
    """Current labels of the images whose labels changed since a time, page by page (by image id).
    Keep ``as_of`` of the first page and pass it as ``changed_since`` next time."""
    as_of = datetime.now(UTC)
    images, total = labels_changed_since(studio, changed_since, offset, limit)
    items = [
        ImageLabels(
            image_id=im.image_id,
            sha256=im.sha256,
            filename=im.filename,
            labels=labels_of(im),
        )
        for im in images
    ]
    return LabelsPage(
        items=items, total=total, offset=offset, limit=limit, next_offset=next_offset(offset, limit, total), as_of=as_of
    )


@router.post("/import")
def import_labels_file(
    studio: Annotated[Studio, Depends(permitted("import"))],
    file: Annotated[UploadFile, File(description="CSV, the product's JSON export, or a Label Studio JSON export.")],
    mode: Annotated[
        Literal["assumed", "partial", "complete"],
        Query(description="What the classes a tag row leaves out become: assumed absent, unknown, or absent."),
    ] = "assumed",
) -> LabelImportResult:
    """Import a labels file as the caller; refused rows are listed, the others recorded."""
    report = import_labels(studio, file.file.read(), studio.actor.username, mode)
    return LabelImportResult(
        images=report.images_labelled,
        changed=report.images_changed,
        added=report.labels_added,
        errors=report.errors[:1000],
        submission_id=report.submission_id,
        summary=report.summary(),
    )
