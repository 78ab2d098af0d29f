"""Jobs: request a retraining, the scoring of new images or a search for near-duplicates; follow
them, cancel them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mumic_core.api.deps import Caller, Id, Limit, Offset, next_offset, permitted
from mumic_core.api.schemas import (
    ONE_LINE,
    CancelResult,
    JobOut,
    JobQueued,
    NearDuplicatesRequest,
    Page,
    ScoreRequest,
    TrainRequest,
)
from mumic_core.pipeline.queue import enqueue
from mumic_core.services.training import request_scoring_of_new_images, request_training
from mumic_core.store.jobs import JobInfo, count_jobs, get_job, list_jobs, request_cancel
from mumic_core.store.registry import active_version
from mumic_core.store.studio import Studio

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _out(j: JobInfo) -> JobOut:
    return JobOut(
        id=j.id,
        kind=j.kind,
        status=j.status,
        phase=j.phase,
        progress=j.progress,
        params=j.params,
        result=j.result,
        error=j.error,
        cancel_requested=j.cancel_requested,
        created_at=j.created_at,
        started_at=j.started_at,
        finished_at=j.finished_at,
    )


@router.get("")
def get_jobs(
    studio: Caller,
    offset: Offset = 0,
    limit: Limit = 20,
    kind: Annotated[str | None, Query(max_length=30, pattern=ONE_LINE)] = None,
) -> Page[JobOut]:
    """Jobs, newest first."""
    page = list_jobs(studio, limit=offset + limit, kind=kind)[offset:]
    total = count_jobs(studio, kind)
    return Page[JobOut](
        items=[_out(j) for j in page],
        total=total,
        offset=offset,
        limit=limit,
        next_offset=next_offset(offset, limit, total),
    )


@router.get("/{job_id}")
def get_one_job(studio: Caller, job_id: Id) -> JobOut:
    """A job's status, phase, progress and result (poll it to wait)."""
    return _out(get_job(studio, job_id))


@router.post("/train", status_code=202)
def train(studio: Annotated[Studio, Depends(permitted("train"))], body: TrainRequest) -> JobQueued:
    """Queue a retraining on the current labels (409 when one is already queued or running)."""
    params: dict = dict(body.settings) | {"mode": body.mode, "reason": body.reason}
    if body.activate is not None:
        params["activate"] = body.activate
    return JobQueued(job_id=request_training(studio, params))


@router.post("/score", status_code=202)
def score(studio: Annotated[Studio, Depends(permitted("import"))], body: ScoreRequest) -> JobQueued:
    """Queue the scoring of images the active version has not scored yet."""
    job = request_scoring_of_new_images(studio)
    if job is None:
        raise ValueError("no version is active yet: nothing to score with")
    return JobQueued(job_id=job)


@router.post("/near-duplicates", status_code=202)
def near_duplicates(studio: Annotated[Studio, Depends(permitted("review"))], body: NearDuplicatesRequest) -> JobQueued:
    """Queue a search for groups of nearly identical images (409 when one is already queued or
    running); the finished job's ``result.groups`` lists image ids, largest groups first."""
    version = active_version(studio)
    if version is None:
        raise ValueError("no version is active yet: there are no embeddings to compare")
    return JobQueued(
        job_id=enqueue(studio, "near_duplicates", {"version_id": version.id, "min_similarity": body.min_similarity})
    )


@router.post("/{job_id}/cancel")
def cancel(studio: Annotated[Studio, Depends(permitted("train"))], job_id: Id) -> CancelResult:
    """Cancel a queued job at once, or ask a running one to stop (it keeps nothing half-made)."""
    get_job(studio, job_id)
    return CancelResult(job_id=job_id, outcome=request_cancel(studio, job_id))
