"""The client: typed results that mirror the API's schema (its OpenAPI page, ``/docs``)."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

PAGE = 500  # the API's largest page
DONE = ("succeeded", "failed", "cancelled")


class ApiError(RuntimeError):
    """The API refused a request: its status and its one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    outcome: str  # added | duplicate | rejected
    image_id: int | None
    reason: str | None


@dataclass(frozen=True)
class Label:
    class_name: str
    state: str  # positive | negative | assumed_negative
    annotator: str | None
    labelled_at: str | None


@dataclass(frozen=True)
class ImageLabels:
    image_id: int
    sha256: str
    filename: str
    labels: list[Label]

    @property
    def present(self) -> list[str]:
        return [x.class_name for x in self.labels if x.state == "positive"]


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str  # queued | running | succeeded | failed | cancelled
    phase: str
    progress: float
    result: dict
    error: str | None

    @classmethod
    def of(cls, body: dict) -> Job:
        return cls(
            body["id"], body["kind"], body["status"], body["phase"], body["progress"], body["result"], body["error"]
        )


class MumicClient:
    """The API of one MuMIC Studio server, as one token's user."""

    def __init__(self, url: str, token: str, timeout: float = 120.0, http: httpx.Client | None = None) -> None:
        self.http = http or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v1{path}", **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            raise ApiError(response.status_code, message)
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def me(self) -> dict:
        return self._call("GET", "/me")

    def push_images(self, paths: Iterable[Path | str], batch: int = 50) -> list[UploadedFile]:
        """Upload image files, ``batch`` per request; each file's outcome (bad files are
        reported, not raised)."""
        out: list[UploadedFile] = []
        paths = [Path(p) for p in paths]
        for k in range(0, len(paths), batch):
            files = [
                ("files", (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream"))
                for p in paths[k : k + batch]
            ]
            body = self._call("POST", "/images", files=files)
            out += [
                UploadedFile(f["filename"], f["outcome"], f.get("image_id"), f.get("reason")) for f in body["files"]
            ]
        return out

    def _pages(self, path: str, params: dict) -> Iterator[dict]:
        offset = 0
        while True:
            body = self._call("GET", path, params=params | {"offset": offset, "limit": PAGE})
            yield body
            if body["next_offset"] is None:
                return
            offset = body["next_offset"]

    def pull_labels(self, since: datetime | str | None = None) -> tuple[list[ImageLabels], str]:
        """Current labels of every image whose labels changed after ``since`` (all labelled images
        when None), and the time to pass as ``since`` next time."""
        params = {"changed_since": since.isoformat() if isinstance(since, datetime) else since} if since else {}
        images: list[ImageLabels] = []
        as_of = None
        for body in self._pages("/labels", params):
            as_of = as_of or body["as_of"]
            images += [
                ImageLabels(
                    i["image_id"],
                    i["sha256"],
                    i["filename"],
                    [Label(x["class"], x["state"], x.get("annotator"), x.get("labelled_at")) for x in i["labels"]],
                )
                for i in body["items"]
            ]
        return images, as_of

    def train(self, mode: str = "head", activate: str | None = None, **settings: float | int | str | bool) -> int:
        """Queue a retraining; returns its job id."""
        body: dict = {"mode": mode, "settings": settings}
        if activate:
            body["activate"] = activate
        return self._call("POST", "/jobs/train", json=body)["job_id"]

    def find_near_duplicates(self, min_similarity: float = 0.97) -> int:
        """Queue a search for groups of nearly identical images; returns its job id. The finished
        job's ``result["groups"]`` lists image ids, the largest groups first."""
        return self._call("POST", "/jobs/near-duplicates", json={"min_similarity": min_similarity})["job_id"]

    def job(self, job_id: int) -> Job:
        return Job.of(self._call("GET", f"/jobs/{job_id}"))

    def wait(self, job_id: int, timeout: float | None = None, poll: float = 2.0) -> Job:
        """Wait for a job to end; returns it (check ``status``). TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.status in DONE:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} ({job.phase}, {job.progress:.0%})")
            time.sleep(poll)

    def versions(self) -> list[dict]:
        """Model versions, newest first (as the API's VersionOut)."""
        return [v for page in self._pages("/versions", {}) for v in page["items"]]
