"""Exports: labels (CSV, JSON, COCO-style, Label Studio tasks with predictions) and a FiftyOne
dataset (images, human labels and the model's scores)."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from mumic_core.api.deps import permitted
from mumic_core.api.schemas import ONE_LINE
from mumic_core.store.classes import active_classes
from mumic_core.store.feeds import signed_file_url
from mumic_core.store.fiftyone_io import export_fiftyone
from mumic_core.store.label_io import export_labels
from mumic_core.store.label_studio import export_tasks, labeling_config
from mumic_core.store.studio import Studio

router = APIRouter(prefix="/exports", tags=["exports"])
Exporter = Annotated[Studio, Depends(permitted("export"))]
MEDIA = {"csv": "text/csv", "json": "application/json", "coco": "application/json"}


@router.get(
    "/labels",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}, "description": "The labels file"}},
)
def labels_file(studio: Exporter, format: Literal["csv", "json", "coco"] = "csv") -> Response:  # noqa: A002
    """Current labels of the active classes: CSV (one row per label state), JSON, or COCO-style."""
    name = {"csv": "labels.csv", "json": "labels.json", "coco": "labels_coco.json"}[format]
    return Response(
        export_labels(studio, format),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/label-studio", response_class=JSONResponse, responses={200: {"content": {"application/json": {}}}})
def label_studio_tasks(
    request: Request,
    studio: Exporter,
    base_url: Annotated[
        str | None,
        Query(
            max_length=500,
            pattern=ONE_LINE,
            description="How Label Studio's browser reaches this API (default: as called).",
        ),
    ] = None,
    predictions: Annotated[bool, Query(description="Carry the active version's suggestions.")] = True,
) -> JSONResponse:
    """Every image as a Label Studio task (signed image URL, the active version's suggestions as
    ``predictions``, people's labels as an annotation), to import into a project made with the
    labelling config of /exports/label-studio/config."""
    base = base_url or str(request.base_url)
    return JSONResponse(export_tasks(studio, lambda i: signed_file_url(studio, base, i), predictions))


@router.get("/label-studio/config", response_class=Response, responses={200: {"content": {"application/xml": {}}}})
def label_studio_config(studio: Exporter) -> Response:
    """The labelling config of a multi-label image project over the active classes."""
    return Response(labeling_config([c.name for c in active_classes(studio)]), media_type="application/xml")


@router.get("/fiftyone", response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}})
def fiftyone_dataset(studio: Exporter) -> FileResponse:
    """A FiftyOne image classification dataset as a zip: the images, people's labels
    (``labels.json``) and the active version's scores (``predictions.json``)."""
    spool = tempfile.NamedTemporaryFile(prefix="mumic-fiftyone-", suffix=".zip", delete=False)
    with spool:
        export_fiftyone(studio, spool)
    return FileResponse(
        spool.name,
        media_type="application/zip",
        filename="mumic-fiftyone.zip",
        background=BackgroundTask(_remove, spool.name),
    )


def _remove(path: str) -> None:
    os.unlink(path)
