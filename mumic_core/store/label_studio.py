"""Label Studio's shapes: a multi-label image project's labelling config, tasks carrying the
product's suggestions as ``predictions``, and reading a Label Studio JSON export back.

A task's ``data`` holds the image URL (``image``), the product's image id (``mumic_image_id``) and
file name, so exports, predictions and imports find the same image. Classes are the ``Choice``
values of one ``<Choices choice="multiple">`` control named ``label`` on an ``<Image>`` named
``image``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import quoteattr

from mumic_core.store.auth import requires
from mumic_core.store.snapshot import collection_snapshot
from mumic_core.store.studio import Studio

FROM_NAME = "label"
TO_NAME = "image"
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio prefixes uploaded file names with this


def labeling_config(class_names: Sequence[str]) -> str:
    """The labelling config of a multi-label image project over these classes."""
    choices = "\n".join(f"    <Choice value={quoteattr(n)}/>" for n in class_names)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="multiple" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def choices_result(choices: Sequence[str]) -> list[dict]:
    """A Label Studio ``result`` that selects these choices (empty: nothing selected)."""
    if not choices:
        return []
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": list(choices)}}]


def prediction(model_version: str, scores: Mapping[str, float], thresholds: Mapping[str, float]) -> dict:
    """A task's prediction: the classes at or above their threshold as the chosen choices, the
    prediction's score as their mean probability (or 1 - the top probability when none is chosen:
    how sure the model is that nothing is there), and every scored class in ``mumic_scores``."""
    chosen = [n for n, p in sorted(scores.items(), key=lambda x: -x[1]) if p >= thresholds.get(n, 0.5)]
    if chosen:
        score = sum(scores[n] for n in chosen) / len(chosen)
    else:
        score = 1.0 - max(scores.values(), default=0.0)
    return {
        "model_version": model_version,
        "score": round(float(score), 4),
        "result": choices_result(chosen),
        "mumic_scores": {n: round(float(p), 4) for n, p in scores.items()},
    }


def task(image_id: int, filename: str, image_url: str) -> dict:
    """A task's ``data`` for one image."""
    return {"data": {"image": image_url, "mumic_image_id": image_id, "filename": filename}}


def filename_from_url(url: str) -> str:
    """The file name a Label Studio image URL names: an upload's name without its hash prefix,
    a local-files path's last part, or a URL's last path segment."""
    parsed = urlparse(url)
    local = parse_qs(parsed.query).get("d")
    name = PurePosixPath(unquote(local[0] if local else parsed.path)).name
    if "/upload/" in parsed.path:
        name = _UPLOAD_PREFIX.sub("", name)
    return name


def task_image(task_: Mapping) -> dict[str, str]:
    """How to find a task's image in the store: the product's image id when the task came from
    it, else the file name of its image URL (an identifier row for the labels reader)."""
    data = task_.get("data") if isinstance(task_.get("data"), Mapping) else {}
    if data.get("mumic_image_id") is not None:
        return {"image_id": str(data["mumic_image_id"])}
    if data.get("filename"):
        return {"filename": str(data["filename"])}
    image = next((v for v in data.values() if isinstance(v, str) and v), "")
    return {"filename": filename_from_url(str(data.get(TO_NAME) or image))}


def chosen_classes(result: object) -> list[str]:
    """The choices selected in an annotation's or prediction's ``result`` (any Choices control)."""
    if not isinstance(result, list):
        return []
    names: list[str] = []
    for item in result:
        value = item.get("value") if isinstance(item, Mapping) else None
        if isinstance(item, Mapping) and item.get("type") == "choices" and isinstance(value, Mapping):
            names += [str(c) for c in value.get("choices") or [] if isinstance(c, str)]
    return names


def latest_annotation(task_: Mapping) -> Mapping | None:
    """A task's newest annotation that was not skipped (Label Studio's ``was_cancelled``)."""
    kept = [
        a
        for a in task_.get("annotations") or []
        if isinstance(a, Mapping) and not a.get("was_cancelled") and isinstance(a.get("result"), list)
    ]
    return max(
        kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0), default=None
    )


def annotator_of(annotation: Mapping) -> str:
    """Who made an annotation, as Label Studio names them (an e-mail, or a user id)."""
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("email") or who.get("id")
    return f"label-studio:{who}" if who not in (None, "") else ""


def is_label_studio_export(doc: object) -> bool:
    """A Label Studio JSON export: a list of tasks, each with ``data`` and annotations or predictions."""
    return (
        isinstance(doc, list)
        and bool(doc)
        and all(isinstance(t, Mapping) and isinstance(t.get("data"), Mapping) for t in doc)
        and any("annotations" in t or "predictions" in t for t in doc)
    )


@requires("export")
def export_tasks(studio: Studio, image_url: Callable[[int], str], with_predictions: bool = True) -> list[dict]:
    """Every image as a Label Studio task: its URL (``image_url(image_id)``), the active
    version's suggestions as a prediction, and, for an image people labelled, its current labels
    as an annotation (the classes present; the others are absent or assumed absent)."""
    snap = collection_snapshot(studio, with_predictions)
    tasks = []
    for image_id, name, _ in snap.images:
        t = task(image_id, name, image_url(image_id))
        if image_id in snap.scores:
            t["predictions"] = [prediction(snap.version.name, snap.scores[image_id], snap.thresholds)]
        if image_id in snap.present:
            t["annotations"] = [{"result": choices_result(snap.present[image_id]), "ground_truth": False}]
        tasks.append(t)
    return tasks
