"""The product as a Label Studio ML backend: predictions for tasks, and labels and training from
Label Studio's webhook events.

A task made from the product's export names its image (``data.mumic_image_id``): it gets the
active version's stored suggestions. A task whose image was uploaded to Label Studio is fetched
(``fetch``), imported into the collection like any upload, and scored at once, so its later
annotations find it by content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence

from mumic_core.errors import MumicError
from mumic_core.pipeline.scoring import score_new_images
from mumic_core.services.training import request_training
from mumic_core.store import label_studio as ls
from mumic_core.store.auth import require, requires
from mumic_core.store.classes import active_classes
from mumic_core.store.collection import import_files
from mumic_core.store.feeds import ids_by_sha256, image_record, prediction_rows
from mumic_core.store.label_io import LabelImportReport, import_labels
from mumic_core.store.queue import thresholds_for
from mumic_core.store.registry import VersionInfo, active_version, load_head
from mumic_core.store.studio import Studio

Fetch = Callable[[str], bytes]
ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
TRAIN_EVENTS = ("START_TRAINING",)


def _image_of_task(studio: Studio, task: Mapping, fetch: Fetch | None) -> int | None:
    """The stored image a task shows: by the product's id, else fetched and imported (with the
    ``import`` permission) or found by content; None when it cannot be had."""
    data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
    known = data.get("mumic_image_id")
    if isinstance(known, int) and image_record(studio, known) is not None:
        return known
    url = data.get(ls.TO_NAME) or next((v for v in data.values() if isinstance(v, str) and "/" in v), None)
    if not isinstance(url, str) or fetch is None:
        return None
    body = fetch(url)
    digest = hashlib.sha256(body).hexdigest()
    found = ids_by_sha256(studio, [digest]).get(digest)
    if found is None:
        require(studio, "import")
        import_files(studio, [(ls.filename_from_url(url) or f"label-studio-{digest[:12]}", body)])
        found = ids_by_sha256(studio, [digest]).get(digest)
    return found


def _scores(studio: Studio, version: VersionInfo, image_id: int) -> dict[str, float]:
    rows, _ = prediction_rows(studio, version.id, image_id=image_id, limit=10_000)
    return {r.class_name: r.score for r in rows}


@requires("review")
def predict_tasks(studio: Studio, tasks: Sequence[Mapping], fetch: Fetch | None = None) -> list[dict]:
    """One prediction per task, in order: the active version's classes at or above their
    thresholds as the chosen choices, with scores. A task whose image cannot be found or fetched
    gets an empty prediction (``result`` []), so Label Studio keeps the others."""
    version = active_version(studio)
    if version is None:
        raise MumicError("no model version is active yet")
    head = load_head(studio, version)
    thresholds = thresholds_for(head.thresholds if head else None, [c.name for c in active_classes(studio)])
    image_ids = []
    for task in tasks:
        try:
            image_ids.append(_image_of_task(studio, task, fetch))
        except (MumicError, OSError, ValueError):
            image_ids.append(None)
    scores = {i: _scores(studio, version, i) for i in image_ids if i is not None}
    if any(not s for s in scores.values()):  # an image fetched now (or imported but not yet scored)
        score_new_images(studio, version)
        scores = {i: s or _scores(studio, version, i) for i, s in scores.items()}
    return [ls.prediction(version.name, scores.get(i, {}) if i is not None else {}, thresholds) for i in image_ids]


def _one_task_export(event: Mapping) -> list[dict]:
    task = event.get("task") if isinstance(event.get("task"), Mapping) else {}
    annotation = event.get("annotation") if isinstance(event.get("annotation"), Mapping) else None
    if annotation is None or not isinstance(task.get("data"), Mapping):
        raise ValueError("an annotation event needs 'task' (with 'data') and 'annotation'")
    return [{"data": dict(task["data"]), "annotations": [dict(annotation)]}]


@requires("review")
def apply_webhook(studio: Studio, event: Mapping, fetch: Fetch | None = None) -> dict:
    """A Label Studio event: an annotation made or changed is recorded as the task image's labels
    (its ticked classes present, the others absent; by the caller, who needs ``import``);
    START_TRAINING queues a head retraining (``train``). Other events are acknowledged."""
    action = str(event.get("action") or "")
    if action in ANNOTATION_EVENTS:
        tasks = _one_task_export(event)
        image_id = _image_of_task(studio, tasks[0], fetch)
        if image_id is None:
            raise ValueError("the task's image is not in the collection and could not be fetched")
        tasks[0]["data"] = {"mumic_image_id": image_id}
        report: LabelImportReport = import_labels(studio, json.dumps(tasks).encode(), studio.actor.username, "complete")
        if report.errors:
            raise ValueError(report.errors[0])
        return {"status": "ok", "action": action, "image_id": image_id, "changed": report.images_changed}
    if action in TRAIN_EVENTS:
        job = request_training(studio, {"mode": "head", "reason": "Label Studio asked to train"})
        return {"status": "ok", "action": action, "job_id": job}
    return {"status": "ignored", "action": action}
