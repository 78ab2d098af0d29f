"""Images: upload, list with the Review queue's filters, one image with labels and suggestions, its
file, and writing its labels (the Review page's submit, with its stale-view check)."""

from __future__ import annotations

import hashlib
import mimetypes
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import FileResponse

from mumic_core.api.deps import Caller, Id, Limit, Offset, base_studio, caller, next_offset, permitted, token_header
from mumic_core.api.schemas import (
    ONE_LINE,
    ImageDetail,
    ImageSummary,
    LabelsWrite,
    Page,
    Suggestion,
    UploadedFile,
    UploadResult,
    WriteResult,
    labels_of,
)
from mumic_core.services.importing import import_uploads
from mumic_core.services.review import submit
from mumic_core.store.classes import active_classes, normalize_name
from mumic_core.store.feeds import ids_by_sha256, image_record, signature_valid
from mumic_core.store.label_io import export_rows
from mumic_core.store.queue import STATUSES, QueueFilter, image_views, queue_count, queue_page, thresholds_for
from mumic_core.store.registry import VersionInfo, active_version, load_head
from mumic_core.store.studio import Studio

router = APIRouter(prefix="/images", tags=["images"])
MAX_FILES = 1000
Status = Literal[tuple(STATUSES)]  # type: ignore[valid-type]


def class_ids(studio: Studio, names: list[str]) -> dict[str, int]:
    """Active class ids by the names given (matched as the store matches names: case and
    spacing do not matter); ValueError names the unknown or inactive ones."""
    known = {c.normalized_name: c.id for c in active_classes(studio)}
    unknown = [n for n in names if normalize_name(n) not in known]
    if unknown:
        raise ValueError(f"unknown or inactive class {', '.join(repr(u[:100]) for u in unknown[:5])}")
    return {n: known[normalize_name(n)] for n in names}


def detail(studio: Studio, image_id: int, version: VersionInfo | None, top_k: int = 9) -> ImageDetail:
    """An image with its current labels and the active version's suggestions."""
    record = image_record(studio, image_id)
    if record is None:
        raise KeyError(f"no image with id {image_id}")
    head = load_head(studio, version) if version is not None else None
    names = [c.name for c in active_classes(studio)]
    view = image_views(
        studio,
        [image_id],
        version.id if version else None,
        top_k,
        thresholds_for(head.thresholds if head else None, names),
    )[0]
    stated = export_rows(studio, [image_id])[1]
    labels = labels_of(stated[0]) if stated else []
    return ImageDetail(
        id=view.image_id,
        filename=view.name,
        width=view.width,
        height=view.height,
        review_count=view.review_count,
        sha256=record[0],
        model_version=version.name if version else None,
        labels=labels,
        suggestions=[
            Suggestion(class_name=s.name, probability=s.probability, threshold=s.threshold, proposed=s.proposed)
            for s in view.suggestions
        ],
    )


@router.post("", status_code=201)
def upload_images(
    studio: Annotated[Studio, Depends(permitted("import"))],
    files: Annotated[list[UploadFile], File(description="Image files (JPEG, PNG, WebP, …); bad ones are reported.")],
) -> UploadResult:
    """Upload images: each is validated and stored, duplicates are skipped, and the new ones are
    queued for scoring by the active version (they get suggestions once a worker has run it)."""
    if len(files) > MAX_FILES:
        raise ValueError(f"at most {MAX_FILES} files per request")
    named = [(f.filename or f"upload-{k}", f.file.read()) for k, f in enumerate(files, start=1)]
    outcome = import_uploads(studio, named)
    report = outcome.report
    digests = [hashlib.sha256(data).hexdigest() for _, data in named]
    ids = ids_by_sha256(studio, digests)
    reasons = dict(report.rejected)
    duplicates = dict(report.duplicates)
    listed = []
    for (name, _), digest in zip(named, digests):
        if name in reasons:
            listed.append(UploadedFile(filename=name, outcome="rejected", reason=reasons.pop(name)))
        elif name in report.added and digest in ids:
            listed.append(UploadedFile(filename=name, outcome="added", image_id=ids[digest]))
        else:
            listed.append(
                UploadedFile(
                    filename=name,
                    outcome="duplicate",
                    image_id=ids.get(digest),
                    reason=duplicates.get(name, "already in the collection"),
                )
            )
    return UploadResult(
        added=len(report.added),
        duplicates=len(report.duplicates),
        rejected=len(report.rejected),
        files=listed,
        scoring_job=outcome.scoring_job,
        note=report.stopped or outcome.not_queued,
    )


