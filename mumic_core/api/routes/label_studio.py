"""Label Studio's ML-backend protocol at ``/label-studio`` (health, setup, predict, webhook), so a
Label Studio project uses the product's model for suggestions and retrains it on its annotations.

Connect it in Label Studio: Project settings > Model > Connect model, URL
``http://HOST:PORT/label-studio``, authentication Basic with any user name and an API token as the
password; and give the project webhook Label Studio then makes the header ``Authorization: Token
<token>``, so annotations arrive as they are made. Images uploaded to Label Studio are fetched from
it with the access token it sends at setup (or ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``).
"""

from __future__ import annotations

import os
from typing import Annotated, Any
from urllib.parse import urljoin, urlparse

import httpx
from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from mumic_core.api.deps import Caller, permitted
from mumic_core.services.label_studio import apply_webhook, predict_tasks
from mumic_core.store.registry import active_version
from mumic_core.store.studio import Studio

router = APIRouter(prefix="/label-studio", tags=["label studio ml backend"])
FETCH_TIMEOUT = 20.0


class SetupRequest(BaseModel):
    project: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    hostname: str | None = None
    access_token: str | None = None
    extra_params: Any = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class PredictRequest(BaseModel):
    tasks: list[dict] = Field(max_length=1000)
    project: str | None = None
    label_config: str | None = None
    params: dict | None = None

    model_config = ConfigDict(extra="allow")


class BackendHealth(BaseModel):
    status: str
    model_class: str


class SetupResult(BaseModel):
    model_version: str | None


class Predictions(BaseModel):
    results: list[dict]
    model_version: str | None


def _project_key(project: object) -> str | None:
    """Label Studio names a project "ID.CREATED" in setup and predict, by its id in webhooks."""
    return str(project).split(".")[0] if project not in (None, "") else None


def _fetcher(request: Request, project: str | None):
    """Fetch an image a task names: Label Studio's own URLs with its access token."""
    hosts: dict = request.app.state.__dict__.setdefault("label_studio_hosts", {})
    host, token = hosts.get(_project_key(project)) or (
        os.environ.get("LABEL_STUDIO_URL"),
        os.environ.get("LABEL_STUDIO_API_KEY"),
    )
    limit = request.app.state.studio.settings.max_image_bytes

    def fetch(url: str) -> bytes:
        absolute = urljoin((host or "").rstrip("/") + "/", url) if not urlparse(url).scheme else url
        if urlparse(absolute).scheme not in ("http", "https"):
            raise ValueError(f"cannot fetch {url[:100]!r}: not an http(s) URL (set LABEL_STUDIO_URL)")
        same_host = host and urlparse(absolute).netloc == urlparse(host).netloc
        headers = {"Authorization": f"Token {token}"} if token and same_host else {}
        with httpx.stream("GET", absolute, headers=headers, timeout=FETCH_TIMEOUT) as response:
            response.raise_for_status()
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > limit:
                    raise ValueError("the image is larger than the store accepts")
        return bytes(data)

    def guarded(url: str) -> bytes:
        try:
            return fetch(url)
        except httpx.HTTPError as exc:
            raise OSError(f"could not fetch the task's image: {type(exc).__name__}") from None

    return guarded


@router.get("/health")
def backend_health() -> BackendHealth:
    """Label Studio checks that the backend is up (no token needed)."""
    return BackendHealth(status="UP", model_class="MuMIC")


@router.post("/setup")
def backend_setup(request: Request, studio: Caller, body: SetupRequest) -> SetupResult:
    """Label Studio connects a project: remember where to fetch its images; name the model version."""
    if body.project and body.hostname:
        hosts = request.app.state.__dict__.setdefault("label_studio_hosts", {})
        hosts[_project_key(body.project)] = (body.hostname, body.access_token)
    version = active_version(studio)
    return SetupResult(model_version=version.name if version else None)


@router.post("/predict")
def backend_predict(request: Request, studio: Caller, body: PredictRequest) -> Predictions:
    """Predictions for Label Studio tasks, one per task in order (the multi-label Choices)."""
    results = predict_tasks(studio, body.tasks, _fetcher(request, body.project))
    return Predictions(results=results, model_version=results[0]["model_version"] if results else None)


@router.post("/webhook")
def backend_webhook(
    request: Request,
    studio: Annotated[Studio, Depends(permitted("import"))],
    event: Annotated[dict, Body()],
) -> dict:
    """Label Studio's events: annotations become labels; START_TRAINING queues a retraining."""
    project = event.get("project")
    return apply_webhook(
        studio, event, _fetcher(request, str(project.get("id")) if isinstance(project, dict) else None)
    )
