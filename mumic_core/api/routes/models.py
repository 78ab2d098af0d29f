"""Model versions: list, activate (a job re-scores, then switches), download, and their predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from mumic_core.api.deps import Caller, Limit, Offset, next_offset, page_of, permitted
from mumic_core.api.routes.images import class_ids
from mumic_core.api.schemas import ONE_LINE, JobQueued, Page, PredictionOut, VersionOut
from mumic_core.services.training import request_activation
from mumic_core.store.feeds import prediction_rows
from mumic_core.store.registry import VersionInfo, active_version, export_model_zip, get_version, list_versions
from mumic_core.store.studio import Studio

router = APIRouter(prefix="/versions", tags=["model versions"])
ACTIVE = "active"  # the name that means the active version in paths


def _out(v: VersionInfo) -> VersionOut:
    return VersionOut(
        id=v.id,
        name=v.name,
        kind=v.kind,
        status=v.status,
        description=v.description,
        parent=v.parent_id,
        metrics=v.metrics,
        created_at=v.created_at,
    )


def _version(studio: Studio, name: str) -> VersionInfo:
    if name == ACTIVE:
        version = active_version(studio)
        if version is None:
            raise KeyError("no version is active yet")
        return version
    return get_version(studio, name)


VersionName = Annotated[str, Path(max_length=100, pattern=ONE_LINE, description="A version's name, or `active`")]


@router.get("")
def get_versions(studio: Caller, offset: Offset = 0, limit: Limit = 100) -> Page[VersionOut]:
    """Model versions, newest first; ``status`` says which one is active."""
    return Page[VersionOut](**page_of([_out(v) for v in reversed(list_versions(studio))], offset, limit))


@router.get("/{name}")
def get_one_version(studio: Caller, name: VersionName) -> VersionOut:
    """One version by name (``active``: the active one), with its evaluation metrics."""
    return _out(_version(studio, name))


@router.post("/{name}/activate", status_code=202)
def activate_version(studio: Annotated[Studio, Depends(permitted("models"))], name: VersionName) -> JobQueued:
    """Queue the activation (or roll-back) of a version: a worker re-scores with it, then switches."""
    return JobQueued(job_id=request_activation(studio, _version(studio, name).name))


@router.get(
    "/{name}/download",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "The version as a zip"}},
)
def download_version(studio: Annotated[Studio, Depends(permitted("export"))], name: VersionName) -> Response:
    """The version as a zip: its encoder when it is a local folder, its head, and a manifest."""
    version = _version(studio, name)
    return Response(
        export_model_zip(studio, version),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="mumic-{version.name}.zip"'},
    )


@router.get("/{name}/predictions")
def get_predictions(
    studio: Caller,
    name: VersionName,
    offset: Offset = 0,
    limit: Limit = 100,
    image_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    class_name: Annotated[str | None, Query(alias="class", max_length=100, pattern=ONE_LINE)] = None,
    min_score: Annotated[float, Query(ge=0, le=1)] = 0.0,
) -> Page[PredictionOut]:
    """A version's stored scores (probabilities) of the active classes, by image then class."""
    version = _version(studio, name)
    class_id = class_ids(studio, [class_name])[class_name] if class_name else None
    rows, total = prediction_rows(studio, version.id, image_id, class_id, min_score, offset, limit)
    if not total and version.status != "active" and (image_id, class_id, min_score) == (None, None, 0.0):
        raise LookupError(
            f"{version.name} has no stored predictions: only the active version's are kept "
            "(activating it re-scores the collection with it)"
        )
    return Page[PredictionOut](
        items=[PredictionOut(image_id=r.image_id, class_name=r.class_name, score=r.score) for r in rows],
        total=total,
        offset=offset,
        limit=limit,
        next_offset=next_offset(offset, limit, total),
    )