@router.get("")
def list_images(
    studio: Caller,
    offset: Offset = 0,
    limit: Limit = 50,
    status: Annotated[Status, Query(description="Review status, as on the Review page.")] = "all",
    class_name: Annotated[
        str | None,
        Query(alias="class", max_length=100, pattern=ONE_LINE, description="Only images scored for this class ..."),
    ] = None,
    min_score: Annotated[
        float, Query(ge=0, le=1, description="... between these scores (of the class, or top).")
    ] = 0.0,
    max_score: Annotated[float, Query(ge=0, le=1)] = 1.0,
    sort: Annotated[
        Literal["priority", "confidence", "newest"], Query(description="priority: most uncertain first")
    ] = ("newest"),
) -> Page[ImageSummary]:
    """Images in the Review queue's order, filtered like it."""
    version = active_version(studio)
    class_id = class_ids(studio, [class_name])[class_name] if class_name else None
    queue = QueueFilter(
        version.id if version else None,
        class_id=class_id,
        min_score=min_score,
        max_score=max_score,
        status=status,
        sort=sort,
        reviewer=studio.actor.username,
    )
    total = queue_count(studio, queue)
    ids = queue_page(studio, queue, offset, limit)
    views = {v.image_id: v for v in image_views(studio, ids, None, top_k=0)}
    items = [
        ImageSummary(id=v.image_id, filename=v.name, width=v.width, height=v.height, review_count=v.review_count)
        for v in (views[i] for i in ids if i in views)
    ]
    return Page[ImageSummary](
        items=items, total=total, offset=offset, limit=limit, next_offset=next_offset(offset, limit, total)
    )


@router.get("/{image_id}")
def get_image(
    studio: Caller,
    image_id: Id,
    top_k: Annotated[int, Query(ge=0, le=200, description="Suggestions to list (labelled classes come too).")] = 9,
) -> ImageDetail:
    """One image: its current labels (assumed negatives too) and the active version's suggestions."""
    return detail(studio, image_id, active_version(studio), top_k)


@router.get("/{image_id}/file", response_class=FileResponse, responses={200: {"content": {"image/*": {}}}})
def get_image_file(
    request: Request,
    image_id: Id,
    authorization: Annotated[str | None, Depends(token_header)] = None,
    sig: Annotated[
        str | None, Query(max_length=64, pattern=ONE_LINE, description="A signed URL's signature (exports carry them).")
    ] = None,
) -> FileResponse:
    """The stored image file as uploaded; with a token, or by a signed URL from an export (so
    Label Studio and FiftyOne can show it without one)."""
    studio = base_studio(request)
    if not signature_valid(studio, image_id, sig):
        caller(request, authorization)
    record = image_record(studio, image_id)
    if record is None:
        raise KeyError(f"no image with id {image_id}")
    path = studio.store.open(record[1])
    media = mimetypes.guess_type(f"x.{record[2].lower()}")[0] or "application/octet-stream"
    return FileResponse(path, media_type=media)


@router.put("/{image_id}/labels")
def write_labels(studio: Caller, image_id: Id, body: LabelsWrite) -> WriteResult:
    """Record this image's review as the caller: ``present`` and ``absent`` classes, every other
    active class as an assumed negative. With ``seen``, refused (409) when the labels changed
    since the caller read them."""
    version = active_version(studio)
    present = class_ids(studio, body.present)
    absent = class_ids(studio, body.absent)
    views = image_views(studio, [image_id], version.id if version else None, top_k=0)
    if not views:
        raise KeyError(f"no image with id {image_id}")
    view = views[0]
    if body.seen is not None:
        seen_ids = class_ids(studio, list(body.seen))
        view.labels = {seen_ids[name]: present for name, present in body.seen.items()}
    submission = submit(studio, view, present.values(), absent.values(), studio.actor.username, body.second_review)
    return WriteResult(submission_id=submission, image=detail(studio, image_id, version))
