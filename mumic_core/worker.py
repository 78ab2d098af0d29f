"""The background worker: ``python -m huey.bin.huey_consumer mumic_core.worker.huey``.

Huey (SQLite storage under MUMIC_HOME) delivers job ids; the job itself lives in the database.
"""

from __future__ import annotations

import functools
import logging

from huey import SqliteHuey

from .auth import SYSTEM
from .config import load_settings
from .jobs import create_job, record_worker_started, run_job
from .studio import Studio, open_studio

log = logging.getLogger("mumic.worker")


def _run_job(job_id: int) -> None:
    run_job(Studio(_settings, SYSTEM), job_id)  # the job was authorised when it was queued


@functools.cache
def queue_for(queue_path: str):
    """(huey instance, task) for one queue file; the task runs a job by id."""
    instance = SqliteHuey("mumic", filename=queue_path)
    return instance, instance.task(name="run_job")(_run_job)


_settings = load_settings()
_settings.ensure_dirs()
huey, run_job_task = queue_for(str(_settings.queue_path))


@huey.on_startup()
def _startup() -> None:
    studio = open_studio(_settings, actor=SYSTEM)
    record_worker_started(studio)
    from .lifecycle import resume_interrupted

    resumed = resume_interrupted(studio)
    if resumed:
        log.warning("queued job(s) %s to finish promotions a stopped worker left undone", resumed)


def enqueue(studio: Studio, kind: str, params: dict | None = None) -> int:
    """Record a job and hand it to the worker of the studio's MUMIC_HOME; returns the job id."""
    job_id = create_job(studio, kind, params)
    _, task = queue_for(str(studio.settings.queue_path))
    task(job_id)
    return job_id
