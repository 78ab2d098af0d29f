"""The background worker: ``python -m huey.bin.huey_consumer mumic_core.worker.huey``.

Huey (SQLite storage under MUMIC_HOME) delivers job ids; the job itself lives in the database.
"""

from __future__ import annotations

import logging

from huey import SqliteHuey

from .config import load_settings
from .jobs import create_job, fail_orphaned_jobs, run_job
from .studio import Studio, open_studio

_settings = load_settings()
_settings.ensure_dirs()
huey = SqliteHuey("mumic", filename=str(_settings.queue_path))
log = logging.getLogger("mumic.worker")


@huey.on_startup()
def _startup() -> None:
    studio = open_studio(_settings)
    n = fail_orphaned_jobs(studio)
    if n:
        log.warning("marked %d job(s) failed: their worker stopped while running them", n)


@huey.task()
def run_job_task(job_id: int) -> None:
    run_job(Studio(_settings), job_id)


def enqueue(studio: Studio, kind: str, params: dict | None = None) -> int:
    """Record a job and hand it to the worker; returns the job id."""
    job_id = create_job(studio, kind, params)
    run_job_task(job_id)
    return job_id
