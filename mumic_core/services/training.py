"""Asking for work on models: a retraining, an activation, the scoring of new images, and the
automatic retraining that submits may set off. The worker does the work (``pipeline``)."""

from __future__ import annotations

import logging
from dataclasses import fields

from mumic_core.errors import MumicError
from mumic_core.pipeline.queue import enqueue
from mumic_core.pipeline.training import TrainConfig
from mumic_core.store.auth import SYSTEM, requires
from mumic_core.store.collection import human_labels_since, last_submission_id
from mumic_core.store.jobs import active_job, create_job, list_jobs
from mumic_core.store.registry import active_version, get_version
from mumic_core.store.settings import get_setting
from mumic_core.store.studio import Studio

log = logging.getLogger("mumic.training")


def training_params(studio: Studio, params: dict | None = None) -> dict:
    """The one way to make a training job's params, queued or run inline: unknown settings and
    bad values are refused (TrainingError, MumicError), the activation policy defaults to the
    store's, and ``labels_upto_submission`` records the last submission the training sees (new
    human labels are counted from it)."""
    params = dict(params or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(params) - known - {"labels_upto_submission", "reason"}
    if unknown:
        raise MumicError(f"unknown training settings: {', '.join(sorted(unknown))}")
    params.setdefault("activate", get_setting(studio, "promotion_policy"))
    TrainConfig(**{k: v for k, v in params.items() if k in known}).validate()
    params["labels_upto_submission"] = last_submission_id(studio)
    return params


@requires("train")
def request_training(studio: Studio, params: dict | None = None) -> int:
    """Queue a retraining for the worker; raises JobConflict (a clear message) when one is
    already queued or running. Returns the job id."""
    return enqueue(studio, "train", training_params(studio, params))


@requires("models")
def request_activation(studio: Studio, name: str) -> int:
    """Queue the activation (or roll-back) of a version: the worker re-scores, then switches."""
    version = get_version(studio, name)
    return enqueue(studio, "score", {"version": version.name, "activate": True})


@requires("import")
def request_scoring_of_new_images(studio: Studio, run_here: bool = False) -> int | None:
    """A job that scores newly imported images with the active version (only the images it has
    not scored yet), handed to the worker, or only recorded when the caller runs it here
    (``jobs.run_job``). Returns the job id, or None without an active version."""
    version = active_version(studio)
    if version is None:
        return None
    params = {"version": version.name, "new_images": True}
    return create_job(studio, "score", params) if run_here else enqueue(studio, "score", params)


def new_human_labels(studio: Studio) -> int:
    """Human labels recorded since the last training was requested."""
    last = next(iter(list_jobs(studio, limit=1, kind="train")), None)
    return human_labels_since(studio, int(last.params.get("labels_upto_submission", 0)) if last else 0)


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
        return request_training(
            studio.as_actor(SYSTEM), {"mode": get_setting(studio, "auto_retrain_mode"), "reason": reason}
        )
    except MumicError as exc:  # one was queued meanwhile, the queue is down, a bad setting
        log.warning("automatic retraining was not queued: %s", exc)
    except Exception:  # noqa: BLE001 - the labels are saved: nothing after that may fail the submit
        log.exception("automatic retraining was not queued")
    return None
