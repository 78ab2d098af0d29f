"""The model lifecycle: retrain from human labels, then promote (re-score, then activate).

A candidate version becomes active only after the whole collection has been scored with it,
in one switch: until then the review queue keeps showing the active version's predictions, so
it never presents a mix of two versions. Re-scoring is resumable (image embeddings are cached
part by part), and a killed job leaves the active version as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields

from sqlalchemy import func, select

from db.models import Annotation, Job, ModelVersion, Submission
from mumic_core.encoders.factory import resolve_base_spec
from mumic_core.errors import MumicError
from mumic_core.store.auth import SYSTEM, requires
from mumic_core.store.jobs import Report, active_job, fail_orphaned_jobs
from mumic_core.store.registry import (
    activate,
    active_version,
    get_version,
    list_versions,
    next_version_name,
    register_version,
)
from mumic_core.store.reports import format_metric
from mumic_core.store.settings import get_setting
from mumic_core.store.studio import Studio

Note = Callable[[str], None]
log = logging.getLogger("mumic.lifecycle")


def _quiet(_: str) -> None:
    return None


def training_params(studio: Studio, params: dict | None = None) -> dict:
    """The one way to make a training job's params, queued or run inline: unknown settings and
    bad values are refused (TrainingError, MumicError), the activation policy defaults to the
    store's, and ``labels_upto_submission`` records the last submission the training sees (new
    human labels are counted from it)."""
    from mumic_core.pipeline.training import TrainConfig

    params = dict(params or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(params) - known - {"labels_upto_submission", "reason"}
    if unknown:
        raise MumicError(f"unknown training settings: {', '.join(sorted(unknown))}")
    params.setdefault("activate", get_setting(studio, "promotion_policy"))
    TrainConfig(**{k: v for k, v in params.items() if k in known}).validate()
    with studio.read() as s:
        params["labels_upto_submission"] = s.scalar(select(func.max(Submission.id))) or 0
    return params


@requires("models")
def ensure_base_version(studio: Studio) -> ModelVersion:
    """The active version; on a new store, register the base model (pretrained or built-in)."""
    version = active_version(studio)
    if version is not None:
        return version
    spec = resolve_base_spec(studio.settings)
    return register_version(studio, "v0001" if not list_versions(studio) else next_version_name(studio),
                            spec, spec.kind, spec.description, status="active")


@requires("models")
def adopt_starter_model(studio: Studio) -> ModelVersion | None:
    """If the untrained built-in model is active and a starter model has been built, register the
    starter model and make it active (the caller re-scores). Returns the new version or None."""
    version = active_version(studio)
    if version is None or version.kind != "builtin-random" or studio.settings.model_explicit:
        return None
    spec = resolve_base_spec(studio.settings)
    if spec.kind != "starter":
        return None
    return register_version(studio, next_version_name(studio), spec, spec.kind, spec.description, status="active")


@requires("train")
def request_training(studio: Studio, params: dict | None = None) -> int:
    """Queue a retraining for the worker; raises JobConflict (a clear message) when one is
    already queued or running. Returns the job id."""
    from mumic_core.pipeline.queue import enqueue

    return enqueue(studio, "train", training_params(studio, params))


@requires("models")
def request_activation(studio: Studio, name: str) -> int:
    """Queue the activation (or roll-back) of a version: the worker re-scores, then switches."""
    from mumic_core.pipeline.queue import enqueue

    version = get_version(studio, name)
    return enqueue(studio, "score", {"version": version.name, "activate": True})


@requires("train")
def retrain(studio: Studio, params: dict, report: Report, note: Note = _quiet,
            remember: Callable[..., None] | None = None) -> dict:
    """Train a candidate on top of the active version; promote it if the policy says so."""
    from mumic_core.pipeline.training import TrainConfig, train

    config = TrainConfig(**{k: v for k, v in params.items() if k in {f.name for f in fields(TrainConfig)}})
    parent = active_version(studio) or ensure_base_version(studio)
    note(f"training in {config.mode} mode with the {config.loss} loss, from {parent.name}")
    result = train(studio, config, parent, progress=report)
    name = result.version.name
    if remember:
        remember(candidate=name, promote=result.promote)
    fmt = lambda m: f"mAP {format_metric(m.get('map'))}, GAP@10 {format_metric(m.get('gap_at_10'))}"  # noqa: E731
    note(f"candidate {name}: {fmt(result.metrics)} on {result.metrics.get('n_images', '?')} held-out images; "
         f"{parent.name}: {fmt(result.parent_metrics)}")
    if result.promote:
        note(f"policy '{config.activate}': promoting {name}")
        promote(studio, result.version, report, note)
    else:
        note(f"policy '{config.activate}': {name} stays a candidate")
    return {"version": name, "activated": result.promote,
            "val": {k: result.metrics.get(k) for k in ("gap_at_10", "gap", "map")},
            "parent_val": {k: result.parent_metrics.get(k) for k in ("gap_at_10", "gap", "map")}}


@requires("models")
def promote(studio: Studio, version: ModelVersion, report: Report | None = None, note: Note = _quiet) -> int:
    """Score every image with ``version``, then make it the active version. Returns predictions."""
    from mumic_core.pipeline.search import build_index

    n = score_all(studio, version, report)
    if report:
        report("indexing", 0.0, {})
    build_index(studio, version)  # embeddings are cached by now: this is quick
    activate(studio, version.id)
    note(f"{version.name} is active; {n} predictions written, search index rebuilt")
    return n


@requires("train")
def score_all(studio: Studio, version: ModelVersion, report: Report | None = None) -> int:
    """Score the collection with ``version`` (embeddings resume from the cache), reporting progress."""
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.store.collection import all_image_ids

    total = len(all_image_ids(studio))  # a count: nothing fetched from remote storage
    return score_collection(studio, version, progress=_counter(report, "re-scoring", total))


@requires("train")
def rescore(studio: Studio, params: dict, report: Report, note: Note = _quiet) -> dict:
    """Score job: one version (default the active one); with ``activate``, promote it after."""
    version = get_version(studio, params["version"]) if params.get("version") else ensure_base_version(studio)
    if params.get("new_images"):
        from mumic_core.pipeline.scoring import score_new_images, unscored_count

        waiting = unscored_count(studio, version.id)
        note(f"scoring the {waiting} images {version.name} has not scored yet")
        n = score_new_images(studio, version, _counter(report, "scoring new images", waiting))
        return {"version": version.name, "predictions": n}
    note(f"scoring the collection with {version.name}")
    if params.get("activate"):
        n = promote(studio, version, report, note)
    else:
        n = score_all(studio, version, report)
    return {"version": version.name, "predictions": n}


def _counter(report: Report | None, phase: str, total: int) -> Callable[[int], None]:
    """A per-image progress callback that reports ``phase`` with a running count of ``total``."""
    done = [0]

    def count(k: int) -> None:
        done[0] += k
        if report:
            report(phase, min(1.0, done[0] / max(1, total)), {"images": done[0], "of": total})

    count(0)
    return count


@requires("import")
def request_scoring_of_new_images(studio: Studio, run_here: bool = False) -> int | None:
    """A job that scores newly imported images with the active version (only the images it has
    not scored yet), handed to the worker, or only recorded when the caller runs it here
    (``jobs.run_job``). Returns the job id, or None without an active version."""
    from mumic_core.pipeline.queue import enqueue
    from mumic_core.store.jobs import create_job

    version = active_version(studio)
    if version is None:
        return None
    params = {"version": version.name, "new_images": True}
    return create_job(studio, "score", params) if run_here else enqueue(studio, "score", params)


@requires("train")
def resume_interrupted(studio: Studio) -> list[int]:
    """At worker start: fail the jobs of a dead worker, and queue again the scorings they left
    undone: a training's candidate that was to become active, an activation, and any other
    scoring (of newly imported images: else they would never reach Review); their image
    embeddings resume from the cache. Returns the ids of the jobs queued."""
    from mumic_core.pipeline.queue import enqueue
    from mumic_core.store.jobs import log

    queued = []
    for job in fail_orphaned_jobs(studio):
        result, params = job.result or {}, job.params or {}
        if job.kind == "train" and result.get("promote") and result.get("candidate"):
            again = {"version": result["candidate"], "activate": True}
        elif job.kind == "score":
            again = {k: v for k, v in params.items() if k != "resumes_job"}
        else:
            continue
        new_id = enqueue(studio, "score", again | {"resumes_job": job.id})
        what = f"promotion of {again['version']}" if again.get("activate") else "scoring"
        log(studio, job.id, f"its {what} resumes as job {new_id}")
        queued.append(new_id)
    return queued


def new_human_labels(studio: Studio) -> int:
    """Human labels recorded since the last training was requested."""
    with studio.read() as s:
        last = s.scalar(select(Job).where(Job.kind == "train").order_by(Job.id.desc()).limit(1))
        upto = (last.params or {}).get("labels_upto_submission", 0) if last else 0
        return s.scalar(select(func.count()).select_from(Annotation).where(
            Annotation.submission_id > upto, Annotation.source == "review")) or 0


@requires("review")
def maybe_auto_retrain(studio: Studio) -> int | None:
    """After a submit: queue a retraining when automatic retraining is on, enough new human labels
    exist and none is queued or running. The system queues it (an admin's setting asks for it;
    the annotator whose submit crossed the threshold may not train), and a failure to queue is
    logged, never raised: the submitted labels are saved. Returns the job id, if one was queued."""
    reviewer = studio.actor
    threshold = get_setting(studio, "auto_retrain_labels")
    if threshold <= 0 or active_job(studio, "train") is not None or new_human_labels(studio) < threshold:
        return None
    reason = f"automatic: {threshold}+ new human labels, after a submit by {reviewer.username}"
    try:
        return request_training(studio.as_actor(SYSTEM),
                                {"mode": get_setting(studio, "auto_retrain_mode"), "reason": reason})
    except MumicError as exc:  # one was queued meanwhile, the queue is down, a bad setting
        log.warning("automatic retraining was not queued: %s", exc)
    except Exception:  # noqa: BLE001 - the labels are saved: nothing after that may fail the submit
        log.exception("automatic retraining was not queued")
    return None
